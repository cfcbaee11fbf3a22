#pragma once
// Calls to the other service (CMS -> CRS for the admin page's proxy; CRS -> CMS for
// force-update-all) with bulwark's HTTP client and HTTP Basic credentials from configuration.

#include <bulwark/error.hpp>
#include <bulwark/http/client.hpp>
#include <bulwark/result.hpp>

#include <asio/this_coro.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace channel_metadata {

/// "Basic " + base64(user:password) (RFC 7617).
inline std::string basic_authorization(std::string_view user, std::string_view password) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const std::string in = std::string(user) + ":" + std::string(password);
  std::string out = "Basic ";
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const std::uint32_t n = (static_cast<std::uint8_t>(in[i]) << 16) | (static_cast<std::uint8_t>(in[i + 1]) << 8) |
                            static_cast<std::uint8_t>(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += alphabet[(n >> s) & 63];
  }
  if (const std::size_t rest = in.size() - i; rest > 0) {
    std::uint32_t n = static_cast<std::uint8_t>(in[i]) << 16;
    if (rest == 2) n |= static_cast<std::uint8_t>(in[i + 1]) << 8;
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += rest == 2 ? alphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

/// The other service: where it listens (a base URL "http://host:port[/prefix]") and how to log in.
struct peer {
  bulwark::http::endpoint at;
  std::string base_path; ///< prefix of every target, without a trailing '/'
  std::string authorization;
  std::chrono::milliseconds timeout{std::chrono::seconds(5)};

  /// Parses `url` (http:// only; port 80 when none). Errors: errc::invalid_argument.
  static bulwark::result<peer> make(std::string_view url, std::string_view user, std::string_view password,
                                    std::chrono::milliseconds timeout) {
    if (!url.starts_with("http://")) return bulwark::error(bulwark::errc::invalid_argument, "not an http:// URL");
    url.remove_prefix(7);
    const auto slash = url.find('/');
    std::string host_port(url.substr(0, slash));
    std::string path = slash == url.npos ? std::string() : std::string(url.substr(slash));
    while (!path.empty() && path.back() == '/') path.pop_back();
    if (host_port.empty()) return bulwark::error(bulwark::errc::invalid_argument, "no host in the URL");
    if (host_port.find(':') == std::string::npos || host_port.back() == ']') host_port += ":80";
    BOOST_OUTCOME_TRY(ep, bulwark::http::endpoint::parse(host_port));
    return peer{std::move(ep), std::move(path), basic_authorization(user, password), timeout};
  }

  /// Sends `method target` (with `body` as JSON when not empty) and returns the answer, any
  /// status. `request_id` is passed on when set. A client is made on the caller's executor for
  /// the call (a client belongs to one executor; the server has several): one connection per
  /// call, which the admin page's few calls a minute afford. Errors: the client's (unavailable:
  /// refused; timeout).
  bulwark::task<bulwark::http::response> call(std::string method, std::string target, std::string body = {},
                                              std::string request_id = {}) const {
    bulwark::http::client_options o;
    o.connect_timeout = timeout;
    o.request_timeout = timeout;
    o.max_idle_per_host = 0;
    bulwark::http::client c(co_await asio::this_coro::executor, o);
    std::string content_type = body.empty() ? std::string() : std::string("application/json");
    auto req =
        bulwark::http::make_request(std::move(method), base_path + target, std::move(body), std::move(content_type));
    req.headers.set("Authorization", authorization);
    if (!request_id.empty()) req.headers.set("request-id", std::move(request_id));
    co_return co_await c.request(at, std::move(req));
  }
};

} // namespace channel_metadata
