#include <bulwark/detail/hash_index.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>

namespace {

// Keys are ints; the hash is chosen by the test so that collisions and wrap-around runs (the
// cases backward-shift erase must get right) are frequent.
struct model_check {
  bulwark::detail::hash_index<int> index;
  std::map<int, std::size_t> model; // key -> hash

  auto* find(int key, std::size_t hash) {
    return index.find(hash, [&](int k) { return k == key; });
  }
  void check_all() {
    ASSERT_EQ(index.size(), model.size());
    for (const auto& [key, hash] : model) {
      auto* c = find(key, hash);
      ASSERT_NE(c, nullptr) << "lost key " << key;
      ASSERT_EQ(c->handle, key);
    }
  }
};

TEST(hash_index, random_inserts_and_erases_agree_with_a_map) {
  std::mt19937_64 rng(42);
  for (const std::size_t distinct_hashes : {std::size_t{3}, std::size_t{40}, std::size_t{1} << 40}) {
    model_check m;
    for (int step = 0; step < 20'000; ++step) {
      const int key = static_cast<int>(rng() % 300);
      const std::size_t hash = (static_cast<std::size_t>(key) * 0x9E3779B97F4A7C15ull) % distinct_hashes;
      auto* c = m.find(key, hash);
      ASSERT_EQ(c != nullptr, m.model.count(key) == 1) << "step " << step;
      if (c) {
        m.index.erase(c);
        m.model.erase(key);
      } else {
        m.index.insert(hash, key);
        m.model[key] = hash;
      }
      if (step % 997 == 0) m.check_all();
    }
    m.check_all();
    for (const auto& [key, hash] : m.model) m.index.erase(m.find(key, hash));
    EXPECT_EQ(m.index.size(), 0u);
    for (int key = 0; key < 300; ++key)
      EXPECT_EQ(m.find(key, (static_cast<std::size_t>(key) * 0x9E3779B97F4A7C15ull) % distinct_hashes), nullptr);
  }
}

TEST(hash_index, equal_hashes_are_told_apart_by_the_key) {
  bulwark::detail::hash_index<int> index;
  for (int k = 0; k < 100; ++k) index.insert(7, k);
  for (int k = 0; k < 100; ++k) {
    auto* c = index.find(7, [&](int h) { return h == k; });
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->handle, k);
  }
  EXPECT_EQ(index.find(8, [](int) { return true; }), nullptr);
}

} // namespace

namespace {

// prefetch() may run without the owner's lock while the owner inserts and erases (memory::cache
// calls it before taking its shard lock): under the tsan preset this test fails if it reads
// anything the owner writes non-atomically; everywhere it fails if a stale table address faults.
TEST(hash_index, prefetch_runs_beside_inserts_and_erases_without_the_lock) {
  bulwark::detail::hash_index<int> index;
  index.prefetch(12345); // an empty index: no table yet
  std::atomic<bool> done{false};
  std::thread prefetcher([&] {
    std::size_t n = 0;
    while (!done.load(std::memory_order_acquire)) index.prefetch(n++ * 0x9E3779B97F4A7C15ull);
  });
  for (int round = 0; round < 20; ++round) {
    for (int k = 0; k < 2000; ++k) index.insert(static_cast<std::size_t>(k) * 0x9E3779B97F4A7C15ull, k);
    for (int k = 0; k < 2000; ++k) {
      const std::size_t hash = static_cast<std::size_t>(k) * 0x9E3779B97F4A7C15ull;
      auto* c = index.find(hash, [&](int h) { return h == k; });
      ASSERT_NE(c, nullptr);
      index.erase(c);
    }
  }
  done.store(true, std::memory_order_release);
  prefetcher.join();
  EXPECT_EQ(index.size(), 0u);
}

} // namespace
