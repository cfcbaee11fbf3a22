// The test kit's fault decorators: each rule (fail, fail the n-th call, windows on the clock,
// hang until released or cancelled, slow by a clock duration) does what it says and nothing
// else, and the decorators still reach the wrapped model when no rule applies.
#include <bulwark/memory/cache.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/resilience/timeout.hpp>
#include <bulwark/testing/faults.hpp>

#include "support/run.hpp"

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <optional>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace testing_kit = bulwark::testing;
using testing_kit::op;

namespace {

struct fixture {
  asio::io_context ctx;
  bulwark::clock clk = bulwark::clock::manual();
  bulwark::memory::repository db;
  testing_kit::faulty_repository<bulwark::memory::repository> repo{db, clk};

  template <class T> T run(asio::awaitable<T> a) { return bulwark::test::run(ctx, std::move(a)); }

  bulwark::result<bulwark::version_t> put(std::string key, std::string value) {
    return run(repo.put(key, std::move(value), std::nullopt));
  }
  bulwark::result<std::optional<bulwark::versioned>> get(std::string key) { return run(repo.get(key)); }

  // Spawns `t` and returns its future without running the context.
  template <class T> std::future<std::optional<bulwark::result<T>>> spawn(bulwark::task<T> t) {
    return bulwark::test::spawn(ctx.get_executor(), std::move(t));
  }
  template <class F> static bool ready(const F& f) { return f.wait_for(0s) == std::future_status::ready; }
  void settle() {
    ctx.restart();
    ctx.poll();
  }
};

} // namespace

TEST(faults, no_rule_reaches_the_model) {
  fixture f;
  ASSERT_TRUE(f.put("k", "v"));
  auto got = f.get("k");
  ASSERT_TRUE(got && got.value());
  EXPECT_EQ(got.value()->value, "v");
  EXPECT_EQ(f.repo.faults().calls(op::put), 1u);
  EXPECT_EQ(f.repo.faults().calls(op::get), 1u);
  EXPECT_EQ(f.repo.faults().calls(op::every), 2u);
  EXPECT_EQ(f.repo.faults().injected(op::every), 0u);
}

TEST(faults, fail_until_cleared_and_only_that_kind) {
  fixture f;
  f.repo.faults().fail(op::put, bulwark::error(bulwark::errc::unavailable, "db down"));
  auto refused = f.put("k", "v");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), bulwark::errc::unavailable);
  EXPECT_EQ(refused.error().detail(), "db down");
  EXPECT_EQ(f.db.size(), 0u) << "a failed call must not reach the model";
  EXPECT_TRUE(f.get("k")) << "get has no rule";
  f.repo.faults().clear(op::put);
  EXPECT_TRUE(f.put("k", "v"));
  EXPECT_EQ(f.repo.faults().injected(op::put), 1u);
}

TEST(faults, every_applies_to_all_kinds) {
  fixture f;
  f.repo.faults().fail(op::every, bulwark::errc::timeout);
  EXPECT_EQ(f.get("k").error(), bulwark::errc::timeout);
  EXPECT_EQ(f.put("k", "v").error(), bulwark::errc::timeout);
  EXPECT_EQ(f.run(f.repo.erase("k")).error(), bulwark::errc::timeout);
  EXPECT_EQ(f.run(f.repo.scan("", "", 10)).error(), bulwark::errc::timeout);
  f.repo.faults().clear(op::every);
  EXPECT_TRUE(f.put("k", "v"));
}

TEST(faults, fail_nth_fails_that_call_once) {
  fixture f;
  ASSERT_TRUE(f.put("a", "1")); // calls before the rule do not count towards n
  f.repo.faults().fail_nth(op::put, 3, bulwark::errc::conflict);
  EXPECT_TRUE(f.put("a", "2"));
  EXPECT_TRUE(f.put("a", "3"));
  EXPECT_EQ(f.put("a", "4").error(), bulwark::errc::conflict);
  EXPECT_TRUE(f.put("a", "5"));
  EXPECT_EQ(f.get("a").value()->value, "5");
  EXPECT_EQ(f.repo.faults().injected(op::put), 1u);
}

TEST(faults, windows_on_the_clock_flap) {
  fixture f;
  const auto t0 = f.clk.now();
  f.repo.faults().down_between(op::get, t0 + 10s, t0 + 20s);
  f.repo.faults().down_between(op::get, t0 + 30s, t0 + 40s, bulwark::errc::timeout);
  std::vector<int> outcome; // 0 ok, else the errc
  for (int s = 0; s < 45; s += 5) {
    auto r = f.get("k");
    outcome.push_back(r ? 0 : static_cast<int>(r.error().condition()));
    f.clk.advance(5s);
  }
  const int down = static_cast<int>(bulwark::errc::unavailable), late = static_cast<int>(bulwark::errc::timeout);
  EXPECT_EQ(outcome, (std::vector<int>{0, 0, down, down, 0, 0, late, late, 0}));
}

TEST(faults, hang_until_released) {
  fixture f;
  f.repo.faults().hang(op::put);
  auto hung = f.spawn(f.repo.put("k", "v", std::nullopt));
  f.settle();
  EXPECT_FALSE(fixture::ready(hung));
  EXPECT_EQ(f.repo.faults().hung(op::put), 1u);
  EXPECT_EQ(f.db.size(), 0u);
  f.repo.faults().release(op::put);
  f.settle();
  ASSERT_TRUE(fixture::ready(hung));
  EXPECT_TRUE(*hung.get());
  EXPECT_EQ(f.db.size(), 1u);
  // Released for good: the next call does not hang.
  EXPECT_TRUE(f.put("k2", "v"));
}

TEST(faults, a_hung_call_ends_at_its_deadline_as_cancelled) {
  fixture f;
  f.repo.faults().hang(op::get);
  auto bounded = f.spawn(bulwark::with_timeout(f.repo.get("k"), 2s, f.clk, "get"));
  f.settle();
  EXPECT_FALSE(fixture::ready(bounded));
  f.clk.advance(2s);
  f.settle();
  ASSERT_TRUE(fixture::ready(bounded));
  EXPECT_EQ(bounded.get()->error(), bulwark::errc::timeout);
  // The abandoned call heard the cancellation and left the gate.
  EXPECT_EQ(f.repo.faults().hung(op::get), 0u);
  EXPECT_EQ(f.repo.faults().injected(op::get), 1u);
}

TEST(faults, slow_waits_on_the_clock_then_runs) {
  fixture f;
  f.repo.faults().slow(op::put, 300ms);
  auto slowed = f.spawn(f.repo.put("k", "v", std::nullopt));
  f.settle();
  f.clk.advance(299ms);
  f.settle();
  EXPECT_FALSE(fixture::ready(slowed));
  f.clk.advance(1ms);
  f.settle();
  ASSERT_TRUE(fixture::ready(slowed));
  EXPECT_TRUE(*slowed.get());
  EXPECT_EQ(f.db.size(), 1u);
}

TEST(faults, one_plan_shared_by_two_decorators) {
  asio::io_context ctx;
  auto plan = std::make_shared<testing_kit::fault_plan>();
  bulwark::memory::repository db;
  testing_kit::faulty_repository<bulwark::memory::repository> a(db, plan), b(db, plan);
  plan->fail(op::get);
  EXPECT_FALSE(bulwark::test::run(ctx, a.get("k")));
  EXPECT_FALSE(bulwark::test::run(ctx, b.get("k")));
  EXPECT_EQ(plan->calls(op::get), 2u);
}

TEST(faults, cache_and_bus_decorators) {
  asio::io_context ctx;
  bulwark::memory::cache mem_cache;
  testing_kit::faulty_cache<bulwark::memory::cache> c(mem_cache);
  c.faults().fail(op::get);
  EXPECT_TRUE(bulwark::test::run(ctx, c.put("k", bulwark::versioned{"v", 3}, 0ms)).value());
  EXPECT_EQ(bulwark::test::run(ctx, c.get("k")).error(), bulwark::errc::unavailable);
  c.faults().clear_all();
  EXPECT_EQ(bulwark::test::run(ctx, c.get("k")).value()->version, 3u);
  EXPECT_TRUE(bulwark::test::run(ctx, c.erase("k")).value());

  bulwark::memory::event_bus mem_bus(ctx.get_executor());
  testing_kit::faulty_bus<bulwark::memory::event_bus> bus(mem_bus);
  bus.faults().fail_nth(op::publish, 1, bulwark::errc::rejected);
  EXPECT_EQ(bulwark::test::run(ctx, bus.publish("t", bulwark::message{"k", "1", {}})).error(), bulwark::errc::rejected);
  EXPECT_TRUE(bulwark::test::run(ctx, bus.publish("t", bulwark::message{"k", "2", {}})));
  EXPECT_EQ(mem_bus.end_offset("t", mem_bus.partition_of("k")), 1) << "only the second publish landed";
  bus.faults().fail(op::subscribe);
  auto sub = bulwark::test::run(
      ctx, bus.subscribe({"t", "g"}, [](const bulwark::envelope&) -> bulwark::task<void> { co_return bulwark::ok(); }));
  EXPECT_EQ(sub.error(), bulwark::errc::unavailable);
  bulwark::test::run(ctx, bus.stop());
}

TEST(faults, counts_hold_under_two_threads) {
  asio::io_context ctx1, ctx2;
  bulwark::memory::repository db;
  testing_kit::faulty_repository<bulwark::memory::repository> repo(db);
  repo.faults().fail_nth(op::put, 500);
  std::atomic<int> failed{0};
  auto work = [&](asio::io_context& ctx, int base) {
    for (int i = 0; i < 1000; ++i)
      if (!bulwark::test::run(ctx, repo.put(std::to_string(base + i), "v", std::nullopt))) ++failed;
  };
  std::thread t1(work, std::ref(ctx1), 0), t2(work, std::ref(ctx2), 1000);
  t1.join();
  t2.join();
  EXPECT_EQ(repo.faults().calls(op::put), 2000u);
  EXPECT_EQ(failed.load(), 1);
  EXPECT_EQ(db.size(), 1999u);
}
