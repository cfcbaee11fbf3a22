#pragma once
// The document store CMS's routes talk to: a write_through over whichever repository, cache and
// bus the service was wired with, behind one small interface, so the routes are plain code
// compiled once and tested on the memory models. Likewise the cache real mode's write_through
// reads and fills, so that one write_through serves every shared cache and near-cache setting.

#include <bulwark/cache.hpp>
#include <bulwark/flows/write_through.hpp>
#include <bulwark/resilience/timeout.hpp>
#include <bulwark/result.hpp>
#include <bulwark/run_on.hpp>

#include <asio/any_io_executor.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace channel_metadata {

/// For clients that belong to one executor (MySQL, Redis) called from the HTTP server's threads.
using bulwark::run_on;

/// What CMS needs of its write_through (flows/write_through.hpp documents each call).
class document_store {
public:
  virtual ~document_store() = default;
  /// Writes the canonical document under its country code: durable or pending.
  virtual bulwark::task<bulwark::flows::write_receipt> write(std::string key, std::string value, bulwark::deadline d,
                                                             std::string request_id) = 0;
  /// The document under key (nullopt: nobody has it), possibly stale or pending.
  virtual bulwark::task<std::optional<bulwark::flows::read_result>> read(std::string key, bulwark::deadline d) = 0;
  /// force-update-all: every pending entry newer than the database's copy, written.
  virtual bulwark::task<bulwark::flows::reconcile_report> reconcile(bulwark::deadline d) = 0;
  /// Entries of the pending index (the healthcheck's writes.pending).
  virtual std::size_t pending() const = 0;
};

/// A document_store over a write_through `Flow`. When `home` is set, every call runs there (the
/// MySQL and Redis clients belong to one executor, while the HTTP server has several threads):
/// one hop to it and one back per call. Without it, calls run on the caller's executor (the
/// memory models are thread-safe).
template <class Flow> class write_through_store final : public document_store {
public:
  explicit write_through_store(Flow& flow, std::optional<asio::any_io_executor> home = std::nullopt)
      : flow_(flow), home_(std::move(home)) {}

  bulwark::task<bulwark::flows::write_receipt> write(std::string key, std::string value, bulwark::deadline d,
                                                     std::string request_id) override {
    return on_home([](Flow& f, std::string k, std::string v, bulwark::deadline dl,
                      std::string id) -> bulwark::task<bulwark::flows::write_receipt> {
      co_return co_await f.write(k, v, dl, id); // viewed: this frame holds them until it is done
    }(flow_, std::move(key), std::move(value), d, std::move(request_id)));
  }
  bulwark::task<std::optional<bulwark::flows::read_result>> read(std::string key, bulwark::deadline d) override {
    return on_home(
        [](Flow& f, std::string k, bulwark::deadline dl) -> bulwark::task<std::optional<bulwark::flows::read_result>> {
          co_return co_await f.read(k, dl);
        }(flow_, std::move(key), d));
  }
  bulwark::task<bulwark::flows::reconcile_report> reconcile(bulwark::deadline d) override {
    return on_home([](Flow& f, bulwark::deadline dl) -> bulwark::task<bulwark::flows::reconcile_report> {
      co_return co_await f.reconcile(dl);
    }(flow_, d));
  }
  std::size_t pending() const override { return flow_.pending_count(); }

private:
  template <class T> bulwark::task<T> on_home(bulwark::task<T> op) {
    if (!home_) return op;
    return run_on(*home_, std::move(op));
  }

  Flow& flow_;
  std::optional<asio::any_io_executor> home_;
};

/// The cache real mode's write_through works with: Redis or Hazelcast, with or without a near
/// cache in front (cache.hpp documents each call). Behind this interface CMS compiles its
/// write_through, its serving path and the near cache once instead of once per combination: four
/// write_through instantiations at -O3 were most of the executable's build time. A call costs one
/// virtual call and returns the model's own task (none of these models is a synchronous_cache,
/// whose plain calls this would hide).
class document_cache {
public:
  virtual ~document_cache() = default;
  virtual bulwark::task<std::optional<bulwark::cached>> get(std::string_view key) = 0;
  virtual bulwark::task<bool> put(std::string_view key, bulwark::versioned value, std::chrono::milliseconds ttl) = 0;
  virtual bulwark::task<bool> erase(std::string_view key) = 0;
};

/// A document_cache over the cache model `Cache`, which outlives it.
template <bulwark::cache Cache> class document_cache_over final : public document_cache {
public:
  explicit document_cache_over(Cache& cache) : cache_(cache) {}
  bulwark::task<std::optional<bulwark::cached>> get(std::string_view key) override { return cache_.get(key); }
  bulwark::task<bool> put(std::string_view key, bulwark::versioned value, std::chrono::milliseconds ttl) override {
    return cache_.put(key, std::move(value), ttl);
  }
  bulwark::task<bool> erase(std::string_view key) override { return cache_.erase(key); }

private:
  Cache& cache_;
};

static_assert(bulwark::cache<document_cache>, "channel_metadata::document_cache must model bulwark::cache");

} // namespace channel_metadata
