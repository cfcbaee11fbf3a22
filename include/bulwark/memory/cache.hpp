#pragma once
// memory::cache: the in-memory model of bulwark::cache. Sharded (one lock per shard), LRU
// within a shard, bounded by entries and by bytes, TTL read from an injected clock (by
// default the coarse wall clock: TTLs are exact to a kernel tick, 1-4 ms).
// Thread-safe. get/put/erase cost one hash, one shard lock and one copy of the value. The shard
// lock is a detail::atomic_mutex: taken and released inline, where std::mutex calls libpthread.
//
// Recency is kept the way memcached keeps it: a hit moves its entry to the front of the
// shard's list only when the entry may have left the front half (more than half the shard's
// entries were inserted or moved ahead of it since it was last put in front). A hot entry
// therefore costs no list writes, and an entry used since half the shard turned over is never
// the next one evicted.

#include <bulwark/cache.hpp>
#include <bulwark/coarse_clock.hpp>
#include <bulwark/detail/assign_bytes.hpp>
#include <bulwark/detail/atomic_mutex.hpp>
#include <bulwark/detail/hash_index.hpp>
#include <bulwark/detail/key_hash.hpp>
#include <bulwark/detail/key_rules.hpp>
#include <bulwark/detail/saturating_cast.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <functional>
#include <iterator>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::memory {

/// Counters a cache keeps; read with stats().
struct cache_stats {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t evictions = 0;   ///< entries dropped to stay within the bounds
  std::uint64_t expirations = 0; ///< entries dropped because their ttl passed
  std::size_t entries = 0;
  std::size_t bytes = 0;
};

template <class Clock = coarse_system_clock> class basic_cache {
public:
  struct options {
    std::size_t max_entries = 100'000;  ///< across all shards
    std::size_t max_bytes = 256u << 20; ///< keys + values + per-entry overhead
    std::size_t shards = 16;            ///< rounded up to a power of two
    std::size_t max_key_bytes = 1024;   ///< longer keys: errc::invalid_argument
  };

  /// Accounted per entry on top of key and value: list node, map node, bookkeeping.
  static constexpr std::size_t entry_overhead = 96;

  basic_cache() : basic_cache(options{}) {}
  explicit basic_cache(options opts, Clock clock = Clock{}) : opts_(opts), clock_(std::move(clock)) {
    opts_.shards = std::bit_ceil(std::max<std::size_t>(1, opts_.shards));
    shard_mask_ = opts_.shards - 1;
    shards_ = std::vector<shard>(opts_.shards);
    for (auto& s : shards_) {
      s.max_entries = std::max<std::size_t>(1, opts_.max_entries / opts_.shards);
      s.max_bytes = std::max<std::size_t>(1, opts_.max_bytes / opts_.shards);
    }
  }

  /// The entry for key, or nullopt on a miss or once its ttl has passed.
  task<std::optional<cached>> get(std::string_view key) { co_return get_now(key); }

  /// Stores value for ttl (0: no expiry) unless a higher version is present (then false).
  task<bool> put(std::string_view key, versioned value, std::chrono::milliseconds ttl) {
    co_return put_now(key, std::move(value), ttl);
  }

  /// Removes key; true when it was present.
  task<bool> erase(std::string_view key) { co_return erase_now(key); }

  result<std::optional<cached>> get_now(std::string_view key) {
    const hashed_key hk{key, detail::hash_key(key)};
    auto& s = shard_for(hk);
    std::lock_guard lock(s.mutex);
    auto* it = s.find(hk);
    if (!it) {
      ++s.misses;
      return std::optional<cached>{};
    }
    auto node = it->handle;
    if (node->expires_at != no_expiry && clock_.now() >= node->expires_at) {
      ++s.expirations;
      ++s.misses;
      s.remove(it);
      return std::optional<cached>{};
    }
    ++s.hits;
    if (s.moves - node->moved_at > s.index.size() / 2) s.to_front(node);
    return std::optional<cached>{node->item};
  }

  result<bool> put_now(std::string_view key, versioned value, std::chrono::milliseconds ttl) {
    return store(key, std::move(value.value), value.version, ttl);
  }

  /// put_now with the value viewed and copied into the entry's own buffer, which a rewrite of
  /// the key reuses: no allocation when the new value fits the old one's capacity (see
  /// bulwark::copying_cache).
  result<bool> put_copy_now(std::string_view key, std::string_view value, version_t version,
                            std::chrono::milliseconds ttl) {
    return store(key, value, version, ttl);
  }

  result<bool> erase_now(std::string_view key) {
    const hashed_key hk{key, detail::hash_key(key)};
    auto& s = shard_for(hk);
    std::lock_guard lock(s.mutex);
    auto* it = s.find(hk);
    if (!it) return false;
    s.remove(it);
    return true;
  }

  cache_stats stats() const {
    cache_stats total;
    for (const auto& s : shards_) {
      std::lock_guard lock(s.mutex);
      total.hits += s.hits;
      total.misses += s.misses;
      total.evictions += s.evictions;
      total.expirations += s.expirations;
      total.entries += s.index.size();
      total.bytes += s.bytes;
    }
    return total;
  }

  const Clock& clock() const noexcept { return clock_; }

private:
  static constexpr auto no_expiry = std::chrono::system_clock::time_point::max();

  // now + ttl, saturated: a ttl of milliseconds::max() ("as long as can be") is no expiry, not
  // an overflow into the past.
  static std::chrono::system_clock::time_point expiry(std::chrono::system_clock::time_point now,
                                                      std::chrono::milliseconds ttl) noexcept {
    const auto life = detail::saturating_cast<std::chrono::system_clock::duration>(ttl);
    return life >= no_expiry - now ? no_expiry : now + life;
  }

  // put_now and put_copy_now: `value` a std::string (moved in) or a std::string_view (copied into
  // the entry's buffer, reusing its capacity).
  template <class Value>
  result<bool> store(std::string_view key, Value&& value, version_t version, std::chrono::milliseconds ttl) {
    BOOST_OUTCOME_TRY(detail::check_key(key, opts_.max_key_bytes));
    BOOST_OUTCOME_TRY(detail::check_ttl(ttl));
    const hashed_key hk{key, detail::hash_key(key)};
    auto& s = shard_for(hk);
    // The index cell, fetched while the clock is read and the lock taken (a put's usual miss).
    s.index.prefetch(hk.hash);
    const std::size_t cost = key.size() + value.size() + entry_overhead;
    if (cost > s.max_bytes)
      return error(errc::too_large, "entry of " + std::to_string(cost) + " bytes exceeds the shard bound of " +
                                        std::to_string(s.max_bytes));
    const auto now = clock_.now();
    const auto expires_at = ttl.count() == 0 ? no_expiry : expiry(now, ttl);
    std::lock_guard lock(s.mutex);
    if (auto* it = s.find(hk)) {
      auto node = it->handle;
      const bool expired = node->expires_at != no_expiry && now >= node->expires_at;
      if (!expired && node->item.version > version) return false;
      s.bytes -= node->cost;
      // Field by field: no temporary entry to build and destroy.
      detail::assign_bytes(node->item.value, std::forward<Value>(value));
      node->item.version = version;
      node->item.stored_at = now;
      node->expires_at = expires_at;
      node->cost = cost;
      s.bytes += cost;
      s.to_front(node);
    } else {
      s.lru.push_front(slot{std::string(key), hk.hash, cached{std::string(std::forward<Value>(value)), version, now},
                            expires_at, cost, ++s.moves});
      s.index.insert(hk.hash, s.lru.begin());
      s.bytes += cost;
    }
    s.evict_to_bounds();
    return true;
  }

  // A key with its hash, computed once per call and shared by shard choice and index lookup.
  struct hashed_key {
    std::string_view key;
    std::size_t hash = 0;
  };

  struct slot {
    std::string key;
    std::size_t hash = 0;
    cached item;
    std::chrono::system_clock::time_point expires_at;
    std::size_t cost = 0;
    std::uint64_t moved_at = 0; ///< shard::moves when this entry was last put in front
  };
  using lru_list = std::list<slot>;

  struct shard {
    mutable detail::atomic_mutex mutex;
    lru_list lru; // most recently used first
    detail::hash_index<typename lru_list::iterator> index;
    std::size_t bytes = 0;
    std::size_t max_entries = 0;
    std::size_t max_bytes = 0;
    std::uint64_t hits = 0, misses = 0, evictions = 0, expirations = 0;
    std::uint64_t moves = 0; ///< entries put in front so far (inserted or moved)

    void to_front(typename lru_list::iterator node) {
      if (node != lru.begin()) lru.splice(lru.begin(), lru, node);
      node->moved_at = ++moves;
    }

    using cell = typename detail::hash_index<typename lru_list::iterator>::cell;

    cell* find(const hashed_key& k) {
      return index.find(k.hash, [&](typename lru_list::iterator node) { return detail::same_key(node->key, k.key); });
    }
    void remove(cell* c) {
      auto node = c->handle;
      bytes -= node->cost;
      index.erase(c);
      lru.erase(node);
    }
    void evict_to_bounds() {
      while (!lru.empty() && (index.size() > max_entries || bytes > max_bytes)) {
        auto last = std::prev(lru.end());
        remove(index.find(last->hash, [&](typename lru_list::iterator node) { return node == last; }));
        ++evictions;
      }
    }
  };

  // The upper half of the hash picks the shard; the index probes from its lower half.
  shard& shard_for(const hashed_key& k) { return shards_[(k.hash >> 32) & shard_mask_]; }

  options opts_;
  Clock clock_;
  std::size_t shard_mask_ = 0;
  std::vector<shard> shards_;
};

using cache = basic_cache<>;

static_assert(bulwark::cache<cache>, "memory::cache must model bulwark::cache");
static_assert(bulwark::synchronous_cache<cache>, "memory::cache must model bulwark::synchronous_cache");
static_assert(bulwark::copying_cache<cache>, "memory::cache must model bulwark::copying_cache");

} // namespace bulwark::memory
