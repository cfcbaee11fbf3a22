#pragma once
// What memory and real mode share: the models' thread, and one process's life over any models:
// routes -> server -> (start the models) -> subscribe -> wait for SIGINT/SIGTERM -> stop in order
// (the streams, the HTTP server letting requests in flight finish, the consumer draining, the
// bus flushing).

#include <predictions/config.hpp>
#include <predictions/service.hpp>

#include <bulwark/app.hpp>
#include <bulwark/http/metrics_handler.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/http/server.hpp>
#include <bulwark/metrics/registry.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace predictions {

/// An io_context on its own thread: the models, the consumer, the push loop.
class home_thread {
public:
  home_thread() : work_(asio::make_work_guard(ctx_)), thread_([this] { ctx_.run(); }) {}
  ~home_thread() { stop(); }
  home_thread(const home_thread&) = delete;
  home_thread& operator=(const home_thread&) = delete;
  asio::any_io_executor executor() { return ctx_.get_executor(); }
  void stop() {
    work_.reset();
    if (thread_.joinable()) thread_.join();
  }

private:
  asio::io_context ctx_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
};

/// One line at a time to stdout, from any thread.
inline void log_line(const std::string& line) {
  static std::mutex m;
  std::lock_guard lock(m);
  std::cout << "predictions: " << line << std::endl;
}

/// The models one process runs on (opened, living on `home`), whatever they are.
template <class Bus, class Logs, class Aggregates> struct models {
  Bus& bus;
  Logs& logs;
  Aggregates& aggregates;
  std::string description; ///< for the "listening on" line
};

/// Serves `c` on `m` until a stop signal. Returns the process's exit code.
template <class Bus, class Logs, class Aggregates>
int serve(const config& c, bulwark::app::stop_signals& signals, asio::any_io_executor home,
          models<Bus, Logs, Aggregates> m, std::shared_ptr<bulwark::metrics::registry> metrics) {
  ingestion<Bus> in(m.bus, c.topic, metrics);
  consumer<Logs, Aggregates> out(m.logs, m.aggregates, metrics);
  typename views<Logs, Aggregates>::options vo;
  vo.push_interval = c.push_interval;
  views<Logs, Aggregates> view(home, m.logs, m.aggregates, vo);

  bulwark::http::router routes;
  std::atomic<bool> ready{false};
  routes.get("/health", [&ready](bulwark::http::request&) -> bulwark::task<bulwark::http::response> {
    if (!ready) co_return bulwark::http::error_response(503, "unavailable", "starting");
    co_return bulwark::http::json({{"status", "UP"}});
  });
  routes.get("/metrics", bulwark::http::metrics_handler(metrics));
  if (c.role != role_kind::consumer) add_routes(routes, in, view);

  bulwark::http::server_options so;
  so.address = c.address;
  so.port = c.port;
  so.threads = 1;
  so.metrics = metrics;
  so.limits.max_body = 16 * 1024;
  bulwark::http::server server(so, routes.as_handler());

  std::optional<typename Bus::subscription> subscription;
  if (c.role != role_kind::api) {
    bulwark::subscribe_options group;
    group.topic = c.topic;
    group.group = c.group;
    auto handler = [&out](const bulwark::envelope& e) { return out.handle(e); };
    auto subscribing = [](Bus& bus, bulwark::subscribe_options o,
                          bulwark::message_handler h) -> bulwark::task<typename Bus::subscription> {
      co_return co_await bus.subscribe(std::move(o), std::move(h));
    };
    auto sub = bulwark::app::block_on(home, subscribing(m.bus, group, handler));
    if (!sub) {
      std::cerr << "predictions: subscribe: " << sub.error().message() << "\n";
      return 1;
    }
    subscription.emplace(std::move(sub).value());
  }
  if (auto listening = server.start(); !listening) {
    std::cerr << "predictions: " << listening.error().message() << "\n";
    return 1;
  }
  view.start();
  ready = true;
  const char* role = c.role == role_kind::all ? "api+consumer" : c.role == role_kind::api ? "api" : "consumer";
  log_line("listening on http://" + c.address + ":" + std::to_string(server.port()) + " (" + role + ", " +
           m.description + ")");

  signals.wait();
  log_line("stopping");
  ready = false;
  view.stop();
  server.stop(std::chrono::seconds(5)); // requests in flight finish; event streams end now
  if (subscription) bulwark::app::block_on(home, subscription->stop());
  bulwark::app::block_on(home, m.bus.stop());
  log_line("stopped");
  return 0;
}

} // namespace predictions
