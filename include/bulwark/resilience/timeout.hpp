#pragma once
// with_timeout and with_deadline: bound any task<T> by a time, on a bulwark::clock.
//
// The promise: the caller resumes no later than the deadline (plus scheduling latency) with
// errc::timeout, even when the operation ignores cancellation. The operation runs in its own
// coroutine thread on the caller's executor; at the deadline it receives a terminal
// cancellation through its cancellation slot, and if it ignores that it runs on, unobserved:
// its late completion (a value, an error or an exception) is dropped with the shared state,
// which it owns a reference to. So an operation that can outlive its caller must own what it
// uses (the concept headers say which do: "Deadlines and abandonment").
//
// Asio's `op || timer` does not keep that promise: the parallel group completes only after
// both branches completed, so a non-cancellable await keeps its caller past the deadline.
//
// Cost (release build, GCC 12, one core of the 2-core dev VM, 2026-12-02; benchmarks/
// write_through.sh and callgrind): an operation that finishes without suspending never touches
// a timer, a queue or the scheduler, and still costs about 220 ns of CPU (a memory cache get:
// 99 ns alone, 321 ns under with_deadline; 1,340 more instructions around a memory repository
// put of 1,250). That is the price of the promise above: the operation must run in a coroutine
// thread of its own (its frame, the thread's executor and cancellation state, the bounded call's
// shared state and this coroutine's frame), since run inline on the caller's thread an operation
// that suspends and ignores cancellation would hold the caller past the deadline, and whether it
// will suspend is known only afterwards. Asio recycles two coroutine frames per thread
// (ASIO_RECYCLING_ALLOCATOR_CACHE_SIZE); deeper chains pay malloc for the others. One that
// suspends registers in the per-context deadline queue of its clock (detail/deadline_queue.hpp):
// a mutex, a heap push and pop, and a kernel timer re-armed only when this deadline is earlier
// than the armed one. with_timeout(op, limit, deadline) reads the clock once for both bounds.
//
// Deadline propagation: take one `deadline` per request (deadline::after(budget, clock)) and
// pass it down; with_deadline(op, d) bounds each call by what is left, and does not start an
// operation whose deadline has already passed.
//
// Threads: the caller and the operation share the caller's executor. On a context run by
// several threads, use a strand for the caller (as Asio requires for any per-operation
// cancellation), so that the cancellation emitted at the deadline never races the operation.

#include <bulwark/clock.hpp>
#include <bulwark/coarse_clock.hpp>
#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/cancellation_state.hpp>
#include <asio/detail/thread_context.hpp>
#include <asio/detail/thread_info_base.hpp>
#include <asio/dispatch.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/version.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string>

// The operation's coroutine thread is launched the way co_spawn launches one, minus co_spawn's
// initial dispatch and final post: those two scheduler round trips were most of the cost of a
// bounded call that completes at once, and the final post piles up in a loop that never
// suspends. That uses Asio 1.22's awaitable_handler; check it against a new Asio.
static_assert(ASIO_VERSION / 100 == 1022, "bulwark::with_deadline launches coroutine threads through Asio 1.22 "
                                          "internals (asio/impl/co_spawn.hpp): check them for this Asio version");

namespace bulwark {

/// A time by which work must be done, on the clock that tells it. One per request (or per saga
/// step), carried down to every call it bounds.
struct deadline {
  clock::time_point at{};
  clock source{};

  /// The deadline `budget` from now on `c`.
  static deadline after(clock::duration budget, clock c) {
    return deadline{clock::later(c.now(), budget), std::move(c)};
  }

  /// The deadline `budget` from now on the real steady clock, for a request's budget (one per
  /// request, on every request path: no clock object to pass in and destroy). Counted from the
  /// last kernel tick (coarse_steady_clock: ~4 ns instead of ~24 ns here, where the precise read
  /// was a tenth of a write through flows::write_through), so the deadline is at most a tick
  /// (1-4 ms) earlier than after(budget, clock{}) would set it, never later: a bound is never
  /// overrun, a budget is a tick shorter at most. A budget under `precise_below` (100 ms), where
  /// a tick would be a noticeable share, is counted from the precise clock instead.
  static deadline after(clock::duration budget) {
    const auto now = budget < precise_below ? std::chrono::steady_clock::now() : coarse_steady_clock::now();
    return deadline{clock::later(now, budget), clock{}};
  }
  /// Budgets shorter than this are counted from the precise clock by after(budget).
  static constexpr clock::duration precise_below = std::chrono::milliseconds(100);

  bool passed() const noexcept { return source.now() >= at; }

  /// passed(), read from the last kernel tick on the real clock (coarse_steady_clock: a few ns
  /// instead of ~30): never true before `at`, at most a tick (1-4 ms) late. Exact on a manual
  /// clock. For a cheap "skip this step, nobody waits any more" check on a hot path.
  bool passed_coarse() const noexcept { return source.now_coarse() >= at; }

  /// What is left of the budget (zero once passed).
  clock::duration remaining() const noexcept {
    const auto left = at - source.now();
    return left > clock::duration::zero() ? left : clock::duration::zero();
  }
};

namespace detail {

enum class bounded_state : int {
  running,   ///< the operation runs; the caller has not started waiting
  waiting,   ///< the caller waits; the deadline is armed
  op_done,   ///< the operation finished first: its result is the caller's
  timed_out, ///< the deadline came first: the operation's completion is dropped
  cancelled, ///< the caller was cancelled first: likewise
};

/// The suspended caller of a bounded call that had to wait (type-erased completion handler).
class bounded_waiter {
public:
  virtual ~bounded_waiter() = default;
  /// Resumes the caller on its executor: inline when that is the current one and `may_inline`.
  virtual void resume(bool may_inline) = 0;
};

template <class Handler> class bounded_waiter_for final : public bounded_waiter {
public:
  bounded_waiter_for(Handler h, asio::any_io_executor work) : handler_(std::move(h)), work_(std::move(work)) {}
  void resume(bool may_inline) override {
    auto work = std::move(work_);
    if (may_inline)
      asio::dispatch(work, std::move(handler_));
    else
      asio::post(work, std::move(handler_));
  }

private:
  Handler handler_;
  asio::any_io_executor work_; // the caller's executor, tracking work while it waits
};

/// What the caller, the operation's thread and the time line share. The first of "operation
/// finished", "deadline reached" and "caller cancelled" to move `state_` out of running/waiting
/// decides the outcome; the others find it decided and do nothing but drop their reference.
template <class T> class bounded_call final : public deadline_entry {
public:
  explicit bounded_call(asio::any_io_executor ex) : ex_(std::move(ex)) {}

  // One per bounded call, on the hot path: from Asio's per-thread recycling cache (the slot
  // Asio keeps for parallel groups, which bounded calls replace) instead of malloc.
  static void* operator new(std::size_t size) {
    return asio::detail::thread_info_base::allocate(asio::detail::thread_info_base::parallel_group_tag(),
                                                    asio::detail::thread_context::top_of_thread_call_stack(), size);
  }
  static void operator delete(void* p, std::size_t size) noexcept {
    asio::detail::thread_info_base::deallocate(asio::detail::thread_info_base::parallel_group_tag(),
                                               asio::detail::thread_context::top_of_thread_call_stack(), p, size);
  }

  bounded_state state() const noexcept { return state_.load(std::memory_order_acquire); }

  /// The operation's outcome, once state() is op_done (rethrows what it threw).
  result<T> take() {
    if (failure_) std::rethrow_exception(failure_);
    return std::move(*value_);
  }

  // Written by the operation's thread before settle(); read by the caller after op_done.
  std::optional<result<T>> value_;
  std::exception_ptr failure_;

  /// The slot through which the operation's thread hears "stop" at the deadline.
  asio::cancellation_slot op_slot() noexcept { return op_cancel_.slot(); }

  /// On the operation's thread, when it finished (value_ or failure_ is set).
  void settle() noexcept {
    auto s = state_.load(std::memory_order_acquire);
    while (s == bounded_state::running || s == bounded_state::waiting) {
      if (state_.compare_exchange_weak(s, bounded_state::op_done, std::memory_order_acq_rel)) {
        if (s == bounded_state::waiting) {
          line_->disarm(*this);
          // On the caller's executor already (the thread runs there): resume it inline, as
          // co_spawn does after a context switch, instead of another trip through the queue.
          resume_caller(true);
        }
        return;
      }
    }
    // Abandoned: the result dies with this object, which nobody else reads any more.
  }

  /// The caller's wait: from the handler of a co_await that suspended it.
  template <class Handler> void wait(Handler handler, const clock& clk, clock::time_point at) {
    auto slot = asio::get_associated_cancellation_slot(handler);
    asio::any_io_executor caller_ex = asio::get_associated_executor(handler, ex_);
    waiter_ = std::make_unique<bounded_waiter_for<Handler>>(
        std::move(handler), asio::prefer(caller_ex, asio::execution::outstanding_work.tracked));
    line_ = &time_line_of(clk, ex_);
    if (slot.is_connected()) slot.template emplace<cancel_from_caller>(entry_ref<bounded_call>(this));
    line_->arm(*this, at, ex_);
    auto expected = bounded_state::running;
    if (!state_.compare_exchange_strong(expected, bounded_state::waiting, std::memory_order_acq_rel)) {
      // Decided while we set up (the operation finished on another thread, or the deadline
      // had passed): nobody else will resume us.
      line_->disarm(*this);
      resume_caller(false);
    }
  }

  /// From the time line at the deadline.
  void expire() noexcept override { stop(bounded_state::timed_out); }

private:
  struct cancel_from_caller {
    entry_ref<bounded_call> call;
    void operator()(asio::cancellation_type type) {
      if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial |
                   asio::cancellation_type::total)) != asio::cancellation_type::none)
        call->stop(bounded_state::cancelled);
    }
  };

  void stop(bounded_state outcome) noexcept {
    auto s = state_.load(std::memory_order_acquire);
    while (s == bounded_state::running || s == bounded_state::waiting) {
      if (state_.compare_exchange_weak(s, outcome, std::memory_order_acq_rel)) {
        if (outcome == bounded_state::cancelled) line_->disarm(*this);
        // The operation hears it on its own executor. The caller's resumption is queued after
        // the cancellation, so an operation that honours it in one step (an aborted socket or
        // timer wait) has usually finished before its caller runs on; one that ignores it runs
        // on regardless. (running: the caller is still setting up its wait and finds the
        // outcome decided.)
        asio::dispatch(ex_, [call = entry_ref<bounded_call>(this), resume = s == bounded_state::waiting]() {
          call->op_cancel_.emit(asio::cancellation_type::terminal);
          if (resume) call->resume_caller(false);
        });
        return;
      }
    }
  }

  void resume_caller(bool may_inline) noexcept {
    auto waiter = std::move(waiter_);
    waiter->resume(may_inline);
  }

  std::atomic<bounded_state> state_{bounded_state::running};
  asio::any_io_executor ex_;
  asio::cancellation_signal op_cancel_;
  std::unique_ptr<bounded_waiter> waiter_;
  time_line* line_ = nullptr;
};

/// The operation's own coroutine thread: runs it and settles the call.
template <class T> asio::awaitable<asio::detail::awaitable_thread_entry_point, asio::any_io_executor>
bounded_thread(entry_ref<bounded_call<T>> call, task<T> op) {
  try {
    call->value_.emplace(co_await std::move(op));
  } catch (...) {
    call->failure_ = std::current_exception();
  }
  call->settle();
}

/// Starts `op` in its own coroutine thread on `ex`, inline: it runs until it first suspends or
/// finishes. Like asio::co_spawn's launch (asio/impl/co_spawn.hpp), with the operation's
/// cancellation slot fed by the call's signal.
template <class T> void launch_bounded(const asio::any_io_executor& ex, bounded_call<T>* call, task<T> op) {
  auto slot = call->op_slot();
  asio::detail::awaitable_handler<asio::any_io_executor, void>(
      bounded_thread<T>(entry_ref<bounded_call<T>>(call), std::move(op)), ex, slot, asio::cancellation_state(slot))
      .launch();
}

template <class T> task<T> run_bounded(task<T> op, clock::time_point at, clock clk, std::string what,
                                       clock::duration limit, bool is_timeout) {
  auto ex = co_await asio::this_coro::executor;
  entry_ref<bounded_call<T>> call(new bounded_call<T>(ex), entry_ref<bounded_call<T>>::adopt);
  launch_bounded(ex, call.get(), std::move(op));
  if (call->state() != bounded_state::op_done) {
    co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [&](auto handler) { call->wait(std::move(handler), clk, at); }, asio::use_awaitable);
  }
  switch (call->state()) {
  case bounded_state::op_done: co_return call->take();
  case bounded_state::cancelled: co_return error(errc::cancelled, what + " cancelled while waiting for it");
  default: break;
  }
  if (is_timeout)
    co_return error(errc::timeout,
                    what + " timed out after " +
                        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(limit).count()) + " ms");
  co_return error(errc::timeout, what + " missed its deadline");
}

template <class T> task<T> deadline_passed(std::string what) {
  co_return error(errc::timeout, what + " not started: its deadline had passed");
}

} // namespace detail

/// The result of `op`, or errc::timeout (detail: "<what> timed out after N ms") once `limit`
/// has passed on `clk`, measured from this call. The operation is started even when `limit`
/// is zero (what finishes without suspending still returns its result). errc::cancelled when
/// the caller is cancelled while waiting. Either way an unfinished `op` gets a terminal
/// cancellation and, if it ignores it, runs on with its result dropped.
template <class T> task<T> with_timeout(task<T> op, clock::duration limit, clock clk, std::string what = "operation") {
  const auto at = clock::later(clk.now(), limit);
  return detail::run_bounded(std::move(op), at, std::move(clk), std::move(what), limit, true);
}

/// with_timeout bounded by a propagated deadline too: by `limit` from now or by `d`, whichever
/// comes first, on d's clock (read once). The error names the bound that was reached: "<what>
/// timed out after N ms" or "<what> missed its deadline". Like with_timeout (and unlike
/// with_deadline), `op` is started even when `d` has passed: what finishes without suspending
/// still returns its result.
template <class T>
task<T> with_timeout(task<T> op, clock::duration limit, const deadline& d, std::string what = "operation") {
  const auto own = clock::later(d.source.now(), limit);
  if (own <= d.at) return detail::run_bounded(std::move(op), own, d.source, std::move(what), limit, true);
  return detail::run_bounded(std::move(op), d.at, d.source, std::move(what), clock::duration::zero(), false);
}

/// with_timeout on the real steady clock.
template <class T> task<T> with_timeout(task<T> op, clock::duration limit, std::string what = "operation") {
  return with_timeout(std::move(op), limit, clock(), std::move(what));
}

/// The result of `op`, or errc::timeout ("<what> missed its deadline") once `at` is reached on
/// `clk`. An operation whose deadline has already passed is not started ("<what> not started:
/// its deadline had passed"). Otherwise as with_timeout.
template <class T> task<T> with_deadline(task<T> op, clock::time_point at, clock clk, std::string what = "operation") {
  if (clk.now() >= at) return detail::deadline_passed<T>(std::move(what));
  return detail::run_bounded(std::move(op), at, std::move(clk), std::move(what), clock::duration::zero(), false);
}

/// with_deadline on the real steady clock.
template <class T> task<T> with_deadline(task<T> op, clock::time_point at, std::string what = "operation") {
  return with_deadline(std::move(op), at, clock(), std::move(what));
}

/// with_deadline by a propagated deadline (its time, on its clock).
template <class T> task<T> with_deadline(task<T> op, const deadline& d, std::string what = "operation") {
  return with_deadline(std::move(op), d.at, d.source, std::move(what));
}

} // namespace bulwark
