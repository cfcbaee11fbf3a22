#pragma once
// Shared by the redis tests: the `main` test server from the environment and key prefixes no
// other test (or earlier run) uses.

#include <bulwark/redis.hpp>

#include "support/run.hpp"

#include <atomic>
#include <chrono>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

namespace bulwark::redis::test {

inline bool server_configured() { return bulwark::test::server_env("BULWARK_REDIS_PORT").has_value(); }

/// The `main` server scripts/servers/redis.sh started (BULWARK_REDIS_HOST/PORT).
inline connection_options main_server() {
  connection_options o;
  o.host = bulwark::test::server_env("BULWARK_REDIS_HOST").value_or("127.0.0.1");
  o.port = static_cast<std::uint16_t>(std::stoi(bulwark::test::server_env("BULWARK_REDIS_PORT").value_or("0")));
  return o;
}

inline bool cluster_configured() { return bulwark::test::server_env("BULWARK_REDIS_CLUSTER_NODES").has_value(); }

/// "host:port,host:port" as seed addresses.
inline std::vector<std::string> split_nodes(const std::string& list) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < list.size()) {
    auto comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    if (comma > start) out.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

/// The shared cluster scripts/servers/redis-cluster.sh started (BULWARK_REDIS_CLUSTER_NODES).
inline cluster_options shared_cluster() {
  cluster_options o;
  o.seeds = split_nodes(bulwark::test::server_env("BULWARK_REDIS_CLUSTER_NODES").value_or(""));
  return o;
}

/// A key prefix no other test (or earlier run) uses. On a cluster, its keys spread over slots.
inline std::string fresh_prefix(std::string_view what) {
  static std::atomic<int> counter{0};
  return "bulwark:test:" + std::string(what) + ":" + std::to_string(::getpid()) + ":" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ":" + std::to_string(counter++) +
         ":";
}

/// A fresh prefix whose keys all share one cluster slot (a {hash tag}): what a repository or a
/// ledger needs on a cluster.
inline std::string fresh_tagged_prefix(std::string_view what) {
  auto p = fresh_prefix(what);
  p.pop_back();
  return "bulwark:test:{" + p.substr(std::string_view("bulwark:test:").size()) + "}:";
}

} // namespace bulwark::redis::test
