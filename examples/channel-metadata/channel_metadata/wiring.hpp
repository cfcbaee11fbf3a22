#pragma once
// Configuration -> the flows' options, and the health probes over any repository or cache:
// the parts of the wiring that do not depend on which backends were chosen.

#include <channel_metadata/config.hpp>
#include <channel_metadata/health.hpp>

#include <bulwark/cache.hpp>
#include <bulwark/clock.hpp>
#include <bulwark/flows/retry_replayer.hpp>
#include <bulwark/flows/write_through.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/repository.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace channel_metadata {

/// The key every health probe reads (never written: a probe only needs an answer).
inline constexpr std::string_view health_probe_key = "channel-metadata-health-probe";

/// The metrics' name label of CMS's write_through and CRS's replayer.
inline constexpr std::string_view flow_name = "channel_metadata";

/// CMS's write_through options from its configuration.
template <class Flow> typename Flow::options store_options(const config& c,
                                                           std::shared_ptr<bulwark::metrics::registry> m,
                                                           bulwark::clock clock = {}, std::uint16_t node = 0) {
  typename Flow::options o;
  o.name = std::string(flow_name);
  o.retry_topic = c.retry_topic;
  o.soft_ttl = c.soft_ttl;
  o.hard_limit = c.hard_limit;
  o.repository_timeout = c.database_timeout;
  o.node = node;
  o.clock = clock;
  o.metrics = std::move(m);
  // A database that fails half of 10 calls opens the breaker for 5 s; reads then serve the last
  // known good and writes go pending without waiting for a database that is down.
  o.breaker.minimum_calls = 5;
  o.breaker.window_size = 10;
  o.breaker.open_duration = std::chrono::seconds(5);
  o.breaker.half_open_probes = 2;
  o.reconcile_period = c.reconcile_period; // each replica's own pending writes, without waiting to be asked
  if (!c.snapshot_path.empty()) o.snapshot = typename Flow::snapshot_options{c.snapshot_path, std::chrono::seconds(30)};
  return o;
}

/// CRS's retry_replayer options from its configuration (the hook is the caller's).
inline bulwark::flows::retry_replayer_options replayer_options(const config& c,
                                                               std::shared_ptr<bulwark::metrics::registry> m,
                                                               std::string instance, bulwark::clock clock = {}) {
  bulwark::flows::retry_replayer_options o;
  o.topic = c.retry_topic;
  o.group = c.consumer_group;
  o.probe = {std::chrono::milliseconds(100), std::chrono::milliseconds(2000), 2.0, true};
  o.call_timeout = c.database_timeout;
  o.outage_log_prefix = "outage-window/";
  o.instance = std::move(instance);
  o.clock = clock;
  o.metrics = std::move(m);
  o.name = std::string(flow_name);
  return o;
}

/// A probe that reads the probe key from a repository: up when it answers (found or not).
template <bulwark::repository Repository> health_probe repository_probe(std::string name, Repository& r) {
  return bulwark::http::repository_probe(std::move(name), r, std::string(health_probe_key));
}

/// A probe that reads the probe key from a cache.
template <bulwark::cache Cache> health_probe cache_probe(std::string name, Cache& c) {
  return bulwark::http::cache_probe(std::move(name), c, std::string(health_probe_key));
}

} // namespace channel_metadata
