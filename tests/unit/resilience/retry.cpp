// retry: attempts and backoff on a manual clock (times checked), permanent errors, the
// non-idempotent rule, the deadline (no sleep past it, a hanging attempt cut at it), cancellation.
#include <bulwark/detail/notifier.hpp>
#include <bulwark/resilience/retry.hpp>

#include "support/run.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using bulwark::errc;

namespace {

// An operation whose n-th attempt answers script[n-1] (the last entry repeats), recording when
// each attempt started on the clock.
struct scripted {
  bulwark::clock clk;
  std::vector<bulwark::result<int>> script;
  std::vector<bulwark::clock::time_point> started;

  std::function<bulwark::task<int>()> make() {
    return [this]() -> bulwark::task<int> { return attempt(this); };
  }
  static bulwark::task<int> attempt(scripted* self) {
    self->started.push_back(self->clk.now());
    const auto i = std::min(self->started.size(), self->script.size()) - 1;
    co_return self->script[i];
  }
};

using bulwark::test::spawn_into;

struct retry_test : ::testing::Test {
  asio::io_context ctx;
  bulwark::clock clk = bulwark::clock::manual();
  bulwark::clock::time_point t0 = clk.now();
  scripted op{clk, {}, {}};
  std::optional<bulwark::result<int>> out;

  // 100 ms, 200 ms, 400 ms, ... without jitter, 5 attempts.
  static bulwark::retry_policy policy(unsigned attempts = 5) {
    bulwark::retry_policy p;
    p.delays = bulwark::backoff{100ms, 10s, 2.0, false};
    p.max_attempts = attempts;
    return p;
  }
  bulwark::retry_options options() {
    bulwark::retry_options o;
    o.clock = clk;
    o.idempotent = true; // the tests of the other rules; the idempotency tests set it back
    return o;
  }
  void poll() {
    ctx.restart();
    ctx.poll();
  }
  void start(bulwark::retry_policy p, bulwark::retry_options o, asio::cancellation_slot slot = {}) {
    spawn_into(ctx, bulwark::retry<int>(op.make(), std::move(p), std::move(o)), &out, slot);
    poll();
  }
  std::vector<bulwark::clock::duration> start_times() const {
    std::vector<bulwark::clock::duration> v;
    for (auto t : op.started) v.push_back(t - t0);
    return v;
  }
};

} // namespace

TEST_F(retry_test, retries_with_the_policy_backoff_until_success) {
  op.script = {errc::unavailable, errc::timeout, 7};
  start(policy(), options());
  EXPECT_EQ(op.started.size(), 1u);
  clk.advance(99ms);
  poll();
  EXPECT_EQ(op.started.size(), 1u) << "the first delay is 100 ms";
  clk.advance(1ms);
  poll();
  EXPECT_EQ(op.started.size(), 2u);
  clk.advance(199ms);
  poll();
  EXPECT_FALSE(out);
  clk.advance(1ms);
  poll();
  ASSERT_TRUE(out);
  EXPECT_EQ(out->value(), 7);
  EXPECT_EQ(start_times(), (std::vector<bulwark::clock::duration>{0ms, 100ms, 300ms}));
}

TEST_F(retry_test, gives_up_after_max_attempts_with_the_last_error) {
  op.script = {bulwark::error(errc::unavailable, "down")};
  start(policy(3), options());
  clk.advance(100ms);
  poll();
  clk.advance(200ms);
  poll();
  ASSERT_TRUE(out);
  EXPECT_EQ(out->error(), errc::unavailable);
  EXPECT_EQ(op.started.size(), 3u);
  clk.advance(10s);
  poll();
  EXPECT_EQ(op.started.size(), 3u);
}

TEST_F(retry_test, a_permanent_error_is_not_retried) {
  op.script = {errc::invalid_argument, 1};
  start(policy(), options());
  ASSERT_TRUE(out);
  EXPECT_EQ(out->error(), errc::invalid_argument);
  EXPECT_EQ(op.started.size(), 1u);
}

TEST_F(retry_test, the_policy_retry_if_decides) {
  op.script = {errc::unavailable, 1};
  auto p = policy();
  p.retry_if = [](const bulwark::error& e) { return e == errc::conflict; };
  start(p, options());
  ASSERT_TRUE(out);
  EXPECT_EQ(out->error(), errc::unavailable);
  EXPECT_EQ(op.started.size(), 1u);
}

TEST_F(retry_test, a_non_idempotent_operation_is_not_retried_after_a_timeout) {
  op.script = {errc::timeout, 1};
  auto o = options();
  o.idempotent = false;
  start(policy(), o);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->error(), errc::timeout) << "its outcome is unknown";
  EXPECT_EQ(op.started.size(), 1u);
}

TEST_F(retry_test, an_operation_is_not_assumed_idempotent_by_default) {
  op.script = {errc::timeout, 1};
  bulwark::retry_options o;
  o.clock = clk;
  start(policy(), o);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->error(), errc::timeout) << "retried although nobody said it may run twice";
  EXPECT_EQ(op.started.size(), 1u);
}

TEST_F(retry_test, a_non_idempotent_operation_is_retried_when_it_was_refused_before_running) {
  op.script = {errc::unavailable, errc::rejected, errc::circuit_open, 5};
  auto o = options();
  o.idempotent = false;
  start(policy(), o);
  clk.advance(100ms);
  poll();
  clk.advance(200ms);
  poll();
  clk.advance(400ms);
  poll();
  ASSERT_TRUE(out);
  EXPECT_EQ(out->value(), 5);
  EXPECT_EQ(op.started.size(), 4u);
}

TEST_F(retry_test, never_sleeps_past_the_deadline_and_returns_the_last_error_at_once) {
  op.script = {bulwark::error(errc::unavailable, "down")};
  auto o = options();
  o.deadline = bulwark::deadline::after(250ms, clk);
  start(policy(), o);
  clk.advance(100ms); // attempt 2 at 100 ms; the next wait (200 ms) would end at 300 ms
  poll();
  ASSERT_TRUE(out) << "no wait that the deadline would cut";
  EXPECT_EQ(out->error(), errc::unavailable);
  EXPECT_EQ(out->error().detail(), "down");
  EXPECT_EQ(start_times(), (std::vector<bulwark::clock::duration>{0ms, 100ms}));
}

TEST_F(retry_test, an_attempt_that_never_returns_is_cut_at_the_deadline) {
  auto wake = std::make_shared<bulwark::detail::notifier>();
  int attempts = 0;
  auto make = [wake, &attempts]() -> bulwark::task<int> {
    ++attempts;
    return [](std::shared_ptr<bulwark::detail::notifier> w) -> bulwark::task<int> {
      co_await w->async_wait(asio::use_awaitable);
      co_return 1;
    }(wake);
  };
  auto o = options();
  o.deadline = bulwark::deadline::after(1s, clk);
  spawn_into(ctx, bulwark::retry<int>(make, policy(), o), &out);
  poll();
  clk.advance(999ms);
  poll();
  EXPECT_FALSE(out);
  clk.advance(1ms);
  poll();
  ASSERT_TRUE(out);
  EXPECT_EQ(out->error(), errc::timeout);
  EXPECT_EQ(attempts, 1);
  wake->notify();
  poll();
}

TEST_F(retry_test, a_deadline_already_passed_runs_no_attempt) {
  op.script = {1};
  auto o = options();
  o.deadline = bulwark::deadline::after(0ms, clk);
  start(policy(), o);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->error(), errc::timeout);
  EXPECT_TRUE(op.started.empty());
}

TEST_F(retry_test, a_cancelled_wait_ends_the_retry) {
  op.script = {errc::unavailable};
  asio::cancellation_signal cancel;
  start(policy(), options(), cancel.slot());
  cancel.emit(asio::cancellation_type::terminal);
  poll();
  ASSERT_TRUE(out);
  EXPECT_EQ(out->error(), errc::cancelled);
  clk.advance(10s);
  poll();
  EXPECT_EQ(op.started.size(), 1u);
}

TEST_F(retry_test, jitter_comes_from_the_injected_generator_and_on_retry_sees_each_delay) {
  op.script = {errc::unavailable, errc::unavailable, 1};
  auto p = policy();
  p.delays.jitter = true;
  auto o = options();
  auto gen = std::make_shared<std::mt19937_64>(7);
  o.rng = [gen]() { return (*gen)(); };
  std::vector<std::chrono::milliseconds> seen;
  o.on_retry = [&seen](unsigned, const bulwark::error&, std::chrono::milliseconds d) { seen.push_back(d); };
  start(p, o);
  std::mt19937_64 same(7);
  const auto d1 = p.delay(1, same);
  const auto d2 = p.delay(2, same);
  clk.advance(d1);
  poll();
  clk.advance(d2);
  poll();
  ASSERT_TRUE(out);
  EXPECT_EQ(out->value(), 1);
  EXPECT_EQ(seen, (std::vector<std::chrono::milliseconds>{d1, d2}));
  EXPECT_EQ(start_times(), (std::vector<bulwark::clock::duration>{0ms, d1, d1 + d2}));
}
