// detail::periodic on a manual clock: ticks every period from start(), none before; a tick that
// throws does not end the loop; stop() ends the wait at once, and no tick runs after it.

#include <bulwark/detail/periodic.hpp>

#include "support/run.hpp"

#include <asio/io_context.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>

using namespace std::chrono_literals;

TEST(periodic, ticks_every_period_survives_a_throwing_tick_and_stops) {
  asio::io_context ctx;
  auto clk = bulwark::clock::manual();
  int calls = 0;
  bulwark::detail::periodic loop(ctx.get_executor(), clk, 2s, [&calls]() -> asio::awaitable<void> {
    if (++calls == 2) throw std::runtime_error("a tick's own failure");
    co_return;
  });
  auto settle = [&] {
    ctx.restart();
    ctx.poll();
  };
  loop.start();
  loop.start(); // a second start does nothing
  settle();
  clk.advance(1999ms);
  settle();
  EXPECT_EQ(calls, 0) << "a tick before one period";
  clk.advance(1ms);
  settle();
  EXPECT_EQ(calls, 1);
  clk.advance(2s);
  settle();
  EXPECT_EQ(calls, 2);
  clk.advance(2s);
  settle();
  EXPECT_EQ(calls, 3) << "the throwing tick ended the loop";
  EXPECT_EQ(loop.ticks(), 3u);
  ASSERT_TRUE(bulwark::test::run(ctx, loop.stop()));
  ASSERT_TRUE(bulwark::test::run(ctx, loop.stop())); // a second stop returns at once
  clk.advance(10s);
  settle();
  EXPECT_EQ(calls, 3) << "a tick after stop()";
}

TEST(periodic, stop_without_start_means_it_never_ticks) {
  asio::io_context ctx;
  auto clk = bulwark::clock::manual();
  int calls = 0;
  bulwark::detail::periodic loop(ctx.get_executor(), clk, 1s, [&calls]() -> asio::awaitable<void> {
    ++calls;
    co_return;
  });
  ASSERT_TRUE(bulwark::test::run(ctx, loop.stop()));
  loop.start();
  clk.advance(5s);
  ctx.restart();
  ctx.poll();
  EXPECT_EQ(calls, 0);
}
