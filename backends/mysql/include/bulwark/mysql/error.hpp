#pragma once
// The `mysql` error category: server error numbers (1000-1999, 3000+, 4000+) and client
// library errors (2000-2999, 5000+) as they come from mysql_errno()/mysql_stmt_errno(),
// mapped onto bulwark conditions so that `ec == bulwark::errc::unavailable` holds for a
// refused or lost connection.
//
// | native code                                   | bulwark condition
// |-----------------------------------------------|------------------------------
// | 2001-2005, 2006, 2011-2013, 2026, 2055,       | unavailable
// | 1040 (too many connections), 1053 (shutdown), |
// | 1927 (connection killed), 5013/5014 (net I/O) |
// | 1205 lock wait timeout                        | timeout
// | 1062 duplicate key, 1213 deadlock             | conflict
// | 1045/1044/1142 access denied                  | rejected
// | 1406 data too long, 1366 incorrect value      | invalid_argument
// | 1153 / 2020 packet too large                  | too_large
// | 2014 commands out of sync, 2027 malformed     | protocol_error

#include <bulwark/error.hpp>

#include <mysql.h>

#include <string>
#include <system_error>

namespace bulwark::mysql {

namespace detail {
class error_category final : public std::error_category {
public:
  const char* name() const noexcept override { return "mysql"; }

  std::string message(int value) const override {
    switch (value) {
    case 1040: return "too many connections";
    case 1044:
    case 1045: return "access denied";
    case 1053: return "server shutdown in progress";
    case 1062: return "duplicate entry";
    case 1153: return "packet too large (max_allowed_packet)";
    case 1205: return "lock wait timeout exceeded";
    case 1213: return "deadlock found";
    case 1406: return "data too long for column";
    case 2002: return "can't connect to server (connection refused)";
    case 2003: return "can't connect to server";
    case 2005: return "unknown server host";
    case 2006: return "server has gone away";
    case 2013: return "lost connection to server during query";
    case 2014: return "commands out of sync";
    case 2020: return "packet too large";
    case 2026: return "TLS connection error";
    }
    if (value >= 2000 && value < 3000) return "mysql client error " + std::to_string(value);
    return "mysql server error " + std::to_string(value);
  }

  std::error_condition default_error_condition(int value) const noexcept override {
    switch (value) {
    case 1040:
    case 1053:
    case 1927:
    case 2001:
    case 2002:
    case 2003:
    case 2004:
    case 2005:
    case 2006:
    case 2011:
    case 2012:
    case 2013:
    case 2026:
    case 2055:
    case 5013:
    case 5014: return make_error_condition(errc::unavailable);
    case 1205: return make_error_condition(errc::timeout);
    case 1062:
    case 1213: return make_error_condition(errc::conflict);
    case 1044:
    case 1045:
    case 1142: return make_error_condition(errc::rejected);
    case 1366:
    case 1406: return make_error_condition(errc::invalid_argument);
    case 1153:
    case 2020: return make_error_condition(errc::too_large);
    case 2014:
    case 2027: return make_error_condition(errc::protocol_error);
    }
    return {value, *this};
  }
};
} // namespace detail

/// The category of MySQL/MariaDB server and client error numbers.
inline const std::error_category& category() noexcept {
  static const detail::error_category instance;
  return instance;
}

/// A code in the mysql category for a native error number.
inline std::error_code make_error_code(unsigned int native) noexcept { return {static_cast<int>(native), category()}; }

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
  if (e.code().category() != category()) return e == errc::timeout || e == errc::cancelled;
  const int v = e.code().value();
  return e == errc::unavailable || v == 2014 || v == 2027 || (v >= 2000 && v < 3000 && v != 2020) ||
         (v >= 5013 && v <= 5015);
}

} // namespace bulwark::mysql
