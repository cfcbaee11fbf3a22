#pragma once
// bulwark::redis::client: a small pool of hiredis async connections to one Redis server,
// driven by the caller's executor, with automatic pipelining, timeouts and reconnection.
//
// Threading: hiredis is not thread-safe. Construct the client with a single-threaded
// io_context's executor or a strand, and call it only from coroutines running on that
// executor. To use several threads, give each its own client (or its own io_context).
//
// Lifetime: client is a cheap, copyable handle; the connections live while any copy does.
// Destroy every copy (or co_await stop()) before the io_context. While it holds a connection,
// the client keeps asynchronous work outstanding on the executor, so io_context::run() does
// not return until stop() or the last copy is gone.

#include <bulwark/redis/detail/connection.hpp>
#include <bulwark/redis/error.hpp>
#include <bulwark/redis/options.hpp>
#include <bulwark/redis/reply.hpp>
#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace bulwark::redis {

namespace detail {
/// The connections of one client (one endpoint).
class pool {
public:
  pool(asio::any_io_executor executor, connection_options options)
      : executor_(std::move(executor)), options_(std::move(options)) {
    const auto n = options_.pool_size == 0 ? std::size_t{1} : options_.pool_size;
    for (std::size_t i = 0; i < n; ++i) connections_.push_back(std::make_shared<connection>(executor_, options_));
  }
  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;
  ~pool() {
    for (auto& c : connections_) c->shutdown();
  }

  /// The connection for the next command: connected before connecting, then the fewest
  /// replies outstanding. Starts the connections whose backoff has passed. nullptr: none.
  connection* pick() {
    const auto now = steady::now();
    connection* best = nullptr;
    for (auto& c : connections_) {
      if (c->due(now)) c->start_connect();
      if (!c->has_context()) continue;
      if (best == nullptr || (c->connected() && !best->connected()) ||
          (c->connected() == best->connected() && c->outstanding() < best->outstanding()))
        best = c.get();
    }
    return best;
  }

  bulwark::error unavailable_error() const {
    std::string detail;
    for (auto& c : connections_)
      if (!c->last_failure().empty()) detail = "last failure: " + c->last_failure();
    return {make_error_code(redis_errc::not_connected), std::move(detail)};
  }

  std::size_t outstanding() const noexcept {
    std::size_t n = 0;
    for (auto& c : connections_) n += c->outstanding();
    return n;
  }

  connection_statistics statistics() const noexcept {
    connection_statistics total;
    for (auto& c : connections_) total += c->statistics();
    return total;
  }

  void begin_stop() {
    stopping_ = true;
    for (auto& c : connections_) c->begin_stop();
  }
  void close_all() {
    for (auto& c : connections_) c->shutdown();
  }

  bool stopping() const noexcept { return stopping_; }
  const asio::any_io_executor& executor() const noexcept { return executor_; }
  const connection_options& options() const noexcept { return options_; }

private:
  asio::any_io_executor executor_;
  connection_options options_;
  std::vector<std::shared_ptr<connection>> connections_;
  bool stopping_ = false;
};
} // namespace detail

namespace detail {
/// Starts a command on the pool's best connection; `args` is any contiguous range of views.
struct initiation {
  template <class Handler, class Args>
  void operator()(Handler&& handler, const std::shared_ptr<pool>& pool, const Args& args) const {
    if (pool->stopping())
      return fail_now(std::forward<Handler>(handler), pool->executor(),
                      bulwark::error(make_error_code(redis_errc::stopped)));
    connection* c = pool->pick();
    if (c == nullptr) return fail_now(std::forward<Handler>(handler), pool->executor(), pool->unavailable_error());
    constexpr std::size_t small = 16;
    const std::size_t n = std::size(args);
    if (n <= small) {
      std::array<const char*, small> argv;
      std::array<std::size_t, small> lengths;
      for (std::size_t i = 0; i < n; ++i) {
        argv[i] = args[i].data();
        lengths[i] = args[i].size();
      }
      c->submit(static_cast<int>(n), argv.data(), lengths.data(), std::forward<Handler>(handler));
    } else {
      std::vector<const char*> argv(n);
      std::vector<std::size_t> lengths(n);
      for (std::size_t i = 0; i < n; ++i) {
        argv[i] = args[i].data();
        lengths[i] = args[i].size();
      }
      c->submit(static_cast<int>(n), argv.data(), lengths.data(), std::forward<Handler>(handler));
    }
  }
};
} // namespace detail

class client {
public:
  /// A client for the server in `options`. Connects lazily, on the first command.
  client(asio::any_io_executor executor, connection_options options = {})
      : pool_(std::make_shared<detail::pool>(std::move(executor), std::move(options))) {}

  /// Sends one command (its arguments, binary-safe) and completes with the reply.
  /// The arguments are copied into the connection's output buffer when the operation starts
  /// (with use_awaitable: when it is co_awaited), so they must live until then.
  /// Errors (redis category): not_connected, connection_failed, connection_closed (all
  /// unavailable), connect_timeout, command_timeout (timeout), a server error reply
  /// (classify_server_error), queue_full, stopped, cancelled. Cost: no write of its own;
  /// commands started in the same turn of the event loop share one write.
  template <class CompletionToken = asio::use_awaitable_t<>>
  auto async_execute(std::span<const std::string_view> args, CompletionToken&& token = {}) {
    return asio::async_initiate<CompletionToken, void(result<reply>)>(detail::initiation{}, token, pool_, args);
  }

  /// `co_await c.execute("SET", key, value)`: each argument is anything convertible to
  /// std::string_view; co_await it in the same full-expression (the views are not copied).
  template <class... Args> auto execute(const Args&... args) {
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(result<reply>)>(
        detail::initiation{}, asio::use_awaitable, pool_,
        std::array<std::string_view, sizeof...(Args)>{std::string_view(args)...});
  }

  /// Stops: new commands fail with redis_errc::stopped, the ones in flight complete (each within
  /// command_timeout), then every connection is closed. Idempotent.
  asio::awaitable<void> stop() {
    auto pool = pool_;
    pool->begin_stop();
    asio::steady_timer poll(pool->executor());
    while (pool->outstanding() > 0) {
      poll.expires_after(std::chrono::milliseconds(1));
      co_await poll.async_wait(asio::use_awaitable);
    }
    pool->close_all();
  }

  /// Counters summed over the pool's connections (for metrics and tests).
  detail::connection_statistics statistics() const noexcept { return pool_->statistics(); }
  /// Replies outstanding over all connections.
  std::size_t outstanding() const noexcept { return pool_->outstanding(); }

  const connection_options& options() const noexcept { return pool_->options(); }
  const asio::any_io_executor& get_executor() const noexcept { return pool_->executor(); }

private:
  std::shared_ptr<detail::pool> pool_;
};

} // namespace bulwark::redis
