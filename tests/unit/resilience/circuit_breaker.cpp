// circuit_breaker: every transition of its state machine on a manual clock, the probe bound and
// the probe timeout (the regression test for resilience4j's breaker stuck half-open by a probe
// that never returns), callbacks and metrics.
#include <bulwark/detail/notifier.hpp>
#include <bulwark/resilience/circuit_breaker.hpp>

#include "support/run.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using bulwark::circuit_breaker;
using bulwark::errc;
using state = bulwark::circuit_breaker::state;

namespace {

// The operations a breaker guards here; each counts that it ran.
bulwark::task<int> answers(std::shared_ptr<int> runs, bulwark::result<int> r) {
  ++*runs;
  co_return r;
}

// Takes `d` on the clock, then answers.
bulwark::task<int> takes(std::shared_ptr<int> runs, bulwark::clock clk, bulwark::clock::duration d,
                         bulwark::result<int> r) {
  ++*runs;
  const bool reached = co_await clk.wait_for(d);
  if (!reached) co_return errc::cancelled;
  co_return r;
}

// Never returns unless woken: parks on a notifier, which ignores cancellation by design.
bulwark::task<int> never_returns(std::shared_ptr<bulwark::detail::notifier> wake) {
  co_await wake->async_wait(asio::use_awaitable);
  co_return 1;
}

using bulwark::test::spawn_into;

struct breaker_test : ::testing::Test {
  asio::io_context ctx;
  bulwark::clock clk = bulwark::clock::manual();
  std::shared_ptr<int> runs = std::make_shared<int>(0);
  std::vector<std::pair<state, state>> moves;

  circuit_breaker::options opts() {
    circuit_breaker::options o;
    o.name = "db";
    o.window_size = 10;
    o.minimum_calls = 4;
    o.failure_rate_threshold = 0.5;
    o.open_duration = 10s;
    o.half_open_probes = 2;
    o.probe_timeout = 1s;
    o.clock = clk;
    o.on_state_change = [this](state from, state to) { moves.emplace_back(from, to); };
    return o;
  }

  // test::run leaves the context stopped when it ran out of work.
  void poll() {
    ctx.restart();
    ctx.poll();
  }
  bulwark::result<int> run(circuit_breaker& b, bulwark::result<int> r) {
    return bulwark::test::run(ctx, b.call(answers(runs, std::move(r))), 10s);
  }
  void fail(circuit_breaker& b, int n = 1) {
    for (int i = 0; i < n; ++i) EXPECT_EQ(run(b, errc::unavailable).error(), errc::unavailable);
  }
  void succeed(circuit_breaker& b, int n = 1) {
    for (int i = 0; i < n; ++i) EXPECT_TRUE(run(b, 1).has_value());
  }
  // Opens a fresh breaker of opts() by four failures.
  void open(circuit_breaker& b) {
    fail(b, 4);
    ASSERT_EQ(b.current(), state::open);
  }
};

} // namespace

TEST_F(breaker_test, opens_by_failure_rate_once_the_window_holds_the_minimum_calls) {
  circuit_breaker b(opts());
  fail(b, 3);
  EXPECT_EQ(b.current(), state::closed) << "3 calls, below minimum_calls 4";
  EXPECT_TRUE(moves.empty());
  succeed(b); // 3 failures of 4: 0.75 >= 0.5
  EXPECT_EQ(b.current(), state::open);
  EXPECT_FALSE(b.permits());
  ASSERT_EQ(moves.size(), 1u);
  EXPECT_EQ(moves[0], std::pair(state::closed, state::open));

  const int before = *runs;
  auto refused = run(b, 1);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error(), errc::circuit_open);
  EXPECT_EQ(refused.error().detail(), "circuit breaker 'db' is open");
  EXPECT_EQ(*runs, before) << "a refused call does not run";
}

TEST_F(breaker_test, stays_closed_below_the_failure_rate) {
  circuit_breaker b(opts());
  for (int i = 0; i < 5; ++i) {
    fail(b);
    succeed(b, 3); // 1 in 4 fails
  }
  EXPECT_EQ(b.current(), state::closed);
}

TEST_F(breaker_test, errors_that_are_answers_are_not_failures_and_the_predicate_decides) {
  circuit_breaker b(opts());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(run(b, errc::not_found).error(), errc::not_found);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(run(b, errc::conflict).error(), errc::conflict);
  EXPECT_EQ(b.current(), state::closed);
  // unavailable is a failure: the breaker opens within these ten (the last ones are refused)
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(run(b, errc::unavailable).has_value());
  EXPECT_EQ(b.current(), state::open);
  EXPECT_EQ(run(b, 1).error(), errc::circuit_open);

  auto o = opts();
  o.record_failure = [](const bulwark::error& e) { return e == errc::conflict; };
  circuit_breaker custom(o);
  fail(custom, 10);
  EXPECT_EQ(custom.current(), state::closed) << "unavailable is not a failure under this predicate";
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(run(custom, errc::conflict).has_value());
  EXPECT_EQ(custom.current(), state::open);
}

TEST_F(breaker_test, timeouts_count_as_failures_by_default) {
  circuit_breaker b(opts());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(run(b, errc::timeout).error(), errc::timeout);
  EXPECT_EQ(b.current(), state::open);
}

TEST_F(breaker_test, opens_by_slow_call_rate) {
  auto o = opts();
  o.minimum_calls = 2;
  o.slow_call_duration = 2s;
  o.slow_call_rate_threshold = 0.5;
  circuit_breaker b(o);

  std::optional<bulwark::result<int>> fast, slow1, slow2;
  spawn_into(ctx, b.call(takes(runs, clk, 1999ms, 1)), &fast);
  poll();
  clk.advance(1999ms);
  poll();
  ASSERT_TRUE(fast && fast->has_value());
  spawn_into(ctx, b.call(takes(runs, clk, 1999ms, 1)), &fast);
  poll();
  clk.advance(1999ms);
  poll();
  EXPECT_EQ(b.current(), state::closed) << "two calls just under slow_call_duration";

  spawn_into(ctx, b.call(takes(runs, clk, 2s, 1)), &slow1);
  spawn_into(ctx, b.call(takes(runs, clk, 2s, 1)), &slow2);
  poll();
  clk.advance(2s);
  poll();
  ASSERT_TRUE(slow1 && slow2);
  EXPECT_TRUE(slow1->has_value()) << "a slow success is still the caller's success";
  // Window: fast, fast, slow, slow: 0.5 >= 0.5.
  EXPECT_EQ(b.current(), state::open);
}

TEST_F(breaker_test, count_window_slides_over_the_last_n_calls) {
  auto o = opts();
  o.window_size = 4;
  circuit_breaker b(o);
  fail(b);
  succeed(b, 4); // the failure slid out: S S S S
  fail(b);       // S S S F: 0.25
  EXPECT_EQ(b.current(), state::closed);
  fail(b); // S S F F: 0.5 (all calls since the start: 3 of 7, which would stay closed)
  EXPECT_EQ(b.current(), state::open);
}

// Regression: a count window smaller than minimum_calls can never hold minimum_calls outcomes,
// so the breaker stayed closed through any number of failures (resilience4j caps the minimum at
// the window size for the same reason).
TEST_F(breaker_test, a_count_window_smaller_than_minimum_calls_still_opens_once_full) {
  auto o = opts();
  o.window_size = 3;
  o.minimum_calls = 20;
  circuit_breaker b(o);
  fail(b, 2);
  EXPECT_EQ(b.current(), state::closed) << "the window is not full yet";
  fail(b);
  EXPECT_EQ(b.current(), state::open) << "3 failures of 3 calls, a full window";
  EXPECT_EQ(b.settings().minimum_calls, 3u);
}

TEST_F(breaker_test, time_window_slides_by_the_second) {
  auto o = opts();
  o.window = circuit_breaker::window_kind::time;
  o.window_duration = 10s;
  o.minimum_calls = 3;
  circuit_breaker b(o);
  fail(b, 2); // second 0
  clk.advance(10s);
  succeed(b); // second 10: second 0 slid out; a window of all calls would hold F F S (0.67)
  EXPECT_EQ(b.current(), state::closed);
  succeed(b, 2);
  fail(b, 2); // S S S F F: 0.4
  EXPECT_EQ(b.current(), state::closed);
  clk.advance(9s); // second 19: second 10 is still in the window
  fail(b);         // S S S F F F: 0.5
  EXPECT_EQ(b.current(), state::open);
}

TEST_F(breaker_test, time_window_forgets_everything_after_a_long_gap) {
  auto o = opts();
  o.window = circuit_breaker::window_kind::time;
  o.window_duration = 5s;
  circuit_breaker b(o);
  fail(b, 3);
  clk.advance(1h);
  succeed(b, 1);
  fail(b, 2); // S F F: 3 calls, below minimum 4, if the old failures are gone
  EXPECT_EQ(b.current(), state::closed);
  fail(b); // S F F F
  EXPECT_EQ(b.current(), state::open);
}

TEST_F(breaker_test, open_turns_half_open_after_open_duration) {
  circuit_breaker b(opts());
  open(b);
  clk.advance(9999ms);
  EXPECT_EQ(b.current(), state::open);
  EXPECT_FALSE(b.permits());
  EXPECT_EQ(run(b, 1).error(), errc::circuit_open);
  clk.advance(1ms);
  EXPECT_EQ(b.current(), state::half_open);
  EXPECT_TRUE(b.permits());
  succeed(b);
  ASSERT_EQ(moves.size(), 2u);
  EXPECT_EQ(moves[1], std::pair(state::open, state::half_open));
}

TEST_F(breaker_test, half_open_admits_only_the_probe_budget_and_closes_when_all_succeed) {
  circuit_breaker b(opts());
  open(b);
  clk.advance(10s);
  std::optional<bulwark::result<int>> p1, p2, third;
  spawn_into(ctx, b.call(takes(runs, clk, 500ms, 1)), &p1);
  spawn_into(ctx, b.call(takes(runs, clk, 500ms, 2)), &p2);
  poll();
  const int started = *runs;
  EXPECT_FALSE(b.permits());
  spawn_into(ctx, b.call(answers(runs, 3)), &third);
  poll();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->error(), errc::circuit_open);
  EXPECT_EQ(third->error().detail(), "circuit breaker 'db' is half-open and its probes are in flight");
  EXPECT_EQ(*runs, started) << "the call beyond the budget did not run";

  clk.advance(500ms);
  poll();
  ASSERT_TRUE(p1 && p2);
  EXPECT_EQ(p1->value(), 1);
  EXPECT_EQ(p2->value(), 2);
  EXPECT_EQ(b.current(), state::closed);
  const std::vector<std::pair<state, state>> expected{
      {state::closed, state::open}, {state::open, state::half_open}, {state::half_open, state::closed}};
  EXPECT_EQ(moves, expected);
  fail(b, 3);
  EXPECT_EQ(b.current(), state::closed) << "closing started a fresh window: 3 calls, below minimum_calls";
}

TEST_F(breaker_test, a_failed_probe_opens_again_for_a_full_open_duration) {
  circuit_breaker b(opts());
  open(b);
  clk.advance(10s);
  succeed(b); // one probe of two succeeded
  EXPECT_EQ(b.current(), state::half_open);
  clk.advance(3s);
  fail(b);
  EXPECT_EQ(b.current(), state::open);
  clk.advance(9999ms);
  EXPECT_EQ(b.current(), state::open) << "open_duration counts from the failed probe";
  clk.advance(1ms);
  EXPECT_EQ(b.current(), state::half_open);
  EXPECT_EQ(moves.back(), std::pair(state::half_open, state::open));
}

TEST_F(breaker_test, a_slow_probe_opens_again) {
  auto o = opts();
  o.slow_call_duration = 300ms;
  circuit_breaker b(o);
  open(b);
  clk.advance(10s);
  std::optional<bulwark::result<int>> probe;
  spawn_into(ctx, b.call(takes(runs, clk, 300ms, 1)), &probe);
  poll();
  clk.advance(300ms);
  poll();
  ASSERT_TRUE(probe && probe->has_value());
  EXPECT_EQ(b.current(), state::open);
}

// The regression test for resilience4j's defect: a half-open probe that never returns. With the
// probe unbounded, the breaker would stay half-open (refusing every call) for ever.
TEST_F(breaker_test, a_probe_that_never_returns_times_out_and_reopens_the_breaker) {
  auto o = opts();
  o.half_open_probes = 1;
  circuit_breaker b(o);
  open(b);
  clk.advance(10s);
  auto wake = std::make_shared<bulwark::detail::notifier>();
  std::optional<bulwark::result<int>> probe;
  spawn_into(ctx, b.call(never_returns(wake)), &probe);
  poll();
  EXPECT_FALSE(probe);
  EXPECT_EQ(run(b, 1).error(), errc::circuit_open) << "the probe budget is spent";

  clk.advance(999ms);
  poll();
  EXPECT_FALSE(probe) << "one millisecond before the probe timeout";
  EXPECT_EQ(b.current(), state::half_open);
  clk.advance(1ms);
  poll();
  ASSERT_TRUE(probe);
  EXPECT_EQ(probe->error(), errc::timeout);
  EXPECT_EQ(b.current(), state::open) << "the probe's timeout is a failure";

  // Not stuck: the next period probes again and a good probe closes it.
  clk.advance(10s);
  succeed(b);
  EXPECT_EQ(b.current(), state::closed);

  wake->notify(); // the abandoned probe finally returns: it changes nothing
  poll();
  EXPECT_EQ(b.current(), state::closed);
}

TEST_F(breaker_test, a_probe_permit_never_reported_is_written_off_after_the_probe_timeout) {
  auto o = opts();
  o.half_open_probes = 1;
  circuit_breaker b(o);
  open(b);
  clk.advance(10s);
  auto lost = b.try_acquire();
  ASSERT_TRUE(lost);
  EXPECT_TRUE(lost->probe);
  clk.advance(999ms);
  EXPECT_FALSE(b.try_acquire());
  EXPECT_EQ(b.current(), state::half_open);
  clk.advance(1ms);
  EXPECT_FALSE(b.try_acquire()) << "the write-off opens the breaker and refuses this call";
  EXPECT_EQ(b.current(), state::open);
  b.record_success(*lost); // too late: from a period that ended
  EXPECT_EQ(b.current(), state::open);

  clk.advance(10s); // the next half-open round
  auto fresh = b.try_acquire();
  ASSERT_TRUE(fresh);
  b.record_success(*lost); // still from the first round: not this round's probe
  EXPECT_EQ(b.current(), state::half_open);
  b.record_success(*fresh);
  EXPECT_EQ(b.current(), state::closed);
}

TEST_F(breaker_test, low_level_api_counts_like_call) {
  circuit_breaker b(opts());
  for (int i = 0; i < 4; ++i) {
    auto p = b.try_acquire();
    ASSERT_TRUE(p);
    EXPECT_FALSE(p->probe);
    b.record_error(*p, errc::unavailable);
  }
  EXPECT_EQ(b.current(), state::open);
  EXPECT_FALSE(b.try_acquire());
  clk.advance(10s);
  auto p1 = b.try_acquire();
  auto p2 = b.try_acquire();
  ASSERT_TRUE(p1 && p2);
  EXPECT_FALSE(b.try_acquire());
  b.record_ignored(*p2); // its caller gave up: the permit goes back
  auto p3 = b.try_acquire();
  ASSERT_TRUE(p3);
  b.record_success(*p1);
  EXPECT_EQ(b.current(), state::half_open);
  b.record_success(*p3);
  EXPECT_EQ(b.current(), state::closed);
}

TEST_F(breaker_test, try_acquire_closed_admits_only_while_closed_and_counts_no_refusal) {
  auto reg = std::make_shared<bulwark::metrics::registry>();
  auto o = opts();
  o.metrics = reg;
  circuit_breaker b(o);
  auto p = b.try_acquire_closed();
  ASSERT_TRUE(p);
  EXPECT_FALSE(p->probe);
  b.record_ignored(*p); // an outcome that counts for nothing: four failures still open it
  open(b);
  const auto moves_when_open = moves.size();
  EXPECT_FALSE(b.try_acquire_closed());
  clk.advance(10s); // past open_duration: half-open for try_acquire, still no permit here
  EXPECT_FALSE(b.try_acquire_closed());
  EXPECT_EQ(moves.size(), moves_when_open) << "no transition made, no callback run";
  EXPECT_NE(reg->expose().find("bulwark_circuit_breaker_refused_total{name=\"db\"} 0\n"), std::string::npos);
  auto probe = b.try_acquire(); // the full admission still takes the probe
  ASSERT_TRUE(probe && probe->probe);
  b.record_success(*probe);
}

TEST_F(breaker_test, an_outcome_from_an_earlier_period_changes_nothing) {
  auto o = opts();
  o.minimum_calls = 1;
  o.half_open_probes = 1;
  circuit_breaker b(o);
  std::optional<bulwark::result<int>> old_call;
  spawn_into(ctx, b.call(takes(runs, clk, 15s, bulwark::result<int>(errc::unavailable))), &old_call);
  poll(); // admitted while closed, fails at 15 s
  fail(b);
  ASSERT_EQ(b.current(), state::open);
  clk.advance(10s);
  succeed(b); // the probe closes it: a fresh window
  ASSERT_EQ(b.current(), state::closed);
  clk.advance(5s);
  poll();
  ASSERT_TRUE(old_call);
  EXPECT_EQ(old_call->error(), errc::unavailable);
  EXPECT_EQ(b.current(), state::closed)
      << "the failure of a call admitted before the breaker opened does not count in the new window";
}

TEST_F(breaker_test, a_cancelled_caller_returns_its_probe_permit) {
  auto o = opts();
  o.half_open_probes = 1;
  circuit_breaker b(o);
  open(b);
  clk.advance(10s);
  asio::cancellation_signal cancel;
  std::optional<bulwark::result<int>> probe;
  auto store = [](bulwark::task<int> inner, std::optional<bulwark::result<int>>* into) -> asio::awaitable<void> {
    into->emplace(co_await std::move(inner));
  };
  asio::co_spawn(ctx, store(b.call(takes(runs, clk, 500ms, 1)), &probe),
                 asio::bind_cancellation_slot(cancel.slot(), asio::detached));
  poll();
  EXPECT_FALSE(b.permits());
  cancel.emit(asio::cancellation_type::terminal);
  poll();
  ASSERT_TRUE(probe);
  EXPECT_EQ(probe->error(), errc::cancelled);
  EXPECT_EQ(b.current(), state::half_open) << "a cancelled probe says nothing about the dependency";
  EXPECT_TRUE(b.permits());
  succeed(b);
  EXPECT_EQ(b.current(), state::closed);
}

TEST_F(breaker_test, metrics_show_state_transitions_refusals_and_outcomes) {
  auto reg = std::make_shared<bulwark::metrics::registry>();
  auto o = opts();
  o.metrics = reg;
  circuit_breaker b(o);
  succeed(b);
  fail(b, 3);
  EXPECT_FALSE(run(b, 1).has_value()); // refused
  EXPECT_FALSE(run(b, 1).has_value()); // refused
  const auto text = reg->expose();
  EXPECT_NE(text.find("bulwark_circuit_breaker_state{name=\"db\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("bulwark_circuit_breaker_transitions_total{name=\"db\",from=\"closed\",to=\"open\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("bulwark_circuit_breaker_transitions_total{name=\"db\",from=\"half_open\",to=\"closed\"} 0\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("bulwark_circuit_breaker_refused_total{name=\"db\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("bulwark_circuit_breaker_calls_total{name=\"db\",outcome=\"failure\"} 3\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("bulwark_circuit_breaker_calls_total{name=\"db\",outcome=\"success\"} 1\n"), std::string::npos)
      << text;

  clk.advance(10s);
  EXPECT_EQ(b.current(), state::half_open);
  succeed(b, 2);
  const auto after = reg->expose();
  EXPECT_NE(after.find("bulwark_circuit_breaker_state{name=\"db\"} 0\n"), std::string::npos) << after;
  EXPECT_NE(after.find("bulwark_circuit_breaker_transitions_total{name=\"db\",from=\"half_open\",to=\"closed\"} 1\n"),
            std::string::npos)
      << after;
}

TEST_F(breaker_test, an_exception_is_a_failure_and_propagates) {
  circuit_breaker b(opts());
  auto throws = []() -> bulwark::task<int> {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    throw std::runtime_error("boom");
  };
  for (int i = 0; i < 4; ++i) EXPECT_THROW((void)bulwark::test::run(ctx, b.call(throws()), 10s), std::runtime_error);
  EXPECT_EQ(b.current(), state::open);
}

TEST_F(breaker_test, shared_by_two_threads_it_counts_every_call) {
  auto o = opts();
  o.window_size = 1000;
  o.minimum_calls = 1000;
  circuit_breaker b(o);
  auto worker = [&b](int n) {
    asio::io_context own;
    auto count = std::make_shared<int>(0);
    for (int i = 0; i < n; ++i)
      (void)bulwark::test::run(
          own, b.call(answers(count, i % 2 ? bulwark::result<int>(1) : bulwark::result<int>(errc::unavailable))));
  };
  std::thread t1(worker, 500), t2(worker, 499);
  t1.join();
  t2.join();
  EXPECT_EQ(b.current(), state::closed) << "999 calls, below minimum 1000";
  fail(b);
  EXPECT_EQ(b.current(), state::open) << "the 1000th call: every call of both threads was counted";
}

// Successes in a clean count window are counted without the lock (circuit_breaker's fast_ word)
// and taken into the window at its next locked update: they must weigh exactly as if recorded one
// by one, towards minimum_calls too.
TEST_F(breaker_test, successes_counted_without_the_lock_still_fill_the_window) {
  auto o = opts();
  o.window_size = 4;
  circuit_breaker b(o);
  succeed(b, 2); // a clean window: both without the lock
  fail(b);       // S S F: 3 calls, below minimum_calls 4
  EXPECT_EQ(b.current(), state::closed);
  fail(b); // S S F F: 0.5 of 4 calls (had the successes been lost: 2 calls, closed)
  EXPECT_EQ(b.current(), state::open);
}

TEST_F(breaker_test, more_successes_without_the_lock_than_the_window_holds_leave_it_full_of_successes) {
  auto o = opts();
  o.window_size = 4;
  circuit_breaker b(o);
  succeed(b, 10);
  fail(b); // S S S F
  EXPECT_EQ(b.current(), state::closed);
  fail(b); // S S F F
  EXPECT_EQ(b.current(), state::open);
}

TEST_F(breaker_test, a_success_admitted_without_the_lock_in_an_earlier_period_changes_nothing) {
  auto o = opts();
  o.window_size = 4;
  o.half_open_probes = 1;
  circuit_breaker b(o);
  const auto old_permit = b.try_acquire(); // closed: admitted without the lock
  ASSERT_TRUE(old_permit);
  open(b);
  clk.advance(10s);
  succeed(b); // the probe closes it: a fresh window
  ASSERT_EQ(b.current(), state::closed);
  b.record_success(*old_permit);
  fail(b, 3); // F F F: 3 calls, below minimum 4 (with the old success counted: 0.75 of 4, open)
  EXPECT_EQ(b.current(), state::closed);
  fail(b);
  EXPECT_EQ(b.current(), state::open);
}

TEST_F(breaker_test, successes_of_two_threads_without_the_lock_are_all_counted) {
  auto o = opts();
  o.window_size = 1000;
  o.minimum_calls = 1000;
  o.failure_rate_threshold = 0.2;
  circuit_breaker b(o);
  auto worker = [&b](int n) {
    asio::io_context own;
    auto count = std::make_shared<int>(0);
    for (int i = 0; i < n; ++i) (void)bulwark::test::run(own, b.call(answers(count, 1)));
  };
  std::thread t1(worker, 400), t2(worker, 400);
  t1.join();
  t2.join();
  fail(b, 199);
  EXPECT_EQ(b.current(), state::closed) << "999 calls, below minimum 1000";
  fail(b);
  EXPECT_EQ(b.current(), state::open) << "0.2 of 1000 calls: all 800 successes were counted";
}
