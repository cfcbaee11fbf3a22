// checkout: the order, stock and payment services in one process on the memory models, behind
// one gateway address (the contract's /orders, /stock and /payment prefixes), like the course's
// gateway on port 8000. See README.md.
//
//   checkout [--address 127.0.0.1] [--port 8000] [--threads 2] [--answer-timeout-ms 10000]
//   (or CHECKOUT_ADDRESS, CHECKOUT_PORT, CHECKOUT_THREADS, CHECKOUT_ANSWER_TIMEOUT_MS)
// GET /metrics (Prometheus) and GET /health are served beside the contract. Stops on SIGINT or
// SIGTERM; memory mode keeps nothing across a restart.

#include <checkout/memory_mode.hpp>

#include <bulwark/app.hpp>
#include <bulwark/http/metrics_handler.hpp>
#include <bulwark/http/server.hpp>

#include <iostream>
#include <string>

int main(int argc, char** argv) {
  using bulwark::app::option;
  bulwark::app::stop_signals signals;
  namespace http = bulwark::http;

  http::server_options server_options;
  checkout::memory_options memory;
  try {
    server_options.address = option(argc, argv, "--address", "CHECKOUT_ADDRESS", "127.0.0.1");
    server_options.port = static_cast<std::uint16_t>(std::stoi(option(argc, argv, "--port", "CHECKOUT_PORT", "8000")));
    server_options.threads =
        static_cast<std::size_t>(std::stoi(option(argc, argv, "--threads", "CHECKOUT_THREADS", "2")));
    memory.orders.answer_timeout = std::chrono::milliseconds(
        std::stoll(option(argc, argv, "--answer-timeout-ms", "CHECKOUT_ANSWER_TIMEOUT_MS", "10000")));
  } catch (const std::exception& e) {
    std::cerr << "checkout: bad option: " << e.what() << '\n';
    return 2;
  }
  server_options.metrics = std::make_shared<bulwark::metrics::registry>();
  memory.metrics = server_options.metrics;

  checkout::memory_services services(memory);
  http::router routes;
  services.add_routes(routes);
  routes.get("/metrics", http::metrics_handler(server_options.metrics));
  routes.get("/health", [](http::request&) -> bulwark::task<http::response> {
    co_return http::json(nlohmann::json{{"status", "UP"}, {"mode", "memory"}});
  });

  http::server server(server_options, routes.as_handler());
  if (auto started = server.start(); !started) {
    std::cerr << "checkout: " << started.error().message() << '\n';
    return 1;
  }
  std::cout << "checkout: listening on http://" << server_options.address << ':' << server.port()
            << " (order, stock and payment services on memory backends)" << std::endl;
  signals.wait();
  std::cout << "checkout: stopping" << std::endl;
  server.stop(std::chrono::seconds(5));
  return 0;
}
