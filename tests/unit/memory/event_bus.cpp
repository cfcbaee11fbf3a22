#include <bulwark/clock.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/metrics/registry.hpp>

#include "support/run.hpp"

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <thread>

using namespace std::chrono_literals;
using bulwark::envelope;
using bulwark::message;
using bulwark::task;

using bulwark::test::eventually;

TEST(memory_event_bus, full_partition_rejects_publish_until_consumers_commit) {
  asio::io_context ctx;
  bulwark::memory::event_bus bus(ctx.get_executor(), {.partitions = 1, .max_backlog = 3});
  auto publish = [&](std::string v) { return bulwark::test::run(ctx, bus.publish("t", message{"k", v, {}})); };
  // A group exists from the start, so committed messages can be trimmed.
  std::atomic<int> seen{0};
  std::atomic<bool> open{false};
  auto sub = bulwark::test::run(ctx, bus.subscribe({.topic = "t", .group = "g"}, [&](const envelope&) -> task<void> {
    if (!open) co_return bulwark::error(bulwark::errc::unavailable, "closed");
    ++seen;
    co_return bulwark::ok();
  }));
  ASSERT_TRUE(sub.has_value());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(publish(std::to_string(i)).has_value());
  auto full = publish("overflow");
  ASSERT_FALSE(full.has_value());
  EXPECT_EQ(full.error(), bulwark::errc::rejected);
  open = true;
  ASSERT_TRUE(bulwark::test::run(ctx, eventually([&] { return seen.load() == 3; })));
  EXPECT_TRUE(publish("fits again").has_value());
  bulwark::test::run(ctx, sub.value().stop());
}

TEST(memory_event_bus, two_members_split_partitions_and_keep_per_key_order) {
  asio::io_context ctx;
  bulwark::memory::event_bus bus(ctx.get_executor(), {.partitions = 8});
  std::mutex m;
  std::map<std::string, std::vector<int>> by_key;
  std::set<const void*> members_seen;
  std::atomic<int> total{0};
  auto handler_for = [&](int id) {
    return [&, id](const envelope& e) -> task<void> {
      std::lock_guard lock(m);
      by_key[std::string(e.key)].push_back(std::stoi(std::string(e.value)));
      members_seen.insert(reinterpret_cast<const void*>(static_cast<std::intptr_t>(id + 1)));
      ++total;
      co_return bulwark::ok();
    };
  };
  auto s1 = bulwark::test::run(ctx, bus.subscribe({.topic = "t", .group = "g"}, handler_for(1))).value();
  auto s2 = bulwark::test::run(ctx, bus.subscribe({.topic = "t", .group = "g"}, handler_for(2))).value();
  // Publish from two other threads while the members consume on ctx.
  std::vector<std::thread> producers;
  for (int p = 0; p < 2; ++p)
    producers.emplace_back([&bus, p] {
      asio::io_context own;
      for (int i = 0; i < 500; ++i)
        (void)bulwark::test::run(
            own, bus.publish("t", message{"key" + std::to_string(p * 10 + i % 10), std::to_string(i), {}}));
    });
  for (auto& t : producers) t.join();
  ASSERT_TRUE(bulwark::test::run(ctx, eventually([&] { return total.load() == 1000; })));
  bulwark::test::run(ctx, s1.stop());
  bulwark::test::run(ctx, s2.stop());
  EXPECT_EQ(members_seen.size(), 2u) << "both members got partitions";
  for (auto& [key, values] : by_key) EXPECT_TRUE(std::is_sorted(values.begin(), values.end())) << key;
}

TEST(memory_event_bus, handler_exception_is_a_failure_and_is_retried) {
  asio::io_context ctx;
  bulwark::memory::event_bus bus(ctx.get_executor());
  std::atomic<int> calls{0};
  ASSERT_TRUE(bulwark::test::run(ctx, bus.publish("t", message{"k", "v", {}})).has_value());
  auto sub = bulwark::test::run(ctx, bus.subscribe({.topic = "t", .group = "g", .retry = {.delays = {1ms, 1ms}}},
                                                   [&](const envelope&) -> task<void> {
                                                     if (++calls == 1) throw std::runtime_error("boom");
                                                     co_return bulwark::ok();
                                                   }))
                 .value();
  ASSERT_TRUE(bulwark::test::run(ctx, eventually([&] { return calls.load() == 2; })));
  bulwark::test::run(ctx, sub.stop());
  EXPECT_EQ(bus.committed("t", "g", bus.partition_of("k")), 1);
}

TEST(memory_event_bus, stop_of_the_bus_refuses_publish_and_stops_members) {
  asio::io_context ctx;
  bulwark::memory::event_bus bus(ctx.get_executor());
  auto sub = bulwark::test::run(ctx, bus.subscribe({.topic = "t", .group = "g"}, [](const envelope&) -> task<void> {
               co_return bulwark::ok();
             })).value();
  bulwark::test::run(ctx, bus.stop());
  auto late = bulwark::test::run(ctx, bus.publish("t", message{"k", "v", {}}));
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error(), bulwark::errc::rejected);
  bulwark::test::run(ctx, sub.stop()); // already stopped: returns at once
}

TEST(memory_event_bus, start_from_latest_skips_the_backlog) {
  asio::io_context ctx;
  bulwark::memory::event_bus bus(ctx.get_executor(), {.partitions = 1});
  ASSERT_TRUE(bulwark::test::run(ctx, bus.publish("t", message{"k", "old", {}})).has_value());
  std::vector<std::string> seen;
  auto sub = bulwark::test::run(ctx, bus.subscribe({.topic = "t", .group = "g", .start = bulwark::start_from::latest},
                                                   [&](const envelope& e) -> task<void> {
                                                     seen.emplace_back(e.value);
                                                     co_return bulwark::ok();
                                                   }))
                 .value();
  ASSERT_TRUE(bulwark::test::run(ctx, bus.publish("t", message{"k", "new", {}})).has_value());
  ASSERT_TRUE(bulwark::test::run(ctx, eventually([&] { return !seen.empty(); })));
  bulwark::test::run(ctx, sub.stop());
  EXPECT_EQ(seen, std::vector<std::string>{"new"});
}

namespace {
// Runs the handlers ctx has ready (none of them waits for real time) a few rounds.
void settle(asio::io_context& ctx) {
  for (int i = 0; i < 20; ++i) {
    if (ctx.stopped()) ctx.restart();
    ctx.poll();
  }
}

// Publishes n messages with key "k" to topic "t" from one coroutine.
bool publish_many(asio::io_context& ctx, bulwark::memory::event_bus& bus, int n) {
  auto all = [&]() -> asio::awaitable<bool> {
    for (int i = 0; i < n; ++i) {
      message m{"k", std::to_string(i), {}};
      auto d = co_await bus.publish("t", std::move(m));
      if (!d) co_return false;
    }
    co_return true;
  };
  return bulwark::test::run(ctx, all());
}
} // namespace

TEST(memory_event_bus, retries_wait_on_the_injected_clock) {
  asio::io_context ctx;
  auto clk = bulwark::clock::manual();
  bulwark::memory::event_bus bus(ctx.get_executor(), {.partitions = 1, .clock = clk});
  std::atomic<int> attempts{0};
  bulwark::subscribe_options o{.topic = "t", .group = "g"};
  o.retry = {.delays = {100ms, 1000ms, 2.0, false}, .max_attempts = 3};
  auto sub = bulwark::test::run(ctx, bus.subscribe(o, [&](const envelope&) -> task<void> {
               ++attempts;
               co_return bulwark::error(bulwark::errc::unavailable, "down");
             })).value();
  ASSERT_TRUE(bulwark::test::run(ctx, bus.publish("t", message{"k", "v", {}})).has_value());
  ASSERT_TRUE(bulwark::test::run(ctx, eventually([&] { return attempts.load() == 1; })));
  clk.advance(99ms);
  settle(ctx);
  EXPECT_EQ(attempts.load(), 1) << "retried before the backoff delay";
  clk.advance(1ms);
  ASSERT_TRUE(bulwark::test::run(ctx, eventually([&] { return attempts.load() == 2; })));
  clk.advance(199ms);
  settle(ctx);
  EXPECT_EQ(attempts.load(), 2);
  clk.advance(1ms);
  ASSERT_TRUE(bulwark::test::run(ctx, eventually([&] { return bus.end_offset("t.dlq", 0) == 1; })));
  EXPECT_EQ(attempts.load(), 3);
  ASSERT_TRUE(bulwark::test::run(ctx, eventually([&] { return bus.committed("t", "g", 0) == 1; })));
  bulwark::test::run(ctx, sub.stop());
}

TEST(memory_event_bus, stop_interrupts_the_handler_when_the_drain_period_passed_on_the_clock) {
  asio::io_context ctx;
  auto clk = bulwark::clock::manual();
  bulwark::memory::event_bus bus(ctx.get_executor(), {.partitions = 1, .drain_timeout = 5s, .clock = clk});
  std::atomic<bool> started{false}, interrupted{false};
  auto sub = bulwark::test::run(ctx, bus.subscribe({.topic = "t", .group = "g"}, [&](const envelope&) -> task<void> {
               started = true;
               if (!co_await clk.wait_for(1h)) interrupted = true; // "until the database is back"
               co_return bulwark::error(bulwark::errc::cancelled, "interrupted");
             })).value();
  ASSERT_TRUE(bulwark::test::run(ctx, bus.publish("t", message{"k", "v", {}})).has_value());
  ASSERT_TRUE(bulwark::test::run(ctx, eventually([&] { return started.load(); })));
  std::atomic<bool> stopped{false};
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        co_await sub.stop();
        stopped = true;
      },
      asio::detached);
  settle(ctx);
  clk.advance(4s);
  settle(ctx);
  EXPECT_FALSE(stopped.load()) << "stop() did not wait for the drain period";
  EXPECT_FALSE(interrupted.load());
  clk.advance(1s);
  ASSERT_TRUE(bulwark::test::run(ctx, eventually([&] { return stopped.load(); })));
  EXPECT_TRUE(interrupted.load());
  EXPECT_EQ(bus.committed("t", "g", 0), 0) << "the interrupted message was committed";
}

TEST(memory_event_bus, committed_messages_are_dropped_long_before_max_backlog) {
  asio::io_context ctx;
  bulwark::memory::event_bus bus(ctx.get_executor(), {.partitions = 1, .trim_every = 16});
  std::atomic<int> seen{0};
  auto sub = bulwark::test::run(ctx, bus.subscribe({.topic = "t", .group = "g"}, [&](const envelope&) -> task<void> {
               ++seen;
               co_return bulwark::ok();
             })).value();
  ASSERT_TRUE(publish_many(ctx, bus, 1000));
  ASSERT_TRUE(bulwark::test::run(ctx, eventually([&] { return seen.load() == 1000; })));
  ASSERT_TRUE(bulwark::test::run(ctx, eventually([&] { return bus.committed("t", "g", 0) == 1000; })));
  EXPECT_EQ(bus.retained("t", 0), 0u) << "a caught-up partition holds nothing every group committed";
  bulwark::test::run(ctx, sub.stop());
}

TEST(memory_event_bus, a_busy_partition_is_trimmed_every_trim_every_commits) {
  asio::io_context ctx;
  bulwark::memory::event_bus bus(ctx.get_executor(), {.partitions = 1, .trim_every = 16});
  ASSERT_TRUE(publish_many(ctx, bus, 1000)); // before the group exists: a topic without groups keeps all
  EXPECT_EQ(bus.retained("t", 0), 1000u);
  std::atomic<int> seen{0};
  std::size_t least_retained = 1000;
  auto sub = bulwark::test::run(ctx, bus.subscribe({.topic = "t", .group = "g"}, [&](const envelope&) -> task<void> {
               ++seen;
               least_retained = std::min(least_retained, bus.retained("t", 0));
               co_return bulwark::ok();
             })).value();
  ASSERT_TRUE(bulwark::test::run(ctx, eventually([&] { return seen.load() == 1000; })));
  // While the worker ran through the backlog, trims kept at most trim_every committed ones.
  EXPECT_LE(least_retained, 1000u - 1000u / 16u * 16u + 16u);
  bulwark::test::run(ctx, sub.stop());
}

TEST(memory_event_bus, backlog_and_lag_are_exported_as_gauges) {
  asio::io_context ctx;
  auto registry = std::make_shared<bulwark::metrics::registry>();
  bulwark::memory::event_bus bus(ctx.get_executor(), {.partitions = 1, .metrics = registry});
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(bulwark::test::run(ctx, bus.publish("t", message{"k", std::to_string(i), {}})).has_value());
  EXPECT_NE(registry->expose().find("bulwark_bus_backlog_messages{topic=\"t\",partition=\"0\"} 3\n"), std::string::npos)
      << registry->expose();
  std::atomic<bool> open{false};
  std::atomic<int> seen{0};
  auto sub = bulwark::test::run(ctx, bus.subscribe({.topic = "t", .group = "g"}, [&](const envelope&) -> task<void> {
               asio::steady_timer tick(co_await asio::this_coro::executor);
               while (!open) {
                 tick.expires_after(1ms);
                 co_await tick.async_wait(asio::use_awaitable);
               }
               ++seen;
               co_return bulwark::ok();
             })).value();
  const std::string lag = "bulwark_bus_consumer_lag_messages{topic=\"t\",group=\"g\",partition=\"0\"} ";
  EXPECT_NE(registry->expose().find(lag + "3\n"), std::string::npos) << registry->expose();
  open = true;
  ASSERT_TRUE(bulwark::test::run(ctx, eventually([&] { return bus.committed("t", "g", 0) == 3; })));
  const auto text = registry->expose();
  EXPECT_NE(text.find(lag + "0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("bulwark_bus_backlog_messages{topic=\"t\",partition=\"0\"} 0\n"), std::string::npos) << text;
  bulwark::test::run(ctx, sub.stop());
}
