#pragma once
// The pipeline's three parts over any models of the concepts, the same code in memory and real
// mode:
//   ingestion<Bus>                 POST /input: validate -> publish -> 202 {"id"}
//   consumer<Logs, Aggregates>     the group's batch handler: the batch's logs (stored where the
//                                  key is absent) then its aggregates (counted once per id)
//   views<Logs, Aggregates>        GET /live and GET /logs: JSON, the page (Accept prefers
//                                  text/html) or server-sent events (Accept: text/event-stream),
//                                  pushed by one loop that reads the stores every push_interval
// Threads: the models (and the consumer and the push loop) live on one executor, `home`; the HTTP
// server's threads publish directly (a bus may be used from any thread) and reach the stores with
// one hop (run_on). The list of open streams is the only state both sides touch (a mutex).

#include <predictions/aggregates.hpp>
#include <predictions/pages.hpp>
#include <predictions/prediction.hpp>

#include <bulwark/event_bus.hpp>
#include <bulwark/http/event_stream.hpp>
#include <bulwark/http/negotiation.hpp>
#include <bulwark/http/responses.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/repository.hpp>
#include <bulwark/run_on.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <charconv>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace predictions {

/// The lag buckets (seconds) of predictions_lag_seconds: acceptance -> counted in /live. Every
/// 50 ms from 0.75 s to 1.25 s: the p99 goal is under 1 s, and a p99 known only to lie in
/// (0.75, 1] (the buckets before) could not say by how much it met it, nor one in (1, 2.5] by
/// how much it missed.
inline std::vector<double> lag_buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95,
          1,     1.05, 1.1,   1.15, 1.2, 1.25, 1.5, 2,   2.5, 5,    10,  30,   60};
}

template <class Bus> class ingestion {
public:
  ingestion(Bus& bus, std::string topic, std::shared_ptr<bulwark::metrics::registry> metrics)
      : bus_(bus), topic_(std::move(topic)),
        accepted_(
            metrics->counter_family("predictions_inputs_total", "Inputs by outcome", {"outcome"}).labels({"accepted"})),
        refused_(
            metrics->counter_family("predictions_inputs_total", "Inputs by outcome", {"outcome"}).labels({"invalid"})) {
  }

  /// POST /input. 400 with every violation; 503 when the bus refused or failed (nothing was
  /// accepted: the client may send again); 202 {"id"} once the message is durable.
  bulwark::task<bulwark::http::response> input(bulwark::http::request& req) {
    auto checked = validate(req.body);
    if (!checked.value) {
      refused_.inc();
      co_return bulwark::http::json(400, violations_json(checked.violations));
    }
    accepted a;
    a.received_at_ms = unix_ms();
    a.id = ids_.next(a.received_at_ms);
    a.value = std::move(*checked.value);
    bulwark::message m; // no header: the id is the key and in the value, which the consumer reads
    m.key = a.id;
    m.value = to_json(a).dump();
    auto publishing = bus_.publish(topic_, std::move(m));
    auto published = co_await std::move(publishing);
    if (!published) co_return published.error();
    accepted_.inc();
    // An id is 28 hex digits: nothing to escape, so no JSON object to build for the answer.
    co_return bulwark::http::response(202, "application/json", "{\"id\":\"" + a.id + "\"}");
  }

private:
  Bus& bus_;
  std::string topic_;
  id_source ids_;
  bulwark::metrics::counter& accepted_;
  bulwark::metrics::counter& refused_;
};

/// Stores each (log key, log) whose key is absent, one write for all where the repository has a
/// batch write (mysql::repository::put_absent_many: one multi-row INSERT), else a put each; a key
/// already there is not an error (logged by an earlier delivery).
template <class Logs>
bulwark::task<void> write_logs(Logs& logs, std::vector<std::pair<std::string, std::string>> entries) {
  if constexpr (requires { logs.put_absent_many(std::move(entries)); }) {
    auto writing = logs.put_absent_many(std::move(entries));
    co_return co_await std::move(writing);
  } else {
    for (auto& [key, value] : entries) {
      auto writing = logs.put(key, std::move(value), bulwark::no_version);
      auto written = co_await std::move(writing);
      if (!written && written.error() != bulwark::errc::conflict) co_return written.error();
    }
    co_return bulwark::ok();
  }
}

template <class Logs, class Aggregates> class consumer {
public:
  consumer(Logs& logs, Aggregates& aggregates, std::shared_ptr<bulwark::metrics::registry> metrics)
      : logs_(logs), aggregates_(aggregates),
        counted_(metrics->counter_family("predictions_consumed_total", "Messages consumed by outcome", {"outcome"})
                     .labels({"counted"})),
        duplicates_(metrics->counter_family("predictions_consumed_total", "Messages consumed by outcome", {"outcome"})
                        .labels({"duplicate"})),
        lag_(metrics
                 ->histogram_family("predictions_lag_seconds",
                                    "From a prediction's acceptance to its count in the live aggregates", {},
                                    lag_buckets())
                 .labels({})) {}

  /// The group's batch handler: the logs of the whole batch in one write, then its aggregates in
  /// one. An error fails the batch, which the bus then delivers one message at a time under its
  /// retry policy; a message that is not a prediction goes to the dead-letter topic then
  /// (invalid_argument is not retried). A batch applied in part and delivered again is counted
  /// once: both writes skip the ids they already hold.
  bulwark::task<void> handle_batch(std::span<const bulwark::envelope> batch) {
    std::vector<accepted> predictions;
    std::vector<std::pair<std::string, std::string>> entries;
    predictions.reserve(batch.size());
    entries.reserve(batch.size());
    for (const auto& e : batch) {
      BOOST_OUTCOME_CO_TRY(a, accepted_from_json(e.value));
      entries.emplace_back(log_key(a.id), std::string(e.value));
      predictions.push_back(std::move(a));
    }
    auto writing = write_logs(logs_, std::move(entries));
    BOOST_OUTCOME_CO_TRY(co_await std::move(writing));
    auto recording = aggregates_.record_batch(predictions);
    BOOST_OUTCOME_CO_TRY(counted, co_await std::move(recording));
    const auto now = unix_ms();
    for (std::size_t i = 0; i < predictions.size(); ++i) {
      if (!counted[i]) {
        duplicates_.inc();
        continue;
      }
      counted_.inc();
      lag_.observe(static_cast<double>(std::max<std::int64_t>(0, now - predictions[i].received_at_ms)) / 1000.0);
    }
    co_return bulwark::ok();
  }

private:
  Logs& logs_;
  Aggregates& aggregates_;
  bulwark::metrics::counter& counted_;
  bulwark::metrics::counter& duplicates_;
  bulwark::metrics::histogram& lag_;
};

/// The id of every log, page by page (1000 a page).
template <class Logs> bulwark::task<std::vector<std::string>> all_log_ids(Logs& logs) {
  std::vector<std::string> ids;
  std::string after;
  for (;;) {
    auto scanning = logs.scan(log_prefix, after, 1000);
    BOOST_OUTCOME_CO_TRY(page, co_await std::move(scanning));
    for (auto& e : page.entries) {
      auto a = accepted_from_json(e.value);
      ids.push_back(a ? a.value().id : e.key);
    }
    if (!page.next) break;
    after = *page.next;
  }
  co_return ids;
}

/// The logs' retention: every `interval`, removes the logs accepted more than `retention` ago
/// for good (purge: no tombstones), `page` at a time until none is left. The expired logs are
/// exactly the keys after logs_before_key(cutoff), so a pass touches nothing it keeps; each
/// consumer replica prunes, and a log another removed first is simply not there. Lives on the
/// models' executor; start(), then stop() from another thread (it waits for the page in
/// progress, if any).
/// Start and stop of one periodic loop on an executor (the logs' pruning, the streams' push):
/// start() spawns the loop, stop() wakes its wait and returns once the loop has ended, so nothing
/// touches the owner after stop(); start() after stop() runs a new loop. start() and stop() are
/// called from threads other than the executor's (stop() waits for it); the loop reads
/// stopping() and sleeps through sleep(), on the executor.
class loop_control {
public:
  explicit loop_control(asio::any_io_executor ex) : ex_(std::move(ex)), timer_(ex_) {}
  loop_control(const loop_control&) = delete;
  loop_control& operator=(const loop_control&) = delete;
  ~loop_control() { stop(); }

  void start(asio::awaitable<void> loop) {
    if (started_) return;
    started_ = true;
    stopping_ = false; // no loop runs: stop() waited for the last one
    done_ = std::promise<void>();
    asio::co_spawn(ex_, std::move(loop), [this](std::exception_ptr) { done_.set_value(); });
  }

  void stop() {
    if (!started_) return;
    started_ = false;
    asio::post(ex_, [this] {
      stopping_ = true;
      timer_.cancel();
    });
    done_.get_future().wait();
  }

  /// On the executor: stop() was called.
  bool stopping() const noexcept { return stopping_; }

  /// On the executor: waits `d`, or less when stop() comes. False when stopping.
  asio::awaitable<bool> sleep(std::chrono::steady_clock::duration d) {
    if (stopping_) co_return false; // stop() came during a pass: its cancel found no wait
    timer_.expires_after(d);
    asio::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    co_return !stopping_;
  }

private:
  asio::any_io_executor ex_;
  asio::steady_timer timer_;
  bool started_ = false;  ///< start()/stop()'s thread
  bool stopping_ = false; ///< the executor's
  std::promise<void> done_;
};

template <bulwark::purgeable_repository Logs> class logs_pruner {
public:
  struct options {
    std::chrono::seconds retention{std::chrono::hours(24 * 7)}; ///< 0: keep every log
    std::chrono::seconds interval{60};
    std::size_t page = 1000;
  };

  logs_pruner(asio::any_io_executor ex, Logs& logs, options o, std::shared_ptr<bulwark::metrics::registry> metrics)
      : logs_(logs), opts_(o), loop_(std::move(ex)),
        pruned_(
            metrics->counter_family("predictions_logs_pruned_total", "Logs erased by the retention", {}).labels({})) {}
  logs_pruner(const logs_pruner&) = delete;
  logs_pruner& operator=(const logs_pruner&) = delete;
  ~logs_pruner() { stop(); }

  /// A pass at once, then one every interval, until stop(). Again after a stop().
  void start() {
    if (opts_.retention.count() != 0) loop_.start(loop());
  }

  /// Ends the loop (a pass in progress ends after its current page) and waits for it.
  void stop() { loop_.stop(); }

  /// One pass now: every log older than the retention, page by page. Returns how many this
  /// pass removed. On the models' executor.
  bulwark::task<std::size_t> prune_now() {
    const auto cutoff = unix_ms() - std::chrono::duration_cast<std::chrono::milliseconds>(opts_.retention).count();
    const std::string after = logs_before_key(cutoff); // the purge reads it when awaited
    std::size_t removed = 0;
    while (!loop_.stopping()) {
      auto purging = logs_.purge(log_prefix, after, opts_.page);
      BOOST_OUTCOME_CO_TRY(n, co_await std::move(purging));
      removed += n;
      pruned_.inc(static_cast<double>(n));
      if (n < opts_.page) break;
    }
    co_return removed;
  }

private:
  asio::awaitable<void> loop() {
    do {
      auto pruning = prune_now();
      (void)co_await std::move(pruning); // a store down: the next period tries again
    } while (co_await loop_.sleep(opts_.interval));
  }

  Logs& logs_;
  options opts_;
  loop_control loop_;
  bulwark::metrics::counter& pruned_;
};

inline constexpr std::size_t default_logs_limit = 50;
inline constexpr std::size_t max_logs_limit = 1000;

/// ?limit=N of GET /logs: 1..1000, 50 when absent. nullopt: not such a number.
inline std::optional<std::size_t> logs_limit(std::string_view query) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (!pair.starts_with("limit=")) continue;
    const auto digits = pair.substr(6);
    std::size_t n = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (ec != std::errc() || end != digits.data() + digits.size() || n < 1 || n > max_logs_limit) return std::nullopt;
    return n;
  }
  return default_logs_limit;
}

template <class Logs, class Aggregates> class views {
public:
  struct options {
    /// How often the push loop reads the stores while a stream is open.
    std::chrono::milliseconds push_interval{200};
    bulwark::http::event_stream::options stream{};
  };

  views(asio::any_io_executor ex, Logs& logs, Aggregates& aggregates, options o)
      : ex_(ex), logs_(logs), aggregates_(aggregates), opts_(o), loop_(std::move(ex)) {
    opts_.stream.retry = std::chrono::milliseconds(1000);
  }

  /// The latest `limit` logs, newest first: {"logs": [...]}.
  bulwark::task<nlohmann::json> latest(std::size_t limit) {
    auto scanning = logs_.scan(log_prefix, "", limit);
    BOOST_OUTCOME_CO_TRY(page, co_await std::move(scanning));
    nlohmann::json list = nlohmann::json::array();
    for (const auto& entry : page.entries) {
      auto j = nlohmann::json::parse(entry.value, nullptr, false);
      if (!j.is_discarded()) list.push_back(std::move(j));
    }
    nlohmann::json out = nlohmann::json::object(); // not a braced temporary: GCC 12 coroutines mishandle those
    out["logs"] = std::move(list);
    co_return out;
  }

  bulwark::task<bulwark::http::response> live(bulwark::http::request& req) {
    if (bulwark::http::accepts_event_stream(req)) co_return subscribe(live_streams_);
    const auto type = bulwark::http::preferred_type(req, {"application/json", "text/html"});
    if (type == "text/html") co_return bulwark::http::response(200, "text/html; charset=utf-8", std::string(live_page));
    if (type.empty())
      co_return bulwark::http::error_response(406, "not_acceptable", "offered: application/json, text/html");
    auto reading = bulwark::run_on(ex_, aggregates_.snapshot());
    BOOST_OUTCOME_CO_TRY(snapshot, co_await std::move(reading));
    co_return bulwark::http::json(snapshot);
  }

  bulwark::task<bulwark::http::response> logs(bulwark::http::request& req) {
    const auto limit = logs_limit(req.query());
    if (!limit) co_return bulwark::http::error_response(400, "invalid_argument", "limit must be an integer in 1..1000");
    if (bulwark::http::accepts_event_stream(req)) co_return subscribe(log_streams_, *limit);
    const auto type = bulwark::http::preferred_type(req, {"application/json", "text/html"});
    if (type == "text/html") co_return bulwark::http::response(200, "text/html; charset=utf-8", std::string(logs_page));
    if (type.empty())
      co_return bulwark::http::error_response(406, "not_acceptable", "offered: application/json, text/html");
    auto reading = bulwark::run_on(ex_, latest(*limit));
    BOOST_OUTCOME_CO_TRY(list, co_await std::move(reading));
    co_return bulwark::http::json(list);
  }

  /// Starts the push loop (on the executor given at construction); again after a stop().
  void start() {
    {
      std::lock_guard lock(mutex_);
      stopped_ = false;
    }
    loop_.start(push_loop());
  }

  /// Ends every open stream, then the loop, and waits for it (a push in progress ends first):
  /// after stop() nothing touches the views. The HTTP server's stop ends the connections too.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopped_ = true;
      for (auto& s : live_streams_) s.stream->close();
      for (auto& s : log_streams_) s.stream->close();
    }
    loop_.stop();
  }

  std::size_t open_streams() const {
    std::lock_guard lock(mutex_);
    return live_streams_.size() + log_streams_.size();
  }

private:
  struct subscriber {
    std::shared_ptr<bulwark::http::event_stream> stream;
    std::size_t limit = 0;
    /// Has not had its first state yet. Shared by the loop's copy of the list, and changed by
    /// the loop only, once a send happened (a store down at the first try: the next period).
    std::shared_ptr<bool> fresh = std::make_shared<bool>(true);
  };

  bulwark::http::response subscribe(std::vector<subscriber>& to, std::size_t limit = 0) {
    auto s = std::make_shared<bulwark::http::event_stream>(opts_.stream);
    std::lock_guard lock(mutex_);
    if (stopped_) s->close();
    to.push_back({s, limit, std::make_shared<bool>(true)});
    return bulwark::http::event_stream_response(std::move(s));
  }

  // Reads the aggregates every push_interval while a stream is open and sends them to each
  // stream when they changed (or it is new); then the logs, when the total changed.
  asio::awaitable<void> push_loop() {
    std::string last_live;
    while (co_await loop_.sleep(opts_.push_interval)) {
      std::vector<subscriber> live_streams, log_streams;
      {
        std::lock_guard lock(mutex_);
        std::erase_if(live_streams_, [](const subscriber& s) { return s.stream->closed(); });
        std::erase_if(log_streams_, [](const subscriber& s) { return s.stream->closed(); });
        live_streams = live_streams_;
        log_streams = log_streams_;
      }
      if (live_streams.empty() && log_streams.empty()) continue;
      auto reading = aggregates_.snapshot();
      auto snapshot = co_await std::move(reading);
      if (!snapshot) continue; // a store down: the next period tries again
      std::string live = snapshot.value().dump();
      const bool changed = live != last_live;
      for (auto& s : live_streams) {
        if (!changed && !*s.fresh) continue;
        s.stream->send(live, "live");
        *s.fresh = false;
      }
      std::size_t limit = 0;
      for (const auto& s : log_streams)
        if (changed || *s.fresh) limit = std::max(limit, s.limit);
      if (limit > 0) {
        auto listing = latest(limit);
        auto list = co_await std::move(listing);
        if (list) {
          const auto& all = list.value()["logs"];
          for (auto& s : log_streams) {
            if (!changed && !*s.fresh) continue;
            nlohmann::json mine = nlohmann::json::array();
            for (std::size_t i = 0; i < all.size() && i < s.limit; ++i) mine.push_back(all[i]);
            nlohmann::json event = nlohmann::json::object();
            event["logs"] = std::move(mine);
            s.stream->send(event.dump(), "logs");
            *s.fresh = false;
          }
        }
      }
      last_live = std::move(live);
    }
  }

  asio::any_io_executor ex_;
  Logs& logs_;
  Aggregates& aggregates_;
  options opts_;
  mutable std::mutex mutex_;
  std::vector<subscriber> live_streams_, log_streams_;
  bool stopped_ = false; ///< new streams are closed at once (under mutex_)
  loop_control loop_;
};

/// The routes of an API process: POST /input, GET /live, GET /logs, / (to the live page).
template <class Bus, class Logs, class Aggregates>
void add_routes(bulwark::http::router& r, ingestion<Bus>& in, views<Logs, Aggregates>& v) {
  r.post("/input", [&in](bulwark::http::request& req) { return in.input(req); });
  r.get("/live", [&v](bulwark::http::request& req) { return v.live(req); });
  r.get("/logs", [&v](bulwark::http::request& req) { return v.logs(req); });
  r.get("/", [](bulwark::http::request&) -> bulwark::task<bulwark::http::response> {
    bulwark::http::response moved(302);
    moved.headers.set("Location", "/live");
    co_return moved;
  });
}

} // namespace predictions
