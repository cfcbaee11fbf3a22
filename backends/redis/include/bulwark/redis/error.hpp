#pragma once
// The Redis backend's native error codes, in the category "redis", and how they map onto
// bulwark's conditions (so `err == bulwark::errc::unavailable` holds for a reset connection).
//
// Stable codes (never renumbered; docs/redis.md):
//   value  name                condition         when
//   1      connection_failed   unavailable       connect refused or failed, socket error
//   2      connection_closed   unavailable       the server closed the connection (EOF)
//   3      not_connected       unavailable       every connection is waiting to reconnect
//   4      connect_timeout     timeout           no connection within connect_timeout
//   5      command_timeout     timeout           no reply within command_timeout
//   6      protocol            protocol_error    unparsable bytes from the server
//   7      unexpected_reply    protocol_error    a reply of the wrong shape, or a value that is
//                                                not in bulwark's layout
//   8      server_error        protocol_error    an -ERR reply with no more specific code
//   9      auth_failed         rejected          AUTH or SELECT refused (NOAUTH, WRONGPASS, ...)
//   10     server_busy         unavailable       -LOADING, -BUSY, -MASTERDOWN, -READONLY, -TRYAGAIN
//   11     out_of_memory       rejected          -OOM (maxmemory reached) or client OOM
//   12     wrong_type          invalid_argument  -WRONGTYPE: the key holds another kind of value
//   13     no_script           protocol_error    -NOSCRIPT (handled internally by EVALSHA)
//   14     queue_full          rejected          a connection's pending-command bound is reached
//   15     stopped             cancelled         the client is stopping or was destroyed
//   16     cancelled           cancelled         the caller cancelled the command

#include <bulwark/error.hpp>

#include <string>
#include <string_view>
#include <system_error>

namespace bulwark::redis {

enum class errc : int {
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
};

namespace detail {
class redis_category final : public std::error_category {
public:
  const char* name() const noexcept override { return "redis"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
    case errc::connection_failed: return "redis connection failed";
    case errc::connection_closed: return "redis connection closed";
    case errc::not_connected: return "redis not connected (reconnecting)";
    case errc::connect_timeout: return "redis connect timed out";
    case errc::command_timeout: return "redis command timed out";
    case errc::protocol: return "redis protocol error";
    case errc::unexpected_reply: return "unexpected redis reply";
    case errc::server_error: return "redis server error";
    case errc::auth_failed: return "redis authentication failed";
    case errc::server_busy: return "redis server busy";
    case errc::out_of_memory: return "redis out of memory";
    case errc::wrong_type: return "redis key holds the wrong kind of value";
    case errc::no_script: return "redis script not loaded";
    case errc::queue_full: return "redis connection queue full";
    case errc::stopped: return "redis client stopped";
    case errc::cancelled: return "redis command cancelled";
    }
    return "unknown redis error";
  }
  std::error_condition default_error_condition(int value) const noexcept override {
    using bulwark::errc;
    switch (static_cast<redis::errc>(value)) {
    case redis::errc::connection_failed:
    case redis::errc::connection_closed:
    case redis::errc::not_connected:
    case redis::errc::server_busy: return make_error_condition(errc::unavailable);
    case redis::errc::connect_timeout:
    case redis::errc::command_timeout: return make_error_condition(errc::timeout);
    case redis::errc::protocol:
    case redis::errc::unexpected_reply:
    case redis::errc::server_error:
    case redis::errc::no_script: return make_error_condition(errc::protocol_error);
    case redis::errc::auth_failed:
    case redis::errc::out_of_memory:
    case redis::errc::queue_full: return make_error_condition(errc::rejected);
    case redis::errc::wrong_type: return make_error_condition(errc::invalid_argument);
    case redis::errc::stopped:
    case redis::errc::cancelled: return make_error_condition(errc::cancelled);
    }
    return {value, *this};
  }
};
} // namespace detail

/// The category of the Redis backend's native codes.
inline const std::error_category& category() noexcept {
  static const detail::redis_category instance;
  return instance;
}

inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), category()}; }

/// The native code for a server's error reply, chosen by its first word ("WRONGTYPE ...").
inline errc classify_server_error(std::string_view text) noexcept {
  const auto word = text.substr(0, text.find(' '));
  if (word == "NOSCRIPT") return errc::no_script;
  if (word == "WRONGTYPE") return errc::wrong_type;
  if (word == "NOAUTH" || word == "WRONGPASS" || word == "NOPERM") return errc::auth_failed;
  if (word == "OOM") return errc::out_of_memory;
  if (word == "LOADING" || word == "BUSY" || word == "MASTERDOWN" || word == "READONLY" || word == "TRYAGAIN" ||
      word == "CLUSTERDOWN")
    return errc::server_busy;
  return errc::server_error;
}

/// A bulwark::error for a server's error reply: its native code plus the server's text.
inline bulwark::error server_error(std::string_view text) {
  return {make_error_code(classify_server_error(text)), std::string(text)};
}

} // namespace bulwark::redis

template <> struct std::is_error_code_enum<bulwark::redis::errc> : std::true_type {};
