#pragma once
// What both executables' main() share: a thread running an io_context, the log, and starting an
// HTTP server in front of a router.

#include <channel_metadata/config.hpp>

#include <bulwark/app.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/http/server.hpp>
#include <bulwark/metrics/registry.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace channel_metadata {

/// The backends', bus's and background work's io_context, on its own thread.
using background_thread = bulwark::app::io_threads;

/// One line at a time to stdout, from any thread, prefixed with the program's name.
inline std::function<void(const std::string&)> line_log(std::string program) {
  auto m = std::make_shared<std::mutex>();
  return [m, program = std::move(program)](const std::string& line) {
    std::lock_guard lock(*m);
    std::cout << program << ": " << line << std::endl;
  };
}

/// The server options of a service's configuration, exporting request metrics to `metrics`.
inline bulwark::http::server_options server_options_for(const config& c, std::uint16_t port,
                                                        std::shared_ptr<bulwark::metrics::registry> metrics) {
  bulwark::http::server_options o;
  o.address = c.listen_address;
  o.port = port;
  o.threads = c.threads;
  o.metrics = std::move(metrics);
  // Bodies up to the document limit reach the parser, which answers CMS-0004 beyond it; the
  // server's own 413 is only for what is far larger.
  o.limits.max_body = std::max<std::size_t>(c.max_body_bytes * 4, 1 << 20);
  return o;
}

} // namespace channel_metadata
