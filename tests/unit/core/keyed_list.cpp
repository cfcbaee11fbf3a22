#include <bulwark/detail/keyed_list.hpp>

#include <gtest/gtest.h>

#include <iterator>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

using list = bulwark::detail::keyed_list<int>;

TEST(keyed_list, random_adds_and_erases_agree_with_a_map) {
  std::mt19937_64 rng(7);
  list l;
  std::map<std::string, int> model;
  for (int step = 0; step < 20'000; ++step) {
    const std::string key = "channel:" + std::to_string(rng() % 400);
    auto* found = l.find(key);
    ASSERT_EQ(found != nullptr, model.count(key) == 1) << "step " << step;
    if (found && rng() % 2 == 0) {
      for (auto it = l.begin(); it != l.end(); ++it) {
        if (it->key != key) continue;
        l.erase(it);
        break;
      }
      model.erase(key);
    } else {
      auto [entry, added] = l.try_emplace(key, bulwark::detail::hash_key(key));
      ASSERT_EQ(added, found == nullptr);
      ASSERT_EQ(entry->key, key);
      entry->value = step;
      model[key] = step;
    }
  }
  ASSERT_EQ(l.size(), model.size());
  for (const auto& [key, value] : model) {
    const auto* found = std::as_const(l).find(key);
    ASSERT_NE(found, nullptr) << key;
    EXPECT_EQ(found->value, value);
  }
}

TEST(keyed_list, entries_keep_their_address_and_the_order_they_were_added_in) {
  list l;
  std::vector<list::entry*> first;
  for (int k = 0; k < 1000; ++k) { // enough to grow the index several times
    auto [entry, added] = l.try_emplace("k" + std::to_string(k));
    ASSERT_TRUE(added);
    entry->value = k;
    first.push_back(entry);
  }
  for (int k = 0; k < 1000; ++k) EXPECT_EQ(l.find("k" + std::to_string(k)), first[static_cast<std::size_t>(k)]);
  // Erasing every other entry leaves the others where they were, in their order.
  for (auto it = l.begin(); it != l.end();) it = it->value % 2 == 0 ? l.erase(it) : std::next(it);
  int expected = 1;
  for (const auto& e : l) {
    EXPECT_EQ(e.value, expected);
    EXPECT_EQ(&e, first[static_cast<std::size_t>(expected)]);
    expected += 2;
  }
  EXPECT_EQ(l.size(), 500u);
  EXPECT_EQ(l.find("k0"), nullptr);
  EXPECT_NE(l.find("k1"), nullptr);
}

} // namespace

// same_key against std::string_view's ==, on every length from 0 to 40 (each of its word paths
// and memcmp's) and a difference in every byte position: the overlapping words must not miss one.
TEST(same_key, agrees_with_string_equality_for_every_length_and_every_differing_byte) {
  for (std::size_t n = 0; n <= 40; ++n) {
    std::string a(n, 'k');
    for (std::size_t i = 0; i < n; ++i) a[i] = static_cast<char>('a' + i % 26);
    const std::string same = a;
    EXPECT_TRUE(bulwark::detail::same_key(a, same)) << n;
    EXPECT_FALSE(bulwark::detail::same_key(a, a + "x")) << n;
    EXPECT_FALSE(bulwark::detail::same_key(a + "x", a)) << n;
    for (std::size_t i = 0; i < n; ++i) {
      std::string b = a;
      b[i] = static_cast<char>(b[i] ^ 0x01);
      EXPECT_FALSE(bulwark::detail::same_key(a, b)) << n << " bytes, differing at " << i;
    }
  }
}
