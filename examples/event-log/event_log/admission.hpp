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
  /// When above 0, also a bound in time: the commands that go through in `max_lag` at the
  /// rate they went through lately (pipeline_count::handled's growth between measurements,
  /// smoothed), at least `min_in_flight`, at most max_in_flight (Little's law: the backlog over
  /// the rate is the time in the pipeline). So the backlog, and with it the visibility lag,
  /// stays near `max_lag` whether the stages handle 1,000 or 10,000 commands a second (a count
  /// alone lets the lag grow as the stages slow down: a busy machine halves their rate), and a
  /// stage that stops (no progress) closes the door at `min_in_flight`. The time a message
  /// stays in the count includes the stages' commit intervals and the count's own age: a
  /// max_lag not well above those throttles the pipeline down to `min_in_flight`.
  std::chrono::milliseconds max_lag{0};
  std::size_t min_in_flight = 256;
  /// How long a request is held before it is refused.
  std::chrono::milliseconds timeout{5000};
  /// How old the count may be before an admission measures again (memory mode: 1 ms, a few
  /// locks; real mode: 100 ms, a dozen Kafka requests).
  std::chrono::milliseconds refresh{1};
};

/// What a measurement finds: the messages the stages have not handled yet (summed over the
/// stages: a command waiting for the validator counts once, its event twice, once for the
/// persister and once for the materializer), and the messages the pipeline's first stage (the
/// validator) handled in all (any origin: only its growth is used). That growth is the rate at
/// which commands go through, the rate Little's law divides the backlog by: the first stage
/// alone, because a sum over the stages counts every command once per stage, and a bound
/// derived from it let the backlog grow to three times max_lag.
struct pipeline_count {
  std::int64_t behind = 0;
  std::int64_t handled = 0;
};

class admission {
public:
  /// Counts the pipeline, or fails (the last figures stay in use; the next admission after
  /// `refresh` tries again). It may run after the admission is gone: it must own what it uses.
  using measure_fn = std::function<bulwark::task<pipeline_count>()>;

  admission(admission_options o, measure_fn measure, bulwark::metrics::registry& metrics)
      : opts_(o), state_(std::make_shared<state>(o)) {
    state_->measure = std::move(measure);
    state_->behind_gauge = &metrics
                                .gauge_family("eventlog_admission_behind_messages",
                                              "Messages the pipeline's stages had not handled yet, as the command "
                                              "API's admission bound last counted them",
                                              {})
                                .labels({});
    state_->bound_gauge =
        &metrics
             .gauge_family("eventlog_admission_bound_messages",
                           "The command API's admission bound now (max_in_flight, or what the stages handle in "
                           "max_lag; 0: none)",
                           {})
             .labels({});
    state_->rate_gauge = &metrics
                              .gauge_family("eventlog_admission_handled_messages_per_second",
                                            "The stages' rate as the admission bound last estimated it", {})
                              .labels({});
    state_->bound_gauge->set(static_cast<double>(opts_.max_in_flight));
    held_ = &metrics
                 .counter_family("eventlog_admission_held_total",
                                 "Commands the admission bound held back before accepting or refusing them", {})
                 .labels({});
  }

  /// Waits while the pipeline is more than the bound behind; errc::unavailable ("the pipeline
  /// is N messages behind (bound M)") once that lasted `timeout`. The count is the last
  /// measurement plus the commands admitted since it began (so that requests released together
  /// by one measurement do not all pass), measured again when older than `refresh`.
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
      const auto bound = s.bound.load(std::memory_order_relaxed);
      if (n <= bound) {
        s.admitted.fetch_add(1, std::memory_order_relaxed);
        co_return bulwark::ok();
      }
      if (!timer) {
        held_->inc();
        timer.emplace(co_await asio::this_coro::executor);
      }
      if (clock::now() >= give_up)
        co_return bulwark::error(bulwark::errc::unavailable, "the pipeline is " + std::to_string(n) +
                                                                 " messages behind (bound " + std::to_string(bound) +
                                                                 ")");
      // Again when a new count may be there: every refresh (at least 1 ms). Polling at a finer
      // grain woke each of hundreds of held requests a hundred times a second in real mode,
      // which doubled the command API's CPU per command and took it from the stages.
      // (Never past the give-up time.)
      timer->expires_at(std::min(clock::now() + std::max(opts_.refresh, std::chrono::milliseconds(1)), give_up));
      co_await timer->async_wait(asio::use_awaitable);
    }
  }

  /// The last count (for tests and logs).
  std::int64_t behind() const { return state_->behind.load(std::memory_order_relaxed); }
  /// The bound now.
  std::int64_t bound() const { return state_->bound.load(std::memory_order_relaxed); }

private:
  struct state {
    explicit state(const admission_options& o) : opts(o), bound(static_cast<std::int64_t>(o.max_in_flight)) {}
    const admission_options opts;
    measure_fn measure;
    bulwark::metrics::gauge *behind_gauge = nullptr, *bound_gauge = nullptr, *rate_gauge = nullptr;
    std::atomic<bool> measuring{false};
    std::atomic<std::int64_t> measured_at{0}; ///< steady_clock nanoseconds (0: never)
    std::atomic<std::int64_t> behind{0};      ///< the last count
    std::atomic<std::int64_t> bound;          ///< max_in_flight, or the bound in time
    /// Commands admitted in all, and how many of them the last count had seen (those admitted
    /// before it began).
    std::atomic<std::int64_t> admitted{0}, counted_from{0};
    // The measuring coroutine's only (one at a time): the last handled count, when, the rate.
    std::int64_t last_handled = -1, last_at = 0;
    double rate = -1; ///< messages per second, smoothed; -1: not known yet
  };

  void measure_if_stale(const asio::any_io_executor& ex) {
    // Never measured (0) is stale whatever the refresh: the steady clock's epoch is the boot, so
    // "now - 0" is only the machine's uptime.
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    const auto at = state_->measured_at.load(std::memory_order_relaxed);
    if (at != 0 && now - at < std::chrono::nanoseconds(opts_.refresh).count()) return;
    if (state_->measuring.exchange(true, std::memory_order_acquire)) return;
    asio::co_spawn(ex, measure(state_), asio::detached);
  }

  static asio::awaitable<void> measure(std::shared_ptr<state> s) {
    const auto admitted_before = s->admitted.load(std::memory_order_relaxed);
    auto counted = co_await s->measure();
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    if (counted) {
      const auto [behind, handled] = counted.value();
      s->behind.store(behind, std::memory_order_relaxed);
      s->counted_from.store(admitted_before, std::memory_order_relaxed);
      s->behind_gauge->set(static_cast<double>(behind));
      if (s->opts.max_lag.count() > 0) update_bound(*s, handled, now);
    }
    s->measured_at.store(now, std::memory_order_relaxed);
    s->measuring.store(false, std::memory_order_release);
  }

  // The rate: the handled count's growth per second between measurements at least 50 ms
  // apart, smoothed over about a second of them (the groups commit every 100 ms or so, so one
  // interval alone jumps); the bound: that rate times max_lag, within [min_in_flight,
  // max_in_flight]. Before a rate is known, max_in_flight.
  static void update_bound(state& s, std::int64_t handled, std::int64_t now) {
    const double seconds = static_cast<double>(now - s.last_at) / 1e9;
    if (s.last_handled < 0) {
      s.last_handled = handled;
      s.last_at = now;
      return;
    }
    if (seconds < 0.05) return;
    const double sample = static_cast<double>(std::max<std::int64_t>(0, handled - s.last_handled)) / seconds;
    const double weight = std::min(1.0, seconds); // about a second of samples
    s.rate = s.rate < 0 ? sample : s.rate + weight * (sample - s.rate);
    s.last_handled = handled;
    s.last_at = now;
    const auto cap = static_cast<double>(s.opts.max_in_flight);
    const auto floor = std::min(cap, static_cast<double>(s.opts.min_in_flight));
    const auto bound = std::clamp(s.rate * std::chrono::duration<double>(s.opts.max_lag).count(), floor, cap);
    s.bound.store(static_cast<std::int64_t>(bound), std::memory_order_relaxed);
    s.bound_gauge->set(bound);
    s.rate_gauge->set(s.rate);
  }

  const admission_options opts_;
  std::shared_ptr<state> state_;
  bulwark::metrics::counter* held_;
};

} // namespace event_log
