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

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace event_log {

struct pipeline_options {
  /// Prepended to the topic and group names (a deployment's namespace on a shared cluster).
  std::string prefix;
  std::shared_ptr<bulwark::metrics::registry> metrics = std::make_shared<bulwark::metrics::registry>();
  /// A stage retries a failing message this often before the bus dead-letters it: transient
  /// errors (a backend away) must not lose a command, so the bound is long.
  unsigned max_attempts = 1000;
  /// The most messages a stage takes at once (subscribe_options::max_batch): a batch shares its
  /// store round trips and its publish acknowledgements.
  std::size_t max_batch = 256;
  /// Memory mode: the command API holds a request while the pipeline has more messages than
  /// this not yet handled by every stage (commands, events, rejections, summed over the
  /// stages), and answers 503 after `admit_timeout`. The bound keeps the visibility lag under
  /// (max_in_flight / the stages' messages per second) and leaves the CPU to the stages when
  /// clients send faster than they keep up (0: no bound).
  std::size_t max_in_flight = 1024;
  /// How long a command's decision (the validator's decision:<cid>) and status (status:<cid>)
  /// are kept, counted from its acceptance (the time in its version 7 command id): the
  /// validator and the materializer drop older ones, at most every `sweep_every`, from the
  /// front of the keys (they sort by age), a bounded number per batch. A decision is read
  /// again only when its command is delivered again, which happens until its offset is
  /// committed (seconds): keep the retention well above that, and above any replay of the
  /// `commands` topic from an old offset (which would decide expired commands again). 0 keeps
  /// them for ever.
  std::chrono::milliseconds retention{std::chrono::hours(24)};
  std::chrono::milliseconds sweep_every{std::chrono::minutes(1)};
  std::chrono::milliseconds admit_timeout{5000};
  /// How often a stage runs a batch again whole after a transient error before the bus takes
  /// it one message at a time (pipeline::retried_whole).
  unsigned batch_retries = 5;
};

template <class Bus, class Repository>
requires bulwark::batch_event_bus<Bus> && bulwark::repository<Repository>
class pipeline {
public:
  using store_type = event_store<Repository>;
  using materializer_type = materializer<Repository, Repository>;

  /// `state`: the validator's; `events`: the event store; `snapshots`: snapshots and status.
  pipeline(const settings& s, Bus& bus, Repository& state, Repository& events, Repository& snapshots,
           pipeline_options o)
      : opts_(std::move(o)), bus_(bus), state_(state), snapshots_(snapshots), validator_(s, state), store_(events),
        materializer_(s, snapshots, store_),
        processed_(&opts_.metrics->counter_family("eventlog_stage_messages_total",
                                                  "Messages each stage handled, by outcome", {"stage", "outcome"})),
        lag_(&opts_.metrics
                  ->histogram_family("eventlog_visibility_lag_seconds",
                                     "From a command's acceptance to its snapshot being written", {},
                                     {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10})
                  .labels({})),
        accepted_(&processed_->labels({"validator", "accepted"})),
        rejected_(&processed_->labels({"validator", "rejected"})),
        replayed_(&processed_->labels({"validator", "replayed"})),
        appended_(&processed_->labels({"persister", "appended"})),
        stored_twice_(&processed_->labels({"persister", "duplicate"})),
        applied_(&processed_->labels({"materializer", "applied"})),
        applied_twice_(&processed_->labels({"materializer", "duplicate"})),
        rejection_(&processed_->labels({"materializer", "rejection"})) {}

  std::string topic_name(std::string_view t) const { return opts_.prefix + std::string(t); }
  std::string group_name(std::string_view g) const { return opts_.prefix + std::string(g); }

  /// Every (topic, group) the stages consume: what the admission bound counts (README,
  /// "Admission").
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 4> consumer_groups{
      {{topic::commands, "validator"},
       {topic::events, "persister"},
       {topic::events, "materializer"},
       {topic::rejections, "status"}}};

  /// What the admission bound counts, from each consumer group's backlog in messages (in
  /// consumer_groups' order): the messages on a command's way through the stages, the
  /// validator's, then the larger of the persister's and the materializer's (they read the same
  /// events side by side), then the status writer's. A sum over the four counted an accepted
  /// command's event twice (and each group's commits lag its progress), which took the pipeline
  /// for about twice as slow as it is: a bound in time derived from that sum held the
  /// throughput at half (README, "Admission").
  static std::int64_t behind_on_the_way(const std::array<std::int64_t, 4>& groups) {
    return groups[0] + std::max(groups[1], groups[2]) + groups[3];
  }

  /// The validator: a batch of commands decided in order, then its decisions and records
  /// stored while its messages are published, every acknowledgement awaited together.
  bulwark::task<void> start_validator() {
    return join(topic::commands, "validator", [this](std::span<const bulwark::envelope> batch) -> bulwark::task<void> {
      std::vector<std::string_view> commands;
      commands.reserve(batch.size());
      for (const auto& e : batch) commands.push_back(e.value);
      BOOST_OUTCOME_CO_TRY(co_await sweep(state_, "decision:", decision_sweep_));
      auto decided = co_await validator_.decide_unstored(commands);
      if (!decided) co_return decided.error();
      // The decisions and records stored while the messages are published (the batch waits
      // for the longer of the two, not their sum): a redelivery decides the same whatever of
      // either was done (validator::decide_unstored).
      std::vector<bulwark::task<void>> both;
      both.push_back(validator_.store(std::move(decided.value().stored), std::move(decided.value().records)));
      both.push_back(publish(decided.value().decisions));
      for (auto& done : co_await together<Repository>(std::move(both)))
        if (!done) co_return done.error();
      for (const auto& d : decided.value().decisions)
        (d.replayed ? replayed_ : d.accepted ? accepted_ : rejected_)->inc();
      co_return bulwark::ok();
    });
  }

  bulwark::task<void> start_persister() {
    return join(topic::events, "persister", [this](std::span<const bulwark::envelope> batch) -> bulwark::task<void> {
      auto events = read_all(batch, "persister");
      if (!events) co_return events.error();
      auto appended = co_await store_.append_batch(events.value());
      if (!appended) co_return appended.error();
      for (auto outcome : appended.value()) (outcome == append_outcome::appended ? appended_ : stored_twice_)->inc();
      co_return bulwark::ok();
    });
  }

  bulwark::task<void> start_materializer() {
    BOOST_OUTCOME_CO_TRY(co_await join(topic::events, "materializer",
                                       [this](std::span<const bulwark::envelope> batch) -> bulwark::task<void> {
                                         auto events = read_all(batch, "materializer");
                                         if (!events) co_return events.error();
                                         BOOST_OUTCOME_CO_TRY(co_await sweep(snapshots_, "status:", status_sweep_));
                                         auto applied = co_await materializer_.apply_batch(events.value());
                                         if (!applied) co_return applied.error();
                                         const auto now = now_ms();
                                         for (std::size_t i = 0; i < applied.value().size(); ++i) {
                                           const bool fresh = applied.value()[i] == apply_outcome::applied;
                                           (fresh ? applied_ : applied_twice_)->inc();
                                           if (!fresh) continue;
                                           if (auto at = accepted_at(events.value()[i]))
                                             lag_->observe(static_cast<double>(now - *at) / 1000.0);
                                         }
                                         co_return bulwark::ok();
                                       }));
    co_return co_await join(topic::rejections, "status",
                            [this](std::span<const bulwark::envelope> batch) -> bulwark::task<void> {
                              auto rejections = parse_all(batch, "status");
                              if (!rejections) co_return rejections.error();
                              for (const auto& r : rejections.value())
                                if (!r.contains("commandId") || !r["commandId"].is_string())
                                  co_return bulwark::error(bulwark::errc::invalid_argument, "status: not a rejection");
                              BOOST_OUTCOME_CO_TRY(co_await materializer_.reject_batch(rejections.value()));
                              rejection_->inc(static_cast<double>(batch.size()));
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
  const pipeline_options& options() const { return opts_; }

private:
  bulwark::task<void> join(std::string_view t, std::string group, bulwark::batch_handler h) {
    bulwark::subscribe_options o;
    o.topic = topic_name(t);
    o.group = group_name(group);
    o.retry.max_attempts = opts_.max_attempts;
    o.max_batch = opts_.max_batch;
    auto sub = co_await bus_.subscribe_batch(std::move(o), retried_whole(group, std::move(h)));
    if (!sub) co_return sub.error();
    subscriptions_.push_back(std::move(sub).value());
    co_return bulwark::ok();
  }

  /// `h`, whose batch is run again whole when it failed with a transient error (errc::timeout,
  /// errc::unavailable: Redis or Kafka slow or away for a moment), up to
  /// pipeline_options::batch_retries times after a growing wait (50 ms, 100 ms, ...), before
  /// the error goes to the bus. The bus then delivers the batch one message at a time (to
  /// single out a message that keeps failing): for a transient error of a 1024-command batch
  /// that is 1024 rounds of store calls and Kafka acknowledgements (tens of milliseconds each
  /// on a busy machine, the linger included), minutes during which the stage falls behind.
  /// Running a batch again is safe: every stage gives the same result for a batch delivered
  /// again, whatever of its writes the failed run made ("Crash safety"). A stop cancels the wait.
  bulwark::batch_handler retried_whole(std::string_view stage, bulwark::batch_handler h) {
    auto* retried = &opts_.metrics
                         ->counter_family("eventlog_stage_batch_retries_total",
                                          "Batches a stage ran again whole after a transient error", {"stage"})
                         .labels({std::string(stage)});
    return [this, retried, h = std::move(h)](std::span<const bulwark::envelope> batch) -> bulwark::task<void> {
      auto wait = std::chrono::milliseconds(50);
      for (unsigned attempt = 0;; ++attempt) {
        auto done = co_await h(batch);
        if (done || batch.size() == 1 || attempt >= opts_.batch_retries ||
            (done.error() != bulwark::errc::timeout && done.error() != bulwark::errc::unavailable))
          co_return done;
        retried->inc();
        asio::steady_timer timer(co_await asio::this_coro::executor, wait);
        co_await timer.async_wait(asio::use_awaitable);
        wait *= 2;
      }
    };
  }

  /// Where a stage's sweep stands: when it is due next, and the key it stopped after when it
  /// had more to look at than one sweep takes (it goes on from there at the next batch).
  struct sweep_state {
    std::int64_t next = 0;
    std::string after;
  };

  /// Drops the keys `prefix<command id>` older than opts_.retention, oldest first, when `at`
  /// (a stage's own) is due: up to 1024 keys a batch, erased together (one round of concurrent
  /// calls: one pipelined write on Redis), until it meets a key at or above the cutoff; then not
  /// before `sweep_every`. Keys whose id is no version 7 UUID (made before command ids were)
  /// stay. The errors of the repository (the batch is retried).
  bulwark::task<void> sweep(Repository& repo, std::string_view prefix, sweep_state& at) {
    const auto now = now_ms();
    if (opts_.retention.count() <= 0 || now < at.next) co_return bulwark::ok();
    const auto cutoff = now - opts_.retention.count();
    const std::string boundary = new_uuid_v7(cutoff).substr(0, 13); // the ids' first 48 bits at the cutoff
    std::vector<std::string> expired;
    bool done = false;
    for (std::size_t seen = 0; seen < 1024 && !done;) {
      auto page = co_await repo.scan(prefix, at.after, 256);
      if (!page) co_return page.error();
      for (const auto& e : page.value().entries) {
        ++seen;
        const std::string_view cid = std::string_view(e.key).substr(prefix.size());
        // Ids sort by their first 48 bits, which a version 7 id's time is: one at or above the
        // cutoff ends the sweep, whatever its version.
        if (cid.size() == 36 && cid.substr(0, 13) >= boundary) {
          done = true;
          break;
        }
        if (const auto made = uuid_v7_ms(cid); made && *made < cutoff) expired.push_back(e.key);
        at.after = e.key;
      }
      done = done || !page.value().next;
    }
    std::vector<bulwark::task<bool>> erases;
    erases.reserve(expired.size());
    for (const auto& k : expired) erases.push_back(repo.erase(k));
    for (auto& erased : co_await together<Repository>(std::move(erases))) // `expired` lives until then
      if (!erased) co_return erased.error();
    if (done) {
      at.after.clear();
      at.next = now + opts_.sweep_every.count();
    }
    co_return bulwark::ok();
  }

  /// The events of a batch (read_event); errc::invalid_argument (not retried: the bus
  /// dead-letters it once the batch goes one message at a time) when one is not.
  static bulwark::result<std::vector<event_fields>> read_all(std::span<const bulwark::envelope> batch,
                                                             std::string_view stage) {
    std::vector<event_fields> out;
    out.reserve(batch.size());
    for (const auto& e : batch) {
      auto f = read_event(e.value);
      if (!f)
        return bulwark::error(bulwark::errc::invalid_argument,
                              std::string(stage) + ": " + std::string(f.error().detail()));
      out.push_back(std::move(f).value());
    }
    return out;
  }

  /// The JSON objects of a batch; errc::invalid_argument (not retried: the bus dead-letters it
  /// once the batch goes one message at a time) when one is not.
  static bulwark::result<std::vector<json>> parse_all(std::span<const bulwark::envelope> batch,
                                                      std::string_view stage) {
    std::vector<json> out;
    out.reserve(batch.size());
    for (const auto& e : batch) {
      out.push_back(json::parse(e.value, nullptr, false));
      if (!out.back().is_object())
        return bulwark::error(bulwark::errc::invalid_argument, std::string(stage) + ": not a JSON object");
    }
    return out;
  }

  /// Publishes the decisions' messages, events and rejections each as one batch when the bus
  /// has publish_batch (Kafka: every acknowledgement awaited together), else one by one (the
  /// memory bus appends without waiting).
  bulwark::task<void> publish(std::vector<decision>& decided) {
    for (auto t : {topic::events, topic::rejections}) {
      std::vector<bulwark::message> out;
      for (auto& d : decided)
        if (d.topic == t) out.push_back(bulwark::message{d.key, std::move(d.value), {}});
      if (out.empty()) continue;
      if constexpr (requires { bus_.publish_batch(t, std::move(out)); }) {
        for (auto& sent : co_await bus_.publish_batch(topic_name(t), std::move(out)))
          if (!sent) co_return sent.error();
      } else {
        for (auto& m : out) {
          auto sent = co_await bus_.publish(topic_name(t), std::move(m));
          if (!sent) co_return sent.error();
        }
      }
    }
    co_return bulwark::ok();
  }

  pipeline_options opts_;
  Bus& bus_;
  Repository& state_;                         ///< the validator's (decision:<cid>)
  Repository& snapshots_;                     ///< the materializer's (status:<cid>)
  sweep_state decision_sweep_, status_sweep_; // each on its stage's strand
  validator<Repository> validator_;
  store_type store_;
  materializer_type materializer_;
  bulwark::metrics::family<bulwark::metrics::counter>* processed_;
  bulwark::metrics::histogram* lag_;
  // Each outcome's counter, looked up once (a lookup per message took a lock and an allocation).
  bulwark::metrics::counter *accepted_, *rejected_, *replayed_, *appended_, *stored_twice_, *applied_, *applied_twice_,
      *rejection_;
  std::vector<typename Bus::subscription> subscriptions_;
};

} // namespace event_log
