#pragma once
// key_locks: per-key mutual exclusion for coroutines on one executor, FIFO, with a bound on the
// number of waiters. hazelcast::cache serialises its read-compare-write puts per key with it
// (the REST API has no conditional put), so writers in one process never race each other.

#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

namespace bulwark::hazelcast::detail {

class key_locks {
public:
  explicit key_locks(std::size_t max_waiters) : max_waiters_(max_waiters) {}
  key_locks(const key_locks&) = delete;
  key_locks& operator=(const key_locks&) = delete;
  /// Moves only while no lock is held or waited for (guards point at their owner).
  key_locks(key_locks&&) noexcept = default;

  /// Holds the lock of one key until destroyed.
  class guard {
  public:
    guard(key_locks* owner, std::string key) : owner_(owner), key_(std::move(key)) {}
    guard(guard&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)), key_(std::move(o.key_)) {}
    guard& operator=(guard&&) = delete;
    ~guard() {
      if (owner_) owner_->unlock(key_);
    }

  private:
    key_locks* owner_;
    std::string key_;
  };

  /// Waits for the lock of `key`. Errors: errc::rejected when max_waiters coroutines already
  /// wait (for any key), errc::cancelled when the wait is cancelled.
  task<guard> lock(std::string key) {
    auto [it, inserted] = held_.try_emplace(key);
    if (inserted) co_return guard(this, std::move(key));
    if (waiting_ >= max_waiters_)
      co_return error(errc::rejected, std::to_string(waiting_) + " writers already wait for a key lock");
    auto w = std::make_shared<waiter>(co_await asio::this_coro::executor);
    it->second.push_back(w);
    ++waiting_;
    asio::error_code ec;
    co_await w->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (w->granted) co_return guard(this, std::move(key));
    // Cancelled before our turn: leave the queue (unlock() already skipped nothing of ours).
    if (auto again = held_.find(key); again != held_.end()) {
      auto& q = again->second;
      q.erase(std::remove(q.begin(), q.end(), w), q.end());
    }
    --waiting_;
    co_return error(errc::cancelled, "cancelled while waiting for the key lock");
  }

  /// Keys locked now (held or waited for).
  std::size_t locked_keys() const noexcept { return held_.size(); }

private:
  struct waiter {
    explicit waiter(const asio::any_io_executor& ex) : timer(ex, asio::steady_timer::time_point::max()) {}
    asio::steady_timer timer;
    bool granted = false;
  };

  void unlock(const std::string& key) {
    auto it = held_.find(key);
    if (it == held_.end()) return;
    auto& q = it->second;
    if (q.empty()) {
      held_.erase(it);
      return;
    }
    auto next = std::move(q.front());
    q.pop_front();
    --waiting_;
    next->granted = true;
    next->timer.cancel();
  }

  std::unordered_map<std::string, std::deque<std::shared_ptr<waiter>>> held_;
  std::size_t waiting_ = 0;
  std::size_t max_waiters_;
};

} // namespace bulwark::hazelcast::detail
