#pragma once
// The consumer stages on an event bus: validator (commands -> events | rejections), persister
// (events -> event store), materializer (events -> snapshots, rejections -> command status).
// Generic over the bus and the repositories: memory models in one process, Kafka and Redis in
// real mode, where each stage may run in its own process and in several replicas (one consumer
// group per stage).

#include <event_log/event_store.hpp>
#include <event_log/materializer.hpp>
#include <event_log/validator.hpp>

#include <bulwark/event_bus.hpp>
#include <bulwark/metrics/registry.hpp>

#include <memory>
#include <string>
#include <vector>

namespace event_log {

struct pipeline_options {
  /// Prepended to the topic and group names (a deployment's namespace on a shared cluster).
  std::string prefix;
  std::shared_ptr<bulwark::metrics::registry> metrics = std::make_shared<bulwark::metrics::registry>();
  /// A stage retries a failing message this often before the bus dead-letters it: transient
  /// errors (a backend away) must not lose a command, so the bound is long.
  unsigned max_attempts = 1000;
};

template <class Bus, class Repository>
requires bulwark::event_bus<Bus> && bulwark::repository<Repository>
class pipeline {
public:
  using store_type = event_store<Repository>;
  using materializer_type = materializer<Repository, Repository>;

  /// `state`: the validator's; `events`: the event store; `snapshots`: snapshots and status.
  pipeline(const settings& s, Bus& bus, Repository& state, Repository& events, Repository& snapshots,
           pipeline_options o)
      : opts_(std::move(o)), bus_(bus), validator_(s, state), store_(events), materializer_(s, snapshots, store_),
        processed_(&opts_.metrics->counter_family("eventlog_stage_messages_total",
                                                  "Messages each stage handled, by outcome", {"stage", "outcome"})),
        lag_(&opts_.metrics->histogram_family(
            "eventlog_visibility_lag_seconds", "From a command's acceptance to its snapshot being written", {},
            {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10})) {}

  std::string topic_name(std::string_view t) const { return opts_.prefix + std::string(t); }

  bulwark::task<void> start_validator() {
    return join(topic::commands, "validator", [this](const bulwark::envelope& e) -> bulwark::task<void> {
      auto d = co_await validator_.decide(e.value);
      if (!d) co_return d.error();
      auto& decided = d.value();
      bulwark::message out;
      out.key = decided.key;
      out.value = std::move(decided.value);
      auto sent = co_await bus_.publish(topic_name(decided.topic), std::move(out));
      if (!sent) co_return sent.error();
      processed_->labels({"validator", decided.replayed   ? "replayed"
                                       : decided.accepted ? "accepted"
                                                          : "rejected"})
          .inc();
      co_return bulwark::ok();
    });
  }

  bulwark::task<void> start_persister() {
    return join(topic::events, "persister", [this](const bulwark::envelope& e) -> bulwark::task<void> {
      auto event = json::parse(e.value, nullptr, false);
      if (event.is_discarded()) co_return bulwark::error(bulwark::errc::invalid_argument, "persister: not JSON");
      auto appended = co_await store_.append(event);
      if (!appended) co_return appended.error();
      processed_->labels({"persister", appended.value() == append_outcome::appended ? "appended" : "duplicate"}).inc();
      co_return bulwark::ok();
    });
  }

  bulwark::task<void> start_materializer() {
    BOOST_OUTCOME_CO_TRY(
        co_await join(topic::events, "materializer", [this](const bulwark::envelope& e) -> bulwark::task<void> {
          auto event = json::parse(e.value, nullptr, false);
          if (event.is_discarded()) co_return bulwark::error(bulwark::errc::invalid_argument, "materializer: not JSON");
          auto applied = co_await materializer_.apply(event);
          if (!applied) co_return applied.error();
          const bool fresh = applied.value() == apply_outcome::applied;
          processed_->labels({"materializer", fresh ? "applied" : "duplicate"}).inc();
          if (fresh && event["meta"].contains("acceptedAt") && event["meta"]["acceptedAt"].is_number())
            lag_->labels({}).observe(
                static_cast<double>(now_ms() - event["meta"]["acceptedAt"].template get<std::int64_t>()) / 1000.0);
          co_return bulwark::ok();
        }));
    co_return co_await join(topic::rejections, "status", [this](const bulwark::envelope& e) -> bulwark::task<void> {
      auto rejection = json::parse(e.value, nullptr, false);
      if (rejection.is_discarded() || !rejection.contains("commandId") || !rejection["commandId"].is_string())
        co_return bulwark::error(bulwark::errc::invalid_argument, "status: not a rejection");
      BOOST_OUTCOME_CO_TRY(co_await materializer_.reject(rejection));
      processed_->labels({"materializer", "rejection"}).inc();
      co_return bulwark::ok();
    });
  }

  /// Leaves every group (drains the handlers in flight).
  asio::awaitable<void> stop() {
    for (auto& s : subscriptions_) co_await s.stop();
    subscriptions_.clear();
  }

  materializer_type& snapshots() { return materializer_; }
  store_type& store() { return store_; }
  const std::shared_ptr<bulwark::metrics::registry>& metrics() const { return opts_.metrics; }

private:
  bulwark::task<void> join(std::string_view t, std::string group, bulwark::message_handler h) {
    bulwark::subscribe_options o;
    o.topic = topic_name(t);
    o.group = opts_.prefix + group;
    o.retry.max_attempts = opts_.max_attempts;
    auto sub = co_await bus_.subscribe(std::move(o), std::move(h));
    if (!sub) co_return sub.error();
    subscriptions_.push_back(std::move(sub).value());
    co_return bulwark::ok();
  }

  pipeline_options opts_;
  Bus& bus_;
  validator<Repository> validator_;
  store_type store_;
  materializer_type materializer_;
  bulwark::metrics::family<bulwark::metrics::counter>* processed_;
  bulwark::metrics::family<bulwark::metrics::histogram>* lag_;
  std::vector<typename Bus::subscription> subscriptions_;
};

} // namespace event_log
