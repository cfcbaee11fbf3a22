#pragma once
// The `mysql` category: server error numbers (1000-1999, 3000+, 4000+) and client library
// errors (2000-2999, 5000+) kept as mysql_errno()/mysql_stmt_errno() give them, mapped onto
// bulwark conditions so that `ec == bulwark::errc::unavailable` holds for a refused or lost
// connection. mysql_error_rows is the one table of the numbers bulwark knows (value, the
// library's macro name, message, condition); docs/errors.md shows the same rows and a test
// checks that it does, and that each name is the macro of that number in the client's headers.
// Any other number keeps its value, says "mysql server error N" / "mysql client error N" (the
// detail carries the server's text) and maps onto no condition.
//
// Access refused (1044, 1045, 1142) maps onto `rejected`: the service's own credentials were
// refused, not its caller's, so the HTTP layer answers 503 (with Retry-After), never 401/403.

#include <bulwark/error.hpp>

#include <mysql.h>

#include <array>
#include <string>
#include <system_error>

namespace bulwark::mysql {

inline constexpr std::array<error_row, 28> mysql_error_rows{{
    {1040, "ER_CON_COUNT_ERROR", "too many connections", errc::unavailable},
    {1044, "ER_DBACCESS_DENIED_ERROR", "access denied to the database", errc::rejected},
    {1045, "ER_ACCESS_DENIED_ERROR", "access denied", errc::rejected},
    {1053, "ER_SERVER_SHUTDOWN", "server shutdown in progress", errc::unavailable},
    {1062, "ER_DUP_ENTRY", "duplicate entry", errc::conflict},
    {1142, "ER_TABLEACCESS_DENIED_ERROR", "command denied on the table", errc::rejected},
    {1153, "ER_NET_PACKET_TOO_LARGE", "packet too large (max_allowed_packet)", errc::too_large},
    {1205, "ER_LOCK_WAIT_TIMEOUT", "lock wait timeout exceeded", errc::timeout},
    {1213, "ER_LOCK_DEADLOCK", "deadlock found", errc::conflict},
    {1366, "ER_TRUNCATED_WRONG_VALUE_FOR_FIELD", "incorrect value for a column", errc::invalid_argument},
    {1406, "ER_DATA_TOO_LONG", "data too long for column", errc::invalid_argument},
    {1927, "ER_CONNECTION_KILLED", "connection killed", errc::unavailable},
    {2001, "CR_SOCKET_CREATE_ERROR", "can't create a socket", errc::unavailable},
    {2002, "CR_CONNECTION_ERROR", "can't connect to server (connection refused)", errc::unavailable},
    {2003, "CR_CONN_HOST_ERROR", "can't connect to server", errc::unavailable},
    {2004, "CR_IPSOCK_ERROR", "can't create a TCP/IP socket", errc::unavailable},
    {2005, "CR_UNKNOWN_HOST", "unknown server host", errc::unavailable},
    {2006, "CR_SERVER_GONE_ERROR", "server has gone away", errc::unavailable},
    {2011, "CR_TCP_CONNECTION", "TCP/IP connection error", errc::unavailable},
    {2012, "CR_SERVER_HANDSHAKE_ERR", "error in the server handshake", errc::unavailable},
    {2013, "CR_SERVER_LOST", "lost connection to server during query", errc::unavailable},
    {2014, "CR_COMMANDS_OUT_OF_SYNC", "commands out of sync", errc::protocol_error},
    {2020, "CR_NET_PACKET_TOO_LARGE", "packet too large", errc::too_large},
    {2026, "CR_SSL_CONNECTION_ERROR", "TLS connection error", errc::unavailable},
    {2027, "CR_MALFORMED_PACKET", "malformed packet", errc::protocol_error},
    {2055, "CR_SERVER_LOST_EXTENDED", "lost connection to server", errc::unavailable},
    {5013, "CR_ERR_NET_READ", "network read error", errc::unavailable},
    {5014, "CR_ERR_NET_WRITE", "network write error", errc::unavailable},
}};

namespace detail {
inline std::string unknown_message(int value) {
  if (value >= 2000 && value < 3000) return "mysql client error " + std::to_string(value);
  return "mysql server error " + std::to_string(value);
}
} // namespace detail

/// The category of MySQL/MariaDB server and client error numbers ("mysql").
inline const std::error_category& mysql_category() noexcept {
  static const bulwark::table_category instance("mysql", mysql_error_rows, &detail::unknown_message);
  return instance;
}

/// A code in the mysql category for a native error number.
inline std::error_code make_error_code(unsigned int native) noexcept {
  return {static_cast<int>(native), mysql_category()};
}

/// The last error of a connection as a bulwark::error (code + the server's message).
inline bulwark::error last_error(MYSQL* handle) {
  const unsigned int n = mysql_errno(handle);
  return {make_error_code(n == 0 ? 2000 : n), mysql_error(handle)};
}

/// The last error of a statement as a bulwark::error (code + the server's message).
inline bulwark::error last_error(MYSQL_STMT* stmt) {
  const unsigned int n = mysql_stmt_errno(stmt);
  return {make_error_code(n == 0 ? 2000 : n), mysql_stmt_error(stmt)};
}

/// True when the error means the connection itself is gone (so it must be reconnected).
inline bool is_connection_error(const bulwark::error& e) noexcept {
  if (e.code().category() != mysql_category()) return e == errc::timeout || e == errc::cancelled;
  const int v = e.code().value();
  return e == errc::unavailable || v == 2014 || v == 2027 || (v >= 2000 && v < 3000 && v != 2020) ||
         (v >= 5013 && v <= 5015);
}

} // namespace bulwark::mysql
