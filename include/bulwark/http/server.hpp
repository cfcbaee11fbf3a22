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
// answer carries Connection: close), end server-sent event streams (event_stream.hpp), and close
// whatever is left when the deadline passes.

#include <bulwark/http/detail/connection.hpp>
#include <bulwark/http/detail/serializer.hpp>
#include <bulwark/http/handler.hpp>
#include <bulwark/http/message.hpp>
#include <bulwark/http/responses.hpp>
#include <bulwark/http/server_options.hpp>
#include <bulwark/result.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>

// GCC 12 at -O1 and above (the asan preset) reports a false -Wmismatched-new-delete for Asio's
// recycling coroutine-frame allocator once it inlines both halves; the pair does match.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace bulwark::http {

/// An HTTP/1.1 server. Construct, start(), and stop() (also done by the destructor).
class server {
public:
  server(server_options options, handler h) : shared_(std::move(options), std::move(h)) {
    if (shared_.options.threads == 0) shared_.options.threads = 1;
    for (std::size_t i = 0; i < shared_.options.threads; ++i) workers_.push_back(std::make_unique<detail::worker>());
  }
  server(const server&) = delete;
  server& operator=(const server&) = delete;
  ~server() { stop(std::chrono::milliseconds(0)); }

  /// Binds the listening sockets and starts the threads. Errors: unavailable when the address
  /// cannot be bound (detail says why).
  result<void> start() {
    if (started_) return error(errc::rejected, "server already started");
    const auto& options = shared_.options;
    asio::error_code ec;
    const auto address = asio::ip::make_address(options.address, ec);
    if (ec) return error(errc::invalid_argument, "bad listen address: " + options.address);
    std::uint16_t port = options.port;
    const bool round_robin = options.accept == server_options::accept_mode::round_robin;
    for (auto& w : workers_) {
      if (round_robin && w != workers_.front()) break; // only thread 0 listens
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
                     "cannot listen on " + options.address + ":" + std::to_string(port) + ": " + ec.message());
      }
      port = w->acceptor.local_endpoint().port();
    }
    port_ = port;
    started_ = true;
    for (auto& w : workers_) {
      detail::worker* raw = w.get();
      if (raw->acceptor.is_open()) asio::co_spawn(raw->ctx, accept_loop(raw), asio::detached);
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
  std::size_t open_connections() const noexcept { return shared_.open.load(std::memory_order_relaxed); }

  /// Graceful shutdown: stops accepting, closes idle connections, lets requests in flight
  /// finish and closes everything still open once `deadline` has passed. Blocks until all
  /// threads have ended. Must not be called from a handler. Idempotent.
  void stop(std::chrono::milliseconds deadline = std::chrono::seconds(5)) {
    if (!started_ || shared_.stopping.exchange(true)) return;
    const auto until = std::chrono::steady_clock::now() + deadline;
    for (auto& w : workers_) {
      asio::post(w->ctx, [w = w.get(), until] {
        w->stop_deadline = until;
        asio::error_code ignored;
        w->acceptor.close(ignored);
        for (auto* c : w->connections) {
          if (c->idle()) c->close();
          c->end_stream(); // a server-sent event stream ends now, not at the deadline
        }
        w->sweeper.cancel(); // sweep now, and from now on until the deadline
      });
    }
    for (auto& w : workers_)
      if (w->thread.joinable()) w->thread.join();
  }

private:
  asio::awaitable<void> accept_loop(detail::worker* w) {
    for (;;) {
      asio::error_code ec;
      auto socket = co_await w->acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (!w->acceptor.is_open() || shared_.stopping.load()) co_return;
        if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
          // Out of file descriptors: back off instead of spinning.
          asio::steady_timer t(w->ctx, std::chrono::milliseconds(50));
          co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
        continue;
      }
      if (shared_.open.fetch_add(1) >= shared_.options.max_connections) {
        shared_.open.fetch_sub(1);
        turn_away(socket);
        continue;
      }
      socket.set_option(asio::ip::tcp::no_delay(true), ec);
      detail::worker* target = w;
      if (shared_.options.accept == server_options::accept_mode::round_robin)
        target = workers_[next_worker_++ % workers_.size()].get();
      if (target == w) {
        asio::co_spawn(w->ctx, serve(w, std::move(socket)), asio::detached);
      } else {
        // Hand the descriptor over; the socket object is rebuilt on the target's own thread.
        const bool v6 = socket.local_endpoint(ec).address().is_v6();
        const auto fd = socket.release(ec);
        asio::post(target->ctx, [this, target, fd, v6] {
          asio::error_code e;
          asio::ip::tcp::socket s(target->ctx);
          s.assign(v6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), fd, e);
          asio::co_spawn(target->ctx, serve(target, std::move(s)), asio::detached);
        });
      }
    }
  }

  // Over max_connections: a 503 written without waiting (it fits any socket buffer), then close.
  static void turn_away(asio::ip::tcp::socket& socket) {
    std::string answer;
    detail::append_response(answer, error_response(503, "unavailable", "too many connections"), false, 1);
    asio::error_code ec;
    socket.non_blocking(true, ec);
    socket.write_some(asio::buffer(answer), ec);
    socket.shutdown(asio::socket_base::shutdown_send, ec);
    socket.close(ec);
  }

  // The connection lives in this frame: however the coroutine ends (even destroyed with the
  // io_context after a forced stop), its destructor gives back what it holds.
  asio::awaitable<void> serve(detail::worker* w, asio::ip::tcp::socket socket) {
    detail::connection c(shared_, *w, std::move(socket));
    co_await c.run();
  }

  // Closes connections whose deadline passed; during shutdown also closes idle ones and, at
  // the deadline, everything. Ends once the worker is stopping and has no connection left.
  asio::awaitable<void> sweep_loop(detail::worker* w) {
    const auto& o = shared_.options;
    const auto shortest = std::min({o.idle_timeout, o.read_timeout, o.write_timeout});
    const auto interval = std::clamp(shortest / 4, std::chrono::milliseconds(5), std::chrono::milliseconds(250));
    for (;;) {
      asio::error_code ec;
      w->sweeper.expires_after(w->stop_deadline ? std::chrono::milliseconds(5) : interval);
      co_await w->sweeper.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      const auto now = std::chrono::steady_clock::now();
      const bool force = w->stop_deadline && now >= *w->stop_deadline;
      for (auto* c : w->connections) {
        if (force || c->expired(now) || (w->stop_deadline && c->idle())) c->close();
      }
      // A handler that ignores its closed connection must not hold the shutdown hostage.
      if (force && now >= *w->stop_deadline + std::chrono::milliseconds(200)) w->ctx.stop();
      if (w->stop_deadline && w->connections.empty()) co_return;
    }
  }

  // Declared first so it outlives the workers: their io_contexts may destroy connections that
  // still refer to it.
  detail::server_shared shared_;
  std::vector<std::unique_ptr<detail::worker>> workers_;
  std::size_t next_worker_ = 0; // round_robin: touched by thread 0 only
  bool started_ = false;
  std::uint16_t port_ = 0;
};

} // namespace bulwark::http

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
