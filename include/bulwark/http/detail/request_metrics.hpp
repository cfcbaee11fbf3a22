#pragma once
// The one recorder of the HTTP request metrics: the server's built-in metrics
// (server_options::metrics) and the route_metrics middleware both record through it.
//
//   <prefix>_requests_total{route,method,status}      counter
//   <prefix>_request_duration_seconds{route,method}   histogram, default_latency_buckets()
//   <prefix>_open_connections                         gauge (the server only)
//
// The prefix is "bulwark_http" unless route_metrics was given another. A request is counted
// once in a set of series: the first recorder marks it (request::counted_in) and any other
// recorder for the same series (same registry and prefix) leaves it alone. The route_metrics
// middleware runs inside the server's handler, so it records first when both are used.

#include <bulwark/http/message.hpp>
#include <bulwark/metrics/registry.hpp>

#include <chrono>
#include <string>
#include <string_view>

namespace bulwark::http::detail {

class request_metrics {
public:
  /// The labels recorded last and their instruments. A keep-alive connection usually repeats
  /// them, so keeping one per connection (or per thread) saves two label lookups per request.
  struct recent {
    const void* series = nullptr;
    std::string route, method;
    int status = 0;
    metrics::counter* requests = nullptr;
    metrics::histogram* latency = nullptr;
  };

  /// Registers the request series in `registry` (and the open-connections gauge when
  /// `count_connections`). Throws std::invalid_argument when a family of the same name exists
  /// with another type or labels.
  request_metrics(metrics::registry& registry, std::string_view prefix, bool count_connections)
      : requests_(&registry.counter_family(std::string(prefix) + "_requests_total", "HTTP requests answered",
                                           {"route", "method", "status"})),
        latency_(&registry.histogram_family(std::string(prefix) + "_request_duration_seconds",
                                            "Time from a complete request to its answer", {"route", "method"},
                                            metrics::default_latency_buckets())) {
    if (count_connections)
      open_ = &registry.gauge_family(std::string(prefix) + "_open_connections", "Open HTTP connections", {}).labels({});
  }

  /// Counts `req`, answered with `status` `took` after it was complete, unless these series
  /// counted it already.
  void record(request& req, int status, std::chrono::steady_clock::duration took, recent& last) {
    if (req.counted_in == requests_) return;
    req.counted_in = requests_;
    const std::string_view route = req.route.empty() ? std::string_view("unmatched") : std::string_view(req.route);
    if (last.series != requests_ || last.status != status || last.route != route || last.method != req.method) {
      const char code[3] = {static_cast<char>('0' + status / 100 % 10), static_cast<char>('0' + status / 10 % 10),
                            static_cast<char>('0' + status % 10)};
      last.requests = &requests_->labels({route, req.method, std::string_view(code, 3)});
      last.latency = &latency_->labels({route, req.method});
      last.series = requests_;
      last.route.assign(route);
      last.method = req.method;
      last.status = status;
    }
    last.requests->inc();
    last.latency->observe(std::chrono::duration<double>(took).count());
  }

  void connection_opened() noexcept {
    if (open_) open_->add(1);
  }
  void connection_closed() noexcept {
    if (open_) open_->add(-1);
  }

private:
  metrics::family<metrics::counter>* requests_;
  metrics::family<metrics::histogram>* latency_;
  metrics::gauge* open_ = nullptr;
};

} // namespace bulwark::http::detail
