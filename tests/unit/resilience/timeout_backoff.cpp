#include <bulwark/resilience/backoff.hpp>
#include <bulwark/resilience/timeout.hpp>

#include "support/run.hpp"

#include <asio/experimental/as_tuple.hpp>

#include <gtest/gtest.h>

#include <random>

using namespace std::chrono_literals;

namespace {
bulwark::task<int> slow(std::chrono::milliseconds d, int value) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  auto [ec] = co_await t.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  if (ec) co_return bulwark::errc::cancelled;
  co_return value;
}
} // namespace

TEST(with_timeout, returns_the_value_when_in_time) {
  asio::io_context ctx;
  auto r = bulwark::test::run(ctx, bulwark::with_timeout(slow(1ms, 7), 5s));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r.value(), 7);
}

TEST(with_timeout, fails_with_timeout_and_cancels_the_operation) {
  asio::io_context ctx;
  const auto start = std::chrono::steady_clock::now();
  auto r = bulwark::test::run(ctx, bulwark::with_timeout(slow(10s, 7), 20ms, "slow op"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), bulwark::errc::timeout);
  EXPECT_NE(r.error().detail().find("slow op timed out after 20 ms"), std::string_view::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << "the slow operation was cancelled, not awaited";
}

TEST(backoff, ceiling_doubles_up_to_max) {
  bulwark::backoff b{10ms, 100ms, 2.0, false};
  std::mt19937_64 rng(1);
  EXPECT_EQ(b.delay(1, rng), 10ms);
  EXPECT_EQ(b.delay(2, rng), 20ms);
  EXPECT_EQ(b.delay(4, rng), 80ms);
  EXPECT_EQ(b.delay(5, rng), 100ms);
  EXPECT_EQ(b.delay(50, rng), 100ms);
}

TEST(backoff, full_jitter_stays_within_the_ceiling_and_varies) {
  bulwark::backoff b{10ms, 1000ms, 2.0, true};
  std::mt19937_64 rng(42);
  std::set<long> seen;
  for (int i = 0; i < 100; ++i) {
    auto d = b.delay(4, rng);
    EXPECT_GE(d, 0ms);
    EXPECT_LE(d, 80ms);
    seen.insert(static_cast<long>(d.count()));
  }
  EXPECT_GT(seen.size(), 10u);
}
