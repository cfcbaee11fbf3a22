#pragma once
// kafka::event_bus: bulwark::event_bus on Kafka. publish() goes through one producer
// (acks=all, idempotent unless config::idempotent is false); every subscribe() is a
// consumer-group member of its own (a kafka::consumer) that dead-letters through the same
// producer. stop() stops every member the bus made (each drains), then flushes the producer.
//
// Topics: publish relies on the brokers' auto-creation (or topics made beforehand);
// subscribe creates its topic when missing (config::default_partitions and
// default_replication_factor) so that the group has partitions to assign. subscribe_batch
// (bulwark::batch_event_bus) makes the same member with batches of up to max_batch messages.

#include <bulwark/event_bus.hpp>
#include <bulwark/kafka/admin.hpp>
#include <bulwark/kafka/config.hpp>
#include <bulwark/kafka/consumer.hpp>
#include <bulwark/kafka/producer.hpp>
#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bulwark::kafka {

class event_bus {
public:
  /// A group member; stop() drains it (see kafka::consumer).
  class subscription {
  public:
    subscription() = default;
    explicit subscription(kafka::consumer c) : consumer_(std::make_unique<kafka::consumer>(std::move(c))) {}
    /// Finishes the message in flight, commits what was handled and leaves the group.
    asio::awaitable<void> stop() {
      if (consumer_) co_await consumer_->stop();
    }
    /// The underlying member (processed count, last error, librdkafka handle).
    kafka::consumer* member() noexcept { return consumer_.get(); }

  private:
    std::unique_ptr<kafka::consumer> consumer_;
  };

  /// A bus on the cluster `cfg` names; handlers and completions run on `ex`. Errors:
  /// errc::invalid_argument for a configuration librdkafka refuses. Nothing is contacted yet.
  static result<event_bus> create(asio::any_io_executor ex, config cfg) {
    BOOST_OUTCOME_TRY(p, kafka::producer::create(cfg));
    BOOST_OUTCOME_TRY(a, kafka::admin::create(cfg));
    return event_bus(std::move(ex), std::move(cfg), std::make_shared<kafka::producer>(std::move(p)),
                     std::make_shared<kafka::admin>(std::move(a)));
  }

  /// Publishes m to topic; completes once all in-sync replicas have it (see producer::publish).
  /// Takes `m` by reference (moved from) and moves it once (producer::publish).
  task<delivery> publish(std::string_view topic, message&& m) { return producer_->publish(topic, std::move(m)); }
  /// publish() of a copy of `m`.
  task<delivery> publish(std::string_view topic, const message& m) { return producer_->publish(topic, m); }

  /// Publishes a batch with one coroutine resumption for all of it (see
  /// producer::publish_batch): one result per message, in batch order.
  asio::awaitable<std::vector<result<delivery>>> publish_batch(std::string_view topic, std::vector<message> batch) {
    return producer_->publish_batch(topic, std::move(batch));
  }

  /// Joins group o.group on o.topic (creating the topic when missing); h runs on a strand of
  /// this bus's executor. Errors: errc::invalid_argument (empty topic or group),
  /// errc::timeout, errc::unavailable (topic creation failed for want of brokers),
  /// errc::rejected (the bus is stopping).
  task<subscription> subscribe(subscribe_options o, message_handler h) {
    if (!h) return error_task(error(errc::invalid_argument, "subscribe needs a handler"));
    o.max_batch = 1;
    return join(std::move(o), bulwark::detail::one_at_a_time(std::move(h)));
  }

  /// Joins as subscribe() does; h gets up to o.max_batch consecutive messages of one partition
  /// at a time (event_bus.hpp, "Batches"; kafka::consumer::start_batch). Errors: those of
  /// subscribe(), and errc::invalid_argument for o.max_batch == 0.
  task<subscription> subscribe_batch(subscribe_options o, batch_handler h) {
    if (!h) return error_task(error(errc::invalid_argument, "subscribe_batch needs a handler"));
    if (o.max_batch == 0) return error_task(error(errc::invalid_argument, "subscribe_batch needs max_batch >= 1"));
    return join(std::move(o), std::move(h));
  }

  /// Refuses new subscribes, stops every member this bus made (each drains as
  /// subscription::stop() does; a dead letter parked meanwhile still goes out), then flushes
  /// the producer (up to config::stop_timeout) and rejects later publishes.
  asio::awaitable<void> stop() {
    for (auto& m : members_->stop_all()) co_await kafka::consumer::stop(std::move(m));
    co_await producer_->stop();
  }

  kafka::producer& producer() noexcept { return *producer_; }
  const kafka::admin& admin() const noexcept { return *admin_; }
  const config& settings() const noexcept { return cfg_; }

private:
  static task<subscription> error_task(error e) { co_return e; }

  // subscribe() and subscribe_batch(): a member whose batches hold up to o.max_batch messages.
  task<subscription> join(subscribe_options o, batch_handler h) {
    if (o.topic.empty() || o.group.empty())
      co_return error(errc::invalid_argument, "subscribe needs a topic and a group");
    if (members_->stopping()) co_return error(errc::rejected, "event bus is stopping");
    topic_spec spec{o.topic, cfg_.default_partitions, cfg_.default_replication_factor, {}};
    auto created = co_await admin_->ensure_topic(std::move(spec));
    if (!created) co_return created.error();
    dead_letter_publisher dead_letters = [p = producer_](const std::string& topic, message m) {
      return p->publish(topic, std::move(m));
    };
    auto c = co_await consumer::start_batch(ex_, cfg_, std::move(o), std::move(h), std::move(dead_letters));
    if (!c) co_return c.error();
    if (!members_->add(c.value().watch())) {
      co_await c.value().stop(); // the bus began to stop while this member joined
      co_return error(errc::rejected, "event bus is stopping");
    }
    co_return subscription(std::move(c).value());
  }

  // The members this bus made, so that stop() can stop them; a stopped or dropped member's
  // entry expires. Any thread.
  class member_list {
  public:
    bool stopping() const {
      std::lock_guard lock(mutex_);
      return stopping_;
    }
    bool add(std::weak_ptr<detail::consumer_state> m) {
      std::lock_guard lock(mutex_);
      if (stopping_) return false;
      std::erase_if(members_, [](const auto& w) { return w.expired(); });
      members_.push_back(std::move(m));
      return true;
    }
    std::vector<std::shared_ptr<detail::consumer_state>> stop_all() {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      std::vector<std::shared_ptr<detail::consumer_state>> live;
      for (auto& w : members_)
        if (auto m = w.lock()) live.push_back(std::move(m));
      members_.clear();
      return live;
    }

  private:
    mutable std::mutex mutex_;
    bool stopping_ = false;
    std::vector<std::weak_ptr<detail::consumer_state>> members_;
  };

  event_bus(asio::any_io_executor ex, config cfg, std::shared_ptr<kafka::producer> p, std::shared_ptr<kafka::admin> a)
      : ex_(std::move(ex)), cfg_(std::move(cfg)), producer_(std::move(p)), admin_(std::move(a)),
        members_(std::make_shared<member_list>()) {}

  asio::any_io_executor ex_;
  config cfg_;
  std::shared_ptr<kafka::producer> producer_;
  std::shared_ptr<kafka::admin> admin_;
  std::shared_ptr<member_list> members_;
};

} // namespace bulwark::kafka

static_assert(bulwark::event_bus<bulwark::kafka::event_bus>, "kafka::event_bus models bulwark::event_bus");
static_assert(bulwark::batch_event_bus<bulwark::kafka::event_bus>, "kafka::event_bus models bulwark::batch_event_bus");
