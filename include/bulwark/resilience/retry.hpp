#pragma once
// retry: runs an operation again after the failures its retry_policy retries, waiting the
// policy's backoff between attempts on an injected clock, and never past the caller's deadline.
//
// The rules, attempt n = 1, 2, ...:
//  1. Run make() (bounded by the deadline when there is one: an attempt that would outlive it is
//     abandoned at the deadline with errc::timeout, as with_deadline does). Success: done.
//  2. A failure ends the retry when the policy does not retry it (policy.retries(e, n): attempts
//     left, and retry_if or the default "not permanent"), when it is errc::cancelled (the
//     caller or the operation gave up), or, for a non-idempotent operation, when it is not one
//     of the errors that prove the operation did not run (below). The caller gets that error.
//  3. Otherwise wait policy.delay(n) on the clock. A wait that would end at or past the deadline
//     is not started: the caller gets the last error at once, not after a useless sleep. A
//     cancelled wait ends the retry with errc::cancelled.
//
// Idempotency: an operation is never assumed idempotent. By default (idempotent = false: a
// write without a request id, a payment) it is retried only on errc::unavailable,
// errc::rejected and errc::circuit_open: the errors with which a dependency refuses work before
// doing it (a connection refused, a full bulkhead or queue, an open circuit breaker). With
// idempotent = true (a read, a write keyed by a request id) every error the policy retries is
// retried, errc::timeout included. A timeout means the outcome is unknown, so it is never retried then. This trusts
// the operation to report unavailable only for work that did not take effect; an operation that
// cannot promise that must not be retried at all (max_attempts = 1).
//
// Cost: nothing beyond make() per attempt when the first succeeds and there is no deadline;
// with a deadline each attempt goes through with_deadline (see timeout.hpp).

#include <bulwark/clock.hpp>
#include <bulwark/error.hpp>
#include <bulwark/resilience/timeout.hpp>
#include <bulwark/result.hpp>
#include <bulwark/retry_policy.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <utility>

namespace bulwark {

struct retry_options {
  /// The time of the waits between attempts (the deadline's own clock tells when it passed;
  /// give both the same clock).
  bulwark::clock clock{};
  /// No attempt runs, and no wait ends, past this; none: only the policy's attempts bound it.
  std::optional<bulwark::deadline> deadline{};
  /// Whether the operation may run twice. false (the default: a retry is never assumed safe):
  /// retried only on errors that prove it did not run, errc::unavailable / errc::rejected /
  /// errc::circuit_open (see the file comment); true: on every error the policy retries.
  bool idempotent = false;
  /// The jitter source (64 random bits per call); empty: a per-thread generator seeded from
  /// std::random_device.
  std::function<std::uint64_t()> rng{};
  /// Called before each wait with the failed attempt's number and error, and the delay.
  std::function<void(unsigned attempt, const error& e, std::chrono::milliseconds delay)> on_retry{};
};

namespace detail {

/// A UniformRandomBitGenerator over retry_options::rng (or the thread's own generator).
struct retry_rng {
  using result_type = std::uint64_t;
  static constexpr result_type min() noexcept { return 0; }
  static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }
  const std::function<std::uint64_t()>* source;
  result_type operator()() {
    if (source && *source) return (*source)();
    thread_local std::mt19937_64 fallback{std::random_device{}()};
    return fallback();
  }
};

/// Whether `e` proves that a refused operation did not run (the non-idempotent retry rule).
inline bool proves_not_run(const error& e) noexcept {
  return e == errc::unavailable || e == errc::rejected || e == errc::circuit_open;
}

} // namespace detail

/// The result of make()'s first successful attempt, or the error that ended the retry (the
/// rules above): the last attempt's error, errc::timeout when the deadline cut an attempt (or
/// had passed before the first), errc::cancelled when the caller was cancelled during a wait.
/// make() is called once per attempt and must start the operation afresh each time. The policy
/// and options are taken by value: the task may run after the caller's copies are gone.
template <class T> task<T> retry(std::function<task<T>()> make, retry_policy policy, retry_options options = {}) {
  detail::retry_rng rng{&options.rng};
  for (unsigned attempt = 1;; ++attempt) {
    std::optional<result<T>> outcome;
    if (options.deadline) {
      auto bounded = with_deadline(make(), *options.deadline, "attempt " + std::to_string(attempt));
      outcome.emplace(co_await std::move(bounded));
    } else {
      outcome.emplace(co_await make());
    }
    if (outcome->has_value()) co_return std::move(*outcome);
    const error failed = outcome->error();
    if (failed == errc::cancelled || !policy.retries(failed, attempt)) co_return failed;
    if (!options.idempotent && !detail::proves_not_run(failed)) co_return failed;
    const auto delay = policy.delay(attempt, rng);
    // Not a sleep that the deadline would cut: the caller learns now what it would learn then.
    if (options.deadline && options.deadline->source.now() + delay >= options.deadline->at) co_return failed;
    if (options.on_retry) options.on_retry(attempt, failed, delay);
    const bool waited = co_await options.clock.wait_for(delay);
    if (!waited)
      co_return error(errc::cancelled, "retry cancelled while waiting before attempt " + std::to_string(attempt + 1));
  }
}

} // namespace bulwark
