#pragma once
// memory::repository: the in-memory model of bulwark::repository (the embedded default).
// Thread-safe: any number of threads and coroutines may call it at once.
// Rows live in an ordered map (what scan walks, in byte order); get, put and erase find a row
// through a hash index of map iterators beside it, so a point operation costs one hash and
// usually one key comparison, not a tree walk comparing long keys that share a prefix
// (saga logs, outboxes). Only a new key pays the tree insert.

#include <bulwark/detail/assign_bytes.hpp>
#include <bulwark/detail/hash_index.hpp>
#include <bulwark/detail/key_rules.hpp>
#include <bulwark/repository.hpp>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>

namespace bulwark::memory {

class repository {
public:
  struct options {
    std::size_t max_key_bytes = 255;         ///< longer keys: errc::invalid_argument
    std::size_t max_value_bytes = 16u << 20; ///< larger values: errc::too_large
  };

  repository() = default;
  explicit repository(options opts) : opts_(opts) {}

  /// The current value and version of key, or nullopt.
  task<std::optional<versioned>> get(std::string_view key) { co_return get_now(key); }

  /// Stores value under key when `expected` matches (see bulwark::repository); the new version.
  task<version_t> put(std::string_view key, std::string value, std::optional<version_t> expected) {
    co_return put_now(key, std::move(value), expected);
  }

  /// Removes key; true when it existed.
  task<bool> erase(std::string_view key) { co_return erase_now(key); }

  /// Up to `limit` entries with `prefix`, keys > `after`, in byte order.
  task<scan_page> scan(std::string_view prefix, std::string_view after, std::size_t limit) {
    co_return scan_now(prefix, after, limit);
  }

  /// Removes for good up to `limit` keys with `prefix` and > `after`, lowest first (see
  /// bulwark::purgeable_repository); how many. Versions stay monotonic: a key written again
  /// starts above the highest version purged.
  task<std::size_t> purge(std::string_view prefix, std::string_view after, std::size_t limit) {
    co_return purge_now(prefix, after, limit);
  }

  // The same operations, synchronous: the memory model never waits.
  result<std::optional<versioned>> get_now(std::string_view key) const {
    const std::size_t hash = hash_of(key);
    std::shared_lock lock(mutex_);
    auto* found = find(key, hash);
    if (found == nullptr || !found->handle->second.live) return std::optional<versioned>{};
    const row& r = found->handle->second;
    return std::optional<versioned>{versioned{r.value, r.version}};
  }

  result<version_t> put_now(std::string_view key, std::string value, std::optional<version_t> expected) {
    return store(key, std::move(value), expected);
  }

  /// put_now with the value viewed and copied into the row's own buffer, which a rewrite of the
  /// key reuses: no allocation when the new value fits the old one's capacity (see
  /// bulwark::copying_repository). For a caller that keeps the bytes in a buffer of its own.
  result<version_t> put_copy_now(std::string_view key, std::string_view value, std::optional<version_t> expected) {
    return store(key, value, expected);
  }

  result<bool> erase_now(std::string_view key) {
    BOOST_OUTCOME_TRY(detail::check_key(key, opts_.max_key_bytes));
    const std::size_t hash = hash_of(key);
    std::unique_lock lock(mutex_);
    auto* found = find(key, hash);
    if (found == nullptr || !found->handle->second.live) return false;
    auto it = found->handle;
    it->second.live = false;
    it->second.value = std::string();
    ++tombstones_;
    if (tombstones_ > 1024 && tombstones_ > rows_.size() / 2) compact_tombstones();
    return true;
  }

  result<scan_page> scan_now(std::string_view prefix, std::string_view after, std::size_t limit) const {
    BOOST_OUTCOME_TRY(detail::check_scan_limit(limit));
    scan_page page;
    std::shared_lock lock(mutex_);
    auto it = (after.empty() || after < prefix) ? rows_.lower_bound(prefix) : rows_.upper_bound(after);
    for (; it != rows_.end(); ++it) {
      std::string_view key = it->first;
      if (key.substr(0, prefix.size()) != prefix) break;
      if (!it->second.live) continue;
      if (page.entries.size() == limit) {
        page.next = page.entries.back().key;
        break;
      }
      page.entries.push_back(entry{it->first, it->second.value, it->second.version});
    }
    return page;
  }

  result<std::size_t> purge_now(std::string_view prefix, std::string_view after, std::size_t limit) {
    BOOST_OUTCOME_TRY(detail::check_scan_limit(limit));
    std::unique_lock lock(mutex_);
    auto it = (after.empty() || after < prefix) ? rows_.lower_bound(prefix) : rows_.upper_bound(after);
    std::size_t removed = 0;
    while (it != rows_.end() && removed < limit && std::string_view(it->first).starts_with(prefix)) {
      version_floor_ = std::max(version_floor_, it->second.version);
      if (!it->second.live) --tombstones_;
      const std::string_view key = it->first;
      index_.erase(find(key, hash_of(key)));
      it = rows_.erase(it);
      ++removed;
    }
    return removed;
  }

  /// The number of live keys.
  std::size_t size() const {
    std::shared_lock lock(mutex_);
    return rows_.size() - tombstones_;
  }

private:
  struct row {
    std::string value;
    version_t version = no_version;
    bool live = false;
  };
  using row_map = std::map<std::string, row, std::less<>>;
  using index_type = detail::hash_index<typename row_map::iterator>;

  // put_now and put_copy_now: `value` a std::string (moved in) or a std::string_view (copied into
  // the row's buffer, reusing its capacity).
  template <class Value>
  result<version_t> store(std::string_view key, Value&& value, std::optional<version_t> expected) {
    BOOST_OUTCOME_TRY(detail::check_key(key, opts_.max_key_bytes));
    BOOST_OUTCOME_TRY(detail::check_value_size(value.size(), opts_.max_value_bytes));
    const std::size_t hash = hash_of(key);
    std::unique_lock lock(mutex_);
    auto* found = find(key, hash);
    const version_t current =
        (found != nullptr && found->handle->second.live) ? found->handle->second.version : no_version;
    if (expected && *expected != current)
      return error(errc::conflict,
                   "expected version " + std::to_string(*expected) + ", current " + std::to_string(current));
    auto it = found != nullptr ? found->handle : rows_.end();
    if (it == rows_.end()) {
      it = rows_.emplace(std::string(key), row{{}, version_floor_, false}).first;
      index_.insert(hash, it);
    }
    // Versions keep rising across erase: a tombstone remembers the last one.
    it->second.version += 1;
    detail::assign_bytes(it->second.value, std::forward<Value>(value));
    it->second.live = true;
    return it->second.version;
  }

  static std::size_t hash_of(std::string_view key) noexcept { return std::hash<std::string_view>{}(key); }

  // The index cell of key's row (live or tombstone), or nullptr. The caller holds the mutex.
  template <class Self> static auto* find_in(Self& self, std::string_view key, std::size_t hash) {
    return self.index_.find(hash, [key](const typename row_map::iterator& it) { return it->first == key; });
  }
  const typename index_type::cell* find(std::string_view key, std::size_t hash) const {
    return find_in(*this, key, hash);
  }
  typename index_type::cell* find(std::string_view key, std::size_t hash) { return find_in(*this, key, hash); }

  // Tombstones keep versions monotonic across erase; when they pile up they are dropped and
  // the highest version among them becomes the floor every new row starts above.
  void compact_tombstones() {
    for (auto it = rows_.begin(); it != rows_.end();) {
      if (!it->second.live) {
        version_floor_ = std::max(version_floor_, it->second.version);
        const std::string_view key = it->first;
        index_.erase(find(key, hash_of(key)));
        it = rows_.erase(it);
      } else {
        ++it;
      }
    }
    tombstones_ = 0;
  }

  options opts_{};
  mutable std::shared_mutex mutex_;
  row_map rows_;
  index_type index_; // key -> its row in rows_
  std::size_t tombstones_ = 0;
  version_t version_floor_ = no_version;
};

static_assert(bulwark::repository<repository>, "memory::repository must model bulwark::repository");
static_assert(bulwark::synchronous_repository<repository>,
              "memory::repository must model bulwark::synchronous_repository");
static_assert(bulwark::copying_repository<repository>, "memory::repository must model bulwark::copying_repository");
static_assert(bulwark::purgeable_repository<repository>, "memory::repository must model bulwark::purgeable_repository");

} // namespace bulwark::memory
