#pragma once
// /private/healthcheck of both services, on the library's probes and answer shape
// (bulwark/http/health.hpp), which the admin page and nginx rely on:
//
//   {"status":"UP","components":{"database":{"status":"UP"},"cache":{"status":"DOWN"},
//    "bus":{"status":"UP"},"writes":{"status":"UP","details":{"pending":3}}}}
//
// 200 while the service can serve, 503 with "status":"DOWN" when it cannot (serving_rule).

#include <bulwark/http/health.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace channel_metadata {

using bulwark::http::component_states;
using bulwark::http::health_probe;
using bulwark::http::probe_all;
using bulwark::http::probe_on;

/// Whether the service can serve with these components up: CMS needs the database, or else
/// both the cache (reads: last known good) and the bus (writes: accepted pending); CRS needs
/// its bus (it waits out a database outage, which is its job).
using serving_rule = std::function<bool(const component_states&)>;

inline bool cms_can_serve(const component_states& c) {
  auto up = [&](const char* n) {
    auto it = c.find(n);
    return it != c.end() && it->second;
  };
  return up("database") || (up("cache") && up("bus"));
}

inline bool crs_can_serve(const component_states& c) {
  auto it = c.find("bus");
  return it != c.end() && it->second;
}

/// The healthcheck body: components in `order`, then (CMS) writes with its pending count.
inline nlohmann::ordered_json health_json(bool serving, const component_states& states,
                                          const std::vector<std::string>& order, std::optional<std::size_t> pending) {
  auto body = bulwark::http::health_json(serving, states, order);
  if (pending)
    body["components"]["writes"] = nlohmann::ordered_json{{"status", "UP"}, {"details", {{"pending", *pending}}}};
  return body;
}

/// The healthcheck answer: 200 UP or 503 DOWN, with health_json's body.
inline bulwark::http::response health_response(bool serving, const component_states& states,
                                               const std::vector<std::string>& order,
                                               std::optional<std::size_t> pending) {
  return bulwark::http::health_response(serving, health_json(serving, states, order, pending));
}

} // namespace channel_metadata
