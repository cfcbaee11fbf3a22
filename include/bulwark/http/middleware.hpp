#pragma once
// Ready-made middleware for the router (router::use):
//   request_id()          echo a valid UUID `request-id` header or generate a v4 one
//   basic_auth(users)     HTTP Basic, constant-time password comparison, 401 + WWW-Authenticate
//   bearer_auth(tokens)   Authorization: Bearer, constant-time token comparison
//   cors(options)         preflight answers and Access-Control-* headers for configured origins
//   access_log(sink)      one JSON line per request (method, target, route, status, ms, id)
//   route_metrics(reg)    requests and latency per route, method and status (the server's
//                         series, counted once when the server exports them too)

#include <bulwark/http/detail/request_metrics.hpp>
#include <bulwark/http/message.hpp>
#include <bulwark/http/parser.hpp>
#include <bulwark/http/responses.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/metrics/registry.hpp>

#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace bulwark::http {

namespace detail {

/// Compares in time that depends only on the lengths, not on where the inputs differ.
inline bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  // Fold the length difference in and always walk the longer input.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = std::max(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    const auto x = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    const auto y = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

inline std::optional<std::string> base64_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = in[i + static_cast<std::size_t>(k)];
      if (c == '=' && i + 4 == in.size() && k >= 2) {
        v[k] = 0;
        ++pad;
      } else if (pad > 0 || (v[k] = value(c)) < 0) {
        return std::nullopt;
      }
    }
    const std::uint32_t triple = (static_cast<std::uint32_t>(v[0]) << 18) | (static_cast<std::uint32_t>(v[1]) << 12) |
                                 (static_cast<std::uint32_t>(v[2]) << 6) | static_cast<std::uint32_t>(v[3]);
    out.push_back(static_cast<char>(triple >> 16));
    if (pad < 2) out.push_back(static_cast<char>((triple >> 8) & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(triple & 0xff));
  }
  return out;
}

inline bool is_uuid(std::string_view s) noexcept {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

/// A random (version 4, RFC 9562) UUID in its lowercase text form.
inline std::string uuid_v4() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::array<std::uint8_t, 16> b;
  const std::uint64_t hi = rng(), lo = rng();
  for (int i = 0; i < 8; ++i) {
    b[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(hi >> (8 * i));
    b[static_cast<std::size_t>(8 + i)] = static_cast<std::uint8_t>(lo >> (8 * i));
  }
  b[6] = static_cast<std::uint8_t>((b[6] & 0x0f) | 0x40); // version 4
  b[8] = static_cast<std::uint8_t>((b[8] & 0x3f) | 0x80); // variant 10
  static constexpr char hex[] = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (std::size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
    s.push_back(hex[b[i] >> 4]);
    s.push_back(hex[b[i] & 0xf]);
  }
  return s;
}

} // namespace detail

/// Gives every request an id: a valid UUID in the `request-id` header is kept, anything else
/// is replaced by a fresh v4 UUID. The id is set on the request (for handlers and the access
/// log) and echoed on the response.
inline middleware request_id() {
  return [](request& req, const handler& next) -> task<response> {
    std::string id;
    if (auto v = req.headers.get("request-id"); v && detail::is_uuid(*v))
      id = std::string(*v);
    else
      id = detail::uuid_v4();
    req.headers.set("request-id", id);
    auto r = co_await next(req);
    if (r.has_value()) r.value().headers.set("request-id", std::move(id));
    co_return r;
  };
}

/// HTTP Basic authentication against `users` (name -> password). Paths in `public_paths` (exact
/// match) skip it. Failure: 401 with WWW-Authenticate: Basic realm="<realm>".
inline middleware basic_auth(std::map<std::string, std::string> users, std::string realm = "bulwark",
                             std::vector<std::string> public_paths = {}) {
  auto state =
      std::make_shared<const std::tuple<std::map<std::string, std::string>, std::string, std::vector<std::string>>>(
          std::move(users), std::move(realm), std::move(public_paths));
  return [state](request& req, const handler& next) -> task<response> {
    const auto& [users, realm, open] = *state;
    for (const auto& p : open)
      if (req.path() == p) co_return co_await next(req);
    bool ok = false;
    if (auto h = req.headers.get("Authorization"); h && h->size() > 6 && iequals(h->substr(0, 6), "Basic ")) {
      if (auto decoded = detail::base64_decode(detail::trim_ows(h->substr(6)))) {
        const auto colon = decoded->find(':');
        if (colon != std::string::npos) {
          const std::string_view user = std::string_view(*decoded).substr(0, colon);
          const std::string_view pass = std::string_view(*decoded).substr(colon + 1);
          // Compare against every user so timing does not reveal which names exist.
          for (const auto& [u, p] : users) {
            const bool match = detail::constant_time_equal(u, user) & detail::constant_time_equal(p, pass);
            ok = ok || match;
          }
        }
      }
    }
    if (!ok) {
      auto r = error_response(401, "unauthorized", "authentication required");
      r.headers.set("WWW-Authenticate", "Basic realm=\"" + realm + "\"");
      co_return r;
    }
    co_return co_await next(req);
  };
}

/// Bearer token authentication: `Authorization: Bearer <token>` must equal one of `tokens`.
inline middleware bearer_auth(std::vector<std::string> tokens, std::vector<std::string> public_paths = {}) {
  auto state = std::make_shared<const std::pair<std::vector<std::string>, std::vector<std::string>>>(
      std::move(tokens), std::move(public_paths));
  return [state](request& req, const handler& next) -> task<response> {
    for (const auto& p : state->second)
      if (req.path() == p) co_return co_await next(req);
    bool ok = false;
    if (auto h = req.headers.get("Authorization"); h && h->size() > 7 && iequals(h->substr(0, 7), "Bearer ")) {
      const auto token = detail::trim_ows(h->substr(7));
      for (const auto& t : state->first) ok = detail::constant_time_equal(t, token) || ok;
    }
    if (!ok) {
      auto r = error_response(401, "unauthorized", "a valid bearer token is required");
      r.headers.set("WWW-Authenticate", "Bearer");
      co_return r;
    }
    co_return co_await next(req);
  };
}

struct cors_options {
  std::vector<std::string> origins; ///< allowed origins ("https://a.example"); "*" allows any
  std::string methods = "GET, POST, PUT, DELETE, OPTIONS";
  std::string headers = "Content-Type, Authorization, request-id";
  bool credentials = false;
  int max_age_seconds = 600;
};

/// CORS: answers preflights (OPTIONS with Access-Control-Request-Method) with 204 for allowed
/// origins (403 for others) and adds Access-Control-Allow-Origin to answers for allowed origins.
inline middleware cors(cors_options options) {
  auto o = std::make_shared<const cors_options>(std::move(options));
  return [o](request& req, const handler& next) -> task<response> {
    const auto origin = req.headers.get("Origin");
    if (!origin) co_return co_await next(req);
    bool any = false, allowed = false;
    for (const auto& a : o->origins) {
      any = any || a == "*";
      allowed = allowed || a == *origin;
    }
    allowed = allowed || any;
    const std::string allow_origin = any && !o->credentials ? "*" : std::string(*origin);
    if (req.method == "OPTIONS" && req.headers.contains("Access-Control-Request-Method")) {
      if (!allowed) co_return error_response(403, "rejected", "origin not allowed");
      response r(204);
      r.headers.set("Access-Control-Allow-Origin", allow_origin);
      r.headers.set("Access-Control-Allow-Methods", o->methods);
      r.headers.set("Access-Control-Allow-Headers", o->headers);
      r.headers.set("Access-Control-Max-Age", std::to_string(o->max_age_seconds));
      if (o->credentials) r.headers.set("Access-Control-Allow-Credentials", "true");
      r.headers.set("Vary", "Origin");
      co_return r;
    }
    auto r = co_await next(req);
    if (allowed && r.has_value()) {
      auto& resp = r.value();
      resp.headers.set("Access-Control-Allow-Origin", allow_origin);
      if (o->credentials) resp.headers.set("Access-Control-Allow-Credentials", "true");
      resp.headers.set("Vary", "Origin");
    }
    co_return r;
  };
}

namespace detail {

/// Appends `s` to `out` as a JSON string: quotes, backslashes and control characters escaped,
/// valid UTF-8 kept as it is, each byte of an invalid sequence replaced by U+FFFD (so a line
/// is always valid JSON, whatever an error message holds).
inline void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
      }
      ++i;
      continue;
    }
    // A UTF-8 sequence: its length from the lead byte, then continuation bytes, no overlong
    // forms, no surrogates, nothing above U+10FFFF.
    const std::size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    bool valid = n != 0 && i + n <= s.size();
    for (std::size_t k = 1; valid && k < n; ++k) valid = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    if (valid && n >= 3) {
      const auto second = static_cast<unsigned char>(s[i + 1]);
      valid = !(c == 0xe0 && second < 0xa0) && !(c == 0xed && second > 0x9f) && !(c == 0xf0 && second < 0x90) &&
              !(c == 0xf4 && second > 0x8f);
    }
    if (!valid) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  out += '"';
}

} // namespace detail

/// One JSON object per request, handed to `sink` after the handler answered, keys in this
/// order: {"bytes","duration_ms","error" (a failed handler only),"method","request_id","route",
/// "status","target"}. Written directly (no JSON document built): it runs on every request.
inline middleware access_log(std::function<void(const std::string&)> sink) {
  return [sink = std::move(sink)](request& req, const handler& next) -> task<response> {
    const auto started = std::chrono::steady_clock::now();
    auto r = co_await next(req);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    std::string line;
    line.reserve(160 + req.target.size() + req.route.size());
    char number[32];
    auto append_number = [&](auto v) {
      const auto end = std::to_chars(number, number + sizeof number, v).ptr;
      line.append(number, end);
    };
    line += '{';
    if (r.has_value()) {
      line += "\"bytes\":";
      append_number(r.value().body.size());
      line += ',';
    }
    line += "\"duration_ms\":";
    append_number(std::round(ms * 1000) / 1000);
    if (!r.has_value()) {
      line += ",\"error\":";
      detail::append_json_string(line, r.error().message());
    }
    line += ",\"method\":";
    detail::append_json_string(line, req.method);
    if (auto id = req.headers.get("request-id")) {
      line += ",\"request_id\":";
      detail::append_json_string(line, *id);
    }
    line += ",\"route\":";
    detail::append_json_string(line, req.route);
    line += ",\"status\":";
    append_number(r.has_value() ? r.value().status : status_for(r.error().condition()));
    line += ",\"target\":";
    detail::append_json_string(line, req.target);
    line += '}';
    sink(line);
    co_return r;
  };
}

/// Requests by route, method and status (<prefix>_requests_total) and their latency by route
/// and method (<prefix>_request_duration_seconds) in `registry`, recorded by the same code as
/// the server's built-in metrics (server_options::metrics): with the default prefix these are
/// the server's series. A request is counted once per series, so a server exporting into the
/// same registry leaves the requests this middleware counted alone; a handler's exception
/// passes through uncounted here (the server counts its 500).
inline middleware route_metrics(std::shared_ptr<metrics::registry> registry, std::string prefix = "bulwark_http") {
  auto recorder = std::make_shared<detail::request_metrics>(*registry, prefix, false);
  // The registry is kept alive with the recorder: the recorder points into it.
  return [recorder, registry](request& req, const handler& next) -> task<response> {
    const auto started = std::chrono::steady_clock::now();
    auto r = co_await next(req);
    const int status = r.has_value() ? r.value().status : status_for(r.error().condition());
    // No cache across requests: this middleware may serve several threads and registries.
    detail::request_metrics::recent labels;
    recorder->record(req, status, std::chrono::steady_clock::now() - started, labels);
    co_return r;
  };
}

} // namespace bulwark::http
