#pragma once
// The saga wire format: what an orchestrator's remote step sends to a participant over the event
// bus, and what the participant answers. One place, so the orchestrator (saga/orchestrator.hpp)
// and the participant helper (saga/participant.hpp) cannot disagree.
//
// A command is published to the step's command topic, keyed by saga id (one saga's commands
// keep their order), its value the step's payload, with these headers:
//   bulwark-saga-id        the saga id
//   bulwark-saga-step      the step's name
//   bulwark-saga-op        "action" or "compensation"
//   bulwark-saga-reply-to  the topic the reply goes to (the driving replica's reply topic)
// A reply is published to that reply-to topic, keyed by saga id, its value the participant's
// payload (a result, or a business refusal's reason), with the first three headers again and
//   bulwark-saga-outcome   "succeeded" or "failed" (a business refusal: the saga compensates)
// A participant applies each (saga id, step, op) once and answers a duplicate with the reply it
// gave the first time; after a crash an orchestrator simply sends the command again.
#include <bulwark/event_bus.hpp>
#include <bulwark/result.hpp>

#include <string>
#include <string_view>

namespace bulwark::saga {

inline constexpr std::string_view header_saga_id = "bulwark-saga-id";
inline constexpr std::string_view header_step = "bulwark-saga-step";
inline constexpr std::string_view header_op = "bulwark-saga-op";
inline constexpr std::string_view header_reply_to = "bulwark-saga-reply-to";
inline constexpr std::string_view header_outcome = "bulwark-saga-outcome";

/// Which half of a step a command asks for.
enum class op { action, compensation };
/// What a participant answered: done, or a business refusal (not enough stock).
enum class reply_outcome { succeeded, failed };

constexpr std::string_view to_string(op o) noexcept { return o == op::action ? "action" : "compensation"; }
constexpr std::string_view to_string(reply_outcome o) noexcept {
  return o == reply_outcome::succeeded ? "succeeded" : "failed";
}

/// A command as sent and as received (decoded from an envelope, it owns copies).
struct command {
  std::string saga_id;
  std::string step;
  saga::op op = op::action;
  std::string reply_to;
  std::string payload;

  message to_message() const {
    return {saga_id,
            payload,
            {{std::string(header_saga_id), saga_id},
             {std::string(header_step), step},
             {std::string(header_op), std::string(to_string(op))},
             {std::string(header_reply_to), reply_to}}};
  }
};

/// A participant's answer to one command.
struct reply {
  std::string saga_id;
  std::string step;
  saga::op op = op::action;
  reply_outcome outcome = reply_outcome::succeeded;
  std::string payload;

  message to_message() const {
    return {saga_id,
            payload,
            {{std::string(header_saga_id), saga_id},
             {std::string(header_step), step},
             {std::string(header_op), std::string(to_string(op))},
             {std::string(header_outcome), std::string(to_string(outcome))}}};
  }
};

namespace detail {
inline result<std::string_view> required_header(const envelope& e, std::string_view name) {
  auto value = e.find_header(name);
  if (!value || value->empty()) return error(errc::invalid_argument, "saga message without " + std::string(name));
  return *value;
}
inline result<saga::op> parse_op(const envelope& e) {
  auto text = required_header(e, header_op);
  if (!text) return text.error();
  if (text.value() == "action") return op::action;
  if (text.value() == "compensation") return op::compensation;
  return error(errc::invalid_argument, "saga message with op \"" + std::string(text.value()) + "\"");
}
} // namespace detail

/// The command an envelope carries; errc::invalid_argument (naming the header) when a header
/// is missing or malformed. The bus dead-letters such a message at once.
inline result<command> parse_command(const envelope& e) {
  auto saga_id = detail::required_header(e, header_saga_id);
  if (!saga_id) return saga_id.error();
  auto step = detail::required_header(e, header_step);
  if (!step) return step.error();
  auto kind = detail::parse_op(e);
  if (!kind) return kind.error();
  auto reply_to = detail::required_header(e, header_reply_to);
  if (!reply_to) return reply_to.error();
  return command{std::string(saga_id.value()), std::string(step.value()), kind.value(), std::string(reply_to.value()),
                 std::string(e.value)};
}

/// The reply an envelope carries; errc::invalid_argument as parse_command.
inline result<reply> parse_reply(const envelope& e) {
  auto saga_id = detail::required_header(e, header_saga_id);
  if (!saga_id) return saga_id.error();
  auto step = detail::required_header(e, header_step);
  if (!step) return step.error();
  auto kind = detail::parse_op(e);
  if (!kind) return kind.error();
  auto outcome_text = detail::required_header(e, header_outcome);
  if (!outcome_text) return outcome_text.error();
  reply_outcome outcome;
  if (outcome_text.value() == "succeeded")
    outcome = reply_outcome::succeeded;
  else if (outcome_text.value() == "failed")
    outcome = reply_outcome::failed;
  else
    return error(errc::invalid_argument, "saga reply with outcome \"" + std::string(outcome_text.value()) + "\"");
  return reply{std::string(saga_id.value()), std::string(step.value()), kind.value(), outcome, std::string(e.value)};
}

} // namespace bulwark::saga
