#pragma once
// Exponential backoff with full jitter, randomness injected so that tests are exact.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace bulwark {

/// delay(n) for the n-th retry (n >= 1) is uniform in [0, min(max, initial * multiplier^(n-1))]
/// when jitter is on ("full jitter"), exactly that bound when it is off.
struct backoff {
  std::chrono::milliseconds initial{10};
  std::chrono::milliseconds max{1000};
  double multiplier = 2.0;
  bool jitter = true;

  /// The upper bound of the n-th delay.
  std::chrono::milliseconds ceiling(unsigned n) const noexcept {
    double d = static_cast<double>(initial.count());
    for (unsigned i = 1; i < n && d < static_cast<double>(max.count()); ++i) d *= multiplier;
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::min(d, static_cast<double>(max.count()))));
  }

  /// The n-th delay, drawing jitter from rng (any UniformRandomBitGenerator).
  template <class Rng> std::chrono::milliseconds delay(unsigned n, Rng& rng) const {
    const auto bound = ceiling(n);
    if (!jitter || bound.count() <= 0) return bound;
    std::uniform_int_distribution<std::int64_t> pick(0, bound.count());
    return std::chrono::milliseconds(pick(rng));
  }
};

} // namespace bulwark
