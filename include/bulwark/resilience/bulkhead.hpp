#pragma once
// bulkhead: at most max_concurrent calls run at once; up to max_waiting more wait, first come
// first served, for at most max_wait on the bulkhead's clock; the rest are refused at once.
// It keeps one slow dependency from taking every coroutine (and every connection) of a service.
//
// Refusals are errc::rejected: "bulkhead 'name' is full: N in flight, M waiting" (the queue is
// full, or max_wait is zero) and "bulkhead 'name': waited too long for a slot (N ms)". A waiter
// whose caller is cancelled leaves the queue at once with errc::cancelled. A finished call hands
// its slot straight to the first waiter, so a newcomer never overtakes the queue.
//
// Cost: a call that finds a free slot takes the mutex twice (admit, release) and allocates
// nothing beyond call()'s coroutine frame. A call that waits allocates its queue entry and
// registers one deadline on the clock's time line (see clock.hpp).
//
// Thread-safe: one bulkhead may be shared by coroutines on any threads; a waiter resumes on its
// own executor. The bulkhead must outlive the calls made through it (its queue entries keep only
// its shared state alive, so a late timer never touches a destroyed bulkhead).

#include <bulwark/clock.hpp>
#include <bulwark/detail/deadline_queue.hpp>
#include <bulwark/error.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace bulwark {

namespace detail {

struct bulkhead_core;

/// One caller waiting for a slot. Its outcome is decided once, under the core's mutex, by the
/// first of: a slot handed over, the deadline, the caller's cancellation.
class bulkhead_wait : public deadline_entry {
public:
  enum class outcome : std::uint8_t { pending, granted, full, timed_out, cancelled };

  explicit bulkhead_wait(std::shared_ptr<bulkhead_core> core) : core_(std::move(core)) {}

  outcome decided = outcome::pending; // under core_->mutex
  std::list<entry_ref<bulkhead_wait>>::iterator place{};
  time_line* line = nullptr;

  /// Resumes the waiting caller on its executor (once).
  virtual void resume() noexcept = 0;

  void expire() noexcept override;
  void cancel() noexcept;

protected:
  std::shared_ptr<bulkhead_core> core_;
};

template <class Handler> class bulkhead_wait_for final : public bulkhead_wait {
public:
  bulkhead_wait_for(std::shared_ptr<bulkhead_core> core, Handler h, asio::any_io_executor work)
      : bulkhead_wait(std::move(core)), handler_(std::move(h)), work_(std::move(work)) {}
  void resume() noexcept override {
    auto work = std::move(work_);
    asio::post(work, [handler = std::move(handler_)]() mutable { std::move(handler)(); });
  }

private:
  Handler handler_;
  asio::any_io_executor work_; // the caller's executor, tracking work while it waits
};

/// What the bulkhead, its waiters and their timers share.
struct bulkhead_core {
  std::string name;
  std::size_t max_concurrent = 1;
  std::size_t max_waiting = 0;
  std::mutex mutex;
  std::size_t in_flight = 0;
  std::list<entry_ref<bulkhead_wait>> queue;
  metrics::gauge* in_flight_gauge = nullptr;
  metrics::gauge* waiting_gauge = nullptr;
  metrics::counter* rejected_full = nullptr;
  metrics::counter* rejected_wait = nullptr;

  // Under mutex.
  void publish() noexcept {
    if (in_flight_gauge) in_flight_gauge->set(static_cast<double>(in_flight));
    if (waiting_gauge) waiting_gauge->set(static_cast<double>(queue.size()));
  }

  /// Decides `w` (still pending) as `o`, taking it out of the queue. Under mutex.
  void settle(bulkhead_wait& w, bulkhead_wait::outcome o) {
    w.decided = o;
    queue.erase(w.place);
    publish();
  }

  /// A call ended: its slot goes to the first waiter, or back to the pool.
  void release() {
    entry_ref<bulkhead_wait> next;
    {
      std::lock_guard lock(mutex);
      if (queue.empty()) {
        --in_flight;
        publish();
        return;
      }
      next = queue.front();
      settle(*next, bulkhead_wait::outcome::granted);
    }
    if (next->line) next->line->disarm(*next);
    next->resume();
  }
};

inline void bulkhead_wait::expire() noexcept {
  {
    std::lock_guard lock(core_->mutex);
    if (decided != outcome::pending) return;
    core_->settle(*this, outcome::timed_out);
  }
  resume();
}

inline void bulkhead_wait::cancel() noexcept {
  {
    std::lock_guard lock(core_->mutex);
    if (decided != outcome::pending) return;
    core_->settle(*this, outcome::cancelled);
  }
  if (line) line->disarm(*this);
  resume();
}

/// Installed in the waiter's cancellation slot; keeps the wait alive while installed.
struct cancel_bulkhead_wait {
  entry_ref<bulkhead_wait> wait;
  void operator()(asio::cancellation_type type) {
    if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial |
                 asio::cancellation_type::total)) != asio::cancellation_type::none)
      wait->cancel();
  }
};

} // namespace detail

class bulkhead {
public:
  struct options {
    /// Names the bulkhead in refusals and in the metrics' `name` label.
    std::string name = "bulkhead";
    /// Calls that run at once (at least 1).
    std::size_t max_concurrent = 16;
    /// Calls that may wait for a slot beyond those (0: refuse at once when full).
    std::size_t max_waiting = 64;
    /// How long a call waits for a slot at most (zero: refuse at once when full).
    bulwark::clock::duration max_wait = std::chrono::seconds(1);
    /// The time of max_wait.
    bulwark::clock clock{};
    /// With a registry: bulwark_bulkhead_in_flight{name}, bulwark_bulkhead_waiting{name} and
    /// bulwark_bulkhead_rejected_total{name,reason} (reason: full | waited_too_long).
    std::shared_ptr<metrics::registry> metrics{};
  };

  /// A max_concurrent of 0 is taken as 1 (a constructor never fails).
  explicit bulkhead(options opts) : opts_(std::move(opts)), core_(std::make_shared<detail::bulkhead_core>()) {
    core_->name = opts_.name;
    core_->max_concurrent = std::max<std::size_t>(1, opts_.max_concurrent);
    core_->max_waiting = opts_.max_wait > bulwark::clock::duration::zero() ? opts_.max_waiting : 0;
    if (opts_.metrics) {
      auto& r = *opts_.metrics;
      core_->in_flight_gauge =
          &r.gauge_family("bulwark_bulkhead_in_flight", "Calls running inside a bulkhead", {"name"})
               .labels({opts_.name});
      core_->waiting_gauge = &r.gauge_family("bulwark_bulkhead_waiting", "Calls waiting for a bulkhead slot", {"name"})
                                  .labels({opts_.name});
      auto& rejected = r.counter_family("bulwark_bulkhead_rejected_total", "Calls a bulkhead refused, by reason",
                                        {"name", "reason"});
      core_->rejected_full = &rejected.labels({opts_.name, "full"});
      core_->rejected_wait = &rejected.labels({opts_.name, "waited_too_long"});
    }
  }

  bulkhead(const bulkhead&) = delete;
  bulkhead& operator=(const bulkhead&) = delete;

  /// Runs `op` once a slot is free. Errors: errc::rejected when the queue is full or the wait
  /// exceeded max_wait (`op` is not started); errc::cancelled when the caller was cancelled
  /// while waiting; otherwise what `op` returns. Cost: see the file comment.
  template <class T> task<T> call(task<T> op) {
    if (!try_enter()) {
      auto waited = co_await wait_for_slot();
      switch (waited) {
      case detail::bulkhead_wait::outcome::granted: break;
      case detail::bulkhead_wait::outcome::cancelled:
        co_return error(errc::cancelled, "cancelled while waiting for bulkhead '" + opts_.name + "'");
      case detail::bulkhead_wait::outcome::timed_out:
        if (core_->rejected_wait) core_->rejected_wait->inc();
        co_return error(
            errc::rejected,
            "bulkhead '" + opts_.name + "': waited too long for a slot (" +
                std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(opts_.max_wait).count()) + " ms)");
      default: co_return full();
      }
    }
    slot_guard guard{core_.get()};
    co_return co_await std::move(op);
  }

  /// Calls running now.
  std::size_t in_flight() const {
    std::lock_guard lock(core_->mutex);
    return core_->in_flight;
  }

  /// Calls waiting for a slot now.
  std::size_t waiting() const {
    std::lock_guard lock(core_->mutex);
    return core_->queue.size();
  }

private:
  struct slot_guard {
    detail::bulkhead_core* core;
    ~slot_guard() { core->release(); }
  };

  bool try_enter() {
    std::lock_guard lock(core_->mutex);
    // A free slot is only taken when nobody waits for one, so that the queue stays first come
    // first served.
    if (core_->in_flight < core_->max_concurrent && core_->queue.empty()) {
      ++core_->in_flight;
      core_->publish();
      return true;
    }
    return false;
  }

  error full() const {
    if (core_->rejected_full) core_->rejected_full->inc();
    std::size_t running = 0, queued = 0;
    {
      std::lock_guard lock(core_->mutex);
      running = core_->in_flight;
      queued = core_->queue.size();
    }
    return error(errc::rejected, "bulkhead '" + opts_.name + "' is full: " + std::to_string(running) + " in flight, " +
                                     std::to_string(queued) + " waiting");
  }

  // Parks the caller in the queue (or decides at once: a slot freed meanwhile, or the queue is
  // full). The outcome says which.
  asio::awaitable<detail::bulkhead_wait::outcome> wait_for_slot() {
    auto ex = co_await asio::this_coro::executor;
    entry_holder held;
    co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [&](auto handler) { start_wait(std::move(handler), ex, held); }, asio::use_awaitable);
    std::lock_guard lock(core_->mutex);
    co_return held.wait->decided;
  }

  struct entry_holder {
    detail::entry_ref<detail::bulkhead_wait> wait;
  };

  template <class Handler> void start_wait(Handler handler, const asio::any_io_executor& fallback, entry_holder& held) {
    using wait_type = detail::bulkhead_wait_for<Handler>;
    asio::any_io_executor ex = asio::get_associated_executor(handler, fallback);
    auto slot = asio::get_associated_cancellation_slot(handler);
    auto* w = new wait_type(core_, std::move(handler), asio::prefer(ex, asio::execution::outstanding_work.tracked));
    // This function's own reference, and nothing of the coroutine's touched once the wait is
    // queued: from then on another thread may hand it a slot and run the coroutine on (on an
    // executor run by several threads), destroying `held` and the slot's handler with it.
    detail::entry_ref<detail::bulkhead_wait> own(w, detail::entry_ref<detail::bulkhead_wait>::adopt);
    held.wait = own;
    // Known before the wait is queued: release() and cancel() on other threads read it.
    w->line = &detail::time_line_of(opts_.clock, ex);
    // Installed before the wait is queued, for the same reason. No cancellation reaches it
    // before then: Asio emits one on the caller's executor, never during this initiation.
    if (slot.is_connected()) slot.template emplace<detail::cancel_bulkhead_wait>(own);
    bool queued = false;
    {
      std::lock_guard lock(core_->mutex);
      if (core_->in_flight < core_->max_concurrent && core_->queue.empty()) {
        ++core_->in_flight;
        w->decided = detail::bulkhead_wait::outcome::granted;
      } else if (core_->queue.size() >= core_->max_waiting) {
        w->decided = detail::bulkhead_wait::outcome::full;
      } else {
        w->place = core_->queue.insert(core_->queue.end(), own);
        queued = true;
      }
      core_->publish();
    }
    if (!queued) return w->resume();
    // Armed outside the core's mutex: a deadline already due expires inline, and expire() locks.
    w->line->arm(*w, clock::later(opts_.clock.now(), opts_.max_wait), ex);
    bool decided = false;
    {
      std::lock_guard lock(core_->mutex);
      decided = w->decided != detail::bulkhead_wait::outcome::pending;
    }
    // Decided between queueing and arming (a slot handed over, a cancellation): nobody else
    // would take the deadline back before it falls due.
    if (decided) w->line->disarm(*w);
  }

  options opts_;
  std::shared_ptr<detail::bulkhead_core> core_;
};

} // namespace bulwark
