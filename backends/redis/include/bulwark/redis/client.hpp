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

#include <bulwark/redis/detail/cluster.hpp>
#include <bulwark/redis/detail/connection.hpp>
#include <bulwark/redis/detail/pool.hpp>
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

class client {
public:
  /// A client for the server in `options`. Connects lazily, on the first command.
  client(asio::any_io_executor executor, connection_options options = {})
      : pool_(std::make_shared<detail::pool>(std::move(executor), std::move(options))) {}

  /// A client for the Redis Cluster reached through options.seeds (see cluster_options and
  /// detail/cluster.hpp): every call is routed to its key's slot, redirections and a busy or
  /// failing-over cluster are handled inside, within options.request_timeout. Connects lazily.
  /// Each call copies its arguments (it may be sent again). Errors as below, and
  /// replicas_not_acked (timeout), cross_slot (invalid_argument), redirected (unavailable).
  client(asio::any_io_executor executor, cluster_options options)
      : cluster_(std::make_shared<detail::cluster>(std::move(executor), std::move(options))) {}

  /// Sends one command (its arguments, binary-safe) and completes with the reply.
  /// The arguments are copied into the connection's output buffer when the operation starts
  /// (with use_awaitable: when it is co_awaited), so they must live until then.
  /// Errors (redis category): not_connected, connection_failed, connection_closed (all
  /// unavailable), connect_timeout, command_timeout (timeout), a server error reply
  /// (classify_server_error), queue_full, stopped, cancelled. Cost: no write of its own;
  /// commands started in the same turn of the event loop share one write.
  template <class CompletionToken = asio::use_awaitable_t<>>
  auto async_execute(std::span<const std::string_view> args, CompletionToken&& token = {}) {
    if (cluster_)
      return asio::async_initiate<CompletionToken, void(result<reply>)>(detail::cluster_initiation{}, token, cluster_,
                                                                        args);
    return asio::async_initiate<CompletionToken, void(result<reply>)>(detail::initiation{}, token, pool_, args);
  }

  /// `co_await c.execute("SET", key, value)`: each argument is anything convertible to
  /// std::string_view; co_await it in the same full-expression (the views are not copied).
  template <class... Args> auto execute(const Args&... args) {
    const std::array<std::string_view, sizeof...(Args)> argv{std::string_view(args)...};
    if (cluster_)
      return asio::async_initiate<const asio::use_awaitable_t<>&, void(result<reply>)>(
          detail::cluster_initiation{}, asio::use_awaitable, cluster_, argv);
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(result<reply>)>(detail::initiation{},
                                                                                     asio::use_awaitable, pool_, argv);
  }

  /// Stops: new commands fail with redis_errc::stopped, the ones in flight complete (each within
  /// command_timeout), then every connection is closed. Idempotent.
  asio::awaitable<void> stop() {
    if (cluster_) {
      auto cluster = cluster_;
      cluster->begin_stop();
      asio::steady_timer poll(cluster->executor());
      while (cluster->outstanding() > 0) {
        poll.expires_after(std::chrono::milliseconds(1));
        co_await poll.async_wait(asio::use_awaitable);
      }
      cluster->close_all();
      co_return;
    }
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
  detail::connection_statistics statistics() const noexcept {
    return cluster_ ? cluster_->statistics() : pool_->statistics();
  }
  /// Replies outstanding over all connections.
  std::size_t outstanding() const noexcept { return cluster_ ? cluster_->outstanding() : pool_->outstanding(); }

  /// The connection options (of every node connection, on a cluster).
  const connection_options& options() const noexcept { return cluster_ ? cluster_->options().node : pool_->options(); }
  const asio::any_io_executor& get_executor() const noexcept {
    return cluster_ ? cluster_->executor() : pool_->executor();
  }

  /// Talks to a Redis Cluster (constructed with cluster_options).
  bool is_cluster() const noexcept { return cluster_ != nullptr; }
  /// Redirections, retries and slot map refreshes so far (zeros when not a cluster).
  cluster_statistics cluster_counters() const noexcept {
    return cluster_ ? cluster_->cluster_counters() : cluster_statistics{};
  }
  /// The master the client maps `slot` to ("host:port"), empty when unknown or not a cluster.
  std::string slot_owner(std::uint16_t slot) const { return cluster_ ? cluster_->owner_of(slot) : std::string(); }

private:
  std::shared_ptr<detail::pool> pool_;
  std::shared_ptr<detail::cluster> cluster_;
};

} // namespace bulwark::redis
