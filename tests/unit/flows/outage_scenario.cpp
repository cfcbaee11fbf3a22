// The outage scenario on the memory models and a manual clock: several write_through replicas
// sharing one repository, cache and bus, a retry_replayer, and the repository down for a window
// while concurrent readers and writers run. The invariants (issue 11): every read answered
// (stale where needed); every acknowledged write, durable or pending, accounted for after
// recovery (the outage log's replayed + superseded); for every key the repository and the cache
// hold the latest acknowledged write by order stamp; nothing dead-lettered.
#include <bulwark/clock.hpp>
#include <bulwark/flows/frame.hpp>
#include <bulwark/flows/retry_replayer.hpp>
#include <bulwark/flows/write_through.hpp>
#include <bulwark/manual_clock.hpp>
#include <bulwark/memory/cache.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/resilience/timeout.hpp>
#include <bulwark/testing/faults.hpp>

#include "support/run.hpp"

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>

#include <filesystem>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace flows = bulwark::flows;
namespace kit = bulwark::testing;
using kit::op;

namespace {

using mem_cache = bulwark::memory::basic_cache<bulwark::manual_clock>;
using repo_t = kit::faulty_repository<bulwark::memory::repository>;
using cache_t = kit::faulty_cache<mem_cache>;
using flow_t = flows::write_through<repo_t, cache_t, bulwark::memory::event_bus>;
using replayer_t = flows::retry_replayer<repo_t, bulwark::memory::event_bus, bulwark::memory::repository>;

const std::string retry_topic = "scenario.retry";

struct acknowledged {
  std::string key;
  std::string value;
  flows::write_receipt receipt;
};

struct world {
  asio::io_context ctx;
  bulwark::clock clk = bulwark::clock::manual();
  bulwark::manual_clock wall;
  bulwark::memory::repository db;
  repo_t repo{db, clk};
  mem_cache shared_cache{mem_cache::options{}, wall};
  cache_t cache{shared_cache, clk};
  bulwark::memory::event_bus bus{ctx.get_executor(), {.partitions = 4, .drain_timeout = 5s, .clock = clk}};
  bulwark::memory::repository outage_log;
  std::vector<std::unique_ptr<flow_t>> replicas;
  std::unique_ptr<replayer_t> replayer;
  int recoveries = 0;

  flow_t::options options(std::uint16_t node) {
    flow_t::options o;
    o.name = "replica-" + std::to_string(node);
    o.retry_topic = retry_topic;
    o.soft_ttl = 5s;
    o.hard_limit = 1h;
    o.repository_timeout = 1s;
    o.node = node;
    o.clock = clk;
    o.wall = [w = wall] { return w.now(); };
    return o;
  }

  void start(int replica_count) {
    for (int i = 1; i <= replica_count; ++i) {
      replicas.push_back(std::make_unique<flow_t>(repo, cache, bus, options(static_cast<std::uint16_t>(i))));
      ASSERT_TRUE(run(replicas.back()->start()));
    }
    flows::retry_replayer_options o;
    o.topic = retry_topic;
    o.group = "scenario-replayers";
    o.probe = {100ms, 1000ms, 2.0, true};
    o.call_timeout = 1s;
    o.log_interval = 0ms;
    o.clock = clk;
    o.wall = [w = wall] { return w.now(); };
    o.on_recovery = [this](const flows::outage_window&) -> bulwark::task<void> {
      ++recoveries;
      co_return bulwark::ok();
    };
    replayer = std::make_unique<replayer_t>(repo, bus, outage_log, o);
    ASSERT_TRUE(run(replayer->start()));
  }

  void stop() {
    if (replayer) run(replayer->stop());
    for (auto& r : replicas) EXPECT_TRUE(run(r->stop()));
  }

  template <class T> T run(asio::awaitable<T> a) { return bulwark::test::run(ctx, std::move(a)); }
  bulwark::deadline budget() { return bulwark::deadline::after(10s, clk); }
  void settle() {
    for (int i = 0; i < 20; ++i) {
      ctx.restart();
      ctx.poll();
    }
  }
  void advance(std::chrono::milliseconds d) {
    wall.advance(d);
    clk.advance(d);
    settle();
  }

  std::int64_t dead_letters() {
    std::int64_t n = 0;
    for (int p = 0; p < 4; ++p) n += bus.end_offset(retry_topic + ".dlq", p);
    return n;
  }
};

} // namespace

TEST(outage_scenario, replicas_keep_every_acknowledged_write_through_a_repository_outage) {
  world w;
  w.start(3);
  constexpr int keys = 12;
  auto key_of = [](int k) { return "item:" + std::to_string(k); };

  // Before: every key durable (and cached), so every later read has something to serve.
  std::vector<acknowledged> acks;
  for (int k = 0; k < keys; ++k) {
    auto r = w.run(w.replicas[static_cast<std::size_t>(k % 3)]->write(key_of(k), "v0", w.budget()));
    ASSERT_TRUE(r) << r.error();
    ASSERT_EQ(r.value().outcome, flows::write_state::durable);
    acks.push_back({key_of(k), "v0", r.value()});
  }

  // The repository is down from 3 s to 20 s on the clock; the workload runs for about 30 s.
  const auto t0 = w.clk.now();
  w.repo.faults().down_between(op::every, t0 + 3s, t0 + 20s, bulwark::error(bulwark::errc::unavailable, "db down"));

  constexpr int workers = 12;
  constexpr int ops_each = 30;
  int reads = 0, stale_reads = 0, unanswered = 0, failed_writes = 0, finished = 0;
  std::vector<std::string> problems;
  auto worker = [&](int id) -> asio::awaitable<void> {
    std::mt19937 rng(static_cast<unsigned>(id));
    for (int i = 0; i < ops_each; ++i) {
      const bool reader = rng() % 2 == 0;
      auto& replica = *w.replicas[rng() % w.replicas.size()];
      const std::string key = key_of(static_cast<int>(rng() % keys));
      if (reader) {
        auto r = co_await replica.read(key, w.budget());
        ++reads;
        if (!r || !r.value()) {
          ++unanswered;
          problems.push_back("read " + key + ": " + (r ? std::string("nothing") : r.error().message()));
        } else if (r.value()->stale) {
          ++stale_reads;
        }
      } else {
        const std::string value = "w" + std::to_string(id) + "-" + std::to_string(i);
        auto r = co_await replica.write(key, value, w.budget());
        if (!r) {
          ++failed_writes;
          problems.push_back("write " + key + ": " + r.error().message());
        } else {
          acks.push_back({key, value, r.value()});
        }
      }
      // Spread the workload over the clock: the test moves it by 100 ms steps.
      co_await w.clk.wait_for(std::chrono::milliseconds(rng() % 2000));
    }
    ++finished;
  };
  for (int id = 0; id < workers; ++id) asio::co_spawn(w.ctx, worker(id), asio::detached);
  for (int step = 0; step < 600 && finished < workers; ++step) w.advance(100ms);
  ASSERT_EQ(finished, workers) << "the workload did not finish";

  EXPECT_EQ(unanswered, 0) << "reads left unanswered; first: " << (problems.empty() ? "" : problems.front());
  EXPECT_EQ(failed_writes, 0) << (problems.empty() ? "" : problems.front());
  EXPECT_GT(stale_reads, 0) << "no read was served stale: the outage did not bite";
  std::size_t pending = 0;
  for (const auto& a : acks) pending += a.receipt.outcome == flows::write_state::pending;
  ASSERT_GT(pending, 0u) << "no write was accepted pending: the outage did not bite";

  // Recovery: the replayer drains the retry topic.
  for (int step = 0; step < 600; ++step) {
    const auto s = w.replayer->stats();
    if (s.replayed + s.superseded + s.duplicates >= pending && s.waiting == 0) break;
    w.advance(100ms);
  }
  w.settle();
  const auto s = w.replayer->stats();
  EXPECT_EQ(s.replayed + s.superseded + s.duplicates, pending);
  EXPECT_EQ(s.dead_lettered, 0u);
  EXPECT_EQ(w.dead_letters(), 0) << "something was dead-lettered";

  // The latest acknowledged write by order stamp, per key, is in the repository and the cache.
  std::map<std::string, const acknowledged*> latest;
  for (const auto& a : acks)
    if (!latest[a.key] || latest[a.key]->receipt.stamp < a.receipt.stamp) latest[a.key] = &a;
  for (const auto& [key, a] : latest) {
    auto row = w.db.get_now(key).value();
    ASSERT_TRUE(row) << key;
    auto f = flows::decode(row->value);
    ASSERT_TRUE(f) << key;
    EXPECT_EQ(f.value().stamp, a->receipt.stamp) << key << ": the repository does not hold the latest write";
    EXPECT_EQ(f.value().value, a->value) << key;
    EXPECT_EQ(f.value().state, flows::write_state::durable) << key;
    auto c = w.shared_cache.get_now(key).value();
    ASSERT_TRUE(c) << key;
    EXPECT_EQ(c->version, a->receipt.stamp.value) << key << ": the cache does not hold the latest write";
    EXPECT_EQ(flows::decode(c->value).value().value, a->value) << key;
    // And a read through any replica answers it, fresh (below, once the breakers closed).
  }
  // The breakers opened during the outage: past their open duration a call probes, succeeds and
  // closes them; then reads are fresh again.
  for (int step = 0; step < 120; ++step) {
    w.advance(1s);
    for (auto& replica : w.replicas) (void)w.run(replica->read(key_of(0), w.budget()));
  }
  for (const auto& [key, a] : latest) {
    auto r = w.run(w.replicas[0]->read(key, w.budget()));
    ASSERT_TRUE(r && r.value()) << key;
    EXPECT_EQ(r.value()->value, a->value) << key;
    EXPECT_FALSE(r.value()->stale) << key;
  }

  // The outage log accounts for every pending write (duplicates count as superseded).
  w.run(w.replayer->flush());
  auto windows = w.run(flows::list_outage_windows(w.outage_log, "outage-window/")).value();
  ASSERT_FALSE(windows.empty());
  std::uint64_t replayed = 0, superseded = 0;
  for (const auto& win : windows) {
    EXPECT_TRUE(win.recovered);
    replayed += win.replayed;
    superseded += win.superseded;
  }
  EXPECT_EQ(replayed + superseded, pending);
  EXPECT_EQ(replayed, s.replayed);
  EXPECT_EQ(w.recoveries, static_cast<int>(windows.size()));
  w.stop();
}

TEST(outage_scenario, the_cache_down_reads_are_answered_by_the_repository) {
  world w;
  w.start(2);
  ASSERT_TRUE(w.run(w.replicas[0]->write("k", "v", w.budget())));
  w.cache.faults().fail(op::every, bulwark::error(bulwark::errc::unavailable, "cache down"));
  for (auto& replica : w.replicas) {
    auto r = w.run(replica->read("k", w.budget()));
    ASSERT_TRUE(r && r.value()) << (r ? "nothing" : r.error().message());
    EXPECT_EQ(r.value()->value, "v");
    EXPECT_FALSE(r.value()->stale);
  }
  // Writes stay durable too: the repository is the truth, the cache a copy.
  auto written = w.run(w.replicas[1]->write("k", "v2", w.budget()));
  ASSERT_TRUE(written) << written.error();
  EXPECT_EQ(written.value().outcome, flows::write_state::durable);
  auto r = w.run(w.replicas[0]->read("k", w.budget()));
  ASSERT_TRUE(r && r.value());
  EXPECT_EQ(r.value()->value, "v2");
  w.stop();
}

TEST(outage_scenario, a_replica_restarted_during_the_outage_serves_its_snapshot_and_its_pending_writes_are_replayed) {
  const auto dir = std::filesystem::temp_directory_path() / bulwark::test::unique_name("outage-scenario");
  std::filesystem::create_directories(dir);
  world w;
  w.start(1);
  auto o = w.options(7);
  o.snapshot = flow_t::snapshot_options{dir / "lkg", 10s};
  std::vector<std::string> snapshot_errors;
  o.on_snapshot_error = [&](const bulwark::error& e) { snapshot_errors.push_back(e.message()); };
  auto replica = std::make_unique<flow_t>(w.repo, w.cache, w.bus, o);
  ASSERT_TRUE(w.run(replica->start()));
  ASSERT_TRUE(w.run(replica->write("a", "a0", w.budget())));
  ASSERT_TRUE(w.run(replica->write("b", "b0", w.budget())));

  w.repo.faults().fail(op::every, bulwark::error(bulwark::errc::unavailable, "db down"));
  auto before = w.run(replica->write("a", "a1", w.budget()));
  ASSERT_TRUE(before);
  ASSERT_EQ(before.value().outcome, flows::write_state::pending);
  ASSERT_TRUE(w.run(replica->stop()));
  replica.reset();

  // The process restarts while the database is still down, and the shared cache lost its
  // entries too: only the snapshot can answer.
  for (const char* key : {"a", "b"}) ASSERT_TRUE(w.shared_cache.erase_now(key).value());
  w.advance(1min);
  replica = std::make_unique<flow_t>(w.repo, w.cache, w.bus, o);
  ASSERT_TRUE(w.run(replica->start()));
  auto a = w.run(replica->read("a", w.budget()));
  ASSERT_TRUE(a && a.value()) << (a ? "nothing" : a.error().message());
  EXPECT_EQ(a.value()->value, "a1");
  EXPECT_TRUE(a.value()->pending);
  ASSERT_FALSE(w.shared_cache.get_now("b").value()) << "the cache still holds b: the snapshot is not what answers";
  auto b = w.run(replica->read("b", w.budget()));
  ASSERT_TRUE(b && b.value()) << (b ? "nothing" : b.error().message());
  EXPECT_EQ(b.value()->value, "b0");
  EXPECT_TRUE(b.value()->stale);
  auto after = w.run(replica->write("b", "b1", w.budget()));
  ASSERT_TRUE(after);
  ASSERT_EQ(after.value().outcome, flows::write_state::pending);
  EXPECT_TRUE(snapshot_errors.empty());

  // Back: the replayer writes both pending writes, each once.
  w.repo.faults().clear_all();
  for (int step = 0; step < 100 && w.replayer->stats().replayed < 2; ++step) w.advance(100ms);
  EXPECT_EQ(w.replayer->stats().replayed, 2u);
  EXPECT_EQ(w.dead_letters(), 0);
  EXPECT_EQ(flows::decode(w.db.get_now("a").value()->value).value().value, "a1");
  EXPECT_EQ(flows::decode(w.db.get_now("b").value()->value).value().value, "b1");
  ASSERT_TRUE(w.run(replica->stop()));
  w.stop();
  std::filesystem::remove_all(dir);
}
