// Cross-backend outage scenarios (label scenario): the flows on the real servers, with the
// database stopped and started again. MariaDB runs privately for each test (scripts/servers/
// mysql.sh with BULWARK_MYSQL_INSTANCE, as tests/mysql/failure.cpp does), so stopping it
// disturbs nobody; the bus is the shared Kafka cluster (unique topics and groups).
#include <bulwark/flows/frame.hpp>
#include <bulwark/flows/retry_replayer.hpp>
#include <bulwark/flows/write_through.hpp>
#include <bulwark/kafka/event_bus.hpp>
#include <bulwark/mysql.hpp>
#include <bulwark/redis/cache.hpp>
#include <bulwark/redis/client.hpp>

#include "kafka/cluster_health.hpp"
#include "mysql/fixture.hpp"
#include "redis/fixture.hpp"
#include "support/run.hpp"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>

#include <map>
#include <string>
#include <vector>

namespace {

using namespace bulwark;
using namespace std::chrono_literals;

class backend_outage_scenario : public ::testing::Test {
protected:
  void SetUp() override {
    BULWARK_REQUIRE_SERVER(script, "BULWARK_MYSQL_SCRIPT");
    BULWARK_REQUIRE_SERVER(bootstrap, "BULWARK_KAFKA_BOOTSTRAP");
    BULWARK_REQUIRE_SERVER(redis_port, "BULWARK_REDIS_PORT");
    server_.emplace(script, "scenario-" + mysql::test::table_name(mysql::test::current_test_name()));
    auto cfg = server_->up();
    ASSERT_TRUE(cfg) << "could not start a private mariadbd:\n" << server_->log();
    pool_.emplace(ctx_.get_executor(), *cfg);
    auto data = run(mysql::repository::open(*pool_, "scenario_data"));
    ASSERT_TRUE(data.has_value()) << data.error();
    data_.emplace(std::move(data).value());
    auto log = run(mysql::repository::open(*pool_, "scenario_outage_log"));
    ASSERT_TRUE(log.has_value()) << log.error();
    log_.emplace(std::move(log).value());

    auto kcfg = kafka::config::from_env();
    kcfg.session_timeout = 6000ms;
    kcfg.heartbeat_interval = 500ms;
    kcfg.drain_timeout = 2000ms;
    auto bus = kafka::event_bus::create(ctx_.get_executor(), kcfg);
    ASSERT_TRUE(bus.has_value()) << bus.error();
    bus_.emplace(std::move(bus).value());
    // The Kafka suites (same lock) kill and restart brokers: start on a whole cluster.
    const auto unhealthy = test::wait_for_kafka_cluster(ctx_, bus_->admin());
    ASSERT_TRUE(unhealthy.empty()) << "the Kafka cluster did not recover from an earlier test: " << unhealthy;
  }

  void TearDown() override {
    if (replayer_) run(replayer_->stop());
    replayer_.reset();
    for (auto& r : replicas_) (void)run(r->stop());
    replicas_.clear();
    cache_.reset();
    if (redis_) run(redis_->stop());
    redis_.reset();
    if (bus_) run(bus_->stop());
    bus_.reset();
    data_.reset();
    log_.reset();
    if (pool_) run(pool_->stop());
    if (server_) server_->command("resume");
    server_.reset();
  }

  template <class T> T run(asio::awaitable<T> op, std::chrono::milliseconds limit = 30s) {
    return mysql::test::run_in(ctx_, std::move(op), limit);
  }

  bool eventually(std::function<bool()> done, std::chrono::milliseconds limit = 30s) {
    return run(test::eventually(std::move(done), limit), limit + 5s);
  }

  using replayer_type = flows::retry_replayer<mysql::repository, kafka::event_bus, mysql::repository>;
  using flow_type = flows::write_through<mysql::repository, redis::cache, kafka::event_bus>;

  // Two write_through replicas on the shared Redis (one prefix: one shared cache).
  void start_replicas(const std::string& retry_topic, int count) {
    redis_.emplace(ctx_.get_executor(), redis::test::main_server());
    cache_.emplace(*redis_, redis::cache_options{redis::test::fresh_prefix("scenario")});
    for (int i = 1; i <= count; ++i) {
      flow_type::options o;
      o.name = "scenario-" + std::to_string(i);
      o.retry_topic = retry_topic;
      o.soft_ttl = 200ms;
      o.hard_limit = 10min;
      o.repository_timeout = 1s;
      o.node = static_cast<std::uint16_t>(i);
      o.breaker.minimum_calls = 4;
      o.breaker.window_size = 10;
      o.breaker.open_duration = 300ms;
      o.breaker.probe_timeout = 1s;
      replicas_.push_back(std::make_unique<flow_type>(*data_, *cache_, *bus_, std::move(o)));
      ASSERT_TRUE(run(replicas_.back()->start()));
    }
  }

  asio::io_context ctx_;
  std::optional<mysql::test::private_server> server_;
  std::optional<mysql::pool> pool_;
  std::optional<mysql::repository> data_;
  std::optional<mysql::repository> log_;
  std::optional<kafka::event_bus> bus_;
  std::unique_ptr<replayer_type> replayer_;
  std::optional<redis::client> redis_;
  std::optional<redis::cache> cache_;
  std::vector<std::unique_ptr<flow_type>> replicas_;
};

// The retry path alone: writes accepted pending while MariaDB is stopped (their retry messages
// on Kafka, as write_through publishes them), some of them superseded by newer writes of other
// replicas, replayed once it is back. Every acknowledged write is accounted for by the outage
// log's counts; each key holds its latest write by order stamp; nothing is dead-lettered.
TEST_F(backend_outage_scenario, mariadb_stopped_and_restarted_the_retry_topic_converges_to_the_latest_writes) {
  const std::string topic = test::unique_name("scenario-retry");
  flows::hybrid_clock replica_a(1), replica_b(2);

  // Before the outage: durable writes of every key.
  constexpr int keys = 8;
  std::map<std::string, flows::frame> latest;
  for (int k = 0; k < keys; ++k) {
    const std::string key = "item:" + std::to_string(k);
    flows::frame f{flows::write_state::durable, replica_a.now(), "before-" + std::to_string(k), "v0"};
    ASSERT_TRUE(run(data_->put(key, flows::encode(f), std::nullopt)).has_value());
    latest[key] = f;
  }

  ASSERT_TRUE(server_->command("stop"));
  auto down = run(data_->get("item:0"));
  ASSERT_FALSE(down.has_value()) << "the database answers after stop";

  // During the outage: two replicas accept writes pending. Per key the topic holds them in
  // publish order, which is not always stamp order: replica b's clock runs behind, so some of
  // its later publishes carry older stamps and must be superseded, not applied.
  int acknowledged = 0;
  std::vector<flows::order_stamp> behind;
  for (int k = 0; k < keys; ++k) behind.push_back(replica_b.now()); // b's stamps taken early: older
  for (int round = 0; round < 3; ++round) {
    for (int k = 0; k < keys; ++k) {
      const std::string key = "item:" + std::to_string(k);
      const bool from_b_behind = (round == 2 && k % 2 == 0);
      flows::frame f{flows::write_state::pending, from_b_behind ? behind[k] : replica_a.now(),
                     "req-" + std::to_string(round) + "-" + std::to_string(k), "v" + std::to_string(round + 1)};
      auto published = run(bus_->publish(topic, flows::retry_message(key, f, 0)));
      ASSERT_TRUE(published.has_value()) << published.error();
      ++acknowledged;
      if (f.stamp > latest[key].stamp) latest[key] = f;
    }
  }

  flows::retry_replayer_options o;
  o.topic = topic;
  o.group = test::unique_name("scenario-replayers");
  o.probe = {50ms, 500ms, 2.0, true};
  o.call_timeout = 2s;
  o.log_interval = 0ms;
  std::vector<flows::outage_window> hooked;
  o.on_recovery = [&](const flows::outage_window& w) -> task<void> {
    hooked.push_back(w);
    co_return ok();
  };
  replayer_ = std::make_unique<replayer_type>(*data_, *bus_, *log_, o);
  auto started = run(replayer_->start());
  ASSERT_TRUE(started.has_value()) << started.error();

  // The replayer receives the messages and waits: nothing is dead-lettered while it is down.
  ASSERT_TRUE(eventually([&] { return replayer_->stats().waiting >= 1; }))
      << "the replayer never started waiting for the database";
  ASSERT_TRUE(eventually([&] { return replayer_->stats().outage_windows == 1; }));
  {
    asio::steady_timer pause(ctx_, 1500ms); // several probes against the stopped server
    run([&]() -> asio::awaitable<void> { co_await pause.async_wait(asio::use_awaitable); }());
  }
  EXPECT_EQ(replayer_->stats().dead_lettered, 0u);
  EXPECT_EQ(replayer_->stats().replayed, 0u);

  ASSERT_TRUE(server_->command("start"));
  ASSERT_TRUE(eventually([&] {
    const auto s = replayer_->stats();
    return s.replayed + s.superseded + s.duplicates == static_cast<std::uint64_t>(acknowledged);
  })) << "replayed "
      << replayer_->stats().replayed << " superseded " << replayer_->stats().superseded;
  run(replayer_->flush());

  const auto stats = replayer_->stats();
  EXPECT_EQ(stats.dead_lettered, 0u);
  EXPECT_EQ(stats.waiting, 0u);
  EXPECT_EQ(stats.superseded, static_cast<std::uint64_t>(keys / 2)) << "replica b's older writes were not superseded";

  // Every key holds its latest acknowledged write by order stamp, as a durable frame.
  for (const auto& [key, want] : latest) {
    auto got = run(data_->get(key));
    ASSERT_TRUE(got.has_value()) << got.error();
    ASSERT_TRUE(got.value().has_value()) << key;
    auto f = flows::decode(got.value()->value);
    ASSERT_TRUE(f.has_value()) << key << ": " << f.error();
    EXPECT_EQ(f.value().stamp, want.stamp) << key;
    EXPECT_EQ(f.value().value, want.value) << key;
    EXPECT_EQ(f.value().request_id, want.request_id) << key;
    EXPECT_EQ(f.value().state, flows::write_state::durable) << key;
  }

  // The outage log accounts for every acknowledged write.
  auto windows = run(flows::list_outage_windows(*log_, o.outage_log_prefix));
  ASSERT_TRUE(windows.has_value()) << windows.error();
  ASSERT_EQ(windows.value().size(), 1u);
  const auto& w = windows.value()[0];
  ASSERT_TRUE(w.recovered);
  EXPECT_LE(w.first_failure, *w.recovered);
  EXPECT_EQ(w.replayed + w.superseded, static_cast<std::uint64_t>(acknowledged));
  EXPECT_EQ(hooked.size(), 1u);
}

// The whole flow: two write_through replicas (MariaDB, Redis, Kafka) and a replayer; MariaDB is
// stopped while both replicas read and write, then started again. Every read is answered (stale
// while it is down), every acknowledged write (durable or pending) is accounted for by the
// outage log, and each key ends with its latest acknowledged write by order stamp, in MariaDB
// and in Redis; nothing is dead-lettered.
TEST_F(backend_outage_scenario, write_through_replicas_on_mariadb_redis_and_kafka_keep_every_acknowledged_write) {
  const std::string topic = test::unique_name("scenario-wt-retry");
  start_replicas(topic, 2);
  ASSERT_FALSE(HasFatalFailure());

  flows::retry_replayer_options o;
  o.topic = topic;
  o.group = test::unique_name("scenario-wt-replayers");
  o.probe = {50ms, 500ms, 2.0, true};
  o.call_timeout = 2s;
  o.log_interval = 0ms;
  replayer_ = std::make_unique<replayer_type>(*data_, *bus_, *log_, o);
  auto started = run(replayer_->start());
  ASSERT_TRUE(started.has_value()) << started.error();

  struct ack {
    std::string key, value;
    flows::write_receipt receipt;
  };
  std::vector<ack> acks;
  constexpr int keys = 6;
  auto key_of = [](int k) { return "item:" + std::to_string(k); };
  auto write = [&](int replica, int k, const std::string& value) {
    auto r = run(replicas_[static_cast<std::size_t>(replica)]->write(key_of(k), value, deadline::after(5s)));
    ASSERT_TRUE(r.has_value()) << key_of(k) << ": " << r.error();
    acks.push_back({key_of(k), value, r.value()});
  };
  int stale = 0;
  auto read_all = [&] {
    for (int replica = 0; replica < 2; ++replica)
      for (int k = 0; k < keys; ++k) {
        auto r = run(replicas_[static_cast<std::size_t>(replica)]->read(key_of(k), deadline::after(5s)));
        ASSERT_TRUE(r.has_value()) << key_of(k) << ": " << r.error();
        ASSERT_TRUE(r.value().has_value()) << key_of(k) << ": no value";
        stale += r.value()->stale;
      }
  };
  auto pause = [&](std::chrono::milliseconds d) {
    asio::steady_timer t(ctx_, d);
    run([&]() -> asio::awaitable<void> { co_await t.async_wait(asio::use_awaitable); }());
  };

  for (int k = 0; k < keys; ++k) write(k % 2, k, "v0");
  read_all();

  ASSERT_TRUE(server_->command("stop"));
  pause(300ms); // past the soft TTL: reads go to the (stopped) database, then serve stale
  read_all();
  EXPECT_EQ(stale, 2 * keys) << "reads past the soft TTL were not served stale while the database was down";
  for (int round = 1; round <= 3; ++round) {
    for (int k = 0; k < keys; ++k) write((k + round) % 2, k, "v" + std::to_string(round));
    read_all();
    ASSERT_FALSE(HasFatalFailure());
  }
  std::size_t pending = 0;
  for (const auto& a : acks) pending += a.receipt.outcome == flows::write_state::pending;
  EXPECT_EQ(pending, static_cast<std::size_t>(3 * keys)) << "writes during the outage were not accepted pending";
  // The replayer received a retry message and found the database down: asked of the window it
  // opened (a count that stays), not of stats().waiting, a gauge that is 1 only while a handler
  // sleeps between two probes (jittered, sometimes a few ms), so that this check never depends
  // on sampling it at the right moment. Failing here means no retry message reached it at all.
  ASSERT_TRUE(eventually([&] { return replayer_->stats().outage_windows >= 1; }))
      << "the replayer never found the database down: replayed " << replayer_->stats().replayed << ", superseded "
      << replayer_->stats().superseded << ", duplicates " << replayer_->stats().duplicates << ", dead-lettered "
      << replayer_->stats().dead_lettered << ", waiting " << replayer_->stats().waiting;

  ASSERT_TRUE(server_->command("start"));
  ASSERT_TRUE(eventually([&] {
    const auto s = replayer_->stats();
    return s.replayed + s.superseded + s.duplicates >= pending;
  })) << "replayed "
      << replayer_->stats().replayed;
  run(replayer_->flush());
  const auto s = replayer_->stats();
  EXPECT_EQ(s.dead_lettered, 0u);
  EXPECT_EQ(s.replayed + s.superseded + s.duplicates, pending);

  std::map<std::string, const ack*> latest;
  for (const auto& a : acks)
    if (!latest[a.key] || latest[a.key]->receipt.stamp < a.receipt.stamp) latest[a.key] = &a;
  for (const auto& [key, a] : latest) {
    auto got = run(data_->get(key));
    ASSERT_TRUE(got.has_value() && got.value().has_value()) << key;
    auto f = flows::decode(got.value()->value);
    ASSERT_TRUE(f.has_value()) << key;
    EXPECT_EQ(f.value().stamp, a->receipt.stamp) << key << ": MariaDB does not hold the latest write";
    EXPECT_EQ(f.value().value, a->value) << key;
    auto c = run(cache_->get(key));
    ASSERT_TRUE(c.has_value() && c.value().has_value()) << key;
    EXPECT_EQ(c.value()->version, a->receipt.stamp.value) << key << ": Redis does not hold the latest write";
  }
  auto windows = run(flows::list_outage_windows(*log_, o.outage_log_prefix));
  ASSERT_TRUE(windows.has_value()) << windows.error();
  std::uint64_t accounted = 0;
  for (const auto& w : windows.value()) accounted += w.replayed + w.superseded;
  EXPECT_EQ(accounted, pending) << "the outage log does not account for every pending write";
}

} // namespace
