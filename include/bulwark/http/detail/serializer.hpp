#pragma once
// The one HTTP/1.1 serializer: the server writes its answers and the client its requests with
// these. Framing fields (Content-Length, Transfer-Encoding) always come from here, never from a
// message's own headers, so a handler cannot make the server send a body that disagrees with
// its framing.

#include <bulwark/http/message.hpp>

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

namespace bulwark::http::detail {

/// Appends `v` in decimal (std::to_string without the temporary).
inline void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  char* p = buf + sizeof buf;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  out.append(p, static_cast<std::size_t>(buf + sizeof buf - p));
}

/// "Date: <IMF-fixdate>\r\n", recomputed at most once a second per thread (strftime costs
/// more than the rest of a small answer's head).
inline std::string_view date_line() {
  thread_local std::time_t cached_at = 0;
  thread_local char line[64];
  thread_local std::size_t length = 0;
  const std::time_t now = std::time(nullptr);
  if (now != cached_at) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    length = std::strftime(line, sizeof line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    cached_at = now;
  }
  return {line, length};
}

/// Whether a response with this status never has a body (RFC 9110 6.4.1).
constexpr bool bodiless_status(int status) noexcept { return status / 100 == 1 || status == 204 || status == 304; }

/// Appends "name: value\r\n" for each field, leaving out the framing fields (and Connection
/// when `connection_is_ours`), which the serializer writes itself.
inline void append_fields(std::string& out, const fields& f, bool connection_is_ours) {
  for (const auto& [n, v] : f) {
    if (iequals(n, "Content-Length") || iequals(n, "Transfer-Encoding")) continue;
    if (connection_is_ours && iequals(n, "Connection")) continue;
    out.append(n);
    out.append(": ");
    out.append(v);
    out.append("\r\n");
  }
}

/// Appends the status line and header section of `r`. `body_length` is the Content-Length to
/// send (nullopt: the body is streamed with chunked framing, or on HTTP/1.0 ends with the
/// connection). `keep_alive` false adds Connection: close.
inline void append_response_head(std::string& out, const response& r, std::optional<std::uint64_t> body_length,
                                 bool keep_alive, int version_minor) {
  out.append("HTTP/1.1 ");
  append_number(out, static_cast<std::uint64_t>(r.status));
  out.push_back(' ');
  out.append(reason_phrase(r.status));
  out.append("\r\n");
  out.append(date_line());
  append_fields(out, r.headers, true);
  if (!bodiless_status(r.status)) {
    if (body_length) {
      out.append("Content-Length: ");
      append_number(out, *body_length);
      out.append("\r\n");
    } else if (version_minor == 1) {
      out.append("Transfer-Encoding: chunked\r\n");
    } // else HTTP/1.0: the body ends when the connection closes
  }
  if (!keep_alive) {
    out.append("Connection: close\r\n");
  } else if (version_minor == 0) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
}

/// Appends a whole response with an in-memory body; `head_only` (an answer to HEAD) leaves the
/// body out but keeps its Content-Length.
inline void append_response(std::string& out, const response& r, bool keep_alive, int version_minor,
                            bool head_only = false) {
  append_response_head(out, r, r.body.size(), keep_alive, version_minor);
  if (!head_only) out.append(r.body);
}

/// Appends one chunk of a chunked body; an empty `piece` is the last chunk (with an empty
/// trailer section).
inline void append_chunk(std::string& out, std::string_view piece) {
  static constexpr char hex[] = "0123456789abcdef";
  char size_line[20];
  char* p = size_line + sizeof size_line;
  std::size_t n = piece.size();
  do {
    *--p = hex[n & 0xf];
    n >>= 4;
  } while (n != 0);
  out.append(p, static_cast<std::size_t>(size_line + sizeof size_line - p));
  out.append("\r\n");
  out.append(piece);
  out.append("\r\n");
}

/// The interim answer to `Expect: 100-continue`.
inline constexpr std::string_view continue_answer = "HTTP/1.1 100 Continue\r\n\r\n";

/// Appends request `r` for `host`:`port`: the request line, a Host field unless `r` has one,
/// its fields and its body with a Content-Length (also an empty one for POST, PUT and PATCH,
/// which some servers require).
inline void append_request(std::string& out, const request& r, std::string_view host, std::uint16_t port) {
  out.reserve(out.size() + 128 + r.body.size());
  out.append(r.method);
  out.push_back(' ');
  out.append(r.target.empty() ? std::string_view("/") : std::string_view(r.target));
  out.append(" HTTP/1.1\r\n");
  if (!r.headers.contains("Host")) {
    out.append("Host: ");
    const bool v6 = host.find(':') != std::string_view::npos;
    if (v6) out.push_back('[');
    out.append(host);
    if (v6) out.push_back(']');
    out.push_back(':');
    append_number(out, port);
    out.append("\r\n");
  }
  append_fields(out, r.headers, false);
  if (!r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH") {
    out.append("Content-Length: ");
    append_number(out, r.body.size());
    out.append("\r\n");
  }
  out.append("\r\n");
  out.append(r.body);
}

} // namespace bulwark::http::detail
