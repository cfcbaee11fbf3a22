#pragma once
// The connections of a client to one endpoint, and the initiation that starts a command on the
// best of them. Private: use redis::client.

#include <bulwark/redis/detail/connection.hpp>
#include <bulwark/redis/error.hpp>
#include <bulwark/redis/options.hpp>
#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>

#include <array>
#include <cstddef>
#include <memory>
#include <string>
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
    connection* best = nullptr;
    for (auto& c : connections_) {
      // The clock is read only for a connection without a context (the hot path has none).
      if (!c->has_context() && c->due(steady::now())) c->start_connect();
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

} // namespace bulwark::redis
