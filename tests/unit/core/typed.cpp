#include <bulwark/typed.hpp>

#include <bulwark/memory/cache.hpp>
#include <bulwark/memory/repository.hpp>

#include "support/run.hpp"

#include <gtest/gtest.h>

namespace demo {
struct channel {
  std::string name;
  int number = 0;
  friend bool operator==(const channel&, const channel&) = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(channel, name, number)
} // namespace demo

TEST(typed, json_round_trip_through_repository_and_cache) {
  asio::io_context ctx;
  bulwark::memory::repository repo;
  bulwark::memory::cache cache;
  bulwark::typed_repository<bulwark::memory::repository, demo::channel> channels(repo);
  bulwark::typed_cache<bulwark::memory::cache, demo::channel> cached(cache);
  const demo::channel one{"One", 1};
  auto v = bulwark::test::run(ctx, channels.put("c1", one, bulwark::no_version));
  ASSERT_TRUE(v.has_value());
  auto got = bulwark::test::run(ctx, channels.get("c1"));
  ASSERT_TRUE(got.has_value() && got.value().has_value());
  EXPECT_EQ(got.value()->value, one);
  ASSERT_TRUE(bulwark::test::run(ctx, cached.put("c1", one, v.value(), std::chrono::seconds(5))).value());
  EXPECT_EQ(bulwark::test::run(ctx, cached.get("c1")).value()->value, one);
}

TEST(typed, undecodable_value_is_invalid_argument_with_the_parser_message) {
  asio::io_context ctx;
  bulwark::memory::repository repo;
  ASSERT_TRUE(repo.put_now("bad", "{not json", std::nullopt).has_value());
  bulwark::typed_repository<bulwark::memory::repository, demo::channel> channels(repo);
  auto got = bulwark::test::run(ctx, channels.get("bad"));
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error(), bulwark::errc::invalid_argument);
  EXPECT_NE(got.error().detail().find("parse error"), std::string_view::npos) << got.error().detail();
  auto wrong_shape = bulwark::typed<demo::channel>::decode(R"({"name": 5})");
  ASSERT_FALSE(wrong_shape.has_value());
  EXPECT_EQ(wrong_shape.error(), bulwark::errc::invalid_argument);
  EXPECT_NE(wrong_shape.error().detail().find("type_error"), std::string_view::npos) << wrong_shape.error().detail();
}
