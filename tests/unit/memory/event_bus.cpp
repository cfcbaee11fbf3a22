#include <bulwark/memory/event_bus.hpp>

#include "support/run.hpp"

#include <gtest/gtest.h>

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
