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
// And for a batch (deliver_batch: consecutive messages of one partition, event_bus.hpp
// "Batches"):
//  5. Run the batch handler once over the whole batch. Success: commit all of it.
//  6. A failure while interrupted: abandon the whole batch.
//  7. Otherwise deliver the batch's messages one at a time under 1-4 (the batch handler called
//     with a span of one), so only a message that keeps failing is dead-lettered. An interruption
//     between two of them, or one of them abandoned, ends the batch: the messages before it are
//     committed, the rest are left for the partition's next owner.
//  A batch of one goes straight to 1-4 (its first attempt is the batch's run).
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
#include <cstddef>
#include <exception>
#include <span>
#include <string>
#include <utility>

namespace bulwark::detail {

/// What a bus does with the message after deliver(): store its offset, or leave it for the
/// partition's next owner.
enum class delivery_outcome { commit, abandon };

/// What a handler that threw failed with: errc::rejected, detail "handler threw: ...".
inline error handler_threw(const std::exception_ptr& thrown) {
  try {
    std::rethrow_exception(thrown);
  } catch (const std::exception& ex) {
    return error(errc::rejected, std::string("handler threw: ") + ex.what());
  } catch (...) {
    return error(errc::rejected, "handler threw a non-standard exception");
  }
}

/// One run of the handler; an exception of any type is a failure (handler_threw).
inline task<void> run_handler(const message_handler& handler, const envelope& e) {
  try {
    co_return co_await handler(e);
  } catch (...) {
    co_return handler_threw(std::current_exception());
  }
}

/// One run of a batch handler over `batch`; an exception of any type is a failure.
inline task<void> run_handler(const batch_handler& handler, std::span<const envelope> batch) {
  try {
    co_return co_await handler(batch);
  } catch (...) {
    co_return handler_threw(std::current_exception());
  }
}

/// A batch handler run over one message: a span of one (the span is copied into the task).
inline task<void> run_handler(const batch_handler& handler, const envelope& e) {
  return run_handler(handler, std::span<const envelope>(&e, 1));
}

/// A one-message subscription as a batch subscription whose batches hold one message: the one
/// worker every model runs serves both (the cost: one std::function call more per message).
inline batch_handler one_at_a_time(message_handler handler) {
  return [h = std::move(handler)](std::span<const envelope> one) { return h(one.front()); };
}

/// Delivers `e` under the rules above. `e.attempt` is set for every attempt.
///   handler: a message_handler, or a batch_handler (called with a span of one).
///   park(topic, message) -> task<delivery>: publishes the dead letter.
///   wait(std::chrono::milliseconds) -> asio::awaitable<bool>: false when interrupted.
///   interrupted() -> bool: a stop or revoke began.
///   rng: the jitter source (any UniformRandomBitGenerator).
template <class Handler, class Park, class Wait, class Interrupted, class Rng>
asio::awaitable<delivery_outcome> deliver(envelope e, const Handler& handler, const retry_policy& policy,
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

/// Delivers `batch` (consecutive messages of one partition, in offset order, attempt 1) under
/// rules 5-7 and returns how many of its messages, counted from the first, are done (handled
/// or dead-lettered: the model commits through the last of them). Fewer than batch.size():
/// interrupted, the rest stay uncommitted. The parameters are deliver()'s.
template <class Park, class Wait, class Interrupted, class Rng>
asio::awaitable<std::size_t> deliver_batch(std::span<const envelope> batch, const batch_handler& handler,
                                           const retry_policy& policy, const std::string& dead_letter_topic, Park& park,
                                           Wait& wait, Interrupted& interrupted, Rng& rng) {
  if (batch.size() > 1) {
    const auto outcome = co_await run_handler(handler, batch);
    if (outcome) co_return batch.size();
    if (interrupted()) co_return 0;
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (i > 0 && interrupted()) co_return i;
    const auto one = co_await deliver(batch[i], handler, policy, dead_letter_topic, park, wait, interrupted, rng);
    if (one == delivery_outcome::abandon) co_return i;
  }
  co_return batch.size();
}

} // namespace bulwark::detail
