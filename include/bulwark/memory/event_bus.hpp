#pragma once
// memory::event_bus: the in-memory model of bulwark::event_bus (the embedded default).
//
// Topics have a fixed number of partitions; a message's key picks its partition (a message
// without key goes round-robin). Each consumer group keeps a committed offset per partition;
// the partitions of a topic are spread over the group's members and rebalanced when one joins
// or leaves. A member runs one worker per partition it owns and that has messages, so its
// partitions are handled in parallel, one message (or batch) in flight per partition (as on
// Kafka); each worker delivers through detail::deliver_batch (retries under the retry_policy,
// then the dead-letter topic) and commits in order, so per-key order and at-least-once delivery
// hold. Batches (subscribe_batch, event_bus.hpp "Batches") are up to max_batch consecutive
// messages from the partition's log as it stands when the worker takes them; subscribe() is
// the same worker with batches of one (detail::one_at_a_time).
//
// Memory stays small: a partition drops the messages every group has committed, checked by
// the committing worker every options::trim_every commits and whenever it caught up (never on
// the publish path). A partition keeps at most `max_backlog` messages that some group has not
// committed yet (a topic no group reads keeps everything up to that bound) and refuses
// (errc::rejected) further publishes until consumers catch up. With options::metrics set, the
// gauges bulwark_bus_backlog_messages{topic,partition} (messages held) and
// bulwark_bus_consumer_lag_messages{topic,group,partition} (published, not yet committed by the
// group) follow every publish and commit.
//
// Stopping: a member's stop() interrupts a delivery waiting between two attempts at once, waits
// up to options::drain_timeout for its handlers in flight, then emits their cancellation slots
// (see event_bus.hpp, "Stopping"); an interrupted message stays uncommitted for the next member.
// Time (backoff waits, the drain period) runs on options::clock.
//
// Thread-safe: publish and subscribe from any thread; each member's workers and handlers run on
// one strand of the bus's executor.

#include <bulwark/clock.hpp>
#include <bulwark/detail/delivery.hpp>
#include <bulwark/detail/notifier.hpp>
#include <bulwark/event_bus.hpp>
#include <bulwark/metrics/event_bus.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace bulwark::memory {

class event_bus {
  struct state;
  struct member;

public:
  struct options {
    std::int32_t partitions = 4;         ///< per topic, fixed at the topic's first use
    std::size_t max_backlog = 1'000'000; ///< uncommitted messages a partition holds at most
    /// How long a stop waits for the handlers in flight before it interrupts them.
    std::chrono::milliseconds drain_timeout{30000};
    /// A partition drops what every group committed after this many commits (and when its
    /// worker caught up): the cost of a trim is spread over this many messages.
    std::size_t trim_every = 256;
    /// Where the backlog and lag gauges go; none when empty.
    std::shared_ptr<metrics::registry> metrics{};
    /// The time of backoff waits and the drain period (clock::manual() in tests).
    bulwark::clock clock{};
  };

  /// A member of a consumer group. stop() drains; dropping it without stop() asks the member
  /// to stop without waiting (it still drains in the background).
  class subscription {
  public:
    subscription() = default;
    subscription(subscription&&) noexcept = default;
    subscription& operator=(subscription&& other) noexcept {
      if (this != &other) {
        request_stop();
        member_ = std::move(other.member_);
      }
      return *this;
    }
    subscription(const subscription&) = delete;
    subscription& operator=(const subscription&) = delete;
    ~subscription() { request_stop(); }

    /// Leaves the group: interrupts retry waits at once, waits up to options::drain_timeout for
    /// the handlers in flight (their messages are committed), then cancels those still running
    /// (their messages stay uncommitted) and returns once they ended.
    asio::awaitable<void> stop() {
      if (!member_) co_return;
      auto m = std::move(member_);
      m->request_stop();
      co_await m->done.async_wait(asio::use_awaitable);
    }

  private:
    friend class event_bus;
    explicit subscription(std::shared_ptr<member> m) : member_(std::move(m)) {}
    void request_stop() {
      if (member_) member_->request_stop();
    }
    std::shared_ptr<member> member_;
  };

  explicit event_bus(asio::any_io_executor executor) : event_bus(std::move(executor), options{}) {}
  event_bus(asio::any_io_executor executor, options opts)
      : state_(std::make_shared<state>(std::move(executor), std::move(opts))) {}
  event_bus(const event_bus&) = delete;
  event_bus& operator=(const event_bus&) = delete;
  ~event_bus() { state_->request_stop_all(); }

  /// Appends m to its partition of topic; completes at once (memory is the durable store).
  /// errc::rejected when the partition's backlog is full or the bus is stopping.
  task<delivery> publish(std::string_view topic, message m) { co_return state_->append(topic, std::move(m), false); }

  /// Joins group o.group on o.topic; `handler` runs on the member's strand, one message at a
  /// time per partition. Errors: errc::invalid_argument (empty topic or group, no handler),
  /// errc::rejected (stopping).
  task<subscription> subscribe(subscribe_options o, message_handler handler) {
    if (!handler) co_return error(errc::invalid_argument, "subscribe needs a handler");
    o.max_batch = 1;
    co_return start_member(std::move(o), detail::one_at_a_time(std::move(handler)));
  }

  /// Joins group o.group on o.topic; `handler` gets up to o.max_batch consecutive messages of
  /// one partition at a time, on the member's strand (event_bus.hpp, "Batches"). Errors: those
  /// of subscribe(), and errc::invalid_argument for o.max_batch == 0.
  task<subscription> subscribe_batch(subscribe_options o, batch_handler handler) {
    if (!handler) co_return error(errc::invalid_argument, "subscribe_batch needs a handler");
    if (o.max_batch == 0) co_return error(errc::invalid_argument, "subscribe_batch needs max_batch >= 1");
    co_return start_member(std::move(o), std::move(handler));
  }

  /// Refuses new publishes and subscriptions, stops every member (each drains as
  /// subscription::stop() does) and waits for them. Messages are durable once published, so
  /// there is nothing to flush.
  asio::awaitable<void> stop() {
    auto members = state_->request_stop_all();
    for (auto& m : members) co_await m->done.async_wait(asio::use_awaitable);
  }

  /// The group's committed offset on one partition (the next offset it will read), if the
  /// group exists.
  std::optional<std::int64_t> committed(std::string_view topic, std::string_view group, std::int32_t partition) const {
    std::lock_guard lock(state_->mutex);
    auto t = state_->topics.find(topic);
    if (t == state_->topics.end() || partition < 0 || partition >= t->second->partition_count()) return std::nullopt;
    auto g = t->second->groups.find(group);
    if (g == t->second->groups.end()) return std::nullopt;
    return g->second.committed[static_cast<std::size_t>(partition)];
  }

  /// One past the last offset of a partition (0 for an unknown topic).
  std::int64_t end_offset(std::string_view topic, std::int32_t partition) const {
    std::lock_guard lock(state_->mutex);
    auto t = state_->topics.find(topic);
    if (t == state_->topics.end() || partition < 0 || partition >= t->second->partition_count()) return 0;
    return t->second->partitions[static_cast<std::size_t>(partition)].end();
  }

  /// Messages a partition holds now (committed ones not yet dropped included; 0 for an
  /// unknown topic).
  std::size_t retained(std::string_view topic, std::int32_t partition) const {
    std::lock_guard lock(state_->mutex);
    auto t = state_->topics.find(topic);
    if (t == state_->topics.end() || partition < 0 || partition >= t->second->partition_count()) return 0;
    return t->second->partitions[static_cast<std::size_t>(partition)].log.size();
  }

  /// The partition a key maps to (stable for the life of the process).
  std::int32_t partition_of(std::string_view key) const {
    return static_cast<std::int32_t>(std::hash<std::string_view>{}(key) %
                                     static_cast<std::size_t>(state_->opts.partitions));
  }

private:
  result<subscription> start_member(subscribe_options o, batch_handler handler) {
    if (o.topic.empty() || o.group.empty()) return error(errc::invalid_argument, "subscribe needs a topic and a group");
    auto joined = state_->join(std::move(o), std::move(handler));
    if (!joined) return joined.error();
    auto m = std::move(joined).value();
    asio::co_spawn(m->strand, member::run(m), asio::detached);
    return subscription(std::move(m));
  }

  struct partition_log {
    std::deque<std::shared_ptr<const message>> log;
    std::int64_t base = 0;              // offset of log.front()
    std::size_t commits_since_trim = 0; // commits by any group since the last trim
    metrics::gauge* backlog = nullptr;  // bulwark_bus_backlog_messages, when metrics are on
    std::int64_t end() const { return base + static_cast<std::int64_t>(log.size()); }
  };

  struct group_state {
    std::vector<std::int64_t> committed; // per partition: the next offset to handle
    std::vector<member*> members;        // in join order
    std::vector<member*> owner;          // per partition
    std::vector<member*> in_flight;      // per partition: whose worker runs on it
    std::vector<metrics::gauge*> lag;    // per partition, when metrics are on
  };

  struct topic_state {
    std::string name;
    std::vector<partition_log> partitions;
    std::map<std::string, group_state, std::less<>> groups;
    std::uint64_t round_robin = 0;
    std::int32_t partition_count() const { return static_cast<std::int32_t>(partitions.size()); }
  };

  struct state : std::enable_shared_from_this<state> {
    state(asio::any_io_executor ex, options o) : executor(std::move(ex)), opts(std::move(o)) {
      opts.partitions = std::max<std::int32_t>(1, opts.partitions);
      opts.max_backlog = std::max<std::size_t>(1, opts.max_backlog);
      opts.trim_every = std::max<std::size_t>(1, opts.trim_every);
      if (opts.metrics) gauges.emplace(*opts.metrics);
    }

    asio::any_io_executor executor;
    options opts;
    std::optional<metrics::event_bus_gauges> gauges;
    mutable std::mutex mutex;
    std::map<std::string, std::unique_ptr<topic_state>, std::less<>> topics;
    std::vector<std::weak_ptr<member>> members;
    bool stopping = false;

    topic_state& topic_locked(std::string_view name) {
      auto it = topics.find(name);
      if (it == topics.end()) {
        auto t = std::make_unique<topic_state>();
        t->name = std::string(name);
        t->partitions.resize(static_cast<std::size_t>(opts.partitions));
        if (gauges)
          for (std::size_t p = 0; p < t->partitions.size(); ++p)
            t->partitions[p].backlog = &gauges->backlog_of(t->name, static_cast<int>(p));
        it = topics.emplace(t->name, std::move(t)).first;
      }
      return *it->second;
    }

    // The gauges of partition p after a change (metrics on): what it holds, each group's lag.
    static void update_gauges_locked(topic_state& t, std::size_t p) {
      auto& part = t.partitions[p];
      if (!part.backlog) return;
      part.backlog->set(static_cast<double>(part.log.size()));
      for (auto& [name, g] : t.groups) g.lag[p]->set(static_cast<double>(part.end() - g.committed[p]));
    }

    // `parking`: a dead letter from a member, accepted while the bus stops (its members drain).
    result<delivery> append(std::string_view topic_name, message m, bool parking) {
      if (topic_name.empty()) return error(errc::invalid_argument, "empty topic");
      std::lock_guard lock(mutex);
      if (stopping && !parking) return error(errc::rejected, "event bus is stopping");
      auto& t = topic_locked(topic_name);
      const auto n = static_cast<std::size_t>(t.partition_count());
      const auto p = m.key.empty() ? t.round_robin++ % n : std::hash<std::string_view>{}(m.key) % n;
      auto& part = t.partitions[p];
      if (part.log.size() >= opts.max_backlog) {
        trim_locked(t, p);
        if (part.log.size() >= opts.max_backlog)
          return error(errc::rejected, "partition " + std::to_string(p) + " of '" + t.name + "' holds " +
                                           std::to_string(part.log.size()) + " uncommitted messages (max_backlog)");
      }
      part.log.push_back(std::make_shared<const message>(std::move(m)));
      // A running worker finds the message itself (it looks under this lock): only an idle
      // partition wakes its owner, so a busy member costs the publisher no wake-up.
      for (auto& [name, g] : t.groups)
        if (auto* owner = g.owner[p]; owner && !g.in_flight[p]) owner->wake.notify();
      update_gauges_locked(t, p);
      return delivery{static_cast<std::int32_t>(p), part.end() - 1};
    }

    // Drops the messages every group has committed. A topic nobody subscribes to keeps all.
    static void trim_locked(topic_state& t, std::size_t p) {
      auto& part = t.partitions[p];
      part.commits_since_trim = 0;
      if (t.groups.empty()) return;
      std::int64_t floor = part.end();
      for (auto& [name, g] : t.groups) floor = std::min(floor, g.committed[p]);
      if (floor <= part.base) return;
      const auto n = std::min<std::int64_t>(floor - part.base, static_cast<std::int64_t>(part.log.size()));
      part.log.erase(part.log.begin(), part.log.begin() + n);
      part.base += n;
      if (part.backlog) part.backlog->set(static_cast<double>(part.log.size()));
    }

    result<std::shared_ptr<member>> join(subscribe_options o, batch_handler handler) {
      std::lock_guard lock(mutex);
      if (stopping) return error(errc::rejected, "event bus is stopping");
      auto& t = topic_locked(o.topic);
      auto [git, fresh] = t.groups.try_emplace(o.group);
      auto& g = git->second;
      const auto n = t.partitions.size();
      if (fresh) {
        g.committed.resize(n);
        g.owner.assign(n, nullptr);
        g.in_flight.assign(n, nullptr);
        for (std::size_t p = 0; p < n; ++p) {
          g.committed[p] = o.start == start_from::earliest ? t.partitions[p].base : t.partitions[p].end();
          if (gauges) g.lag.push_back(&gauges->lag_of(t.name, git->first, static_cast<int>(p)));
        }
        for (std::size_t p = 0; p < n; ++p) update_gauges_locked(t, p);
      }
      auto m = std::make_shared<member>(*this, t, g, std::move(o), std::move(handler));
      m->bus = shared_from_this();
      g.members.push_back(m.get());
      rebalance_locked(g);
      members.push_back(m);
      return m;
    }

    void leave_locked(member& m) {
      auto& g = *m.group;
      std::erase(g.members, &m);
      for (auto& f : g.in_flight)
        if (f == &m) f = nullptr;
      rebalance_locked(g);
      std::erase_if(members, [&](const std::weak_ptr<member>& w) {
        auto s = w.lock();
        return !s || s.get() == &m;
      });
    }

    static void rebalance_locked(group_state& g) {
      for (std::size_t p = 0; p < g.owner.size(); ++p)
        g.owner[p] = g.members.empty() ? nullptr : g.members[p % g.members.size()];
      for (auto* m : g.members) m->wake.notify();
    }

    std::vector<std::shared_ptr<member>> request_stop_all() {
      std::vector<std::shared_ptr<member>> live;
      {
        std::lock_guard lock(mutex);
        stopping = true;
        for (auto& w : members)
          if (auto m = w.lock()) live.push_back(std::move(m));
      }
      for (auto& m : live) m->request_stop();
      return live;
    }
  };

  // One partition's worker of a member (strand only): delivers that partition's messages a
  // batch at a time while the member owns it and it has messages.
  struct partition_worker {
    explicit partition_worker(std::size_t p) : partition(p) {}
    std::size_t partition;
    asio::cancellation_signal interrupt; ///< bound to the worker's coroutine: stops its awaits
    bool running = false;
    bool waiting = false; ///< between two attempts (or parks): interrupted at once by a stop
    // The batch in flight (kept between batches: no allocation per batch). `held` keeps the
    // messages alive (a trim may drop them from the log), `batch` holds views into them.
    std::vector<std::shared_ptr<const message>> held;
    std::vector<envelope> batch;
  };

  struct member : std::enable_shared_from_this<member> {
    member(state& s, topic_state& t, group_state& g, subscribe_options o, batch_handler h)
        : topic(&t), group(&g), opts(std::move(o)), dead_letter_topic(opts.dead_letter_topic_name()),
          handler(std::move(h)), strand(asio::make_strand(s.executor)), rng(std::random_device{}()) {
      for (std::size_t p = 0; p < t.partitions.size(); ++p) workers.push_back(std::make_shared<partition_worker>(p));
    }

    std::shared_ptr<state> bus;
    topic_state* topic;
    group_state* group;
    subscribe_options opts;
    std::string dead_letter_topic;
    batch_handler handler;
    asio::strand<asio::any_io_executor> strand;
    asio::cancellation_signal grace_cancel; // ends the drain period's wait once drained
    std::mt19937_64 rng;
    std::vector<std::shared_ptr<partition_worker>> workers; // per partition
    bool grace_over = false;
    detail::notifier wake;
    detail::latch_event done;
    std::atomic<bool> stop_requested{false};

    void request_stop() {
      if (stop_requested.exchange(true)) return;
      wake.notify();
    }

    bool busy() const {
      return std::any_of(workers.begin(), workers.end(), [](const auto& w) { return w->running; });
    }

    // Under the lock: commits through `handled` (an offset of partition p) if any, then, unless
    // `give_up`, takes the next batch of p (up to opts.max_batch messages into `held`, the first
    // at `offset`) if this member still owns it and is not stopping; otherwise gives p up.
    // Returns whether it took a batch.
    bool next_locked(std::size_t p, std::optional<std::int64_t> handled, bool give_up,
                     std::vector<std::shared_ptr<const message>>& held, std::int64_t& offset) {
      auto& g = *group;
      auto& part = topic->partitions[p];
      if (handled) {
        g.committed[p] = std::max(g.committed[p], *handled + 1);
        if (++part.commits_since_trim >= bus->opts.trim_every) state::trim_locked(*topic, p);
        if (!g.lag.empty()) g.lag[p]->set(static_cast<double>(part.end() - g.committed[p]));
      }
      auto& pos = g.committed[p];
      if (pos < part.base) pos = part.base;
      held.clear();
      if (!give_up && !stop_requested && g.owner[p] == this && pos < part.end()) {
        offset = pos;
        const auto first = part.log.begin() + (pos - part.base);
        const auto n = std::min<std::int64_t>(part.end() - pos, static_cast<std::int64_t>(opts.max_batch));
        held.assign(first, first + n);
        return true;
      }
      g.in_flight[p] = nullptr;
      if (g.owner[p] && g.owner[p] != this) g.owner[p]->wake.notify();
      if (pos >= part.end()) state::trim_locked(*topic, p); // caught up: drop what all committed
      return false;
    }

    // Strand: starts a worker on every owned partition that has messages and no worker.
    void start_workers(const std::shared_ptr<member>& self) {
      std::vector<std::shared_ptr<partition_worker>> start;
      {
        std::lock_guard lock(bus->mutex);
        auto& g = *group;
        for (std::size_t p = 0; p < workers.size(); ++p) {
          if (g.owner[p] != this || g.in_flight[p] || workers[p]->running) continue;
          auto& part = topic->partitions[p];
          if (std::max(g.committed[p], part.base) >= part.end()) continue;
          g.in_flight[p] = this;
          start.push_back(workers[p]);
        }
      }
      for (auto& w : start) {
        w->running = true;
        asio::co_spawn(strand, work(self, w), asio::bind_cancellation_slot(w->interrupt.slot(), asio::detached));
      }
    }

    static asio::awaitable<void> work(std::shared_ptr<member> self, std::shared_ptr<partition_worker> w) {
      auto interrupted = [&] { return self->stop_requested.load(); };
      auto park = [&](const std::string& topic, message m) -> task<delivery> {
        co_return self->bus->append(topic, std::move(m), true);
      };
      auto wait = [&](std::chrono::milliseconds d) -> asio::awaitable<bool> {
        if (interrupted()) co_return false;
        w->waiting = true;
        auto backoff_wait = self->bus->opts.clock.wait_for(d);
        const bool reached = co_await std::move(backoff_wait);
        w->waiting = false;
        co_return reached && !interrupted();
      };
      const auto p = w->partition;
      std::optional<std::int64_t> handled;
      bool give_up = false; // a batch ended interrupted: commit what it finished, take no more
      for (;;) {
        std::int64_t offset = 0;
        bool took = false;
        {
          std::lock_guard lock(self->bus->mutex);
          took = self->next_locked(p, handled, give_up, w->held, offset);
        }
        handled.reset(); // committed
        if (!took) break;
        w->batch.clear();
        for (const auto& msg : w->held)
          w->batch.push_back({self->topic->name, static_cast<std::int32_t>(p), offset + std::ssize(w->batch), 1,
                              msg->key, msg->value, msg->headers});
        std::size_t done = 0;
        if (w->batch.size() == 1) { // no deliver_batch frame: a one-message member costs what it did
          const auto outcome = co_await detail::deliver(w->batch[0], self->handler, self->opts.retry,
                                                        self->dead_letter_topic, park, wait, interrupted, self->rng);
          done = outcome == detail::delivery_outcome::commit ? 1 : 0;
        } else {
          done = co_await detail::deliver_batch(w->batch, self->handler, self->opts.retry, self->dead_letter_topic,
                                                park, wait, interrupted, self->rng);
        }
        if (done > 0) handled = offset + static_cast<std::int64_t>(done) - 1;
        give_up = done < w->batch.size();
      }
      w->held.clear(); // an idle partition keeps no message alive
      w->running = false;
      self->wake.notify();
    }

    // Strand: the end of the drain period.
    static asio::awaitable<void> grace(std::shared_ptr<member> self) {
      if (!self->busy()) co_return; // drained before this started: nothing would cancel it later
      auto period = self->bus->opts.clock.wait_for(self->bus->opts.drain_timeout);
      const bool reached = co_await std::move(period);
      if (!reached) co_return;
      self->grace_over = true;
      self->wake.notify();
    }

    static asio::awaitable<void> run(std::shared_ptr<member> self) {
      while (!self->stop_requested) {
        self->start_workers(self);
        co_await self->wake.async_wait(asio::use_awaitable);
      }
      // Drain: no retry waits any more, the handlers in flight get the drain period.
      for (auto& w : self->workers)
        if (w->running && w->waiting) w->interrupt.emit(asio::cancellation_type::terminal);
      if (self->busy()) {
        asio::co_spawn(self->strand, grace(self),
                       asio::bind_cancellation_slot(self->grace_cancel.slot(), asio::detached));
        bool cancelled = false;
        while (self->busy()) {
          if (self->grace_over && !cancelled) {
            cancelled = true;
            for (auto& w : self->workers)
              if (w->running) w->interrupt.emit(asio::cancellation_type::terminal);
          }
          co_await self->wake.async_wait(asio::use_awaitable);
        }
        self->grace_cancel.emit(asio::cancellation_type::terminal);
      }
      {
        std::lock_guard lock(self->bus->mutex);
        self->bus->leave_locked(*self);
      }
      self->done.set();
    }
  };

  std::shared_ptr<state> state_;
};

static_assert(bulwark::event_bus<event_bus>, "memory::event_bus must model bulwark::event_bus");
static_assert(bulwark::batch_event_bus<event_bus>, "memory::event_bus must model bulwark::batch_event_bus");

} // namespace bulwark::memory
