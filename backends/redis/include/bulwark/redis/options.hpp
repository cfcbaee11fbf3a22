#pragma once
// Connection options of bulwark::redis::client.

#include <bulwark/resilience/backoff.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace bulwark::redis {

/// Where and how a client connects. Every field has a usable default for a local server.
struct connection_options {
  /// Server address. Prefer an IP address: hiredis resolves host names with a blocking
  /// getaddrinfo() on the calling thread.
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  /// AUTH: `AUTH password` when only a password is set, `AUTH username password` (Redis 6
  /// ACL) when both are. Empty password: no AUTH.
  std::string username;
  std::string password;
  /// SELECT this database after connecting when it is not 0.
  int database = 0;
  /// Connections per client (the pool). Commands go to the connected one with the fewest
  /// replies outstanding; concurrent commands on one connection share one write (automatic
  /// pipelining), so one or two connections are usually enough.
  std::size_t pool_size = 2;
  /// A connection attempt that has not completed within this time fails with
  /// redis::redis_errc::connect_timeout (condition timeout).
  std::chrono::milliseconds connect_timeout{1000};
  /// A command without a reply within this time fails with redis::redis_errc::command_timeout
  /// (condition timeout), and so does every command behind it on that connection: the
  /// connection is closed and reconnected (a stalled Redis connection cannot be resynchronised).
  std::chrono::milliseconds command_timeout{1000};
  /// Delay before reconnecting after the n-th consecutive failure. While a connection waits,
  /// commands sent to it fail at once with redis::redis_errc::not_connected (condition unavailable):
  /// callers are not queued behind an outage.
  backoff reconnect{std::chrono::milliseconds(20), std::chrono::milliseconds(1000), 2.0, true};
  /// Commands outstanding per connection; more fail with redis::redis_errc::queue_full (rejected).
  std::size_t max_pending = 65536;
};

} // namespace bulwark::redis
