#pragma once
// CRS asking CMS to reconcile: `POST /api/channel-metadata/force-update-all`, in the background,
// retried once after config::reconcile_retry_delay when it fails (a transport error or any
// status but 200). /trigger-cache-retry asks for one; so does CRS after it replayed writes
// (replay_watch), so that CMS's pending index (the healthcheck's writes.pending) empties.

#include <bulwark/clock.hpp>
#include <bulwark/http/message.hpp>
#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace channel_metadata {

/// What a reconciler did (tests and the log read it).
struct reconcile_stats {
  std::uint64_t requested = 0; ///< calls asked for (coalesced ones included)
  std::uint64_t attempts = 0;  ///< calls made, retries included
  std::uint64_t succeeded = 0; ///< calls answered 200
  std::uint64_t failed = 0;    ///< requests whose retry failed too
  std::string last_error;
};

/// Runs force-update-all calls on `ex`, one at a time: requests made while one is in flight are
/// served by one more call after it (which starts after all of them). Thread-safe.
class cms_reconciler {
public:
  /// `call` sends one force-update-all to CMS.
  using call_type = std::function<bulwark::task<bulwark::http::response>()>;
  using log_type = std::function<void(const std::string&)>;

  cms_reconciler(asio::any_io_executor ex, call_type call, std::chrono::milliseconds retry_delay,
                 bulwark::clock clock = {}, log_type log = {})
      : ex_(std::move(ex)), call_(std::move(call)), retry_delay_(retry_delay), clock_(std::move(clock)),
        log_(std::move(log)) {}
  cms_reconciler(const cms_reconciler&) = delete;
  cms_reconciler& operator=(const cms_reconciler&) = delete;
  ~cms_reconciler() { stopping_ = true; }

  /// Asks for a force-update-all soon; returns at once.
  void request() {
    {
      std::lock_guard lock(mutex_);
      ++stats_.requested;
      if (stopping_) return;
      if (active_) {
        again_ = true; // the worker makes one more call when its current one is done
        return;
      }
      active_ = true;
    }
    asio::co_spawn(ex_, work(), asio::detached);
  }

  /// No new calls; waits (up to `limit` on the clock) for the one in flight, a retry's wait cut
  /// short. Call it before destroying the reconciler.
  asio::awaitable<void> stop(std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    stopping_ = true;
    constexpr auto tick = std::chrono::milliseconds(10);
    for (auto waited = std::chrono::milliseconds(0); active() && waited < limit; waited += tick)
      co_await clock_.wait_for(tick);
  }

  reconcile_stats stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
  }

  /// Whether a call is in flight or waiting for its retry.
  bool active() const {
    std::lock_guard lock(mutex_);
    return active_;
  }

private:
  // The one worker: a call (and its one retry), again while requests came in meanwhile.
  asio::awaitable<void> work() {
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        again_ = false;
      }
      std::string why;
      bool done = co_await attempt(why);
      if (!done && !stopping_) {
        if (log_)
          log_("force-update-all on CMS failed (" + why + "); retrying once in " +
               std::to_string(retry_delay_.count()) + "ms");
        co_await wait_retry_delay();
        if (!stopping_) done = co_await attempt(why);
      }
      if (!done && log_) log_("force-update-all on CMS failed: " + why);
      std::lock_guard lock(mutex_);
      if (!done) {
        ++stats_.failed;
        stats_.last_error = why;
      }
      if (!again_ || stopping_) {
        active_ = false;
        co_return;
      }
    }
  }

  asio::awaitable<bool> attempt(std::string& why) {
    {
      std::lock_guard lock(mutex_);
      ++stats_.attempts;
    }
    auto calling = call_();
    auto answer = co_await std::move(calling);
    if (answer && answer.value().status == 200) {
      std::lock_guard lock(mutex_);
      ++stats_.succeeded;
      co_return true;
    }
    why = answer ? "HTTP " + std::to_string(answer.value().status) + ": " + answer.value().body
                 : answer.error().message();
    co_return false;
  }

  // The retry delay in steps, so that stop() cuts it short.
  asio::awaitable<void> wait_retry_delay() {
    auto left = retry_delay_;
    while (left.count() > 0 && !stopping_) {
      const auto step = std::min(left, std::chrono::milliseconds(100));
      co_await clock_.wait_for(step);
      left -= step;
    }
  }

  asio::any_io_executor ex_;
  call_type call_;
  std::chrono::milliseconds retry_delay_;
  bulwark::clock clock_;
  log_type log_;
  mutable std::mutex mutex_;
  reconcile_stats stats_;
  bool active_ = false;
  bool again_ = false;
  std::atomic<bool> stopping_{false};
};

} // namespace channel_metadata
