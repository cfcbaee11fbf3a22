#pragma once
// Real mode: the stages on Kafka (topics <prefix>commands, <prefix>events, <prefix>rejections)
// and Redis (key prefixes <prefix>state:, <prefix>events:, <prefix>snapshots:). One process
// may run any set of stages; several processes with the same prefix form one deployment, each
// consumer stage's replicas one consumer group.
//
// Threads: one io_context thread runs the Kafka bus's deliveries and the Redis client; the HTTP
// handlers (on the servers' threads) hop onto it for every backend call.

#include <event_log/pipeline.hpp>
#include <event_log/routes.hpp>

#include <bulwark/kafka/event_bus.hpp>
#include <bulwark/redis/client.hpp>
#include <bulwark/redis/repository.hpp>

#include <asio/co_spawn.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace event_log {

struct real_options {
  std::string kafka_bootstrap = "localhost:9092";
  std::string redis_host = "127.0.0.1";
  std::uint16_t redis_port = 6379;
  std::string prefix = "event-log.";
  int partitions = 4;
  std::chrono::milliseconds session_timeout{6000};
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
    k.linger = std::chrono::milliseconds(1);
    BOOST_OUTCOME_TRY(bus, bus_type::create(ex, k));
    return std::unique_ptr<real_deployment>(new real_deployment(ex, s, std::move(r), std::move(bus), metrics));
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
      : ex_(ex), settings_(s), client_(ex, redis_options(r)), bus_(std::move(bus)),
        state_(client_, {r.prefix + "state:"}), events_(client_, {r.prefix + "events:"}),
        snapshots_(client_, {r.prefix + "snapshots:"}),
        pipeline_(settings_, bus_, state_, events_, snapshots_, pipeline_options{r.prefix, metrics}) {
    commands_.types = &settings_;
    commands_.metrics = metrics;
    commands_.mark_accepted = [this](std::string cid, std::string status) -> bulwark::task<void> {
      co_return co_await on_backend([this, cid = std::move(cid), status = std::move(status)]() -> bulwark::task<void> {
        auto put = co_await snapshots_.put("status:" + cid, status, bulwark::no_version);
        if (!put) co_return put.error();
        co_return bulwark::ok();
      });
    };
    commands_.forget = [this](std::string cid) -> bulwark::task<void> {
      co_return co_await on_backend([this, cid = std::move(cid)]() -> bulwark::task<void> {
        BOOST_OUTCOME_CO_TRY(co_await snapshots_.erase("status:" + cid));
        co_return bulwark::ok();
      });
    };
    commands_.publish = [this](std::string value) -> bulwark::task<void> {
      bulwark::message m;
      m.key = std::string(command_key);
      m.value = std::move(value);
      auto sent = co_await bus_.publish(pipeline_.topic_name(topic::commands), std::move(m));
      if (!sent) co_return sent.error();
      co_return bulwark::ok();
    };
    queries_.types = &settings_;
    queries_.metrics = metrics;
    queries_.get = [this](std::string key) -> bulwark::task<std::optional<bulwark::versioned>> {
      co_return co_await on_backend([this, key = std::move(key)]() -> bulwark::task<std::optional<bulwark::versioned>> {
        co_return co_await snapshots_.get(key);
      });
    };
    queries_.scan = [this](std::string prefix, std::string after,
                           std::size_t limit) -> bulwark::task<bulwark::scan_page> {
      co_return co_await on_backend(
          [this, prefix = std::move(prefix), after = std::move(after), limit]() -> bulwark::task<bulwark::scan_page> {
            co_return co_await snapshots_.scan(prefix, after, limit);
          });
    };
  }

  static bulwark::redis::connection_options redis_options(const real_options& r) {
    bulwark::redis::connection_options o;
    o.host = r.redis_host;
    o.port = r.redis_port;
    return o;
  }

  /// Runs `op()` on the backend thread (the Redis client is single-threaded) and resumes here.
  /// The lambda is kept in this frame, so the coroutine it starts may use its captures.
  /// (co_spawn with use_awaitable needs a default-constructible value, which result<T> is not,
  /// so the value travels in an optional.)
  template <class Op> auto on_backend(Op op) -> decltype(op()) {
    using value_type = typename decltype(op())::value_type;
    auto held = [](decltype(op()) inner) -> asio::awaitable<std::optional<value_type>> {
      co_return std::optional<value_type>(co_await std::move(inner));
    };
    auto done = co_await asio::co_spawn(ex_, held(op()), asio::use_awaitable);
    co_return std::move(*done);
  }

  asio::any_io_executor ex_;
  const settings& settings_;
  bulwark::redis::client client_;
  bus_type bus_;
  repository_type state_, events_, snapshots_;
  pipeline_type pipeline_;
  command_api_context commands_;
  query_api_context queries_;
};

} // namespace event_log
