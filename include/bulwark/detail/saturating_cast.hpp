#pragma once
// A duration converted to a finer unit, saturated instead of overflowing: an option given as
// milliseconds::max() ("no bound") is 9.2e18 ms, which in the clocks' nanoseconds wraps into the
// past, so a deadline or an expiry built from it would lie behind now. Pair it with
// bulwark::clock::later() (which saturates the addition) for `now + option`.

#include <chrono>
#include <ratio>

namespace bulwark::detail {

/// `d` in To's unit, saturated at To::max() and To::min(). A conversion to a coarser or equal unit
/// cannot overflow and is duration_cast's.
template <class To, class Rep, class Period>
constexpr To saturating_cast(std::chrono::duration<Rep, Period> d) noexcept {
  using from = std::chrono::duration<Rep, Period>;
  if constexpr (std::ratio_greater<Period, typename To::period>::value) {
    if (d >= std::chrono::duration_cast<from>(To::max())) return To::max();
    if (d <= std::chrono::duration_cast<from>(To::min())) return To::min();
  }
  return std::chrono::duration_cast<To>(d);
}

} // namespace bulwark::detail
