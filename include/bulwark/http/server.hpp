#pragma once
// The HTTP/1.1 server: one io_context per thread, each with its own SO_REUSEPORT acceptor, so
// connections never migrate between threads and handlers need no locking for per-connection
// state.
//
// Per connection: keep-alive, pipelining (requests are answered in order; answers to requests
// that arrived together are written together), an idle timeout (no request started), a read
// timeout (a request started but not complete) and a write timeout, enforced by a per-thread
// sweep rather than a timer per operation. A handler's error becomes a status with a JSON body
// (responses.hpp); an exception becomes a 500 and touches nothing but its own request.
// stop(deadline): stop accepting, close idle connections, let in-flight requests finish (their
// answer carries Connection: close), and close whatever is left when the deadline passes.

#include <bulwark/http/message.hpp>
#include <bulwark/http/parser.hpp>
#include <bulwark/http/responses.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/result.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <ctime>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>

namespace bulwark::http {

/// What the server calls for every request. The request lives until the returned task ends.
using handler = std::function<task<response>(request&)>;

/// Server configuration.
struct server_options {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0; ///< 0: pick a free port (see server::port())
  std::size_t threads = 1;
  parser_limits limits{};
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(60)};  ///< between requests
  std::chrono::milliseconds read_timeout{std::chrono::seconds(10)};  ///< from first byte to full request
  std::chrono::milliseconds write_timeout{std::chrono::seconds(10)}; ///< one write of a response
  std::size_t max_connections = 10000;          ///< beyond it, new connections get a 503 and are closed
  std::size_t max_pipelined_bytes = 256 * 1024; ///< answers buffered before they must be written
  /// When set, the server exports bulwark_http_requests_total{route,method,status},
  /// bulwark_http_request_duration_seconds{route,method} and bulwark_http_open_connections.
  std::shared_ptr<metrics::registry> metrics;
};

namespace detail {

inline void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  char* p = buf + sizeof buf;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  out.append(p, static_cast<std::size_t>(buf + sizeof buf - p));
}

/// "Date: <IMF-fixdate>\r\n", recomputed at most once a second per thread.
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

/// Appends the status line and header section of `r`. `body_length` is the Content-Length to
/// send (nullopt: the body is streamed with chunked framing).
inline void serialize_head(std::string& out, const response& r, std::optional<std::uint64_t> body_length,
                           bool keep_alive, int version_minor) {
  out.append("HTTP/1.1 ");
  append_number(out, static_cast<std::uint64_t>(r.status));
  out.push_back(' ');
  out.append(reason_phrase(r.status));
  out.append("\r\n");
  out.append(date_line());
  for (const auto& [n, v] : r.headers) {
    if (iequals(n, "Content-Length") || iequals(n, "Transfer-Encoding") || iequals(n, "Connection")) continue;
    out.append(n);
    out.append(": ");
    out.append(v);
    out.append("\r\n");
  }
  const bool bodiless = r.status / 100 == 1 || r.status == 204 || r.status == 304;
  if (!bodiless) {
    if (body_length) {
      out.append("Content-Length: ");
      append_number(out, *body_length);
      out.append("\r\n");
    } else {
      out.append("Transfer-Encoding: chunked\r\n");
    }
  }
  if (!keep_alive) {
    out.append("Connection: close\r\n");
  } else if (version_minor == 0) {
    out.append("Connection: keep-alive\r\n");
  }
  out.append("\r\n");
}

} // namespace detail

/// An HTTP/1.1 server. Construct, start(), and stop() (also done by the destructor).
class server {
public:
  server(server_options options, handler h) : options_(std::move(options)), handler_(std::move(h)) {
    if (options_.threads == 0) options_.threads = 1;
    if (options_.metrics) {
      requests_ = &options_.metrics->counter_family("bulwark_http_requests_total", "HTTP requests answered",
                                                    {"route", "method", "status"});
      latency_ = &options_.metrics->histogram_family("bulwark_http_request_duration_seconds",
                                                     "Time from a complete request to its answer being queued",
                                                     {"route", "method"}, metrics::default_latency_buckets());
      open_gauge_ =
          &options_.metrics->gauge_family("bulwark_http_open_connections", "Open HTTP connections", {}).labels({});
    }
    for (std::size_t i = 0; i < options_.threads; ++i) workers_.push_back(std::make_unique<worker>());
  }
  server(const server&) = delete;
  server& operator=(const server&) = delete;
  ~server() { stop(std::chrono::milliseconds(0)); }

  /// Binds the listening sockets and starts the threads. Errors: unavailable when the address
  /// cannot be bound (detail says why).
  result<void> start() {
    if (started_) return error(errc::rejected, "server already started");
    asio::error_code ec;
    const auto address = asio::ip::make_address(options_.address, ec);
    if (ec) return error(errc::invalid_argument, "bad listen address: " + options_.address);
    std::uint16_t port = options_.port;
    for (auto& w : workers_) {
      w->acceptor.open(address.is_v6() ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), ec);
      if (!ec) w->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec) {
        int one = 1;
        if (::setsockopt(w->acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
          ec = asio::error_code(errno, asio::system_category());
      }
      if (!ec) w->acceptor.bind(asio::ip::tcp::endpoint(address, port), ec);
      if (!ec) w->acceptor.listen(asio::socket_base::max_listen_connections, ec);
      if (ec) {
        for (auto& other : workers_) other->acceptor.close(ec);
        return error(errc::unavailable,
                     "cannot listen on " + options_.address + ":" + std::to_string(port) + ": " + ec.message());
      }
      port = w->acceptor.local_endpoint().port();
    }
    port_ = port;
    started_ = true;
    for (auto& w : workers_) {
      worker* raw = w.get();
      asio::co_spawn(raw->ctx, accept_loop(raw), asio::detached);
      asio::co_spawn(raw->ctx, sweep_loop(raw), asio::detached);
      raw->thread = std::thread([raw] { raw->ctx.run(); });
    }
    return ok();
  }

  /// The executor of worker thread `i` (< options.threads), valid from construction on. Handlers
  /// of connections accepted by that thread run on it; with threads == 1 a backend client made
  /// on executor(0) is used from one thread only, as clients require.
  asio::any_io_executor executor(std::size_t i = 0) const { return workers_.at(i)->ctx.get_executor(); }

  /// The port the server listens on (after start()).
  std::uint16_t port() const noexcept { return port_; }
  /// Connections open right now, across threads.
  std::size_t open_connections() const noexcept { return open_.load(std::memory_order_relaxed); }

  /// Graceful shutdown: stops accepting, closes idle connections, lets requests in flight
  /// finish and closes everything still open once `deadline` has passed. Blocks until all
  /// threads have ended. Must not be called from a handler. Idempotent.
  void stop(std::chrono::milliseconds deadline = std::chrono::seconds(5)) {
    if (!started_ || stopping_.exchange(true)) return;
    const auto until = std::chrono::steady_clock::now() + deadline;
    for (auto& w : workers_) {
      asio::post(w->ctx, [w = w.get(), until] {
        w->stop_deadline = until;
        asio::error_code ignored;
        w->acceptor.close(ignored);
        for (auto* c : w->connections)
          if (c->phase == phase::idle) c->socket.close(ignored);
        w->sweeper.cancel(); // sweep now, and from now on until the deadline
      });
    }
    for (auto& w : workers_)
      if (w->thread.joinable()) w->thread.join();
  }

private:
  enum class phase { idle, reading, handling, writing, closing };

  struct connection {
    explicit connection(asio::ip::tcp::socket s) : socket(std::move(s)) {}
    asio::ip::tcp::socket socket;
    std::chrono::steady_clock::time_point deadline{};
    enum phase phase = phase::idle;
  };

  struct worker {
    asio::io_context ctx{1};
    asio::ip::tcp::acceptor acceptor{ctx};
    asio::steady_timer sweeper{ctx};
    std::list<connection*> connections;
    std::optional<std::chrono::steady_clock::time_point> stop_deadline;
    std::thread thread;
  };

  // The metric children a connection used last: a keep-alive connection usually repeats them.
  struct metric_cache {
    std::string route, method;
    int status = 0;
    metrics::counter* requests = nullptr;
    metrics::histogram* latency = nullptr;
  };

  asio::awaitable<void> accept_loop(worker* w) {
    for (;;) {
      asio::error_code ec;
      auto socket = co_await w->acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (!w->acceptor.is_open() || stopping_.load()) co_return;
        if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
          // Out of file descriptors: back off instead of spinning.
          asio::steady_timer t(w->ctx, std::chrono::milliseconds(50));
          co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
        continue;
      }
      if (open_.fetch_add(1) >= options_.max_connections) {
        open_.fetch_sub(1);
        static constexpr std::string_view busy = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                                                 "application/json\r\nContent-Length: 56\r\nConnection: close\r\n\r\n"
                                                 "{\"error\":\"unavailable\",\"message\":\"too many connections\"}";
        socket.non_blocking(true, ec);
        socket.write_some(asio::buffer(busy), ec);
        socket.shutdown(asio::socket_base::shutdown_send, ec);
        socket.close(ec);
        continue;
      }
      socket.set_option(asio::ip::tcp::no_delay(true), ec);
      if (open_gauge_) open_gauge_->add(1);
      asio::co_spawn(w->ctx, serve(w, std::move(socket)), asio::detached);
    }
  }

  // Closes connections whose deadline passed; during shutdown also closes idle ones and, at
  // the deadline, everything. Ends once the worker is stopping and has no connection left.
  asio::awaitable<void> sweep_loop(worker* w) {
    const auto shortest = std::min({options_.idle_timeout, options_.read_timeout, options_.write_timeout});
    const auto interval = std::clamp(shortest / 4, std::chrono::milliseconds(5), std::chrono::milliseconds(250));
    for (;;) {
      asio::error_code ec;
      w->sweeper.expires_after(w->stop_deadline ? std::chrono::milliseconds(5) : interval);
      co_await w->sweeper.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      const auto now = std::chrono::steady_clock::now();
      const bool force = w->stop_deadline && now >= *w->stop_deadline;
      for (auto* c : w->connections) {
        if (force || now >= c->deadline || (w->stop_deadline && c->phase == phase::idle)) c->socket.close(ec);
      }
      // A handler that ignores its closed connection must not hold the shutdown hostage.
      if (force && now >= *w->stop_deadline + std::chrono::milliseconds(200)) w->ctx.stop();
      if (w->stop_deadline && w->connections.empty()) co_return;
    }
  }

  asio::awaitable<response> invoke(request& req) {
    try {
      auto r = co_await handler_(req);
      if (r.has_value()) co_return std::move(r).value();
      co_return error_response(r.error());
    } catch (const std::exception& e) {
      co_return error_response(500, "internal", std::string("unhandled exception: ") + e.what());
    } catch (...) {
      co_return error_response(500, "internal", "unhandled exception");
    }
  }

  void record(const request& req, const response& resp, std::chrono::steady_clock::time_point started,
              metric_cache& cache) {
    if (!requests_) return;
    const std::string& route = req.route.empty() ? unmatched_ : req.route;
    if (!cache.requests || cache.status != resp.status || cache.route != route || cache.method != req.method) {
      char status[4] = {static_cast<char>('0' + resp.status / 100 % 10), static_cast<char>('0' + resp.status / 10 % 10),
                        static_cast<char>('0' + resp.status % 10), 0};
      cache.requests = &requests_->labels({route, req.method, status});
      cache.latency = &latency_->labels({route, req.method});
      cache.route = route;
      cache.method = req.method;
      cache.status = resp.status;
    }
    cache.requests->inc();
    cache.latency->observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }

  asio::awaitable<void> serve(worker* w, asio::ip::tcp::socket socket) {
    connection conn(std::move(socket));
    auto self = w->connections.insert(w->connections.end(), &conn);
    auto& sock = conn.socket;
    std::vector<char> buf(16 * 1024);
    std::size_t begin = 0, end = 0;
    std::string out;
    request_parser parser(options_.limits);
    bool sent_continue = false;
    metric_cache metric_cache_;
    asio::error_code ec;

    auto write_out = [&]() -> asio::awaitable<bool> {
      conn.phase = phase::writing;
      conn.deadline = std::chrono::steady_clock::now() + options_.write_timeout;
      co_await asio::async_write(sock, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
      out.clear();
      co_return !ec;
    };

    for (;;) {
      // Read until one request is complete (or the parse fails).
      while (!parser.complete() && !parser.failed()) {
        if (begin < end) {
          begin += parser.feed(std::string_view(buf.data() + begin, end - begin));
          if (begin == end) begin = end = 0;
          continue;
        }
        if (parser.expects_continue() && !sent_continue) {
          out.append("HTTP/1.1 100 Continue\r\n\r\n");
          sent_continue = true;
        }
        if (!out.empty() && !co_await write_out()) goto done;
        if (stopping_.load(std::memory_order_relaxed) && !parser.started()) goto done;
        conn.phase = parser.started() ? phase::reading : phase::idle;
        conn.deadline =
            std::chrono::steady_clock::now() + (parser.started() ? options_.read_timeout : options_.idle_timeout);
        const std::size_t n = co_await sock.async_read_some(asio::buffer(buf.data() + end, buf.size() - end),
                                                            asio::redirect_error(asio::use_awaitable, ec));
        if (ec) goto done;
        end += n;
      }
      if (parser.failed()) {
        const int status = parser.error_status();
        response r = error_response(status, "invalid_request", parser.error_reason());
        detail::serialize_head(out, r, r.body.size(), false, 1);
        out.append(r.body);
        co_await write_out();
        // Stop sending, then give the client a moment to read the answer before closing, so
        // unread request bytes do not turn our close into a reset that destroys the answer.
        sock.shutdown(asio::socket_base::shutdown_send, ec);
        conn.phase = phase::closing;
        conn.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
        for (int i = 0; i < 16 && !ec; ++i)
          co_await sock.async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
        goto done;
      }
      {
        request req = parser.release();
        parser.reset();
        sent_continue = false;
        conn.phase = phase::handling;
        // A handler has as long as it needs; the write timeout restarts when it answers.
        conn.deadline = std::chrono::steady_clock::time_point::max();
        const auto started = std::chrono::steady_clock::now();
        response resp = co_await invoke(req);
        record(req, resp, started, metric_cache_);
        const bool keep = req.keep_alive && !resp.close && !stopping_.load(std::memory_order_relaxed);
        const bool head = req.method == "HEAD";
        if (resp.stream) {
          const auto size = resp.stream->size();
          const bool chunked = !size && req.version_minor == 1;
          detail::serialize_head(out, resp, size, keep && (size || chunked), req.version_minor);
          if (!co_await write_out()) goto done;
          if (!head && !co_await stream_body(conn, *resp.stream, chunked, out, ec)) goto done;
          if (!keep || !(size || chunked)) goto done;
        } else {
          detail::serialize_head(out, resp, resp.body.size(), keep, req.version_minor);
          if (!head) out.append(resp.body);
          if (!keep) {
            co_await write_out();
            goto done;
          }
          // Pipelined requests already buffered get their answers written together.
          if ((begin == end || out.size() >= options_.max_pipelined_bytes) && !co_await write_out()) goto done;
        }
      }
    }
  done:
    if (!out.empty() && !ec) co_await write_out();
    sock.shutdown(asio::socket_base::shutdown_both, ec);
    sock.close(ec);
    w->connections.erase(self);
    open_.fetch_sub(1);
    if (open_gauge_) open_gauge_->add(-1);
  }

  asio::awaitable<bool> stream_body(connection& conn, body_source& src, bool chunked, std::string& out,
                                    asio::error_code& ec) {
    std::vector<char> piece(64 * 1024);
    for (;;) {
      auto n = src.read(std::span<char>(piece.data(), piece.size()));
      if (!n.has_value()) co_return false; // a broken source: the client sees a truncated body
      out.clear();
      if (chunked) {
        char size_line[24];
        int len = std::snprintf(size_line, sizeof size_line, "%zx\r\n", n.value());
        out.append(size_line, static_cast<std::size_t>(len));
      }
      out.append(piece.data(), n.value());
      if (chunked) out.append("\r\n");
      if (n.value() == 0 && !chunked) co_return true;
      conn.phase = phase::writing;
      conn.deadline = std::chrono::steady_clock::now() + options_.write_timeout;
      co_await asio::async_write(conn.socket, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
      out.clear();
      if (ec) co_return false;
      if (n.value() == 0) co_return true;
    }
  }

  server_options options_;
  handler handler_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::atomic<std::size_t> open_{0};
  std::atomic<bool> stopping_{false};
  bool started_ = false;
  std::uint16_t port_ = 0;
  metrics::family<metrics::counter>* requests_ = nullptr;
  metrics::family<metrics::histogram>* latency_ = nullptr;
  metrics::gauge* open_gauge_ = nullptr;
  const std::string unmatched_ = "unmatched";
};

} // namespace bulwark::http
