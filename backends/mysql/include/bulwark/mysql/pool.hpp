#pragma once
// A bounded pool of non-blocking MySQL connections.
//
// - At most config::pool_size connections, opened lazily; at most config::max_waiters callers
//   queued for one (beyond: errc::rejected), each for at most config::acquire_timeout
//   (beyond: errc::timeout).
// - No auto-reconnect in the client library: a connection that failed (lost, timed out,
//   cancelled) is closed when its lease ends, and so are the idle ones (they share its fate
//   when the server went away). The next acquire reconnects. A failed connect starts a backoff
//   window (bulwark::backoff) during which acquire fails errc::unavailable at once instead of
//   hammering a dead server; statements are prepared again on the new connections.
// - ping() is the health check; stats() reports the pool's state.
// - stop() refuses new work, wakes the waiters (errc::cancelled), waits for the leases to
//   come back and closes every connection.
//
// Thread model: the pool, its leases and its connections are used from the pool's executor
// (one io_context thread, or a strand); no locks are taken.

#include <bulwark/mysql/config.hpp>
#include <bulwark/mysql/connection.hpp>
#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <random>
#include <utility>
#include <vector>

namespace bulwark::mysql {

class pool;

/// Exclusive use of one pooled connection; returns it to the pool when destroyed.
class lease {
public:
  lease() = default;
  lease(lease&& other) noexcept : pool_(std::exchange(other.pool_, nullptr)), conn_(std::move(other.conn_)) {}
  lease& operator=(lease&& other) noexcept {
    if (this != &other) {
      release();
      pool_ = std::exchange(other.pool_, nullptr);
      conn_ = std::move(other.conn_);
    }
    return *this;
  }
  ~lease() { release(); }

  connection& operator*() const noexcept { return *conn_; }
  connection* operator->() const noexcept { return conn_.get(); }

  /// Gives the connection back now (closing it if it failed).
  inline void release() noexcept;

private:
  friend class pool;
  lease(pool* p, std::unique_ptr<connection> c) noexcept : pool_(p), conn_(std::move(c)) {}
  pool* pool_ = nullptr;
  std::unique_ptr<connection> conn_;
};

/// The pool's state, for health pages and tests.
struct pool_stats {
  std::size_t open = 0;               ///< connections open or being opened
  std::size_t idle = 0;               ///< open and not leased
  std::size_t waiting = 0;            ///< callers queued for a connection
  std::uint64_t connects = 0;         ///< successful connects since creation
  std::uint64_t connect_failures = 0; ///< failed connects since creation
  std::uint64_t discarded = 0;        ///< connections closed after a failure
  bool backing_off = false;           ///< acquire fails fast until the backoff window ends
};

class pool {
public:
  /// A pool that opens connections on `ex` (lazily, on the first acquire).
  pool(asio::any_io_executor ex, config cfg) : ex_(std::move(ex)), cfg_(std::move(cfg)), rng_(std::random_device{}()) {
    if (cfg_.pool_size == 0) cfg_.pool_size = 1;
  }
  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;
  /// Closes idle connections. Every lease must have ended (stop() waits for that).
  ~pool() { idle_.clear(); }

  const config& settings() const noexcept { return cfg_; }
  const asio::any_io_executor& get_executor() const noexcept { return ex_; }

  /// A connection for exclusive use. Errors: errc::unavailable (connect failed, or the
  /// reconnect backoff is running), errc::rejected (too many waiters), errc::timeout (no
  /// connection within acquire_timeout), errc::cancelled (stopping), mysql codes from connect.
  task<lease> acquire() {
    std::optional<asio::steady_timer> timer;
    for (;;) {
      if (stopping_) co_return bulwark::error(errc::cancelled, "mysql pool is stopping");
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        co_return lease(this, std::move(c));
      }
      if (open_ < cfg_.pool_size) {
        if (std::chrono::steady_clock::now() < retry_at_) {
          co_return bulwark::error(last_connect_error_.code(),
                                   "reconnect backoff after: " + std::string(last_connect_error_.message()));
        }
        ++open_;
        auto c = co_await connection::open(ex_, cfg_);
        if (!c && c.error() == errc::cancelled) {
          // The caller gave up (its cancellation slot fired): nothing is known about the
          // server, so no backoff for the other callers.
          --open_;
          wake_all();
          co_return c.error();
        }
        if (!c) {
          --open_;
          ++connect_failures_;
          ++failures_in_a_row_;
          last_connect_error_ = c.error();
          retry_at_ = std::chrono::steady_clock::now() + cfg_.reconnect.delay(failures_in_a_row_, rng_);
          wake_all();
          co_return c.error();
        }
        failures_in_a_row_ = 0;
        ++connects_;
        if (stopping_) {
          --open_;
          co_return bulwark::error(errc::cancelled, "mysql pool is stopping");
        }
        co_return lease(this, std::move(c).value());
      }
      if (waiters_.size() >= cfg_.max_waiters) {
        co_return bulwark::error(errc::rejected, "mysql pool: too many callers waiting for a connection");
      }
      if (!timer) {
        timer.emplace(ex_);
        timer->expires_after(cfg_.acquire_timeout);
      }
      waiter w{&*timer, nullptr, false};
      auto it = waiters_.insert(waiters_.end(), &w);
      auto [ec] = co_await timer->async_wait(asio::experimental::as_tuple(asio::use_awaitable));
      if (!w.woken) waiters_.erase(it);
      if (w.conn) co_return lease(this, std::move(w.conn));
      if (!w.woken) {
        if (ec) co_return bulwark::error(errc::cancelled, "mysql pool: acquire cancelled");
        co_return bulwark::error(errc::timeout, "mysql pool: no connection within the acquire timeout");
      }
      // Woken without a connection: a slot was freed or a connect failed; look again.
      timer->expires_at(timer->expiry()); // keeps the original deadline
    }
  }

  /// The health check: a COM_PING round trip on a pooled connection.
  task<void> ping() {
    BOOST_OUTCOME_CO_TRY(l, co_await acquire());
    co_return co_await l->ping();
  }

  pool_stats stats() const noexcept {
    pool_stats s;
    s.open = open_;
    s.idle = idle_.size();
    s.waiting = waiters_.size();
    s.connects = connects_;
    s.connect_failures = connect_failures_;
    s.discarded = discarded_;
    s.backing_off = std::chrono::steady_clock::now() < retry_at_;
    return s;
  }

  /// Refuses new work, wakes the waiters, waits until every lease has ended and closes the
  /// connections. Bounded by the longest operation in flight (itself bounded by the timeouts).
  asio::awaitable<void> stop() {
    stopping_ = true;
    wake_all();
    while (!idle_.empty()) {
      idle_.pop_back();
      --open_;
    }
    asio::steady_timer poll(ex_);
    while (open_ > 0) {
      poll.expires_after(std::chrono::milliseconds(5));
      co_await poll.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
  }

private:
  friend class lease;
  struct waiter {
    asio::steady_timer* timer;
    std::unique_ptr<connection> conn;
    bool woken = false;
  };

  void wake_all() noexcept {
    for (auto* w : waiters_) {
      w->woken = true;
      w->timer->cancel();
    }
    waiters_.clear();
  }

  void give_back(std::unique_ptr<connection> c) noexcept {
    if (!c->is_open() || stopping_) {
      c.reset();
      --open_;
      ++discarded_;
      // The server most likely went away for the idle connections too: drop them, so the
      // next callers reconnect instead of failing one by one on dead sockets.
      discarded_ += idle_.size();
      open_ -= idle_.size();
      idle_.clear();
      if (!waiters_.empty()) {
        auto* w = waiters_.front();
        waiters_.pop_front();
        w->woken = true;
        w->timer->cancel();
      }
      return;
    }
    if (!waiters_.empty()) {
      auto* w = waiters_.front();
      waiters_.pop_front();
      w->woken = true;
      w->conn = std::move(c);
      w->timer->cancel();
      return;
    }
    idle_.push_back(std::move(c));
  }

  asio::any_io_executor ex_;
  config cfg_;
  std::vector<std::unique_ptr<connection>> idle_;
  std::list<waiter*> waiters_;
  std::size_t open_ = 0;
  bool stopping_ = false;
  std::uint64_t connects_ = 0, connect_failures_ = 0, discarded_ = 0;
  unsigned failures_in_a_row_ = 0;
  std::chrono::steady_clock::time_point retry_at_{};
  bulwark::error last_connect_error_;
  std::minstd_rand rng_;
};

inline void lease::release() noexcept {
  if (pool_ && conn_) pool_->give_back(std::move(conn_));
  pool_ = nullptr;
  conn_.reset();
}

} // namespace bulwark::mysql
