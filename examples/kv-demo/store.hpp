#pragma once
// The demo's domain: items behind a read-through cache, with a change feed. Written against the
// concepts only, so the same code runs on the in-memory models or on real backends.

#include <bulwark/cache.hpp>
#include <bulwark/event_bus.hpp>
#include <bulwark/repository.hpp>

#include <chrono>
#include <map>
#include <mutex>
#include <string>

namespace kv {

inline constexpr std::string_view changes_topic = "item-changes";

struct item {
  std::string key;
  std::string value;
  bulwark::version_t version = 0;
  bool from_cache = false;
};

template <bulwark::repository Repository, bulwark::cache Cache, bulwark::event_bus Bus> class store {
public:
  store(Repository& repo, Cache& cache, Bus& bus, std::chrono::milliseconds ttl)
      : repo_(repo), cache_(cache), bus_(bus), ttl_(ttl) {}

  /// Cache first; a cache failure counts as a miss. A repository hit refills the cache.
  bulwark::task<std::optional<item>> get(std::string key) {
    auto hit = co_await cache_.get(key);
    if (hit && hit.value()) co_return item{key, hit.value()->value, hit.value()->version, true};
    auto row = co_await repo_.get(key);
    if (!row) co_return row.error();
    if (!row.value()) co_return std::optional<item>{};
    bulwark::versioned fill{row.value()->value, row.value()->version};
    (void)co_await cache_.put(key, std::move(fill), ttl_);
    co_return item{key, row.value()->value, row.value()->version, false};
  }

  /// Writes through: repository (compare-and-set when `expected` is set), cache, change event.
  bulwark::task<bulwark::version_t> put(std::string key, std::string value,
                                        std::optional<bulwark::version_t> expected) {
    auto version = co_await repo_.put(key, value, expected);
    if (!version) co_return version.error();
    bulwark::versioned fresh{std::move(value), version.value()};
    (void)co_await cache_.put(key, std::move(fresh), ttl_);
    bulwark::message change{key, std::to_string(version.value()), {{"kind", "put"}}};
    (void)co_await bus_.publish(changes_topic, std::move(change));
    co_return version.value();
  }

  bulwark::task<bool> erase(std::string key) {
    auto existed = co_await repo_.erase(key);
    if (!existed) co_return existed.error();
    (void)co_await cache_.erase(key);
    if (existed.value()) {
      bulwark::message change{key, "", {{"kind", "erase"}}};
      (void)co_await bus_.publish(changes_topic, std::move(change));
    }
    co_return existed.value();
  }

  bulwark::task<bulwark::scan_page> list(std::string after, std::size_t limit) { return repo_.scan("", after, limit); }

private:
  Repository& repo_;
  Cache& cache_;
  Bus& bus_;
  std::chrono::milliseconds ttl_;
};

/// Counts changes per key from the change feed (a consumer group of its own).
class change_counter {
public:
  bulwark::message_handler handler() {
    return [this](const bulwark::envelope& e) -> bulwark::task<void> {
      std::lock_guard lock(mutex_);
      ++counts_[std::string(e.key)];
      co_return bulwark::ok();
    };
  }
  std::map<std::string, std::uint64_t> snapshot() const {
    std::lock_guard lock(mutex_);
    return counts_;
  }

private:
  mutable std::mutex mutex_;
  std::map<std::string, std::uint64_t> counts_;
};

} // namespace kv
