#pragma once
// saga::definition<Context, Codec>: the model of saga_definition (saga.hpp). A typed context
// and its codec, ordered steps, an optional pivot and one deadline for the whole saga.
//
//   saga::definition<order> checkout("checkout");
//   checkout.add(saga::local_step<order>("reserve", reserve, release))
//       .add(saga::remote_step<order>("pay", "payment.commands", pay_command))
//       .add(saga::local_step<order>("ship", ship))
//       .pivot_after("pay");
//
// A local step's action and compensation take the context (the action may change it: the change
// is persisted with the step) and the attempt's deadline, which they honour: the orchestrator
// arms no timer for a local call. A remote step publishes a command (saga/wire.hpp) to `topic`
// and waits for the reply up to the attempt's deadline (one clock wait, not a timer per call).
//
// Not thread-safe while being built; an orchestrator copies it, then only reads it.

#include <bulwark/clock.hpp>
#include <bulwark/result.hpp>
#include <bulwark/retry_policy.hpp>
#include <bulwark/saga.hpp>
#include <bulwark/saga/wire.hpp>
#include <bulwark/typed.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bulwark::saga {

/// A local action or compensation: changes the world, honours `deadline`.
template <class Context> using local_call =
    std::function<task<void>(Context& context, bulwark::clock::time_point deadline)>;

/// A remote step's command payload for `o` (action or compensation), from the context.
template <class Context> using command_payload = std::function<std::string(const Context& context, op o)>;

/// What a remote step does with a participant's "succeeded" reply payload (may be empty).
template <class Context> using reply_handler = std::function<void(Context& context, op o, std::string_view payload)>;

/// One step of a saga. Build it with local_step() or remote_step(), then adjust the fields.
template <class Context> struct step {
  std::string name;
  /// Local: the action and its compensation (empty: nothing to undo).
  local_call<Context> action{};
  local_call<Context> compensation{};
  /// Remote (topic non-empty): the command topic, the payload, and what a reply does.
  std::string topic{};
  command_payload<Context> command{};
  reply_handler<Context> on_reply{};
  bool remote_compensation = true; ///< remote: send a compensation command when undoing
  /// The deadline of each attempt (action or compensation), from the attempt's start. A remote
  /// step's attempt n (from 0) waits timeout x 2^min(n, 3) for its reply (orchestrator.hpp).
  bulwark::clock::duration timeout = std::chrono::seconds(10);
  /// The action's attempts. A retry waits on the orchestrator's clock.
  retry_policy retry{.delays = {}, .max_attempts = 3, .retry_if = {}};
  /// The compensation's attempts; past them the saga is left compensation_failed.
  retry_policy compensation_retry{.delays = {}, .max_attempts = 10, .retry_if = {}};
  /// How an action's error is handled; empty: default_classify.
  std::function<step_failure(const error&)> classify{};

  bool is_remote() const noexcept { return !topic.empty(); }
  bool has_compensation() const noexcept { return is_remote() ? remote_compensation : bool(compensation); }
  step_failure classify_error(const error& e) const { return classify ? classify(e) : default_classify(e); }
};

/// A local step: `action`, and `compensation` (empty when there is nothing to undo).
template <class Context>
step<Context> local_step(std::string name, local_call<Context> action, local_call<Context> compensation = {}) {
  step<Context> s;
  s.name = std::move(name);
  s.action = std::move(action);
  s.compensation = std::move(compensation);
  return s;
}

/// A remote step: a command (action, later maybe compensation) on `topic` to a participant.
template <class Context> step<Context> remote_step(std::string name, std::string topic,
                                                   command_payload<Context> command,
                                                   reply_handler<Context> on_reply = {}) {
  step<Context> s;
  s.name = std::move(name);
  s.topic = std::move(topic);
  s.command = std::move(command);
  s.on_reply = std::move(on_reply);
  return s;
}

template <class Context, class Codec = json_codec<Context>>
requires codec_for<Codec, Context>
class definition {
public:
  using context_type = Context;
  using codec = Codec;

  explicit definition(std::string name) : name_(std::move(name)) {}

  /// Appends a step.
  definition& add(step<Context> s) {
    steps_.push_back(std::move(s));
    return *this;
  }

  /// Makes `step_name` the pivot: once it completed, the saga only goes forward.
  /// validate() reports an unknown name.
  definition& pivot_after(std::string_view step_name) {
    pivot_name_ = std::string(step_name);
    return *this;
  }

  /// The one deadline of a saga, from its start (default: none).
  definition& saga_timeout(bulwark::clock::duration d) {
    saga_timeout_ = d;
    return *this;
  }

  const std::string& name() const noexcept { return name_; }
  std::span<const step<Context>> steps() const noexcept { return steps_; }
  bulwark::clock::duration saga_timeout() const noexcept { return saga_timeout_; }

  std::optional<std::size_t> pivot() const {
    if (!pivot_name_) return std::nullopt;
    for (std::size_t i = 0; i < steps_.size(); ++i)
      if (steps_[i].name == *pivot_name_) return i;
    return std::nullopt;
  }

  /// errc::invalid_argument naming the first rule broken: a name, 1..max_steps steps with unique
  /// non-empty names, a local step with an action, a remote one with a command, positive
  /// timeouts, a known pivot.
  result<void> validate() const {
    auto bad = [&](std::string why) { return error(errc::invalid_argument, "saga " + name_ + ": " + why); };
    if (name_.empty()) return error(errc::invalid_argument, "saga definition without a name");
    if (steps_.empty() || steps_.size() > max_steps)
      return bad("needs 1 to " + std::to_string(max_steps) + " steps, has " + std::to_string(steps_.size()));
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      const auto& s = steps_[i];
      if (s.name.empty()) return bad("step " + std::to_string(i) + " has no name");
      for (std::size_t j = 0; j < i; ++j)
        if (steps_[j].name == s.name) return bad("step name \"" + s.name + "\" used twice");
      if (s.is_remote() ? !s.command : !s.action) return bad("step \"" + s.name + "\" has nothing to do");
      if (s.timeout <= bulwark::clock::duration::zero()) return bad("step \"" + s.name + "\" has no time");
    }
    if (pivot_name_ && !pivot()) return bad("pivot \"" + *pivot_name_ + "\" is not a step");
    if (saga_timeout_ <= bulwark::clock::duration::zero()) return bad("saga_timeout is not positive");
    return ok();
  }

private:
  std::string name_;
  std::vector<step<Context>> steps_;
  std::optional<std::string> pivot_name_;
  bulwark::clock::duration saga_timeout_ = bulwark::clock::duration::max();
};

static_assert(saga_definition<definition<std::string>>, "saga::definition must satisfy the saga_definition concept");

} // namespace bulwark::saga
