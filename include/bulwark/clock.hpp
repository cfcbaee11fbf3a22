#pragma once
// bulwark::clock: the one source of time for every timer in the core (with_timeout and
// with_deadline, backoff waits, and what the next issues add: breaker windows, leases, step
// deadlines), so that tests move time by hand instead of sleeping.
//
// A clock is a cheap copyable handle (one pointer); copies share one time line.
//   clock()            the real steady clock. Waits go to one steady_timer per execution context
//                      (detail::steady_time_line), so thousands of pending deadlines cost one
//                      kernel timer, and a deadline later than the armed one costs no syscall.
//   clock::manual(t0)  a time line starting at t0 that moves only in advance(). Waits that
//                      become due complete then, each posted to its own executor.
//
// Waits complete on the waiter's executor (the associated executor of the completion handler:
// for wait_until/wait_for, the awaiting coroutine's) with true when the time was reached, false
// when the wait was cancelled through its cancellation slot (terminal, partial or total), so a
// wait works inside `||`, under with_timeout and under a terminal cancellation. A pending wait
// counts as outstanding work on its executor, as an asio timer does. Thread-safe: any thread may
// wait, cancel or advance. The memory cache's TTL reads the wall clock (manual_clock.hpp); this
// is the steady clock of timers.

#include <bulwark/coarse_clock.hpp>
#include <bulwark/detail/deadline_queue.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/system_executor.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <utility>

namespace bulwark {

class clock;

namespace detail {
detail::time_line& time_line_of(const clock& c, const asio::any_io_executor& ex);

/// One pending clock wait: completes its handler once, with true (expired) or false (cancelled).
template <class Handler> class clock_wait final : public deadline_entry {
public:
  clock_wait(Handler handler, asio::any_io_executor work, std::shared_ptr<time_line> line)
      : handler_(std::move(handler)), work_(std::move(work)), line_(std::move(line)) {}

  void expire() noexcept override { complete(true); }

  /// From the handler's cancellation slot: completes with false unless the time came first.
  void cancel() noexcept {
    if (line_->disarm(*this)) complete(false);
  }

private:
  void complete(bool reached) noexcept {
    auto work = std::move(work_);
    asio::post(work, [handler = std::move(handler_), reached]() mutable { std::move(handler)(reached); });
  }

  Handler handler_;
  asio::any_io_executor work_; // the handler's executor, tracking work while the wait is pending
  std::shared_ptr<time_line> line_;
};

/// Installed in the waiter's cancellation slot; keeps the wait alive while it is installed.
template <class Wait> struct cancel_clock_wait {
  // A constructor, not aggregate init: slot.emplace(own) is parenthesised init, which clang 14
  // (the fuzzers' compiler) does not do for aggregates.
  explicit cancel_clock_wait(entry_ref<Wait> w) : wait(std::move(w)) {}
  entry_ref<Wait> wait;
  void operator()(asio::cancellation_type type) {
    if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial |
                 asio::cancellation_type::total)) != asio::cancellation_type::none)
      wait->cancel();
  }
};
} // namespace detail

class clock {
public:
  using duration = std::chrono::steady_clock::duration;
  using time_point = std::chrono::steady_clock::time_point;

  /// The real steady clock.
  clock() noexcept = default;

  /// A clock that tests move by hand, starting at `start`.
  static clock manual(time_point start = {}) {
    clock c;
    c.manual_ = std::make_shared<detail::manual_time_line>(start);
    return c;
  }

  bool is_manual() const noexcept { return manual_ != nullptr; }

  /// The same time line: both the real clock, or the same manual clock (or a copy of it).
  friend bool operator==(const clock&, const clock&) noexcept = default;

  time_point now() const noexcept { return manual_ ? manual_->now() : std::chrono::steady_clock::now(); }

  /// now() as of the last kernel tick on the real clock (coarse_steady_clock: a few ns instead of
  /// ~30 here; never ahead of now(), at most a tick, 1-4 ms, behind); exactly now() on a manual
  /// clock. For decisions at millisecond-to-second granularity on a hot path.
  time_point now_coarse() const noexcept { return manual_ ? manual_->now() : coarse_steady_clock::now(); }

  /// Manual clock: moves time forward by `d` and completes the waits that became due, earliest
  /// first, each posted to its own executor (they run when those executors next run handlers).
  /// Real clock: throws std::logic_error, since real time cannot be moved (a test that meant a
  /// manual clock finds out at once instead of waiting in vain).
  void advance(duration d) const {
    if (!manual_)
      throw std::logic_error("bulwark::clock::advance: the real clock cannot be moved; use clock::manual()");
    manual_->advance(d);
  }

  /// Waits until `at`: completes with true once reached, false when cancelled through the
  /// handler's cancellation slot. `ex` serves handlers that have no associated executor; on the
  /// real clock it (or the handler's executor) must belong to an io_context.
  template <class Executor, class CompletionToken>
  auto async_wait_until(const Executor& ex, time_point at, CompletionToken&& token) const {
    return asio::async_initiate<CompletionToken, void(bool)>(initiate_wait{manual_, asio::any_io_executor(ex)}, token,
                                                             at);
  }

  /// co_await: true when `at` was reached, false when the awaiting coroutine was cancelled.
  asio::awaitable<bool> wait_until(time_point at) const {
    return async_wait_until(asio::system_executor(), at, asio::use_awaitable);
  }

  /// co_await: true when `d` has passed, false when the awaiting coroutine was cancelled.
  asio::awaitable<bool> wait_for(duration d) const { return wait_until(later(now(), d)); }

  /// `t + d`, saturated at time_point::max() (and min()): an option of duration::max() ("no
  /// bound") must not wrap around into the past.
  static time_point later(time_point t, duration d) noexcept {
    if (d > duration::zero() && t.time_since_epoch() > duration::max() - d) return time_point::max();
    if (d < duration::zero() && t.time_since_epoch() < duration::min() - d) return time_point::min();
    return t + d;
  }

private:
  friend detail::time_line& detail::time_line_of(const clock&, const asio::any_io_executor&);

  struct initiate_wait {
    std::shared_ptr<detail::manual_time_line> manual; // a copy: the awaitable starts lazily
    asio::any_io_executor fallback;

    template <class Handler> void operator()(Handler handler, time_point at) const {
      asio::any_io_executor ex = asio::get_associated_executor(handler, fallback);
      auto slot = asio::get_associated_cancellation_slot(handler);
      std::shared_ptr<detail::time_line> line = line_for(manual, ex);
      using wait_type = detail::clock_wait<Handler>;
      auto* wait = new wait_type(std::move(handler), asio::prefer(ex, asio::execution::outstanding_work.tracked), line);
      detail::entry_ref<wait_type> own(wait, detail::entry_ref<wait_type>::adopt);
      if (slot.is_connected()) slot.template emplace<detail::cancel_clock_wait<wait_type>>(own);
      line->arm(*wait, at, ex);
    }
  };

  // The manual line is shared by every copy; a context's steady line lives as long as the
  // context (a non-owning shared_ptr, so both look alike to the waits).
  static std::shared_ptr<detail::time_line> line_for(const std::shared_ptr<detail::manual_time_line>& manual,
                                                     const asio::any_io_executor& ex) {
    if (manual) return manual;
    return std::shared_ptr<detail::time_line>(std::shared_ptr<void>(), &detail::steady_time_line::of(ex));
  }

  std::shared_ptr<detail::manual_time_line> manual_;
};

namespace detail {
/// The time line that deadlines of `c` go to for a waiter on `ex`.
inline time_line& time_line_of(const clock& c, const asio::any_io_executor& ex) {
  if (c.manual_) return *c.manual_;
  return steady_time_line::of(ex);
}
} // namespace detail

} // namespace bulwark
