#pragma once
// What memory and real mode share: the models' thread, and one process's life over any models:
// routes -> server -> (start the models) -> subscribe -> wait for SIGINT/SIGTERM -> stop in order
// (the streams, the HTTP server letting requests in flight finish, the consumer draining, the
// bus flushing).

#include <predictions/config.hpp>
#include <predictions/service.hpp>

#include <bulwark/app.hpp>
#include <bulwark/http/health.hpp>
#include <bulwark/http/metrics_handler.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/http/server.hpp>
#include <bulwark/metrics/registry.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <atomic>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace predictions {

/// The models', consumer's and push loop's io_context, on its own thread.
using home_thread = bulwark::app::io_threads;

/// One line at a time to stdout, from any thread.
inline void log_line(const std::string& line) {
  static std::mutex m;
  std::lock_guard lock(m);
  std::cout << "predictions: " << line << std::endl;
}

/// How a consumer replica joins its group: the inputs' topic, retried `max_attempts` times
/// before a message is parked on "<topic>.dlq".
inline bulwark::subscribe_options consumer_group(const config& c) {
  bulwark::subscribe_options o;
  o.topic = c.topic;
  o.group = c.group;
  o.retry.max_attempts = c.max_attempts;
  return o;
}

/// The models one process runs on (opened, living on `home`), whatever they are.
template <class Bus, class Logs, class Aggregates> struct models {
  Bus& bus;
  Logs& logs;
  Aggregates& aggregates;
  std::string description; ///< for the "listening on" line
  /// /ready's dependencies, in the order the answer names them (none: memory mode).
  std::vector<bulwark::http::health_probe> probes = {};
};

/// One process's pipeline over `m`: its routes and HTTP server, its consumer group member (role
/// all or consumer), its live views. start(), then stop() (also by the destructor).
template <class Bus, class Logs, class Aggregates> class process {
public:
  process(const config& c, asio::any_io_executor home, models<Bus, Logs, Aggregates> m,
          std::shared_ptr<bulwark::metrics::registry> metrics)
      : c_(c), home_(std::move(home)), m_(m), metrics_(std::move(metrics)), in_(m.bus, c.topic, metrics_),
        out_(m.logs, m.aggregates, metrics_), view_(home_, m.logs, m.aggregates, view_options(c)),
        pruner_(home_, m.logs, pruner_options(c), metrics_),
        server_(server_options(c, metrics_), routes_.as_handler()) {
    routes_.get("/health", [this](bulwark::http::request&) -> bulwark::task<bulwark::http::response> {
      if (!ready_) co_return bulwark::http::error_response(503, "unavailable", "starting or stopping");
      nlohmann::json up = nlohmann::json::object();
      up["status"] = "UP";
      co_return bulwark::http::json(up);
    });
    // Readiness: 503 while starting or stopping, else each dependency probed (2 s each); 503
    // naming the one that is down when any is (every role reads or writes all three).
    routes_.get("/ready", [this](bulwark::http::request&) -> bulwark::task<bulwark::http::response> {
      const auto order = bulwark::http::names_of(m_.probes);
      if (!ready_) co_return bulwark::http::health_response(false, bulwark::http::health_json(false, {}, order));
      auto states = co_await bulwark::http::probe_all(m_.probes, std::chrono::seconds(2));
      const bool up = bulwark::http::all_up(states);
      co_return bulwark::http::health_response(up, bulwark::http::health_json(up, states, order));
    });
    routes_.get("/metrics", bulwark::http::metrics_handler(metrics_));
    if (c.role != role_kind::consumer) add_routes(routes_, in_, view_);
  }
  process(const process&) = delete;
  process& operator=(const process&) = delete;
  ~process() { stop(); }

  /// Joins the group (unless role api), then listens. Errors: the bus's subscribe, the listen.
  bulwark::result<void> start() {
    if (c_.role != role_kind::api) {
      auto group = consumer_group(c_);
      auto handler = [this](std::span<const bulwark::envelope> batch) { return out_.handle_batch(batch); };
      auto subscribing = [](Bus& bus, bulwark::subscribe_options o,
                            bulwark::batch_handler h) -> bulwark::task<typename Bus::subscription> {
        co_return co_await bus.subscribe_batch(std::move(o), std::move(h));
      };
      auto sub = bulwark::app::block_on(home_, subscribing(m_.bus, group, handler));
      if (!sub) return bulwark::error(sub.error().code(), "subscribe: " + std::string(sub.error().detail()));
      subscription_.emplace(std::move(sub).value());
    }
    BOOST_OUTCOME_TRY(server_.start());
    view_.start();
    if (c_.role != role_kind::api) pruner_.start();
    ready_ = true;
    started_ = true;
    return bulwark::ok();
  }

  /// Ends the event streams and the logs' pruning, stops the HTTP server (requests in flight
  /// finish, 5 s at most), leaves the group (the handler in flight drains), flushes the bus.
  /// Idempotent.
  void stop() {
    if (!started_) return;
    started_ = false;
    ready_ = false;
    view_.stop();
    pruner_.stop();
    server_.stop(std::chrono::seconds(5));
    if (subscription_) bulwark::app::block_on(home_, subscription_->stop());
    subscription_.reset();
    bulwark::app::block_on(home_, m_.bus.stop());
  }

  std::uint16_t port() const noexcept { return server_.port(); }
  views<Logs, Aggregates>& live_views() noexcept { return view_; }

private:
  static typename views<Logs, Aggregates>::options view_options(const config& c) {
    typename views<Logs, Aggregates>::options o;
    o.push_interval = c.push_interval;
    return o;
  }
  static typename logs_pruner<Logs>::options pruner_options(const config& c) {
    typename logs_pruner<Logs>::options o;
    o.retention = c.logs_retention;
    o.interval = c.logs_prune_interval;
    return o;
  }
  static bulwark::http::server_options server_options(const config& c,
                                                      std::shared_ptr<bulwark::metrics::registry> metrics) {
    bulwark::http::server_options o;
    o.address = c.address;
    o.port = c.port;
    o.threads = 1;
    o.metrics = std::move(metrics);
    o.limits.max_body = 16 * 1024;
    return o;
  }

  config c_;
  asio::any_io_executor home_;
  models<Bus, Logs, Aggregates> m_;
  std::shared_ptr<bulwark::metrics::registry> metrics_;
  ingestion<Bus> in_;
  consumer<Logs, Aggregates> out_;
  views<Logs, Aggregates> view_;
  logs_pruner<Logs> pruner_;
  bulwark::http::router routes_;
  bulwark::http::server server_;
  std::optional<typename Bus::subscription> subscription_;
  std::atomic<bool> ready_{false};
  bool started_ = false;
};

/// Serves `c` on `m` until SIGINT or SIGTERM. Returns the process's exit code.
template <class Bus, class Logs, class Aggregates>
int serve(const config& c, bulwark::app::stop_signals& signals, asio::any_io_executor home,
          models<Bus, Logs, Aggregates> m, std::shared_ptr<bulwark::metrics::registry> metrics) {
  process<Bus, Logs, Aggregates> p(c, home, m, metrics);
  if (auto started = p.start(); !started) {
    std::cerr << "predictions: " << started.error().message() << "\n";
    return 1;
  }
  const char* role = c.role == role_kind::all ? "api+consumer" : c.role == role_kind::api ? "api" : "consumer";
  log_line("listening on http://" + c.address + ":" + std::to_string(p.port()) + " (" + role + ", " + m.description +
           ")");
  signals.wait();
  log_line("stopping");
  p.stop();
  log_line("stopped");
  return 0;
}

} // namespace predictions
