// hello: serves a fixed ~200-byte JSON document from memory at GET /hello (and metrics at
// GET /metrics). Used by benchmarks/http_vs_nginx.sh.
//
//   hello [--port N] [--threads N] [--address A]     (or HELLO_PORT, HELLO_THREADS, HELLO_ADDRESS)
// Stops gracefully on SIGINT/SIGTERM.

#include <bulwark/http/metrics_handler.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/http/server.hpp>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>

namespace http = bulwark::http;

namespace {

// 199 bytes, like a small cached metadata record.
constexpr std::string_view document =
    R"({"countryCode":"NL","name":"Netherlands","channels":["news","sport","music","film"],)"
    R"("defaultLanguage":"nl","timezone":"Europe/Amsterdam","updatedAt":"2024-05-01T12:00:00Z","version":42,"region":"EU"})";

std::string option(int argc, char** argv, std::string_view flag, const char* env, std::string fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == flag) return argv[i + 1];
  if (const char* v = std::getenv(env); v && *v) return v;
  return fallback;
}

} // namespace

int main(int argc, char** argv) {
  http::server_options options;
  options.address = option(argc, argv, "--address", "HELLO_ADDRESS", "127.0.0.1");
  options.port = static_cast<std::uint16_t>(std::stoi(option(argc, argv, "--port", "HELLO_PORT", "8080")));
  options.threads = static_cast<std::size_t>(std::stoi(option(argc, argv, "--threads", "HELLO_THREADS", "2")));
  options.metrics = std::make_shared<bulwark::metrics::registry>();

  http::router routes;
  routes.get("/hello", [](http::request&) -> bulwark::task<http::response> {
    co_return http::response(200, "application/json", std::string(document));
  });
  routes.get("/metrics", http::metrics_handler(options.metrics));

  // Block the stop signals before the server's threads start, so only sigwait sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  http::server server(options, routes.as_handler());
  if (auto started = server.start(); !started) {
    std::cerr << "hello: " << started.error().message() << '\n';
    return 1;
  }
  std::cout << "hello: listening on " << options.address << ':' << server.port() << " with " << options.threads
            << " threads" << std::endl;
  int sig = 0;
  sigwait(&stop_signals, &sig);
  server.stop(std::chrono::seconds(5));
  return 0;
}
