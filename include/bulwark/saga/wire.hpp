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

namespace detail {
// The three headers every saga message carries, then the one of its kind.
inline message saga_message(const std::string& saga_id, const std::string& step, op o, const std::string& payload,
                            std::string_view last_name, std::string last_value) {
  return {saga_id,
          payload,
          {{std::string(header_saga_id), saga_id},
           {std::string(header_step), step},
           {std::string(header_op), std::string(to_string(o))},
           {std::string(last_name), std::move(last_value)}}};
}

inline result<std::string_view> required_header(const envelope& e, std::string_view name) {
  auto value = e.find_header(name);
  if (!value || value->empty()) return error(errc::invalid_argument, "saga message without " + std::string(name));
  return *value;
}

// What names the step a message is about: its saga, its step and which half of it.
struct address {
  std::string_view saga_id;
  std::string_view step;
  saga::op op;
};

inline result<address> parse_address(const envelope& e) {
  auto saga_id = required_header(e, header_saga_id);
  if (!saga_id) return saga_id.error();
  auto step = required_header(e, header_step);
  if (!step) return step.error();
  auto text = required_header(e, header_op);
  if (!text) return text.error();
  if (text.value() == "action") return address{saga_id.value(), step.value(), op::action};
  if (text.value() == "compensation") return address{saga_id.value(), step.value(), op::compensation};
  return error(errc::invalid_argument, "saga message with op \"" + std::string(text.value()) + "\"");
}
} // namespace detail

/// A command as sent and as received (decoded from an envelope, it owns copies).
struct command {
  std::string saga_id;
  std::string step;
  saga::op op = op::action;
  std::string reply_to;
  std::string payload;

  message to_message() const { return detail::saga_message(saga_id, step, op, payload, header_reply_to, reply_to); }
};

/// A participant's answer to one command.
struct reply {
  std::string saga_id;
  std::string step;
  saga::op op = op::action;
  reply_outcome outcome = reply_outcome::succeeded;
  std::string payload;

  message to_message() const {
    return detail::saga_message(saga_id, step, op, payload, header_outcome, std::string(to_string(outcome)));
  }
};

/// The command an envelope carries; errc::invalid_argument (naming the header) when a header
/// is missing or malformed. The bus dead-letters such a message at once.
inline result<command> parse_command(const envelope& e) {
  auto at = detail::parse_address(e);
  if (!at) return at.error();
  auto reply_to = detail::required_header(e, header_reply_to);
  if (!reply_to) return reply_to.error();
  const auto& a = at.value();
  return command{std::string(a.saga_id), std::string(a.step), a.op, std::string(reply_to.value()),
                 std::string(e.value)};
}

/// The reply an envelope carries; errc::invalid_argument as parse_command.
inline result<reply> parse_reply(const envelope& e) {
  auto at = detail::parse_address(e);
  if (!at) return at.error();
  auto outcome_text = detail::required_header(e, header_outcome);
  if (!outcome_text) return outcome_text.error();
  reply_outcome outcome;
  if (outcome_text.value() == "succeeded")
    outcome = reply_outcome::succeeded;
  else if (outcome_text.value() == "failed")
    outcome = reply_outcome::failed;
  else
    return error(errc::invalid_argument, "saga reply with outcome \"" + std::string(outcome_text.value()) + "\"");
  const auto& a = at.value();
  return reply{std::string(a.saga_id), std::string(a.step), a.op, outcome, std::string(e.value)};
}

} // namespace bulwark::saga
