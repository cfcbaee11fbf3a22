#pragma once
// The Redis backend's native codes (redis_errc, category "redis") and the bulwark conditions
// they map onto, so `err == bulwark::errc::unavailable` holds for a reset connection. The one
// table of them is redis_errc_rows (value, name, message, condition); docs/errors.md shows the
// same rows and a test checks that it does. Never renumbered, only appended.
//
// When each is produced:
//   connection_failed  connect refused or failed, socket error
//   connection_closed  the server closed the connection (EOF)
//   not_connected      every connection is waiting to reconnect
//   connect_timeout    no connection within connect_timeout
//   command_timeout    no reply within command_timeout
//   protocol           unparsable bytes from the server
//   unexpected_reply   a reply of the wrong shape, or a value that is not in bulwark's layout
//   server_error       an -ERR reply with no more specific code
//   auth_failed        AUTH or SELECT refused (NOAUTH, WRONGPASS, NOPERM): rejected, which the
//                      HTTP layer answers 503 (the service's credentials, not the caller's)
//   server_busy        -LOADING, -BUSY, -MASTERDOWN, -READONLY, -TRYAGAIN, -CLUSTERDOWN
//   out_of_memory      -OOM (maxmemory reached) or client OOM
//   wrong_type         -WRONGTYPE: the key holds another kind of value
//   no_script          -NOSCRIPT (handled internally by EVALSHA)
//   queue_full         a connection's pending-command bound is reached
//   stopped            the client is stopping or was destroyed
//   cancelled          the caller cancelled the command
//   replicas_not_acked fewer replicas than cluster_options::min_replicas_acked acknowledged a
//                      write within the deadline (WAIT): the outcome on failover is unknown
//   cross_slot         -CROSSSLOT: one command's keys lie in different cluster slots
//   redirected         more MOVED/ASK redirections than cluster_options::max_redirections, or
//                      a MOVED/ASK reply to a client not configured for a cluster

#include <bulwark/error.hpp>

#include <array>
#include <string>
#include <string_view>
#include <system_error>

namespace bulwark::redis {

enum class redis_errc : int {
  connection_failed = 1,
  connection_closed = 2,
  not_connected = 3,
  connect_timeout = 4,
  command_timeout = 5,
  protocol = 6,
  unexpected_reply = 7,
  server_error = 8,
  auth_failed = 9,
  server_busy = 10,
  out_of_memory = 11,
  wrong_type = 12,
  no_script = 13,
  queue_full = 14,
  stopped = 15,
  cancelled = 16,
  replicas_not_acked = 17,
  cross_slot = 18,
  redirected = 19,
};

inline constexpr std::array<error_row, 19> redis_errc_rows{{
    {1, "connection_failed", "redis connection failed", errc::unavailable},
    {2, "connection_closed", "redis connection closed", errc::unavailable},
    {3, "not_connected", "redis not connected (reconnecting)", errc::unavailable},
    {4, "connect_timeout", "redis connect timed out", errc::timeout},
    {5, "command_timeout", "redis command timed out", errc::timeout},
    {6, "protocol", "redis protocol error", errc::protocol_error},
    {7, "unexpected_reply", "unexpected redis reply", errc::protocol_error},
    {8, "server_error", "redis server error", errc::protocol_error},
    {9, "auth_failed", "redis authentication failed", errc::rejected},
    {10, "server_busy", "redis server busy", errc::unavailable},
    {11, "out_of_memory", "redis out of memory", errc::rejected},
    {12, "wrong_type", "redis key holds the wrong kind of value", errc::invalid_argument},
    {13, "no_script", "redis script not loaded", errc::protocol_error},
    {14, "queue_full", "redis connection queue full", errc::rejected},
    {15, "stopped", "redis client stopped", errc::cancelled},
    {16, "cancelled", "redis command cancelled", errc::cancelled},
    {17, "replicas_not_acked", "redis write not acknowledged by enough replicas", errc::timeout},
    {18, "cross_slot", "redis command keys in different cluster slots", errc::invalid_argument},
    {19, "redirected", "redis cluster redirection not followed", errc::unavailable},
}};

/// The category of redis_errc codes ("redis").
inline const std::error_category& redis_category() noexcept {
  static const bulwark::table_category instance("redis", redis_errc_rows);
  return instance;
}

inline std::error_code make_error_code(redis_errc e) noexcept { return {static_cast<int>(e), redis_category()}; }

/// The native code for a server's error reply, chosen by its first word ("WRONGTYPE ...").
inline redis_errc classify_server_error(std::string_view text) noexcept {
  const auto word = text.substr(0, text.find(' '));
  if (word == "NOSCRIPT") return redis_errc::no_script;
  if (word == "WRONGTYPE") return redis_errc::wrong_type;
  if (word == "NOAUTH" || word == "WRONGPASS" || word == "NOPERM") return redis_errc::auth_failed;
  if (word == "OOM") return redis_errc::out_of_memory;
  if (word == "CROSSSLOT") return redis_errc::cross_slot;
  if (word == "MOVED" || word == "ASK") return redis_errc::redirected;
  if (word == "LOADING" || word == "BUSY" || word == "MASTERDOWN" || word == "READONLY" || word == "TRYAGAIN" ||
      word == "CLUSTERDOWN")
    return redis_errc::server_busy;
  return redis_errc::server_error;
}

/// A bulwark::error for a server's error reply: its native code plus the server's text.
inline bulwark::error server_error(std::string_view text) {
  return {make_error_code(classify_server_error(text)), std::string(text)};
}

} // namespace bulwark::redis

template <> struct std::is_error_code_enum<bulwark::redis::redis_errc> : std::true_type {};
