#pragma once
// The command API's admission bound, in both modes: a command is accepted only while the
// pipeline has at most `max_in_flight` messages that some stage has not handled yet; beyond it
// the request is held (before it is stamped) and refused with 503 after `timeout`. Each mode
// supplies only how to count: memory mode reads its bus's offsets, real mode asks Kafka how far
// each consumer group is behind (README, "Admission").
//
// Threads: admit() may run on any number of threads at once (the HTTP servers'). A request that
// finds the count older than `refresh` starts a measurement beside it (one at a time) and goes
// on with the last figure: no request waits for Kafka's answers. The measurement owns what it
// uses (the state is shared), so it may outlive the admission.

#include <bulwark/error.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/result.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace event_log {

struct admission_options {
  /// The bound: messages not yet handled by every stage (0: no bound).
  std::size_t max_in_flight = 1024;
  /// How long a request is held before it is refused.
  std::chrono::milliseconds timeout{5000};
  /// How old the count may be before an admission measures again (memory mode: 1 ms, a few
  /// locks; real mode: 100 ms, a dozen Kafka requests).
  std::chrono::milliseconds refresh{1};
};

class admission {
public:
  /// The pipeline's messages not yet handled by every stage, or the error that prevented the
  /// count (the last figure stays in use; the next admission after `refresh` tries again). It
  /// may run after the admission is gone: it must own what it uses.
  using measure_fn = std::function<bulwark::task<std::int64_t>()>;

  admission(admission_options o, measure_fn measure, bulwark::metrics::registry& metrics)
      : opts_(o), state_(std::make_shared<state>()) {
    state_->measure = std::move(measure);
    state_->behind_gauge = &metrics
                                .gauge_family("eventlog_admission_behind_messages",
                                              "Messages the pipeline's stages had not handled yet, as the command "
                                              "API's admission bound last counted them",
                                              {})
                                .labels({});
    metrics.gauge_family("eventlog_admission_bound_messages", "The command API's admission bound (0: none)", {})
        .labels({})
        .set(static_cast<double>(opts_.max_in_flight));
    held_ = &metrics
                 .counter_family("eventlog_admission_held_total",
                                 "Commands the admission bound held back before accepting or refusing them", {})
                 .labels({});
  }

  /// Waits while the pipeline is more than max_in_flight messages behind; errc::unavailable
  /// ("the pipeline is N messages behind (bound M)") once that lasted `timeout`. The count is
  /// the last measurement plus the commands admitted since it began (so that requests released
  /// together by one measurement do not all pass), measured again when older than `refresh`.
  bulwark::task<void> admit() {
    using clock = std::chrono::steady_clock;
    if (opts_.max_in_flight == 0) co_return bulwark::ok();
    const auto give_up = clock::now() + opts_.timeout;
    std::optional<asio::steady_timer> timer;
    state& s = *state_;
    for (;;) {
      measure_if_stale(co_await asio::this_coro::executor);
      const auto n = s.behind.load(std::memory_order_relaxed) + s.admitted.load(std::memory_order_relaxed) -
                     s.counted_from.load(std::memory_order_relaxed);
      if (n <= static_cast<std::int64_t>(opts_.max_in_flight)) {
        s.admitted.fetch_add(1, std::memory_order_relaxed);
        co_return bulwark::ok();
      }
      if (!timer) {
        held_->inc();
        timer.emplace(co_await asio::this_coro::executor);
      }
      if (clock::now() >= give_up)
        co_return bulwark::error(bulwark::errc::unavailable, "the pipeline is " + std::to_string(n) +
                                                                 " messages behind (bound " +
                                                                 std::to_string(opts_.max_in_flight) + ")");
      timer->expires_after(std::clamp(opts_.refresh, std::chrono::milliseconds(1), std::chrono::milliseconds(10)));
      co_await timer->async_wait(asio::use_awaitable);
    }
  }

  /// The last count (for tests and logs).
  std::int64_t behind() const { return state_->behind.load(std::memory_order_relaxed); }

private:
  struct state {
    measure_fn measure;
    bulwark::metrics::gauge* behind_gauge = nullptr; // the registry outlives the process's stages
    std::atomic<bool> measuring{false};
    std::atomic<std::int64_t> measured_at{0}; ///< steady_clock nanoseconds (0: never)
    std::atomic<std::int64_t> behind{0};      ///< the last count
    /// Commands admitted in all, and how many of them the last count had seen (those admitted
    /// before it began).
    std::atomic<std::int64_t> admitted{0}, counted_from{0};
  };

  void measure_if_stale(const asio::any_io_executor& ex) {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    if (now - state_->measured_at.load(std::memory_order_relaxed) < std::chrono::nanoseconds(opts_.refresh).count())
      return;
    if (state_->measuring.exchange(true, std::memory_order_acquire)) return;
    asio::co_spawn(ex, measure(state_), asio::detached);
  }

  static asio::awaitable<void> measure(std::shared_ptr<state> s) {
    const auto admitted_before = s->admitted.load(std::memory_order_relaxed);
    auto counted = co_await s->measure();
    if (counted) {
      s->behind.store(counted.value(), std::memory_order_relaxed);
      s->counted_from.store(admitted_before, std::memory_order_relaxed);
      s->behind_gauge->set(static_cast<double>(counted.value()));
    }
    s->measured_at.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    s->measuring.store(false, std::memory_order_release);
  }

  const admission_options opts_;
  std::shared_ptr<state> state_;
  bulwark::metrics::counter* held_;
};

} // namespace event_log
