#pragma once
// circuit_breaker: stops calling a dependency that keeps failing, and finds out by itself when
// it is back.
//
//   closed     every call runs; its outcome goes into a sliding window (the last N calls, or the
//              last N seconds in one-second buckets). Once the window holds at least
//              minimum_calls outcomes and the failure rate or the slow-call rate reaches its
//              threshold, the breaker opens.
//   open       every call is refused at once (errc::circuit_open, "circuit breaker 'name' is
//              open") for open_duration.
//   half_open  after open_duration, at most half_open_probes calls run as probes, each bounded by
//              probe_timeout on the breaker's clock; further calls are refused. All probes
//              succeed (in time, not slow) -> closed; any probe fails, is slow or times out ->
//              open again, for another open_duration.
//
// Why every probe carries its own timeout: resilience4j's breaker lets a permitted half-open
// call run unbounded, so a probe that never returns keeps the breaker half-open, refusing every
// other call, for ever (its users hit exactly that). Here a probe ends by probe_timeout at the
// latest (with_timeout resumes the breaker even when the operation ignores cancellation), and a
// probe permit taken through the low-level API and never reported is written off as failed once
// probe_timeout has passed since the last probe started.
//
// What counts: options::record_failure decides which errors are failures (default:
// errc::unavailable and errc::timeout, the dependency's own trouble); any other error
// (not_found, conflict, invalid_argument, ...) is the dependency answering, counted as a
// success. errc::cancelled (the caller gave up) is not recorded at all. A call that took at
// least slow_call_duration is also slow. An exception thrown by the operation counts as a
// failure and is rethrown.
//
// Outcomes are matched to the state they were admitted in: a call admitted while closed that
// ends after the breaker opened changes nothing, and only the probes of the current half-open
// period count towards closing it.
//
// Time: the breaker reads its clock coarsely (clock::now_coarse(): the last kernel tick, 1-4 ms
// resolution on the real clock, exact on a manual one), so slow_call_duration, open_duration and
// probe_timeout are measured to within a tick; its decisions are at millisecond-to-second scale.
//
// Cost on the closed path: two coarse clock reads (a few ns each), no lock for the admission (an
// atomic load) and, with a count window holding no failure and no slow call, none for a success
// either (a compare-and-swap adds it to a count the window takes in at its next locked update: such
// a success cannot open the breaker, and min(count, window_size) successes placed then leave the
// window as the calls one by one would have); a failure, a slow call or a window holding one takes
// a mutex and updates the preallocated window. Relaxed atomic adds for the metrics. No allocation
// per call beyond call()'s coroutine frame (Asio's recycling allocator). callgrind, release build:
// try_acquire plus record_success went from ~330 instructions (two locks) to ~60.
//
// Thread-safe: one breaker may be shared by any number of coroutines on any threads. The
// open -> half_open transition happens at the first admission after open_duration; current() and
// permits() already report half_open then. The state-change callback runs on the thread whose
// call caused the transition, after the breaker's lock is released (so it may call current());
// two transitions racing on two threads may reach it in either order.

#include <bulwark/clock.hpp>
#include <bulwark/error.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/resilience/timeout.hpp>
#include <bulwark/result.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bulwark {

class circuit_breaker {
public:
  enum class state : std::uint8_t { closed = 0, open = 1, half_open = 2 };
  enum class window_kind : std::uint8_t { count, time };

  struct options {
    /// Names the breaker in refusals and in the metrics' `name` label.
    std::string name = "breaker";
    /// count: the last window_size calls; time: the calls of the last window_duration, in
    /// one-second buckets.
    window_kind window = window_kind::count;
    std::size_t window_size = 100;
    std::chrono::seconds window_duration{60};
    /// Outcomes the window must hold before a rate can open the breaker (at most window_size
    /// for a count window).
    std::size_t minimum_calls = 20;
    /// Open when failures / calls >= this (a fraction, 0 < x <= 1).
    double failure_rate_threshold = 0.5;
    /// Open when slow calls / calls >= this (a fraction; 1 opens only when every call is slow).
    double slow_call_rate_threshold = 1.0;
    /// A call that takes at least this long is slow.
    bulwark::clock::duration slow_call_duration = std::chrono::seconds(60);
    /// How long the breaker stays open before it lets probes through.
    bulwark::clock::duration open_duration = std::chrono::seconds(30);
    /// Probes admitted per half-open period; all must succeed to close.
    unsigned half_open_probes = 5;
    /// The bound of each probe (a probe that times out failed).
    bulwark::clock::duration probe_timeout = std::chrono::seconds(5);
    /// Which errors are the dependency's failures; empty: errc::unavailable and errc::timeout.
    std::function<bool(const error&)> record_failure{};
    /// The time of windows, open_duration, slow calls and probe timeouts.
    bulwark::clock clock{};
    /// With a registry: bulwark_circuit_breaker_{state, transitions_total, refused_total,
    /// calls_total} labelled by name (see the class comment of metrics_set).
    std::shared_ptr<metrics::registry> metrics{};
    /// Called after each transition, with the state left and the state entered.
    std::function<void(state from, state to)> on_state_change{};
  };

  /// What admission hands out: the low-level API's receipt, returned with the outcome.
  struct permit {
    std::uint64_t epoch = 0;     // which closed or half-open period admitted it (modulo 2^30)
    clock::time_point started{}; // for the slow-call measure
    bool probe = false;          // admitted as a half-open probe
  };

  /// Out-of-range options are clamped (a constructor never fails): a window of at least one
  /// call or second, at least one minimum call (at most window_size for a count window, which
  /// could never hold more) and one probe, thresholds within (0, 1].
  explicit circuit_breaker(options opts) : opts_(std::move(opts)) {
    opts_.window_size = std::max<std::size_t>(1, opts_.window_size);
    opts_.window_duration = std::max(std::chrono::seconds(1), opts_.window_duration);
    opts_.minimum_calls = std::max<std::size_t>(1, opts_.minimum_calls);
    if (opts_.window == window_kind::count) opts_.minimum_calls = std::min(opts_.minimum_calls, opts_.window_size);
    opts_.half_open_probes = std::max(1u, opts_.half_open_probes);
    opts_.failure_rate_threshold = std::clamp(opts_.failure_rate_threshold, 1e-9, 1.0);
    opts_.slow_call_rate_threshold = std::clamp(opts_.slow_call_rate_threshold, 1e-9, 1.0);
    if (opts_.window == window_kind::count)
      calls_.assign(opts_.window_size, 0);
    else
      buckets_.assign(static_cast<std::size_t>(opts_.window_duration.count()), bucket{});
    if (opts_.metrics) metrics_.emplace(*opts_.metrics, opts_.name);
    fast_limit_ = std::min<std::uint64_t>(opts_.window_size, count_mask);
    publish_locked(); // nobody else sees this breaker yet
  }

  circuit_breaker(const circuit_breaker&) = delete;
  circuit_breaker& operator=(const circuit_breaker&) = delete;

  /// Runs `op` if the breaker admits it (as a probe bounded by probe_timeout when half-open) and
  /// records its outcome. Errors: errc::circuit_open ("circuit breaker 'name' is open", or "...
  /// is half-open and its probes are in flight") when refused, without starting `op`; a probe's
  /// errc::timeout; otherwise whatever `op` returns. Cost: see the file comment.
  template <class T> task<T> call(task<T> op) {
    const auto admitted = try_acquire();
    if (!admitted) co_return refusal();
    const permit p = *admitted;
    std::optional<result<T>> outcome;
    try {
      if (p.probe) {
        auto bounded = with_timeout(std::move(op), opts_.probe_timeout, opts_.clock, "circuit breaker probe");
        outcome.emplace(co_await std::move(bounded));
      } else {
        outcome.emplace(co_await std::move(op));
      }
    } catch (...) {
      record(p, true, false);
      throw;
    }
    if (outcome->has_value())
      record_success(p);
    else
      record_error(p, outcome->error());
    co_return std::move(*outcome);
  }

  /// The state now (half_open once open_duration has passed, even before a call arrives).
  state current() const {
    std::lock_guard lock(mutex_);
    return effective_state(opts_.clock.now_coarse());
  }

  /// Whether a call made now would run (closed; open past open_duration; half-open with a probe
  /// left).
  bool permits() const {
    std::lock_guard lock(mutex_);
    const auto now = opts_.clock.now_coarse();
    switch (effective_state(now)) {
    case state::closed: return true;
    case state::open: return false;
    case state::half_open: return state_ == state::open || probes_started_ < opts_.half_open_probes;
    }
    return false;
  }

  const options& settings() const noexcept { return opts_; }

  /// The error call() refuses with now (errc::circuit_open, open or half-open with its probes in
  /// flight), for callers that skip a call when permits() is false. Cost: one lock, one string.
  error refusal() const {
    if (current() == state::half_open)
      return error(errc::circuit_open,
                   "circuit breaker '" + opts_.name + "' is half-open and its probes are in flight");
    return error(errc::circuit_open, "circuit breaker '" + opts_.name + "' is open");
  }

  // The low-level API, for callers that cannot hand the breaker a task (a callback-based client,
  // a call whose outcome is learnt elsewhere). Every permit must be reported exactly once by
  // record_success, record_error or record_ignored; a half-open probe permit that is not
  // reported within probe_timeout is written off as failed.

  /// Admits a call while the breaker is closed: a permit as try_acquire() gives it; nullopt in
  /// any other state, counting nothing and changing nothing (ask try_acquire() then). Never takes
  /// the lock nor runs the state-change callback, so a caller may hold its own lock around it.
  /// Cost: an atomic load and a coarse clock read.
  std::optional<permit> try_acquire_closed() const noexcept {
    // Closed: admitted without the lock (closed -> open happens only when an outcome is recorded).
    if (const auto word = fast_.load(std::memory_order_acquire); word & closed_bit)
      return permit{(word >> epoch_shift) & epoch_mask, opts_.clock.now_coarse(), false};
    return std::nullopt;
  }

  /// Admits a call: a permit, or nullopt when refused (counted as refused). Cost: closed, an atomic
  /// load and a coarse clock read; otherwise one lock.
  std::optional<permit> try_acquire() {
    if (auto admitted = try_acquire_closed()) return admitted;
    std::optional<transition> moved;
    std::optional<permit> admitted;
    {
      std::lock_guard lock(mutex_);
      const auto now = opts_.clock.now_coarse();
      if (state_ == state::open && now >= open_until_) moved = enter(state::half_open, now);
      if (state_ == state::half_open && probes_started_ >= opts_.half_open_probes &&
          probes_finished_ < probes_started_ && now >= clock::later(last_probe_at_, opts_.probe_timeout)) {
        // A probe permit never reported: written off as failed (the stuck half-open guard).
        moved = merge(moved, enter(state::open, now));
      }
      switch (state_) {
      case state::closed: admitted = permit{epoch_ & epoch_mask, now, false}; break;
      case state::half_open:
        if (probes_started_ < opts_.half_open_probes) {
          ++probes_started_;
          last_probe_at_ = now;
          admitted = permit{epoch_ & epoch_mask, now, true};
        }
        break;
      case state::open: break;
      }
      // A transition here goes between open and half-open (the clean bit was off: nothing was
      // counted without the lock); fast_ says so now.
      if (moved) publish_locked();
    }
    if (!admitted && metrics_) metrics_->refused->inc();
    notify(moved);
    return admitted;
  }

  /// Reports that the admitted call succeeded (slow if it took slow_call_duration or more).
  void record_success(const permit& p) {
    // The usual case inline: no metrics, a fast call, a clean closed window (one clock read and
    // an atomic load; record()'s general path costs ~25 instructions more on every call).
    if (!metrics_ && opts_.clock.now_coarse() - p.started < opts_.slow_call_duration && record_success_unlocked(p))
      return;
    record(p, false, false);
  }

  /// Reports that the admitted call failed with `e`: a failure when options::record_failure
  /// says so, a success when not (the dependency answered), nothing for errc::cancelled. A
  /// probe's errc::timeout is always a failure.
  void record_error(const permit& p, const error& e) {
    if (e == errc::cancelled) return record(p, false, true);
    const bool failure = (p.probe && e == errc::timeout) || is_failure(e);
    record(p, failure, false);
  }

  /// Reports that the admitted call ended without telling anything about the dependency (its
  /// caller cancelled it): a probe permit is returned to the budget.
  void record_ignored(const permit& p) { record(p, false, true); }

  /// Reports that the admitted call threw: a failure, as call() counts an exception.
  void record_exception(const permit& p) { record(p, true, false); }

private:
  // The two transitions one admission can cause (open -> half_open -> open), for the callback.
  struct transition {
    state from1, to1;
    std::optional<std::pair<state, state>> then;
  };
  struct bucket {
    std::int64_t second = -1;
    std::uint32_t calls = 0, failures = 0, slow = 0;
  };
  static constexpr std::uint8_t failed_bit = 1, slow_bit = 2, counted_bit = 4;

  // fast_, the closed state's lock-free word (written under mutex_, except that a success adds
  // one to its count while clean_bit is set):
  //   bit 63       clean: closed, a count window holding no failure and no slow call
  //   bit 62       closed: admission needs no lock
  //   bits 32..61  the period (epoch_ modulo 2^30), the epoch of a permit taken without the lock
  //   bits 0..31   successes recorded without the lock since the window last took them in,
  //                saturating at window_size (more would only push out as many successes)
  static constexpr std::uint64_t clean_bit = std::uint64_t{1} << 63, closed_bit = std::uint64_t{1} << 62;
  static constexpr unsigned epoch_shift = 32;
  static constexpr std::uint64_t epoch_mask = (std::uint64_t{1} << 30) - 1, count_mask = 0xffff'ffffu;

  // The instruments, looked up once so that a call only does relaxed atomic adds:
  //   bulwark_circuit_breaker_state{name}                 0 closed, 1 open, 2 half_open
  //   bulwark_circuit_breaker_transitions_total{name,from,to}
  //   bulwark_circuit_breaker_refused_total{name}         calls refused without running
  //   bulwark_circuit_breaker_calls_total{name,outcome}   success|failure|slow_success|
  //                                                       slow_failure|ignored
  struct metrics_set {
    metrics_set(metrics::registry& r, const std::string& name) {
      auto& states = r.gauge_family("bulwark_circuit_breaker_state",
                                    "Circuit breaker state: 0 closed, 1 open, 2 half-open", {"name"});
      gauge = &states.labels({name});
      auto& moves = r.counter_family("bulwark_circuit_breaker_transitions_total", "Circuit breaker state transitions",
                                     {"name", "from", "to"});
      for (auto [from, to] : transitions)
        transition_counters[index(from, to)] = &moves.labels({name, state_name(from), state_name(to)});
      refused = &r.counter_family("bulwark_circuit_breaker_refused_total",
                                  "Calls a circuit breaker refused without running them", {"name"})
                     .labels({name});
      auto& calls = r.counter_family("bulwark_circuit_breaker_calls_total",
                                     "Calls a circuit breaker admitted, by outcome", {"name", "outcome"});
      for (std::size_t i = 0; i < outcomes.size(); ++i) outcome_counters[i] = &calls.labels({name, outcomes[i]});
    }
    static constexpr std::array<std::pair<state, state>, 4> transitions{{{state::closed, state::open},
                                                                         {state::open, state::half_open},
                                                                         {state::half_open, state::open},
                                                                         {state::half_open, state::closed}}};
    static constexpr std::array<std::string_view, 5> outcomes{"success", "failure", "slow_success", "slow_failure",
                                                              "ignored"};
    static std::size_t index(state from, state to) {
      return static_cast<std::size_t>(from) * 3 + static_cast<std::size_t>(to);
    }

    metrics::gauge* gauge;
    std::array<metrics::counter*, 9> transition_counters{};
    metrics::counter* refused;
    std::array<metrics::counter*, 5> outcome_counters{};
  };

public:
  /// "closed", "open" or "half_open".
  static std::string_view state_name(state s) noexcept {
    switch (s) {
    case state::closed: return "closed";
    case state::open: return "open";
    case state::half_open: return "half_open";
    }
    return "unknown";
  }

private:
  bool is_failure(const error& e) const {
    if (opts_.record_failure) return opts_.record_failure(e);
    return e == errc::unavailable || e == errc::timeout;
  }

  state effective_state(clock::time_point now) const noexcept {
    if (state_ == state::open && now >= open_until_) return state::half_open;
    return state_;
  }

  void record(const permit& p, bool failed, bool ignored) {
    const auto now = opts_.clock.now_coarse();
    const bool slow = !ignored && now - p.started >= opts_.slow_call_duration;
    if (metrics_) metrics_->outcome_counters[ignored ? 4 : (slow ? 2 : 0) + (failed ? 1 : 0)]->inc();
    if (!failed && !ignored && !slow && record_success_unlocked(p)) return;
    std::optional<transition> moved;
    {
      std::lock_guard lock(mutex_);
      take_unlocked_successes_locked(now);
      moved = record_locked(p, failed, ignored, slow, now);
      publish_locked();
    }
    notify(moved);
  }

  // A success of the current closed period while the window is clean: one more in fast_'s count.
  bool record_success_unlocked(const permit& p) {
    auto word = fast_.load(std::memory_order_relaxed);
    while ((word & clean_bit) && ((word >> epoch_shift) & epoch_mask) == p.epoch) {
      if ((word & count_mask) >= fast_limit_) return true;
      if (fast_.compare_exchange_weak(word, word + 1, std::memory_order_relaxed)) return true;
    }
    return false;
  }

  // Under mutex_: the successes counted without the lock go into the window (before the outcome
  // being recorded, which came after them), and fast_ stops taking more until publish_locked().
  void take_unlocked_successes_locked(clock::time_point now) {
    const auto word = fast_.exchange(word_locked(false), std::memory_order_acq_rel);
    if (state_ != state::closed || ((word >> epoch_shift) & epoch_mask) != (epoch_ & epoch_mask)) return;
    for (auto n = word & count_mask; n > 0; --n) add_to_window(now, false, false);
  }

  // Under mutex_.
  std::uint64_t word_locked(bool clean) const noexcept {
    return (clean ? clean_bit : 0) | (state_ == state::closed ? closed_bit : 0) |
           ((epoch_ & epoch_mask) << epoch_shift);
  }

  // Under mutex_: fast_ from the state now (its count is empty: taken in, or a new period).
  void publish_locked() {
    const bool clean =
        state_ == state::closed && opts_.window == window_kind::count && window_failures_ == 0 && window_slow_ == 0;
    fast_.store(word_locked(clean), std::memory_order_release);
  }

  // Under mutex_.
  std::optional<transition> record_locked(const permit& p, bool failed, bool ignored, bool slow,
                                          clock::time_point now) {
    // Admitted in a period that has ended: tells nothing now.
    if (p.epoch != (epoch_ & epoch_mask)) return std::nullopt;
    if (state_ == state::closed) {
      if (ignored) return std::nullopt;
      add_to_window(now, failed, slow);
      if (rate_reached()) return enter(state::open, now);
    } else if (state_ == state::half_open && p.probe) {
      if (ignored) {
        --probes_started_;
      } else if (failed || slow) {
        return enter(state::open, now);
      } else if (++probes_finished_ >= opts_.half_open_probes) {
        return enter(state::closed, now);
      }
    }
    return std::nullopt;
  }

  // Under mutex_.
  void add_to_window(clock::time_point now, bool failed, bool slow) {
    if (opts_.window == window_kind::count) {
      auto& slot = calls_[next_call_];
      next_call_ = (next_call_ + 1) % calls_.size();
      if (slot & counted_bit) {
        --window_calls_;
        window_failures_ -= (slot & failed_bit) ? 1 : 0;
        window_slow_ -= (slot & slow_bit) ? 1 : 0;
      }
      slot = static_cast<std::uint8_t>(counted_bit | (failed ? failed_bit : 0) | (slow ? slow_bit : 0));
    } else {
      auto& b = bucket_at(now);
      ++b.calls;
      b.failures += failed ? 1 : 0;
      b.slow += slow ? 1 : 0;
    }
    ++window_calls_;
    window_failures_ += failed ? 1 : 0;
    window_slow_ += slow ? 1 : 0;
  }

  // The bucket of `now`'s second, after evicting the seconds that slid out of the window (each
  // bucket is evicted once: amortised O(1) per call).
  bucket& bucket_at(clock::time_point now) {
    const auto second = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    const auto n = static_cast<std::int64_t>(buckets_.size());
    if (second > newest_second_) {
      const auto from = std::max(newest_second_ + 1, second - n + 1);
      for (auto s = from; s <= second; ++s) evict(buckets_[static_cast<std::size_t>(((s % n) + n) % n)]);
      newest_second_ = second;
    }
    // A clock read before a later one was recorded lands in the newest bucket.
    const auto at = std::max(second, newest_second_ - n + 1);
    auto& b = buckets_[static_cast<std::size_t>(((at % n) + n) % n)];
    b.second = at;
    return b;
  }

  void evict(bucket& b) {
    window_calls_ -= b.calls;
    window_failures_ -= b.failures;
    window_slow_ -= b.slow;
    b = bucket{};
  }

  bool rate_reached() const {
    if (window_calls_ < opts_.minimum_calls || window_calls_ == 0) return false;
    const auto calls = static_cast<double>(window_calls_);
    return static_cast<double>(window_failures_) / calls >= opts_.failure_rate_threshold ||
           static_cast<double>(window_slow_) / calls >= opts_.slow_call_rate_threshold;
  }

  // Under mutex_: moves to `to`, starting a new period (outcomes admitted before are dropped).
  transition enter(state to, clock::time_point now) {
    const auto from = state_;
    state_ = to;
    ++epoch_;
    probes_started_ = probes_finished_ = 0;
    window_calls_ = window_failures_ = window_slow_ = 0;
    std::fill(calls_.begin(), calls_.end(), std::uint8_t{0});
    std::fill(buckets_.begin(), buckets_.end(), bucket{});
    next_call_ = 0;
    newest_second_ = -1;
    if (to == state::open) open_until_ = clock::later(now, opts_.open_duration);
    if (metrics_) metrics_->gauge->set(static_cast<double>(to));
    return transition{from, to, std::nullopt};
  }

  static std::optional<transition> merge(std::optional<transition> first, transition second) {
    if (!first) return second;
    first->then = std::pair{second.from1, second.to1};
    return first;
  }

  // Outside mutex_.
  void notify(const std::optional<transition>& moved) {
    if (!moved) return;
    announce(moved->from1, moved->to1);
    if (moved->then) announce(moved->then->first, moved->then->second);
  }

  void announce(state from, state to) {
    if (metrics_) {
      if (auto* c = metrics_->transition_counters[metrics_set::index(from, to)]) c->inc();
    }
    if (opts_.on_state_change) opts_.on_state_change(from, to);
  }

  options opts_;
  std::optional<metrics_set> metrics_;

  mutable std::mutex mutex_;
  state state_ = state::closed;
  std::uint64_t epoch_ = 0;
  clock::time_point open_until_{};
  // half-open
  unsigned probes_started_ = 0, probes_finished_ = 0;
  clock::time_point last_probe_at_{};
  // the window: per-call flags (count) or per-second buckets (time), with running totals
  std::vector<std::uint8_t> calls_;
  std::size_t next_call_ = 0;
  std::vector<bucket> buckets_;
  std::int64_t newest_second_ = -1;
  std::size_t window_calls_ = 0, window_failures_ = 0, window_slow_ = 0;
  std::atomic<std::uint64_t> fast_{0};
  std::uint64_t fast_limit_ = 0; // min(window_size, count_mask)
};

} // namespace bulwark
