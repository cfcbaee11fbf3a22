#pragma once
// A ready-made handler that serves a metrics registry in the Prometheus text format 0.0.4:
//   routes.get("/metrics", http::metrics_handler(registry));

#include <bulwark/http/handler.hpp>
#include <bulwark/http/message.hpp>
#include <bulwark/metrics/registry.hpp>

#include <memory>

namespace bulwark::http {

/// Serves `registry->expose()` with Content-Type text/plain; version=0.0.4.
inline handler metrics_handler(std::shared_ptr<metrics::registry> registry) {
  return [registry = std::move(registry)](request&) -> task<response> {
    co_return response(200, std::string(metrics::content_type), registry->expose());
  };
}

} // namespace bulwark::http
