#pragma once
// Real mode: the stages on Kafka (topics <prefix>commands, <prefix>events, <prefix>rejections)
// and Redis (key prefixes <prefix>state:, <prefix>events:, <prefix>snapshots:). One process
// may run any set of stages; several processes with the same prefix form one deployment, each
// consumer stage's replicas one consumer group.
//
// Threads: one io_context thread runs the Kafka bus's deliveries and the Redis client; the HTTP
// handlers (on the servers' threads) hop onto it for every backend call.

#include <event_log/admission.hpp>
#include <event_log/pipeline.hpp>
#include <event_log/routes.hpp>

#include <bulwark/kafka/event_bus.hpp>
#include <bulwark/redis/client.hpp>
#include <bulwark/redis/repository.hpp>
#include <bulwark/run_on.hpp>

#include <asio/experimental/awaitable_operators.hpp>

#include <array>
#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace event_log {

struct real_options {
  std::string kafka_bootstrap = "localhost:9092";
  std::string redis_host = "127.0.0.1";
  std::uint16_t redis_port = 6379;
  std::string prefix = "event-log.";
  /// Partitions of `events` (keyed by id: the persister's and the materializer's replicas share
  /// them). `commands` and `rejections` get one each (create_topics).
  int partitions = 4;
  std::chrono::milliseconds session_timeout{6000};
  /// pipeline_options::retention.
  std::chrono::milliseconds retention = pipeline_options{}.retention;
  /// pipeline_options::max_batch: 1024, not memory mode's 256. The validator owns the one
  /// partition of `commands` and takes a batch only after the last one's Redis writes and
  /// Kafka acknowledgements (tens of milliseconds on a busy machine, about the same for 256
  /// commands as for 1024): larger batches share them, and a stage takes what is waiting, so
  /// they are large only when it is behind (README, "Benchmark").
  std::size_t max_batch = 1024;
  /// How long the producer waits to fill a batch (linger.ms). 20 ms, not the library's 5 (this
  /// example's was 1): the command API publishes each command on its own, and with hundreds of
  /// requests in flight a longer linger fills larger produce requests, so librdkafka's threads
  /// wake far less often per command (README, "Benchmark").
  std::chrono::milliseconds linger{20};
  /// The command API's admission bound (README, "Admission"): it holds a command while the
  /// stages' consumer groups are more than this many messages behind on a command's way
  /// (pipeline::behind_on_the_way of Kafka's high watermarks minus the groups' committed
  /// offsets, counted at most every `admit_refresh`), and answers 503 after `admit_timeout`
  /// (0: no bound). Each command is one or two such messages (a command, then an event), and
  /// the groups' commits lag their progress by up to `commit_interval`. 2048 (it was 3072): on
  /// warm brokers, interleaved at load 10-19, 2048 kept the p99 lag <= 1 s in 7 runs of 7
  /// (2,199-4,444 commands/s), 3072 in 4 of 6 (1,893-5,367/s); at load 11-12 3072 gave more
  /// (4,921-5,367/s against 4,287-4,444/s), both under 1 s (README, "Admission").
  std::size_t max_in_flight = 2048;
  /// A bound in time as well (admission_options::max_lag; `--max-lag-ms`), off by default:
  /// measured, it halved the throughput (README, "Admission"): the time a message stays in the
  /// count (commit intervals, the count's own age) is most of max_lag on a busy machine, so the
  /// bound sits at its floor, `min_in_flight` (`--min-in-flight`).
  std::chrono::milliseconds max_lag{0};
  std::size_t min_in_flight = 1024;
  std::chrono::milliseconds admit_timeout{5000};
  std::chrono::milliseconds admit_refresh{100};
  /// How often the stages commit their offsets (kafka::config::commit_interval): 100 ms, not
  /// the library's second, so that the admission count follows the stages closely.
  std::chrono::milliseconds commit_interval{100};
  /// Extra librdkafka settings (kafka::config::properties), after the example's own.
  std::vector<std::pair<std::string, std::string>> kafka_properties;
};

class real_deployment {
public:
  using bus_type = bulwark::kafka::event_bus;
  using repository_type = bulwark::redis::repository;
  using pipeline_type = pipeline<bus_type, repository_type>;

  /// Errors: the Kafka client could not be created (a bad bootstrap list).
  static bulwark::result<std::unique_ptr<real_deployment>> create(asio::any_io_executor ex, const settings& s,
                                                                  real_options r) {
    auto metrics = std::make_shared<bulwark::metrics::registry>();
    bulwark::kafka::config k;
    k.bootstrap_servers = r.kafka_bootstrap;
    k.metrics = metrics;
    k.metrics_interval = std::chrono::seconds(1);
    k.default_partitions = r.partitions;
    k.session_timeout = r.session_timeout;
    k.heartbeat_interval = std::chrono::milliseconds(500);
    k.drain_timeout = std::chrono::seconds(5);
    k.linger = r.linger;
    k.commit_interval = r.commit_interval;
    k.properties = r.kafka_properties;
    BOOST_OUTCOME_TRY(bus, bus_type::create(ex, k));
    return std::unique_ptr<real_deployment>(new real_deployment(ex, s, std::move(r), std::move(bus), metrics));
  }

  /// Creates the deployment's topics when missing, never leaving them to auto-creation (the
  /// broker's num.partitions) or to whichever stage subscribes first: `events` with
  /// real_options::partitions, `commands` and `rejections` with one partition each; replication
  /// factor 3, min.insync.replicas 2. One each because more add only cost: every command has
  /// one key (command_key), so `commands` fills one partition whatever it has, and rejections
  /// are few; an idle partition still costs the brokers requests all the time (the consumers'
  /// long-poll fetches to its leader, the metrics' and the admission's offset queries, its
  /// replication). With four each, the admission made 34 requests per count, now 18 (README,
  /// "Storage"). An existing topic is left as it is. Errors: the cluster's.
  bulwark::task<void> create_topics() {
    const std::array<std::pair<std::string_view, int>, 3> topics{
        {{topic::commands, 1}, {topic::events, partitions_}, {topic::rejections, 1}}};
    for (const auto& [t, partitions] : topics) {
      bulwark::kafka::topic_spec spec{pipeline_.topic_name(t), partitions, 3, {{"min.insync.replicas", "2"}}};
      auto made = co_await bus_.admin().ensure_topic(std::move(spec));
      if (!made)
        co_return bulwark::error(made.error().code(),
                                 pipeline_.topic_name(t) + ": " + std::string(made.error().detail()));
    }
    co_return bulwark::ok();
  }

  pipeline_type& stages() { return pipeline_; }
  command_api_context& commands() { return commands_; }
  query_api_context& queries() { return queries_; }
  asio::any_io_executor executor() const { return ex_; }
  asio::awaitable<void> stop() {
    co_await pipeline_.stop();
    co_await bus_.stop();
  }

private:
  real_deployment(asio::any_io_executor ex, const settings& s, real_options r, bus_type bus,
                  std::shared_ptr<bulwark::metrics::registry> metrics)
      : ex_(ex), settings_(s), partitions_(r.partitions), client_(ex, redis_options(r)), bus_(std::move(bus)),
        state_(client_, {r.prefix + "state:"}), events_(client_, {r.prefix + "events:"}),
        snapshots_(client_, {r.prefix + "snapshots:"}), admission_({.max_in_flight = r.max_in_flight,
                                                                    .max_lag = r.max_lag,
                                                                    .min_in_flight = r.min_in_flight,
                                                                    .timeout = r.admit_timeout,
                                                                    .refresh = r.admit_refresh},
                                                                   behind(bus_.admin(), r.prefix), *metrics),
        pipeline_(settings_, bus_, state_, events_, snapshots_,
                  pipeline_options{
                      .prefix = r.prefix, .metrics = metrics, .max_batch = r.max_batch, .retention = r.retention}) {
    commands_.types = &settings_;
    commands_.metrics = metrics;
    commands_.mark_accepted = [this](std::string cid, std::string status) {
      return bulwark::run_on(ex_, mark_accepted(std::move(cid), std::move(status)));
    };
    commands_.forget = [this](std::string cid) { return bulwark::run_on(ex_, forget(std::move(cid))); };
    commands_.admit = [this] { return admission_.admit(); };
    commands_.publish = [this](std::string value) -> bulwark::task<void> {
      bulwark::message m;
      m.key = std::string(command_key);
      m.value = std::move(value);
      auto sent = co_await bus_.publish(pipeline_.topic_name(topic::commands), std::move(m));
      if (!sent) co_return sent.error();
      co_return bulwark::ok();
    };
    queries_.types = &settings_;
    queries_.retention = r.retention;
    queries_.metrics = metrics;
    queries_.get = [this](std::string key) { return bulwark::run_on(ex_, get_snapshot(std::move(key))); };
    queries_.scan = [this](std::string prefix, std::string after, std::size_t limit) {
      return bulwark::run_on(ex_, scan_snapshots(std::move(prefix), std::move(after), limit));
    };
  }

  static bulwark::redis::connection_options redis_options(const real_options& r) {
    bulwark::redis::connection_options o;
    o.host = r.redis_host;
    o.port = r.redis_port;
    return o;
  }

  /// What the admission bound counts: every stage's consumer group's lag, summed over the
  /// partitions (kafka::admin::consumer_lag, the four groups at once, each on a thread of its
  /// own). Owns what it uses: it may finish after the deployment is gone.
  /// (`prefix`: the deployment's, as pipeline::group_name and topic_name prepend it.)
  static admission::measure_fn behind(const bulwark::kafka::admin& admin, const std::string& prefix) {
    std::vector<std::pair<std::string, std::string>> groups;
    for (const auto& [t, group] : pipeline_type::consumer_groups)
      groups.emplace_back(prefix + std::string(group), prefix + std::string(t));
    return [admin, groups = std::move(groups)]() -> bulwark::task<pipeline_count> {
      using namespace asio::experimental::awaitable_operators;
      auto lag = [&](std::size_t i) { return admin.consumer_lag(groups[i].first, groups[i].second); };
      auto [a, b, c, d] = co_await (lag(0) && lag(1) && lag(2) && lag(3));
      pipeline_count n;
      std::array<std::int64_t, 4> behind{};
      std::size_t i = 0;
      for (const auto* group : {&a, &b, &c, &d}) {
        if (!*group) co_return group->error();
        for (const auto& p : group->value()) {
          behind[i] += p.behind;
          // The validator's committed offsets (or the first retained message): the commands
          // decided, the pipeline's rate (pipeline_count).
          if (i == 0) n.handled += p.end - p.behind;
        }
        ++i;
      }
      n.behind = pipeline_type::behind_on_the_way(behind);
      co_return n;
    };
  }

  // The backend calls of the HTTP handlers, run on the backend thread by run_on. Plain member
  // coroutines with parameters by value: each owns what it uses.
  bulwark::task<void> mark_accepted(std::string cid, std::string status) {
    const std::string key = "status:" + cid;
    auto put = co_await snapshots_.put(key, std::move(status), bulwark::no_version);
    if (!put) co_return put.error();
    co_return bulwark::ok();
  }
  bulwark::task<void> forget(std::string cid) {
    const std::string key = "status:" + cid;
    auto erased = co_await snapshots_.erase(key);
    if (!erased) co_return erased.error();
    co_return bulwark::ok();
  }
  bulwark::task<std::optional<bulwark::versioned>> get_snapshot(std::string key) {
    auto got = co_await snapshots_.get(key);
    co_return got;
  }
  bulwark::task<bulwark::scan_page> scan_snapshots(std::string prefix, std::string after, std::size_t limit) {
    auto page = co_await snapshots_.scan(prefix, after, limit);
    co_return page;
  }

  asio::any_io_executor ex_;
  const settings& settings_;
  int partitions_; // of `events` (real_options::partitions)
  bulwark::redis::client client_;
  bus_type bus_;
  repository_type state_, events_, snapshots_;
  admission admission_; // the command API's (real_options::max_in_flight), counted by behind()
  pipeline_type pipeline_;
  command_api_context commands_;
  query_api_context queries_;
};

} // namespace event_log
