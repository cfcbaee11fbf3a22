#pragma once
// memory::event_bus: the in-memory model of bulwark::event_bus (the embedded default).
//
// Topics have a fixed number of partitions; a message's key picks its partition (a message
// without key goes round-robin). Each consumer group keeps a committed offset per partition;
// the partitions of a topic are spread over the group's members and rebalanced when one joins
// or leaves. A member handles one message at a time: offsets are committed after its handler
// succeeded, in order, so per-key order and at-least-once delivery hold. A failing message is
// retried with backoff, then dead-lettered. Memory is bounded: a partition keeps at most
// `max_backlog` messages that some group has not committed yet, and refuses (errc::rejected)
// further publishes until consumers catch up; committed messages are dropped.
//
// Thread-safe: publish from any thread; each member runs on a strand of the bus's executor.

#include <bulwark/detail/notifier.hpp>
#include <bulwark/event_bus.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
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
  };

  /// A member of a consumer group. stop() drains; dropping it without stop() asks the member
  /// to stop without waiting.
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

    /// Leaves the group once the message in flight is handled and committed.
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
      : state_(std::make_shared<state>(std::move(executor), opts)) {}
  event_bus(const event_bus&) = delete;
  event_bus& operator=(const event_bus&) = delete;
  ~event_bus() { state_->request_stop_all(); }

  /// Appends m to its partition of topic; completes at once (memory is the durable store).
  /// errc::rejected when the partition's backlog is full or the bus is stopping.
  task<delivery> publish(std::string_view topic, message m) { co_return state_->append(topic, std::move(m)); }

  /// Joins group o.group on o.topic; `handler` runs on the member's strand.
  task<subscription> subscribe(subscribe_options o, message_handler handler) {
    if (o.topic.empty() || o.group.empty())
      co_return error(errc::invalid_argument, "subscribe needs a topic and a group");
    if (!handler) co_return error(errc::invalid_argument, "subscribe needs a handler");
    if (o.max_attempts == 0) o.max_attempts = 1;
    auto joined = state_->join(std::move(o), std::move(handler));
    if (!joined) co_return joined.error();
    auto m = std::move(joined).value();
    asio::co_spawn(m->strand, member::run(m), asio::detached);
    co_return subscription(std::move(m));
  }

  /// Refuses new publishes and subscriptions, stops every member and waits for them to drain.
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

  /// The partition a key maps to (stable for the life of the process).
  std::int32_t partition_of(std::string_view key) const {
    return static_cast<std::int32_t>(std::hash<std::string_view>{}(key) %
                                     static_cast<std::size_t>(state_->opts.partitions));
  }

private:
  struct partition_log {
    std::deque<std::shared_ptr<const message>> log;
    std::int64_t base = 0; // offset of log.front()
    std::int64_t end() const { return base + static_cast<std::int64_t>(log.size()); }
  };

  struct group_state {
    std::vector<std::int64_t> committed; // per partition: the next offset to handle
    std::vector<member*> members;        // in join order
    std::vector<member*> owner;          // per partition
    std::vector<member*> in_flight;      // per partition: who holds an unfinished message
  };

  struct topic_state {
    std::string name;
    std::vector<partition_log> partitions;
    std::map<std::string, group_state, std::less<>> groups;
    std::uint64_t round_robin = 0;
    std::int32_t partition_count() const { return static_cast<std::int32_t>(partitions.size()); }
  };

  struct state : std::enable_shared_from_this<state> {
    state(asio::any_io_executor ex, options o) : executor(std::move(ex)), opts(o) {
      opts.partitions = std::max<std::int32_t>(1, opts.partitions);
      opts.max_backlog = std::max<std::size_t>(1, opts.max_backlog);
    }

    asio::any_io_executor executor;
    options opts;
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
        it = topics.emplace(t->name, std::move(t)).first;
      }
      return *it->second;
    }

    result<delivery> append(std::string_view topic_name, message m) {
      if (topic_name.empty()) return error(errc::invalid_argument, "empty topic");
      std::lock_guard lock(mutex);
      if (stopping) return error(errc::rejected, "event bus is stopping");
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
      for (auto& [name, g] : t.groups)
        if (auto* owner = g.owner[p]) owner->wake.notify();
      return delivery{static_cast<std::int32_t>(p), part.end() - 1};
    }

    // Drops the messages every group has committed. A topic nobody subscribes to keeps all.
    static void trim_locked(topic_state& t, std::size_t p) {
      if (t.groups.empty()) return;
      auto& part = t.partitions[p];
      std::int64_t floor = part.end();
      for (auto& [name, g] : t.groups) floor = std::min(floor, g.committed[p]);
      while (part.base < floor && !part.log.empty()) {
        part.log.pop_front();
        ++part.base;
      }
    }

    result<std::shared_ptr<member>> join(subscribe_options o, message_handler handler) {
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
        for (std::size_t p = 0; p < n; ++p)
          g.committed[p] = o.start == start_from::earliest ? t.partitions[p].base : t.partitions[p].end();
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

  struct member : std::enable_shared_from_this<member> {
    member(state& s, topic_state& t, group_state& g, subscribe_options o, message_handler h)
        : topic(&t), group(&g), opts(std::move(o)), handler(std::move(h)), strand(asio::make_strand(s.executor)),
          backoff_timer(strand), rng(std::random_device{}()) {}

    std::shared_ptr<state> bus;
    topic_state* topic;
    group_state* group;
    subscribe_options opts;
    message_handler handler;
    asio::strand<asio::any_io_executor> strand;
    asio::steady_timer backoff_timer;
    std::mt19937_64 rng;
    detail::notifier wake;
    detail::latch_event done;
    std::atomic<bool> stop_requested{false};
    std::size_t cursor = 0;

    void request_stop() {
      if (stop_requested.exchange(true)) return;
      wake.notify();
      asio::post(strand, [self = shared_from_this()]() { self->backoff_timer.cancel(); });
    }

    struct work {
      std::shared_ptr<const message> msg;
      std::size_t partition = 0;
      std::int64_t offset = 0;
    };

    // Under the lock: commit what was handled, then take the next message of a partition this
    // member owns and nobody else has in flight. Stays on one partition for a run of messages.
    std::optional<work> next_locked(const std::optional<work>& handled, std::size_t& run) {
      auto& g = *group;
      if (handled) {
        const auto p = handled->partition;
        g.committed[p] = std::max(g.committed[p], handled->offset + 1);
        g.in_flight[p] = nullptr;
        if (g.owner[p] && g.owner[p] != this) g.owner[p]->wake.notify();
      }
      const auto n = topic->partitions.size();
      if (run >= 64) {
        cursor = (cursor + 1) % n;
        run = 0;
      }
      for (std::size_t i = 0; i < n; ++i) {
        const auto p = (cursor + i) % n;
        if (g.owner[p] != this || (g.in_flight[p] && g.in_flight[p] != this)) continue;
        auto& part = topic->partitions[p];
        auto& pos = g.committed[p];
        if (pos < part.base) pos = part.base;
        if (pos >= part.end()) continue;
        if (p != cursor) run = 0;
        cursor = p;
        ++run;
        g.in_flight[p] = this;
        return work{part.log[static_cast<std::size_t>(pos - part.base)], p, pos};
      }
      return std::nullopt;
    }

    asio::awaitable<result<void>> handle(const work& w, unsigned attempt) {
      envelope e{topic->name,   static_cast<std::int32_t>(w.partition), w.offset, attempt, w.msg->key, w.msg->value,
                 w.msg->headers};
      try {
        co_return co_await handler(e);
      } catch (const std::exception& ex) {
        co_return error(errc::rejected, std::string("handler threw: ") + ex.what());
      } catch (...) {
        co_return error(errc::rejected, "handler threw a non-standard exception");
      }
    }

    // Handles one message until it succeeds or is dead-lettered (true: commit it), or until
    // a stop interrupts its retries (false: leave it uncommitted for the next member).
    asio::awaitable<bool> deliver(const work& w) {
      for (unsigned attempt = 1;; ++attempt) {
        auto outcome = co_await handle(w, attempt);
        if (outcome) co_return true;
        if (attempt >= opts.max_attempts) {
          envelope e{topic->name,   static_cast<std::int32_t>(w.partition), w.offset, attempt, w.msg->key, w.msg->value,
                     w.msg->headers};
          auto parked = bus->append(opts.dead_letter_topic_name(), make_dead_letter(e, outcome.error(), attempt));
          co_return parked.has_value();
        }
        if (stop_requested) co_return false;
        backoff_timer.expires_after(opts.retry_backoff.delay(attempt, rng));
        co_await backoff_timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
        if (stop_requested) co_return false;
      }
    }

    static asio::awaitable<void> run(std::shared_ptr<member> self) {
      std::optional<work> handled;
      std::size_t run = 0;
      for (;;) {
        std::optional<work> next;
        {
          std::lock_guard lock(self->bus->mutex);
          if (self->stop_requested) {
            if (handled) self->next_locked(handled, run);
            break;
          }
          next = self->next_locked(handled, run);
          handled.reset();
        }
        if (!next) {
          co_await self->wake.async_wait(asio::use_awaitable);
          continue;
        }
        if (co_await self->deliver(*next)) {
          handled = std::move(next);
        } else {
          std::lock_guard lock(self->bus->mutex);
          self->group->in_flight[next->partition] = nullptr;
        }
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

} // namespace bulwark::memory
