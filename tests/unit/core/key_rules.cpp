// detail/key_rules.hpp: the one implementation of the concepts' key, value, ttl and scan rules
// and of a prefix scan's upper bound (every model's texts come from here; the conformance
// suites check them on each model).
#include <bulwark/detail/key_rules.hpp>

#include <gtest/gtest.h>

namespace detail = bulwark::detail;
using bulwark::errc;

TEST(key_rules, keys_are_one_to_max_bytes) {
  EXPECT_TRUE(detail::check_key("k", 1).has_value());
  const auto empty = detail::check_key("", 8);
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error(), errc::invalid_argument);
  EXPECT_EQ(empty.error().detail(), "empty key");
  const auto long_key = detail::check_key("123456789", 8);
  ASSERT_FALSE(long_key.has_value());
  EXPECT_EQ(long_key.error().detail(), "key of 9 bytes exceeds 8");
}

TEST(key_rules, a_backend_may_report_a_bad_key_with_its_own_code) {
  const auto native = std::make_error_code(std::errc::invalid_argument);
  const auto r = detail::check_key("", 8, native);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), native);
}

TEST(key_rules, values_ttls_and_scan_limits) {
  EXPECT_TRUE(detail::check_value_size(8, 8).has_value());
  const auto big = detail::check_value_size(9, 8);
  ASSERT_FALSE(big.has_value());
  EXPECT_EQ(big.error(), errc::too_large);
  EXPECT_EQ(big.error().detail(), "value of 9 bytes exceeds 8");
  EXPECT_TRUE(detail::check_ttl(std::chrono::milliseconds(0)).has_value());
  EXPECT_EQ(detail::check_ttl(std::chrono::milliseconds(-1)).error(), errc::invalid_argument);
  EXPECT_TRUE(detail::check_scan_limit(1).has_value());
  EXPECT_EQ(detail::check_scan_limit(0).error(), errc::invalid_argument);
}

TEST(key_rules, prefix_successor_bounds_every_key_with_the_prefix) {
  EXPECT_EQ(detail::prefix_successor("ab"), "ac");
  EXPECT_EQ(detail::prefix_successor("a\xff"), "b");
  EXPECT_EQ(detail::prefix_successor(std::string("a\xfe\xff\xff")), std::string("a\xff"));
  EXPECT_EQ(detail::prefix_successor("\xff\xff"), std::nullopt);
  EXPECT_EQ(detail::prefix_successor(""), std::nullopt);
}
