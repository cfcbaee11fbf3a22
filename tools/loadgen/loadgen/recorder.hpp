#pragma once
// What a run records: every request's outcome and latency, overall and over time. Plain code,
// single-threaded (the runner records from its one io_context thread); tests/unit/loadgen.
//
// Latency is recorded for every request that got an answer (any status); a request that got
// none (timeout, refused, reset, malformed answer) is counted under its error kind instead.
// The time series keeps a count, an error count and a coarse histogram per interval. It starts
// at 100 ms intervals and, when it reaches max_intervals, merges neighbours and doubles the
// interval, so its memory is bounded whatever the run's length (about 12 MB at most).

#include <loadgen/command_line.hpp>
#include <loadgen/histogram.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

namespace loadgen {

/// How a request ended.
enum class outcome : std::uint8_t {
  status_1xx, ///< an interim status as the final answer (never from a valid server)
  status_2xx,
  status_3xx,
  status_4xx,
  status_5xx,
  timeout,  ///< --request-timeout or --connect-timeout passed
  refused,  ///< the connection was not accepted (refused, unreachable, DNS)
  reset,    ///< the connection closed or was reset before the answer was complete
  protocol, ///< the answer was not valid HTTP/1.1, or too large
};
inline constexpr std::size_t outcome_count = 9;

/// The name used in the summary and the JSON ("2xx", "timeout", ...).
constexpr std::string_view name_of(outcome o) noexcept {
  constexpr std::array<std::string_view, outcome_count> names{"1xx",     "2xx",     "3xx",   "4xx",     "5xx",
                                                              "timeout", "refused", "reset", "protocol"};
  return names[static_cast<std::size_t>(o)];
}
/// 4xx, 5xx and every transport failure count as errors; 2xx and 3xx do not.
constexpr bool is_error(outcome o) noexcept { return o != outcome::status_2xx && o != outcome::status_3xx; }
constexpr outcome outcome_of_status(int status) noexcept {
  if (status < 200) return outcome::status_1xx;
  if (status < 300) return outcome::status_2xx;
  if (status < 400) return outcome::status_3xx;
  if (status < 500) return outcome::status_4xx;
  return outcome::status_5xx;
}

class recorder {
public:
  static constexpr std::size_t max_intervals = 1200;
  static constexpr int interval_precision_bits = 6; // 3 %: enough for a p99 line on a chart

  struct interval {
    std::uint64_t requests = 0;
    std::uint64_t errors = 0;
    histogram latency{interval_precision_bits};
  };

  /// Records a request that ended `at` after the start, `latency` after it was due.
  void record(nanoseconds at, nanoseconds latency, outcome o) {
    ++by_outcome_[static_cast<std::size_t>(o)];
    const bool answered = o <= outcome::status_5xx;
    const bool failed = is_error(o);
    if (failed) ++errors_;
    const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, latency.count()));
    if (answered) latency_.record(ns);
    interval& slot = interval_at(at);
    ++slot.requests;
    if (failed) ++slot.errors;
    if (answered) slot.latency.record(ns);
  }
  /// Adds an event mark (bounded: at most max_events are kept).
  void mark(nanoseconds at, std::string label) {
    if (events_.size() >= max_events) return;
    if (label.size() > max_event_label) label.resize(max_event_label);
    events_.push_back({at, std::move(label)});
  }
  /// Requests that were in flight when the run was cut short (--timeout, a signal).
  void set_unfinished(std::uint64_t n) noexcept { unfinished_ = n; }
  /// The run's wall time, from the first request's start to the last one's end.
  void set_elapsed(nanoseconds d) noexcept { elapsed_ = d; }

  std::uint64_t completed() const noexcept {
    std::uint64_t n = 0;
    for (auto c : by_outcome_) n += c;
    return n;
  }
  std::uint64_t errors() const noexcept { return errors_; }
  std::uint64_t count(outcome o) const noexcept { return by_outcome_[static_cast<std::size_t>(o)]; }
  std::uint64_t unfinished() const noexcept { return unfinished_; }
  nanoseconds elapsed() const noexcept { return elapsed_; }
  const histogram& latency() const noexcept { return latency_; }
  const std::vector<interval>& intervals() const noexcept { return intervals_; }
  nanoseconds interval_length() const noexcept { return interval_length_; }
  const std::vector<event_mark>& events() const noexcept { return events_; }

private:
  interval& interval_at(nanoseconds at) {
    if (at.count() < 0) at = nanoseconds(0);
    auto index = static_cast<std::size_t>(at / interval_length_);
    while (index >= max_intervals) {
      coarsen();
      index = static_cast<std::size_t>(at / interval_length_);
    }
    if (index >= intervals_.size()) intervals_.resize(index + 1);
    return intervals_[index];
  }
  // Halves the resolution: intervals 2k and 2k+1 become k.
  void coarsen() {
    std::vector<interval> merged((intervals_.size() + 1) / 2);
    for (std::size_t i = 0; i < intervals_.size(); ++i) {
      interval& to = merged[i / 2];
      to.requests += intervals_[i].requests;
      to.errors += intervals_[i].errors;
      to.latency.add(intervals_[i].latency);
    }
    intervals_ = std::move(merged);
    interval_length_ *= 2;
  }

  std::array<std::uint64_t, outcome_count> by_outcome_{};
  std::uint64_t errors_ = 0;
  std::uint64_t unfinished_ = 0;
  nanoseconds elapsed_{0};
  histogram latency_{11};
  std::vector<interval> intervals_;
  nanoseconds interval_length_ = std::chrono::milliseconds(100);
  std::vector<event_mark> events_;
};

} // namespace loadgen
