#pragma once
// flows::near_cache<Cache, Bus>: a bounded per-process LRU in front of a shared cache (Redis,
// Hazelcast), itself a model of bulwark::cache, kept coherent across replicas through an
// invalidation topic on the bus. docs/last_known_good.md, "Near cache", has the whole story.
//
//   get    a live local entry answers without touching the shared cache; else the shared
//          cache's answer, kept locally (for at most options::local_ttl).
//   put    the shared cache first; then, if it took the value, the local copy, and an
//          invalidation {key, version} on options::topic for the other replicas.
//   erase  the shared cache, the local copy, and an invalidation that drops every version.
//
// Each instance consumes the topic in its own consumer group (group_prefix + "." + instance
// id) from the latest offset, and drops a local entry whose version is <= an invalidation's
// version: a stale invalidation (an older version arriving late) leaves a newer local entry.
// It skips its own invalidations (header bulwark-near-cache-origin): its local copy already is
// what it wrote. An invalidation that arrives while a get or put of the same key is in flight
// stops that call from keeping its (possibly older) answer locally (a small table of recent
// invalidations by key hash; a collision only costs a local miss).
//
// The rules, decided:
//   - A local entry is only ever a copy of something the shared cache held or took: when a
//     shared put fails or is refused, the local entry goes (a refused put: unless it is newer).
//   - The shared cache down: local entries keep answering until their local_ttl; a local miss
//     returns the shared cache's error (callers treat a cache error as a miss).
//   - ttl: this instance's own puts expire locally with their ttl (capped by local_ttl); a copy
//     fetched from the shared cache does not know its ttl, so it is kept local_ttl at most and
//     may be served up to local_ttl after the shared entry expired. local_ttl also bounds how
//     long a lost or late invalidation can leave a replica serving an older value.
//   - An invalidation that cannot be published does not fail the put or erase (the shared
//     cache took it); it is counted (bulwark_near_cache_invalidations_published_total
//     {result="error"}), and local_ttl bounds the other replicas' staleness.
//
// Cost: a local hit is one hash lookup and one list splice under one mutex, plus a copy of the
// value; a put adds one copy of the value and one publish (awaited: on Kafka, until durable).
//
// Threads: get/put/erase from any thread (one mutex guards the local entries); the
// subscription's handler runs on the bus's executor. The shared cache and bus must allow the
// caller's executor (see their headers). start() before serving, stop() before destruction.

#include <bulwark/cache.hpp>
#include <bulwark/clock.hpp>
#include <bulwark/detail/saturating_cast.hpp>
#include <bulwark/event_bus.hpp>
#include <bulwark/memory/cache.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/result.hpp>
#include <bulwark/versioned.hpp>

#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace bulwark::flows {

/// The header naming the instance that published an invalidation.
inline constexpr std::string_view near_cache_origin_header = "bulwark-near-cache-origin";

/// Counters a near cache keeps; read with stats().
struct near_cache_stats {
  std::uint64_t local_hits = 0;
  std::uint64_t shared_hits = 0;            ///< local misses the shared cache answered
  std::uint64_t misses = 0;                 ///< neither had the key
  std::uint64_t invalidations_received = 0; ///< from other replicas (own ones are skipped)
  std::uint64_t invalidations_dropped = 0;  ///< received, and dropped a local entry
  std::uint64_t invalidations_kept = 0;     ///< received, the local entry was newer
  std::uint64_t invalidations_published = 0;
  std::uint64_t publish_failures = 0;
  std::uint64_t evictions = 0; ///< local entries dropped to stay within max_entries
  std::size_t entries = 0;
};

template <class Cache, class Bus> class near_cache {
public:
  struct options {
    /// The invalidation topic every replica of one cache shares.
    std::string topic = "bulwark.near-cache.invalidations";
    std::string group_prefix = "bulwark.near-cache";
    /// Names this instance (its consumer group, the origin header). Empty: 16 random hex
    /// digits, so every start makes a new group; a stable id (host and process name) lets a
    /// restart reuse its group instead of leaving one behind on Kafka.
    std::string instance_id{};
    std::size_t max_entries = 10'000;
    /// The longest a local entry is served without asking the shared cache; 0: no limit (only
    /// invalidations, ttl and the LRU bound remove entries).
    std::chrono::milliseconds local_ttl{std::chrono::seconds(5)};
    /// The time of local expiry (clock::manual() in tests).
    bulwark::clock clock{};
    /// stored_at of a local copy of this instance's own put (the shared cache's own time is
    /// not returned by put).
    std::function<std::chrono::system_clock::time_point()> wall_clock = [] { return std::chrono::system_clock::now(); };
    std::shared_ptr<metrics::registry> metrics{};
    std::string name = "default"; ///< the metrics' cache label
  };

  /// Holds references to `shared` and `bus`: both must outlive this. Does not subscribe yet.
  near_cache(Cache& shared, Bus& bus, options opts = {}) : shared_(shared), bus_(bus), opts_(std::move(opts)) {
    if (opts_.instance_id.empty()) opts_.instance_id = random_id();
    if (opts_.max_entries == 0) opts_.max_entries = 1;
    if (opts_.metrics) {
      auto& r = *opts_.metrics;
      auto& gets = r.counter_family("bulwark_near_cache_gets_total", "Near-cache gets by where they were answered",
                                    {"cache", "result"});
      auto& received = r.counter_family("bulwark_near_cache_invalidations_total",
                                        "Invalidations received from other replicas, by effect", {"cache", "effect"});
      auto& published = r.counter_family("bulwark_near_cache_invalidations_published_total",
                                         "Invalidations this replica published", {"cache", "result"});
      metrics_ =
          instruments{&gets.labels({opts_.name, "local_hit"}),
                      &gets.labels({opts_.name, "shared_hit"}),
                      &gets.labels({opts_.name, "miss"}),
                      &received.labels({opts_.name, "dropped"}),
                      &received.labels({opts_.name, "kept_newer"}),
                      &received.labels({opts_.name, "no_entry"}),
                      &published.labels({opts_.name, "ok"}),
                      &published.labels({opts_.name, "error"}),
                      &r.gauge_family("bulwark_near_cache_entries", "Entries the near cache holds locally", {"cache"})
                           .labels({opts_.name})};
    }
  }
  near_cache(const near_cache&) = delete;
  near_cache& operator=(const near_cache&) = delete;

  /// Joins this instance's consumer group on options::topic from the latest offset. Errors:
  /// the bus's subscribe errors. A second call does nothing.
  task<void> start() {
    if (subscription_) co_return ok();
    subscribe_options o;
    o.topic = opts_.topic;
    o.group = opts_.group_prefix + "." + opts_.instance_id;
    o.start = start_from::latest;
    auto joined = co_await bus_.subscribe(std::move(o), [this](const envelope& e) -> task<void> {
      on_invalidation(e);
      return handled();
    });
    BOOST_OUTCOME_CO_TRY(sub, std::move(joined));
    subscription_.emplace(std::move(sub));
    co_return ok();
  }

  /// Leaves the group (the bus's subscription stop); local entries stay until they expire.
  asio::awaitable<void> stop() {
    if (!subscription_) co_return;
    auto sub = std::move(*subscription_);
    subscription_.reset();
    co_await sub.stop();
  }

  /// A live local entry, else the shared cache's (then kept locally). Errors: the shared
  /// cache's, on a local miss only.
  task<std::optional<cached>> get(std::string_view key) {
    std::string k(key); // owned before the first suspension (abandonment, cache.hpp)
    std::uint64_t seen = 0;
    {
      std::lock_guard lock(mutex_);
      if (auto hit = find_live_locked(k)) {
        count(local_hits_, metrics_ ? metrics_->local_hit : nullptr);
        co_return hit;
      }
      seen = sequence_;
    }
    auto got = co_await shared_.get(k);
    BOOST_OUTCOME_CO_TRY(entry, std::move(got));
    if (!entry) {
      count(misses_, metrics_ ? metrics_->miss : nullptr);
      co_return std::optional<cached>{};
    }
    count(shared_hits_, metrics_ ? metrics_->shared_hit : nullptr);
    keep_locked_if_unchanged(k, *entry, opts_.local_ttl, seen);
    co_return entry;
  }

  /// The shared cache's put; when it took the value, the local copy and an invalidation for
  /// the other replicas. Returns what the shared cache returned (false: a higher version is
  /// there). Errors: the shared cache's (the local copy is dropped; on errc::timeout, when the
  /// value may have landed, the invalidation is still published).
  task<bool> put(std::string_view key, versioned value, std::chrono::milliseconds ttl) {
    std::string k(key);
    const version_t version = value.version;
    cached copy{value.value, version, {}};
    std::uint64_t seen = 0;
    {
      std::lock_guard lock(mutex_);
      seen = sequence_;
    }
    auto stored = co_await shared_.put(k, std::move(value), ttl);
    if (!stored) {
      drop(k, std::nullopt);
      if (stored.error() == errc::timeout) co_await publish(k, std::to_string(version));
      co_return stored.error();
    }
    if (!stored.value()) {
      drop(k, version);
      co_return false;
    }
    copy.stored_at = opts_.wall_clock();
    const auto keep_for = ttl.count() == 0               ? opts_.local_ttl
                          : opts_.local_ttl.count() == 0 ? ttl
                                                         : std::min(ttl, opts_.local_ttl);
    keep_locked_if_unchanged(k, std::move(copy), keep_for, seen);
    co_await publish(k, std::to_string(version));
    co_return true;
  }

  /// The shared cache's erase, then the local copy and an invalidation dropping every
  /// replica's copy. Returns what the shared cache returned. Errors: the shared cache's (the
  /// local copy is dropped all the same).
  task<bool> erase(std::string_view key) {
    std::string k(key);
    auto erased = co_await shared_.erase(k);
    // After the shared erase: a get that read the old value before it cannot keep it now.
    forget(k);
    if (erased ? erased.value() : erased.error() == errc::timeout) co_await publish(k, std::string());
    co_return erased;
  }

  near_cache_stats stats() const {
    near_cache_stats s;
    s.local_hits = local_hits_.load();
    s.shared_hits = shared_hits_.load();
    s.misses = misses_.load();
    s.invalidations_received = received_.load();
    s.invalidations_dropped = dropped_.load();
    s.invalidations_kept = kept_.load();
    s.invalidations_published = published_.load();
    s.publish_failures = publish_failures_.load();
    std::lock_guard lock(mutex_);
    s.evictions = evictions_;
    s.entries = index_.size();
    return s;
  }

  const std::string& instance_id() const noexcept { return opts_.instance_id; }

private:
  struct local_entry {
    std::string key;
    cached item;
    bulwark::clock::time_point expires_at;
  };
  using lru_list = std::list<local_entry>;

  struct key_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view k) const noexcept { return std::hash<std::string_view>{}(k); }
  };

  struct instruments {
    metrics::counter* local_hit;
    metrics::counter* shared_hit;
    metrics::counter* miss;
    metrics::counter* dropped;
    metrics::counter* kept;
    metrics::counter* absent;
    metrics::counter* published;
    metrics::counter* publish_failed;
    metrics::gauge* entries;
  };

  // Recent invalidations by key hash: the `sequence_` value of the last one per slot.
  static constexpr std::size_t recent_slots = 1024;

  static std::string random_id() {
    std::random_device rd;
    const std::uint64_t v = (std::uint64_t(rd()) << 32) ^ rd();
    static constexpr char digits[] = "0123456789abcdef";
    std::string id(16, '0');
    for (int i = 0; i < 16; ++i) id[static_cast<std::size_t>(i)] = digits[(v >> (4 * i)) & 0xf];
    return id;
  }

  static task<void> handled() { co_return ok(); }

  static void count(std::atomic<std::uint64_t>& n, metrics::counter* c) {
    n.fetch_add(1, std::memory_order_relaxed);
    if (c) c->inc();
  }

  static std::size_t slot_of(std::string_view key) { return std::hash<std::string_view>{}(key) % recent_slots; }

  std::optional<cached> find_live_locked(std::string_view key) {
    auto it = index_.find(key);
    if (it == index_.end()) return std::nullopt;
    auto node = it->second;
    if (opts_.clock.now() >= node->expires_at) {
      remove_locked(it);
      return std::nullopt;
    }
    if (node != lru_.begin()) lru_.splice(lru_.begin(), lru_, node);
    return node->item;
  }

  void remove_locked(typename std::unordered_map<std::string_view, typename lru_list::iterator, key_hash,
                                                 std::equal_to<>>::iterator it) {
    auto node = it->second;
    index_.erase(it);
    lru_.erase(node);
    if (metrics_) metrics_->entries->set(static_cast<double>(index_.size()));
  }

  // Keeps `item` locally unless an invalidation of its key (by hash) arrived since `seen`, or
  // a live local entry is newer: the cache rule, never replace a higher version.
  void keep_locked_if_unchanged(const std::string& key, cached item, std::chrono::milliseconds keep_for,
                                std::uint64_t seen) {
    const auto now = opts_.clock.now();
    // Saturated: a local_ttl or ttl of milliseconds::max() keeps the entry for ever instead of
    // wrapping its expiry into the past.
    const auto expires_at =
        keep_for.count() == 0
            ? bulwark::clock::time_point::max()
            : bulwark::clock::later(now, bulwark::detail::saturating_cast<bulwark::clock::duration>(keep_for));
    std::lock_guard lock(mutex_);
    if (recent_[slot_of(key)] > seen) return;
    if (auto it = index_.find(std::string_view(key)); it != index_.end()) {
      auto node = it->second;
      if (now < node->expires_at && node->item.version > item.version) return;
      node->item = std::move(item);
      node->expires_at = expires_at;
      if (node != lru_.begin()) lru_.splice(lru_.begin(), lru_, node);
      return;
    }
    lru_.push_front(local_entry{key, std::move(item), expires_at});
    index_.emplace(std::string_view(lru_.front().key), lru_.begin());
    while (index_.size() > opts_.max_entries) {
      remove_locked(index_.find(std::string_view(lru_.back().key)));
      ++evictions_;
    }
    if (metrics_) metrics_->entries->set(static_cast<double>(index_.size()));
  }

  // Drops the local entry of key unless it is newer than `version` (nullopt: whatever its
  // version). True when one was dropped.
  bool drop(std::string_view key, std::optional<version_t> version) {
    std::lock_guard lock(mutex_);
    return drop_locked(key, version);
  }
  bool drop_locked(std::string_view key, std::optional<version_t> version) {
    auto it = index_.find(key);
    if (it == index_.end()) return false;
    if (version && it->second->item.version > *version) return false;
    remove_locked(it);
    return true;
  }

  // Drops the local entry and marks the key invalidated for the gets and puts in flight.
  void forget(std::string_view key) {
    std::lock_guard lock(mutex_);
    recent_[slot_of(key)] = ++sequence_;
    drop_locked(key, std::nullopt);
  }

  // An invalidation from the bus. Value: the version in decimal, or empty for an erase (and
  // anything unreadable is taken as one: dropping is always safe).
  void on_invalidation(const envelope& e) {
    if (e.find_header(near_cache_origin_header) == std::optional<std::string_view>(opts_.instance_id)) return;
    std::optional<version_t> version;
    version_t v = 0;
    const auto* end = e.value.data() + e.value.size();
    if (!e.value.empty() && std::from_chars(e.value.data(), end, v).ptr == end) version = v;
    std::lock_guard lock(mutex_);
    recent_[slot_of(e.key)] = ++sequence_;
    auto it = index_.find(e.key);
    if (it == index_.end()) {
      count(received_, metrics_ ? metrics_->absent : nullptr);
      return;
    }
    received_.fetch_add(1, std::memory_order_relaxed);
    if (drop_locked(e.key, version))
      count(dropped_, metrics_ ? metrics_->dropped : nullptr);
    else
      count(kept_, metrics_ ? metrics_->kept : nullptr);
  }

  asio::awaitable<void> publish(const std::string& key, std::string value) {
    message m{key, std::move(value), {header{std::string(near_cache_origin_header), opts_.instance_id}}};
    auto sent = co_await bus_.publish(opts_.topic, std::move(m));
    if (sent)
      count(published_, metrics_ ? metrics_->published : nullptr);
    else
      count(publish_failures_, metrics_ ? metrics_->publish_failed : nullptr);
  }

  Cache& shared_;
  Bus& bus_;
  options opts_;
  std::optional<typename Bus::subscription> subscription_;
  std::optional<instruments> metrics_;

  mutable std::mutex mutex_;
  lru_list lru_; // most recently used first
  std::unordered_map<std::string_view, typename lru_list::iterator, key_hash, std::equal_to<>> index_;
  std::array<std::uint64_t, recent_slots> recent_{};
  std::uint64_t sequence_ = 0;
  std::uint64_t evictions_ = 0;
  std::atomic<std::uint64_t> local_hits_{0}, shared_hits_{0}, misses_{0}, received_{0}, dropped_{0}, kept_{0},
      published_{0}, publish_failures_{0};
};

static_assert(bulwark::cache<near_cache<memory::cache, memory::event_bus>>,
              "flows::near_cache must model bulwark::cache");

} // namespace bulwark::flows
