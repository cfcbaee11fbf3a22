// singleflight: concurrent runs for a key share one execution (counted), its result or error or
// exception reaches every waiter, a cancelled waiter leaves alone, a later run executes again,
// callers on two threads share one execution, and an allocation failing before an execution runs forgets its key.
#include <bulwark/clock.hpp>
#include <bulwark/detail/notifier.hpp>
#include <bulwark/resilience/singleflight.hpp>

#include "support/run.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using bulwark::errc;

namespace {

// A load (the make() of a run) that takes `d` on the clock and answers `value`, counting its
// executions. It returns errc::cancelled if it is ever cancelled, so a test sees a cancellation
// that leaked into the shared execution.
bulwark::task<std::string> run_load(std::shared_ptr<std::atomic<int>> executions, bulwark::clock clk,
                                    bulwark::clock::duration d, bulwark::result<std::string> value) {
  ++*executions;
  const bool reached = co_await clk.wait_for(d);
  if (!reached) co_return bulwark::error(errc::cancelled, "the shared load was cancelled");
  co_return value;
}

std::function<bulwark::task<std::string>()> load(std::shared_ptr<std::atomic<int>> executions, bulwark::clock clk,
                                                 bulwark::clock::duration d, bulwark::result<std::string> value) {
  return [=]() -> bulwark::task<std::string> { return run_load(executions, clk, d, value); };
}

using bulwark::test::spawn_into;

struct singleflight_test : ::testing::Test {
  asio::io_context ctx;
  bulwark::clock clk = bulwark::clock::manual();
  std::shared_ptr<std::atomic<int>> executions = std::make_shared<std::atomic<int>>(0);
  bulwark::singleflight<std::string> flights;

  void poll() {
    ctx.restart();
    ctx.poll();
  }
};

} // namespace

TEST_F(singleflight_test, concurrent_runs_for_a_key_share_one_execution) {
  std::optional<bulwark::result<std::string>> r[3];
  for (auto& x : r) spawn_into(ctx, flights.run("k", load(executions, clk, 1s, std::string("v"))), &x);
  poll();
  EXPECT_EQ(*executions, 1);
  EXPECT_EQ(flights.in_flight(), 1u);
  EXPECT_EQ(flights.waiters("k"), 3u);
  clk.advance(1s);
  poll();
  for (auto& x : r) {
    ASSERT_TRUE(x);
    EXPECT_EQ(x->value(), "v");
  }
  EXPECT_EQ(*executions, 1);
  EXPECT_EQ(flights.in_flight(), 0u) << "the key is forgotten when its execution ends";
}

TEST_F(singleflight_test, different_keys_run_separately) {
  std::optional<bulwark::result<std::string>> a, b;
  spawn_into(ctx, flights.run("a", load(executions, clk, 1s, std::string("va"))), &a);
  spawn_into(ctx, flights.run("b", load(executions, clk, 1s, std::string("vb"))), &b);
  poll();
  clk.advance(1s);
  poll();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->value(), "va");
  EXPECT_EQ(b->value(), "vb");
  EXPECT_EQ(*executions, 2);
}

TEST_F(singleflight_test, a_run_after_the_execution_ended_executes_again) {
  std::optional<bulwark::result<std::string>> first, second;
  spawn_into(ctx, flights.run("k", load(executions, clk, 1s, std::string("old"))), &first);
  poll();
  clk.advance(1s);
  poll();
  ASSERT_TRUE(first);
  spawn_into(ctx, flights.run("k", load(executions, clk, 1s, std::string("new"))), &second);
  poll();
  clk.advance(1s);
  poll();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->value(), "new") << "results are shared, never cached";
  EXPECT_EQ(*executions, 2);
}

TEST_F(singleflight_test, an_error_reaches_every_waiter) {
  std::optional<bulwark::result<std::string>> r[2];
  for (auto& x : r)
    spawn_into(ctx, flights.run("k", load(executions, clk, 1s, bulwark::error(errc::unavailable, "db down"))), &x);
  poll();
  clk.advance(1s);
  poll();
  for (auto& x : r) {
    ASSERT_TRUE(x);
    EXPECT_EQ(x->error(), errc::unavailable);
    EXPECT_EQ(x->error().detail(), "db down");
  }
  EXPECT_EQ(*executions, 1);
}

TEST_F(singleflight_test, a_cancelled_waiter_leaves_without_cancelling_the_others) {
  asio::cancellation_signal cancel_first;
  std::optional<bulwark::result<std::string>> first, second, third;
  // The first caller starts the execution, then is cancelled.
  spawn_into(ctx, flights.run("k", load(executions, clk, 1s, std::string("v"))), &first, cancel_first.slot());
  spawn_into(ctx, flights.run("k", load(executions, clk, 1s, std::string("v"))), &second);
  spawn_into(ctx, flights.run("k", load(executions, clk, 1s, std::string("v"))), &third);
  poll();
  cancel_first.emit(asio::cancellation_type::terminal);
  poll();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->error(), errc::cancelled);
  EXPECT_FALSE(second) << "the others still wait";
  EXPECT_EQ(flights.waiters("k"), 2u);
  clk.advance(1s);
  poll();
  ASSERT_TRUE(second && third);
  EXPECT_EQ(second->value(), "v") << "the shared execution was not cancelled";
  EXPECT_EQ(third->value(), "v");
  EXPECT_EQ(*executions, 1);
}

TEST_F(singleflight_test, with_every_waiter_gone_the_execution_still_ends_and_a_newcomer_shares_it) {
  asio::cancellation_signal cancel;
  std::optional<bulwark::result<std::string>> gone, late;
  spawn_into(ctx, flights.run("k", load(executions, clk, 1s, std::string("v"))), &gone, cancel.slot());
  poll();
  cancel.emit(asio::cancellation_type::terminal);
  poll();
  ASSERT_TRUE(gone);
  EXPECT_EQ(flights.in_flight(), 1u);
  spawn_into(ctx, flights.run("k", load(executions, clk, 1s, std::string("other"))), &late);
  poll();
  clk.advance(1s);
  poll();
  ASSERT_TRUE(late);
  EXPECT_EQ(late->value(), "v");
  EXPECT_EQ(*executions, 1);
  EXPECT_EQ(flights.in_flight(), 0u);
}

TEST_F(singleflight_test, an_exception_is_rethrown_in_every_waiter) {
  auto throws = []() -> bulwark::task<std::string> {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    throw std::runtime_error("boom");
  };
  int thrown = 0;
  auto wait_one = [](bulwark::singleflight<std::string>* f, std::function<bulwark::task<std::string>()> make,
                     int* thrown) -> asio::awaitable<void> {
    try {
      (void)co_await f->run("k", std::move(make));
    } catch (const std::runtime_error&) {
      ++*thrown;
    }
  };
  asio::co_spawn(ctx, wait_one(&flights, throws, &thrown), asio::detached);
  asio::co_spawn(ctx, wait_one(&flights, throws, &thrown), asio::detached);
  poll();
  EXPECT_EQ(thrown, 2);
}

// A result whose copy throws (an allocation failing while copying a big value, say).
struct fragile {
  int value = 0;
  fragile() = default;
  explicit fragile(int v) : value(v) {}
  fragile(fragile&&) noexcept = default;
  fragile& operator=(fragile&&) noexcept = default;
  fragile(const fragile&) { throw std::runtime_error("copy failed"); }
  fragile& operator=(const fragile&) { throw std::runtime_error("copy failed"); }
};

// Regression: the copies for the waiters were made under the lock inside the execution; the
// first copy that threw left the execution with every waiter settled but never resumed, so each
// caller vanished (its coroutine destroyed unresumed, its completion never called).
TEST(singleflight, a_copy_that_throws_is_rethrown_in_its_waiter_and_no_waiter_is_lost) {
  asio::io_context ctx;
  bulwark::singleflight<fragile> flights;
  auto make = []() -> bulwark::task<fragile> {
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    co_return fragile(7);
  };
  int thrown = 0, finished = 0;
  auto wait_one = [](bulwark::singleflight<fragile>* f, std::function<bulwark::task<fragile>()> mk, int* thrown,
                     int* finished) -> asio::awaitable<void> {
    try {
      (void)co_await f->run("k", std::move(mk));
    } catch (const std::runtime_error&) {
      ++*thrown;
    }
    ++*finished;
  };
  asio::co_spawn(ctx, wait_one(&flights, make, &thrown, &finished), asio::detached);
  asio::co_spawn(ctx, wait_one(&flights, make, &thrown, &finished), asio::detached);
  // Bounded: the lost waiters kept the context's work outstanding, so run() never returned.
  ctx.run_for(10s);
  EXPECT_EQ(finished, 2) << "every caller resumes";
  EXPECT_EQ(thrown, 2) << "each waiter's failed copy is its own exception";
  EXPECT_EQ(flights.in_flight(), 0u);
}

TEST(singleflight, callers_on_two_threads_share_one_execution) {
  bulwark::singleflight<std::string> flights;
  auto executions = std::make_shared<std::atomic<int>>(0);
  auto gate = std::make_shared<bulwark::detail::notifier>();
  auto make = [executions, gate]() -> bulwark::task<std::string> {
    return [](std::shared_ptr<std::atomic<int>> n,
              std::shared_ptr<bulwark::detail::notifier> g) -> bulwark::task<std::string> {
      ++*n;
      co_await g->async_wait(asio::use_awaitable);
      co_return std::string("shared");
    }(executions, gate);
  };
  constexpr int per_thread = 50;
  asio::io_context c1, c2;
  std::vector<std::optional<bulwark::result<std::string>>> r1(per_thread), r2(per_thread);
  for (int i = 0; i < per_thread; ++i) {
    spawn_into(c1, flights.run("k", make), &r1[static_cast<std::size_t>(i)]);
    spawn_into(c2, flights.run("k", make), &r2[static_cast<std::size_t>(i)]);
  }
  std::thread t1([&] { c1.run(); }), t2([&] { c2.run(); });
  // Every caller joins before the execution may end (busy wait, bounded: no sleep).
  const auto limit = std::chrono::steady_clock::now() + 10s;
  while (flights.waiters("k") < 2 * per_thread && std::chrono::steady_clock::now() < limit) std::this_thread::yield();
  EXPECT_EQ(flights.waiters("k"), 2u * per_thread);
  gate->notify();
  t1.join();
  t2.join();
  EXPECT_EQ(*executions, 1);
  for (auto* rs : {&r1, &r2})
    for (auto& r : *rs) {
      ASSERT_TRUE(r);
      EXPECT_EQ(r->value(), "shared");
    }
}

// Callers on one io_context run by two threads (the other two-thread test gives each thread its
// own context). The defect it stands for: a waiter may be resumed on another thread of its
// executor as soon as it is listed in the flight (the flight ending there): join() went on writing
// `joined` in the coroutine's frame and installing the handler in its cancellation slot after that
// point. The interleaving is narrow: this test did not hit it on the old code here (dev, and tsan
// with --gtest_repeat), so it is a stress test, not a proof.
TEST(singleflight, waiters_on_one_context_run_by_two_threads_are_resumed_safely) {
  bulwark::singleflight<std::string> flights;
  std::atomic<int> done{0};
  auto make = []() -> bulwark::task<std::string> {
    // Ends at once: flights end as fast as waiters join, which is the window.
    return []() -> bulwark::task<std::string> { co_return std::string("v"); }();
  };
  auto one = [](bulwark::singleflight<std::string>* f, std::function<bulwark::task<std::string>()> mk,
                std::atomic<int>* done) -> asio::awaitable<void> {
    auto r = co_await f->run("k", std::move(mk));
    if (r && r.value() == "v") ++*done;
  };
  asio::io_context ctx(2);
  constexpr int calls = 20000;
  for (int i = 0; i < calls; ++i) asio::co_spawn(ctx, one(&flights, make, &done), asio::detached);
  std::thread t1([&] { ctx.run(); }), t2([&] { ctx.run(); });
  t1.join();
  t2.join();
  EXPECT_EQ(done, calls);
  EXPECT_EQ(flights.in_flight(), 0u);
}

// Allocation failure on cue. This replaces the global operator new of the test executable; it
// fails only on the thread that armed it, only allocations of `fail_size` bytes, and only after
// `fail_skip` of them succeeded; then it disarms. Everywhere else it is malloc.
namespace {
thread_local std::size_t fail_size = 0; // 0: disarmed
thread_local int fail_skip = 0;
} // namespace

void* operator new(std::size_t size) {
  if (fail_size != 0 && size == fail_size && fail_skip-- == 0) {
    fail_size = 0;
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

// Regression: the key went into the map of flights before the execution was spawned, and nothing
// took it out when something between the two threw (an allocation: the spawn's, its frame's, the
// key's copy for the execution): every later caller for the key joined a flight that never ran
// and waited forever (with Asio 1.22 the exception left through the initiation's noexcept
// await_suspend: std::terminate). The key is long, so each copy of it allocates `key.size() + 1`
// bytes: the caller's copy (run) and the map's succeed, the copy for the execution fails.
TEST(singleflight, an_allocation_failing_before_the_execution_runs_fails_its_caller_and_forgets_the_key) {
  asio::io_context ctx;
  bulwark::singleflight<std::string> flights;
  const std::string key(777, 'k');
  auto executions = std::make_shared<std::atomic<int>>(0);
  std::function<bulwark::task<std::string>()> make = [executions]() -> bulwark::task<std::string> {
    return [](std::shared_ptr<std::atomic<int>> n) -> bulwark::task<std::string> {
      ++*n;
      co_return std::string("v");
    }(executions);
  };
  bool bad_alloc_seen = false;
  auto first = [](bulwark::singleflight<std::string>* f, const std::string* k,
                  std::function<bulwark::task<std::string>()> mk, bool* seen) -> asio::awaitable<void> {
    fail_size = k->size() + 1;
    fail_skip = 2;
    try {
      (void)co_await f->run(*k, std::move(mk));
    } catch (const std::bad_alloc&) {
      *seen = true;
    }
    fail_size = 0;
  };
  asio::co_spawn(ctx, first(&flights, &key, make, &bad_alloc_seen), asio::detached);
  ctx.run_for(10s); // bounded
  EXPECT_TRUE(bad_alloc_seen) << "the caller gets the exception";
  EXPECT_EQ(fail_skip, -1) << "the third copy of the key failed";
  EXPECT_EQ(flights.in_flight(), 0u) << "the key is forgotten";
  EXPECT_EQ(*executions, 0);

  std::optional<bulwark::result<std::string>> later;
  spawn_into(ctx, flights.run(key, make), &later);
  ctx.restart();
  ctx.run_for(10s);
  ASSERT_TRUE(later) << "a later caller runs a new execution instead of waiting forever";
  EXPECT_EQ(later->value(), "v");
  EXPECT_EQ(*executions, 1);
}
