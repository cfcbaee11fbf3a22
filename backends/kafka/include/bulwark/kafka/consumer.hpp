#pragma once
// kafka::consumer: one member of a consumer group whose handler is a coroutine.
//
// Threads: a consumer thread polls librdkafka (rd_kafka_consumer_poll, which also runs the
// rebalance callback) and posts batches of messages to a strand on the caller's executor.
// On the strand, every assigned partition has a worker that runs the handler for its messages
// one at a time, in offset order, so messages with one key (one partition) keep their order.
// A batch member (start_batch, event_bus.hpp "Batches") runs its handler over up to
// subscribe_options::max_batch messages at a time: the front of the partition's queue, what
// the member holds then (it never waits for more); a one-message member is the same worker
// with batches of one.
//
// At-least-once: a message's offset is stored (rd_kafka_offset_store, offset + 1) only after
// its handler succeeded, or after it was parked on the dead-letter topic (a batch's: the last
// offset of the messages detail::deliver_batch finished); librdkafka commits
// stored offsets every config::commit_interval (a second), and the consumer commits synchronously when partitions are
// revoked and on stop. Each message goes through detail::deliver (bulwark/detail/delivery.hpp:
// retries under the subscription's retry_policy, then the dead-letter topic), the rules every
// bus shares; this member supplies the park (the bus's producer) and the wait (the real
// bulwark::clock, cancelled by a revoke or a stop).
//
// Bounds: a partition holds at most config::max_buffered_per_partition messages (polled, not
// yet handled; the one in flight included). The consumer thread counts each polled message on
// its partition's gate and pauses the partition as soon as the count reaches the bound:
// librdkafka's pause raises a version barrier at once, so no later poll returns a message of
// that partition, and on resume it fetches from the one after the last message returned. The
// strand counts handled messages out and resumes the partition at half the bound. A revoke
// leaves no partition paused: librdkafka keeps an application's pause through a revoke and a
// re-assignment, and a partition paused then would never be fetched again.
//
// A rebalance or a stop interrupts retry waits at once and waits (up to config::drain_timeout)
// for the handler in flight; then it emits the cancellation slot of a handler still running
// (event_bus.hpp, "Stopping"). Queued messages are dropped uncommitted and redelivered to the
// next owner. A handler that outlives the drain is abandoned: the revoke closes its partition's
// gate before it commits, and a closed gate stores no offset, so the old owner never commits
// past that message even if its handler completes later.

#include <bulwark/clock.hpp>
#include <bulwark/detail/delivery.hpp>
#include <bulwark/event_bus.hpp>
#include <bulwark/kafka/config.hpp>
#include <bulwark/kafka/detail/handle.hpp>
#include <bulwark/kafka/error.hpp>
#include <bulwark/metrics/event_bus.hpp>
#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace bulwark::kafka {

/// A snapshot of one member's buffering (consumer::stats()); every figure is read atomically,
/// the snapshot as a whole is not.
struct consumer_stats {
  std::size_t buffered = 0;          ///< messages polled and not yet handled (or dropped), those in flight included
  std::size_t max_buffered = 0;      ///< the most one partition ever held: never above max_buffered_per_partition
  std::size_t paused_partitions = 0; ///< partitions paused now because their buffer was full
  std::size_t pauses = 0;            ///< times a partition was paused
  std::size_t resumes = 0;           ///< times a partition was resumed
  std::size_t processed = 0;         ///< messages handled (or dead-lettered) and stored for commit
};

/// Publishes a dead letter: (topic, message) -> delivery.
using dead_letter_publisher = std::function<task<delivery>(const std::string&, message)>;

namespace detail {

struct message_deleter {
  void operator()(rd_kafka_message_t* m) const noexcept { rd_kafka_message_destroy(m); }
};
using message_ptr = std::unique_ptr<rd_kafka_message_t, message_deleter>;

/// One assignment of one partition: how many of its messages the member holds, and whether it
/// is paused for that. The consumer thread counts messages in (and pauses), the strand counts
/// them out (and resumes); pause and resume happen under `m`.
struct partition_gate {
  explicit partition_gate(std::int32_t p) : partition(p) {}
  std::int32_t partition;
  std::atomic<std::size_t> held{0}; ///< polled, not yet handled or dropped
  std::atomic<bool> paused{false};  ///< written under m; read without it as a hint
  std::mutex m;
  bool revoked = false;                 ///< under m: the assignment ended, no pause, resume or offset store any more
  std::atomic<std::int64_t> stored{-1}; ///< the last offset stored + 1 (-1: none yet), for the lag gauge
  std::int64_t first_polled = -1;       ///< consumer thread: the assignment's first message, for the lag gauge
};

/// A polled message and the gate that counted it.
struct polled {
  message_ptr message;
  std::shared_ptr<partition_gate> gate;
};

struct partition_worker {
  partition_worker(std::int32_t p, std::shared_ptr<partition_gate> g) : partition(p), gate(std::move(g)) {}
  std::int32_t partition;
  std::shared_ptr<partition_gate> gate; ///< counted every message in queue
  std::deque<message_ptr> queue;        ///< its front is the batch in flight while running
  bool running = false;
  bool revoked = false;
  bool waiting = false;                ///< between two attempts (or parks): a revoke or stop cancels at once
  asio::cancellation_signal interrupt; ///< bound to the worker's coroutine
  std::function<void()> on_drained;    ///< set by a revoke that waits for this worker
  // The batch in flight: views into the queue's first messages, and each message's headers
  // (kept between batches: no allocation per batch once they reached max_batch).
  std::vector<envelope> batch;
  std::vector<std::vector<header>> headers;
};

struct consumer_state : std::enable_shared_from_this<consumer_state> {
  consumer_state(asio::any_io_executor ex, config c, subscribe_options o, batch_handler h, dead_letter_publisher d)
      : cfg(std::move(c)), options(std::move(o)), handler(std::move(h)), publish_dead_letter(std::move(d)),
        strand(asio::make_strand(ex)), keep_running(asio::prefer(ex, asio::execution::outstanding_work.tracked)),
        rng(std::random_device{}()) {
    if (cfg.metrics) gauges.emplace(*cfg.metrics);
  }

  ~consumer_state() {
    closing = true;
    if (thread.joinable()) {
      // The last owner may be the consumer thread itself (a callback's temporary reference).
      if (thread.get_id() == std::this_thread::get_id())
        thread.detach();
      else
        thread.join();
    }
    workers.clear(); // messages must be destroyed before the handle
    pending.clear();
    // run() closed the consumer (its last step); destroying it is bounded (see detail/handle.hpp).
    (void)detail::destroy_closed_consumer_within(rk.release(), cfg.destroy_timeout);
  }

  std::size_t bound() const { return std::max<std::size_t>(1, cfg.max_buffered_per_partition); }

  config cfg;
  subscribe_options options; ///< options.max_batch: 1 for a one-message member
  batch_handler handler;
  dead_letter_publisher publish_dead_letter;
  asio::strand<asio::any_io_executor> strand;
  /// A running member is work: io_context::run() does not return while it consumes.
  asio::any_io_executor keep_running;
  handle rk;
  std::thread thread;
  std::atomic<bool> closing{false};  ///< the consumer thread closes and exits
  std::atomic<bool> stopping{false}; ///< workers finish the message in flight, start no other
  std::atomic<bool> thread_done{false};
  std::atomic<bool> assigned{false};
  std::atomic<std::size_t> assigned_partitions{0}; ///< gates.size(), for start()
  std::atomic<std::size_t> processed{0};
  std::atomic<std::size_t> running_workers{0}; ///< worker coroutines not yet ended, for stop()
  // Buffering figures for stats().
  std::atomic<std::size_t> buffered{0}, max_buffered{0}, paused_partitions{0}, pauses{0}, resumes{0};
  // --- consumer thread only ---
  static constexpr std::size_t max_batch = 4096;
  std::vector<polled> pending;                                   ///< polled, not yet handed to the strand
  std::map<std::int32_t, std::shared_ptr<partition_gate>> gates; ///< the assigned partitions
  std::atomic<int> batches_in_flight{0};                         ///< posted batches the strand has not dispatched
  std::mutex hand_over_mutex;                                    ///< with hand_over: a full batch waits for the strand
  std::condition_variable hand_over;                             ///< notified when the strand dispatched a batch
  std::mutex error_mutex;
  error last_error;                                ///< the last consumer error librdkafka reported (for diagnostics)
  std::optional<metrics::event_bus_gauges> gauges; ///< when cfg.metrics is set
  std::chrono::steady_clock::time_point next_report{}; ///< consumer thread only

  // --- strand only ---
  std::map<std::int32_t, std::shared_ptr<partition_worker>> workers;
  std::mt19937_64 rng;

  bool cooperative() const { return std::strcmp(rd_kafka_rebalance_protocol(rk.get()), "COOPERATIVE") == 0; }

  // --- consumer thread --------------------------------------------------------------------
  void run() {
    while (!closing.load()) {
      if (pending.size() >= max_batch) {
        // A full batch waits until the strand took the last one: one batch in flight at a
        // time, so a busy executor slows the polling down instead of piling batches up (and
        // the per-partition counts stay below the bound unless a handler is slow).
        std::unique_lock lock(hand_over_mutex);
        hand_over.wait_for(lock, std::chrono::milliseconds(10),
                           [this] { return batches_in_flight.load() == 0 || closing.load(); });
      } else {
        // While the executor still works through the last batch, keep collecting: fewer,
        // larger hand-overs (each one wakes the executor) when messages arrive faster than
        // handled.
        const bool busy = !pending.empty();
        rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), busy ? 1 : 100);
        while (m) {
          message_ptr owned(m);
          if (m->err)
            record_error(m->err, rd_kafka_message_errstr(m));
          else
            admit(std::move(owned));
          if (pending.size() >= max_batch) break;
          m = rd_kafka_consumer_poll(rk.get(), 0);
        }
      }
      if (!pending.empty() && batches_in_flight.load() == 0) flush_pending();
      if (gauges) report_metrics();
    }
    flush_pending();
    // Runs the revoke callback (drain, commit) and leaves the group.
    rd_kafka_consumer_close(rk.get());
    thread_done = true;
  }

  // Consumer thread, every cfg.metrics_interval: the backlog (high - low watermark, asked of the
  // partition leader) and the group's lag (high watermark - the next offset to handle: the
  // last stored one, else the first one polled, else the fetch position) of every assigned
  // partition.
  void report_metrics() {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_report) return;
    next_report = now + cfg.metrics_interval;
    const int timeout_ms = static_cast<int>(std::min<std::int64_t>(cfg.admin_timeout.count(), 1000));
    for (const auto& [id, g] : gates) {
      std::int64_t low = 0, high = 0;
      if (rd_kafka_query_watermark_offsets(rk.get(), options.topic.c_str(), id, &low, &high, timeout_ms) != 0) continue;
      gauges->backlog_of(options.topic, id).set(static_cast<double>(high - low));
      std::int64_t next = g->stored.load(std::memory_order_relaxed);
      if (next < 0) next = g->first_polled;
      if (next < 0) {
        partition_list at(rd_kafka_topic_partition_list_new(1));
        rd_kafka_topic_partition_list_add(at.get(), options.topic.c_str(), id);
        if (rd_kafka_position(rk.get(), at.get()) == RD_KAFKA_RESP_ERR_NO_ERROR) next = at.get()->elems[0].offset;
      }
      if (next >= 0)
        gauges->lag_of(options.topic, options.group, id)
            .set(static_cast<double>(std::max<std::int64_t>(0, high - next)));
    }
  }

  // Consumer thread: counts a polled message on its partition's gate and pauses the partition
  // when that reaches the bound, before the next poll.
  void admit(message_ptr m) {
    auto it = gates.find(m->partition);
    if (it == gates.end()) return; // not assigned (any more): the owner fetches it
    if (it->second->first_polled < 0) it->second->first_polled = m->offset;
    const auto held = it->second->held.fetch_add(1) + 1;
    buffered.fetch_add(1, std::memory_order_relaxed);
    if (held > max_buffered.load(std::memory_order_relaxed)) max_buffered.store(held, std::memory_order_relaxed);
    if (held >= bound()) set_paused(*it->second, true);
    pending.push_back({std::move(m), it->second});
  }

  // Any thread: pauses a partition whose count reached the bound, or resumes one whose count
  // fell to half of it; the count is read again under the gate's lock, so a pause and a resume
  // racing each other leave the partition in the state its count calls for.
  void set_paused(partition_gate& g, bool pause) {
    std::lock_guard lock(g.m);
    if (g.revoked || g.paused.load() == pause) return;
    const auto held = g.held.load();
    if (pause ? held < bound() : held > bound() / 2) return;
    partition_list list(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(list.get(), options.topic.c_str(), g.partition);
    if (pause) {
      rd_kafka_pause_partitions(rk.get(), list.get());
      paused_partitions.fetch_add(1, std::memory_order_relaxed);
      pauses.fetch_add(1, std::memory_order_relaxed);
    } else {
      rd_kafka_resume_partitions(rk.get(), list.get());
      paused_partitions.fetch_sub(1, std::memory_order_relaxed);
      resumes.fetch_add(1, std::memory_order_relaxed);
    }
    g.paused = pause;
  }

  // Strand: `n` messages counted on `g` were handled or dropped.
  void release(partition_gate& g, std::size_t n) {
    if (n == 0) return;
    const auto left = g.held.fetch_sub(n) - n;
    buffered.fetch_sub(n, std::memory_order_relaxed);
    if (g.paused.load() && left <= bound() / 2) set_paused(g, false);
  }

  // Consumer thread, in the revoke callback, after the drain: the assignment of `ids` ends.
  // librdkafka keeps an application's pause through a revoke and a re-assignment, so a
  // partition left paused would never be fetched again by this member. Usually the drain
  // already resumed it (dropping the queue brings the count to 0); this covers a drain that
  // timed out with a handler still running.
  void close_gates(const std::vector<std::int32_t>& ids) {
    for (auto id : ids) {
      auto it = gates.find(id);
      if (it == gates.end()) continue;
      auto& g = *it->second;
      {
        std::lock_guard lock(g.m);
        if (g.paused.load()) {
          partition_list list(rd_kafka_topic_partition_list_new(1));
          rd_kafka_topic_partition_list_add(list.get(), options.topic.c_str(), g.partition);
          rd_kafka_resume_partitions(rk.get(), list.get());
          g.paused = false;
          paused_partitions.fetch_sub(1, std::memory_order_relaxed);
          resumes.fetch_add(1, std::memory_order_relaxed);
        }
        g.revoked = true;
      }
      gates.erase(it);
    }
  }

  // Consumer thread: hands the collected messages to the strand. Also called first thing in
  // the rebalance callback, so messages always reach the strand before a revoke or an assign.
  void flush_pending() {
    if (pending.empty()) return;
    if (auto self = weak_from_this().lock()) {
      batches_in_flight.fetch_add(1);
      asio::post(strand, [self, b = std::move(pending)]() mutable {
        self->dispatch(b);
        {
          std::lock_guard lock(self->hand_over_mutex); // no lost wake-up for the waiting thread
          self->batches_in_flight.fetch_sub(1);
        }
        self->hand_over.notify_one();
      });
    }
    pending.clear(); // moved from: valid, and empty after clear()
  }

  void record_error(rd_kafka_resp_err_t err, std::string text) {
    std::lock_guard lock(error_mutex);
    last_error = make_error(err, std::move(text));
  }

  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                           void* opaque) {
    auto* self = static_cast<consumer_state*>(opaque);
    self->flush_pending();
    const bool coop = self->cooperative();
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      if (self->options.start == start_from::latest) self->resolve_latest(parts);
      std::vector<std::shared_ptr<partition_gate>> opened;
      for (int i = 0; i < parts->cnt; ++i) {
        auto g = std::make_shared<partition_gate>(parts->elems[i].partition);
        self->gates[g->partition] = g;
        opened.push_back(std::move(g));
      }
      if (auto strong = self->weak_from_this().lock()) {
        asio::post(self->strand, [strong, opened] {
          for (const auto& g : opened)
            strong->workers[g->partition] = std::make_shared<partition_worker>(g->partition, g);
        });
      }
      if (coop) {
        if (auto* e = rd_kafka_incremental_assign(rk, parts)) rd_kafka_error_destroy(e);
      } else {
        rd_kafka_assign(rk, parts);
      }
      self->assigned_partitions = self->gates.size();
      self->assigned = true;
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
      std::vector<std::int32_t> ids;
      for (int i = 0; i < parts->cnt; ++i) ids.push_back(parts->elems[i].partition);
      self->drain(ids);
      self->close_gates(ids);
      self->assigned_partitions = self->gates.size();
      rd_kafka_commit(rk, nullptr, 0); // synchronous: what the handlers finished
      if (coop) {
        if (auto* e = rd_kafka_incremental_unassign(rk, parts)) rd_kafka_error_destroy(e);
      } else {
        rd_kafka_assign(rk, nullptr);
      }
    } else {
      self->record_error(err, "rebalance");
      std::vector<std::int32_t> ids;
      for (const auto& [id, g] : self->gates) ids.push_back(id);
      self->close_gates(ids);
      rd_kafka_assign(rk, nullptr);
    }
  }

  // A metadata request for every topic (the only kind whose answer updates the group's view
  // of its subscription in librdkafka 2.0.2). Blocks up to `timeout`; for start() only.
  void refresh_all_topics(std::chrono::milliseconds timeout) {
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(rk.get(), 1, nullptr, &md, static_cast<int>(timeout.count())) == RD_KAFKA_RESP_ERR_NO_ERROR)
      rd_kafka_metadata_destroy(md);
  }

  // start_from::latest: a partition without a committed offset starts at its end as of the
  // assignment, so that nothing published after subscribe() returned is skipped.
  void resolve_latest(rd_kafka_topic_partition_list_t* parts) {
    const int timeout_ms = static_cast<int>(cfg.admin_timeout.count());
    rd_kafka_committed(rk.get(), parts, timeout_ms);
    for (int i = 0; i < parts->cnt; ++i) {
      auto& p = parts->elems[i];
      if (p.offset >= 0) continue;
      std::int64_t low = 0, high = 0;
      if (rd_kafka_query_watermark_offsets(rk.get(), p.topic, p.partition, &low, &high, timeout_ms) == 0)
        p.offset = high;
      else
        p.offset = RD_KAFKA_OFFSET_END;
    }
  }

  // Waits (up to drain_timeout) until the workers of `ids` finished their message in flight,
  // then cancels the handlers still running (their messages stay uncommitted: close_gates()
  // runs next, before the commit, and a closed gate stores no offset).
  void drain(const std::vector<std::int32_t>& ids) {
    auto self = weak_from_this().lock();
    if (!self) return;
    auto done = std::make_shared<std::promise<void>>();
    auto finished = done->get_future();
    auto draining = std::make_shared<std::vector<std::shared_ptr<partition_worker>>>();
    asio::post(strand, [self, ids, done, draining] { self->revoke(ids, done, *draining); });
    if (finished.wait_for(cfg.drain_timeout) == std::future_status::ready) return;
    asio::post(strand, [draining] {
      for (auto& w : *draining)
        if (w->running) w->interrupt.emit(asio::cancellation_type::terminal);
    });
  }

  // --- strand -------------------------------------------------------------------------------
  void revoke(const std::vector<std::int32_t>& ids, std::shared_ptr<std::promise<void>> done,
              std::vector<std::shared_ptr<partition_worker>>& draining) {
    auto remaining = std::make_shared<std::size_t>(0);
    auto one_drained = [remaining, done] {
      if (--*remaining == 0) done->set_value();
    };
    ++*remaining; // held until every worker is looked at
    for (auto id : ids) {
      auto it = workers.find(id);
      if (it == workers.end()) continue;
      auto w = it->second;
      workers.erase(it);
      w->revoked = true;
      if (w->running) {
        ++*remaining;
        w->on_drained = one_drained;
        draining.push_back(w);
        if (w->waiting) w->interrupt.emit(asio::cancellation_type::terminal); // no retry after a revoke
      } else {
        discard(*w);
      }
    }
    one_drained();
  }

  // Queues a batch on its partitions' workers, then starts the idle ones. co_spawn dispatches:
  // a worker started from the strand runs inline until its handler suspends, so starting it
  // per message would run (and spawn) one worker per message; queued first, one worker runs
  // through all of its partition's messages in the batch.
  void dispatch(std::vector<polled>& batch) {
    std::vector<std::shared_ptr<partition_worker>> idle;
    for (auto& p : batch) {
      auto it = workers.find(p.message->partition);
      if (stopping.load() || it == workers.end() || it->second->revoked || it->second->gate != p.gate) {
        p.message.reset(); // redelivered later (to the partition's next owner)
        release(*p.gate, 1);
        continue;
      }
      auto& w = it->second;
      w->queue.push_back(std::move(p.message));
      if (!w->running) {
        w->running = true;
        running_workers.fetch_add(1);
        idle.push_back(w);
      }
    }
    for (auto& w : idle) {
      auto& slot = w->interrupt;
      asio::co_spawn(strand, work(shared_from_this(), std::move(w)),
                     asio::bind_cancellation_slot(slot.slot(), asio::detached));
    }
  }

  // Drops a worker's queued messages (uncommitted: the partition's next owner gets them again).
  void discard(partition_worker& w) {
    const auto n = w.queue.size();
    w.queue.clear();
    release(*w.gate, n);
  }

  bool interrupted(const partition_worker& w) const { return w.revoked || stopping.load(); }

  // Strand, on stop: no retry waits any more (the handlers in flight get the drain period).
  void interrupt_waiting() {
    for (auto& [id, w] : workers)
      if (w->running && w->waiting) w->interrupt.emit(asio::cancellation_type::terminal);
  }

  static asio::awaitable<void> work(std::shared_ptr<consumer_state> self, std::shared_ptr<partition_worker> w) {
    auto interrupted = [&] { return self->interrupted(*w); };
    auto wait = [&](std::chrono::milliseconds d) -> asio::awaitable<bool> {
      if (interrupted()) co_return false;
      w->waiting = true;
      auto backoff_wait = bulwark::clock().wait_for(d); // named: GCC 12 and temporaries in co_await
      const bool reached = co_await std::move(backoff_wait);
      w->waiting = false;
      co_return reached && !interrupted();
    };
    const std::string dead_letter_topic = self->options.dead_letter_topic_name();
    const auto max_batch = std::max<std::size_t>(1, self->options.max_batch);
    while (!self->interrupted(*w) && !w->queue.empty()) {
      take_batch(*w, std::min(w->queue.size(), max_batch));
      const auto done =
          co_await bulwark::detail::deliver_batch(w->batch, self->handler, self->options.retry, dead_letter_topic,
                                                  self->publish_dead_letter, wait, interrupted, self->rng);
      if (done > 0) {
        rd_kafka_message_t* last = w->queue[done - 1].get();
        {
          // A revoke that gave up on this handler closed the gate before its commit.
          std::lock_guard lock(w->gate->m);
          if (w->gate->revoked) break;
          rd_kafka_offset_store(last->rkt, last->partition, last->offset);
          w->gate->stored.store(last->offset + 1, std::memory_order_relaxed);
        }
        self->processed.fetch_add(done, std::memory_order_relaxed);
        w->queue.erase(w->queue.begin(), w->queue.begin() + static_cast<std::ptrdiff_t>(done));
        self->release(*w->gate, done); // resumes the partition at half the bound
      }
      if (done < w->batch.size()) break; // interrupted: the rest is redelivered to the next owner
    }
    w->running = false;
    if (self->interrupted(*w)) self->discard(*w);
    if (w->on_drained) std::exchange(w->on_drained, nullptr)();
    self->running_workers.fetch_sub(1);
  }

  // The envelopes of the queue's first n messages (n >= 1) into w.batch.
  static void take_batch(partition_worker& w, std::size_t n) {
    if (w.headers.size() < n) w.headers.resize(n); // before any envelope points into it
    w.batch.clear();
    for (std::size_t i = 0; i < n; ++i) w.batch.push_back(make_envelope(w.queue[i].get(), w.headers[i]));
  }

  static envelope make_envelope(rd_kafka_message_t* m, std::vector<header>& headers) {
    headers.clear();
    if (rd_kafka_headers_t* hs = nullptr; rd_kafka_message_headers(m, &hs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* name = nullptr;
      const void* value = nullptr;
      size_t size = 0;
      for (size_t i = 0; rd_kafka_header_get_all(hs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i)
        headers.push_back({name, value ? std::string(static_cast<const char*>(value), size) : std::string()});
    }
    envelope e;
    e.topic = rd_kafka_topic_name(m->rkt);
    e.partition = m->partition;
    e.offset = m->offset;
    e.key = m->key ? std::string_view(static_cast<const char*>(m->key), m->key_len) : std::string_view();
    e.value = m->payload ? std::string_view(static_cast<const char*>(m->payload), m->len) : std::string_view();
    e.headers = headers;
    return e;
  }
};

} // namespace detail

/// A running group member. stop() (awaited) drains and leaves the group; destroying a member
/// that was not stopped closes it too, blocking.
class consumer {
public:
  /// How long start() waits for partitions after an empty assignment before it accepts one
  /// (a member of a group with more members than partitions).
  static constexpr std::chrono::milliseconds empty_assignment_grace{3000};

  /// Joins group o.group on o.topic and returns once the group assigned partitions to this
  /// member (possibly none: after empty_assignment_grace). Errors: errc::invalid_argument (empty topic or group, bad
  /// configuration), errc::timeout (no assignment within config::subscribe_timeout).
  static task<consumer> start(asio::any_io_executor ex, config cfg, subscribe_options o, message_handler h,
                              dead_letter_publisher dead_letters) {
    if (!h) return error_task(error(errc::invalid_argument, "subscribe needs a handler"));
    o.max_batch = 1;
    return join(std::move(ex), std::move(cfg), std::move(o), bulwark::detail::one_at_a_time(std::move(h)),
                std::move(dead_letters));
  }

  /// start() for a batch member: h gets up to o.max_batch consecutive messages of one
  /// partition at a time (event_bus.hpp, "Batches"). Errors: those of start(), and
  /// errc::invalid_argument for o.max_batch == 0.
  static task<consumer> start_batch(asio::any_io_executor ex, config cfg, subscribe_options o, batch_handler h,
                                    dead_letter_publisher dead_letters) {
    if (!h) return error_task(error(errc::invalid_argument, "subscribe_batch needs a handler"));
    if (o.max_batch == 0) return error_task(error(errc::invalid_argument, "subscribe_batch needs max_batch >= 1"));
    return join(std::move(ex), std::move(cfg), std::move(o), std::move(h), std::move(dead_letters));
  }

  consumer(consumer&&) noexcept = default;
  consumer& operator=(consumer&&) noexcept = default;
  ~consumer() = default;

private:
  static task<consumer> error_task(error e) { co_return e; }

  static task<consumer> join(asio::any_io_executor ex, config cfg, subscribe_options o, batch_handler h,
                             dead_letter_publisher dead_letters) {
    if (o.topic.empty() || o.group.empty())
      co_return error(errc::invalid_argument, "subscribe needs a topic and a group");
    auto s = std::make_shared<detail::consumer_state>(ex, cfg, o, std::move(h), std::move(dead_letters));
    const detail::property_list own{
        {"group.id", o.group},
        {"client.id", "bulwark-consumer"},
        {"enable.auto.commit", "true"},
        {"auto.commit.interval.ms", std::to_string(cfg.commit_interval.count())},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "false"},
        {"auto.offset.reset", o.start == start_from::earliest ? "earliest" : "latest"},
        {"session.timeout.ms", std::to_string(cfg.session_timeout.count())},
        {"heartbeat.interval.ms", std::to_string(cfg.heartbeat_interval.count())},
        {"fetch.wait.max.ms", "100"},
        // librdkafka 2.0.2 stops fetching for a fixed second whenever its queue (all partitions
        // together) holds queued.min.messages: at the default 100,000 a member whose handlers
        // run slightly slower than the fetches stalled for 1 s at a time. Prefetching stays
        // bounded by queued.max.messages.kbytes (64 MB); config::properties can override both.
        {"queued.min.messages", "1000000"},
        {"reconnect.backoff.ms", "100"},
        {"reconnect.backoff.max.ms", "1000"},
        // Brokers learn of a new topic one after the other: a member whose metadata came from one
        // that did not know it yet joins with no partition of it. A refresh every second (not
        // librdkafka's 5 minutes) keeps known topics' partitions current; a topic the member
        // never knew is found by start()'s all-topics requests (refresh_all_topics).
        {"topic.metadata.refresh.interval.ms", "1000"},
    };
    auto conf = detail::make_conf(cfg, own);
    if (!conf) co_return conf.error();
    rd_kafka_conf_set_opaque(conf.value().get(), s.get());
    rd_kafka_conf_set_rebalance_cb(conf.value().get(), &detail::consumer_state::on_rebalance);
    auto rk = detail::make_handle(RD_KAFKA_CONSUMER, std::move(conf).value());
    if (!rk) co_return rk.error();
    s->rk = std::move(rk).value();
    rd_kafka_poll_set_consumer(s->rk.get());
    detail::partition_list topics(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(topics.get(), o.topic.c_str(), RD_KAFKA_PARTITION_UA);
    if (const auto err = rd_kafka_subscribe(s->rk.get(), topics.get())) co_return make_error(err, o.topic);
    auto* raw = s.get();
    s->thread = std::thread([raw] { raw->run(); });

    asio::steady_timer timer(co_await asio::this_coro::executor);
    const auto deadline = std::chrono::steady_clock::now() + cfg.subscribe_timeout;
    std::optional<std::chrono::steady_clock::time_point> empty_since;
    for (;;) {
      const auto now = std::chrono::steady_clock::now();
      if (s->assigned.load()) {
        if (s->assigned_partitions.load() > 0) break;
        // An empty assignment. Either the group has more members than the topic partitions, or
        // the group's leader asked a broker that did not know the (just created) topic yet:
        // librdkafka 2.0.2 then refreshes only topics it knows and would leave this member with
        // nothing until it restarts. Only a metadata request for all topics updates the group's
        // subscription (a request for one topic may not), and a changed one rejoins the group.
        // So: such a request every 250 ms for up to empty_assignment_grace, then accept.
        if (!empty_since) empty_since = now;
        if (now - *empty_since >= empty_assignment_grace) break;
        s->refresh_all_topics(std::chrono::milliseconds(1000));
      }
      if (now > deadline) {
        consumer failed(std::move(s));
        co_await failed.stop();
        co_return make_error(RD_KAFKA_RESP_ERR__TIMED_OUT, "no partition assignment for group " + o.group);
      }
      timer.expires_after(std::chrono::milliseconds(empty_since ? 250 : 5));
      co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
    co_return consumer(std::move(s));
  }

public:
  /// Interrupts retry waits, gives the handlers in flight up to config::drain_timeout (then
  /// cancels them: their messages stay uncommitted), commits what was handled, leaves the
  /// group. Bounded by config::drain_timeout plus the group's leave round trip.
  asio::awaitable<void> stop() {
    auto s = std::exchange(state_, nullptr);
    if (s) co_await stop(std::move(s));
  }

  /// stop() for a member known by its state (kafka::event_bus::stop() stops the members it
  /// made this way). Safe to run more than once, also concurrently.
  static asio::awaitable<void> stop(std::shared_ptr<detail::consumer_state> s) {
    s->stopping = true;
    s->closing = true;
    asio::post(s->strand, [s] { s->interrupt_waiting(); });
    asio::steady_timer timer(co_await asio::this_coro::executor);
    const auto deadline = std::chrono::steady_clock::now() + s->cfg.drain_timeout + s->cfg.session_timeout;
    // The consumer thread is done once the group is left; a handler the drain cancelled may
    // still be ending on the strand: stop() returns after it, as the concept asks.
    while ((!s->thread_done.load() || s->running_workers.load() > 0) && std::chrono::steady_clock::now() < deadline) {
      timer.expires_after(std::chrono::milliseconds(5));
      co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    }
    // The last strand work (workers releasing their messages) runs before the state goes; the
    // executor's work is released on the strand, where a second stop() may release it too.
    co_await asio::post(s->strand, asio::use_awaitable);
    asio::post(s->strand, [s] { s->keep_running = asio::any_io_executor(); });
  }

  /// The member's state, for a bus that may have to stop it (see stop(state)).
  std::weak_ptr<detail::consumer_state> watch() const noexcept { return state_; }

  /// Messages handled (or dead-lettered) and stored for commit so far.
  std::size_t processed() const noexcept { return state_ ? state_->processed.load() : 0; }

  /// This member's buffering: what it holds now, its high-water mark, paused partitions. Safe
  /// from any thread; all zero after stop().
  consumer_stats stats() const noexcept {
    consumer_stats st;
    if (!state_) return st;
    const auto& s = *state_;
    st.buffered = s.buffered.load(std::memory_order_relaxed);
    st.max_buffered = s.max_buffered.load(std::memory_order_relaxed);
    st.paused_partitions = s.paused_partitions.load(std::memory_order_relaxed);
    st.pauses = s.pauses.load(std::memory_order_relaxed);
    st.resumes = s.resumes.load(std::memory_order_relaxed);
    st.processed = s.processed.load(std::memory_order_relaxed);
    return st;
  }

  /// The last error librdkafka reported to this member (none when healthy).
  error last_error() const {
    if (!state_) return {};
    std::lock_guard lock(state_->error_mutex);
    return state_->last_error;
  }

  rd_kafka_t* native_handle() const noexcept { return state_ ? state_->rk.get() : nullptr; }

private:
  explicit consumer(std::shared_ptr<detail::consumer_state> s) : state_(std::move(s)) {}
  std::shared_ptr<detail::consumer_state> state_;
};

} // namespace bulwark::kafka
