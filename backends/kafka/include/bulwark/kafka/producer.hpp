#pragma once
// kafka::producer: an idempotent (enable.idempotence, acks=all) librdkafka producer whose
// publish completes when the broker acknowledged the message (its delivery report).
//
// A poll thread serves librdkafka's delivery reports and hands each result back to the
// awaiting coroutine's own executor (asio::post), so no coroutine ever runs on a librdkafka
// thread. Messages with one key go to one partition (librdkafka's consistent hash) and keep
// their order: idempotence keeps it across retries too.
//
// librdkafka fails every queued message of a topic at once when one metadata answer says the
// topic or its partition is unknown, although that is often a broker that has not caught up
// yet: a topic just created, a broker just restarted (KRaft brokers learn topics
// asynchronously). Such messages, certainly not written, are produced again by the poll
// thread until their delivery timeout has passed; later publishes to that topic queue behind
// them so that per-key order holds.

#include <bulwark/event_bus.hpp>
#include <bulwark/kafka/config.hpp>
#include <bulwark/kafka/detail/handle.hpp>
#include <bulwark/kafka/detail/offload.hpp>
#include <bulwark/kafka/error.hpp>
#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bulwark::kafka {

namespace detail {

/// One publish (or one batch) waiting for its delivery reports.
class pending_delivery {
public:
  /// The awaiting handler's executor (holding its work count).
  virtual const asio::any_io_executor& executor() const noexcept = 0;
  /// Calls the handler with r (a batch: with its own results) and frees this; runs on
  /// executor().
  virtual void invoke(result<delivery> r) = 0;
  /// invoke(r) posted to executor().
  void post(result<delivery> r) {
    asio::post(executor(), [this, r = std::move(r)]() mutable { invoke(std::move(r)); });
  }

protected:
  ~pending_delivery() = default;
};

template <class Handler> class delivery_op final : public pending_delivery {
public:
  explicit delivery_op(Handler h) : handler_(std::move(h)), work_(tracked_executor(handler_)) {}
  const asio::any_io_executor& executor() const noexcept override { return work_; }
  void invoke(result<delivery> r) override {
    auto handler = std::move(handler_);
    delete this;
    std::move(handler)(std::move(r));
  }

private:
  Handler handler_;
  asio::any_io_executor work_;
};

/// A batch of publishes completing together: one allocation and one resumption for all of
/// them. Each message's opaque is its slot, tagged (lowest bit set) to tell it from a single
/// publish; the poll thread records every report and hands the batch over after the last.
class batch_base : public pending_delivery {
public:
  struct slot {
    batch_base* op;
    std::size_t index;
  };
  /// Records message `index`'s outcome; true when it was the last one outstanding.
  virtual bool record(std::size_t index, result<delivery> r) = 0;

  static void* tag(slot* s) noexcept { return reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(s) | 1u); }
  static slot* untag(void* p) noexcept {
    const auto bits = reinterpret_cast<std::uintptr_t>(p);
    return (bits & 1u) ? reinterpret_cast<slot*>(bits & ~std::uintptr_t{1}) : nullptr;
  }

protected:
  ~batch_base() = default;
};

template <class Handler> class batch_op final : public batch_base {
public:
  batch_op(Handler h, std::size_t n)
      : handler_(std::move(h)), work_(tracked_executor(handler_)),
        results_(n, result<delivery>(error(errc::cancelled))), remaining_(n) {
    slots_.reserve(n);
    for (std::size_t i = 0; i < n; ++i) slots_.push_back(slot{this, i});
  }
  const asio::any_io_executor& executor() const noexcept override { return work_; }
  void invoke(result<delivery>) override {
    auto handler = std::move(handler_);
    auto results = std::move(results_);
    delete this;
    std::move(handler)(std::move(results));
  }
  bool record(std::size_t index, result<delivery> r) override {
    results_[index] = std::move(r);
    return remaining_.fetch_sub(1) == 1;
  }
  slot* slot_at(std::size_t i) noexcept { return &slots_[i]; }

private:
  Handler handler_;
  asio::any_io_executor work_;
  std::vector<slot> slots_;
  std::vector<result<delivery>> results_;
  std::atomic<std::size_t> remaining_;
};

/// librdkafka's verdict "this topic or partition does not exist", which a broker that has not
/// caught up with the cluster's metadata gives too.
inline bool unknown_topic_or_partition(rd_kafka_resp_err_t err) noexcept {
  return err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
         err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
}

/// A message waiting to be produced again (see the file comment), with everything librdkafka
/// needs to take it anew.
struct retry_entry {
  using clock = std::chrono::steady_clock;
  rd_kafka_topic_t* rkt;
  std::string key, value;
  rd_kafka_headers_t* headers; ///< owned until produced
  void* opaque;                ///< the delivery-report token
  clock::time_point deadline;  ///< fails with `last` once this has passed
  clock::time_point next_attempt;
  rd_kafka_resp_err_t last;
};

struct producer_state {
  using clock = std::chrono::steady_clock;
  /// Spacing of the attempts to produce a message whose topic was reported unknown.
  static constexpr std::chrono::milliseconds retry_interval{100};

  config cfg;
  handle rk;
  std::thread poll_thread;
  std::atomic<bool> polling{true};
  std::atomic<bool> stopping{false};
  std::atomic<bool> all_brokers_down{false};
  std::atomic<std::size_t> in_flight{0};
  /// Reports served by one rd_kafka_poll(), handed over together (one post per executor run
  /// instead of one per message). Touched only by the thread that polls.
  std::vector<std::pair<pending_delivery*, result<delivery>>> completed;
  /// A topic handle per topic published to, looked up once per publish instead of a copied
  /// name per message and librdkafka's own lookup by name; released with the producer.
  std::mutex topics_mutex;
  std::map<std::string, rd_kafka_topic_t*, std::less<>> topics;
  /// Messages to produce again, oldest first; `retrying` mirrors its size so that publishes
  /// check it without the lock. `purge_retries` asks the poll thread to cancel them all.
  std::mutex retry_mutex;
  std::deque<retry_entry> retries;
  std::atomic<std::size_t> retrying{0};
  std::atomic<bool> purge_retries{false};
  /// Each message produced again, by its token: its original deadline and why it was retried.
  /// Poll thread only.
  struct retried {
    clock::time_point deadline;
    rd_kafka_resp_err_t why;
  };
  std::unordered_map<void*, retried> retry_deadlines;

  ~producer_state() {
    if (rk && in_flight.load() > 0) rd_kafka_purge(rk.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    join_poll_thread();
    // Serve the purged messages' reports so every waiting publish completes (cancelled).
    purge_retries = true;
    if (rk) rd_kafka_flush(rk.get(), 2000);
    pump_retries();
    hand_over();
    for (auto& [name, rkt] : topics) rd_kafka_topic_destroy(rkt);
  }

  /// The handle for `name` (created on first use), or the librdkafka error that refused it.
  result<rd_kafka_topic_t*> topic(std::string_view name) {
    std::lock_guard lock(topics_mutex);
    if (auto it = topics.find(name); it != topics.end()) return it->second;
    std::string owned(name);
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk.get(), owned.c_str(), nullptr);
    if (!rkt) {
      const auto err = rd_kafka_last_error();
      return make_error(err, std::string(not_persisted_prefix) + "topic '" + owned + "': " + rd_kafka_err2str(err));
    }
    topics.emplace(std::move(owned), rkt);
    return rkt;
  }

  void join_poll_thread() {
    polling = false;
    if (poll_thread.joinable()) poll_thread.join();
  }

  void poll_loop() {
    while (polling.load()) {
      rd_kafka_poll(rk.get(), retrying.load() > 0 ? 10 : 50);
      if (retrying.load() > 0) pump_retries();
      hand_over();
    }
  }

  /// Completes the publish (or batch slot) behind `opaque` with r. Poll thread only.
  void complete(void* opaque, result<delivery> r) {
    if (auto* slot = batch_base::untag(opaque)) {
      // A report for one message of a batch: recorded in place; the batch completes with its last.
      if (slot->op->record(slot->index, std::move(r))) completed.emplace_back(slot->op, delivery{});
    } else {
      completed.emplace_back(static_cast<pending_delivery*>(opaque), std::move(r));
    }
  }

  /// Queues a message for another attempt. Any thread.
  void defer(retry_entry e) {
    std::lock_guard lock(retry_mutex);
    retries.push_back(std::move(e));
    retrying.store(retries.size());
  }

  /// True when messages for `rkt` wait to be produced again: a new one must queue behind them.
  bool has_retries_for(rd_kafka_topic_t* rkt) {
    if (retrying.load() == 0) return false;
    std::lock_guard lock(retry_mutex);
    for (const auto& e : retries)
      if (e.rkt == rkt) return true;
    return false;
  }

  /// Produces again the messages whose time has come, oldest first and, per topic, in order
  /// (a topic still unknown holds back its later messages); fails those past their deadline.
  /// Poll thread only (or the destructor after it).
  void pump_retries() {
    std::lock_guard lock(retry_mutex);
    const auto now = clock::now();
    const bool purge = purge_retries.load();
    std::vector<rd_kafka_topic_t*> held; // topics whose oldest message could not go yet
    for (auto it = retries.begin(); it != retries.end();) {
      auto& e = *it;
      auto fail = [&](rd_kafka_resp_err_t err, const char* why) {
        if (e.headers) rd_kafka_headers_destroy(e.headers);
        complete(e.opaque, make_error(err, std::string(not_persisted_prefix) + rd_kafka_err2str(err) + why));
        in_flight.fetch_sub(1);
        it = retries.erase(it);
      };
      if (purge) {
        fail(RD_KAFKA_RESP_ERR__PURGE_QUEUE, "");
        continue;
      }
      if (now >= e.deadline) {
        fail(e.last, " (still unknown when the delivery timeout passed)");
        continue;
      }
      if (std::find(held.begin(), held.end(), e.rkt) != held.end() || now < e.next_attempt) {
        held.push_back(e.rkt);
        ++it;
        continue;
      }
      const auto err = rd_kafka_producev(rk.get(), RD_KAFKA_V_RKT(e.rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                         RD_KAFKA_V_KEY(e.key.data(), e.key.size()),
                                         RD_KAFKA_V_VALUE(e.value.data(), e.value.size()),
                                         RD_KAFKA_V_HEADERS(e.headers), RD_KAFKA_V_OPAQUE(e.opaque), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        retry_deadlines[e.opaque] = retried{e.deadline, e.last}; // librdkafka owns the headers now
        it = retries.erase(it);
      } else if (unknown_topic_or_partition(err)) {
        e.last = err;
        e.next_attempt = now + retry_interval;
        held.push_back(e.rkt);
        ++it;
      } else {
        fail(err, "");
      }
    }
    retrying.store(retries.size());
  }

  // Posts the collected completions, one batch per run of publishes sharing an executor.
  void hand_over() {
    for (std::size_t i = 0; i < completed.size();) {
      std::size_t j = i + 1;
      while (j < completed.size() && completed[j].first->executor() == completed[i].first->executor()) ++j;
      std::vector<std::pair<pending_delivery*, result<delivery>>> batch(
          std::make_move_iterator(completed.begin() + static_cast<std::ptrdiff_t>(i)),
          std::make_move_iterator(completed.begin() + static_cast<std::ptrdiff_t>(j)));
      asio::post(completed[i].first->executor(), [batch = std::move(batch)]() mutable {
        for (auto& [op, r] : batch) op->invoke(std::move(r));
      });
      i = j;
    }
    completed.clear();
  }

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<producer_state*>(opaque);
    if (!m->_private) return; // produced by someone else on this handle (benchmarks' raw path)
    std::optional<retried> again;
    if (!self->retry_deadlines.empty()) {
      if (auto it = self->retry_deadlines.find(m->_private); it != self->retry_deadlines.end()) {
        again = it->second;
        self->retry_deadlines.erase(it);
      }
    }
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      self->all_brokers_down = false;
      self->complete(m->_private, delivery{m->partition, m->offset});
    } else if (self->retry_unknown(m, again ? std::optional(again->deadline) : std::nullopt)) {
      return; // still in flight
    } else {
      const bool maybe = rd_kafka_message_status(m) != RD_KAFKA_MSG_STATUS_NOT_PERSISTED;
      std::string detail(maybe ? possibly_persisted_prefix : not_persisted_prefix);
      detail += rd_kafka_err2str(m->err);
      auto code = m->err;
      // A message that timed out while no broker was reachable failed because the cluster
      // is unavailable, not because it was slow; one produced again because its topic was
      // unknown timed out waiting for the topic.
      if (code == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT && self->all_brokers_down) {
        code = RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN;
        detail += " (no broker was reachable)";
      } else if (code == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT && again && !maybe) {
        code = again->why;
        detail = std::string(not_persisted_prefix) + rd_kafka_err2str(code) +
                 " (still unknown when the delivery timeout passed)";
      }
      self->complete(m->_private, make_error(code, std::move(detail)));
    }
    self->in_flight.fetch_sub(1);
  }

  /// Takes a message that failed because its topic or partition was unknown, was certainly not
  /// written and still has time, for another attempt; false when it must fail now.
  bool retry_unknown(const rd_kafka_message_t* m, std::optional<clock::time_point> deadline) {
    if (!unknown_topic_or_partition(m->err) || rd_kafka_message_status(m) != RD_KAFKA_MSG_STATUS_NOT_PERSISTED)
      return false;
    const auto now = clock::now();
    if (!deadline) {
      const auto waited = std::chrono::microseconds(std::max<std::int64_t>(0, rd_kafka_message_latency(m)));
      deadline = now + cfg.delivery_timeout - waited;
    }
    if (now >= *deadline) return false;
    rd_kafka_headers_t* headers = nullptr;
    if (rd_kafka_headers_t* h = nullptr;
        rd_kafka_message_headers(const_cast<rd_kafka_message_t*>(m), &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
      headers = rd_kafka_headers_copy(h);
    const auto* key = static_cast<const char*>(m->key);
    const auto* value = static_cast<const char*>(m->payload);
    defer(retry_entry{m->rkt, key ? std::string(key, m->key_len) : std::string(),
                      value ? std::string(value, m->len) : std::string(), headers, m->_private, *deadline,
                      now + retry_interval, m->err});
    return true;
  }

  static void on_error(rd_kafka_t*, int err, const char*, void* opaque) {
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) static_cast<producer_state*>(opaque)->all_brokers_down = true;
  }
};

} // namespace detail

class producer {
public:
  /// Connects lazily (librdkafka connects in the background). Errors: errc::invalid_argument
  /// for a configuration librdkafka refuses.
  static result<producer> create(const config& cfg) {
    auto state = std::make_shared<detail::producer_state>();
    state->cfg = cfg;
    const detail::property_list own{
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"message.timeout.ms", std::to_string(cfg.delivery_timeout.count())},
        {"linger.ms", std::to_string(cfg.linger.count())},
        {"queue.buffering.max.messages", std::to_string(cfg.max_queued_messages)},
        {"reconnect.backoff.ms", "100"},
        {"reconnect.backoff.max.ms", "1000"},
        {"client.id", "bulwark-producer"},
    };
    BOOST_OUTCOME_TRY(conf, detail::make_conf(cfg, own));
    rd_kafka_conf_set_opaque(conf.get(), state.get());
    rd_kafka_conf_set_dr_msg_cb(conf.get(), &detail::producer_state::on_delivery);
    rd_kafka_conf_set_error_cb(conf.get(), &detail::producer_state::on_error);
    BOOST_OUTCOME_TRY(rk, detail::make_handle(RD_KAFKA_PRODUCER, std::move(conf)));
    state->rk = std::move(rk);
    auto* raw = state.get();
    state->poll_thread = std::thread([raw] { raw->poll_loop(); });
    return producer(std::move(state));
  }

  producer(producer&&) noexcept = default;
  producer& operator=(producer&&) noexcept = default;
  ~producer() = default;

  /// Publishes `m` to `topic`; completes (on the caller's executor) once every in-sync
  /// replica has it. Errors: errc::rejected when stopping or when the local queue is full;
  /// errc::unavailable when no broker could be reached within config::delivery_timeout;
  /// errc::timeout when the brokers did not acknowledge in time; errc::too_large;
  /// errc::not_found when the topic was still unknown when the delivery timeout passed (an
  /// unknown topic or partition is retried until then: brokers learn new topics with a lag).
  /// The error's detail tells whether the message may still have been written
  /// (possibly_persisted()).
  task<delivery> publish(std::string_view topic, message m) {
    // Not a coroutine itself: the initiation runs inside the awaitable that async_initiate
    // makes, which saves a coroutine frame per message. The topic is resolved now, while
    // `topic` is certainly alive.
    result<rd_kafka_topic_t*> rkt = state_ ? state_->topic(topic) : result<rd_kafka_topic_t*>(nullptr);
    return asio::async_initiate<decltype(asio::use_awaitable), void(result<delivery>)>(
        [s = state_, rkt = std::move(rkt), m = std::move(m)](auto handler) mutable {
          start(s, rkt, m, std::move(handler));
        },
        asio::use_awaitable);
  }

  /// Publishes `batch` to `topic` and completes once every message has its delivery report,
  /// with one result per message in batch order (each as publish() would give it). One
  /// allocation and one resumption for the whole batch: for streams, where a coroutine per
  /// message costs more than the message. Per-key order holds within and across batches.
  asio::awaitable<std::vector<result<delivery>>> publish_batch(std::string_view topic, std::vector<message> batch) {
    result<rd_kafka_topic_t*> rkt = state_ ? state_->topic(topic) : result<rd_kafka_topic_t*>(nullptr);
    return asio::async_initiate<decltype(asio::use_awaitable), void(std::vector<result<delivery>>)>(
        [s = state_, rkt = std::move(rkt), batch = std::move(batch)](auto handler) mutable {
          start_batch(s, rkt, batch, std::move(handler));
        },
        asio::use_awaitable);
  }

  /// Stops accepting messages, waits up to config::stop_timeout for the queued ones to be
  /// acknowledged, then purges what is left (those publishes fail with errc::cancelled).
  asio::awaitable<void> stop() {
    auto s = state_;
    if (!s || !s->poll_thread.joinable()) co_return;
    s->stopping = true;
    asio::steady_timer timer(co_await asio::this_coro::executor);
    auto wait_drained = [&](std::chrono::steady_clock::time_point deadline) -> asio::awaitable<void> {
      while (s->in_flight.load() > 0 && std::chrono::steady_clock::now() < deadline) {
        timer.expires_after(std::chrono::milliseconds(2));
        co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
      }
    };
    co_await wait_drained(std::chrono::steady_clock::now() + s->cfg.stop_timeout);
    if (s->in_flight.load() > 0) {
      s->purge_retries = true; // the poll thread cancels the messages waiting for another attempt
      rd_kafka_purge(s->rk.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      co_await wait_drained(std::chrono::steady_clock::now() + std::chrono::seconds(5));
    }
    s->join_poll_thread();
  }

  /// Publishes waiting for their delivery report.
  std::size_t in_flight() const noexcept { return state_ ? state_->in_flight.load() : 0; }

  /// The librdkafka handle (for metrics or tuning); owned by the producer.
  rd_kafka_t* native_handle() const noexcept { return state_ ? state_->rk.get() : nullptr; }

private:
  explicit producer(std::shared_ptr<detail::producer_state> s) : state_(std::move(s)) {}

  // Enqueues one message with `opaque` as its delivery-report token; the librdkafka error
  // when it was refused (then no report will come).
  static rd_kafka_resp_err_t enqueue(detail::producer_state& s, rd_kafka_topic_t* rkt, const message& m, void* opaque) {
    rd_kafka_headers_t* headers = nullptr;
    if (!m.headers.empty()) {
      headers = rd_kafka_headers_new(m.headers.size());
      for (const auto& h : m.headers)
        rd_kafka_header_add(headers, h.name.data(), static_cast<ssize_t>(h.name.size()), h.value.data(),
                            static_cast<ssize_t>(h.value.size()));
    }
    s.in_flight.fetch_add(1);
    const auto defer = [&](rd_kafka_resp_err_t why) {
      const auto now = detail::producer_state::clock::now();
      s.defer(detail::retry_entry{rkt, m.key, m.value, headers, opaque, now + s.cfg.delivery_timeout, now, why});
      return RD_KAFKA_RESP_ERR_NO_ERROR;
    };
    // Behind the messages of this topic that wait for another attempt, to keep their order.
    if (s.has_retries_for(rkt)) return defer(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC);
    const auto err = rd_kafka_producev(s.rk.get(), RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_KEY(m.key.data(), m.key.size()),
                                       RD_KAFKA_V_VALUE(const_cast<char*>(m.value.data()), m.value.size()),
                                       RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    // A topic this client was just told is unknown may be a broker lagging behind: retried.
    if (detail::unknown_topic_or_partition(err) && !s.stopping.load()) return defer(err);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (headers) rd_kafka_headers_destroy(headers);
      s.in_flight.fetch_sub(1);
    }
    return err;
  }

  static bulwark::error refused(rd_kafka_resp_err_t err) {
    return make_error(err, std::string(not_persisted_prefix) + rd_kafka_err2str(err));
  }

  template <class Handler> static void start(const std::shared_ptr<detail::producer_state>& s,
                                             const result<rd_kafka_topic_t*>& topic, const message& m,
                                             Handler handler) {
    auto* op = new detail::delivery_op<Handler>(std::move(handler));
    if (!s || s->stopping.load()) {
      op->post(error(errc::rejected, "producer is stopping"));
      return;
    }
    if (!topic) {
      op->post(topic.error());
      return;
    }
    if (const auto err = enqueue(*s, topic.value(), m, static_cast<detail::pending_delivery*>(op));
        err != RD_KAFKA_RESP_ERR_NO_ERROR)
      op->post(refused(err));
  }

  template <class Handler> static void start_batch(const std::shared_ptr<detail::producer_state>& s,
                                                   const result<rd_kafka_topic_t*>& topic,
                                                   const std::vector<message>& batch, Handler handler) {
    auto* op = new detail::batch_op<Handler>(std::move(handler), batch.size());
    // A message not enqueued is recorded here (no report will come for it); whoever records
    // the last outstanding message completes the batch: the poll thread, or this loop.
    bool last = batch.empty();
    for (std::size_t i = 0; i < batch.size(); ++i) {
      bulwark::error e;
      if (!s || s->stopping.load()) {
        e = error(errc::rejected, "producer is stopping");
      } else if (!topic) {
        e = topic.error();
      } else if (const auto err = enqueue(*s, topic.value(), batch[i], detail::batch_base::tag(op->slot_at(i)));
                 err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        e = refused(err);
      } else {
        continue;
      }
      last = op->record(i, std::move(e));
    }
    if (last) op->post(delivery{});
  }

  std::shared_ptr<detail::producer_state> state_;
};

} // namespace bulwark::kafka
