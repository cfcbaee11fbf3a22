#pragma once
// detail::deliver: the event-bus delivery rules, implemented once for every model of
// bulwark::event_bus. A model supplies only what differs between buses: how to park a message
// on the dead-letter topic, how to wait between two tries (on its clock, interruptibly), and
// whether a stop or a revoke interrupted the delivery.
//
// The rules, for one message:
//  1. Run the handler (attempt 1, 2, ...). Success: commit. An error, a std::exception or any
//     other exception is a failure.
//  2. A failure while interrupted (stop or revoke): abandon. The message stays uncommitted and
//     goes to the partition's next owner; nothing after it is handled by this owner.
//  3. A failure the retry policy retries (policy.retries(error, attempt)): wait
//     policy.delay(attempt) and run the handler again; an interrupted wait abandons.
//  4. Otherwise (the last attempt, or an error the policy does not retry): park the
//     dead-letter copy (make_dead_letter: the dead_letter_* headers) on the dead-letter topic.
//     A failed park is tried again after policy.delays.delay(n) (n = 1, 2, ...) for as long as
//     it takes, but every wait is interruptible: an interrupted one abandons. Parked: commit.
//
// Interruption: the model's interrupted() turns true when a stop or a revoke began; it also
// cancels (through the cancellation slot of the coroutine running deliver) a wait in progress
// at once and a handler in flight after its grace period. deliver() checks interrupted()
// before every wait and park, so it never starts an await in a cancelled coroutine.

#include <bulwark/event_bus.hpp>
#include <bulwark/result.hpp>
#include <bulwark/retry_policy.hpp>

#include <asio/awaitable.hpp>

#include <chrono>
#include <exception>
#include <string>
#include <utility>

namespace bulwark::detail {

/// What a bus does with the message after deliver(): store its offset, or leave it for the
/// partition's next owner.
enum class delivery_outcome { commit, abandon };

/// One run of the handler; an exception of any type is a failure (errc::rejected, detail
/// "handler threw: ...").
inline task<void> run_handler(const message_handler& handler, const envelope& e) {
  try {
    co_return co_await handler(e);
  } catch (const std::exception& ex) {
    co_return error(errc::rejected, std::string("handler threw: ") + ex.what());
  } catch (...) {
    co_return error(errc::rejected, "handler threw a non-standard exception");
  }
}

/// Delivers `e` under the rules above. `e.attempt` is set for every attempt.
///   park(topic, message) -> task<delivery>: publishes the dead letter.
///   wait(std::chrono::milliseconds) -> asio::awaitable<bool>: false when interrupted.
///   interrupted() -> bool: a stop or revoke began.
///   rng: the jitter source (any UniformRandomBitGenerator).
template <class Park, class Wait, class Interrupted, class Rng>
asio::awaitable<delivery_outcome> deliver(envelope e, const message_handler& handler, const retry_policy& policy,
                                          const std::string& dead_letter_topic, Park& park, Wait& wait,
                                          Interrupted& interrupted, Rng& rng) {
  error why;
  for (unsigned attempt = 1;; ++attempt) {
    e.attempt = attempt;
    auto outcome = co_await run_handler(handler, e);
    if (outcome) co_return delivery_outcome::commit;
    if (interrupted()) co_return delivery_outcome::abandon;
    why = std::move(outcome).error();
    if (!policy.retries(why, attempt)) break;
    auto waited = wait(policy.delay(attempt, rng));
    if (!co_await std::move(waited) || interrupted()) co_return delivery_outcome::abandon;
  }
  const auto dead = make_dead_letter(e, why, e.attempt);
  for (unsigned n = 1;; ++n) {
    auto parking = park(dead_letter_topic, dead);
    auto parked = co_await std::move(parking);
    if (parked) co_return delivery_outcome::commit;
    if (interrupted()) co_return delivery_outcome::abandon;
    auto waited = wait(policy.delays.delay(n, rng));
    if (!co_await std::move(waited) || interrupted()) co_return delivery_outcome::abandon;
  }
}

} // namespace bulwark::detail
