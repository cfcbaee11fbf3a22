// with_timeout / with_deadline: the caller resumes at the deadline even when the operation
// ignores cancellation; the abandoned operation runs on and its late completion touches nothing
// freed (run these under the asan preset); time is a manual clock wherever it can be.
#include <bulwark/detail/notifier.hpp>
#include <bulwark/resilience/timeout.hpp>

#include "support/run.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// What an operation that ignores cancellation shares with the test: it parks on `wake` (a
// detail::notifier, not cancellable by design) and records that it ran to its end. Owned by
// the operation (shared_ptr), never by the caller's frame.
struct parked {
  bulwark::detail::notifier wake;
  std::atomic<bool> finished{false};
};

bulwark::task<std::string> ignores_cancellation(std::shared_ptr<parked> p) {
  co_await p->wake.async_wait(asio::use_awaitable);
  p->finished = true;
  co_return std::string(200, 'x'); // a heap-allocated result, dropped after the caller left
}

// An operation that honours cancellation: waits for `d` on `clk`; errc::cancelled when stopped.
bulwark::task<int> waits_on(bulwark::clock clk, bulwark::clock::duration d, int value,
                            std::shared_ptr<std::atomic<int>> saw_cancel = nullptr) {
  // Not `if (co_await ...)`: GCC 12 then reads the parameters from the wrong frame slots.
  const bool reached = co_await clk.wait_for(d);
  if (reached) co_return value;
  if (saw_cancel) ++*saw_cancel;
  co_return bulwark::errc::cancelled;
}

bulwark::task<int> immediate(bulwark::result<int> r) { co_return r; }

bulwark::task<int> after_a_post(bulwark::result<int> r) {
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  co_return r;
}

bulwark::task<int> throws() {
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  throw std::runtime_error("boom");
}

// Spawns `t` on `ex`; its result lands in *out. The slot reaches `t` as its cancellation slot.
using bulwark::test::spawn_into;

} // namespace

// The regression test of issue 10: Asio's `op || timer` kept this caller until the notifier
// was raised (here: never, so the run's own 10 s limit failed it).
TEST(with_timeout, an_operation_that_ignores_cancellation_ends_the_wait_at_the_deadline) {
  asio::io_context ctx;
  auto p = std::make_shared<parked>();
  const auto start = std::chrono::steady_clock::now();
  auto r = bulwark::test::run(ctx, bulwark::with_timeout(ignores_cancellation(p), 20ms, "parked op"), 10s);
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), bulwark::errc::timeout);
  EXPECT_NE(r.error().detail().find("parked op timed out after 20 ms"), std::string_view::npos) << r.error();
  EXPECT_GE(waited, 20ms);
  EXPECT_LT(waited, 5s);
  EXPECT_FALSE(p->finished) << "the operation is still parked";

  // The caller's frame is gone; the late completion must touch only what the operation owns.
  p->wake.notify();
  ctx.restart();
  ctx.run();
  EXPECT_TRUE(p->finished) << "the abandoned operation ran on to its end";
}

TEST(with_timeout, on_a_manual_clock_the_caller_resumes_exactly_at_the_deadline) {
  asio::io_context ctx;
  const auto clk = bulwark::clock::manual();
  auto p = std::make_shared<parked>();
  std::optional<bulwark::result<std::string>> r;
  spawn_into(ctx.get_executor(), bulwark::with_timeout(ignores_cancellation(p), 1s, clk, "parked op"), &r);
  ctx.poll();
  EXPECT_FALSE(r);
  clk.advance(999ms);
  ctx.poll();
  EXPECT_FALSE(r) << "one millisecond early";
  clk.advance(1ms);
  ctx.poll();
  ASSERT_TRUE(r);
  ASSERT_FALSE(r->has_value());
  EXPECT_EQ(r->error(), bulwark::errc::timeout);
  EXPECT_NE(r->error().detail().find("parked op timed out after 1000 ms"), std::string_view::npos);

  p->wake.notify();
  ctx.restart();
  ctx.run();
  EXPECT_TRUE(p->finished);
}

TEST(with_timeout, a_cancellable_operation_is_cancelled_at_the_deadline) {
  asio::io_context ctx;
  const auto clk = bulwark::clock::manual();
  auto saw_cancel = std::make_shared<std::atomic<int>>(0);
  std::optional<bulwark::result<int>> r;
  spawn_into(ctx.get_executor(), bulwark::with_timeout(waits_on(clk, 1h, 7, saw_cancel), 1s, clk), &r);
  ctx.poll();
  clk.advance(1s);
  ctx.poll();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error(), bulwark::errc::timeout);
  EXPECT_EQ(saw_cancel->load(), 1) << "the operation heard the cancellation without time reaching its own end";
  ctx.restart();
  ctx.run(); // nothing left: the operation finished, no timer holds the context
}

TEST(with_timeout, success_before_the_deadline_returns_the_value_and_the_error_untouched) {
  asio::io_context ctx;
  const auto clk = bulwark::clock::manual();
  for (bool suspends : {false, true}) {
    auto op = [&](bulwark::result<int> v) { return suspends ? after_a_post(std::move(v)) : immediate(std::move(v)); };
    auto value = bulwark::test::run(ctx, bulwark::with_timeout(op(7), 1s, clk));
    ASSERT_TRUE(value.has_value()) << value.error();
    EXPECT_EQ(value.value(), 7);

    auto failed = bulwark::test::run(
        ctx, bulwark::with_timeout(op(bulwark::error(bulwark::errc::conflict, "version 3")), 1s, clk));
    ASSERT_FALSE(failed.has_value());
    EXPECT_EQ(failed.error(), bulwark::errc::conflict);
    EXPECT_EQ(failed.error().detail(), "version 3");
  }
  // An operation that finishes at once returns its result even with a zero limit.
  auto zero = bulwark::test::run(ctx, bulwark::with_timeout(immediate(5), 0ms, clk));
  ASSERT_TRUE(zero.has_value());
  EXPECT_EQ(zero.value(), 5);
  // An exception escaping the operation reaches the caller, as co_await would deliver it.
  EXPECT_THROW(bulwark::test::run(ctx, bulwark::with_timeout(throws(), 1s, clk)), std::runtime_error);
}

TEST(with_timeout, a_cancelled_caller_resumes_at_once_with_cancelled) {
  asio::io_context ctx;
  auto p = std::make_shared<parked>();
  asio::cancellation_signal signal;
  std::optional<bulwark::result<std::string>> r;
  spawn_into(ctx.get_executor(), bulwark::with_timeout(ignores_cancellation(p), 1h, "parked op"), &r, signal.slot());
  ctx.poll();
  ASSERT_FALSE(r);
  signal.emit(asio::cancellation_type::terminal);
  const auto start = std::chrono::steady_clock::now();
  ctx.run_for(5s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error(), bulwark::errc::cancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  p->wake.notify();
  ctx.restart();
  ctx.run();
  EXPECT_TRUE(p->finished);
}

TEST(with_timeout, the_outer_deadline_of_nested_timeouts_holds) {
  asio::io_context ctx;
  const auto clk = bulwark::clock::manual();
  auto p = std::make_shared<parked>();
  std::optional<bulwark::result<std::string>> r;
  auto inner = bulwark::with_timeout(ignores_cancellation(p), 1h, clk, "inner");
  spawn_into(ctx.get_executor(), bulwark::with_timeout(std::move(inner), 1s, clk, "outer"), &r);
  ctx.poll();
  clk.advance(1s);
  ctx.poll();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error(), bulwark::errc::timeout);
  EXPECT_NE(r->error().detail().find("outer"), std::string_view::npos);
  p->wake.notify();
  clk.advance(2h); // the inner deadline was withdrawn when its caller was cancelled: no effect
  ctx.restart();
  ctx.run();
  EXPECT_TRUE(p->finished);
}

TEST(with_timeout, many_concurrent_timeouts_on_one_executor) {
  asio::io_context ctx;
  const auto clk = bulwark::clock::manual();
  constexpr int n = 2000;
  std::vector<std::shared_ptr<parked>> parks;
  std::vector<std::optional<bulwark::result<int>>> fast(n);
  std::vector<std::optional<bulwark::result<std::string>>> stuck(n);
  for (int i = 0; i < n; ++i) {
    // Deadlines interleave: i-th fast op needs (i % 10 + 1) * 100 ms, bounded by 2 s; the
    // i-th parked op is bounded by (i % 7 + 1) * 300 ms.
    spawn_into(ctx.get_executor(),
               bulwark::with_timeout(waits_on(clk, std::chrono::milliseconds((i % 10 + 1) * 100), i), 2s, clk),
               &fast[i]);
    parks.push_back(std::make_shared<parked>());
    spawn_into(
        ctx.get_executor(),
        bulwark::with_timeout(ignores_cancellation(parks.back()), std::chrono::milliseconds((i % 7 + 1) * 300), clk),
        &stuck[i]);
  }
  ctx.poll();
  for (int step = 1; step <= 21; ++step) {
    clk.advance(100ms);
    ctx.poll();
    for (int i = 0; i < n; ++i) {
      const bool fast_due = (i % 10 + 1) <= step;
      ASSERT_EQ(fast[i].has_value(), fast_due) << "fast op " << i << " at step " << step;
      if (fast_due) {
        ASSERT_TRUE(fast[i]->has_value());
        EXPECT_EQ(fast[i]->value(), i);
      }
      const bool stuck_due = (i % 7 + 1) * 3 <= step;
      ASSERT_EQ(stuck[i].has_value(), stuck_due) << "parked op " << i << " at step " << step;
      if (stuck_due) {
        EXPECT_EQ(stuck[i]->error(), bulwark::errc::timeout);
      }
    }
  }
  for (auto& p : parks) p->wake.notify();
  ctx.restart();
  ctx.run();
  for (auto& p : parks) EXPECT_TRUE(p->finished);
}

TEST(with_timeout, many_real_timeouts_end_together_and_the_context_goes_idle) {
  asio::io_context ctx;
  constexpr int n = 1000;
  std::vector<std::shared_ptr<parked>> parks;
  std::vector<std::optional<bulwark::result<std::string>>> stuck(n);
  for (int i = 0; i < n; ++i) {
    parks.push_back(std::make_shared<parked>());
    spawn_into(ctx.get_executor(), bulwark::with_timeout(ignores_cancellation(parks.back()), 20ms), &stuck[i]);
  }
  const auto start = std::chrono::steady_clock::now();
  while (std::any_of(stuck.begin(), stuck.end(), [](auto& s) { return !s; }) &&
         std::chrono::steady_clock::now() - start < 10s)
    ctx.run_one_for(10ms);
  for (auto& s : stuck) {
    ASSERT_TRUE(s);
    EXPECT_EQ(s->error(), bulwark::errc::timeout);
  }
  for (auto& p : parks) p->wake.notify();
  ctx.restart();
  ctx.run(); // returns: no deadline is left armed
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  for (auto& p : parks) EXPECT_TRUE(p->finished);
}

TEST(with_timeout, timeouts_on_a_context_run_by_two_threads) {
  asio::io_context ctx;
  constexpr int n = 400;
  std::vector<std::shared_ptr<parked>> parks;
  std::atomic<int> in_time{0}, timed_out{0}, wrong{0};
  for (int i = 0; i < n; ++i) {
    auto p = std::make_shared<parked>();
    if (i % 2 == 1) parks.push_back(p);
    // Each caller on its own strand (see timeout.hpp: "Threads").
    asio::co_spawn(
        asio::make_strand(ctx),
        [&, p, i]() -> asio::awaitable<void> {
          if (i % 2 == 0) {
            auto r = co_await bulwark::with_timeout(after_a_post(i), 10s);
            (r && r.value() == i ? in_time : wrong)++;
          } else {
            auto r = co_await bulwark::with_timeout(ignores_cancellation(p), 30ms);
            (!r && r.error() == bulwark::errc::timeout ? timed_out : wrong)++;
          }
        },
        asio::detached);
  }
  auto keep = asio::make_work_guard(ctx);
  std::thread first([&] { ctx.run(); }), second([&] { ctx.run(); });
  auto wait_until = [](auto done) {
    const auto start = std::chrono::steady_clock::now();
    while (!done() && std::chrono::steady_clock::now() - start < 10s) std::this_thread::sleep_for(2ms);
  };
  wait_until([&] { return in_time + timed_out + wrong == n; });
  for (auto& p : parks) p->wake.notify();
  wait_until([&] { return std::all_of(parks.begin(), parks.end(), [](auto& p) { return p->finished.load(); }); });
  keep.reset();
  first.join();
  second.join();
  EXPECT_EQ(in_time.load(), n / 2);
  EXPECT_EQ(timed_out.load(), n / 2);
  EXPECT_EQ(wrong.load(), 0);
  for (auto& p : parks) EXPECT_TRUE(p->finished);
}

TEST(with_deadline, an_operation_whose_deadline_has_passed_is_not_started) {
  asio::io_context ctx;
  const auto clk = bulwark::clock::manual(bulwark::clock::time_point(10s));
  auto p = std::make_shared<parked>();
  p->wake.notify(); // would finish at once if it ran
  auto r = bulwark::test::run(ctx, bulwark::with_deadline(ignores_cancellation(p), clk.now(), clk, "late op"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), bulwark::errc::timeout);
  EXPECT_NE(r.error().detail().find("late op not started"), std::string_view::npos) << r.error();
  ctx.restart();
  ctx.run();
  EXPECT_FALSE(p->finished);
}

TEST(with_deadline, one_deadline_carried_down_bounds_every_call_by_what_is_left) {
  asio::io_context ctx;
  const auto clk = bulwark::clock::manual();
  std::optional<bulwark::result<int>> r;
  auto request = [](bulwark::deadline d, bulwark::clock c) -> bulwark::task<int> {
    auto a = co_await bulwark::with_deadline(waits_on(c, 600ms, 1), d, "first");
    if (!a) co_return a.error();
    EXPECT_EQ(d.remaining(), 400ms);
    auto b = co_await bulwark::with_deadline(waits_on(c, 600ms, 2), d, "second");
    if (!b) co_return b.error();
    co_return a.value() + b.value();
  };
  spawn_into(ctx.get_executor(), request(bulwark::deadline::after(1s, clk), clk), &r);
  ctx.poll();
  clk.advance(600ms);
  ctx.poll();
  EXPECT_FALSE(r) << "the first call finished in time; the second is running";
  clk.advance(400ms);
  ctx.poll();
  ASSERT_TRUE(r);
  ASSERT_FALSE(r->has_value());
  EXPECT_EQ(r->error(), bulwark::errc::timeout);
  EXPECT_NE(r->error().detail().find("second missed its deadline"), std::string_view::npos) << r->error();
}

// An option of duration::max() means "no bound": now + max must not wrap into the past (it
// used to, so every such call timed out at once).
TEST(with_timeout, a_limit_of_duration_max_never_wraps_into_the_past) {
  asio::io_context ctx;
  const auto clk = bulwark::clock::manual(bulwark::clock::time_point(10s));
  EXPECT_EQ(bulwark::clock::later(clk.now(), bulwark::clock::duration::max()), bulwark::clock::time_point::max());
  EXPECT_EQ(bulwark::clock::later(clk.now(), 5s), bulwark::clock::time_point(15s));
  EXPECT_FALSE(bulwark::deadline::after(bulwark::clock::duration::max(), clk).passed());
  EXPECT_FALSE(bulwark::deadline::after(bulwark::clock::duration::max()).passed()) << "the real clock";
  std::optional<bulwark::result<int>> r;
  spawn_into(ctx.get_executor(), bulwark::with_timeout(waits_on(clk, 1h, 7), bulwark::clock::duration::max(), clk), &r);
  ctx.poll();
  EXPECT_FALSE(r) << "timed out at once: the deadline wrapped";
  clk.advance(1h);
  ctx.poll();
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->has_value()) << r->error();
  EXPECT_EQ(r->value(), 7);
}

// with_timeout(op, limit, deadline): the earlier bound holds, and the error names it.
TEST(with_timeout, by_a_limit_and_a_deadline_the_earlier_one_ends_the_wait) {
  asio::io_context ctx;
  const auto clk = bulwark::clock::manual();
  std::optional<bulwark::result<int>> by_limit, by_deadline, in_time;
  const auto d = bulwark::deadline::after(1s, clk);
  spawn_into(ctx.get_executor(), bulwark::with_timeout(waits_on(clk, 1h, 1), 300ms, d, "short"), &by_limit);
  spawn_into(ctx.get_executor(), bulwark::with_timeout(waits_on(clk, 1h, 2), 5s, d, "long"), &by_deadline);
  spawn_into(ctx.get_executor(), bulwark::with_timeout(waits_on(clk, 200ms, 3), 5s, d, "quick"), &in_time);
  ctx.poll();
  clk.advance(299ms);
  ctx.poll();
  ASSERT_TRUE(in_time);
  EXPECT_EQ(in_time->value(), 3);
  EXPECT_FALSE(by_limit) << "one millisecond early";
  clk.advance(1ms);
  ctx.poll();
  ASSERT_TRUE(by_limit);
  EXPECT_EQ(by_limit->error(), bulwark::errc::timeout);
  EXPECT_NE(by_limit->error().detail().find("short timed out after 300 ms"), std::string_view::npos)
      << by_limit->error();
  clk.advance(699ms);
  ctx.poll();
  EXPECT_FALSE(by_deadline);
  clk.advance(1ms);
  ctx.poll();
  ASSERT_TRUE(by_deadline);
  EXPECT_EQ(by_deadline->error(), bulwark::errc::timeout);
  EXPECT_NE(by_deadline->error().detail().find("long missed its deadline"), std::string_view::npos)
      << by_deadline->error();
  // A deadline already passed still starts the operation: what finishes at once answers.
  auto late = bulwark::test::run(ctx, bulwark::with_timeout(immediate(5), 1s, bulwark::deadline{clk.now(), clk}));
  ASSERT_TRUE(late) << late.error();
  EXPECT_EQ(late.value(), 5);
}

TEST(deadline, passed_coarse_is_never_early_and_exact_on_a_manual_clock) {
  const auto clk = bulwark::clock::manual(bulwark::clock::time_point(10s));
  const auto d = bulwark::deadline::after(1s, clk);
  EXPECT_FALSE(d.passed_coarse());
  clk.advance(999ms);
  EXPECT_FALSE(d.passed_coarse());
  clk.advance(1ms);
  EXPECT_TRUE(d.passed_coarse());
  // The real clock: a deadline a minute away has not passed by the coarse clock either, and one
  // that has passed by the coarse clock has passed by the precise one.
  EXPECT_FALSE(bulwark::deadline::after(60s).passed_coarse());
  const auto past = bulwark::deadline{std::chrono::steady_clock::now() - 1s, bulwark::clock{}};
  EXPECT_TRUE(past.passed_coarse());
  EXPECT_LE(bulwark::coarse_steady_clock::now(), std::chrono::steady_clock::now());
}

// deadline::after(budget) counts from the last kernel tick: never later than the precise
// now + budget, and earlier by a tick at most (a generous 50 ms here: a loaded machine may
// deschedule the test between the reads, which only makes the bound looser).
TEST(deadline, after_on_the_real_clock_is_never_late_and_at_most_a_tick_early) {
  for (int i = 0; i < 1000; ++i) {
    const auto before = std::chrono::steady_clock::now();
    const auto d = bulwark::deadline::after(1s);
    const auto after = std::chrono::steady_clock::now();
    ASSERT_LE(d.at, after + 1s) << "later than now + budget";
    ASSERT_GE(d.at, before + 1s - 50ms) << "earlier than a tick before now + budget";
    EXPECT_FALSE(d.source.is_manual());
  }
  // A short budget, where a tick would be a good share of it, counts from the precise clock.
  for (int i = 0; i < 1000; ++i) {
    const auto before = std::chrono::steady_clock::now();
    const auto d = bulwark::deadline::after(bulwark::deadline::precise_below - 1ms);
    ASSERT_GE(d.at, before + bulwark::deadline::precise_below - 1ms) << "a short budget cut by a tick";
  }
}
