#pragma once
// Connection and pool settings for the MySQL backend.

#include <bulwark/resilience/backoff.hpp>

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <optional>
#include <string>

namespace bulwark::mysql {

/// TLS settings passed through to the client library (MYSQL_OPT_SSL_*). Empty strings are not set.
struct tls_options {
  std::string ca;                 ///< CA certificate file (MYSQL_OPT_SSL_CA)
  std::string ca_path;            ///< directory of CA certificates (MYSQL_OPT_SSL_CAPATH)
  std::string cert;               ///< client certificate (MYSQL_OPT_SSL_CERT)
  std::string key;                ///< client key (MYSQL_OPT_SSL_KEY)
  std::string cipher;             ///< allowed ciphers (MYSQL_OPT_SSL_CIPHER)
  std::string crl;                ///< certificate revocation list (MYSQL_OPT_SSL_CRL)
  bool verify_server_cert = true; ///< MYSQL_OPT_SSL_VERIFY_SERVER_CERT
  bool enforce = true;            ///< fail instead of falling back to plain text (MYSQL_OPT_SSL_ENFORCE)
};

/// Where and how to connect, and the pool's bounds. Every I/O path has a timeout: the three
/// socket timeouts are always passed to the client library and enforced by the pool's timers.
struct config {
  std::string host = "127.0.0.1";
  unsigned int port = 3306;
  std::string user;
  std::string password;
  std::string database;
  std::string unix_socket; ///< when set, used instead of host/port

  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds read_timeout{5000};
  std::chrono::milliseconds write_timeout{5000};

  std::size_t pool_size = 8;                       ///< at most this many connections
  std::size_t max_waiters = 256;                   ///< callers queued for a connection; beyond: errc::rejected
  std::chrono::milliseconds acquire_timeout{2000}; ///< queued longer: errc::timeout

  /// Delay before reconnecting after a failed connect. While it runs, calls fail
  /// errc::unavailable at once instead of queueing behind a dead server.
  backoff reconnect{std::chrono::milliseconds(50), std::chrono::milliseconds(1000), 2.0, true};

  std::optional<tls_options> tls; ///< nullopt: no TLS

  /// Reads BULWARK_MYSQL_HOST, _PORT, _USER, _PASSWORD, _DATABASE (or another prefix) over
  /// the defaults; missing variables keep the default.
  static config from_env(const std::string& prefix = "BULWARK_MYSQL_") {
    config c;
    auto get = [&](const char* name) -> std::optional<std::string> {
      if (const char* v = std::getenv((prefix + name).c_str())) return std::string(v);
      return std::nullopt;
    };
    if (auto v = get("HOST")) c.host = *v;
    if (auto v = get("PORT")) c.port = static_cast<unsigned int>(std::strtoul(v->c_str(), nullptr, 10));
    if (auto v = get("USER")) c.user = *v;
    if (auto v = get("PASSWORD")) c.password = *v;
    if (auto v = get("DATABASE")) c.database = *v;
    if (auto v = get("SOCKET")) c.unix_socket = *v;
    return c;
  }
};

} // namespace bulwark::mysql
