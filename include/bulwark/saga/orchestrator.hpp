#pragma once
// saga::orchestrator<Definition, Repository, Bus>: runs sagas of one definition (saga.hpp,
// saga/definition.hpp) over any repository model, which holds the saga log (saga/log.hpp), and,
// for remote steps, any event bus model.
//
// Guarantees:
//   - start(id, context) is idempotent: a second start of an id (running, or finished within
//     the retention) creates nothing and reports the existing saga; outcome(id, deadline) waits
//     for its end (several waiters at once, each cancellable on its own).
//   - The log record is replaced with a compare-and-set put after every transition, before the
//     next step's effect is requested. So after a crash the saga resumes at the step whose
//     effect may or may not have happened, and requests it again: every step runs at least once
//     and must be idempotent (a ledger op id, a participant's record), as must compensations.
//   - Reverse-order compensation on a business failure, exhausted retries, a fatal error, the
//     saga's deadline or abort(), before the pivot; after it the saga only goes forward (a
//     failure for good leaves it `failed`). A compensation retries up to its own limit, then the
//     saga is left compensation_failed: counted, listed by list(), never purged before its
//     retention.
//   - Leases: a driving replica writes its name and an expiry (now + lease + the coming wait)
//     with every transition, and renews it while the saga waits in a step or a retry delay
//     (one renewal loop per replica, every renew_interval, writes now + lease for each such
//     saga with less than half the lease left: no timer per saga or step). The sweep of any
//     replica takes over a saga whose lease expired (its own unfinished sagas at once: that is
//     recover() after a restart). A replica that loses the compare-and-set to another's
//     take-over stops driving that saga. With several replicas over one repository each saga is
//     driven by one at a time, except that a replica whose renewals do not get through (hung,
//     cut off from the repository) may overlap the new owner for one step (hence: steps
//     idempotent).
//   - abort() on the driving replica cancels the running step's wait at once (`partial`
//     cancellation of what the step awaits; stop() uses `terminal`), then the saga goes on from
//     the log abort() wrote: it compensates.
//   - A final record is kept `retention` (default 24 h) after the end, then erased by a sweep.
//
// Finding unfinished sagas and old outcomes: two indexes in the same repository beside the log
// (key prefix P, default "saga/<definition name>/"), so that a sweep reads the sagas that may
// need it and not every outcome kept for the retention (before, a sweep read every record
// within the 24 h retention: after an hour at a steady rate, about 360 record reads per saga):
//   "~live/" P <id>                 one per saga that is not final: written before the saga's
//                                   log record is created, erased once its final record is
//                                   written (value: the wall time of the write, in ms)
//   "~ended/" P <20-digit ms>/<16 hex digits>   one per final record, keyed by the time it
//                                   became final and a hash of the id (so the key's length does
//                                   not depend on the id), value: the id; written before the
//                                   live entry is erased; the purge reads them oldest first and
//                                   stops at the first not yet due
// The log record stays the truth: an index entry only says where to look. A sweep reads the
// live entries (those of sagas driven here without reading their records), then each one's
// record: not final -> taken over when its lease expired; final -> its ended entry written,
// its live entry erased (its driver stopped between the two writes); absent for longer than a
// lease -> the entry is erased (a start whose create failed). Every saga that is not final has
// its live entry, whatever crashed when, so the sweep finds every saga whose driver died.
// Cost per saga: one put before the create (one round trip of latency), one put and one erase
// after the final write (after the outcome's waiters were woken), and at the purge a read and
// two erases. On an atomic_batch_repository (repository.hpp; redis::repository) the live entry
// goes with the create and the index writes with the final write, each in one all-or-nothing
// put_all: no round trip more than the log's own writes. The sweep's cost: the live entries,
// plus the outcomes due for purging, plus one entry read. A log written before these indexes
// existed: reindex() once (a full scan). An id is refused (errc::invalid_argument, before
// anything is written) when its live key ("~live/" P <id>, 6 bytes longer than its log key) is
// over the repository's key limit.
//
// Deadlines: one saga deadline (the definition's saga_timeout from its start) and one per step
// attempt (min(attempt start + step timeout, saga deadline)), passed down as time points. A
// local call is trusted with its deadline (no timer is armed around it); a remote step's wait
// for its reply is the one clock wait of the attempt; retry delays are clock waits.
//
// Remote steps: the command goes to the step's topic (saga/wire.hpp) with reply-to this
// replica's reply topic; the reply is routed to the waiting attempt by (saga id, step, op).
// A duplicate or unknown reply is dropped (committed); a malformed one is dead-lettered.
// An attempt whose reply does not come by its deadline fails with errc::timeout, which retries
// (the command is sent again; the participant answers from its record). A participant that is
// only slow (a backlog on its topic) must not be flooded by those resends: each resend queues
// behind the backlog and lengthens it, and with every saga resending each timeout the backlog
// can grow faster than the participant drains it (seen: 1000 concurrent checkouts on a loaded
// 2-core machine, 2,900 duplicate commands for 2,000 real ones, answers near a minute). Hence:
//   - the wait for (saga id, step, op) outlives a timed-out attempt: a reply to an earlier send
//     that comes during the retry delay is kept, and the next attempt takes it without sending
//     again (the wait ends with the saga here);
//   - attempt n (from 0) of a remote step waits timeout x 2^min(n, 3) (attempt_wait()), so a
//     step stuck behind a backlog resends ever more rarely (its lease holds that long too).
//
// Threads: every call and every saga runs on the executor given at construction, which must
// not run handlers on two threads at once (an io_context run by one thread, or a strand). The
// repository and bus must outlive the orchestrator; stop() before destroying it.

#include <bulwark/clock.hpp>
#include <bulwark/detail/notifier.hpp>
#include <bulwark/event_bus.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/repository.hpp>
#include <bulwark/result.hpp>
#include <bulwark/saga.hpp>
#include <bulwark/saga/definition.hpp>
#include <bulwark/saga/detail/wake.hpp>
#include <bulwark/saga/log.hpp>
#include <bulwark/saga/wire.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/cancellation_state.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bulwark::saga {

/// The Bus of an orchestrator whose definition has only local steps.
struct no_bus {
  struct subscription {};
};

struct orchestrator_options {
  /// This replica's name: the lease owner in the log. Unique among the replicas; the same after
  /// a restart, so recover() takes its own sagas back at once.
  std::string replica = "replica";
  /// Where the log records go; empty: "saga/<definition name>/".
  std::string key_prefix{};
  /// Where this replica's replies arrive; empty: "saga-replies.<definition name>.<replica>".
  std::string reply_topic{};
  /// How long a replica keeps a saga without writing to its log before others may take it.
  bulwark::clock::duration lease = std::chrono::seconds(30);
  /// How often the sweep looks for expired leases and purges old outcome records.
  bulwark::clock::duration sweep_interval = std::chrono::seconds(10);
  /// How often this replica renews the leases of the sagas it drives that wait in a step or a
  /// retry delay: each whose lease has less than half of `lease` left gets now + lease. Zero:
  /// lease / 3 (so a lease is renewed before it runs out however long the step takes).
  bulwark::clock::duration renew_interval = bulwark::clock::duration::zero();
  /// outcome() of a saga another replica drives reads its log: first `poll_first` after the
  /// call, then each wait twice the one before, up to `poll_interval`. A saga that ends soon is
  /// seen soon; one that runs long costs one read per poll_interval. (The repository concept
  /// has no change notification, and the bus reaches only the driving replica.)
  bulwark::clock::duration poll_first = std::chrono::milliseconds(20);
  bulwark::clock::duration poll_interval = std::chrono::seconds(1);
  /// How long a final record is kept (a duplicate start within it returns the outcome).
  std::chrono::system_clock::duration retention = std::chrono::hours(24);
  /// Records per scan page of a sweep or list().
  std::size_t scan_page = 256;
  /// Sagas this replica drives at once at most; start() beyond: errc::rejected.
  std::size_t max_in_flight = 100'000;
  /// The time of deadlines and waits (clock::manual() in tests).
  bulwark::clock clock{};
  /// Wall time for the log's timestamps and leases (shared by replicas on several hosts).
  std::function<wall_time()> wall = [] { return std::chrono::system_clock::now(); };
  /// Where the metrics go; none when empty.
  std::shared_ptr<metrics::registry> metrics{};
  /// Seed of the retry delays' jitter.
  std::uint64_t seed = 0x5a6a;
};

/// Counts since construction (what the metrics export, readable without a registry).
struct orchestrator_stats {
  std::uint64_t started = 0;
  std::uint64_t completed = 0;
  std::uint64_t compensated = 0;
  std::uint64_t compensation_failed = 0;
  std::uint64_t failed = 0;
  std::uint64_t taken_over = 0;      ///< sagas this replica resumed from the log (recover, sweep)
  std::uint64_t renewed = 0;         ///< leases renewed while a saga waited in a step or a retry delay
  std::uint64_t lost = 0;            ///< sagas it stopped driving: a log write failed or another took it
  std::uint64_t replies_dropped = 0; ///< duplicate, late or unknown replies
  std::size_t in_flight = 0;
};

/// What start() found or did.
struct start_result {
  bool created = false; ///< false: the id existed (running, or finished within the retention)
  saga_state state = saga_state::running;
};

/// One saga as list() returns it.
struct listed_saga {
  std::string id;
  log_record record;
};

template <saga_definition Definition, bulwark::repository Repository, class Bus = no_bus> class orchestrator {
public:
  using context_type = typename Definition::context_type;
  using codec = typename Definition::codec;
  using outcome_type = saga_outcome<context_type>;
  static constexpr bool has_bus = !std::is_same_v<Bus, no_bus>;

  /// Without a bus: the definition must have only local steps. Throws std::invalid_argument for
  /// a definition that does not validate() (or has remote steps).
  orchestrator(asio::any_io_executor ex, Definition def, Repository& repo,
               orchestrator_options opts = {}) requires(!has_bus)
      : core_(std::make_shared<core>(std::move(ex), std::move(def), repo, nullptr, std::move(opts))) {}

  /// With a bus for remote steps. Throws std::invalid_argument as above.
  orchestrator(asio::any_io_executor ex, Definition def, Repository& repo, Bus& bus,
               orchestrator_options opts = {}) requires has_bus
      : core_(std::make_shared<core>(std::move(ex), std::move(def), repo, &bus, std::move(opts))) {}

  orchestrator(const orchestrator&) = delete;
  orchestrator& operator=(const orchestrator&) = delete;
  ~orchestrator() { core_->request_stop(); }

  /// Starts saga `id` with `context`, or finds it: created=false with its state when the id is
  /// running or finished within the retention. errc::invalid_argument (empty id),
  /// errc::rejected (max_in_flight reached, or stopping), the repository's errors (then ask
  /// again with the same id: a start whose put timed out may have happened).
  task<start_result> start(std::string id, context_type context) {
    return core::start(core_, std::move(id), std::move(context));
  }

  /// Waits until saga `id` is final and returns its outcome, or errc::timeout at `deadline`
  /// (on options::clock), errc::cancelled when the caller is cancelled, errc::not_found for an
  /// id never started (or purged), the repository's errors.
  task<outcome_type> outcome(std::string id, bulwark::clock::time_point deadline) {
    return core_->outcome(std::move(id), deadline);
  }

  /// The saga's current state and context, from the log; nullopt when absent.
  task<std::optional<outcome_type>> status(std::string id) { return core_->status(std::move(id)); }

  /// Asks saga `id` to compensate now (the current step included: it may have been requested).
  /// errc::rejected when it is past its pivot, compensating already or final; errc::not_found;
  /// errc::conflict when the log kept changing (3 tries). When this replica drives the saga, the
  /// running step's wait is cancelled at once (what the step awaits ends, e.g. a clock wait or a
  /// remote step's reply) and the saga compensates; another driving replica finds the change at
  /// its next transition or lease renewal (within renew_interval once its lease is half gone).
  task<void> abort(std::string id) { return core_->abort(std::move(id)); }

  /// Up to `limit` sagas in `state` (e.g. compensation_failed), in id order.
  task<std::vector<listed_saga>> list(saga_state state, std::size_t limit = 1000) { return core_->list(state, limit); }

  /// Subscribes to the reply topic (with a bus), resumes this replica's unfinished sagas and
  /// those with an expired lease, purges old outcome records, and starts the periodic sweep.
  /// Returns how many sagas it resumed. Call once at start; start() works before it.
  task<std::size_t> recover() { return core::recover(core_); }

  /// One sweep now (what the periodic one does): returns how many sagas it took over. Reads
  /// the live index, the records of the sagas in it that this replica does not drive, and the
  /// oldest outcomes while they are due for purging (see the header).
  task<std::size_t> sweep() { return core::sweep(core_); }

  /// For a log written before its indexes existed (an earlier version): reads every record once
  /// and writes the index entry each lacks (live for a saga not final, ended for a final one).
  /// Returns how many records it read. Idempotent; its cost is the whole log, so run it once.
  task<std::size_t> reindex() { return core_->reindex(); }

  /// Stops: no new starts, the sweep ends, every saga driven here is cancelled where it waits
  /// (its log stays as last written: another replica, or this one after recover(), resumes it),
  /// the reply subscription stops. Returns once all of them ended.
  asio::awaitable<void> stop() { return core_->stop(); }

  orchestrator_stats stats() const { return core_->stats(); }
  /// Where the log records of this orchestrator's sagas are (the repository key prefix).
  const std::string& key_prefix() const noexcept { return core_->prefix; }

private:
  // Everything a running saga touches lives here, shared with the coroutines that drive sagas.
  struct core;

  template <class T> using awaitable = asio::awaitable<T>;

  using subscription_type = typename Bus::subscription;

  struct core : std::enable_shared_from_this<core> {
    // One saga driven by this replica.
    struct driven {
      log_record record;                   // the log as this replica last wrote it: run_saga's state
      version_t version = 0;               // its version
      std::string key;                     // its repository key
      bool parked = false;                 // run_saga waits in a step or a retry delay: renew() may write the log
      bool renewing = false;               // renew()'s write is in flight: run_saga waits for it before its own
      bulwark::detail::notifier renewed;   // renewing went false
      asio::cancellation_signal cancel;    // stop() (terminal), an interruption (partial)
      std::vector<std::string> reply_keys; // its waits in `replies`, erased at retire()
      std::vector<std::shared_ptr<detail::wake>> waiters; // outcome() callers, woken at retire()
      std::optional<outcome_type> final_outcome;          // read by each waiter (they hold this)
    };

    // A remote attempt waiting for its reply.
    struct reply_wait {
      std::shared_ptr<detail::wake> wake;
      std::optional<reply> got;
    };

    struct instruments {
      instruments(metrics::registry& r, const std::string& saga, std::span<const step<context_type>> steps) {
        started = &r.counter_family("bulwark_saga_started_total", "Sagas started", {"saga"}).labels({saga});
        auto& finished =
            r.counter_family("bulwark_saga_finished_total", "Sagas finished, by final state", {"saga", "state"});
        completed = &finished.labels({saga, "completed"});
        compensated = &finished.labels({saga, "compensated"});
        compensation_failed = &finished.labels({saga, "compensation_failed"});
        failed = &finished.labels({saga, "failed"});
        in_flight = &r.gauge_family("bulwark_saga_in_flight", "Sagas this replica drives now", {"saga"}).labels({saga});
        auto& latency = r.histogram_family("bulwark_saga_step_seconds", "Time of one step attempt, by step",
                                           {"saga", "step"}, {0.0001, 0.001, 0.01, 0.1, 1, 10, 60});
        for (const auto& s : steps) step_latency.push_back(&latency.labels({saga, s.name}));
      }
      metrics::counter* started;
      metrics::counter* completed;
      metrics::counter* compensated;
      metrics::counter* compensation_failed;
      metrics::counter* failed;
      metrics::gauge* in_flight;
      std::vector<metrics::histogram*> step_latency;
    };

    core(asio::any_io_executor executor, Definition d, Repository& r, Bus* b, orchestrator_options o)
        : ex(std::move(executor)), def(std::move(d)), repo(r), bus(b), opts(std::move(o)) {
      if (auto valid = def.validate(); !valid) throw std::invalid_argument(valid.error().message());
      for (const auto& s : def.steps())
        if (s.is_remote() && !has_bus)
          throw std::invalid_argument("saga " + def.name() + ": step \"" + s.name + "\" is remote and there is no bus");
      if (opts.replica.empty()) throw std::invalid_argument("saga orchestrator: options::replica is empty");
      prefix = opts.key_prefix.empty() ? "saga/" + def.name() + "/" : opts.key_prefix;
      live_prefix = "~live/" + prefix;
      ended_prefix = "~ended/" + prefix;
      if (live_prefix.starts_with(prefix) || ended_prefix.starts_with(prefix))
        throw std::invalid_argument("saga orchestrator: key_prefix \"" + prefix + "\" holds its own index prefixes");
      reply_topic = opts.reply_topic.empty() ? "saga-replies." + def.name() + "." + opts.replica : opts.reply_topic;
      if (opts.scan_page == 0) opts.scan_page = 1;
      if (opts.metrics) metrics_.emplace(*opts.metrics, def.name(), def.steps());
    }

    asio::any_io_executor ex;
    Definition def;
    Repository& repo;
    Bus* bus;
    orchestrator_options opts;
    std::string prefix;
    std::string live_prefix;  // "~live/" + prefix: sagas not final (see the header)
    std::string ended_prefix; // "~ended/" + prefix: final records by the time they ended
    std::string reply_topic;
    std::optional<instruments> metrics_;

    mutable std::mutex mutex; // driving, replies, counters, flags
    std::unordered_map<std::string, std::shared_ptr<driven>> driving;
    std::unordered_map<std::string, std::shared_ptr<reply_wait>> replies;
    orchestrator_stats counts;
    bool opened = false;
    bool sweeping = false;
    bool stopping = false;
    asio::cancellation_signal sweep_cancel;
    bool renewing = false; // the renewal loop runs (while this replica drives sagas)
    asio::cancellation_signal renew_cancel;
    bulwark::detail::notifier drained;
    std::optional<subscription_type> reply_subscription;

    std::string key(std::string_view id) const {
      std::string k;
      k.reserve(prefix.size() + id.size());
      k.append(prefix).append(id);
      return k;
    }

    std::string live_key(std::string_view id) const {
      std::string k;
      k.reserve(live_prefix.size() + id.size());
      k.append(live_prefix).append(id);
      return k;
    }

    // "<ended_prefix><20-digit ms>/<16 hex digits of the id's FNV-1a hash>": byte order is time
    // order, and the same record always gives the same key (a second write is harmless).
    std::string ended_key(wall_time ended, std::string_view id) const {
      std::uint64_t h = 0xcbf29ce484222325ull;
      for (unsigned char c : id) h = (h ^ c) * 0x100000001b3ull;
      char digits[40];
      const int n =
          std::snprintf(digits, sizeof digits, "%020lld/%016llx",
                        static_cast<long long>(std::max<std::int64_t>(bulwark::saga::detail::to_ms(ended), 0)),
                        static_cast<unsigned long long>(h));
      return ended_prefix + std::string(digits, static_cast<std::size_t>(n));
    }

    // The time in an ended entry's key; nullopt for a key not made by ended_key().
    std::optional<wall_time> ended_at(std::string_view k) const {
      if (!k.starts_with(ended_prefix)) return std::nullopt;
      k.remove_prefix(ended_prefix.size());
      std::int64_t ms = 0;
      auto [ptr, ec] = std::from_chars(k.data(), k.data() + std::min<std::size_t>(k.size(), 20), ms);
      if (ec != std::errc() || ptr != k.data() + 20 || k.size() != 37 || k[20] != '/') return std::nullopt;
      return bulwark::saga::detail::from_ms(ms);
    }

    orchestrator_stats stats() const {
      std::lock_guard lock(mutex);
      auto s = counts;
      s.in_flight = driving.size();
      return s;
    }

    // ---- repository access: plain calls when the model never waits (memory), else awaited.

    awaitable<result<std::optional<versioned>>> read(std::string_view k) {
      if constexpr (synchronous_repository<Repository>)
        co_return repo.get_now(k);
      else
        co_return co_await repo.get(k);
    }
    awaitable<result<version_t>> write(std::string_view k, std::string bytes, std::optional<version_t> expected) {
      if constexpr (synchronous_repository<Repository>)
        co_return repo.put_now(k, std::move(bytes), expected);
      else
        co_return co_await repo.put(k, std::move(bytes), expected);
    }
    awaitable<result<bool>> remove(std::string_view k) {
      if constexpr (requires { repo.erase_now(k); })
        co_return repo.erase_now(k);
      else
        co_return co_await repo.erase(k);
    }

    // ---- start, outcome, status, abort, list

    static task<start_result> start(std::shared_ptr<core> self, std::string id, context_type context) {
      if (id.empty()) co_return error(errc::invalid_argument, "saga id is empty");
      {
        std::lock_guard lock(self->mutex);
        if (self->stopping) co_return error(errc::rejected, "saga orchestrator is stopping");
        if (self->driving.contains(id)) co_return start_result{false, saga_state::running};
        if (self->driving.size() >= self->opts.max_in_flight)
          co_return error(errc::rejected, "saga orchestrator: max_in_flight sagas running");
      }
      if constexpr (has_bus) {
        auto opened = co_await open(self);
        if (!opened) co_return opened.error();
      }
      const auto now = self->opts.wall();
      log_record r;
      r.state = saga_state::running;
      r.started = now;
      r.context = codec::encode(context);
      // The put that creates the saga is its first transition; an existing id conflicts.
      auto hold = self->def.steps()[0].timeout;
      self->lease(r, now, hold);
      auto k = self->key(id);
      // The live entry first, so that every log record not final has one whatever crashes when.
      const auto live = self->live_key(id);
      const auto written = std::to_string(bulwark::saga::detail::to_ms(now));
      result<version_t> indexed = error(errc::cancelled);
      result<version_t> put = error(errc::cancelled);
      if constexpr (synchronous_repository<Repository>) {
        // No coroutine frame per start.
        indexed = self->repo.put_now(live, written, std::nullopt);
        if (indexed) put = self->repo.put_now(k, log_codec::encode(r), no_version);
      } else if constexpr (atomic_batch_repository<Repository>) {
        // Both in one call, all or nothing: a conflict (the saga exists) writes neither, and no
        // sweep can find the entry without its record.
        std::vector<batch_put> puts; // built apart: GCC 12 miscompiles a braced list inside co_await
        puts.push_back({live, written, std::nullopt});
        puts.push_back({k, log_codec::encode(r), no_version});
        auto both = co_await self->repo.put_all(std::move(puts), {});
        if (both) {
          indexed = both.value()[0];
          put = both.value()[1];
        } else if (both.error() == errc::conflict) {
          indexed = version_t{};
          put = both.error();
        } else {
          indexed = both.error();
        }
      } else {
        indexed = co_await self->repo.put(live, written, std::nullopt);
        if (indexed) put = co_await self->repo.put(k, log_codec::encode(r), no_version);
      }
      if (!indexed) co_return indexed.error();
      // A create that took over half a lease: a sweep may have found the live entry without its
      // record and erased it as a failed start's. Written again (an entry too many is harmless).
      if constexpr (!atomic_batch_repository<Repository>)
        if (put && self->opts.wall() - now > std::chrono::duration_cast<wall_time::duration>(self->opts.lease / 2))
          (void)co_await self->write(live, written, std::nullopt);
      if (!put) {
        if (put.error() != errc::conflict) co_return put.error();
        auto existing = co_await self->read(k);
        if (!existing) co_return existing.error();
        if (!existing.value()) co_return start_result{false, saga_state::running}; // purged meanwhile
        auto decoded = log_codec::decode(existing.value()->value);
        if (!decoded) co_return decoded.error();
        co_return start_result{false, decoded.value().state};
      }
      {
        std::lock_guard lock(self->mutex);
        ++self->counts.started;
      }
      if (self->metrics_) self->metrics_->started->inc();
      spawn(self, std::move(id), std::move(k), std::move(r), put.value(), std::move(context), false);
      co_return start_result{true, saga_state::running};
    }

    task<outcome_type> outcome(std::string id, bulwark::clock::time_point deadline) {
      // Bounded by the deadline: each round waits until it (or a poll) at the latest.
      auto poll = std::min(opts.poll_first, opts.poll_interval);
      for (;;) {
        auto w = std::make_shared<detail::wake>(ex);
        std::shared_ptr<driven> d; // driven here: its retire() wakes us, its final_outcome is ours to read
        {
          std::lock_guard lock(mutex);
          if (auto it = driving.find(id); it != driving.end()) {
            d = it->second;
            d->waiters.push_back(w);
          }
        }
        const bool local = d != nullptr;
        if (!local) {
          auto current = co_await status(id);
          if (!current) co_return current.error();
          if (!current.value()) co_return error(errc::not_found, "no saga " + id);
          if (is_final(current.value()->state)) co_return std::move(*current.value());
        }
        const auto now = opts.clock.now();
        if (now >= deadline) {
          if (d) {
            std::lock_guard lock(mutex);
            std::erase(d->waiters, w);
          }
          co_return error(errc::timeout, "saga " + id + " not finished by its deadline");
        }
        const auto until = local ? deadline : std::min(deadline, bulwark::clock::later(now, poll));
        if (!local) poll = std::min(poll * 2, opts.poll_interval); // the back-off
        co_await w->wait_until(opts.clock, until);
        std::optional<outcome_type> got;
        if (d) {
          std::lock_guard lock(mutex);
          std::erase(d->waiters, w);
          got = d->final_outcome;
        }
        if (got && is_final(got->state)) co_return std::move(*got);
        auto cs = co_await asio::this_coro::cancellation_state;
        if (cs.cancelled() != asio::cancellation_type::none)
          co_return error(errc::cancelled, "waiting for saga " + id + " was cancelled");
      }
    }

    task<std::optional<outcome_type>> status(std::string id) {
      auto got = co_await read(key(id));
      if (!got) co_return got.error();
      if (!got.value()) co_return std::optional<outcome_type>{};
      auto r = log_codec::decode(got.value()->value);
      if (!r) co_return r.error();
      auto context = codec::decode(r.value().context);
      if (!context) co_return context.error();
      co_return std::optional<outcome_type>{
          outcome_type{r.value().state, std::move(context).value(), std::move(r.value().detail)}};
    }

    task<void> abort(std::string id) {
      const auto k = key(id);
      for (int tries = 0; tries < 3; ++tries) {
        auto got = co_await read(k);
        if (!got) co_return got.error();
        if (!got.value()) co_return error(errc::not_found, "no saga " + id);
        auto r = log_codec::decode(got.value()->value);
        if (!r) co_return r.error();
        auto& rec = r.value();
        if (rec.state != saga_state::running)
          co_return error(errc::rejected, "saga " + id + " is " + std::string(to_string(rec.state)));
        if (past_pivot(rec.step)) co_return error(errc::rejected, "saga " + id + " is past its pivot");
        rec.state = saga_state::compensating;
        rec.step = std::min<std::uint32_t>(rec.step + 1, static_cast<std::uint32_t>(def.steps().size()));
        rec.attempt = 0;
        rec.detail = "aborted";
        rec.updated = opts.wall();
        auto put = co_await write(k, log_codec::encode(rec), got.value()->version);
        if (put) {
          interrupt(id);
          co_return ok();
        }
        if (put.error() != errc::conflict) co_return put.error();
      }
      co_return error(errc::conflict, "saga " + id + ": its log kept changing during abort");
    }

    // abort() wrote the log of saga `id`: when this replica drives it and it waits in a step
    // (or a retry delay), that wait ends now (a `partial` cancellation of what the step awaits;
    // a step that awaits nothing cancellable ends in its own time) and the saga goes on from
    // the log: it compensates. Otherwise its next log write (or lease renewal) finds the change.
    void interrupt(const std::string& id) {
      std::shared_ptr<driven> d;
      {
        std::lock_guard lock(mutex);
        if (auto it = driving.find(id); it != driving.end() && it->second->parked) d = it->second;
      }
      if (d) d->cancel.emit(asio::cancellation_type::partial);
    }

    task<std::vector<listed_saga>> list(saga_state state, std::size_t limit) {
      std::vector<listed_saga> out;
      std::string after;
      while (out.size() < limit) {
        auto page = co_await repo.scan(prefix, after, opts.scan_page);
        if (!page) co_return page.error();
        for (auto& e : page.value().entries) {
          auto r = log_codec::decode(e.value);
          if (r && r.value().state == state && out.size() < limit)
            out.push_back(listed_saga{e.key.substr(prefix.size()), std::move(r).value()});
        }
        if (!page.value().next) break;
        after = *page.value().next;
      }
      co_return out;
    }

    // ---- recovery and the sweep

    static task<void> open(std::shared_ptr<core> self) {
      if constexpr (has_bus) {
        {
          std::lock_guard lock(self->mutex);
          if (self->opened) co_return ok();
          self->opened = true;
        }
        subscribe_options o;
        o.topic = self->reply_topic;
        o.group = self->reply_topic;
        // subscribe_replies names the handler before the co_await: GCC 12 destroyed the temporary
        // std::function (and its weak_ptr) twice when it was built inside the co_await (TSan).
        auto subscribing = subscribe_replies(self, std::move(o));
        auto sub = co_await std::move(subscribing);
        if (!sub) {
          std::lock_guard lock(self->mutex);
          self->opened = false;
          co_return sub.error();
        }
        self->reply_subscription.emplace(std::move(sub).value());
      }
      co_return ok();
    }

    // The reply topic's member: in batches where the bus has them (routing is a map lookup and a
    // wake-up per reply, so a batch costs one handler run for what the partition holds).
    static task<typename Bus::subscription> subscribe_replies(const std::shared_ptr<core>& self, subscribe_options o) {
      if constexpr (batch_event_bus<Bus>) {
        batch_handler handler = [weak = std::weak_ptr<core>(self)](std::span<const envelope> batch) -> task<void> {
          auto self = weak.lock();
          if (!self) co_return ok();
          co_return self->route(batch);
        };
        return self->bus->subscribe_batch(std::move(o), std::move(handler));
      } else {
        message_handler handler = [weak = std::weak_ptr<core>(self)](const envelope& e) -> task<void> {
          auto self = weak.lock();
          if (!self) co_return ok();
          co_return self->route(std::span<const envelope>(&e, 1));
        };
        return self->bus->subscribe(std::move(o), std::move(handler));
      }
    }

    // Each reply reaches the attempt waiting for it, or is dropped. A malformed one fails the
    // batch before any is routed (errc::invalid_argument): delivered again one at a time, it is
    // dead-lettered at once and the others are routed.
    result<void> route(std::span<const envelope> batch) {
      std::vector<reply> parsed;
      parsed.reserve(batch.size());
      for (const auto& e : batch) {
        auto r = parse_reply(e);
        if (!r) return r.error();
        parsed.push_back(std::move(r).value());
      }
      for (auto& r : parsed) route(std::move(r));
      return ok();
    }

    void route(reply&& r) {
      std::string k = reply_key(r.saga_id, r.step, r.op);
      std::shared_ptr<reply_wait> target;
      {
        std::lock_guard lock(mutex);
        auto it = replies.find(k);
        if (it == replies.end() || it->second->got) {
          ++counts.replies_dropped;
          return;
        }
        target = it->second;
        target->got = std::move(r);
      }
      target->wake->notify();
    }

    static std::string reply_key(std::string_view id, std::string_view step_name, op o) {
      std::string k;
      k.reserve(id.size() + step_name.size() + 3);
      k.append(id).push_back('\0');
      k.append(step_name).push_back('\0');
      k.push_back(o == op::action ? 'a' : 'c');
      return k;
    }

    static task<std::size_t> recover(std::shared_ptr<core> self) {
      auto opened = co_await open(self);
      if (!opened) co_return opened.error();
      auto taken = co_await sweep(self);
      {
        std::lock_guard lock(self->mutex);
        if (self->sweeping || self->stopping) co_return taken;
        self->sweeping = true;
      }
      asio::co_spawn(self->ex, sweep_loop(self),
                     asio::bind_cancellation_slot(self->sweep_cancel.slot(), asio::detached));
      co_return taken;
    }

    static asio::awaitable<void> sweep_loop(std::shared_ptr<core> self) {
      for (;;) {
        const bool reached = co_await self->opts.clock.wait_for(self->opts.sweep_interval);
        if (!reached) co_return;
        {
          std::lock_guard lock(self->mutex);
          if (self->stopping) co_return;
        }
        co_await sweep(self); // a failed sweep is tried again at the next interval
      }
    }

    // The live index, then the purge. A page's entries are visited in turn (a take-over writes
    // the log before the next is read).
    static task<std::size_t> sweep(std::shared_ptr<core> self) {
      std::size_t taken = 0;
      std::string after;
      for (;;) {
        auto page = co_await self->repo.scan(self->live_prefix, after, self->opts.scan_page);
        if (!page) co_return page.error();
        for (auto& e : page.value().entries) {
          auto done = co_await self->visit(self, e);
          if (done) ++taken;
        }
        if (!page.value().next) break;
        after = *page.value().next;
      }
      co_await self->purge();
      co_return taken;
    }

    // One live entry of a sweep: nothing to read when this replica drives the saga; else its
    // record is read and the saga taken over (its lease expired), left (a live lease), its
    // index entries finished (final), or the entry erased (no record for over a lease). True
    // when taken over.
    asio::awaitable<bool> visit(std::shared_ptr<core> self, const entry& e) {
      std::string id = e.key.substr(live_prefix.size());
      {
        std::lock_guard lock(mutex);
        if (stopping || driving.contains(id)) co_return false;
      }
      const auto k = key(id);
      auto got = co_await read(k);
      if (!got) co_return false; // tried again at the next sweep
      const auto now = opts.wall();
      if (!got.value()) {
        // A start whose create failed (or is on its way: hence the lease's wait).
        std::int64_t ms = 0;
        auto [ptr, ec] = std::from_chars(e.value.data(), e.value.data() + e.value.size(), ms);
        const bool stale =
            ec != std::errc() || ptr != e.value.data() + e.value.size() ||
            bulwark::saga::detail::from_ms(ms) + std::chrono::duration_cast<wall_time::duration>(opts.lease) <= now;
        if (stale) (void)co_await remove(e.key);
        co_return false;
      }
      auto decoded = log_codec::decode(got.value()->value);
      if (!decoded) co_return false; // not a record: left alone for an operator
      auto r = std::move(decoded).value();
      if (is_final(r.state)) {
        co_await index_final(id, r.updated); // its driver stopped between the final write and these
        co_return false;
      }
      {
        std::lock_guard lock(mutex);
        if (stopping || driving.contains(id) || driving.size() >= opts.max_in_flight) co_return false;
      }
      if (r.lease_owner != opts.replica && r.lease_expiry > now) co_return false;
      lease(r, now, opts.lease);
      auto put = co_await write(k, log_codec::encode(r), got.value()->version);
      if (!put) co_return false; // another replica was faster, or the repository is down
      auto context = codec::decode(r.context);
      if (!context) co_return false;
      {
        std::lock_guard lock(mutex);
        ++counts.taken_over;
      }
      spawn(self, std::move(id), k, std::move(r), put.value(), std::move(context).value(), true);
      co_return true;
    }

    // A final record's index entries: its ended entry, then its live entry erased (in one call
    // on an atomic_batch_repository). A failure leaves the live entry, and the next sweep does
    // both again.
    awaitable<void> index_final(const std::string& id, wall_time ended) {
      if constexpr (atomic_batch_repository<Repository>) {
        (void)co_await put_with_final_indexes(std::vector<batch_put>(), id, ended);
      } else {
        auto put = co_await write(ended_key(ended, id), id, std::nullopt);
        if (put) (void)co_await remove(live_key(id));
      }
    }

    // Whether persist() writes a final record with its index entries in one call (write_final),
    // so that run_saga() has no index_final() to do after it.
    static constexpr bool final_write_indexes =
        !synchronous_repository<Repository> && atomic_batch_repository<Repository>;

    // The final record r (compare-and-set on v), its ended entry and its live entry's erase in
    // one call, all or nothing: what persist() then index_final() do in three round trips.
    awaitable<result<version_t>> write_final(const std::string& id, const std::string& k, const log_record& r,
                                             version_t v) {
      std::vector<batch_put> puts; // built apart: GCC 12 miscompiles a braced list inside co_await
      puts.push_back({k, log_codec::encode(r), v});
      auto put = co_await put_with_final_indexes(std::move(puts), id, r.updated);
      if (!put) co_return put.error();
      co_return put.value()[0];
    }

    // `puts`, then the ended entry of saga `id` (final at `ended`) and its live entry's erase, in
    // one all-or-nothing put_all (atomic_batch_repository): the versions of `puts`, then the
    // ended entry's.
    task<std::vector<version_t>> put_with_final_indexes(std::vector<batch_put> puts, const std::string& id,
                                                        wall_time ended) {
      puts.push_back({ended_key(ended, id), id, std::nullopt});
      std::vector<std::string> erases;
      erases.push_back(live_key(id));
      co_return co_await repo.put_all(std::move(puts), std::move(erases));
    }

    // index_final() for a repository whose calls never wait, without a coroutine.
    void index_final_now(const std::string& id, wall_time ended) {
      if (repo.put_now(ended_key(ended, id), id, std::nullopt)) (void)repo.erase_now(live_key(id));
    }

    // Erases the outcomes past the retention, oldest first, from the ended index: reads its
    // first entry, and goes on while the entries are due. A failure ends it until the next sweep.
    awaitable<void> purge() {
      const auto now = opts.wall();
      std::string after;
      std::size_t limit = 1; // most sweeps find nothing due: one entry read
      for (;;) {
        auto page = co_await repo.scan(ended_prefix, after, limit);
        if (!page) co_return;
        for (auto& e : page.value().entries) {
          const auto at = ended_at(e.key);
          if (!at) continue; // not an entry of ours: left alone
          if (*at + opts.retention > now) co_return;
          const auto k = key(e.value);
          auto got = co_await read(k);
          if (!got) co_return;
          if (got.value()) {
            auto r = log_codec::decode(got.value()->value);
            // Erase only a final record past its retention: a final record never changes again,
            // so erasing what was read cannot lose a newer write (a saga of the same id started
            // after a purge has a record that is not due, and an ended entry of its own).
            if (r && is_final(r.value().state) && r.value().updated + opts.retention <= now) {
              auto erased = co_await remove(k);
              if (!erased) co_return;
            }
          }
          auto erased = co_await remove(e.key);
          if (!erased) co_return;
        }
        if (!page.value().next) co_return;
        after = *page.value().next;
        limit = opts.scan_page;
      }
    }

    task<std::size_t> reindex() {
      std::size_t read = 0;
      std::string after;
      for (;;) {
        auto page = co_await repo.scan(prefix, after, opts.scan_page);
        if (!page) co_return page.error();
        for (auto& e : page.value().entries) {
          ++read;
          auto r = log_codec::decode(e.value);
          if (!r) continue; // not a record: left alone for an operator
          std::string id = e.key.substr(prefix.size());
          auto put = is_final(r.value().state)
                         ? co_await write(ended_key(r.value().updated, id), id, std::nullopt)
                         : co_await write(live_key(id), std::to_string(bulwark::saga::detail::to_ms(opts.wall())),
                                          std::nullopt);
          if (!put) co_return put.error();
        }
        if (!page.value().next) break;
        after = *page.value().next;
      }
      co_return read;
    }

    // ---- stop

    void request_stop() {
      std::vector<std::shared_ptr<driven>> all;
      {
        std::lock_guard lock(mutex);
        stopping = true;
        for (auto& [id, d] : driving) all.push_back(d);
      }
      asio::post(ex, [self = this->shared_from_this(), all = std::move(all)] {
        self->sweep_cancel.emit(asio::cancellation_type::terminal);
        self->renew_cancel.emit(asio::cancellation_type::terminal);
        for (auto& d : all) d->cancel.emit(asio::cancellation_type::terminal);
      });
    }

    // On the orchestrator's executor: the cancellations are emitted here and now, so the sweep's
    // clock wait and every saga's wait end before stop() returns.
    asio::awaitable<void> stop() {
      std::vector<std::shared_ptr<driven>> all;
      {
        std::lock_guard lock(mutex);
        stopping = true;
        for (auto& [id, d] : driving) all.push_back(d);
      }
      sweep_cancel.emit(asio::cancellation_type::terminal);
      renew_cancel.emit(asio::cancellation_type::terminal);
      for (auto& d : all) d->cancel.emit(asio::cancellation_type::terminal);
      for (;;) {
        {
          std::lock_guard lock(mutex);
          if (driving.empty()) break;
        }
        co_await drained.async_wait(asio::use_awaitable);
      }
      if constexpr (has_bus) {
        if (reply_subscription) co_await reply_subscription->stop();
      }
    }

    // ---- driving one saga

    static void spawn(std::shared_ptr<core> self, std::string id, std::string k, log_record r, version_t v,
                      context_type context, bool resumed) {
      auto d = std::make_shared<driven>();
      d->record = std::move(r);
      d->version = v;
      d->key = std::move(k);
      bool start_renewal = false;
      {
        std::lock_guard lock(self->mutex);
        self->driving.emplace(id, d);
        start_renewal = !self->renewing && !self->stopping;
        if (start_renewal) self->renewing = true;
      }
      if (start_renewal)
        asio::co_spawn(self->ex, renewal_loop(self),
                       asio::bind_cancellation_slot(self->renew_cancel.slot(), asio::detached));
      if (self->metrics_) self->metrics_->in_flight->add(1);
      auto slot = d->cancel.slot();
      auto* driver = self.get();
      asio::co_spawn(self->ex, driver->run_saga(self, d, id, std::move(context), resumed),
                     asio::bind_cancellation_slot(slot, [self, id](std::exception_ptr) { self->retire(id); }));
    }

    // The saga is no longer driven here: its waiters get the outcome (or look again).
    void retire(const std::string& id) {
      std::shared_ptr<driven> d;
      bool now_empty = false;
      {
        std::lock_guard lock(mutex);
        auto it = driving.find(id);
        if (it == driving.end()) return;
        d = std::move(it->second);
        driving.erase(it);
        for (const auto& k : d->reply_keys) replies.erase(k);
        now_empty = driving.empty();
      }
      if (metrics_) metrics_->in_flight->add(-1);
      for (auto& w : d->waiters) w->notify();
      if (now_empty) drained.notify();
    }

    bool past_pivot(std::uint32_t next_step) const {
      const auto p = def.pivot();
      return p && next_step > *p;
    }

    void lease(log_record& r, wall_time now, bulwark::clock::duration hold) const {
      r.updated = now;
      r.lease_owner = opts.replica;
      r.lease_expiry = now + std::chrono::duration_cast<wall_time::duration>(opts.lease + hold);
    }

    enum class persisted { ok, adopted, lost };

    // Writes r over version v. On a conflict: the record changed under us. When this replica
    // still owns it (an abort() wrote it) the new record is adopted; otherwise another replica
    // took the saga over and this one lets go.
    // A final record goes with its index entries when final_write_indexes.
    awaitable<persisted> persist(const std::string& id, const std::string& k, log_record& r, version_t& v,
                                 bulwark::clock::duration hold) {
      stamp(r, hold);
      result<version_t> put = error(errc::cancelled);
      if constexpr (final_write_indexes) {
        if (is_final(r.state))
          put = co_await write_final(id, k, r, v);
        else
          put = co_await write(k, log_codec::encode(r), v);
      } else {
        (void)id;
        put = co_await write(k, log_codec::encode(r), v);
      }
      if (put) {
        v = put.value();
        co_return persisted::ok;
      }
      if (put.error() != errc::conflict) co_return persisted::lost;
      auto got = co_await read(k);
      co_return adopt(got, r, v);
    }

    // persist() for a repository whose calls never wait, without a coroutine.
    persisted persist_now(const std::string& k, log_record& r, version_t& v, bulwark::clock::duration hold) {
      stamp(r, hold);
      auto put = repo.put_now(k, log_codec::encode(r), v);
      if (put) {
        v = put.value();
        return persisted::ok;
      }
      if (put.error() != errc::conflict) return persisted::lost;
      return adopt(repo.get_now(k), r, v);
    }

    void stamp(log_record& r, bulwark::clock::duration hold) const {
      if (is_final(r.state)) {
        r.updated = opts.wall();
        r.lease_owner.clear();
        r.lease_expiry = {};
      } else {
        lease(r, opts.wall(), hold);
      }
    }

    persisted adopt(const result<std::optional<versioned>>& got, log_record& r, version_t& v) const {
      if (!got || !got.value()) return persisted::lost;
      auto current = log_codec::decode(got.value()->value);
      if (!current || current.value().lease_owner != opts.replica || is_final(current.value().state))
        return persisted::lost;
      r = std::move(current).value();
      v = got.value()->version;
      return persisted::adopted;
    }

    static bool cancelled(const asio::cancellation_state& cs) {
      return cs.cancelled() != asio::cancellation_type::none;
    }
    static bool stopped(const asio::cancellation_state& cs) {
      return (cs.cancelled() & asio::cancellation_type::terminal) != asio::cancellation_type::none;
    }

    // After an interruption (its wait was cancelled with `partial`): the log changed under the
    // saga. Reads it and goes on from it when this replica still owns it (an abort() wrote it);
    // false when another replica took the saga over, or it ended.
    awaitable<bool> reload(driven& d, context_type& context) {
      auto got = co_await read(d.key);
      if (adopt(got, d.record, d.version) != persisted::adopted) {
        std::lock_guard lock(mutex);
        ++counts.lost;
        co_return false;
      }
      auto decoded = codec::decode(d.record.context);
      if (!decoded) co_return false;
      context = std::move(decoded).value();
      co_return true;
    }

    // ---- lease renewal while driving

    bulwark::clock::duration renew_every() const {
      if (opts.renew_interval > bulwark::clock::duration::zero()) return opts.renew_interval;
      return std::max<bulwark::clock::duration>(opts.lease / 3, std::chrono::milliseconds(1));
    }

    // Runs while this replica drives sagas (spawn() starts it, it ends at a tick that finds none):
    // one clock wait per renew_interval for all of them, not a timer per saga or step. A saga
    // waiting in a step (or a retry delay) whose lease has less than half of `lease` left gets a
    // compare-and-set write of its record with a fresh lease.
    static awaitable<void> renewal_loop(std::shared_ptr<core> self) {
      const auto every = self->renew_every();
      const auto margin = std::chrono::duration_cast<wall_time::duration>(self->opts.lease / 2);
      for (;;) {
        const bool reached = co_await self->opts.clock.wait_for(every);
        std::vector<std::shared_ptr<driven>> due;
        {
          std::lock_guard lock(self->mutex);
          if (!reached || self->stopping || self->driving.empty()) {
            self->renewing = false;
            co_return;
          }
          const auto now = self->opts.wall();
          for (const auto& [id, d] : self->driving)
            if (d->parked && !d->renewing && d->record.lease_expiry - now < margin) due.push_back(d);
        }
        for (auto& d : due) co_await self->renew(*d);
      }
    }

    // One renewal. A conflict means the log changed under the saga: an abort() (still ours:
    // the step is interrupted and the saga goes on from the log) or another replica's take-over
    // (the saga is let go). Any other error: tried again at the next tick, while the lease holds.
    awaitable<void> renew(driven& d) {
      if (!d.parked) co_return;
      log_record renewed = d.record;
      lease(renewed, opts.wall(), bulwark::clock::duration::zero());
      d.renewing = true;
      auto put = co_await write(d.key, log_codec::encode(renewed), d.version);
      bool changed = false;
      if (put) {
        d.version = put.value();
        d.record.updated = renewed.updated;
        d.record.lease_expiry = renewed.lease_expiry;
        std::lock_guard lock(mutex);
        ++counts.renewed;
      } else {
        changed = put.error() == errc::conflict;
      }
      d.renewing = false;
      d.renewed.notify();
      if (changed) d.cancel.emit(asio::cancellation_type::partial);
    }

    bulwark::clock::time_point saga_deadline(const log_record& r) const {
      const auto limit = def.saga_timeout();
      if (limit == bulwark::clock::duration::max()) return bulwark::clock::time_point::max();
      const auto left = std::chrono::duration_cast<bulwark::clock::duration>(
          (r.started + std::chrono::duration_cast<wall_time::duration>(limit)) - opts.wall());
      return bulwark::clock::later(opts.clock.now(), left);
    }

    // How long attempt n (from 0) of step s may take: its timeout; for a remote step doubled per
    // attempt up to 8 times it, so that a step behind a participant's backlog resends ever more
    // rarely (see the header).
    static bulwark::clock::duration attempt_wait(const step<context_type>& s, std::uint32_t n) {
      if (!s.is_remote()) return s.timeout;
      const auto factor = 1 << std::min<std::uint32_t>(n, 3);
      return s.timeout > bulwark::clock::duration::max() / factor ? bulwark::clock::duration::max()
                                                                  : s.timeout * factor;
    }

    // One attempt of step i's action (o == action) or compensation: the step's own task for a
    // local step (no coroutine of ours around it), the command and its reply for a remote one.
    task<void> attempt(const std::string& id, std::size_t i, op o, context_type& context,
                       bulwark::clock::time_point deadline) {
      const auto& s = def.steps()[i];
      if (s.is_remote()) return remote_attempt(id, s, o, context, deadline);
      return (o == op::action ? s.action : s.compensation)(context, deadline);
    }

    awaitable<result<void>> remote_attempt(const std::string& id, const step<context_type>& s, op o,
                                           context_type& context, bulwark::clock::time_point deadline) {
      if constexpr (!has_bus) {
        co_return error(errc::invalid_argument, "remote step without a bus");
      } else {
        const auto k = reply_key(id, s.name, o);
        std::shared_ptr<reply_wait> wait;
        bool answered = false;
        {
          // Registered before the command leaves (a fast reply finds it); kept after a timeout,
          // so that a late reply to this send is there for the next attempt.
          std::lock_guard lock(mutex);
          auto& slot = replies[k];
          if (!slot) {
            slot = std::make_shared<reply_wait>();
            slot->wake = std::make_shared<detail::wake>(ex);
            if (auto d = driving.find(id); d != driving.end()) d->second->reply_keys.push_back(k);
          }
          wait = slot;
          answered = wait->got.has_value(); // came after the last attempt timed out
        }
        result<delivery> sent = delivery{};
        if (!answered) {
          command c{id, s.name, o, reply_topic, s.command(context, o)};
          sent = co_await bus->publish(s.topic, c.to_message());
          if (sent) co_await wait->wake->wait_until(opts.clock, deadline);
        }
        std::optional<reply> got;
        {
          std::lock_guard lock(mutex);
          got = std::move(wait->got);
          wait->got.reset();
          // Answered: the wait is over (a duplicate of this reply is dropped); otherwise it stays.
          if (got)
            if (auto it = replies.find(k); it != replies.end() && it->second == wait) replies.erase(it);
        }
        if (!sent) co_return sent.error();
        if (!got) {
          auto cs = co_await asio::this_coro::cancellation_state;
          if (cancelled(cs)) co_return error(errc::cancelled, "saga " + id + " stopped");
          co_return error(errc::timeout, "step " + s.name + ": no reply by the deadline");
        }
        if (got->outcome == reply_outcome::failed)
          co_return error(errc::declined, "step " + s.name + " refused: " + got->payload);
        if (s.on_reply) s.on_reply(context, o, got->payload);
        co_return ok();
      }
    }

    // The saga's state machine. Each pass makes one transition and persists it (one write at the
    // end of the pass, with the wait ahead added to the lease); the loop ends
    // when the saga is final or no longer driven here. Bounded: every pass either advances a
    // step, uses up an attempt (bounded by the retry policies), or ends the loop.
    // One coroutine frame per saga: it owns the saga's state (`keep` holds the core alive).
    awaitable<void> run_saga(std::shared_ptr<core> keep, std::shared_ptr<driven> d, std::string id,
                             context_type context, bool resumed) {
      (void)keep;
      // stop() cancels with `terminal`; an interruption (abort(), a log changed under a renewal)
      // with `partial`, which must reach the awaited step too.
      co_await asio::this_coro::reset_cancellation_state(asio::enable_partial_cancellation());
      const std::string& k = d->key;
      log_record& r = d->record;
      version_t& v = d->version;
      const auto steps = def.steps();
      const auto n = static_cast<std::uint32_t>(steps.size());
      const auto deadline = saga_deadline(r);
      const bulwark::clock::duration no_hold = bulwark::clock::duration::zero();
      std::minstd_rand rng(static_cast<std::uint32_t>(opts.seed ^ std::hash<std::string>{}(id)));
      // Whether the current step's action may have been requested: this driver sent it, or the
      // saga was resumed from a log written by a driver that may have.
      bool requested = resumed;
      for (;;) {
        auto cs = co_await asio::this_coro::cancellation_state;
        if (cancelled(cs)) {
          if (stopped(cs)) co_return;
          // Interrupted. Reset first: Asio refuses to start any co_await while cancelled.
          co_await asio::this_coro::reset_cancellation_state(asio::enable_partial_cancellation());
          while (d->renewing) co_await d->renewed.async_wait(asio::use_awaitable);
          const bool resumes = co_await reload(*d, context);
          if (!resumes) co_return;
          requested = true;
          continue;
        }
        bulwark::clock::duration hold = no_hold;        // the wait ahead, added to the lease
        std::optional<std::chrono::milliseconds> delay; // a retry's wait after the write
        if (r.state == saga_state::running) {
          if (r.step >= n) {
            r.state = saga_state::completed;
          } else if (opts.clock.now() >= deadline && !past_pivot(r.step)) {
            to_compensating(r, requested ? r.step + 1 : r.step, "saga deadline passed");
          } else {
            const std::size_t i = r.step;
            const auto& s = steps[i];
            const auto attempt_deadline =
                std::min(bulwark::clock::later(opts.clock.now(), attempt_wait(s, r.attempt)), deadline);
            requested = true;
            const auto t0 = opts.clock.now();
            d->parked = true;
            auto res = co_await attempt(id, i, op::action, context, attempt_deadline);
            d->parked = false;
            if (metrics_)
              metrics_->step_latency[i]->observe(std::chrono::duration<double>(opts.clock.now() - t0).count());
            cs = co_await asio::this_coro::cancellation_state;
            if (cancelled(cs)) continue; // stopped, or interrupted: the loop's head sorts it out
            while (d->renewing) co_await d->renewed.async_wait(asio::use_awaitable);
            cs = co_await asio::this_coro::cancellation_state;
            if (cancelled(cs)) continue; // the renewal found the log changed
            if (res) {
              r.step = static_cast<std::uint32_t>(i + 1);
              r.attempt = 0;
              r.context = codec::encode(context);
              requested = false;
              // The last step's write is the final one: nothing is requested after it.
              if (r.step == n) r.state = saga_state::completed;
              hold = r.step < n ? attempt_wait(steps[r.step], 0) : no_hold;
            } else {
              const auto& e = res.error();
              const auto kind = s.classify_error(e);
              const std::string why = "step " + s.name + ": " + e.message();
              const bool forward_only = past_pivot(r.step);
              if (kind == step_failure::retryable && s.retry.retries(e, r.attempt + 1)) {
                ++r.attempt;
                delay = s.retry.delay(r.attempt, rng);
                hold = *delay + attempt_wait(s, r.attempt);
              } else if (forward_only) {
                r.state = saga_state::failed;
                r.detail = why;
              } else {
                // A refusal changed nothing; anything else may have applied: undo it too.
                to_compensating(r, kind == step_failure::business_failure ? r.step : r.step + 1, why);
                hold = attempt_wait(s, 0);
              }
            }
          }
        } else if (r.state == saga_state::compensating) {
          // Skip the steps with nothing to undo; the next persist records it.
          while (r.step > 0 && !steps[r.step - 1].has_compensation()) --r.step;
          if (r.step == 0) {
            r.state = saga_state::compensated;
          } else {
            const std::size_t i = r.step - 1;
            const auto& s = steps[i];
            d->parked = true;
            auto res = co_await attempt(id, i, op::compensation, context,
                                        bulwark::clock::later(opts.clock.now(), attempt_wait(s, r.attempt)));
            d->parked = false;
            cs = co_await asio::this_coro::cancellation_state;
            if (cancelled(cs)) continue;
            while (d->renewing) co_await d->renewed.async_wait(asio::use_awaitable);
            cs = co_await asio::this_coro::cancellation_state;
            if (cancelled(cs)) continue;
            if (res) {
              --r.step;
              r.attempt = 0;
              r.context = codec::encode(context);
              // The last compensation's write is the final one.
              while (r.step > 0 && !steps[r.step - 1].has_compensation()) --r.step;
              if (r.step == 0) r.state = saga_state::compensated;
              hold = r.step > 0 ? attempt_wait(steps[r.step - 1], 0) : no_hold;
            } else if (s.compensation_retry.retries(res.error(), r.attempt + 1)) {
              ++r.attempt;
              delay = s.compensation_retry.delay(r.attempt, rng);
              hold = *delay + attempt_wait(s, r.attempt);
            } else {
              r.state = saga_state::compensation_failed;
              r.detail = "compensation of step " + s.name + ": " + res.error().message() +
                         (r.detail.empty() ? "" : " (after " + r.detail + ")");
            }
          }
        }
        persisted p;
        if constexpr (synchronous_repository<Repository>)
          p = persist_now(k, r, v, hold); // the memory models: no coroutine per write
        else
          p = co_await persist(id, k, r, v, hold);
        if (p == persisted::ok && is_final(r.state)) {
          finish(id, r, context); // wakes the waiters: the index writes are not theirs to wait for
          if constexpr (synchronous_repository<Repository> && requires { repo.erase_now(std::string_view()); })
            index_final_now(id, r.updated); // the memory models: no coroutine frame per write
          else if constexpr (!final_write_indexes)
            co_await index_final(id, r.updated);
        }
        if (p == persisted::ok && delay) {
          d->parked = true;
          const bool waited = co_await opts.clock.wait_for(*delay);
          d->parked = false;
          if (!waited) continue; // stopped or interrupted: the loop's head
          while (d->renewing) co_await d->renewed.async_wait(asio::use_awaitable);
        }
        if (p == persisted::lost) {
          std::lock_guard lock(mutex);
          ++counts.lost;
          co_return;
        }
        if (p == persisted::adopted) {
          auto adopted = codec::decode(r.context);
          if (!adopted) co_return;
          context = std::move(adopted).value();
          requested = true;
        }
        if (is_final(r.state)) co_return;
      }
    }

    static void to_compensating(log_record& r, std::uint32_t undo, std::string why) {
      r.state = saga_state::compensating;
      r.step = undo;
      r.attempt = 0;
      r.detail = std::move(why);
    }

    // The saga's final record is written: counts it and wakes its waiters (retire() wakes them
    // too, and those that come after this).
    void finish(const std::string& id, const log_record& r, const context_type& context) {
      std::vector<std::shared_ptr<detail::wake>> waiters;
      {
        std::lock_guard lock(mutex);
        switch (r.state) {
        case saga_state::completed: ++counts.completed; break;
        case saga_state::compensated: ++counts.compensated; break;
        case saga_state::compensation_failed: ++counts.compensation_failed; break;
        case saga_state::failed: ++counts.failed; break;
        default: break;
        }
        if (auto it = driving.find(id); it != driving.end()) {
          it->second->final_outcome = outcome_type{r.state, context, r.detail};
          waiters = it->second->waiters;
        }
      }
      for (auto& w : waiters) w->notify();
      if (!metrics_) return;
      switch (r.state) {
      case saga_state::completed: metrics_->completed->inc(); break;
      case saga_state::compensated: metrics_->compensated->inc(); break;
      case saga_state::compensation_failed: metrics_->compensation_failed->inc(); break;
      case saga_state::failed: metrics_->failed->inc(); break;
      default: break;
      }
    }
  };

  std::shared_ptr<core> core_;
};

} // namespace bulwark::saga
