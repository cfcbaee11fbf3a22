#pragma once
// Connection options of bulwark::redis::client.

#include <bulwark/resilience/backoff.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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
  /// Sends READONLY after connecting (a cluster replica then serves reads of its master's
  /// slots). Set by the cluster client on its node connections when read_from_replicas is on.
  bool readonly = false;
};

/// How a client reaches a Redis Cluster (client(executor, cluster_options)). The slot map comes
/// from CLUSTER SLOTS; commands go to the master of their key's slot over one pipelined
/// connection per node; MOVED, ASK, TRYAGAIN, CLUSTERDOWN and refused connections are handled
/// inside the client within request_timeout.
struct cluster_options {
  /// "host:port" of some nodes (one that answers is enough; all is best). Prefer IP addresses.
  std::vector<std::string> seeds;
  /// Settings of every node connection; host and port are replaced by the node's address.
  /// pool_size 1: one connection per node (automatic pipelining makes more rarely useful).
  connection_options node = [] {
    connection_options o;
    o.pool_size = 1;
    return o;
  }();
  /// The caller's deadline for one call, redirections and retries included: a call still
  /// failing (TRYAGAIN, CLUSTERDOWN, no reachable node) at this point fails with the last
  /// error (condition unavailable). One reply still bounds a single try (node.command_timeout).
  std::chrono::milliseconds request_timeout{2000};
  /// Delay before retrying after TRYAGAIN, CLUSTERDOWN, a refused connection or a node that
  /// is reconnecting (the n-th retry of one call waits retry.delay(n)).
  backoff retry{std::chrono::milliseconds(5), std::chrono::milliseconds(200), 2.0, true};
  /// MOVED and ASK redirections followed per call; one more fails it (redis_errc::redirected).
  unsigned max_redirections = 16;
  /// Reads (GET, HMGET, ...) go to a replica of the slot's master (READONLY), round robin,
  /// the master when it has none. Replication is asynchronous: a read may miss a recent write.
  bool read_from_replicas = false;
  /// After each write, WAIT for this many replicas to acknowledge it, within the call's
  /// deadline (capped below node.command_timeout). 0: no WAIT (a master killed right after
  /// acknowledging a write may lose it). Fewer acks in time: redis_errc::replicas_not_acked
  /// (condition timeout: the write is on the master, and its survival of a failover unknown).
  unsigned min_replicas_acked = 0;
  /// Least time between two slot map refreshes triggered by redirections.
  std::chrono::milliseconds refresh_interval{100};
};

} // namespace bulwark::redis
