#pragma once
// detail::notifier: a wake-up signal one coroutine waits on and any thread may raise.
// A notify() with nobody waiting is remembered, so a waiter never misses a wake-up that raced
// with its decision to wait. Not cancellable by design: the owner raises it to stop the waiter.

#include <asio/async_result.hpp>
#include <asio/post.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace bulwark::detail {

/// Type-erases a (move-only) completion handler into a copyable "resume on your executor".
template <class Handler> std::function<void()> resumer(Handler handler) {
  auto held = std::make_shared<Handler>(std::move(handler));
  return [held]() { asio::post(std::move(*held)); };
}

class notifier {
public:
  /// Completes at the next notify() (or at once if one is pending), on the waiter's executor.
  template <class CompletionToken> auto async_wait(CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void()>(
        [this](auto handler) {
          auto resume = resumer(std::move(handler));
          std::unique_lock lock(mutex_);
          if (pending_) {
            pending_ = false;
            lock.unlock();
            resume();
            return;
          }
          waiter_ = std::move(resume);
        },
        token);
  }

  /// Wakes the waiter, or leaves a wake-up pending for the next wait.
  void notify() {
    std::function<void()> resume;
    {
      std::lock_guard lock(mutex_);
      if (!waiter_) {
        pending_ = true;
        return;
      }
      resume = std::move(waiter_);
      waiter_ = nullptr;
    }
    resume();
  }

private:
  std::mutex mutex_;
  bool pending_ = false;
  std::function<void()> waiter_;
};

/// A one-shot event many coroutines may wait for: set() releases all of them, and every later
/// wait completes at once. Used for "this component has stopped".
class latch_event {
public:
  template <class CompletionToken> auto async_wait(CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void()>(
        [this](auto handler) {
          auto resume = resumer(std::move(handler));
          std::unique_lock lock(mutex_);
          if (set_) {
            lock.unlock();
            resume();
            return;
          }
          waiters_.push_back(std::move(resume));
        },
        token);
  }

  void set() {
    std::vector<std::function<void()>> waiters;
    {
      std::lock_guard lock(mutex_);
      set_ = true;
      waiters.swap(waiters_);
    }
    for (auto& w : waiters) w();
  }

  bool is_set() const {
    std::lock_guard lock(mutex_);
    return set_;
  }

private:
  mutable std::mutex mutex_;
  bool set_ = false;
  std::vector<std::function<void()>> waiters_;
};

} // namespace bulwark::detail
