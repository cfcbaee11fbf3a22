#pragma once
// The producer's second chance for messages that librdkafka dropped because one metadata
// answer called their topic or partition unknown (see producer.hpp). Every member function
// is thread-safe; the caller's producer decides when to call which.

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace bulwark::kafka::detail {

/// librdkafka's verdict "this topic or partition does not exist", which a broker that has not
/// caught up with the cluster's metadata gives too.
inline bool unknown_topic_or_partition(rd_kafka_resp_err_t err) noexcept {
  return err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
         err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
}

struct headers_deleter {
  void operator()(rd_kafka_headers_t* h) const noexcept { rd_kafka_headers_destroy(h); }
};
using owned_headers = std::unique_ptr<rd_kafka_headers_t, headers_deleter>;

class topic_retries {
public:
  using clock = std::chrono::steady_clock;
  /// Spacing of the attempts to produce a message whose topic is unknown.
  static constexpr std::chrono::milliseconds interval{100};
  /// The end of the detail of a publish that failed because its topic stayed unknown.
  static constexpr std::string_view still_unknown = " (still unknown when the delivery timeout passed)";

  /// A message waiting for another attempt, with everything librdkafka needs to take it anew.
  struct entry {
    std::uint64_t seq; ///< publish order: the queue is kept sorted by it
    rd_kafka_topic_t* rkt;
    std::string key, value;
    owned_headers headers;
    void* opaque; ///< the delivery-report token
    clock::time_point deadline;
    clock::time_point next_attempt;
  };

  enum class admission { produce, queued, full, expired };

  /// False while no topic is unknown and nothing waits: then no call below is needed.
  bool active() const noexcept { return active_.load(std::memory_order_acquire); }

  /// A new message for `rkt`: queued behind the topic's waiting messages, if it has any (so
  /// that per-key order holds); `produce` when it has none.
  admission behind(rd_kafka_topic_t* rkt, std::string_view key, std::string_view value, rd_kafka_headers_t*& headers,
                   void* opaque, std::uint64_t seq, clock::time_point deadline, std::size_t limit) {
    std::lock_guard lock(mutex_);
    if (std::none_of(queue_.begin(), queue_.end(), [&](const entry& e) { return e.rkt == rkt; }))
      return admission::produce;
    if (queue_.size() >= limit) return admission::full;
    insert(entry{seq, rkt, std::string(key), std::string(value), owned_headers(std::exchange(headers, nullptr)), opaque,
                 deadline, clock::time_point{}});
    return admission::queued;
  }

  /// A new message librdkafka refused with `err` (unknown topic or partition): queued for
  /// another attempt, unless the topic has been unknown for a whole delivery timeout already
  /// (then it is taken for missing, and the publish fails at once).
  admission refused(rd_kafka_topic_t* rkt, rd_kafka_resp_err_t err, std::string_view key, std::string_view value,
                    rd_kafka_headers_t*& headers, void* opaque, std::uint64_t seq,
                    std::chrono::milliseconds delivery_timeout, std::size_t limit) {
    const auto now = clock::now();
    std::lock_guard lock(mutex_);
    const auto& v = note_unknown(rkt, err, now);
    if (now - v.since >= delivery_timeout) return admission::expired;
    if (queue_.size() >= limit) return admission::full;
    insert(entry{seq, rkt, std::string(key), std::string(value), owned_headers(std::exchange(headers, nullptr)), opaque,
                 now + delivery_timeout, now});
    return admission::queued;
  }

  /// A message librdkafka failed with `err` (unknown topic or partition, not persisted) that
  /// still has time: queued in publish order for another attempt.
  void take_back(entry e, rd_kafka_resp_err_t err) {
    const auto now = clock::now();
    std::lock_guard lock(mutex_);
    note_unknown(e.rkt, err, now);
    e.next_attempt = now + interval;
    insert(std::move(e));
  }

  /// A message to `rkt` was delivered: the topic is known again.
  void delivered(rd_kafka_topic_t* rkt) {
    std::lock_guard lock(mutex_);
    if (unknown_.erase(rkt) > 0) update();
  }

  /// Why `rkt` is unknown, while it is.
  std::optional<rd_kafka_resp_err_t> unknown(rd_kafka_topic_t* rkt) {
    std::lock_guard lock(mutex_);
    const auto it = unknown_.find(rkt);
    if (it == unknown_.end()) return std::nullopt;
    return it->second.why;
  }

  /// From now on every waiting message fails (as purged) at the next pump.
  void purge() {
    std::lock_guard lock(mutex_);
    purging_ = true;
  }

  /// Produces again the messages whose time has come, in publish order; a topic whose oldest
  /// waiting message cannot go yet holds back its later ones. `produce(entry&)` returns
  /// librdkafka's verdict (it owns the headers on success); `fail(entry&, err, why)` completes a
  /// message that will not be produced; `reproduced(entry&)` records one that was.
  template <class Produce, class Fail, class Reproduced>
  void pump(Produce&& produce, Fail&& fail, Reproduced&& reproduced) {
    std::lock_guard lock(mutex_);
    const auto now = clock::now();
    std::vector<rd_kafka_topic_t*> held;
    for (auto it = queue_.begin(); it != queue_.end();) {
      entry& e = *it;
      if (purging_) {
        fail(e, RD_KAFKA_RESP_ERR__PURGE_QUEUE, "");
      } else if (now >= e.deadline) {
        const auto v = unknown_.find(e.rkt);
        if (v != unknown_.end())
          fail(e, v->second.why, still_unknown);
        else
          fail(e, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, " (waiting to be produced again)");
      } else if (now < e.next_attempt || std::find(held.begin(), held.end(), e.rkt) != held.end()) {
        held.push_back(e.rkt);
        ++it;
        continue;
      } else if (const auto err = produce(e); err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        e.headers.release(); // librdkafka's now
        reproduced(e);
      } else if (unknown_topic_or_partition(err) || err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        if (unknown_topic_or_partition(err)) note_unknown(e.rkt, err, now);
        e.next_attempt = now + interval;
        held.push_back(e.rkt);
        ++it;
        continue;
      } else {
        fail(e, err, "");
      }
      it = queue_.erase(it);
    }
    update();
  }

private:
  struct verdict {
    clock::time_point since; ///< when the topic was first called unknown since its last delivery
    rd_kafka_resp_err_t why;
  };

  const verdict& note_unknown(rd_kafka_topic_t* rkt, rd_kafka_resp_err_t err, clock::time_point now) {
    auto [it, fresh] = unknown_.try_emplace(rkt, verdict{now, err});
    if (!fresh) it->second.why = err;
    update();
    return it->second;
  }

  void insert(entry e) {
    const auto at = std::upper_bound(queue_.begin(), queue_.end(), e.seq,
                                     [](std::uint64_t seq, const entry& x) { return seq < x.seq; });
    queue_.insert(at, std::move(e));
    update();
  }

  void update() { active_.store(!queue_.empty() || !unknown_.empty(), std::memory_order_release); }

  std::mutex mutex_;
  std::deque<entry> queue_; ///< sorted by seq
  std::unordered_map<rd_kafka_topic_t*, verdict> unknown_;
  bool purging_ = false;
  std::atomic<bool> active_{false};
};

} // namespace bulwark::kafka::detail
