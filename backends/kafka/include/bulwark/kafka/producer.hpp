#pragma once
// kafka::producer: an idempotent (enable.idempotence, acks=all) librdkafka producer whose
// publish completes when the broker acknowledged the message (its delivery report);
// config::idempotent = false keeps acks=all and drops idempotence: a retry may then write a
// message twice or after a later one of its key (the trade: config.hpp).
//
// A poll thread serves librdkafka's delivery reports and hands each result back to the
// awaiting coroutine's own executor (asio::post), so no coroutine ever runs on a librdkafka
// thread. Messages with one key go to one partition (librdkafka's consistent hash) and keep
// their order: idempotence keeps it across retries too.
//
// librdkafka fails every queued message of a topic at once when one metadata answer says the
// topic or its partition is unknown, although that is often a broker that has not caught up
// yet: a topic just created, a broker just restarted (KRaft brokers learn topics
// asynchronously). Such messages, certainly not written, go back to the producer
// (detail::topic_retries), which produces them again every 100 ms, in publish order, until
// their delivery timeout (counted from the publish) has passed; later publishes to that topic
// queue behind them, so per-key order holds. A topic unknown for a whole delivery timeout is
// taken for missing: publishes to it fail at once until a message to it is delivered again.

#include <bulwark/event_bus.hpp>
#include <bulwark/kafka/config.hpp>
#include <bulwark/kafka/detail/handle.hpp>
#include <bulwark/kafka/detail/offload.hpp>
#include <bulwark/kafka/detail/resume_hint.hpp>
#include <bulwark/kafka/detail/topic_retries.hpp>
#include <bulwark/kafka/error.hpp>
#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bulwark::kafka {

namespace detail {

/// One publish (or one batch) waiting for its delivery reports.
class pending_delivery {
public:
  /// The awaiting handler's executor (holding its work count: detail::completion_executor).
  virtual const asio::any_io_executor& executor() const noexcept = 0;
  /// Calls the handler with r (a batch: with its own results) and frees this; runs on
  /// executor().
  virtual void invoke(result<delivery> r) = 0;
  /// invoke(r) posted to executor().
  void post(result<delivery> r) {
    asio::post(executor(), [this, r = std::move(r)]() mutable { invoke(std::move(r)); });
  }
  /// Fetches this operation's memory into the cache (its first two lines hold what invoke()
  /// and executor() read).
  [[gnu::always_inline]] inline void prefetch() const noexcept { // see resume_hint::prefetch
#if defined(__GNUC__)
    __builtin_prefetch(this);
    __builtin_prefetch(reinterpret_cast<const char*>(this) + 64);
#endif
  }
  std::uint64_t seq = 0; ///< publish order, for messages that must be produced again
  resume_hint hint;      ///< what invoke() will touch, prefetched by the hand-over loop

protected:
  ~pending_delivery() = default;
};

/// One publish's operation: on the heap, or (Embedded) built in storage that outlives it (the
/// awaitable's frame: producer::publish_initiation), where invoke() only destroys it.
template <class Handler, bool Embedded = false> class delivery_op final : public pending_delivery {
public:
  explicit delivery_op(Handler h) : handler_(std::move(h)), work_(completion_executor(handler_)) {
    hint = hint_of(handler_);
  }
  const asio::any_io_executor& executor() const noexcept override { return work_; }
  void invoke(result<delivery> r) override {
    auto handler = std::move(handler_);
    if constexpr (Embedded)
      this->~delivery_op();
    else
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
    std::uint64_t seq; ///< publish order, for messages that must be produced again
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
      : handler_(std::move(h)), work_(completion_executor(handler_)),
        results_(n, result<delivery>(error(errc::cancelled))), remaining_(n) {
    slots_.reserve(n);
    for (std::size_t i = 0; i < n; ++i) slots_.push_back(slot{this, i, 0});
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

/// A failure of a message that was certainly not written: "not persisted: <err><why>".
inline bulwark::error not_persisted(rd_kafka_resp_err_t err, std::string_view why = {}) {
  std::string detail(not_persisted_prefix);
  detail += rd_kafka_err2str(err);
  detail += why;
  return make_error(err, std::move(detail));
}

/// Hands one message (copied) to librdkafka; its headers become librdkafka's on success only.
/// A message without headers goes through rd_kafka_produce(), which skips producev's argument
/// list and its reference taken and dropped on the topic handle (two atomic updates on a
/// count the broker threads share); should it refuse, producev tries again and gives the
/// exact error (the first attempt enqueued nothing).
inline rd_kafka_resp_err_t produce_copy(rd_kafka_t* rk, rd_kafka_topic_t* rkt, std::string_view key,
                                        std::string_view value, rd_kafka_headers_t* headers, void* opaque) {
  if (!headers && rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, const_cast<char*>(value.data()),
                                   value.size(), key.data(), key.size(), opaque) == 0)
    return RD_KAFKA_RESP_ERR_NO_ERROR;
  return rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                           RD_KAFKA_V_KEY(key.data(), key.size()),
                           RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_HEADERS(headers),
                           RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
}

struct producer_state {
  using clock = std::chrono::steady_clock;

  config cfg;
  handle rk;
  std::thread poll_thread;
  std::atomic<bool> polling{true};
  std::atomic<bool> stopping{false};
  std::atomic<bool> all_brokers_down{false};
  /// Messages accepted by publish so far; each one's count before it is its publish order
  /// (seq). The one atomic update a publish makes here, on a cache line of its own: the poll
  /// thread's per-report writes below (served, completed) once shared this line, so every
  /// publish and every report took it from the other thread.
  alignas(64) std::atomic<std::uint64_t> published{0};
  /// Accepted messages done with: reported (added per hand-over) or refused at once. In flight:
  /// published - retired (a second counter per publish, as in_flight once was, cost an atomic
  /// update more per message).
  alignas(64) std::atomic<std::uint64_t> retired{0};
  /// Reports served since the last hand-over, added to retired there: one atomic update per
  /// poll instead of one per message. Poll thread only.
  std::size_t served = 0;
  /// Reports served by one rd_kafka_poll(), handed over together (one post per executor run
  /// instead of one per message). Touched only by the thread that polls.
  std::vector<std::pair<pending_delivery*, result<delivery>>> completed;
  /// A topic handle per topic published to, looked up once per publish instead of a copied
  /// name per message and librdkafka's own lookup by name; released with the producer.
  std::mutex topics_mutex;
  std::map<std::string, rd_kafka_topic_t*, std::less<>> topics;
  std::atomic<const std::pair<const std::string, rd_kafka_topic_t*>*> last_topic{nullptr};
  /// Messages to produce again (see the file comment), and the tokens of those produced
  /// again with their original deadlines (poll thread only).
  topic_retries retries;
  std::unordered_map<void*, clock::time_point> reproduced;

  ~producer_state() {
    stopping = true; // a report served below is never taken back for another attempt
    join_poll_thread();
    // Cancel what waits for another attempt, purge librdkafka's queue, and serve the purged
    // messages' reports here, so that every waiting publish completes (errc::cancelled).
    retries.purge();
    pump_retries();
    if (rk && in_flight() > 0) rd_kafka_purge(rk.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    if (rk) rd_kafka_flush(rk.get(), 2000);
    pump_retries(); // a report served by the flush may have been taken back
    hand_over();
    for (auto& [name, rkt] : topics) rd_kafka_topic_destroy(rkt);
  }

  /// Publishes waiting for their delivery report. Reads retired first: both only grow, so the
  /// difference is never negative.
  std::size_t in_flight() const noexcept {
    const auto done = retired.load();
    return static_cast<std::size_t>(published.load() - done);
  }

  /// The publish order slot of the message behind `opaque`.
  static std::uint64_t& seq_of(void* opaque) noexcept {
    if (auto* slot = batch_base::untag(opaque)) return slot->seq;
    return static_cast<pending_delivery*>(opaque)->seq;
  }

  /// The handle for `name` (created on first use), or the librdkafka error that refused it.
  /// The topic published to last is found without the lock (map nodes stay put until the
  /// producer goes).
  result<rd_kafka_topic_t*> topic(std::string_view name) {
    if (const auto* last = last_topic.load(std::memory_order_acquire); last && last->first == name) return last->second;
    std::lock_guard lock(topics_mutex);
    auto it = topics.find(name);
    if (it == topics.end()) {
      std::string owned(name);
      rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk.get(), owned.c_str(), nullptr);
      if (!rkt) {
        const auto err = rd_kafka_last_error();
        return make_error(err, std::string(not_persisted_prefix) + "topic '" + owned + "': " + rd_kafka_err2str(err));
      }
      it = topics.emplace(std::move(owned), rkt).first;
    }
    last_topic.store(&*it, std::memory_order_release);
    return it->second;
  }

  void join_poll_thread() {
    polling = false;
    if (poll_thread.joinable()) poll_thread.join();
  }

  void poll_loop() {
    while (polling.load()) {
      rd_kafka_poll(rk.get(), retries.active() ? 10 : 50);
      if (retries.active()) pump_retries();
      hand_over();
    }
  }

  /// Completes the publish (or batch slot) behind `opaque` with r; it no longer counts as in
  /// flight from the next hand-over on. Poll thread only.
  void complete(void* opaque, result<delivery> r) {
    ++served;
    if (auto* slot = batch_base::untag(opaque)) {
      // A report for one message of a batch: recorded in place; the batch completes with its last.
      if (slot->op->record(slot->index, std::move(r))) completed.emplace_back(slot->op, delivery{});
    } else {
      completed.emplace_back(static_cast<pending_delivery*>(opaque), std::move(r));
    }
  }

  /// Produces the messages waiting for another attempt whose time has come. Poll thread only
  /// (or the destructor after it).
  void pump_retries() {
    retries.pump(
        [&](topic_retries::entry& e) {
          return produce_copy(rk.get(), e.rkt, e.key, e.value, e.headers.get(), e.opaque);
        },
        [&](topic_retries::entry& e, rd_kafka_resp_err_t err, std::string_view why) {
          complete(e.opaque, not_persisted(err, why));
        },
        [&](topic_retries::entry& e) { reproduced[e.opaque] = e.deadline; });
  }

  using completions = std::vector<std::pair<pending_delivery*, result<delivery>>>;

  /// How many completions ahead the loops below fetch an operation (twice this) and the frames
  /// its handler will resume (this many): enough for the misses of several to overlap. A
  /// resumption takes about 0.5 us, several memory latencies; 2 ahead left the publishing
  /// thread 5% cheaper than 4 (median of 12 interleaved rounds, 0.726 vs 0.768 us per publish,
  /// 2026-12-05), 8 no better than 4 (docs/benchmarks_history.md, seventh pass).
  static constexpr std::size_t fetch_ahead = 2;

  // Posts the collected completions, one batch per run of publishes sharing an executor.
  void hand_over() {
    if (served > 0) retired.fetch_add(std::exchange(served, 0));
    const std::size_t n = completed.size();
    for (std::size_t k = 0; k < n && k < 2 * fetch_ahead; ++k) completed[k].first->prefetch();
    for (std::size_t i = 0; i < n;) {
      const asio::any_io_executor& ex = completed[i].first->executor();
      std::size_t j = i + 1;
      for (; j < n; ++j) {
        if (j + 2 * fetch_ahead < n) completed[j + 2 * fetch_ahead].first->prefetch();
        if (completed[j].first->executor() != ex) break;
      }
      completions batch(std::make_move_iterator(completed.begin() + static_cast<std::ptrdiff_t>(i)),
                        std::make_move_iterator(completed.begin() + static_cast<std::ptrdiff_t>(j)));
      asio::post(ex, [batch = std::move(batch)]() mutable { complete_in_order(batch); });
      i = j;
    }
    completed.clear();
  }

  // Runs each completion of `batch` in order on its executor, fetching the operations and the
  // frames that the next ones will touch ahead of them (detail/resume_hint.hpp). Only
  // invoke() frees an operation, so those ahead are alive when read; a prefetch of memory
  // freed meanwhile is harmless.
  static void complete_in_order(completions& batch) {
    const std::size_t n = batch.size();
    for (std::size_t k = 0; k < n && k < 2 * fetch_ahead; ++k) batch[k].first->prefetch();
    for (std::size_t k = 0; k < n && k < fetch_ahead; ++k) batch[k].first->hint.prefetch();
    for (std::size_t k = 0; k < n; ++k) {
      if (k + 2 * fetch_ahead < n) batch[k + 2 * fetch_ahead].first->prefetch();
      if (k + fetch_ahead < n) batch[k + fetch_ahead].first->hint.prefetch();
      batch[k].first->invoke(std::move(batch[k].second));
    }
  }

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* self = static_cast<producer_state*>(opaque);
    if (!m->_private) return;                  // produced by someone else on this handle (benchmarks' raw path)
    std::optional<clock::time_point> deadline; // set for a message produced again
    if (!self->reproduced.empty()) {
      if (auto it = self->reproduced.find(m->_private); it != self->reproduced.end()) {
        deadline = it->second;
        self->reproduced.erase(it);
      }
    }
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      // Read first: a store per report would take the line from the publishing threads.
      if (self->all_brokers_down.load(std::memory_order_relaxed)) self->all_brokers_down = false;
      if (self->retries.active()) self->retries.delivered(m->rkt);
      self->complete(m->_private, delivery{m->partition, m->offset});
      return;
    }
    const bool maybe = rd_kafka_message_status(m) != RD_KAFKA_MSG_STATUS_NOT_PERSISTED;
    // A partition count that drops to 0 (a lagging broker's "unknown topic") can also fail the
    // messages already handed to a broker thread, with __DESTROY rather than an unknown-partition
    // code (seen once in CI, right after create_topic); while we are not stopping, that is the
    // same lag, and the message was certainly not written.
    const bool lagging_metadata =
        unknown_topic_or_partition(m->err) || (m->err == RD_KAFKA_RESP_ERR__DESTROY && !self->stopping.load());
    if (!maybe && lagging_metadata && self->take_back(m, deadline)) return; // still in flight
    std::string detail(maybe ? possibly_persisted_prefix : not_persisted_prefix);
    detail += rd_kafka_err2str(m->err);
    auto code = m->err;
    if (code == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT && self->all_brokers_down) {
      // Timed out while no broker was reachable: the cluster is unavailable, not slow.
      code = RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN;
      detail += " (no broker was reachable)";
    } else if (code == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT && deadline && !maybe) {
      // Produced again and timed out while its topic is still unknown: that is the cause.
      if (const auto why = self->retries.unknown(m->rkt)) {
        self->complete(m->_private, not_persisted(*why, topic_retries::still_unknown));
        return;
      }
    }
    self->complete(m->_private, make_error(code, std::move(detail)));
  }

  /// Takes back a message that failed because its topic or partition was unknown, for another
  /// attempt, while its delivery timeout (counted from its first publish) lasts.
  bool take_back(const rd_kafka_message_t* m, std::optional<clock::time_point> deadline) {
    const auto now = clock::now();
    if (!deadline) {
      const auto waited = std::chrono::microseconds(std::max<std::int64_t>(0, rd_kafka_message_latency(m)));
      deadline = now + cfg.delivery_timeout - waited;
    }
    if (now >= *deadline) return false;
    owned_headers headers;
    if (rd_kafka_headers_t* h = nullptr; rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
      headers.reset(rd_kafka_headers_copy(h));
    const auto* key = static_cast<const char*>(m->key);
    const auto* value = static_cast<const char*>(m->payload);
    retries.take_back(topic_retries::entry{seq_of(m->_private), m->rkt,
                                           key ? std::string(key, m->key_len) : std::string(),
                                           value ? std::string(value, m->len) : std::string(), std::move(headers),
                                           m->_private, *deadline, now},
                      m->err);
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
    detail::property_list own{
        {"enable.idempotence", cfg.idempotent ? "true" : "false"},
        {"acks", "all"},
        {"message.timeout.ms", std::to_string(cfg.delivery_timeout.count())},
        {"linger.ms", std::to_string(cfg.linger.count())},
        {"queue.buffering.max.messages", std::to_string(cfg.max_queued_messages)},
        {"reconnect.backoff.ms", "100"},
        {"reconnect.backoff.max.ms", "1000"},
        {"client.id", "bulwark-producer"},
    };
    // Not idempotent: as many requests in flight as idempotence allows; librdkafka's default,
    // 1,000,000, splits the load into many small requests that cost the brokers more.
    if (!cfg.idempotent) own.emplace_back("max.in.flight.requests.per.connection", "5");
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
  task<delivery> publish(std::string_view topic, message&& m) {
    // Not a coroutine itself: the initiation runs inside the awaitable that async_initiate
    // makes, which saves a coroutine frame per message. The topic is resolved now, while
    // `topic` is certainly alive. `m` is taken by reference and moved once, into the request
    // (a message taken by value was moved twice more on its way there, each a move and a
    // destruction of two strings and a vector).
    auto request = std::make_unique<publish_request>(
        publish_request{state_, state_ ? state_->topic(topic) : result<rd_kafka_topic_t*>(nullptr), std::move(m)});
    return asio::async_initiate<decltype(asio::use_awaitable), void(result<delivery>)>(
        publish_initiation(std::move(request)), asio::use_awaitable);
  }
  /// publish() of a copy of `m`.
  task<delivery> publish(std::string_view topic, const message& m) { return publish(topic, message(m)); }

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
      while (s->in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
        timer.expires_after(std::chrono::milliseconds(2));
        co_await timer.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
      }
    };
    co_await wait_drained(std::chrono::steady_clock::now() + s->cfg.stop_timeout);
    if (s->in_flight() > 0) {
      s->retries.purge(); // the poll thread cancels the messages waiting for another attempt
      rd_kafka_purge(s->rk.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      co_await wait_drained(std::chrono::steady_clock::now() + std::chrono::seconds(5));
    }
    s->join_poll_thread();
  }

  /// Publishes waiting for their delivery report (one whose report was served stops counting
  /// when the poll thread hands that poll's reports over).
  std::size_t in_flight() const noexcept { return state_ ? state_->in_flight() : 0; }

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
    const auto seq = s.published.fetch_add(1);
    detail::producer_state::seq_of(opaque) = seq;
    using admission = detail::topic_retries::admission;
    const auto decided = [&](admission a, rd_kafka_resp_err_t err) {
      if (a == admission::queued) return RD_KAFKA_RESP_ERR_NO_ERROR;
      if (headers) rd_kafka_headers_destroy(headers);
      s.retired.fetch_add(1);
      return a == admission::full ? RD_KAFKA_RESP_ERR__QUEUE_FULL : err;
    };
    // Behind the messages of this topic that wait for another attempt, to keep their order.
    if (s.retries.active()) {
      if (const auto a = s.retries.behind(rkt, m.key, m.value, headers, opaque, seq,
                                          detail::producer_state::clock::now() + s.cfg.delivery_timeout,
                                          s.cfg.max_queued_messages);
          a != admission::produce)
        return decided(a, RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    const auto err = detail::produce_copy(s.rk.get(), rkt, m.key, m.value, headers, opaque);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return err;
    // A topic this client was just told is unknown may be a broker lagging behind: retried.
    if (detail::unknown_topic_or_partition(err))
      return decided(s.retries.refused(rkt, err, m.key, m.value, headers, opaque, seq, s.cfg.delivery_timeout,
                                       s.cfg.max_queued_messages),
                     err);
    return decided(admission::expired, err); // refused for good: no report will come
  }

  // What publish() hands to its initiation, kept apart from the awaiting frame and freed by
  // start() once librdkafka has copied the message: the frame, touched again when the report
  // comes, stays small, and the request's memory (with the message's buffers) is what the next
  // publish reuses while it is still in cache. With many publishes in flight, cold memory
  // touched per message is what per-message publish pays for.
  struct publish_request {
    std::shared_ptr<detail::producer_state> state;
    result<rd_kafka_topic_t*> topic;
    message m;

    // A request lives from publish() to its start(), which a co_await runs at once: a thread
    // keeps the block of its last request for its next one instead of a malloc and a free per
    // publish (glibc's free alone took ~80 instructions per call here, callgrind). A second
    // request made before the first starts takes the heap.
    static void* operator new(std::size_t size) {
      if (void* block = std::exchange(spare().block, nullptr)) return block;
      return ::operator new(size);
    }
    static void operator delete(void* block, std::size_t size) noexcept {
      if (!spare().block)
        spare().block = block;
      else
        ::operator delete(block, size);
    }

  private:
    struct spare_block {
      void* block = nullptr;
      spare_block() = default;
      spare_block(const spare_block&) = delete;
      spare_block& operator=(const spare_block&) = delete;
      ~spare_block() { ::operator delete(block, sizeof(publish_request)); }
    };
    static spare_block& spare() noexcept {
      thread_local spare_block s;
      return s;
    }
  };

  // The handler a co_await of publish() passes to its initiation.
  using awaitable_handler = asio::detail::awaitable_handler<asio::any_io_executor, result<delivery>>;

  // publish()'s initiation. async_initiate keeps it in the awaitable's coroutine frame until
  // the awaiting coroutine resumed, after the operation completed: an awaitable_handler's
  // operation is built here, not on the heap (a malloc and a free less per publish, and the
  // operation on the lines after the frame it resumes). Another handler's goes to the heap.
  class publish_initiation {
  public:
    explicit publish_initiation(std::unique_ptr<publish_request> r) noexcept : request_(std::move(r)) {}
    // Moved only before it runs (into the frame): the operation's storage is not copied.
    publish_initiation(publish_initiation&& o) noexcept : request_(std::move(o.request_)) {}
    publish_initiation& operator=(publish_initiation&&) = delete;
    ~publish_initiation() {} // the operation destroys itself (invoke)

    template <class Handler> void operator()(Handler handler) {
      if constexpr (std::is_same_v<Handler, awaitable_handler>)
        start(std::move(request_), new (&op_) embedded_op(std::move(handler)));
      else
        start(std::move(request_), new detail::delivery_op<Handler>(std::move(handler)));
    }

  private:
    using embedded_op = detail::delivery_op<awaitable_handler, true>;
    std::unique_ptr<publish_request> request_;
    union {
      embedded_op op_;
    };
  };

  // Enqueues the request's message with `op` as its delivery-report token, or completes op
  // with the reason it was not.
  static void start(std::unique_ptr<publish_request> request, detail::pending_delivery* op) {
    const auto& [s, topic, m] = *request;
    if (!s || s->stopping.load()) {
      op->post(error(errc::rejected, "producer is stopping"));
      return;
    }
    if (!topic) {
      op->post(topic.error());
      return;
    }
    if (const auto err = enqueue(*s, topic.value(), m, op); err != RD_KAFKA_RESP_ERR_NO_ERROR)
      op->post(detail::not_persisted(err));
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
        e = detail::not_persisted(err);
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
