#pragma once
// coarse_system_clock: the wall clock read through CLOCK_REALTIME_COARSE, about five times
// cheaper than system_clock::now() here (6 ns vs 30 ns) at a resolution of one kernel tick
// (1-4 ms). Good enough for cache TTLs; the memory cache uses it by default.

#include <chrono>
#include <ctime>

namespace bulwark {

struct coarse_system_clock {
  using duration = std::chrono::system_clock::duration;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::system_clock::time_point;
  static constexpr bool is_steady = false;

  static time_point now() noexcept {
#if defined(CLOCK_REALTIME_COARSE)
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return time_point(
        std::chrono::duration_cast<duration>(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
#else
    return std::chrono::system_clock::now();
#endif
  }
};

/// coarse_steady_clock: the steady clock (CLOCK_MONOTONIC, std::chrono::steady_clock's own on
/// Linux) read through CLOCK_MONOTONIC_COARSE: the time of the last kernel tick, so never ahead
/// of steady_clock::now() and at most a tick (1-4 ms) behind, at a fraction of its cost. For
/// checks that may be a tick late but never early ("has this deadline passed?").
struct coarse_steady_clock {
  using duration = std::chrono::steady_clock::duration;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::steady_clock::time_point;
  static constexpr bool is_steady = true;
  static time_point now() noexcept {
#if defined(CLOCK_MONOTONIC_COARSE)
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return time_point(
        std::chrono::duration_cast<duration>(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
#else
    return std::chrono::steady_clock::now();
#endif
  }
};

} // namespace bulwark
