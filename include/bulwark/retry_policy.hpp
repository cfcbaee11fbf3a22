#pragma once
// retry_policy: how often and how far apart a failed operation is tried again, and which
// failures are worth it. A core vocabulary type (concept headers use it): the event bus's
// redeliveries use it today, the retry helper, breaker probes and saga steps next.
//
// Randomness is injected (the caller's generator) so that tests are exact; the policy holds no
// state and is cheap to copy when retry_if is empty.

#include <bulwark/error.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>

namespace bulwark {

/// Exponential backoff with full jitter. delay(n) for the n-th retry (n >= 1) is uniform in
/// [0, min(max, initial * multiplier^(n-1))] when jitter is on, exactly that bound when it is off.
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

/// Failures a retry cannot cure: the input itself is wrong (errc::invalid_argument,
/// errc::too_large), or the rules refused it (errc::declined: asked again unchanged, the answer
/// is the same). The default of retry_policy::retry_if; every other error is retried,
/// errc::timeout included (its outcome is unknown, so only idempotent operations are retried).
inline bool is_permanent(const error& e) noexcept {
  return e == errc::invalid_argument || e == errc::too_large || e == errc::declined;
}

struct retry_policy {
  /// Delay before attempt n + 1 after n failed ones: delays.delay(n).
  backoff delays{};
  /// Attempts in all, the first included (0 counts as 1: no retry).
  unsigned max_attempts = 5;
  /// Whether an error is worth another attempt; empty: every error but the permanent ones
  /// (is_permanent).
  std::function<bool(const error&)> retry_if{};

  /// Attempts in all, at least 1.
  unsigned attempts() const noexcept { return std::max(1u, max_attempts); }

  /// Whether attempt `attempt` (1-based) failing with `e` is followed by another one.
  bool retries(const error& e, unsigned attempt) const {
    if (attempt >= attempts()) return false;
    return retry_if ? retry_if(e) : !is_permanent(e);
  }

  /// The delay before the next attempt after `attempt` (1-based) failed ones.
  template <class Rng> std::chrono::milliseconds delay(unsigned attempt, Rng& rng) const {
    return delays.delay(attempt, rng);
  }
};

} // namespace bulwark
