#pragma once
// The HTTP/1.1 client: pooled keep-alive connections per host:port, a connect timeout and a
// per-attempt request timeout, bounded retries for idempotent requests only.
//
//   http::client c(ctx.get_executor());
//   auto r = co_await c.request({"127.0.0.1", 5701}, http::make_request("GET", "/hazelcast/health"));
//   if (!r) ...                      // r.error() == errc::unavailable / timeout / protocol_error
//   else if (r.value().status == 200) ...
//
// Errors: http::client_errc (http/client_error.hpp), each mapping onto a bulwark::errc condition;
// a status code is not an error: 404 and 503 are responses.
//
// Retries: after a connection failure (connect_failed, closed_without_response, a reset while
// writing or before the answer) an idempotent request (GET HEAD PUT DELETE OPTIONS TRACE) is
// tried again on a fresh connection, at most max_retries more times; POST and PATCH never are.
// A pooled connection that the server has closed meanwhile is detected before use and dropped.
//
// A client belongs to one executor: call it from coroutines on that executor only.

#include <bulwark/http/client_error.hpp>
#include <bulwark/http/detail/serializer.hpp>
#include <bulwark/http/message.hpp>
#include <bulwark/http/parser.hpp>
#include <bulwark/result.hpp>

#include <asio/connect.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <charconv>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <sys/socket.h>

// GCC 12 at -O1 and above (the asan preset) reports a false -Wmismatched-new-delete for Asio's
// recycling coroutine-frame allocator once it inlines both halves; the pair does match.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace bulwark::http {

/// Where to send a request: a host name or IP address and a port.
struct endpoint {
  std::string host;
  std::uint16_t port = 80;

  /// Parses "host:port" (or "[v6]:port"); errc::invalid_argument when malformed.
  static result<endpoint> parse(std::string_view s) {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return error(errc::invalid_argument, "expected host:port");
    std::string_view host = s.substr(0, colon), port = s.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    unsigned v = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (ec != std::errc() || p != port.data() + port.size() || v == 0 || v > 65535)
      return error(errc::invalid_argument, "bad port in " + std::string(s));
    return endpoint{std::string(host), static_cast<std::uint16_t>(v)};
  }
  std::string to_string() const { return host + ":" + std::to_string(port); }
};

/// A request to send: method, target ("/path?query"), headers and body. Host is added.
inline request make_request(std::string method, std::string target, std::string body = {},
                            std::string content_type = {}) {
  request r;
  r.method = std::move(method);
  r.target = std::move(target);
  r.body = std::move(body);
  if (!content_type.empty()) r.headers.set("Content-Type", std::move(content_type));
  return r;
}

struct client_options {
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(2)};
  std::chrono::milliseconds request_timeout{std::chrono::seconds(10)}; ///< per attempt, write to last byte
  int max_retries = 1;                                                 ///< extra attempts, idempotent requests only
  std::size_t max_idle_per_host = 16; ///< pooled keep-alive connections kept per host:port (0: none)
  std::chrono::milliseconds max_idle{std::chrono::seconds(30)}; ///< a pooled connection older is dropped
  parser_limits limits{};                                       ///< limits.max_body bounds response bodies
};

/// An HTTP/1.1 client with a keep-alive pool per endpoint (see the file comment).
class client {
public:
  explicit client(asio::any_io_executor ex, client_options options = {})
      : ex_(std::move(ex)), options_(std::move(options)) {}

  /// Sends `req` to `to` and returns the response (any status). Errors: see client_errc.
  task<response> request(const endpoint& to, http::request req) {
    std::string wire;
    detail::append_request(wire, req, to.host, to.port);
    const bool idempotent = is_idempotent(req.method);
    const bool head = req.method == "HEAD";
    const int attempts = 1 + (idempotent ? std::max(0, options_.max_retries) : 0);
    error last;
    for (int attempt = 0; attempt < attempts; ++attempt) {
      auto r = co_await once(to, wire, head);
      if (r.has_value()) co_return r;
      last = r.error();
      const auto code = last.code();
      const bool retryable = code == make_error_code(client_errc::connect_failed) ||
                             code == make_error_code(client_errc::closed_without_response);
      if (!retryable) break;
    }
    co_return last;
  }

  /// GET `target` from `to`.
  task<response> get(const endpoint& to, std::string target) {
    return request(to, make_request("GET", std::move(target)));
  }

  /// Number of idle pooled connections (all endpoints).
  std::size_t idle_connections() const noexcept {
    std::size_t n = 0;
    for (const auto& [k, v] : pool_) n += v.size();
    return n;
  }
  /// Closes every pooled connection.
  void close_idle() { pool_.clear(); }

private:
  struct connection {
    explicit connection(asio::any_io_executor ex) : socket(ex), timer(ex) {}
    asio::ip::tcp::socket socket;
    asio::steady_timer timer;
    bool timed_out = false;
  };
  struct idle_entry {
    std::shared_ptr<connection> conn;
    std::chrono::steady_clock::time_point since;
  };

  // A pooled connection is usable if the peer has neither closed it nor sent anything.
  static bool still_open(connection& c) {
    char byte;
    const auto n = ::recv(c.socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }

  std::shared_ptr<connection> take_pooled(const std::string& key) {
    auto it = pool_.find(key);
    if (it == pool_.end()) return nullptr;
    auto& list = it->second;
    const auto now = std::chrono::steady_clock::now();
    while (!list.empty()) {
      auto e = std::move(list.back());
      list.pop_back();
      if (now - e.since < options_.max_idle && still_open(*e.conn)) return e.conn;
    }
    return nullptr;
  }

  void give_back(const std::string& key, std::shared_ptr<connection> c) {
    if (options_.max_idle_per_host == 0) return; // no pool: the connection closes here
    auto& list = pool_[key];
    if (list.size() >= options_.max_idle_per_host) list.erase(list.begin());
    list.push_back({std::move(c), std::chrono::steady_clock::now()});
  }

  // Arms the connection's timer: when it fires, the socket is closed, failing the pending I/O.
  static void arm(const std::shared_ptr<connection>& c, std::chrono::milliseconds d) {
    c->timed_out = false;
    c->timer.expires_after(d);
    c->timer.async_wait([weak = std::weak_ptr<connection>(c)](const asio::error_code& ec) {
      if (ec) return;
      if (auto c = weak.lock()) {
        c->timed_out = true;
        asio::error_code ignored;
        c->socket.close(ignored);
      }
    });
  }

  task<std::shared_ptr<connection>> connect(const endpoint& to) {
    auto c = std::make_shared<connection>(ex_);
    asio::error_code ec;
    arm(c, options_.connect_timeout);
    std::vector<asio::ip::tcp::endpoint> targets;
    auto address = asio::ip::make_address(to.host, ec);
    if (!ec) {
      targets.emplace_back(address, to.port);
    } else {
      asio::ip::tcp::resolver resolver(ex_);
      auto results = co_await resolver.async_resolve(to.host, std::to_string(to.port),
                                                     asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        c->timer.cancel();
        co_return error(make_error_code(client_errc::connect_failed), to.to_string() + ": " + ec.message());
      }
      for (const auto& r : results) targets.push_back(r.endpoint());
    }
    co_await asio::async_connect(c->socket, targets, asio::redirect_error(asio::use_awaitable, ec));
    c->timer.cancel();
    if (ec) {
      if (c->timed_out) co_return error(make_error_code(client_errc::timed_out), "connect to " + to.to_string());
      co_return error(make_error_code(client_errc::connect_failed), to.to_string() + ": " + ec.message());
    }
    c->socket.set_option(asio::ip::tcp::no_delay(true), ec);
    co_return c;
  }

  task<response> once(const endpoint& to, const std::string& wire, bool head) {
    const std::string key = to.to_string();
    auto c = take_pooled(key);
    if (!c) {
      BOOST_OUTCOME_CO_TRY(fresh, co_await connect(to));
      c = std::move(fresh);
    }
    asio::error_code ec;
    arm(c, options_.request_timeout);
    co_await asio::async_write(c->socket, asio::buffer(wire), asio::redirect_error(asio::use_awaitable, ec));
    response_parser parser(options_.limits);
    auto fail = [&](client_errc e, std::string detail) -> result<response> {
      c->timer.cancel();
      asio::error_code ignored;
      c->socket.close(ignored);
      if (c->timed_out) e = client_errc::timed_out;
      return error(make_error_code(e), key + ": " + detail);
    };
    if (ec) co_return fail(client_errc::closed_without_response, "write failed: " + ec.message());
    char buf[16 * 1024];
    std::string_view pending;
    bool got_any = false;
    parser.expect_no_body(head);
    for (;;) {
      if (pending.empty()) {
        const std::size_t n =
            co_await c->socket.async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
          if (ec == asio::error::eof) {
            parser.finish_eof();
            if (parser.complete()) break;
          }
          if (!got_any) co_return fail(client_errc::closed_without_response, ec.message());
          co_return fail(client_errc::truncated_response, ec.message());
        }
        got_any = true;
        pending = std::string_view(buf, n);
      }
      pending.remove_prefix(parser.feed(pending));
      if (parser.failed()) {
        co_return fail(parser.error_reason() == "body too large" ? client_errc::response_too_large
                                                                 : client_errc::malformed_response,
                       std::string(parser.error_reason()));
      }
      if (!parser.complete()) continue;
      if (parser.status_code() / 100 == 1) {
        // An interim answer (100 Continue): the final one follows, maybe in the same bytes.
        parser.reset();
        parser.expect_no_body(head);
        continue;
      }
      if (!pending.empty()) co_return fail(client_errc::malformed_response, "bytes after the response");
      break;
    }
    c->timer.cancel();
    const bool reusable = parser.keep_alive();
    response r = parser.release();
    if (reusable) give_back(key, std::move(c));
    co_return r;
  }

  asio::any_io_executor ex_;
  client_options options_;
  std::map<std::string, std::vector<idle_entry>> pool_;
};

} // namespace bulwark::http

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
