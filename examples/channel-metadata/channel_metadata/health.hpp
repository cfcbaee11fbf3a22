#pragma once
// /private/healthcheck of both services. Each dependency is probed by one bounded call (a
// repository or cache get of a probe key; the bus's own check), and the answer has one shape,
// which the admin page and nginx rely on:
//
//   {"status":"UP","components":{"database":{"status":"UP"},"cache":{"status":"DOWN"},
//    "bus":{"status":"UP"},"writes":{"status":"UP","details":{"pending":3}}}}
//
// 200 while the service can serve, 503 with "status":"DOWN" when it cannot (serving_rule).

#include <bulwark/clock.hpp>
#include <bulwark/http/message.hpp>
#include <bulwark/resilience/timeout.hpp>
#include <bulwark/result.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace channel_metadata {

/// One dependency and how to ask whether it answers: ok, or the error it gave.
struct health_probe {
  std::string name; ///< "database", "cache", "bus", "outageLog"
  std::function<bulwark::task<void>()> check;
};

/// What the probes found: component name -> up.
using component_states = std::map<std::string, bool>;

/// Runs every probe, each bounded by `timeout` (a probe that hangs counts as down), one after
/// the other. Cost: one call per dependency.
inline asio::awaitable<component_states> probe_all(const std::vector<health_probe>& probes,
                                                   std::chrono::milliseconds timeout) {
  component_states out;
  for (const auto& p : probes) {
    auto checking = bulwark::with_timeout(p.check(), timeout, bulwark::clock{}, "health probe");
    auto answered = co_await std::move(checking);
    out[p.name] = answered.has_value();
  }
  co_return out;
}

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
  nlohmann::ordered_json components = nlohmann::ordered_json::object();
  for (const auto& name : order) {
    auto it = states.find(name);
    const bool up = it != states.end() && it->second;
    components[name] = {{"status", up ? "UP" : "DOWN"}};
  }
  if (pending) components["writes"] = nlohmann::ordered_json{{"status", "UP"}, {"details", {{"pending", *pending}}}};
  return nlohmann::ordered_json{{"status", serving ? "UP" : "DOWN"}, {"components", std::move(components)}};
}

/// The healthcheck answer: 200 UP or 503 DOWN, with health_json's body.
inline bulwark::http::response health_response(bool serving, const component_states& states,
                                               const std::vector<std::string>& order,
                                               std::optional<std::size_t> pending) {
  return bulwark::http::response(serving ? 200 : 503, "application/json",
                                 health_json(serving, states, order, pending).dump());
}

} // namespace channel_metadata
