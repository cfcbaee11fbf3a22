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

namespace bulwark::redis::test {

inline bool server_configured() { return bulwark::test::server_env("BULWARK_REDIS_PORT").has_value(); }

/// The `main` server scripts/servers/redis.sh started (BULWARK_REDIS_HOST/PORT).
inline connection_options main_server() {
  connection_options o;
  o.host = bulwark::test::server_env("BULWARK_REDIS_HOST").value_or("127.0.0.1");
  o.port = static_cast<std::uint16_t>(std::stoi(bulwark::test::server_env("BULWARK_REDIS_PORT").value_or("0")));
  return o;
}

/// A key prefix no other test (or earlier run) uses.
inline std::string fresh_prefix(std::string_view what) {
  static std::atomic<int> counter{0};
  return "bulwark:test:" + std::string(what) + ":" + std::to_string(::getpid()) + ":" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ":" + std::to_string(counter++) +
         ":";
}

} // namespace bulwark::redis::test
