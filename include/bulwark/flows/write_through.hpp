#pragma once
// write_through<Repository, Cache, Bus>: a repository (the truth) with a cache in front, that
// keeps answering reads and keeps every accepted write while the repository is down, and
// converges once it is back. docs/flows.md shows how to assemble one.
//
// Write (an upsert by key). A fresh order stamp (hybrid_clock) and a request id go into a frame
// around the value (flows/frame.hpp). The repository put runs through the circuit breaker and a
// per-call timeout bounded by the caller's deadline, as a compare-and-set that never writes over
// a newer stamp (below); then the cache put, with version = the stamp. When the repository is
// unavailable, times out or the breaker is open, the write is *accepted pending*: the retry
// message (the same frame, state pending) is published to the retry topic, then the pending frame
// is cached (version = the stamp) and kept in this process's pending index. The caller learns
// which: write_state::durable or write_state::pending (HTTP 200 or 202). If the bus refuses too,
// the write is an error and nothing is cached: a write is never silently lost.
//
// The commit point of a pending write is the retry message's publish: the topic is durable and a
// retry_replayer (or reconcile()) applies it; the cache and the pending index are copies.
// errc::timeout from write() means the outcome is unknown (the repository put or the publish may
// still land); writing again with the same request id is safe, since a replay or a newer write
// wins by stamp.
//
// Compare-and-set on the repository: the expected version is the one this process last saw for
// the key (no read when it is right); on errc::conflict, or when none is known, the stored frame is
// read: a stored stamp newer than this write's means this write is already superseded (it is
// reported durable: by order it lies before what the repository holds, and is not written), else
// the put is retried with the version read (at most `max_cas_attempts` times, then
// errc::conflict). Cost of a durable write: one bounded put through the breaker (plus one get when
// the version is unknown or stale), one cache put, the frame encoded once and kept in this
// process's map. A model of the synchronous refinements (synchronous_repository, synchronous_cache:
// the memory models) is called through its plain calls: the repository's through the breaker but
// with no with_timeout coroutine thread (a call that never suspends cannot be bounded: with_timeout
// too returns its result), the cache's with no task; with both synchronous, the usual durable write
// (version known, breaker closed) runs as plain calls outside the coroutine (write_now), in one
// hold of this flow's mutex. Models of the copying refinements too (copying_repository,
// copying_cache: the memory models) take the frame as a view: it is encoded into this flow's one
// reused buffer and copied into the buffers they already hold for the key, and the buffer is then
// swapped into this process's entry, so a rewrite of a key allocates and frees nothing. The write
// views its key, value and request id (nothing is copied before the frame is encoded), makes a
// request id that fits std::string's inline buffer, stamps on the coarse wall clock (the same
// read as this process's entry's time), and hands back a receipt without the id. By time the
// write is mostly cache misses (it touches three maps' entries where a bare put touches one):
// this process's entries are a detail::keyed_list (a hash_index over a list, one dependent miss
// less per lookup than std::unordered_map), the write asks for its entry's index cell before it
// stamps and locks (hash_index::prefetch, as memory::cache's put does for its own), and the
// buffer it swaps out of the entry (the next write's frame) is prefetched for writing. On the
// memory models a durable write costs about 1.95 bare puts by instructions and ~2.2 by CPU time,
// and a cache hit about 1.5 bare gets; the current figures are the write_through rows of the
// README's "Measured figures" (benchmarks/write_through.sh, write_through_instructions.sh), and
// docs/last_known_good.md says where the time goes.
//
// Read. The cache, fresh within soft_ttl -> the answer. Else the repository, one load per key at
// a time (the others wait for it and share its result), through breaker and timeout; the loaded
// frame populates the cache with version = its stamp (a value without a frame, written by someone
// else, counts as durable with stamp 0), so the cache's rule "never replace a higher version"
// keeps an older populate from replacing a pending write. When the repository is unavailable
// (or times out, or the breaker is open), the cache's entry, or failing that this process's
// last-known-good copy, is served up to hard_limit old, flagged stale with its age; past that
// the read fails with the repository's error; while the breaker is open no load is started at
// all (the breaker's refusal is that error). A cache failure counts as a miss: it never fails a
// read the repository can answer. The cache get is not bounded by the read's deadline (a cache
// model bounds its own calls: Redis and Hazelcast by their command timeout, memory never
// suspends); a read whose deadline has already passed (by the coarse steady clock: at most one kernel
// tick late) skips the cache as if its get had failed. A pending entry (in the
// cache or in this process's pending index, when newer than what the repository returned) is returned with pending =
// true.
//
// Age: now (options::wall) minus the cache's stored_at, so a cache shared by replicas needs
// their wall clocks roughly in step.
//
// The cache is a copy: a failed cache put after a durable write is counted, not returned, so a
// cache that refused it may show the previous value until soft_ttl passes or the next write.
// Every step of a write (and a load's populate) is bounded by the caller's deadline: a cache put
// (with a near cache, its invalidation publish) still running then is abandoned, counted as a
// cache error, and the write answers what it committed (durable or pending) in time.
// The flow must outlive its operations (a shared repository load runs on for the readers left
// when one of them gives up).
//
// Last-known-good: this process keeps a bounded map of the entries it wrote and loaded from the
// repository (not those it merely found in the cache, so a hit takes no lock), each with the
// repository version it last saw; past options::last_known_good_entries the durable entry first
// recorded is dropped (pending ones stay). With options::snapshot set, start() loads the snapshot file
// before anything reaches the repository: pending entries go to the cache (the version rule keeps
// newer ones) and the pending index; durable ones go to the map only, since a cache put would
// make them look stored now and so fresh. A snapshot_writer then saves the map every period and
// on stop(). A corrupt or foreign file is reported (options::on_snapshot_error) and ignored.
//
// reconcile(): the cache concept cannot list entries, so pending entries are found in a
// process-local index, fed by this process's pending writes and by its snapshot (so they survive
// a restart). Entries other replicas accepted are theirs to reconcile; the retry topic
// (retry_replayer) covers every replica's. With options::reconcile_period each replica runs it by
// itself in the background while its index is not empty and its breaker lets calls through (a
// reconcile request behind a load balancer reaches one replica only, and the others' entries would
// stay pending until their next write of the key). Each pending entry newer than the repository's copy is
// written (compare-and-set loop), and then cached as durable (same stamp: the cache's equal-version
// refresh); one the repository already holds at the same or a newer stamp is superseded (at the
// same stamp it is this very write, replayed: its cache entry is refreshed as durable too).
//
// Ordering and Hazelcast: the hazelcast::cache REST API has no conditional put, so there an older
// populate can briefly replace a newer entry (until its next populate or write); the repository
// and the retry path stay correct. Memory and Redis caches keep the rule.
//
// Metrics (options::metrics), labelled name=options::name:
//   bulwark_write_through_cache_hits_total, _cache_misses_total, _cache_errors_total,
//   _stale_serves_total, _stale_age_seconds (histogram), _pending_writes_total,
//   _pending_entries (gauge), _retry_published_total, _repository_seconds{op} (histogram),
//   _reconciled_total{outcome="written"|"superseded"|"failed"};
//   the breaker's own bulwark_circuit_breaker_* and the snapshot writer's bulwark_snapshot_*
//   (bulwark_snapshot_age_seconds) go to the same registry.
//
// Threads: every member may be called from any coroutine on any thread, as far as the models
// allow (see their headers: redis and mysql models want one executor). A task resumes on its
// caller's executor.

#include <bulwark/cache.hpp>
#include <bulwark/clock.hpp>
#include <bulwark/coarse_clock.hpp>
#include <bulwark/detail/assign_bytes.hpp>
#include <bulwark/detail/atomic_mutex.hpp>
#include <bulwark/detail/key_hash.hpp>
#include <bulwark/detail/keyed_list.hpp>
#include <bulwark/detail/periodic.hpp>
#include <bulwark/detail/request_id.hpp>
#include <bulwark/event_bus.hpp>
#include <bulwark/flows/frame.hpp>
#include <bulwark/flows/snapshot.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/repository.hpp>
#include <bulwark/resilience/circuit_breaker.hpp>
#include <bulwark/resilience/singleflight.hpp>
#include <bulwark/resilience/timeout.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/this_coro.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::flows {

/// What a write reports: durable (in the repository) or pending (on the retry topic), and its
/// order stamp. Not the request id: the caller's is the caller's, and one write() made up is
/// useful to nobody (after errc::timeout, the only case that asks for the same id again, there is
/// no receipt); it is in the stored frame. Trivially copyable: handing it back copies 16 bytes.
struct write_receipt {
  write_state outcome = write_state::durable;
  order_stamp stamp{};
};

/// What a read returns.
struct read_result {
  std::string value;
  bool stale = false;              ///< the repository could not be asked: a last-known-good copy
  bool pending = false;            ///< accepted while the repository was down, not yet known durable
  std::chrono::milliseconds age{}; ///< since the cache (or this process) stored it
  order_stamp stamp{};
};

/// What reconcile() did.
struct reconcile_report {
  std::size_t written = 0;    ///< pending entries now in the repository
  std::size_t superseded = 0; ///< pending entries the repository already held, or held newer
  std::size_t failed = 0;     ///< left pending (the repository is still down, or refused)
};

/// Counters for tests and diagnostics (the metrics carry the same).
struct write_through_stats {
  std::uint64_t hits = 0, misses = 0, cache_errors = 0, stale_serves = 0, pending_writes = 0, retry_published = 0,
                repository_loads = 0;
};

template <repository Repository, cache Cache, event_bus Bus> class write_through {
public:
  struct snapshot_options {
    std::filesystem::path path;
    std::chrono::milliseconds period{std::chrono::seconds(30)};
  };

  struct options {
    std::string name = "default";                                 ///< the metrics' name label
    std::string retry_topic = "bulwark.retry";                    ///< where pending writes go
    std::chrono::milliseconds soft_ttl{std::chrono::seconds(30)}; ///< a cache entry younger is fresh
    /// Oldest last-known-good served while the repository is down.
    std::chrono::milliseconds hard_limit{std::chrono::hours(24)};
    /// The cache's own expiry for the entries written; 0: hard_limit (then nothing servable expires).
    std::chrono::milliseconds cache_ttl{0};
    /// Bound of each repository call (also bounded by the caller's deadline). Keep it well under
    /// the requests' deadlines: a write whose repository call used up the whole deadline has no
    /// time left to publish its retry message and fails with errc::timeout (outcome unknown).
    bulwark::clock::duration repository_timeout = std::chrono::seconds(2);
    circuit_breaker::options breaker{}; ///< its clock and metrics default to this flow's
    std::uint16_t node = 0;             ///< this replica's order-stamp node id, 0..4095
    bulwark::clock clock{};             ///< timeouts, breaker, snapshot period, stamps
    /// Wall time for entry ages (compared with the cache's stored_at). The default is the coarse
    /// clock (one kernel tick, 1-4 ms; the memory cache's own): read on every hit, it is ~5x cheaper.
    /// Empty (the default): coarse_system_clock::now(), called directly (no std::function call on a hit).
    std::function<std::chrono::system_clock::time_point()> wall{};
    /// Request ids for writes that bring none; default: 15 URL-safe base64 characters, a per-thread
    /// random 60-bit tag and a counter (detail/request_id.hpp): unique, sequential, not secret.
    std::function<std::string()> request_ids{};
    std::shared_ptr<metrics::registry> metrics{};
    std::optional<snapshot_options> snapshot{};
    std::size_t last_known_good_entries = 100'000; ///< bound of this process's map (pending ones stay)
    std::function<void(const error&)> on_snapshot_error{};
    unsigned max_cas_attempts = 8;
    /// With a period, start() starts a background reconcile(): every period, while this
    /// process's pending index is not empty and the breaker lets calls through, so that each
    /// replica writes (or finds superseded) and forgets its own pending entries once the
    /// repository is back, whether or not anyone calls reconcile() (behind a load balancer, a
    /// reconcile request reaches one replica). Each run is bounded by the longer of the period
    /// and repository_timeout; what it cannot write waits for the next. 0 (the default): only
    /// when reconcile() is called.
    std::chrono::milliseconds reconcile_period{0};
  };

  /// Holds the three models by reference (they must outlive it). Throws std::invalid_argument for
  /// a node id over 4095. Call start() before serving.
  write_through(Repository& repo, Cache& cache, Bus& bus, options opts)
      : repo_(repo), cache_(cache), bus_(bus), opts_(prepare(std::move(opts))),
        hlc_(opts_.node, opts_.clock, wall_now()), breaker_(opts_.breaker) {
    if (opts_.metrics) gauges_.emplace(*opts_.metrics, opts_.name);
  }
  write_through(const write_through&) = delete;
  write_through& operator=(const write_through&) = delete;

  /// Loads the snapshot (if configured) before any repository call, then starts saving it every
  /// period. A snapshot that cannot be read is reported to options::on_snapshot_error and
  /// ignored. Errors: only what the cache refuses for a pending entry is ignored too; never fails.
  task<void> start() {
    auto executor = co_await asio::this_coro::executor;
    if (opts_.snapshot) co_await start_snapshot(executor);
    // After the snapshot's pending entries are back, so that the first run sees them.
    if (opts_.reconcile_period > std::chrono::milliseconds::zero() && !reconciling_) {
      reconciling_ = std::make_unique<bulwark::detail::periodic>(executor, opts_.clock, opts_.reconcile_period,
                                                                 [this] { return reconcile_in_background(); });
      reconciling_->start();
    }
    co_return ok();
  }

  /// Stops the background reconcile (waiting for a run in progress), then the snapshot writer
  /// after a last save (its error, if that save failed). Call it before destroying the flow.
  task<void> stop() {
    if (reconciling_) (void)co_await reconciling_->stop();
    if (!writer_) co_return ok();
    co_return co_await writer_->stop();
  }

  /// Writes value under key: durable, or accepted pending while the repository cannot take it
  /// (see the file comment). `request_id` (at most 64 bytes) names the write for idempotent
  /// replays; empty: a new one (options::request_ids). `key`, `value` and `request_id` are viewed,
  /// not copied (the frame is what is stored): they must outlive the write, as they do when it is
  /// co_awaited in the expression that makes it. Errors: errc::invalid_argument for a request id
  /// (the caller's or options::request_ids') over 64 bytes; the repository's own refusals
  /// (invalid_argument, too_large, conflict after max_cas_attempts); when it is down, the bus's
  /// error (nothing accepted) or errc::timeout (unknown: write again with the same request id).
  task<write_receipt> write(std::string_view key, std::string_view value, deadline d,
                            std::string_view request_id = {}) {
    char made[max_request_id]; // a new request id's bytes, in this coroutine's frame
    // This process's entry for the key is looked up under mutex_ after the stamp is issued: the
    // start of that lookup is fetched meanwhile (usually a cache miss on a busy map).
    const std::size_t hash = bulwark::detail::hash_key(key);
    known_.prefetch(hash);
    if (request_id.empty() && !opts_.request_ids) {
      bulwark::detail::next_request_id(made); // 15 characters from this thread's source, ~15 instructions
      request_id = std::string_view(made, bulwark::detail::request_id_chars);
    } else if (request_id.empty()) {
      auto id = id_from_option(made);
      if (!id) co_return id.error();
      request_id = id.value();
    } else {
      BOOST_OUTCOME_CO_TRY(check_request_id(request_id));
    }
    if constexpr (synchronous_repository<Repository> && synchronous_cache<Cache>) {
      // The usual durable write in plain calls (write_now): its locals on the stack, and this
      // coroutine's frame small enough for Asio to recycle it. The rest in a coroutine of its own.
      // One wall clock read for the stamp and this process's entry (unless options::wall is set).
      const auto wall = wall_now();
      const order_stamp stamp = opts_.wall ? hlc_.now() : hlc_.now(wall);
      auto first = write_now(key, hash, value, stamp, request_id, wall);
      if (first && first.value() == first_attempt::durable) co_return write_receipt{write_state::durable, stamp};
      if (!first && !is_outage(first.error())) co_return first.error();
      co_return co_await write_rest(key, value, d, request_id, stamp, std::move(first));
    } else {
      const order_stamp stamp = hlc_.now();
      co_return co_await write_rest(key, value, d, request_id, stamp, first_attempt::not_made);
    }
  }

  /// The value under key, or nullopt when the repository has none (see the file comment).
  /// Errors: the repository's error when it cannot answer and nothing servable is held.
  task<std::optional<read_result>> read(std::string_view key, deadline d) {
    // The cache get, inline (a coroutine frame less on a hit). Not bounded by the read's deadline:
    // a cache model bounds its own calls (memory never suspends; Redis and Hazelcast have a command
    // timeout). A deadline already passed skips the cache as a failed get did (counted, a miss).
    std::optional<held> from_cache;
    // (Checked on the coarse steady clock: a few ns on every hit instead of ~30; a tick late at most.)
    if (d.passed_coarse()) {
      count(stats_.cache_errors, gauges_ ? gauges_->cache_errors : nullptr);
    } else {
      // A synchronous cache's plain call: no task, no coroutine frame of its own.
      if constexpr (synchronous_cache<Cache>) {
        from_cache = from_cache_get(cache_.get_now(key));
      } else {
        auto got = co_await cache_.get(key);
        from_cache = from_cache_get(std::move(got));
      }
    }
    if (from_cache && from_cache->age < opts_.soft_ttl) {
      count(stats_.hits, gauges_ ? gauges_->hits : nullptr);
      co_return as_result(std::move(*from_cache), false);
    }
    // The rest in a coroutine of its own, so that a hit's frame holds only what a hit needs.
    co_return co_await read_miss(std::string(key), std::move(d), std::move(from_cache));
  }

  /// Entries of the pending index now.
  std::size_t pending_count() const {
    std::lock_guard lock(mutex_);
    return pending_;
  }

  /// Writes every pending entry of this process's index that is newer than the repository's
  /// copy (see the file comment). Never fails: what could not be written is counted in failed.
  task<reconcile_report> reconcile(deadline d) {
    reconcile_report report;
    for (auto& [key, f] : pending_entries()) {
      // Named, not a temporary inside the co_await: GCC 12 destroys such a temporary twice.
      const std::string bytes = encode(frame{write_state::durable, f.stamp, f.request_id, f.value});
      auto stored = co_await store_durably(key, f.stamp, bytes, d);
      if (!stored) {
        ++report.failed;
        if (gauges_) gauges_->reconciled_failed->inc();
        continue;
      }
      if (stored.value().superseded) {
        ++report.superseded;
        if (gauges_) gauges_->reconciled_superseded->inc();
        forget_pending(key, f.stamp);
        // The repository holds this very write (a retry_replayer wrote it): the cache's pending
        // copy becomes durable (same stamp: the cache's equal-version refresh), so reads stop
        // reporting it pending. A newer stored write is left to its own populate.
        if (stored.value().stamp == f.stamp) {
          f.state = write_state::durable;
          co_await cache_put(key, encode(f), f.stamp, &d);
          remember(key, f, stored.value().version);
        }
        continue;
      }
      f.state = write_state::durable;
      co_await cache_put(key, encode(f), f.stamp, &d);
      remember(key, f, stored.value().version);
      ++report.written;
      if (gauges_) gauges_->reconciled_written->inc();
    }
    co_return report;
  }

  /// The circuit breaker guarding the repository.
  circuit_breaker& breaker() noexcept { return breaker_; }
  hybrid_clock& stamps() noexcept { return hlc_; }
  const options& config() const noexcept { return opts_; }

  write_through_stats stats() const {
    return {stats_.hits.load(),
            stats_.misses.load(),
            stats_.cache_errors.load(),
            stats_.stale_serves.load(),
            stats_.pending_writes.load(),
            stats_.retry_published.load(),
            stats_.repository_loads.load()};
  }

  /// This process's last-known-good entries (what the snapshot saves).
  std::vector<snapshot_entry> entries() const {
    std::lock_guard lock(mutex_);
    std::vector<snapshot_entry> out;
    out.reserve(known_.size());
    for (const auto& e : known_) out.push_back(snapshot_entry{e.key, e.value.item});
    return out;
  }

private:
  // What a cache or known entry holds, decoded.
  // (The value without the frame's header; the request id is not needed to answer a read.)
  struct held {
    std::string value;
    write_state state = write_state::durable;
    order_stamp stamp{};
    std::chrono::milliseconds age{};
  };
  struct known {
    cached item;                         // the frame's bytes, version = stamp, stored_at
    version_t repo_version = no_version; // the repository version last seen (0: none)
    bool pending = false;
  };
  struct stored_outcome {
    version_t version = no_version;
    bool superseded = false;
    order_stamp stamp{}; ///< superseded: the stamp the repository holds
  };
  struct loaded_frame {
    frame f;
    version_t repo_version = no_version;
  };
  struct atomic_stats {
    std::atomic<std::uint64_t> hits{0}, misses{0}, cache_errors{0}, stale_serves{0}, pending_writes{0},
        retry_published{0}, repository_loads{0};
  };
  struct instruments {
    instruments(metrics::registry& r, const std::string& name) {
      const std::vector<std::string> l{"name"};
      hits = &r.counter_family("bulwark_write_through_cache_hits_total", "Reads answered by a fresh cache entry", l)
                  .labels({name});
      misses = &r.counter_family("bulwark_write_through_cache_misses_total", "Reads that found no fresh cache entry", l)
                    .labels({name});
      cache_errors = &r.counter_family("bulwark_write_through_cache_errors_total",
                                       "Cache calls that failed (counted as misses)", l)
                          .labels({name});
      stale = &r.counter_family("bulwark_write_through_stale_serves_total",
                                "Reads answered by a last-known-good copy while the repository was down", l)
                   .labels({name});
      stale_age = &r.histogram_family("bulwark_write_through_stale_age_seconds", "Age of the stale copies served", l,
                                      {1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600})
                       .labels({name});
      pending_writes = &r.counter_family("bulwark_write_through_pending_writes_total",
                                         "Writes accepted pending while the repository was down", l)
                            .labels({name});
      pending_entries =
          &r.gauge_family("bulwark_write_through_pending_entries", "Pending entries in this process's index", l)
               .labels({name});
      retry_published = &r.counter_family("bulwark_write_through_retry_published_total", "Retry messages published", l)
                             .labels({name});
      auto& reconciled = r.counter_family("bulwark_write_through_reconciled_total",
                                          "Pending entries reconcile() handled, by outcome", {"name", "outcome"});
      reconciled_written = &reconciled.labels({name, "written"});
      reconciled_superseded = &reconciled.labels({name, "superseded"});
      reconciled_failed = &reconciled.labels({name, "failed"});
      auto& latency = r.histogram_family("bulwark_write_through_repository_seconds", "Repository call latency",
                                         {"name", "op"}, metrics::default_latency_buckets());
      get_latency = &latency.labels({name, "get"});
      put_latency = &latency.labels({name, "put"});
    }
    metrics::counter *hits, *misses, *cache_errors, *stale, *pending_writes, *retry_published;
    metrics::counter *reconciled_written, *reconciled_superseded, *reconciled_failed;
    metrics::histogram *stale_age, *get_latency, *put_latency;
    metrics::gauge* pending_entries;
  };

  // read() past the cache: the shared repository load, or the last known good.
  // `k`: owned, since the shared load may outlive this read.
  task<std::optional<read_result>> read_miss(std::string k, deadline d, std::optional<held> from_cache) {
    count(stats_.misses, gauges_ ? gauges_->misses : nullptr);
    // An open breaker would refuse the load: serve the last known good without starting one
    // (no shared load, no repository call). try_acquire settles a race with the breaker turning
    // half-open (its permit is handed back) and counts the refusal as call() would.
    if (!breaker_.permits()) {
      if (auto p = breaker_.try_acquire()) {
        breaker_.record_ignored(*p);
      } else {
        // The refusal (a lock and a string) is made only when nothing can be served.
        co_return serve_last_known_good(k, std::move(from_cache), [this] { return breaker_.refusal(); });
      }
    }
    std::function<task<std::optional<loaded_frame>>()> make_load = [this, k, d]() { return load(k, d); };
    auto loaded = co_await loads_.run(k, std::move(make_load));
    if (!loaded) {
      if (!is_outage(loaded.error())) co_return loaded.error();
      co_return serve_last_known_good(k, std::move(from_cache), [&loaded] { return loaded.error(); });
    }
    auto& found = loaded.value();
    const order_stamp durable = found ? found->f.stamp : order_stamp{};
    // A pending write newer than the repository's copy is the answer: the one the cache holds
    // (any replica's; the populate just failed to replace it), or one of this process's.
    if (from_cache && from_cache->state == write_state::pending && from_cache->stamp > durable)
      co_return as_result(std::move(*from_cache), false);
    if (auto mine = pending_newer_than(k, durable)) co_return as_result(std::move(*mine), false);
    if (!found) co_return std::optional<read_result>{};
    co_return read_result{std::move(found->f.value), false, false, std::chrono::milliseconds(0), found->f.stamp};
  }

  static options prepare(options o) {
    if (o.cache_ttl.count() == 0) o.cache_ttl = o.hard_limit;
    if (!o.breaker.clock.is_manual()) o.breaker.clock = o.clock;
    if (!o.breaker.metrics) o.breaker.metrics = o.metrics;
    if (o.breaker.name == "breaker") o.breaker.name = "write_through_" + o.name;
    if (o.max_cas_attempts == 0) o.max_cas_attempts = 1;
    return o;
  }

  static void count(std::atomic<std::uint64_t>& n, metrics::counter* c) {
    n.fetch_add(1, std::memory_order_relaxed);
    if (c) c->inc();
  }

  static bool is_outage(const error& e) {
    return e == errc::unavailable || e == errc::timeout || e == errc::circuit_open;
  }

  // options::request_ids' id, copied to `out`; errc::invalid_argument when it is over
  // max_request_id bytes. (Without the option, write() takes 15 characters from this thread's
  // detail::request_id_source: a random tag and a counter, no allocation.)
  result<std::string_view> id_from_option(char (&out)[max_request_id]) {
    const std::string id = opts_.request_ids();
    BOOST_OUTCOME_TRY(check_request_id(id));
    std::memcpy(out, id.data(), id.size());
    return std::string_view(out, id.size());
  }

  // How write()'s first attempt with the version this process last saw went.
  enum class first_attempt : std::uint8_t {
    not_made,   // a model that may wait, or the breaker not closed: write_rest() makes it
    durable,    // written, recorded and cached: the write is done
    no_version, // this process knows no version for the key: the compare-and-set loop reads it
    conflicted, // the known version was stale: the loop reads the current one
  };

  // write() past a durable first attempt (or without one, for models that may wait): the first
  // attempt, the compare-and-set loop, the cache put, or the write accepted pending when
  // `first` holds the repository's outage error.
  task<write_receipt> write_rest(std::string_view key, std::string_view value, deadline d, std::string_view request_id,
                                 order_stamp stamp, result<first_attempt> first) {
    if (!first) {
      frame pending{write_state::pending, stamp, std::string(request_id), std::string(value)};
      co_return co_await accept_pending(key, std::move(pending), d);
    }
    // The durable frame's bytes, encoded once: the repository put, the cache put, this process's copy.
    // (No frame object: only a pending write needs one.)
    std::string bytes = encode(write_state::durable, stamp, request_id, value);
    std::optional<result<stored_outcome>> stored;
    // This process's entry for the key, found once for the version and again (without a lookup,
    // unless an entry was evicted meanwhile) to record the write.
    const known_slot slot = find_known(key);
    if (first.value() == first_attempt::not_made && slot.version) {
      // The usual first attempt of store_durably's compare-and-set, inline (a coroutine frame less
      // on every durable write): the version this process last saw.
      std::optional<result<version_t>> put;
      if constexpr (synchronous_repository<Repository>)
        put.emplace(guarded_now([&] { return repo_put_now(key, bytes, *slot.version); }, put_latency()));
      else
        put.emplace(co_await guarded(repo_.put(key, bytes, *slot.version), d, put_latency()));
      if (*put)
        stored.emplace(stored_outcome{put->value(), false});
      else if (put->error() != errc::conflict)
        stored.emplace(put->error());
      else
        first = first_attempt::conflicted;
    }
    if (!stored) {
      // No version known, or it was stale: the loop that reads the stored frame first.
      auto cas = co_await store_durably(key, stamp, bytes, d, first.value() == first_attempt::conflicted);
      stored.emplace(std::move(cas));
    }
    if (stored->has_value()) {
      const stored_outcome done = stored->value();
      if (done.superseded) co_return write_receipt{write_state::durable, stamp};
      // This process's copy first (copied into the buffer it already holds), then the bytes
      // themselves to the cache: one allocation less than copying them into the cache. The
      // cache put inline, as cache_put() does it (a coroutine frame less).
      remember(key, slot, bytes, stamp, false, done.version);
      versioned entry{std::move(bytes), stamp.value};
      if constexpr (synchronous_cache<Cache>) {
        if (!cache_.put_now(key, std::move(entry), opts_.cache_ttl)) count(stats_.cache_errors, cache_errors());
      } else {
        auto cached = co_await cache_put_within(key, std::move(entry), d);
        if (!cached) count(stats_.cache_errors, cache_errors());
      }
      co_return write_receipt{write_state::durable, stamp};
    }
    const error failed = stored->error();
    if (!is_outage(failed)) co_return failed;
    frame pending{write_state::pending, stamp, std::string(request_id), std::string(value)};
    co_return co_await accept_pending(key, std::move(pending), d);
  }

  // The usual durable write of a synchronous repository and cache, as plain calls: the frame, the
  // put with the version this process last saw (through the breaker), this process's entry, the
  // cache put. Errors: the repository's refusal (an outage: write_rest() accepts the write
  // pending); errc::conflict is no error here but first_attempt::conflicted.
  //
  // Everything from the lookup of this process's entry to the cache put runs in one hold of
  // mutex_ (the models never wait, and call nothing that takes mutex_): one lock and one lookup
  // of the entry per write. The frame is encoded into frame_buffer_, this flow's one buffer
  // (guarded by mutex_), and models that copy a viewed value into the buffer they hold for the
  // key (copying_repository, copying_cache: the memory models) take it from there, so a rewrite
  // of a key allocates nothing: no frame string, no copy for the repository, no old value freed.
  // The breaker admits the call under mutex_ only while closed (try_acquire_closed: no lock, no
  // callback); in any other state write_rest() makes the attempt through guarded_now(), as for
  // every other call. The outcome is reported after mutex_ is released, since a state-change
  // callback may call this flow.
  result<first_attempt> write_now(std::string_view key, std::size_t hash, std::string_view value, order_stamp stamp,
                                  std::string_view request_id, std::chrono::system_clock::time_point now) {
    static_assert(synchronous_repository<Repository> && synchronous_cache<Cache>);
    metrics::histogram* const latency = put_latency();
    std::unique_lock lock(mutex_);
    auto* found = known_.find(key, hash);
    if (!found || found->value.repo_version == no_version) return first_attempt::no_version;
    known& k = found->value;
    encode_into(frame_buffer_, write_state::durable, stamp, request_id, value);
    const auto admitted = breaker_.try_acquire_closed();
    if (!admitted) return first_attempt::not_made;
    const circuit_breaker::permit& permit = *admitted;
    const auto started = latency ? opts_.clock.now() : bulwark::clock::time_point{};
    result<version_t> put = [&] {
      try {
        return repo_put_now(key, frame_buffer_, k.repo_version);
      } catch (...) {
        breaker_.record_exception(permit);
        throw;
      }
    }();
    bool cache_failed = false;
    if (put) {
      cache_failed = !cache_put_now(key, frame_buffer_, stamp);
      // The entry takes the frame's buffer (and frame_buffer_ the entry's old one): no copy.
      record_locked(k, false, frame_buffer_, stamp, false, put.assume_value(), now, &frame_buffer_);
      prefetch_for_write(frame_buffer_);
    }
    lock.unlock();
    settle(permit, put, started, latency);
    if (!put) {
      if (put.assume_error() == errc::conflict) return first_attempt::conflicted;
      return put.assume_error();
    }
    if (cache_failed) count(stats_.cache_errors, cache_errors());
    return first_attempt::durable;
  }

  // Asks for the cache lines of `buffer`'s bytes, to be written: write_now() hands frame_buffer_
  // the buffer a key's entry held (untouched since that key's last write, so usually out of the
  // CPU's caches), and the next write encodes its frame there. Fetched now, while this write
  // returns, the next one does not wait for them.
  static void prefetch_for_write(const std::string& buffer) noexcept {
#if defined(__GNUC__)
    const char* p = buffer.data();
    for (std::size_t at = 0; at < buffer.size(); at += 64) __builtin_prefetch(p + at, 1);
#else
    (void)buffer;
#endif
  }

  // A synchronous repository's put of `bytes` (a frame): copied into the model's own buffer by a
  // copying_repository, else as a new string.
  result<version_t> repo_put_now(std::string_view key, std::string_view bytes, std::optional<version_t> expected) {
    if constexpr (copying_repository<Repository>)
      return repo_.put_copy_now(key, bytes, expected);
    else
      return repo_.put_now(key, std::string(bytes), expected);
  }

  // A synchronous cache's put of `bytes` (the frame of `stamp`, its version): whether the cache
  // answered (a refusal for a higher version held is an answer). As repo_put_now.
  bool cache_put_now(std::string_view key, std::string_view bytes, order_stamp stamp) {
    if constexpr (copying_cache<Cache>)
      return cache_.put_copy_now(key, bytes, stamp.value, opts_.cache_ttl).has_value();
    else
      return cache_.put_now(key, versioned{std::string(bytes), stamp.value}, opts_.cache_ttl).has_value();
  }

  // One repository call: the breaker, the per-call timeout within the caller's deadline, latency.
  // The breaker's permit API rather than breaker_.call(): one bounded call (a half-open probe's
  // bound is the least of probe_timeout, repository_timeout and the deadline, as call() nested in
  // with_timeout would give) and one coroutine frame less than wrapping the bounded call.
  template <class T> task<T> guarded(task<T> op, const deadline& d, metrics::histogram* latency) {
    static_assert(!synchronous_repository<Repository>, "a synchronous repository's calls go through guarded_now");
    const auto permit = breaker_.try_acquire();
    if (!permit) co_return breaker_.refusal();
    auto limit = opts_.repository_timeout;
    if (permit->probe) limit = std::min(limit, breaker_.settings().probe_timeout);
    // The clock is read for the latency only when it is measured (no metrics registry: never).
    const auto started = latency ? opts_.clock.now() : bulwark::clock::time_point{};
    std::optional<result<T>> r;
    try {
      // The deadline on the flow's clock (the usual case): one clock read for both bounds.
      auto bounded = d.source == opts_.clock
                         ? with_timeout(std::move(op), limit, d, "repository call")
                         : with_timeout(std::move(op), std::min(d.remaining(), limit), opts_.clock, "repository call");
      r.emplace(co_await std::move(bounded));
    } catch (...) {
      breaker_.record_exception(*permit);
      throw;
    }
    settle(*permit, *r, started, latency);
    co_return std::move(*r);
  }

  // One call of a synchronous repository (its plain call: it never waits), through the breaker as
  // guarded() runs one. No with_timeout: its bound is acted on only once the operation suspends,
  // and this one cannot; so no coroutine thread, no task, no clock read for the bound.
  template <class Call> auto guarded_now(Call call, metrics::histogram* latency) -> decltype(call()) {
    const auto permit = breaker_.try_acquire();
    if (!permit) return breaker_.refusal();
    const auto started = latency ? opts_.clock.now() : bulwark::clock::time_point{};
    auto r = [&] {
      try {
        return call();
      } catch (...) {
        breaker_.record_exception(*permit);
        throw;
      }
    }();
    settle(*permit, r, started, latency);
    return r;
  }

  // The end of a repository call that guarded() or guarded_now() admitted: its outcome to the
  // breaker, its latency to the histogram (when measured; `started` was read only then).
  template <class R> void settle(const circuit_breaker::permit& permit, const R& outcome,
                                 bulwark::clock::time_point started, metrics::histogram* latency) {
    if (outcome.has_value())
      breaker_.record_success(permit);
    else
      breaker_.record_error(permit, outcome.error());
    if (latency) latency->observe(std::chrono::duration<double>(opts_.clock.now() - started).count());
  }

  metrics::histogram* get_latency() const noexcept { return gauges_ ? gauges_->get_latency : nullptr; }
  metrics::histogram* put_latency() const noexcept { return gauges_ ? gauges_->put_latency : nullptr; }
  metrics::counter* cache_errors() const noexcept { return gauges_ ? gauges_->cache_errors : nullptr; }

  // What a cache get gives a read: the entry decoded; nullopt on a miss, on an entry a
  // write_through did not write (no frame) and on an error (counted).
  std::optional<held> from_cache_get(result<std::optional<cached>>&& got) {
    if (!got) {
      count(stats_.cache_errors, cache_errors());
      return std::nullopt;
    }
    if (!got.value()) return std::nullopt;
    return held_from(std::move(got.value()->value), age_of(got.value()->stored_at));
  }

  // The compare-and-set that never writes over a newer stamp (see the file comment).
  // `bytes`: the frame of `stamp`, encoded with state durable.
  // `tried`: write() already made the first attempt with the known version, and it conflicted.
  task<stored_outcome> store_durably(std::string_view key, order_stamp stamp, const std::string& bytes,
                                     const deadline& d, bool tried = false) {
    std::optional<version_t> expected = tried ? std::nullopt : known_version(key);
    for (unsigned attempt = tried ? 1 : 0; attempt < opts_.max_cas_attempts; ++attempt) {
      if (!expected) {
        std::optional<result<std::optional<versioned>>> read;
        if constexpr (synchronous_repository<Repository>)
          read.emplace(guarded_now([&] { return repo_.get_now(key); }, get_latency()));
        else
          read.emplace(co_await guarded(repo_.get(key), d, get_latency()));
        auto& current = *read;
        if (!current) co_return current.error();
        expected = no_version;
        if (current.value()) {
          const auto stored = stamp_of(current.value()->value);
          hlc_.observe(stored);
          if (stored >= stamp) co_return stored_outcome{current.value()->version, true, stored};
          expected = current.value()->version;
        }
      }
      std::optional<result<version_t>> put;
      if constexpr (synchronous_repository<Repository>)
        put.emplace(guarded_now([&] { return repo_put_now(key, bytes, expected); }, put_latency()));
      else
        put.emplace(co_await guarded(repo_.put(key, bytes, expected), d, put_latency()));
      if (*put) co_return stored_outcome{put->value(), false};
      if (put->error() != errc::conflict) co_return put->error();
      expected.reset();
    }
    co_return error(errc::conflict, "write_through: the repository version of the key kept changing (" +
                                        std::to_string(opts_.max_cas_attempts) + " attempts)");
  }

  // The write the repository could not take: the retry message (the commit point), then the cache.
  task<write_receipt> accept_pending(std::string_view key, frame f, const deadline& d) {
    f.state = write_state::pending;
    message retry = retry_message(std::string(key), f, known_version(key).value_or(no_version));
    auto published = co_await with_deadline(bus_.publish(opts_.retry_topic, std::move(retry)), d, "retry publish");
    if (!published) co_return published.error();
    count(stats_.retry_published, gauges_ ? gauges_->retry_published : nullptr);
    count(stats_.pending_writes, gauges_ ? gauges_->pending_writes : nullptr);
    co_await cache_put(key, encode(f), f.stamp, &d);
    remember(key, f, std::nullopt);
    co_return write_receipt{write_state::pending, f.stamp};
  }

  // One repository load (shared by concurrent readers of key), then the cache populate.
  task<std::optional<loaded_frame>> load(std::string key, deadline d) {
    stats_.repository_loads.fetch_add(1, std::memory_order_relaxed);
    std::optional<result<std::optional<versioned>>> read;
    if constexpr (synchronous_repository<Repository>)
      read.emplace(guarded_now([&] { return repo_.get_now(key); }, get_latency()));
    else
      read.emplace(co_await guarded(repo_.get(key), d, get_latency()));
    auto& got = *read;
    if (!got) co_return got.error();
    if (!got.value()) co_return std::optional<loaded_frame>{};
    auto& row = *got.value();
    frame f;
    std::string bytes;
    if (is_frame(row.value)) {
      auto decoded = decode(row.value);
      if (!decoded) co_return decoded.error();
      f = std::move(decoded).value();
      // The encoding is canonical: a durable frame's stored bytes are its encoding.
      if (f.state == write_state::durable) bytes = std::move(row.value);
    } else {
      f.value = std::move(row.value); // a foreign value: durable, stamp 0
    }
    f.state = write_state::durable; // whatever the writer marked, the repository holds it
    if (bytes.empty()) bytes = encode(f);
    hlc_.observe(f.stamp);
    remember(key, known_slot{}, bytes, f.stamp, false, row.version);
    co_await cache_put(key, std::move(bytes), f.stamp, &d);
    co_return loaded_frame{std::move(f), row.version};
  }

  // The cache is a copy: a failed put is counted, never the caller's error.
  asio::awaitable<void> cache_put(std::string_view key, const frame& f) { return cache_put(key, encode(f), f.stamp); }

  // `bytes`: the frame's encoding; `stamp`: its order stamp (the cache version). With `within`
  // (a write's or a read's deadline), waited for no longer than that (cache_put_within).
  asio::awaitable<void> cache_put(std::string_view key, std::string bytes, order_stamp stamp,
                                  const deadline* within = nullptr) {
    // Named, not a temporary inside the co_await: GCC 12 destroys such a temporary twice.
    versioned entry{std::move(bytes), stamp.value};
    if constexpr (synchronous_cache<Cache>) {
      if (!cache_.put_now(key, std::move(entry), opts_.cache_ttl)) count(stats_.cache_errors, cache_errors());
    } else {
      auto putting = within ? cache_put_within(key, std::move(entry), *within)
                            : cache_.put(key, std::move(entry), opts_.cache_ttl);
      auto put = co_await std::move(putting);
      if (!put) count(stats_.cache_errors, cache_errors());
    }
  }

  // The cache put of a request, waited for until the caller's deadline and no longer: by then
  // the write is committed (durable, or its retry message published) or the value loaded, and a
  // cache that does not answer (Redis or Hazelcast unreachable, a near cache's invalidation
  // publish waiting for Kafka's delivery timeout) must not hold the answer back. At the deadline
  // the put gets a terminal cancellation and, if it ignores it, runs on unobserved (cache.hpp,
  // "Deadlines and abandonment": it owns its arguments), so it may still land; the caller counts
  // it as a cache error. Started even when the deadline has passed, so that it reaches the cache
  // when it can.
  task<bool> cache_put_within(std::string_view key, versioned entry, const deadline& d) {
    return with_timeout(cache_.put(key, std::move(entry), opts_.cache_ttl), d.remaining(), d.source, "cache put");
  }

  // The repository cannot answer: the newest of the cache's entry and this process's copy, if it
  // is within hard_limit; else the repository's error.
  // `why()`: that error, asked for only when nothing is served.
  template <class Why> result<std::optional<read_result>>
  serve_last_known_good(const std::string& key, std::optional<held> from_cache, Why why) {
    std::optional<held> best = std::move(from_cache);
    // This process's copy, only when newer than the cache's (so not copied when it is not).
    if (auto mine = known_entry(key, best ? best->stamp : std::optional<order_stamp>{})) best = std::move(mine);
    if (!best || best->age > opts_.hard_limit) return why();
    count(stats_.stale_serves, gauges_ ? gauges_->stale : nullptr);
    if (gauges_) gauges_->stale_age->observe(std::chrono::duration<double>(best->age).count());
    return std::optional<read_result>(as_result(std::move(*best), true));
  }

  static read_result as_result(held&& h, bool stale) {
    return read_result{std::move(h.value), stale, h.state == write_state::pending, h.age, h.stamp};
  }

  // A frame's bytes as held: the header checked and cut off in place (no allocation); nullopt
  // when they are not a frame.
  static std::optional<held> held_from(std::string&& bytes, std::chrono::milliseconds age) {
    const auto h = decode_header(bytes);
    if (!h) return std::nullopt;
    bytes.erase(0, h.value().value_offset);
    return held{std::move(bytes), h.value().state, h.value().stamp, age};
  }

  std::chrono::milliseconds age_of(std::chrono::system_clock::time_point stored_at) const {
    const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(wall_now() - stored_at);
    return age.count() < 0 ? std::chrono::milliseconds(0) : age;
  }

  std::chrono::system_clock::time_point wall_now() const {
    return opts_.wall ? opts_.wall() : coarse_system_clock::now();
  }

  static order_stamp stamp_of(std::string_view stored) {
    if (!is_frame(stored)) return order_stamp{};
    auto f = decode(stored);
    return f ? f.value().stamp : order_stamp{};
  }

  // --- this process's last-known-good map and pending index (one mutex) ---

  std::optional<version_t> known_version(std::string_view key) { return find_known(key).version; }

  // This process's entry for a key as a write finds it before its repository put: the version
  // to expect, and where the entry is, so that remember() after the put needs no second lookup.
  struct known_slot {
    std::optional<version_t> version; // the repository version last seen; nullopt: none
    known* entry = nullptr;           // nullptr: no entry yet
    std::uint64_t erasures = 0;       // erasures_ then: the entry is still there while it is unchanged
  };

  known_slot find_known(std::string_view key) {
    std::lock_guard lock(mutex_);
    auto* found = known_.find(key);
    if (!found) return known_slot{std::nullopt, nullptr, erasures_};
    auto& k = found->value;
    return known_slot{k.repo_version == no_version ? std::nullopt : std::optional<version_t>(k.repo_version), &k,
                      erasures_};
  }

  // Records f under key unless a newer entry is held; repo_version nullopt keeps the one known.
  void remember(std::string_view key, const frame& f, std::optional<version_t> repo_version) {
    const std::string bytes = encode(f);
    remember(key, known_slot{}, bytes, f.stamp, f.state == write_state::pending, repo_version);
  }

  // As above, with the frame already encoded (`bytes`; its stamp and whether it is pending), and
  // the entry as find_known() found it (an empty slot: looked up here). The bytes are copied into
  // the entry's own buffer, which a rewrite of the key reuses.
  void remember(std::string_view key, const known_slot& slot, std::string_view bytes, order_stamp stamp, bool pending,
                std::optional<version_t> repo_version) {
    const auto now = wall_now();
    std::lock_guard lock(mutex_);
    // An entry is only ever erased by evict_one_locked(), which counts it: while erasures_ is
    // unchanged the slot's entry is still in the map (a rehash moves no element).
    known* entry = slot.entry && slot.erasures == erasures_ ? slot.entry : nullptr;
    bool added = false;
    if (!entry) {
      auto [found, is_new] = known_.try_emplace(key);
      entry = &found->value;
      added = is_new;
    }
    record_locked(*entry, added, bytes, stamp, pending, repo_version, now);
    if (added && known_.size() > opts_.last_known_good_entries) evict_one_locked(key);
  }

  // The write of `stamp` (its frame's `bytes`) into this process's entry `k` (just `added`, or
  // found), unless the entry holds a newer stamp; mutex_ held. With `owner` (the string that
  // holds `bytes`), the entry swaps buffers with it instead of copying.
  void record_locked(known& k, bool added, std::string_view bytes, order_stamp stamp, bool pending,
                     std::optional<version_t> repo_version, std::chrono::system_clock::time_point now,
                     std::string* owner = nullptr) {
    if (!added && k.item.version > stamp.value) {
      if (repo_version) k.repo_version = *repo_version;
      return;
    }
    if (!added && k.pending) --pending_;
    if (owner)
      k.item.value.swap(*owner);
    else
      bulwark::detail::assign_bytes(k.item.value, bytes); // a rewrite: usually a plain copy
    k.item.version = stamp.value;
    k.item.stored_at = now;
    if (repo_version) k.repo_version = *repo_version;
    k.pending = pending;
    if (k.pending) ++pending_;
    if (gauges_) gauges_->pending_entries->set(static_cast<double>(pending_));
  }

  // Drops the durable entry first recorded, other than `keep` (the map is a bounded copy).
  void evict_one_locked(std::string_view keep) {
    for (auto it = known_.begin(); it != known_.end(); ++it) {
      if (!it->value.pending && it->key != keep) {
        known_.erase(it);
        ++erasures_;
        return;
      }
    }
  }

  void forget_pending(const std::string& key, order_stamp stamp) {
    std::lock_guard lock(mutex_);
    auto* found = known_.find(key);
    if (!found || !found->value.pending || found->value.item.version != stamp.value) return;
    found->value.pending = false;
    --pending_;
    if (gauges_) gauges_->pending_entries->set(static_cast<double>(pending_));
  }

  // This process's entry for key; with `newer_than`, only if its stamp is greater.
  std::optional<held> known_entry(const std::string& key, std::optional<order_stamp> newer_than = {}) const {
    std::lock_guard lock(mutex_);
    const auto* found = known_.find(key);
    if (!found || (newer_than && found->value.item.version <= newer_than->value)) return std::nullopt;
    return held_from(std::string(found->value.item.value), age_of(found->value.item.stored_at));
  }

  std::optional<held> pending_newer_than(const std::string& key, order_stamp stamp) const {
    std::lock_guard lock(mutex_);
    const auto* found = known_.find(key);
    if (!found || !found->value.pending || found->value.item.version <= stamp.value) return std::nullopt;
    return held_from(std::string(found->value.item.value), age_of(found->value.item.stored_at));
  }

  // start()'s snapshot part: the file's entries back (a file that cannot be read is reported to
  // options::on_snapshot_error and ignored), then a writer saving every period.
  asio::awaitable<void> start_snapshot(asio::any_io_executor executor) {
    auto loaded = last_known_good::load(opts_.snapshot->path);
    if (!loaded) {
      if (opts_.on_snapshot_error) opts_.on_snapshot_error(loaded.error());
    } else {
      for (auto& e : loaded.value()) co_await restore(std::move(e));
    }
    snapshot_writer::options w;
    w.path = opts_.snapshot->path;
    w.period = opts_.snapshot->period;
    w.clock = opts_.clock;
    w.metrics = opts_.metrics;
    w.name = opts_.name;
    w.on_failure = opts_.on_snapshot_error;
    snapshot_writer::provider provide = [this] { return entries(); };
    writer_ = std::make_unique<snapshot_writer>(std::move(executor), std::move(provide), std::move(w));
    writer_->start();
  }

  // One background reconcile (options::reconcile_period): with nothing pending, or the breaker
  // refusing calls, it makes no call at all.
  asio::awaitable<void> reconcile_in_background() {
    if (pending_count() == 0 || !breaker_.permits()) co_return;
    const auto budget = std::max<bulwark::clock::duration>(opts_.reconcile_period, opts_.repository_timeout);
    (void)co_await reconcile(deadline::after(budget, opts_.clock));
  }

  std::vector<std::pair<std::string, frame>> pending_entries() const {
    std::lock_guard lock(mutex_);
    std::vector<std::pair<std::string, frame>> out;
    for (const auto& e : known_) {
      if (!e.value.pending) continue;
      if (auto f = decode(e.value.item.value)) out.emplace_back(e.key, std::move(f).value());
    }
    return out;
  }

  // One snapshot entry back: into the map with its original stored_at; a pending one into the
  // cache and the pending index too.
  asio::awaitable<void> restore(snapshot_entry e) {
    auto f = decode(e.entry.value);
    if (!f) {
      if (opts_.on_snapshot_error) opts_.on_snapshot_error(f.error());
      co_return;
    }
    hlc_.observe(f.value().stamp);
    const bool pending = f.value().state == write_state::pending;
    if (pending) co_await cache_put(e.key, f.value());
    std::lock_guard lock(mutex_);
    auto [found, added] = known_.try_emplace(e.key);
    known& k = found->value;
    if (!added && k.item.version >= e.entry.version) co_return;
    if (!added && k.pending) --pending_;
    k.item = std::move(e.entry);
    k.pending = pending;
    if (pending) ++pending_;
    if (gauges_) gauges_->pending_entries->set(static_cast<double>(pending_));
  }

  Repository& repo_;
  Cache& cache_;
  Bus& bus_;
  options opts_;
  hybrid_clock hlc_;
  circuit_breaker breaker_;
  singleflight<std::optional<loaded_frame>> loads_;
  std::optional<instruments> gauges_;
  atomic_stats stats_;
  // Taken on every durable write: an atomic_mutex locks and unlocks inline (no libpthread call).
  mutable bulwark::detail::atomic_mutex mutex_;
  bulwark::detail::keyed_list<known> known_; // this process's entries, in the order first recorded
  std::uint64_t erasures_ = 0;               // entries evict_one_locked() erased (see remember())
  std::size_t pending_ = 0;
  std::string frame_buffer_; // write_now()'s frame, reused (guarded by mutex_)
  std::unique_ptr<snapshot_writer> writer_;
  std::unique_ptr<bulwark::detail::periodic> reconciling_; // options::reconcile_period
};

} // namespace bulwark::flows
