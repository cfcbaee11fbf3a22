#include <bulwark/clock.hpp>
#include <bulwark/flows/frame.hpp>
#include <bulwark/flows/retry_replayer.hpp>
#include <bulwark/manual_clock.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/testing/faults.hpp>

#include "support/run.hpp"

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using bulwark::envelope;
using bulwark::errc;
using bulwark::error;
using bulwark::message;
using bulwark::task;
using bulwark::version_t;
using bulwark::versioned;
using bulwark::flows::frame;
using bulwark::flows::order_stamp;
using bulwark::flows::write_state;
using bulwark::test::eventually;

namespace {

// A memory repository that runs `before_put` (once) right before the next put reaches the
// model: a concurrent writer between the replayer's get and put. Faults come from
// testing::faulty_repository around it.
class concurrent_writer {
public:
  explicit concurrent_writer(bulwark::memory::repository& inner) : inner_(inner) {}

  std::function<void()> before_put;

  task<std::optional<versioned>> get(std::string_view key) { co_return inner_.get_now(key); }
  task<version_t> put(std::string_view key, std::string value, std::optional<version_t> expected) {
    if (auto hook = std::exchange(before_put, nullptr)) hook();
    co_return inner_.put_now(key, std::move(value), expected);
  }
  task<bool> erase(std::string_view key) { co_return inner_.erase_now(key); }
  task<bulwark::scan_page> scan(std::string_view prefix, std::string_view after, std::size_t limit) {
    co_return inner_.scan_now(prefix, after, limit);
  }

private:
  bulwark::memory::repository& inner_;
};
static_assert(bulwark::repository<concurrent_writer>);

using faulty_db = bulwark::testing::faulty_repository<concurrent_writer>;
using bulwark::testing::op;

void settle(asio::io_context& ctx) {
  for (int i = 0; i < 20; ++i) {
    if (ctx.stopped()) ctx.restart();
    ctx.poll();
  }
}

frame pending(std::uint64_t stamp, std::string id, std::string value) {
  return frame{write_state::pending, order_stamp{stamp}, std::move(id), std::move(value)};
}

std::string durable(std::uint64_t stamp, std::string id, std::string value) {
  return bulwark::flows::encode(frame{write_state::durable, order_stamp{stamp}, std::move(id), std::move(value)});
}

// One replayer over a flaky memory repository, a memory bus and a memory outage log, all on a
// manual clock.
struct fixture {
  asio::io_context ctx;
  bulwark::clock clk = bulwark::clock::manual();
  bulwark::manual_clock wall{};
  bulwark::memory::event_bus bus{ctx.get_executor(), {.partitions = 2, .drain_timeout = 5s, .clock = clk}};
  bulwark::memory::repository store;
  concurrent_writer writer{store};
  faulty_db db{writer, clk};
  bulwark::memory::repository log;
  std::shared_ptr<bulwark::metrics::registry> registry = std::make_shared<bulwark::metrics::registry>();
  std::vector<bulwark::flows::outage_window> hooked;
  std::unique_ptr<bulwark::flows::retry_replayer<faulty_db, bulwark::memory::event_bus, bulwark::memory::repository>>
      replayer;

  bulwark::flows::retry_replayer_options options(std::string group = "replayers") {
    bulwark::flows::retry_replayer_options o;
    o.topic = "retry";
    o.group = std::move(group);
    o.probe = {100ms, 1000ms, 2.0, false};
    o.call_timeout = 1s;
    o.log_interval = 0ms;
    o.clock = clk;
    o.wall = [w = wall] { return w.now(); };
    o.metrics = registry;
    o.on_recovery = [this](const bulwark::flows::outage_window& w) -> task<void> {
      hooked.push_back(w);
      co_return bulwark::ok();
    };
    return o;
  }

  void start(std::string group = "replayers") {
    replayer = std::make_unique<typename decltype(replayer)::element_type>(db, bus, log, options(std::move(group)));
    ASSERT_TRUE(bulwark::test::run(ctx, replayer->start()).has_value());
  }

  void publish(const std::string& key, const frame& f, version_t known = 0) {
    ASSERT_TRUE(
        bulwark::test::run(ctx, bus.publish("retry", bulwark::flows::retry_message(key, f, known))).has_value());
  }

  void publish_raw(message m) { ASSERT_TRUE(bulwark::test::run(ctx, bus.publish("retry", std::move(m))).has_value()); }

  bool wait_for(std::function<bool()> done) { return bulwark::test::run(ctx, eventually(std::move(done), 10s)); }

  std::optional<frame> stored(const std::string& key) {
    auto v = store.get_now(key).value();
    if (!v) return std::nullopt;
    auto f = bulwark::flows::decode(v->value);
    if (!f) return std::nullopt;
    return f.value();
  }

  std::int64_t committed_total(const std::string& group = "replayers") {
    std::int64_t n = 0;
    for (int p = 0; p < 2; ++p) n += bus.committed("retry", group, p).value_or(0);
    return n;
  }

  std::vector<bulwark::flows::outage_window> logged() {
    return bulwark::test::run(ctx, bulwark::flows::list_outage_windows(log, "outage-window/")).value();
  }

  void stop() {
    if (replayer) bulwark::test::run(ctx, replayer->stop());
  }
};

} // namespace

TEST(retry_replayer, replays_a_pending_write_as_durable_and_commits) {
  fixture f;
  f.start();
  f.publish("user:1", pending(1000, "req-1", "alice"));
  ASSERT_TRUE(f.wait_for([&] { return f.committed_total() == 1; }));
  auto s = f.stored("user:1");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->state, write_state::durable);
  EXPECT_EQ(s->stamp, order_stamp{1000});
  EXPECT_EQ(s->request_id, "req-1");
  EXPECT_EQ(s->value, "alice");
  EXPECT_EQ(f.replayer->stats().replayed, 1u);
  EXPECT_EQ(f.replayer->stats().outage_windows, 0u) << "no failure was seen, so no window";
  f.stop();
}

TEST(retry_replayer, waits_while_the_repository_is_down_without_dead_lettering_and_resumes) {
  fixture f;
  f.db.faults().fail(op::every, error(errc::unavailable, "database down"));
  f.start();
  f.publish("user:1", pending(1000, "req-1", "alice"));
  ASSERT_TRUE(f.wait_for([&] { return f.replayer->stats().waiting == 1; }));
  // Far more time than the bus's own retry policy would allow by default (5 attempts): an hour
  // of probing, one backoff step (capped at 1 s) after another.
  for (int i = 0; i < 3600; ++i) {
    f.clk.advance(1s);
    settle(f.ctx);
  }
  EXPECT_EQ(f.bus.end_offset("retry.dlq", 0) + f.bus.end_offset("retry.dlq", 1), 0) << "an outage was dead-lettered";
  EXPECT_EQ(f.committed_total(), 0);
  EXPECT_GT(f.db.faults().calls(op::every), 3000u) << "the handler did not keep probing";
  EXPECT_EQ(f.replayer->stats().waiting, 1u);
  EXPECT_EQ(f.registry->gauge_family("bulwark_replayer_waiting_handlers", "", {"replayer"}).labels({"retry"}).value(),
            1.0);
  auto open = f.replayer->current_window();
  ASSERT_TRUE(open);
  EXPECT_FALSE(open->recovered);
  EXPECT_NE(open->first_error.find("database down"), std::string::npos) << open->first_error;

  f.wall.advance(10s);
  f.db.faults().clear_all();
  f.clk.advance(1s);
  ASSERT_TRUE(f.wait_for([&] { return f.committed_total() == 1; }));
  EXPECT_EQ(f.stored("user:1")->value, "alice");
  EXPECT_EQ(f.replayer->stats().waiting, 0u);
  EXPECT_EQ(f.bus.end_offset("retry.dlq", 0) + f.bus.end_offset("retry.dlq", 1), 0);
  f.stop();
}

TEST(retry_replayer, stop_interrupts_the_wait_and_the_message_goes_to_the_next_member) {
  fixture f;
  f.db.faults().fail(op::every, error(errc::unavailable, "database down"));
  f.start();
  f.publish("user:1", pending(1000, "req-1", "alice"));
  ASSERT_TRUE(f.wait_for([&] { return f.replayer->stats().waiting == 1; }));
  std::atomic<bool> stopped{false};
  asio::co_spawn(
      f.ctx,
      [&]() -> asio::awaitable<void> {
        co_await f.replayer->stop();
        stopped = true;
      },
      asio::detached);
  settle(f.ctx);
  // The replayer's stop ends the wait at its next backoff step, well before the bus's drain
  // period (5 s) would cancel it.
  f.clk.advance(1s);
  ASSERT_TRUE(f.wait_for([&] { return stopped.load(); }));
  EXPECT_EQ(f.committed_total(), 0) << "an interrupted message was committed";
  EXPECT_EQ(f.bus.end_offset("retry.dlq", 0) + f.bus.end_offset("retry.dlq", 1), 0) << "it was dead-lettered";
  EXPECT_FALSE(f.stored("user:1"));

  // The next member of the group gets it and, the database being back, writes it.
  f.db.faults().clear_all();
  f.start();
  ASSERT_TRUE(f.wait_for([&] { return f.committed_total() == 1; }));
  EXPECT_EQ(f.stored("user:1")->value, "alice");
  f.stop();
}

TEST(retry_replayer, the_buses_terminal_cancellation_also_ends_the_wait) {
  fixture f;
  f.db.faults().fail(op::every, error(errc::unavailable, "database down"));
  f.start();
  f.publish("user:1", pending(1000, "req-1", "alice"));
  ASSERT_TRUE(f.wait_for([&] { return f.replayer->stats().waiting == 1; }));
  // The bus's stop alone (not the replayer's): its drain period passes, then it cancels.
  std::atomic<bool> stopped{false};
  asio::co_spawn(
      f.ctx,
      [&]() -> asio::awaitable<void> {
        co_await f.bus.stop();
        stopped = true;
      },
      asio::detached);
  settle(f.ctx);
  // Backoff steps of 1 s would each see the bus still down and wait again; the drain period (5 s)
  // ends the handler through its cancellation slot.
  for (int i = 0; i < 5 && !stopped; ++i) {
    f.clk.advance(1s);
    settle(f.ctx);
  }
  ASSERT_TRUE(f.wait_for([&] { return stopped.load(); }));
  EXPECT_EQ(f.committed_total(), 0);
  EXPECT_EQ(f.bus.end_offset("retry.dlq", 0) + f.bus.end_offset("retry.dlq", 1), 0);
  f.stop();
}

TEST(retry_replayer, a_newer_stored_write_supersedes_the_replay) {
  fixture f;
  ASSERT_TRUE(f.store.put_now("user:1", durable(2000, "req-newer", "bob"), std::nullopt));
  f.start();
  f.publish("user:1", pending(1000, "req-older", "alice"));
  ASSERT_TRUE(f.wait_for([&] { return f.committed_total() == 1; }));
  EXPECT_EQ(f.stored("user:1")->value, "bob") << "an older replay overwrote a newer write";
  EXPECT_EQ(f.store.get_now("user:1").value()->version, 1u) << "written again";
  EXPECT_EQ(f.replayer->stats().superseded, 1u);
  EXPECT_EQ(f.replayer->stats().replayed, 0u);
  f.stop();
}

TEST(retry_replayer, a_foreign_stored_value_counts_as_stamp_zero_and_is_replaced) {
  fixture f;
  ASSERT_TRUE(f.store.put_now("user:1", "written by another program", std::nullopt));
  f.start();
  f.publish("user:1", pending(1, "req-1", "alice"));
  ASSERT_TRUE(f.wait_for([&] { return f.committed_total() == 1; }));
  EXPECT_EQ(f.stored("user:1")->value, "alice");
  f.stop();
}

TEST(retry_replayer, replaying_the_same_request_twice_writes_it_once) {
  fixture f;
  f.start();
  f.publish("user:1", pending(1000, "req-1", "alice"));
  f.publish("user:1", pending(1000, "req-1", "alice")); // a redelivery, or the publisher's retry
  ASSERT_TRUE(f.wait_for([&] { return f.committed_total() == 2; }));
  EXPECT_EQ(f.store.get_now("user:1").value()->version, 1u) << "the duplicate was written again";
  EXPECT_EQ(f.replayer->stats().replayed, 1u);
  EXPECT_EQ(f.replayer->stats().duplicates, 1u);
  f.stop();
}

TEST(retry_replayer, a_concurrent_writer_between_get_and_put_makes_the_step_run_again) {
  fixture f;
  ASSERT_TRUE(f.store.put_now("user:1", durable(500, "req-0", "old"), std::nullopt));
  // Between the replayer's get and its put, another replica writes an older stamp than the
  // replay (so the replay must still win) and moves the version on.
  f.writer.before_put = [&] {
    ASSERT_TRUE(f.store.put_now("user:1", durable(900, "req-other", "other"), std::nullopt));
  };
  f.start();
  f.publish("user:1", pending(1000, "req-1", "alice"));
  ASSERT_TRUE(f.wait_for([&] { return f.committed_total() == 1; }));
  EXPECT_EQ(f.stored("user:1")->value, "alice");
  EXPECT_EQ(f.store.get_now("user:1").value()->version, 3u);
  EXPECT_EQ(f.replayer->stats().conflicts, 1u);
  EXPECT_EQ(f.replayer->stats().replayed, 1u);
  f.stop();
}

TEST(retry_replayer, a_newer_concurrent_write_between_get_and_put_supersedes_the_replay) {
  fixture f;
  f.writer.before_put = [&] {
    ASSERT_TRUE(f.store.put_now("user:1", durable(2000, "req-newer", "bob"), std::nullopt));
  };
  f.start();
  f.publish("user:1", pending(1000, "req-1", "alice"));
  ASSERT_TRUE(f.wait_for([&] { return f.committed_total() == 1; }));
  EXPECT_EQ(f.stored("user:1")->value, "bob");
  EXPECT_EQ(f.replayer->stats().superseded, 1u);
  f.stop();
}

TEST(retry_replayer, poison_is_dead_lettered_with_its_reason_and_does_not_block_the_partition) {
  fixture f;
  // Collect the dead letters.
  std::mutex m;
  std::vector<std::string> reasons;
  auto dlq = bulwark::test::run(f.ctx, f.bus.subscribe({.topic = "retry.dlq", .group = "dlq-reader"},
                                                       [&](const envelope& e) -> task<void> {
                                                         std::lock_guard lock(m);
                                                         reasons.emplace_back(
                                                             e.find_header(bulwark::dead_letter_error).value_or(""));
                                                         co_return bulwark::ok();
                                                       }))
                 .value();
  f.start();
  // Same key: one partition, in order. An undecodable message, then one the repository
  // rejects (a key over its limit), then a good one.
  f.publish_raw(message{"user:1", "not a frame", {}});
  f.publish(std::string(300, 'k'), pending(1000, "req-long", "x"));
  f.publish("user:1", pending(1000, "req-1", "alice"));
  ASSERT_TRUE(f.wait_for([&] { return f.stored("user:1").has_value(); })) << "the partition is blocked";
  ASSERT_TRUE(f.wait_for([&] {
    std::lock_guard lock(m);
    return reasons.size() == 2;
  }));
  {
    std::lock_guard lock(m);
    // Two partitions: the two dead letters may come in either order.
    const bool undecodable_first = reasons[0].find("undecodable retry message") != std::string::npos;
    const auto& undecodable = undecodable_first ? reasons[0] : reasons[1];
    const auto& rejected = undecodable_first ? reasons[1] : reasons[0];
    EXPECT_NE(undecodable.find("undecodable retry message"), std::string::npos) << undecodable;
    EXPECT_NE(rejected.find("the repository rejected the replayed write"), std::string::npos) << rejected;
  }
  EXPECT_EQ(f.replayer->stats().dead_lettered, 2u);
  EXPECT_EQ(f.replayer->stats().replayed, 1u);
  bulwark::test::run(f.ctx, dlq.stop());
  f.stop();
}

TEST(retry_replayer, an_outage_window_is_logged_with_its_counts_and_the_hook_runs_once) {
  fixture f;
  ASSERT_TRUE(f.store.put_now("user:2", durable(5000, "req-newer", "newer"), std::nullopt));
  f.db.faults().fail(op::every, error(errc::unavailable, "database down"));
  const auto t0 = f.wall.now();
  f.start();
  f.publish("user:1", pending(1000, "req-1", "alice"));
  f.publish("user:2", pending(1000, "req-2", "older"));
  f.publish("user:3", pending(1000, "req-3", "carol"));
  ASSERT_TRUE(f.wait_for([&] { return f.replayer->stats().waiting >= 1; }));
  EXPECT_TRUE(f.logged().empty()) << "the log is written at recovery (it may live in the database that is down)";
  f.wall.advance(30s);
  for (int i = 0; i < 30; ++i) {
    f.clk.advance(1s);
    settle(f.ctx);
  }
  f.db.faults().clear_all();
  f.clk.advance(1s);
  ASSERT_TRUE(f.wait_for([&] { return f.committed_total() == 3; }));
  EXPECT_EQ(f.hooked.size(), 1u) << "the hook runs once per window";
  bulwark::test::run(f.ctx, f.replayer->flush());
  auto windows = f.logged();
  ASSERT_EQ(windows.size(), 1u);
  const auto& w = windows[0];
  EXPECT_EQ(w.first_failure, t0);
  ASSERT_TRUE(w.recovered);
  EXPECT_EQ(*w.recovered, t0 + 30s);
  EXPECT_EQ(w.replayed, 2u);
  EXPECT_EQ(w.superseded, 1u);
  EXPECT_EQ(w.replayed + w.superseded, 3u) << "every pending write is accounted for";
  EXPECT_NE(w.first_error.find("database down"), std::string::npos);
  ASSERT_FALSE(f.hooked.empty());
  EXPECT_EQ(f.hooked[0].id, w.id);
  EXPECT_EQ(f.replayer->stats().outage_windows, 1u);

  // A second outage opens a second window, logged after the first.
  f.db.faults().fail(op::every, error(errc::unavailable, "database down"));
  f.publish("user:4", pending(2000, "req-4", "dave"));
  ASSERT_TRUE(f.wait_for([&] { return f.replayer->stats().outage_windows == 2; }));
  f.wall.advance(5s);
  f.db.faults().clear_all();
  f.clk.advance(1s);
  ASSERT_TRUE(f.wait_for([&] { return f.committed_total() == 4; }));
  f.stop();
  windows = f.logged();
  ASSERT_EQ(windows.size(), 2u);
  EXPECT_EQ(windows[0].replayed, 2u) << "the first window's counts changed";
  EXPECT_EQ(windows[1].replayed, 1u);
  EXPECT_LT(windows[0].first_failure, windows[1].first_failure);
  EXPECT_EQ(f.hooked.size(), 2u);
  const auto text = f.registry->expose();
  EXPECT_NE(text.find("bulwark_replayer_outage_windows_total{replayer=\"retry\"} 2"), std::string::npos) << text;
  EXPECT_NE(text.find("bulwark_replayer_messages_total{replayer=\"retry\",outcome=\"replayed\"} 3"), std::string::npos)
      << text;
}

TEST(retry_replayer, outage_window_json_round_trips_and_rejects_garbage) {
  bulwark::flows::outage_window w{"0000001700000000-a",
                                  std::chrono::system_clock::time_point(1700000000000ms),
                                  std::chrono::system_clock::time_point(1700000005000ms),
                                  "down",
                                  3,
                                  2};
  auto back = bulwark::flows::outage_window_from_json(bulwark::flows::to_json(w));
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(back.value(), w);
  w.recovered.reset();
  EXPECT_EQ(bulwark::flows::outage_window_from_json(bulwark::flows::to_json(w)).value(), w);
  EXPECT_EQ(bulwark::flows::outage_window_from_json("[1]").error(), errc::invalid_argument);
  EXPECT_EQ(bulwark::flows::outage_window_from_json("{\"id\": 1}").error(), errc::invalid_argument);
}
