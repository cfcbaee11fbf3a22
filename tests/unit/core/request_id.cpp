#include <bulwark/detail/request_id.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <string>
#include <thread>

namespace {

using bulwark::detail::request_id_chars;
using bulwark::detail::request_id_source;

std::uint64_t tag_a() { return 0x0123456789abcdefu; }
std::uint64_t tag_b() { return 0xfedcba9876543210u; }

std::string next(request_id_source& s) {
  std::string out(request_id_chars, '?');
  s.next(out.data());
  return out;
}

// The reference: the 60-bit tag then the 30-bit counter, six bits a character, most significant first.
std::string expected(std::uint64_t tag, std::uint32_t count) {
  std::string out;
  for (int i = 0; i < 10; ++i) out += bulwark::detail::request_id_alphabet[(tag >> (54 - 6 * i)) & 63];
  for (int i = 0; i < 5; ++i) out += bulwark::detail::request_id_alphabet[(count >> (24 - 6 * i)) & 63];
  return out;
}

} // namespace

TEST(request_id, fifteen_url_safe_characters_that_fit_the_inline_buffer) {
  EXPECT_EQ(request_id_chars, 15u);
  EXPECT_LE(request_id_chars, std::string().capacity()) << "an id must not allocate";
  EXPECT_EQ(std::string(bulwark::detail::request_id_alphabet).size(), 64u);
  request_id_source s(tag_a);
  EXPECT_EQ(next(s), expected(0x0123456789abcdefu, 0));
  EXPECT_EQ(next(s), expected(0x0123456789abcdefu, 1));
}

TEST(request_id, the_counter_carries_past_each_64th_id_and_matches_the_reference) {
  request_id_source s(tag_a);
  std::set<std::string> seen;
  for (std::uint32_t i = 0; i < 5000; ++i) {
    const auto id = next(s);
    ASSERT_EQ(id, expected(0x0123456789abcdefu, i)) << "id " << i;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 5000u);
}

TEST(request_id, a_new_tag_after_two_to_the_thirty_ids) {
  request_id_source s(tag_b, request_id_source::ids_per_tag - 2);
  EXPECT_EQ(next(s), expected(0xfedcba9876543210u, request_id_source::ids_per_tag - 2));
  EXPECT_EQ(next(s), expected(0xfedcba9876543210u, request_id_source::ids_per_tag - 1));
  // The counter would wrap: a tag is drawn again (here the same function) and counting restarts.
  EXPECT_EQ(next(s), expected(0xfedcba9876543210u, 0));
}

TEST(request_id, threads_draw_their_own_random_tags) {
  char a[request_id_chars], b[request_id_chars];
  std::thread([&] { bulwark::detail::next_request_id(a); }).join();
  std::thread([&] { bulwark::detail::next_request_id(b); }).join();
  // Two 60-bit random tags meet with a chance of 2^-60.
  EXPECT_NE(std::string(a, 10), std::string(b, 10));
  EXPECT_EQ(std::string(a + 10, 5), "AAAAA") << "each thread counts from 0";
}
