#pragma once
// HTTP/1.1 messages: header fields, request, response, status codes and reason phrases.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <bulwark/result.hpp>

namespace bulwark::http {

/// ASCII case-insensitive equality, as field names and most tokens compare.
constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

/// An ordered list of header fields. Names keep the case they arrived (or were set) with and are
/// looked up case-insensitively; repeated fields stay separate entries.
class fields {
public:
  using value_type = std::pair<std::string, std::string>;

  /// The value of the first field named `name`, or nullopt.
  std::optional<std::string_view> get(std::string_view name) const noexcept {
    for (const auto& [n, v] : items_)
      if (iequals(n, name)) return std::string_view(v);
    return std::nullopt;
  }
  /// The value of the first field named `name`, or `fallback`.
  std::string_view value_or(std::string_view name, std::string_view fallback) const noexcept {
    auto v = get(name);
    return v ? *v : fallback;
  }
  bool contains(std::string_view name) const noexcept { return get(name).has_value(); }
  /// How many fields are named `name`.
  std::size_t count(std::string_view name) const noexcept {
    return static_cast<std::size_t>(
        std::count_if(items_.begin(), items_.end(), [&](const value_type& f) { return iequals(f.first, name); }));
  }
  /// Appends a field (keeps existing fields of the same name).
  void add(std::string name, std::string value) { items_.emplace_back(std::move(name), std::move(value)); }
  /// Replaces every field named `name` by one with `value`.
  void set(std::string_view name, std::string value) {
    erase(name);
    items_.emplace_back(std::string(name), std::move(value));
  }
  /// Removes every field named `name`.
  void erase(std::string_view name) {
    std::erase_if(items_, [&](const value_type& f) { return iequals(f.first, name); });
  }
  void clear() noexcept { items_.clear(); }
  std::size_t size() const noexcept { return items_.size(); }
  bool empty() const noexcept { return items_.empty(); }
  auto begin() const noexcept { return items_.begin(); }
  auto end() const noexcept { return items_.end(); }

private:
  std::vector<value_type> items_;
};

/// The standard reason phrase of a status code ("" when unknown).
constexpr std::string_view reason_phrase(int status) noexcept {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 417: return "Expectation Failed";
  case 422: return "Unprocessable Content";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  }
  return "";
}

/// A parsed request as handlers see it.
struct request {
  std::string method;    ///< as sent, case-sensitive ("GET")
  std::string target;    ///< the request-target as sent ("/a/b?x=1")
  int version_minor = 1; ///< 1 for HTTP/1.1, 0 for HTTP/1.0
  fields headers;
  std::string body;       ///< the decoded body (chunked framing removed)
  bool keep_alive = true; ///< whether the connection may carry another request after this one
  /// Path parameters captured by the router ({name} segments), in pattern order.
  std::vector<std::pair<std::string, std::string>> params;
  /// The route pattern that matched ("/users/{id}"), empty before routing or when none did.
  std::string route;
  /// Set by the router: which of its routes matched (-1: none).
  int route_id = -1;
  /// Set by the request metrics (the server's and route_metrics): the series this request was
  /// counted in, so that it is counted once when both are used.
  const void* counted_in = nullptr;

  /// The path part of the target (before '?').
  std::string_view path() const noexcept {
    std::string_view t = target;
    return t.substr(0, t.find('?'));
  }
  /// The query part of the target (after '?', without it), or empty.
  std::string_view query() const noexcept {
    std::string_view t = target;
    auto q = t.find('?');
    return q == std::string_view::npos ? std::string_view() : t.substr(q + 1);
  }
  /// The value of path parameter `name`, or nullopt.
  std::optional<std::string_view> param(std::string_view name) const noexcept {
    for (const auto& [n, v] : params)
      if (n == name) return std::string_view(v);
    return std::nullopt;
  }
};

/// A body produced piece by piece (a large file, a generated report) instead of held in memory.
/// read() fills `out` and returns the number of bytes written; 0 means the end.
class body_source {
public:
  virtual ~body_source() = default;
  /// The total size if known in advance (sent as Content-Length), else nullopt (sent chunked).
  virtual std::optional<std::uint64_t> size() const = 0;
  virtual result<std::size_t> read(std::span<char> out) = 0;
};

class event_stream; // event_stream.hpp: server-sent events

/// A response. Either `body` holds the whole body, or `stream` produces it, or `events` (see
/// event_stream.hpp) turns the connection into a stream of server-sent events.
struct response {
  int status = 200;
  fields headers;
  std::string body;
  std::shared_ptr<body_source> stream;
  std::shared_ptr<event_stream> events;
  /// Set by the server to close the connection after this response.
  bool close = false;

  response() = default;
  explicit response(int s) : status(s) {}
  response(int s, std::string content_type, std::string b) : status(s), body(std::move(b)) {
    headers.set("Content-Type", std::move(content_type));
  }
};

/// True for methods RFC 9110 defines as idempotent (safe to retry).
constexpr bool is_idempotent(std::string_view method) noexcept {
  return method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE" || method == "OPTIONS" ||
         method == "TRACE";
}

} // namespace bulwark::http
