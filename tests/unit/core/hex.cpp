#include <bulwark/detail/hex.hpp>

#include <gtest/gtest.h>

#include <cinttypes>
#include <cstdio>
#include <random>
#include <string>

namespace {

std::string reference(std::uint64_t x) {
  char out[17];
  std::snprintf(out, sizeof out, "%016" PRIx64, x);
  return out;
}

std::string hex16(std::uint64_t x) {
  std::string out(16, '?');
  bulwark::detail::hex16(x, out.data());
  return out;
}

TEST(hex, known_words) {
  EXPECT_EQ(hex16(0), "0000000000000000");
  EXPECT_EQ(hex16(0x0123456789abcdef), "0123456789abcdef");
  EXPECT_EQ(hex16(0xfedcba9876543210), "fedcba9876543210");
  EXPECT_EQ(hex16(~std::uint64_t{0}), "ffffffffffffffff");
  EXPECT_EQ(hex16(0x9a0f00a9), "000000009a0f00a9"); // 9 | a and f | 0 next to each other
}

TEST(hex, every_digit_in_every_position) {
  for (unsigned position = 0; position < 16; ++position)
    for (std::uint64_t digit = 0; digit < 16; ++digit) {
      const std::uint64_t x = digit << (4 * position);
      ASSERT_EQ(hex16(x), reference(x)) << "digit " << digit << " at nibble " << position;
    }
}

TEST(hex, random_words_agree_with_printf) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100'000; ++i) {
    const std::uint64_t x = rng();
    ASSERT_EQ(hex16(x), reference(x));
  }
}

TEST(hex, writes_exactly_its_digits) {
  std::string out(20, '.');
  bulwark::detail::hex8(0xdeadbeef, out.data() + 2);
  EXPECT_EQ(out, "..deadbeef..........");
}

} // namespace
