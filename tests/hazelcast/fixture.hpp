#pragma once
// Shared by the hazelcast tests: the real members from the environment and map names no other
// test (or earlier run) uses.

#include <bulwark/hazelcast.hpp>

#include <chrono>
#include <cstdlib>
#include <string>
#include <unistd.h>
#include <vector>

namespace bulwark::hazelcast::test {

/// A map name unique to this process and call.
inline std::string unique_map(const char* prefix) {
  static int counter = 0;
  return std::string(prefix) + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(std::chrono::system_clock::now().time_since_epoch().count() % 1'000'000'007) + "-" +
         std::to_string(++counter);
}

/// The members scripts/servers/hazelcast.sh started (BULWARK_HAZELCAST_MEMBERS), or none.
inline std::vector<http::endpoint> real_members() {
  const char* list = std::getenv("BULWARK_HAZELCAST_MEMBERS");
  return parse_members(list ? list : "").value();
}

} // namespace bulwark::hazelcast::test
