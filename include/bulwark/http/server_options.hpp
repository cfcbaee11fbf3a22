#pragma once
// The server's configuration (server.hpp), on its own so that the connection code can use it
// without the server.

#include <bulwark/http/parser.hpp>
#include <bulwark/metrics/registry.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace bulwark::http {

/// Server configuration.
struct server_options {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0; ///< 0: pick a free port (see server::port())
  std::size_t threads = 1;
  /// How connections reach threads: every thread accepts on its own SO_REUSEPORT socket (the
  /// kernel spreads connections by hash), or thread 0 accepts and deals them out in turn.
  enum class accept_mode { reuse_port, round_robin } accept = accept_mode::reuse_port;
  parser_limits limits{};
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};  ///< between requests
  std::chrono::milliseconds read_timeout{std::chrono::seconds(10)};  ///< from first byte to full request
  std::chrono::milliseconds write_timeout{std::chrono::seconds(10)}; ///< one write of a response
  std::size_t max_connections = 10000;          ///< beyond it, new connections get a 503 and are closed
  std::size_t max_pipelined_bytes = 256 * 1024; ///< answers buffered before they must be written
  /// When set, the server exports bulwark_http_requests_total{route,method,status},
  /// bulwark_http_request_duration_seconds{route,method} and bulwark_http_open_connections.
  /// A request that route_metrics already counted in the same registry is not counted again.
  std::shared_ptr<metrics::registry> metrics;
};

} // namespace bulwark::http
