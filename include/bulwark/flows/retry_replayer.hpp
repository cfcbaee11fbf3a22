#pragma once
// flows::retry_replayer<Repository, Bus, OutageLog>: writes the pending writes of the retry topic
// to the repository once it is back, idempotently and never over newer data, and records each
// outage window it observed.
//
// For each retry message (flows/frame.hpp: retry_message / parse_retry_message):
//  1. An undecodable message is poison: the handler returns errc::invalid_argument, which the
//     bus's delivery rules (detail/delivery.hpp) do not retry, so the bus's one dead-letter path
//     parks it on the dead-letter topic with the reason in its bulwark-error header, and commits:
//     the partition moves on.
//  2. A compare-and-set step: get the key; decode the stored frame (a value that is not a frame,
//     written by someone else, counts as order stamp 0); if the stored stamp is >= the
//     message's (this request, or a newer write), nothing is written (duplicate / superseded);
//     otherwise put the durable frame with expected = the version read. errc::conflict (a
//     concurrent writer between get and put) runs the step again.
//  3. A repository that rejects the value as invalid (invalid_argument, too_large) also makes
//     the message poison (dead-lettered with the repository's reason).
//  4. Any other failure (unavailable, timeout, ...) means the repository is not healthy: the
//     handler waits on the injected clock (backoff: options::probe) and runs the step again, for
//     as long as it takes. It never returns an error merely because the database is down, or
//     the bus's retries would dead-letter a long outage's writes. The step itself is the probe:
//     the first get that answers ends the wait.
//  5. Success: the handler returns and the bus commits.
//
// Stopping: stop() stops the subscription. A handler waiting for the repository ends at the
// bus's terminal cancellation (after the bus's drain period), or at its next backoff step
// after stop() began, whichever comes first; it then returns errc::cancelled while the bus is
// interrupted, so the message is neither committed nor dead-lettered and goes to the
// partition's next owner. The subscription's retry policy retries every error but the
// permanent ones, without limit: only poison is ever dead-lettered.
//
// Outage windows: the first repository failure the replayer observes opens a window (its wall
// time and the error); the first success after it closes it (recovery time), then the window is
// written to the OutageLog repository as JSON under options::outage_log_prefix, with a key that
// sorts by first failure (16-digit zero-padded milliseconds since the Unix epoch, then the
// instance name, so several replayers write side by side), and the optional on_recovery hook
// runs. Writes replayed and superseded (duplicates included) count towards the latest window
// until the next one opens: the backlog of an outage is replayed after its recovery. The log
// entry is rewritten with those counts at most every options::log_interval on the clock, and at
// stop() and flush(); a log write that fails is tried again at the next occasion. The log may
// live in the same database as the repository: writing it waits for the recovery.
//
// Cost per message when the repository is healthy: one get and one put (one get for a
// duplicate or superseded write), each bounded by options::call_timeout.
//
// Threads: the handlers run on the bus subscription's strand; the replayer's shared state
// (window, counts) is under a mutex, so stats() and flush() may be called from any thread.
// The replayer must outlive its subscription: call stop() before destroying it.

#include <bulwark/clock.hpp>
#include <bulwark/event_bus.hpp>
#include <bulwark/flows/frame.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/repository.hpp>
#include <bulwark/resilience/timeout.hpp>
#include <bulwark/result.hpp>
#include <bulwark/retry_policy.hpp>

#include <asio/awaitable.hpp>
#include <asio/this_coro.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace bulwark::flows {

/// One outage the replayer observed: from its first failed repository call to the first one
/// that succeeded again, with what was replayed after it.
struct outage_window {
  std::string id; ///< the OutageLog key without the prefix; sorts by first_failure
  std::chrono::system_clock::time_point first_failure{};
  std::optional<std::chrono::system_clock::time_point> recovered{}; ///< nullopt while open
  std::string first_error;                                          ///< the failure that opened it
  std::uint64_t replayed = 0;   ///< pending writes written to the repository after it opened
  std::uint64_t superseded = 0; ///< pending writes the repository already held, or held newer
  friend bool operator==(const outage_window&, const outage_window&) = default;
};

/// The JSON an outage window is stored as: {"id", "first_failure_ms", "recovered_ms" (null while
/// open), "first_error", "replayed", "superseded"}; times in milliseconds since the Unix epoch.
inline std::string to_json(const outage_window& w) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  nlohmann::json j{{"id", w.id},
                   {"first_failure_ms", duration_cast<milliseconds>(w.first_failure.time_since_epoch()).count()},
                   {"recovered_ms", nullptr},
                   {"first_error", w.first_error},
                   {"replayed", w.replayed},
                   {"superseded", w.superseded}};
  if (w.recovered) j["recovered_ms"] = duration_cast<milliseconds>(w.recovered->time_since_epoch()).count();
  return j.dump();
}

/// Parses what to_json wrote; errc::invalid_argument for anything else.
inline result<outage_window> outage_window_from_json(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return error(errc::invalid_argument, "outage window: not a JSON object");
  try {
    outage_window w;
    w.id = j.at("id").get<std::string>();
    w.first_failure =
        std::chrono::system_clock::time_point(std::chrono::milliseconds(j.at("first_failure_ms").get<std::int64_t>()));
    if (const auto& r = j.at("recovered_ms"); !r.is_null())
      w.recovered = std::chrono::system_clock::time_point(std::chrono::milliseconds(r.get<std::int64_t>()));
    w.first_error = j.at("first_error").get<std::string>();
    w.replayed = j.at("replayed").get<std::uint64_t>();
    w.superseded = j.at("superseded").get<std::uint64_t>();
    return w;
  } catch (const nlohmann::json::exception& e) {
    return error(errc::invalid_argument, std::string("outage window: ") + e.what());
  }
}

/// Up to `limit` outage windows stored under `prefix` in `log`, oldest first, after the one
/// whose id is `after` (empty: from the first). Errors: the log's; an entry that is not an
/// outage window is errc::invalid_argument. Cost: one scan.
template <repository OutageLog> task<std::vector<outage_window>>
list_outage_windows(OutageLog& log, std::string prefix, std::string after = {}, std::size_t limit = 100) {
  const std::string from = after.empty() ? std::string() : prefix + after;
  auto scanning = log.scan(prefix, from, limit);
  BOOST_OUTCOME_CO_TRY(page, co_await std::move(scanning));
  std::vector<outage_window> out;
  out.reserve(page.entries.size());
  for (auto& e : page.entries) {
    BOOST_OUTCOME_CO_TRY(w, outage_window_from_json(e.value));
    out.push_back(std::move(w));
  }
  co_return out;
}

/// What a replayer has done since it was built.
struct replayer_stats {
  std::uint64_t replayed = 0;      ///< written to the repository
  std::uint64_t superseded = 0;    ///< the repository held a newer write
  std::uint64_t duplicates = 0;    ///< the repository held this very request
  std::uint64_t dead_lettered = 0; ///< poison: undecodable or rejected by the repository
  std::uint64_t conflicts = 0;     ///< compare-and-set steps run again after errc::conflict
  std::uint64_t waiting = 0;       ///< handlers waiting for the repository now
  std::uint64_t outage_windows = 0;
  std::uint64_t log_failures = 0; ///< outage-log writes that failed (tried again later)
};

struct retry_replayer_options {
  std::string topic;                            ///< the retry topic (required)
  std::string group = "bulwark-retry-replayer"; ///< consumer group
  std::string dead_letter_topic;                ///< empty: topic + ".dlq"
  start_from start = start_from::earliest;      ///< where a new group starts
  backoff probe{std::chrono::milliseconds(100), std::chrono::milliseconds(5000), 2.0, true};
  std::chrono::milliseconds call_timeout{2000};     ///< bounds each repository and log call
  std::chrono::milliseconds log_interval{1000};     ///< outage-log rewrites after recovery, at most
  std::string outage_log_prefix = "outage-window/"; ///< the OutageLog keys' prefix
  std::string instance = "replayer";                ///< in window ids; unique per replayer
  bulwark::clock clock{};                           ///< waits and timeouts
  /// Wall time for the outage log (tests pass a manual_clock's now).
  std::function<std::chrono::system_clock::time_point()> wall = [] { return std::chrono::system_clock::now(); };
  /// Runs after a window closed and was logged (e.g. a write_through's reconcile()); its error
  /// is ignored. It runs inside the handler that saw the recovery: keep it bounded.
  std::function<task<void>(const outage_window&)> on_recovery{};
  std::shared_ptr<metrics::registry> metrics{}; ///< none when empty
  std::string name = "retry";                   ///< the `replayer` label of the metrics
  std::uint64_t seed = std::random_device{}();  ///< backoff jitter
};

/// Consumes the retry topic of a write_through; see the header comment for the rules.
template <repository Repository, event_bus Bus, repository OutageLog> class retry_replayer {
public:
  using options = retry_replayer_options;

  /// Keeps references to all three: they must outlive the replayer. Throws
  /// std::invalid_argument for an empty topic (as every construction in bulwark fails).
  retry_replayer(Repository& repository, Bus& bus, OutageLog& log, options opts)
      : repository_(repository), bus_(bus), log_(log), opts_(std::move(opts)), rng_(opts_.seed) {
    if (opts_.topic.empty()) throw std::invalid_argument("retry_replayer: options::topic is empty");
    if (opts_.metrics) instruments_.emplace(*opts_.metrics, opts_.name);
  }
  retry_replayer(const retry_replayer&) = delete;
  retry_replayer& operator=(const retry_replayer&) = delete;

  /// Joins the consumer group on the retry topic. Errors: the bus's subscribe errors;
  /// errc::rejected when already started.
  task<void> start() {
    if (subscription_) co_return error(errc::rejected, "retry_replayer: already started");
    stopping_ = false; // started again after a stop()
    subscribe_options o{.topic = opts_.topic,
                        .group = opts_.group,
                        .retry = {.delays = opts_.probe, .max_attempts = std::numeric_limits<unsigned>::max()},
                        .dead_letter_topic = opts_.dead_letter_topic,
                        .start = opts_.start};
    auto subscribing = bus_.subscribe(std::move(o), [this](const envelope& e) { return handle(e); });
    BOOST_OUTCOME_CO_TRY(sub, co_await std::move(subscribing));
    subscription_.emplace(std::move(sub));
    co_return ok();
  }

  /// Leaves the group (see "Stopping" above), then writes the latest window's counts.
  asio::awaitable<void> stop() {
    stopping_ = true;
    if (subscription_) {
      auto sub = std::move(*subscription_);
      subscription_.reset();
      co_await sub.stop();
    }
    co_await flush();
  }

  /// Writes the latest outage window to the log if it changed since it was last written.
  /// Errors are counted (stats().log_failures) and tried again at the next occasion.
  asio::awaitable<void> flush() {
    auto writing = persist_window(true);
    co_await std::move(writing);
  }

  /// The latest outage window (open, or recovered and still counting), if any.
  std::optional<outage_window> current_window() const {
    std::lock_guard lock(mutex_);
    return window_;
  }

  replayer_stats stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
  }

private:
  enum class outcome { replayed, superseded, duplicate };

  struct instruments {
    instruments(metrics::registry& r, const std::string& name) {
      auto& messages =
          r.counter_family("bulwark_replayer_messages_total", "Retry messages handled by a retry replayer, by outcome",
                           {"replayer", "outcome"});
      replayed = &messages.labels({name, "replayed"});
      superseded = &messages.labels({name, "superseded"});
      duplicate = &messages.labels({name, "duplicate"});
      dead_lettered = &messages.labels({name, "dead_lettered"});
      waiting = &r.gauge_family("bulwark_replayer_waiting_handlers",
                                "Retry-replayer handlers waiting for the repository to be healthy", {"replayer"})
                     .labels({name});
      windows = &r.counter_family("bulwark_replayer_outage_windows_total",
                                  "Repository outage windows a retry replayer observed", {"replayer"})
                     .labels({name});
      open = &r.gauge_family("bulwark_replayer_outage_open", "1 while a retry replayer sees the repository down",
                             {"replayer"})
                  .labels({name});
    }
    metrics::counter* replayed;
    metrics::counter* superseded;
    metrics::counter* duplicate;
    metrics::counter* dead_lettered;
    metrics::gauge* waiting;
    metrics::counter* windows;
    metrics::gauge* open;
  };

  static bool is_poison(const error& e) { return e == errc::invalid_argument || e == errc::too_large; }

  template <class T> task<T> bounded(task<T> op, const char* what) {
    return with_timeout(std::move(op), opts_.call_timeout, opts_.clock, what);
  }

  task<void> handle(const envelope& e) {
    auto parsed = parse_retry_message(e);
    if (!parsed) {
      count_dead_letter();
      co_return error(errc::invalid_argument, "undecodable retry message: " + parsed.error().message());
    }
    // Owned copies: the envelope's views die with this call, and the steps below suspend.
    const retry_request request = std::move(parsed).value();
    unsigned failures = 0;
    unsigned conflicts = 0;
    for (;;) {
      auto stepping = replay_step(request);
      auto step = co_await std::move(stepping);
      if (step) {
        co_await on_success(step.value());
        co_return ok();
      }
      const error why = std::move(step).error();
      if (is_poison(why)) {
        count_dead_letter();
        co_return error(why.code(), "the repository rejected the replayed write: " + why.message());
      }
      if (why == errc::conflict && ++conflicts < max_conflicts_in_a_row) {
        bump(&replayer_stats::conflicts);
        continue; // a concurrent writer: read again at once
      }
      conflicts = 0;
      const auto cs = co_await asio::this_coro::cancellation_state;
      if (cs.cancelled() != asio::cancellation_type::none)
        co_return error(errc::cancelled, "retry replayer interrupted");
      if (why != errc::conflict) note_failure(why);
      auto waited = wait_step(++failures);
      const bool reached = co_await std::move(waited);
      if (!reached || stopping_)
        co_return error(errc::cancelled, "retry replayer stopping while the repository is down");
    }
  }

  // One compare-and-set step (see the header comment, 2.).
  task<outcome> replay_step(const retry_request& request) {
    auto getting = bounded(repository_.get(request.key), "retry replayer get");
    BOOST_OUTCOME_CO_TRY(current, co_await std::move(getting));
    std::optional<version_t> expected = no_version;
    if (current) {
      expected = current->version;
      // A foreign value (not a frame) is older than any write_through write: stamp 0.
      if (auto stored = decode(current->value); stored && stored.value().stamp >= request.f.stamp)
        co_return stored.value().request_id == request.f.request_id&& stored.value().stamp == request.f.stamp
            ? outcome::duplicate
            : outcome::superseded;
    }
    frame durable{write_state::durable, request.f.stamp, request.f.request_id, request.f.value};
    auto putting = bounded(repository_.put(request.key, encode(durable), expected), "retry replayer put");
    BOOST_OUTCOME_CO_TRY(co_await std::move(putting));
    co_return outcome::replayed;
  }

  asio::awaitable<bool> wait_step(unsigned failures) {
    std::chrono::milliseconds delay;
    {
      std::lock_guard lock(mutex_);
      delay = opts_.probe.delay(failures, rng_);
      ++stats_.waiting;
    }
    if (instruments_) instruments_->waiting->add(1);
    auto waiting = opts_.clock.wait_for(delay);
    const bool reached = co_await std::move(waiting);
    {
      std::lock_guard lock(mutex_);
      --stats_.waiting;
    }
    if (instruments_) instruments_->waiting->add(-1);
    co_return reached;
  }

  void note_failure(const error& why) {
    std::lock_guard lock(mutex_);
    if (window_ && !window_->recovered) return;
    if (window_ && dirty_) retired_.push_back(std::move(*window_)); // its last counts, written first
    window_.emplace();
    window_->first_failure = opts_.wall();
    window_->first_error = why.message();
    char millis[24];
    std::snprintf(
        millis, sizeof millis, "%016lld",
        static_cast<long long>(
            std::chrono::duration_cast<std::chrono::milliseconds>(window_->first_failure.time_since_epoch()).count()));
    window_->id = std::string(millis) + "-" + opts_.instance;
    ++stats_.outage_windows;
    dirty_ = true;
    if (instruments_) {
      instruments_->windows->inc();
      instruments_->open->set(1);
    }
  }

  asio::awaitable<void> on_success(outcome o) {
    std::optional<outage_window> recovered;
    {
      std::lock_guard lock(mutex_);
      if (window_ && !window_->recovered) {
        window_->recovered = opts_.wall();
        if (instruments_) instruments_->open->set(0);
      }
      if (o == outcome::replayed) {
        ++stats_.replayed;
        if (window_) ++window_->replayed;
      } else {
        ++(o == outcome::duplicate ? stats_.duplicates : stats_.superseded);
        if (window_) ++window_->superseded;
      }
      if (window_) {
        if (announced_id_ != window_->id) {
          announced_id_ = window_->id;
          recovered = window_;
        }
        dirty_ = true;
      }
    }
    if (instruments_) {
      (o == outcome::replayed    ? instruments_->replayed
       : o == outcome::duplicate ? instruments_->duplicate
                                 : instruments_->superseded)
          ->inc();
    }
    auto writing = persist_window(recovered.has_value());
    co_await std::move(writing);
    if (recovered && opts_.on_recovery) {
      auto hook = opts_.on_recovery(*recovered);
      auto ignored = co_await std::move(hook);
      (void)ignored;
    }
  }

  // Writes the latest window when it changed and (unless `now`) log_interval has passed since
  // the last write. One writer at a time: a second caller leaves it to the first, which loops
  // while the window keeps changing, so an older copy never overwrites a newer one.
  asio::awaitable<void> persist_window(bool now) {
    for (;;) {
      outage_window copy;
      bool retired = false;
      {
        std::lock_guard lock(mutex_);
        if (persisting_) co_return;
        if (!retired_.empty()) {
          retired = true;
          copy = retired_.front();
        } else {
          if (!dirty_ || !window_) co_return;
          if (!now && opts_.clock.now() - last_persist_ < opts_.log_interval) co_return;
          dirty_ = false;
          copy = *window_;
        }
        persisting_ = true;
      }
      // The key outlives the lazily started put, which views it.
      const std::string key = opts_.outage_log_prefix + copy.id;
      auto putting = bounded(log_.put(key, to_json(copy), std::nullopt), "retry replayer outage log put");
      auto put = co_await std::move(putting);
      std::lock_guard lock(mutex_);
      persisting_ = false;
      last_persist_ = opts_.clock.now();
      if (!put) {
        ++stats_.log_failures;
        if (!retired) dirty_ = true;
        co_return;
      }
      if (retired) retired_.erase(retired_.begin());
      now = true; // a change that came in meanwhile is written at once
    }
  }

  void count_dead_letter() {
    bump(&replayer_stats::dead_lettered);
    if (instruments_) instruments_->dead_lettered->inc();
  }

  void bump(std::uint64_t replayer_stats::*field) {
    std::lock_guard lock(mutex_);
    ++(stats_.*field);
  }

  // After this many conflicts in a row the step backs off like a failure: a hot key written
  // by others without pause must not spin the handler.
  static constexpr unsigned max_conflicts_in_a_row = 16;

  Repository& repository_;
  Bus& bus_;
  OutageLog& log_;
  options opts_;
  std::optional<instruments> instruments_;
  std::optional<typename Bus::subscription> subscription_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mutex_;
  std::mt19937_64 rng_;
  replayer_stats stats_;
  std::optional<outage_window> window_;
  std::vector<outage_window> retired_; // earlier windows whose last counts are not written yet
  bool dirty_ = false;
  bool persisting_ = false;
  std::string announced_id_;
  clock::time_point last_persist_{};
};

} // namespace bulwark::flows
