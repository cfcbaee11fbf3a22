#pragma once
// detail::periodic: a tick every period on a strand, until stop(). The loop a flow runs in the
// background (write_through's reconcile of its pending index, snapshot_writer's saves): the
// first tick one period after start(), a slow tick does not cause a burst of ticks to catch up,
// and stop() ends the wait at once and waits for a tick in progress. The strand decides every
// stop, so a stop from any thread never races the loop.

#include <bulwark/clock.hpp>
#include <bulwark/detail/notifier.hpp>
#include <bulwark/detail/saturating_cast.hpp>
#include <bulwark/result.hpp>
#include <bulwark/run_on.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>

namespace bulwark::detail {

class periodic {
public:
  /// One tick; runs on the strand. An exception it throws ends that tick, not the loop (the
  /// tick is the one to report its own failures).
  using tick_type = std::function<asio::awaitable<void>()>;

  /// Does not start: call start(). A period of milliseconds::max() never ticks.
  periodic(asio::any_io_executor executor, bulwark::clock clock, std::chrono::milliseconds period, tick_type tick)
      : state_(std::make_shared<state>(std::move(executor), std::move(clock),
                                       saturating_cast<bulwark::clock::duration>(period), std::move(tick))) {}
  periodic(const periodic&) = delete;
  periodic& operator=(const periodic&) = delete;
  /// Asks the loop to stop; a tick in progress still runs to its end (call stop() to wait for it).
  ~periodic() { request_stop(state_); }

  /// Starts the loop. A second call, or a call after stop(), does nothing.
  void start() {
    if (state_->started.exchange(true)) return;
    auto s = state_;
    asio::co_spawn(s->strand, loop(s, bulwark::clock::later(s->clock.now(), s->period)),
                   asio::bind_cancellation_slot(s->wake.slot(), asio::detached));
  }

  /// Stops the loop and waits for a tick in progress. Returns at once when already stopped or
  /// never started.
  task<void> stop() {
    auto s = state_;
    co_return co_await bulwark::run_on(s->strand, stop_on_strand(s));
  }

  /// The strand the ticks run on (for work that must not overlap a tick).
  const asio::strand<asio::any_io_executor>& strand() const noexcept { return state_->strand; }

  /// Ticks run so far.
  std::uint64_t ticks() const noexcept { return state_->ticks.load(); }

private:
  struct state {
    state(asio::any_io_executor ex, bulwark::clock c, bulwark::clock::duration p, tick_type t)
        : strand(asio::make_strand(std::move(ex))), clock(std::move(c)), period(p), tick(std::move(t)) {}
    asio::strand<asio::any_io_executor> strand;
    bulwark::clock clock;
    bulwark::clock::duration period;
    tick_type tick;
    std::atomic<bool> started{false};
    std::atomic<std::uint64_t> ticks{0};
    // Strand-only.
    bool stopping = false;
    bool waiting = false;
    asio::cancellation_signal wake;
    latch_event loop_done;
  };

  static void request_stop(const std::shared_ptr<state>& s) {
    asio::post(s->strand, [s]() {
      s->stopping = true;
      if (s->waiting) s->wake.emit(asio::cancellation_type::terminal);
    });
  }

  static asio::awaitable<void> loop(std::shared_ptr<state> s, bulwark::clock::time_point next) {
    while (!s->stopping) {
      s->waiting = true;
      const bool reached = co_await s->clock.wait_until(next);
      s->waiting = false;
      // Cancelled: the coroutine is marked cancelled, so it must not await anything else.
      if (!reached || s->stopping) break;
      try {
        co_await s->tick();
      } catch (const std::exception&) { // the tick's own to report; the loop goes on
      }
      s->ticks.fetch_add(1);
      next = std::max(bulwark::clock::later(next, s->period), s->clock.now());
    }
    s->loop_done.set();
  }

  static task<void> stop_on_strand(std::shared_ptr<state> s) {
    s->stopping = true;
    if (s->started.exchange(true)) {
      if (s->waiting) s->wake.emit(asio::cancellation_type::terminal);
      co_await s->loop_done.async_wait(asio::use_awaitable);
    }
    co_return ok();
  }

  std::shared_ptr<state> state_;
};

} // namespace bulwark::detail
