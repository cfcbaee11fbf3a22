#pragma once
// The HTTP client's native codes (client_errc, category "http.client") and the bulwark
// conditions they map onto. The one table of them is client_errc_rows (value, name, message,
// condition); docs/errors.md shows the same rows and a test checks that it does. Never
// renumbered, only appended. A status code is not an error: 404 and 503 are responses.
//
// When each is produced:
//   connect_failed           nothing accepted the connection (refused, unreachable, DNS)
//   timed_out                connect or request exceeded its timeout
//   closed_without_response  the server closed the connection (or reset it) after the request
//                            and before the first byte of an answer
//   truncated_response       the connection ended in the middle of an answer
//   malformed_response       the answer is not valid HTTP/1.1
//   response_too_large       the body exceeds client_options::limits.max_body

#include <bulwark/error.hpp>

#include <array>
#include <system_error>

namespace bulwark::http {

enum class client_errc {
  connect_failed = 1,
  timed_out = 2,
  closed_without_response = 3,
  truncated_response = 4,
  malformed_response = 5,
  response_too_large = 6,
};

inline constexpr std::array<error_row, 6> client_errc_rows{{
    {1, "connect_failed", "connect failed", errc::unavailable},
    {2, "timed_out", "timed out", errc::timeout},
    {3, "closed_without_response", "connection closed without a response", errc::protocol_error},
    {4, "truncated_response", "connection closed in the middle of a response", errc::protocol_error},
    {5, "malformed_response", "malformed response", errc::protocol_error},
    {6, "response_too_large", "response too large", errc::too_large},
}};

/// The category of client_errc codes ("http.client").
inline const std::error_category& client_category() noexcept {
  static const bulwark::table_category instance("http.client", client_errc_rows);
  return instance;
}
inline std::error_code make_error_code(client_errc e) noexcept { return {static_cast<int>(e), client_category()}; }

} // namespace bulwark::http

template <> struct std::is_error_code_enum<bulwark::http::client_errc> : std::true_type {};
