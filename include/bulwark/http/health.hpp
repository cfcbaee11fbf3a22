#pragma once
// Health and readiness answers: each dependency is probed by one bounded call, and the answer
// names every component with its state, in one shape that load balancers, dashboards and
// operators read:
//
//   {"status":"DOWN","components":{"bus":{"status":"UP"},"logs":{"status":"DOWN"}}}
//
// 200 when the service can serve, 503 (with "status":"DOWN") when it cannot. Which components a
// service needs is its own rule (a predicate over the states); all_up is the strict one.

#include <bulwark/cache.hpp>
#include <bulwark/clock.hpp>
#include <bulwark/http/message.hpp>
#include <bulwark/repository.hpp>
#include <bulwark/resilience/timeout.hpp>
#include <bulwark/result.hpp>
#include <bulwark/run_on.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bulwark::http {

/// One dependency and how to ask whether it answers: ok, or the error it gave.
struct health_probe {
  std::string name; ///< the component's name in the answer: "database", "cache", "bus", ...
  std::function<task<void>()> check;
};

/// What the probes found: component name -> up.
using component_states = std::map<std::string, bool>;

/// Runs every probe, each bounded by `timeout` (a probe that hangs counts as down), one after
/// the other. Never fails. Cost: one call per dependency.
inline asio::awaitable<component_states> probe_all(const std::vector<health_probe>& probes,
                                                   std::chrono::milliseconds timeout) {
  component_states out;
  for (const auto& p : probes) {
    auto checking = with_timeout(p.check(), timeout, clock{}, "health probe");
    auto answered = co_await std::move(checking);
    out[p.name] = answered.has_value();
  }
  co_return out;
}

/// Whether every component in `states` is up (no components: up).
inline bool all_up(const component_states& states) {
  for (const auto& [name, up] : states)
    if (!up) return false;
  return true;
}

/// The body: {"status":"UP"|"DOWN","components":{name:{"status":...}, ...}} with the
/// components in `order` (a name without a state is DOWN).
inline nlohmann::ordered_json health_json(bool serving, const component_states& states,
                                          const std::vector<std::string>& order) {
  nlohmann::ordered_json components = nlohmann::ordered_json::object();
  for (const auto& name : order) {
    auto it = states.find(name);
    components[name] = {{"status", it != states.end() && it->second ? "UP" : "DOWN"}};
  }
  return nlohmann::ordered_json{{"status", serving ? "UP" : "DOWN"}, {"components", std::move(components)}};
}

/// The answer: 200 when serving, else 503, with `body` (health_json's, perhaps extended).
inline response health_response(bool serving, const nlohmann::ordered_json& body) {
  return response(serving ? 200 : 503, "application/json", body.dump());
}

/// The names of `probes`, in their order (health_json's `order`).
inline std::vector<std::string> names_of(const std::vector<health_probe>& probes) {
  std::vector<std::string> out;
  out.reserve(probes.size());
  for (const auto& p : probes) out.push_back(p.name);
  return out;
}

/// A probe that reads `key` from a repository: up when it answers (found or not). `r` must
/// outlive the probe.
template <repository Repository> health_probe repository_probe(std::string name, Repository& r, std::string key) {
  return {std::move(name), [&r, key = std::move(key)]() -> task<void> {
            auto got = co_await r.get(key);
            if (!got) co_return got.error();
            co_return ok();
          }};
}

/// A probe that reads `key` from a cache: up when it answers (found or not).
template <cache Cache> health_probe cache_probe(std::string name, Cache& c, std::string key) {
  return {std::move(name), [&c, key = std::move(key)]() -> task<void> {
            auto got = co_await c.get(key);
            if (!got) co_return got.error();
            co_return ok();
          }};
}

/// `p` run on `home` (where the client it calls lives), answered on the caller's executor.
inline health_probe probe_on(asio::any_io_executor home, health_probe p) {
  return {std::move(p.name), [home, check = std::move(p.check)]() { return run_on(home, check()); }};
}

} // namespace bulwark::http
