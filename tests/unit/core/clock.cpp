#include <bulwark/clock.hpp>

#include "support/run.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Spawns clk.wait_until(at) on `ex`; the outcome lands in *out (nullopt while pending).
template <class Executor> void spawn_wait(const Executor& ex, const bulwark::clock& clk, bulwark::clock::time_point at,
                                          std::optional<bool>* out, asio::cancellation_slot slot = {}) {
  asio::co_spawn(ex, clk.wait_until(at), asio::bind_cancellation_slot(slot, [out](std::exception_ptr e, bool r) {
                   if (e) std::rethrow_exception(e);
                   *out = r;
                 }));
}

} // namespace

TEST(clock, manual_time_moves_only_when_advanced_and_copies_share_it) {
  const bulwark::clock::time_point t0 = bulwark::clock::time_point(100s);
  const bulwark::clock a = bulwark::clock::manual(t0);
  const bulwark::clock b = a; // NOLINT(performance-unnecessary-copy-initialization): copies share the line
  EXPECT_TRUE(a.is_manual());
  EXPECT_EQ(a.now(), t0);
  a.advance(5s);
  EXPECT_EQ(b.now(), t0 + 5s);
  EXPECT_EQ(bulwark::clock::manual().now(), bulwark::clock::time_point{});
}

TEST(clock, real_clock_follows_steady_clock_and_refuses_advance) {
  const bulwark::clock real;
  EXPECT_FALSE(real.is_manual());
  const auto before = std::chrono::steady_clock::now();
  const auto now = real.now();
  EXPECT_GE(now, before);
  EXPECT_LE(now, std::chrono::steady_clock::now());
  EXPECT_THROW(real.advance(1s), std::logic_error);
}

TEST(clock, manual_waits_complete_when_time_reaches_them_in_time_order) {
  asio::io_context ctx;
  const bulwark::clock clk = bulwark::clock::manual();
  std::vector<int> order;
  std::optional<bool> w1, w2, w3;
  auto waiter = [&](bulwark::clock::duration d, int id, std::optional<bool>* out) -> asio::awaitable<void> {
    *out = co_await clk.wait_for(d);
    order.push_back(id);
  };
  asio::co_spawn(ctx, waiter(3s, 3, &w3), asio::detached);
  asio::co_spawn(ctx, waiter(1s, 1, &w1), asio::detached);
  asio::co_spawn(ctx, waiter(2s, 2, &w2), asio::detached);
  ctx.poll();
  EXPECT_FALSE(w1 || w2 || w3) << "no time has passed";

  clk.advance(999ms);
  ctx.poll();
  EXPECT_FALSE(w1) << "one millisecond early";

  clk.advance(1ms);
  ctx.poll();
  EXPECT_EQ(w1, true);
  EXPECT_FALSE(w2);

  clk.advance(10s);
  ctx.poll();
  EXPECT_EQ(w2, true);
  EXPECT_EQ(w3, true);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(clock, a_wait_for_a_time_already_passed_completes_at_once) {
  asio::io_context ctx;
  const bulwark::clock clk = bulwark::clock::manual(bulwark::clock::time_point(10s));
  std::optional<bool> w;
  spawn_wait(ctx.get_executor(), clk, bulwark::clock::time_point(5s), &w);
  ctx.poll();
  EXPECT_EQ(w, true);
}

TEST(clock, a_cancelled_manual_wait_completes_with_false_without_time_moving) {
  asio::io_context ctx;
  const bulwark::clock clk = bulwark::clock::manual();
  asio::cancellation_signal signal;
  std::optional<bool> w;
  spawn_wait(ctx.get_executor(), clk, clk.now() + 1h, &w, signal.slot());
  ctx.poll();
  ASSERT_FALSE(w);
  signal.emit(asio::cancellation_type::terminal);
  ctx.poll();
  EXPECT_EQ(w, false);
  clk.advance(2h); // the cancelled wait is gone: nothing runs twice
  ctx.poll();
  EXPECT_EQ(w, false);
}

TEST(clock, a_wait_inside_an_or_is_cancelled_when_the_other_side_wins) {
  using namespace asio::experimental::awaitable_operators;
  asio::io_context ctx;
  const bulwark::clock clk = bulwark::clock::manual();
  auto r = bulwark::test::run(ctx, [](bulwark::clock c) -> asio::awaitable<std::size_t> {
    auto winner = co_await (c.wait_for(1h) || asio::post(asio::use_awaitable));
    co_return winner.index();
  }(clk));
  EXPECT_EQ(r, 1u) << "the parallel group completed, so the bulwark::clock wait honoured its cancellation";
}

TEST(clock, advance_resumes_each_wait_on_its_own_executor) {
  asio::io_context a, b;
  const bulwark::clock clk = bulwark::clock::manual();
  std::optional<std::thread::id> ran_a, ran_b;
  auto waiter = [&](std::optional<std::thread::id>* out) -> asio::awaitable<void> {
    co_await clk.wait_for(1s);
    *out = std::this_thread::get_id();
  };
  asio::co_spawn(a, waiter(&ran_a), asio::detached);
  asio::co_spawn(b, waiter(&ran_b), asio::detached);
  a.poll();
  b.poll();
  std::thread other([&] { clk.advance(1s); }); // advance from a thread that runs neither
  other.join();
  EXPECT_FALSE(ran_a || ran_b) << "advance posts; it resumes nobody inline";
  std::thread runs_b([&] { b.run(); });
  runs_b.join();
  a.run();
  ASSERT_TRUE(ran_a && ran_b);
  EXPECT_EQ(*ran_a, std::this_thread::get_id());
  EXPECT_NE(*ran_b, std::this_thread::get_id());
}

TEST(clock, a_pending_manual_wait_keeps_its_context_running) {
  asio::io_context ctx;
  const bulwark::clock clk = bulwark::clock::manual();
  std::optional<bool> w;
  spawn_wait(ctx.get_executor(), clk, clk.now() + 1s, &w);
  ctx.poll();
  EXPECT_FALSE(ctx.stopped()) << "the pending wait is outstanding work";
  clk.advance(1s);
  ctx.run(); // returns once the wait completed
  EXPECT_EQ(w, true);
}

TEST(clock, the_completion_token_form_serves_callback_code) {
  asio::io_context ctx;
  const bulwark::clock clk = bulwark::clock::manual();
  std::optional<bool> w;
  clk.async_wait_until(ctx.get_executor(), clk.now() + 1s, [&](bool reached) { w = reached; });
  ctx.poll();
  EXPECT_FALSE(w);
  clk.advance(1s);
  ctx.run();
  EXPECT_EQ(w, true);
}

TEST(clock, real_waits_complete_in_time_order_after_their_time) {
  asio::io_context ctx;
  const bulwark::clock clk;
  std::vector<int> order;
  const auto start = std::chrono::steady_clock::now();
  auto waiter = [&](bulwark::clock::duration d, int id) -> asio::awaitable<void> {
    EXPECT_TRUE(co_await clk.wait_for(d));
    EXPECT_GE(std::chrono::steady_clock::now() - start, d);
    order.push_back(id);
  };
  asio::co_spawn(ctx, waiter(30ms, 3), asio::detached);
  asio::co_spawn(ctx, waiter(10ms, 1), asio::detached);
  asio::co_spawn(ctx, waiter(20ms, 2), asio::detached);
  ctx.run();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(clock, a_cancelled_real_wait_completes_with_false_at_once_and_the_context_goes_idle) {
  asio::io_context ctx;
  const bulwark::clock clk;
  asio::cancellation_signal signal;
  std::optional<bool> w;
  spawn_wait(ctx.get_executor(), clk, clk.now() + 1h, &w, signal.slot());
  ctx.poll();
  signal.emit(asio::cancellation_type::terminal);
  const auto start = std::chrono::steady_clock::now();
  ctx.run(); // must not wait for the hour: the idle timer is cancelled
  EXPECT_EQ(w, false);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(clock, real_waits_from_two_threads_on_one_context) {
  asio::io_context ctx;
  const bulwark::clock clk;
  std::atomic<int> done{0};
  for (int i = 0; i < 200; ++i)
    asio::co_spawn(
        ctx,
        [&, i]() -> asio::awaitable<void> {
          const bool reached = co_await clk.wait_for(std::chrono::milliseconds(i % 7));
          if (reached) ++done;
        },
        asio::detached);
  std::thread second([&] { ctx.run(); });
  ctx.run();
  second.join();
  EXPECT_EQ(done.load(), 200);
}
