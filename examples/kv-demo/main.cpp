// kv-demo: a small key-value service on the embedded defaults (in-memory repository, cache and
// event bus; no servers needed). Shows the wiring every bulwark service has: config ->
// backends -> domain -> routes.
//
//   kv-demo [--port 8080] [--address 127.0.0.1] [--threads 2]   (or KV_PORT, KV_ADDRESS, KV_THREADS)
//
//   PUT    /api/items/{key}   body {"value": <any JSON>, "expectedVersion": <n>?}  -> {"key","version"}
//   GET    /api/items/{key}   -> {"key","value","version","source":"cache"|"repository"}
//   DELETE /api/items/{key}   -> 204, or 404
//   GET    /api/items         -> the first 100 items in key order
//   GET    /api/changes       -> changes per key, counted by a change-feed consumer
//   GET    /metrics           Prometheus text format

#include "store.hpp"

#include <bulwark/app.hpp>
#include <bulwark/http/metrics_handler.hpp>
#include <bulwark/http/responses.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/http/server.hpp>
#include <bulwark/memory/cache.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>

#include <iostream>
#include <thread>

namespace http = bulwark::http;
using json = nlohmann::json;
using kv_store = kv::store<bulwark::memory::repository, bulwark::memory::cache, bulwark::memory::event_bus>;

namespace {

json to_json(const kv::item& i) {
  auto value = json::parse(i.value, nullptr, false);
  return {{"key", i.key},
          {"value", value.is_discarded() ? json(i.value) : value},
          {"version", i.version},
          {"source", i.from_cache ? "cache" : "repository"}};
}

void add_routes(http::router& routes, kv_store& store, kv::change_counter& counter) {
  routes.get("/api/items/{key}", [&store](http::request& req) -> bulwark::task<http::response> {
    auto found = co_await store.get(std::string(*req.param("key")));
    if (!found) co_return found.error();
    if (!found.value()) co_return http::error_response(404, "not_found", "no item with this key");
    co_return http::json(to_json(*found.value()));
  });
  routes.put("/api/items/{key}", [&store](http::request& req) -> bulwark::task<http::response> {
    auto body = json::parse(req.body, nullptr, false);
    if (body.is_discarded() || !body.is_object() || !body.contains("value"))
      co_return http::error_response(400, "invalid_argument", R"(expected {"value": ..., "expectedVersion": n})");
    std::optional<bulwark::version_t> expected;
    if (body.contains("expectedVersion")) {
      if (!body["expectedVersion"].is_number_unsigned())
        co_return http::error_response(400, "invalid_argument", "expectedVersion must be a non-negative integer");
      expected = body["expectedVersion"].get<bulwark::version_t>();
    }
    const std::string key(*req.param("key"));
    auto version = co_await store.put(key, body["value"].dump(), expected);
    if (!version) co_return version.error();
    co_return http::json(json{{"key", key}, {"version", version.value()}});
  });
  routes.del("/api/items/{key}", [&store](http::request& req) -> bulwark::task<http::response> {
    auto existed = co_await store.erase(std::string(*req.param("key")));
    if (!existed) co_return existed.error();
    if (!existed.value()) co_return http::error_response(404, "not_found", "no item with this key");
    co_return http::response(204);
  });
  routes.get("/api/items", [&store](http::request&) -> bulwark::task<http::response> {
    auto page = co_await store.list("", 100);
    if (!page) co_return page.error();
    json items = json::array();
    for (const auto& e : page.value().entries) items.push_back(to_json(kv::item{e.key, e.value, e.version, false}));
    co_return http::json(json{{"items", items}, {"next", page.value().next ? json(*page.value().next) : json()}});
  });
  routes.get("/api/changes", [&counter](http::request&) -> bulwark::task<http::response> {
    co_return http::json(json(counter.snapshot()));
  });
}

} // namespace

int main(int argc, char** argv) {
  using bulwark::app::option;
  bulwark::app::stop_signals signals;

  http::server_options options;
  options.address = option(argc, argv, "--address", "KV_ADDRESS", "127.0.0.1");
  options.port = static_cast<std::uint16_t>(std::stoi(option(argc, argv, "--port", "KV_PORT", "8080")));
  options.threads = static_cast<std::size_t>(std::stoi(option(argc, argv, "--threads", "KV_THREADS", "2")));
  options.metrics = std::make_shared<bulwark::metrics::registry>();

  // Backends: the embedded defaults. The bus delivers on its own thread.
  asio::io_context bus_context;
  auto bus_work = asio::make_work_guard(bus_context);
  std::thread bus_thread([&] { bus_context.run(); });
  bulwark::memory::repository repository;
  bulwark::memory::cache cache;
  // The bus drops what its groups committed; its backlog and lag gauges join the server's.
  bulwark::memory::event_bus bus(bus_context.get_executor(), {.metrics = options.metrics});
  kv_store store(repository, cache, bus, std::chrono::minutes(5));

  kv::change_counter counter;
  bulwark::subscribe_options feed{.topic = std::string(kv::changes_topic), .group = "change-counter"};
  auto subscribed =
      bulwark::app::block_on(bus_context.get_executor(), bus.subscribe(std::move(feed), counter.handler()));
  if (!subscribed) {
    std::cerr << "kv-demo: " << subscribed.error().message() << '\n';
    return 1;
  }
  auto subscription = std::move(subscribed).value();

  http::router routes;
  add_routes(routes, store, counter);
  routes.get("/metrics", http::metrics_handler(options.metrics));
  routes.get("/healthz", [](http::request&) -> bulwark::task<http::response> { co_return http::text(200, "ok\n"); });

  http::server server(options, routes.as_handler());
  if (auto started = server.start(); !started) {
    std::cerr << "kv-demo: " << started.error().message() << '\n';
    return 1;
  }
  std::cout << "kv-demo: listening on http://" << options.address << ':' << server.port()
            << " (in-memory repository, cache and event bus)" << std::endl;
  std::cout << "  curl -X PUT -d '{\"value\": {\"name\": \"AT One\"}}' http://" << options.address << ':'
            << server.port() << "/api/items/GB" << std::endl;

  signals.wait();
  std::cout << "kv-demo: stopping" << std::endl;
  server.stop(std::chrono::seconds(5));
  bulwark::app::block_on(bus_context.get_executor(), subscription.stop());
  bulwark::app::block_on(bus_context.get_executor(), bus.stop());
  bus_work.reset();
  bus_thread.join();
  return 0;
}
