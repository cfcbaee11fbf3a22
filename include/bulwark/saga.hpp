#pragma once
// The saga concept: a long-running business transaction over several services, made of ordered
// steps that each commit on their own; when one fails, the steps already done are undone by
// their compensations, in reverse order. The vocabulary every part of bulwark::saga shares: the
// states a saga goes through, how a step's error is classified, and what a definition is.
//
// A definition (saga/definition.hpp) is a typed context with a codec (typed.hpp's pattern) and
// ordered steps; an orchestrator (saga/orchestrator.hpp) runs it over any repository model,
// which holds the saga log. Requirements on a definition D, an lvalue d of const D, i of type
// std::size_t, c an lvalue of D::context_type, bytes of type std::string_view:
//
// | expression             | type                      | semantics
// |------------------------|---------------------------|-----------------------------------------
// | D::context_type        |                           | the saga's typed state, carried from step
// |                        |                           | to step and persisted after each one
// | D::codec               |                           | codec_for<D::codec, D::context_type>
// |                        |                           | (typed.hpp): encode(c), decode(bytes)
// | d.name()               | const std::string&        | names the saga kind: key prefix, metrics
// | d.steps()              | std::span<const           | the steps in order, 1..max_steps; names
// |                        |   step<context_type>>     | unique and non-empty (validate())
// | d.pivot()              | std::optional<std::size_t>| the last step that can be compensated:
// |                        |                           | once step pivot() completed the saga only
// |                        |                           | goes forward (abort() is refused, a later
// |                        |                           | failure leaves it `failed`, never undone)
// | d.saga_timeout()       | bulwark::clock::duration  | the one deadline of a saga from its start;
// |                        |                           | reached before the pivot: compensate
// | d.validate()           | result<void>              | errc::invalid_argument naming the rule
//
// A step (saga/definition.hpp) is local (an awaitable: action(context, deadline) ->
// task<void>, an optional compensation of the same shape) or remote (a command on the event bus
// to a participant, saga/wire.hpp; the reply routed back by (saga id, step, op)). Each has a
// timeout (the deadline of each attempt, carried down as a time point, never a timer per call),
// a retry_policy for its action and one for its compensation, and a classification of errors:
//
// | step_failure     | what the orchestrator does (before the pivot; after it see `failed`)
// |------------------|---------------------------------------------------------------------
// | retryable        | tries the step again under its retry_policy; when the attempts are
// |                  | used up, the step counts as possibly applied and is compensated too
// | business_failure | the step was refused and changed nothing (errc::declined, a participant
// |                  | replying "failed"): the completed steps are compensated, not this one
// | fatal            | no retry; the step counts as possibly applied and is compensated too
//
// errc::timeout (a deadline passed with the outcome unknown) is retryable by default: an attempt
// that timed out is tried again (a remote one re-sends its command; the participant answers a
// duplicate from its record), and a step whose every attempt timed out is compensated. So a
// compensation must accept "nothing to undo" (a ledger revert of an unknown id tombstones it).
//
// States and their transitions (saga_state); the three finals keep a compact outcome record for
// the orchestrator's retention (default 24 h), then are purged:
//
//   running ----------------------------------------------> completed        (every step done)
//      |  business failure, exhausted retries, fatal, saga
//      |  deadline or abort(), before the pivot
//      v
//   compensating --- every compensation done -------------> compensated
//      |  a compensation failed past its own retry limit
//      +------------------------------------------------> compensation_failed  (kept, listed,
//                                                                                 counted)
//   running, after the pivot: business failure or fatal --> failed          (kept, listed, counted)
//
// Neither compensation_failed nor failed is ever dropped before its retention: both are
// counted in metrics and returned by orchestrator::list(state); an operator settles them.
//
// Models: saga::definition<Context, Codec> (saga/definition.hpp). The orchestrator's guarantees,
// its log format and its leases: saga/orchestrator.hpp, saga/log.hpp and docs/saga.md.
// Checked by: tests/unit/saga/orchestrator.cpp.

#include <bulwark/clock.hpp>
#include <bulwark/error.hpp>
#include <bulwark/result.hpp>
#include <bulwark/typed.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bulwark::saga {

/// Where a saga is. The numbers are stored in the saga log: never renumbered, only appended.
enum class saga_state : std::uint8_t {
  running = 1,             ///< going forward, step by step
  compensating = 2,        ///< undoing the completed steps, last first
  completed = 3,           ///< final: every step done
  compensated = 4,         ///< final: every completed step undone
  compensation_failed = 5, ///< final: a compensation failed past its retry limit; needs an operator
  failed = 6,              ///< final: a step after the pivot failed for good; needs an operator
};

constexpr bool is_final(saga_state s) noexcept { return s != saga_state::running && s != saga_state::compensating; }

constexpr std::string_view to_string(saga_state s) noexcept {
  switch (s) {
  case saga_state::running: return "running";
  case saga_state::compensating: return "compensating";
  case saga_state::completed: return "completed";
  case saga_state::compensated: return "compensated";
  case saga_state::compensation_failed: return "compensation_failed";
  case saga_state::failed: return "failed";
  }
  return "unknown";
}

/// How a step's error is handled (see the table above).
enum class step_failure : std::uint8_t { retryable, business_failure, fatal };

/// The default classification: errc::declined is a business failure (the rules said no, nothing
/// changed); errc::invalid_argument and errc::too_large are fatal (asking again gives the same
/// answer, and whether something was applied is not known); everything else, errc::timeout
/// included, is retryable.
inline step_failure default_classify(const error& e) noexcept {
  if (e == errc::declined) return step_failure::business_failure;
  if (e == errc::invalid_argument || e == errc::too_large) return step_failure::fatal;
  return step_failure::retryable;
}

/// The most steps a definition may have (validate() refuses more).
inline constexpr std::size_t max_steps = 1024;

/// What a finished (or, when asked early, a current) saga looks like from outside.
template <class Context> struct saga_outcome {
  saga_state state = saga_state::running;
  Context context{};  ///< the context as of the last transition
  std::string detail; ///< why it compensated or failed (the step and its error), empty otherwise
};

template <class D>
concept saga_definition = requires(const D& d) {
  typename D::context_type;
  typename D::codec;
  requires codec_for<typename D::codec, typename D::context_type>;
  { d.name() } -> std::convertible_to<const std::string&>;
  { d.pivot() } -> std::same_as<std::optional<std::size_t>>;
  { d.saga_timeout() } -> std::same_as<bulwark::clock::duration>;
  { d.validate() } -> std::same_as<result<void>>;
  { d.steps().size() } -> std::convertible_to<std::size_t>;
};

} // namespace bulwark::saga
