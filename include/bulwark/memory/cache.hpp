#pragma once
// memory::cache: the in-memory model of bulwark::cache. Sharded (one lock per shard), LRU
// within a shard, bounded by entries and by bytes, TTL read from an injected clock (by
// default the coarse wall clock: TTLs are exact to a kernel tick, 1-4 ms).
// Thread-safe. get/put/erase cost one hash, one shard lock and one copy of the value.

#include <bulwark/cache.hpp>
#include <bulwark/coarse_clock.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
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
    std::size_t shards = 16;
    std::size_t max_key_bytes = 1024; ///< longer keys: errc::invalid_argument
  };

  /// Accounted per entry on top of key and value: list node, map node, bookkeeping.
  static constexpr std::size_t entry_overhead = 96;

  basic_cache() : basic_cache(options{}) {}
  explicit basic_cache(options opts, Clock clock = Clock{}) : opts_(opts), clock_(std::move(clock)) {
    opts_.shards = std::max<std::size_t>(1, opts_.shards);
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
    const hashed_key hk{key, std::hash<std::string_view>{}(key)};
    auto& s = shard_for(hk);
    const auto now = clock_.now();
    std::lock_guard lock(s.mutex);
    auto it = s.index.find(hk);
    if (it == s.index.end()) {
      ++s.misses;
      return std::optional<cached>{};
    }
    auto node = it->second;
    if (node->expires_at != no_expiry && now >= node->expires_at) {
      ++s.expirations;
      ++s.misses;
      s.remove(it);
      return std::optional<cached>{};
    }
    ++s.hits;
    if (node != s.lru.begin()) s.lru.splice(s.lru.begin(), s.lru, node);
    return std::optional<cached>{node->item};
  }

  result<bool> put_now(std::string_view key, versioned value, std::chrono::milliseconds ttl) {
    if (key.empty()) return error(errc::invalid_argument, "empty key");
    if (key.size() > opts_.max_key_bytes) return error(errc::invalid_argument, "key too long");
    if (ttl.count() < 0) return error(errc::invalid_argument, "negative ttl");
    const hashed_key hk{key, std::hash<std::string_view>{}(key)};
    auto& s = shard_for(hk);
    const std::size_t cost = key.size() + value.value.size() + entry_overhead;
    if (cost > s.max_bytes)
      return error(errc::too_large, "entry of " + std::to_string(cost) + " bytes exceeds the shard bound of " +
                                        std::to_string(s.max_bytes));
    const auto now = clock_.now();
    const auto expires_at =
        ttl.count() == 0 ? no_expiry : now + std::chrono::duration_cast<std::chrono::system_clock::duration>(ttl);
    std::lock_guard lock(s.mutex);
    auto it = s.index.find(hk);
    if (it != s.index.end()) {
      auto node = it->second;
      const bool expired = node->expires_at != no_expiry && now >= node->expires_at;
      if (!expired && node->item.version > value.version) return false;
      s.bytes -= node->cost;
      node->item = cached{std::move(value.value), value.version, now};
      node->expires_at = expires_at;
      node->cost = cost;
      s.bytes += cost;
      s.lru.splice(s.lru.begin(), s.lru, node);
    } else {
      s.lru.push_front(
          slot{std::string(key), hk.hash, cached{std::move(value.value), value.version, now}, expires_at, cost});
      s.index.emplace(hashed_key{s.lru.front().key, hk.hash}, s.lru.begin());
      s.bytes += cost;
    }
    s.evict_to_bounds();
    return true;
  }

  result<bool> erase_now(std::string_view key) {
    const hashed_key hk{key, std::hash<std::string_view>{}(key)};
    auto& s = shard_for(hk);
    std::lock_guard lock(s.mutex);
    auto it = s.index.find(hk);
    if (it == s.index.end()) return false;
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

  // A key with its hash, computed once per call and shared by shard choice and index lookup.
  struct hashed_key {
    std::string_view key;
    std::size_t hash = 0;
    friend bool operator==(const hashed_key& a, const hashed_key& b) noexcept { return a.key == b.key; }
  };
  struct stored_hash {
    std::size_t operator()(const hashed_key& k) const noexcept { return k.hash; }
  };

  struct slot {
    std::string key;
    std::size_t hash = 0;
    cached item;
    std::chrono::system_clock::time_point expires_at;
    std::size_t cost = 0;
  };
  using lru_list = std::list<slot>;

  struct shard {
    mutable std::mutex mutex;
    lru_list lru; // most recently used first
    // Keys are views into the list nodes, which never move.
    std::unordered_map<hashed_key, typename lru_list::iterator, stored_hash> index;
    std::size_t bytes = 0;
    std::size_t max_entries = 0;
    std::size_t max_bytes = 0;
    std::uint64_t hits = 0, misses = 0, evictions = 0, expirations = 0;

    void remove(typename decltype(index)::iterator it) {
      auto node = it->second;
      bytes -= node->cost;
      index.erase(it);
      lru.erase(node);
    }
    void evict_to_bounds() {
      while (!lru.empty() && (index.size() > max_entries || bytes > max_bytes)) {
        remove(index.find(hashed_key{lru.back().key, lru.back().hash}));
        ++evictions;
      }
    }
  };

  // The upper half of the hash picks the shard; the index buckets by the whole hash.
  shard& shard_for(const hashed_key& k) { return shards_[(k.hash >> 32) % shards_.size()]; }

  options opts_;
  Clock clock_;
  std::vector<shard> shards_;
};

using cache = basic_cache<>;

static_assert(bulwark::cache<cache>, "memory::cache must model bulwark::cache");

} // namespace bulwark::memory
