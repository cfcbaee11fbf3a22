#pragma once
// The cache-retry-service's routes (contract.md, "CRS") and the pieces of its job that are
// worth a test: the downtime log read from the replayer's outage windows (and pruned to its
// retention), and the watch that asks CMS to reconcile after replays.

#include <channel_metadata/auth.hpp>
#include <channel_metadata/config.hpp>
#include <channel_metadata/downtime_log.hpp>
#include <channel_metadata/errors.hpp>
#include <channel_metadata/health.hpp>
#include <channel_metadata/reconciler.hpp>
#include <channel_metadata/texts.hpp>

#include <bulwark/flows/retry_replayer.hpp>
#include <bulwark/http/message.hpp>
#include <bulwark/http/metrics_handler.hpp>
#include <bulwark/http/middleware.hpp>
#include <bulwark/http/responses.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/repository.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#ifndef CHANNEL_METADATA_VERSION
#define CHANNEL_METADATA_VERSION "0.1.0"
#endif

namespace channel_metadata {

/// Where the replayer's outage windows live in CRS's own database (the OutageLog repository).
inline constexpr std::string_view outage_log_prefix = "outage-window/";

/// Where the downtime log's ids live beside the windows in the same repository: one entry per
/// window ("downtime-id/<window id>" -> its id, decimal) and the last id given
/// (downtime_id_sequence_key). An id, once given, names its window for good: pruning older
/// windows does not renumber the rest (like the reference's auto-increment column, ids have gaps
/// where a replica's allocation lost a race).
inline constexpr std::string_view downtime_id_prefix = "downtime-id/";
inline constexpr std::string_view downtime_id_sequence_key = "downtime-id-sequence";

namespace detail {

template <bulwark::repository OutageLog>
bulwark::task<std::vector<bulwark::flows::outage_window>> all_outage_windows(OutageLog& log, std::string prefix) {
  std::vector<bulwark::flows::outage_window> all;
  std::string after;
  for (;;) {
    auto listing = bulwark::flows::list_outage_windows(log, prefix, after, 500);
    BOOST_OUTCOME_CO_TRY(page, co_await std::move(listing));
    if (page.empty()) break;
    after = page.back().id;
    const bool last = page.size() < 500;
    for (auto& w : page) all.push_back(std::move(w));
    if (last) break;
  }
  co_return all;
}

inline std::optional<std::int64_t> parse_downtime_id(std::string_view text) {
  std::int64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || n < 1) return std::nullopt;
  return n;
}

/// The ids given so far: window id -> id. Cost: one scan per 500 windows.
template <bulwark::repository OutageLog>
bulwark::task<std::map<std::string, std::int64_t>> downtime_ids(OutageLog& log) {
  std::map<std::string, std::int64_t> out;
  std::string after;
  for (;;) {
    auto scanning = log.scan(downtime_id_prefix, after, 500);
    BOOST_OUTCOME_CO_TRY(page, co_await std::move(scanning));
    for (auto& e : page.entries)
      if (auto id = parse_downtime_id(e.value)) out[e.key.substr(downtime_id_prefix.size())] = *id;
    if (!page.next) break;
    after = *page.next;
  }
  co_return out;
}

/// The next id from the sequence (compare-and-set: replicas sharing the log never get the same
/// one). Errors: the log's; errc::conflict after 100 lost races in a row.
template <bulwark::repository OutageLog> bulwark::task<std::int64_t> next_downtime_id(OutageLog& log) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto reading = log.get(downtime_id_sequence_key);
    BOOST_OUTCOME_CO_TRY(current, co_await std::move(reading));
    std::int64_t last = 0;
    if (current) last = parse_downtime_id(current->value).value_or(0);
    const std::optional<bulwark::version_t> expected = current ? current->version : bulwark::no_version;
    auto writing = log.put(downtime_id_sequence_key, std::to_string(last + 1), expected);
    auto written = co_await std::move(writing);
    if (written) co_return last + 1;
    if (written.error() != bulwark::errc::conflict) co_return written.error();
  }
  co_return bulwark::error(bulwark::errc::conflict, "downtime-log id sequence: too many concurrent allocations");
}

/// The id of window `window_id`: the one given before, or a new one from the sequence (when
/// another replica gives one at the same time, its one wins). Errors: the log's.
template <bulwark::repository OutageLog>
bulwark::task<std::int64_t> give_downtime_id(OutageLog& log, std::string window_id) {
  auto allocating = next_downtime_id(log);
  BOOST_OUTCOME_CO_TRY(id, co_await std::move(allocating));
  const std::string key = std::string(downtime_id_prefix) + window_id;
  auto writing = log.put(key, std::to_string(id), bulwark::no_version);
  auto written = co_await std::move(writing);
  if (written) co_return id;
  if (written.error() != bulwark::errc::conflict) co_return written.error();
  auto reading = log.get(key);
  BOOST_OUTCOME_CO_TRY(theirs, co_await std::move(reading));
  if (theirs)
    if (auto given = parse_downtime_id(theirs->value)) co_return *given;
  co_return bulwark::error(bulwark::errc::conflict, "downtime-log id of window " + window_id + " is unreadable");
}

} // namespace detail

/// The outage windows under `prefix` in `log`, oldest first, at most `limit` (the newest ones
/// when there are more), as downtime-log entries with their stable ids: a window seen for the
/// first time gets the next id of the log's sequence (in first-failure order), and keeps it,
/// whatever is pruned later. Errors: the log's (a read that cannot store a new id fails rather
/// than show an id that could change). Cost: two scans per 500 windows, two or three writes per
/// new window.
template <bulwark::repository OutageLog>
bulwark::task<std::vector<downtime_entry>> read_downtime_log(OutageLog& log, std::string prefix, std::size_t limit) {
  auto listing = detail::all_outage_windows(log, prefix);
  BOOST_OUTCOME_CO_TRY(all, co_await std::move(listing));
  auto reading = detail::downtime_ids(log);
  BOOST_OUTCOME_CO_TRY(ids, co_await std::move(reading));
  const std::size_t skip = all.size() > limit ? all.size() - limit : 0;
  std::vector<downtime_entry> out;
  out.reserve(all.size() - skip);
  for (std::size_t i = skip; i < all.size(); ++i) {
    auto known = ids.find(all[i].id);
    std::int64_t id = 0;
    if (known != ids.end()) {
      id = known->second;
    } else {
      auto giving = detail::give_downtime_id(log, all[i].id);
      BOOST_OUTCOME_CO_TRY(given, co_await std::move(giving));
      id = given;
    }
    out.push_back(downtime_entry{id, all[i].first_failure});
  }
  co_return out;
}

/// Deletes the oldest outage windows beyond `keep`, and their ids (the kept ones keep theirs).
/// Returns how many went. Errors: the log's.
template <bulwark::repository OutageLog>
bulwark::task<std::size_t> prune_downtime_log(OutageLog& log, std::string prefix, std::size_t keep) {
  auto listing = detail::all_outage_windows(log, prefix);
  BOOST_OUTCOME_CO_TRY(windows, co_await std::move(listing));
  std::size_t erased = 0;
  for (std::size_t i = 0; i + keep < windows.size(); ++i) {
    // Named: the erase may start lazily and views its key. The window first, then its id (an id
    // left behind by a failure here names nothing and is never shown).
    const std::string key = prefix + windows[i].id;
    auto erasing = log.erase(key);
    BOOST_OUTCOME_CO_TRY(co_await std::move(erasing));
    const std::string id_key = std::string(downtime_id_prefix) + windows[i].id;
    auto erasing_id = log.erase(id_key);
    BOOST_OUTCOME_CO_TRY(co_await std::move(erasing_id));
    ++erased;
  }
  co_return erased;
}

/// What the replay watch reads of a replayer: handled so far (replayed + superseded +
/// duplicates) and handlers waiting for the database now.
struct replay_progress {
  std::uint64_t handled = 0;
  std::uint64_t waiting = 0;
};

/// Asks CMS to reconcile once writes were replayed: every `period` on `clock`, when the handled
/// count moved and no handler waits for the database, one request to `reconciler`; while that
/// request has not succeeded (CMS's breaker may still be open after the outage, CMS may be
/// restarting), it is asked again each period the reconciler is idle, at most `max_asks` times.
/// Each period it also runs `flush` when set (the replayer's flush(): an outage-log write that
/// failed, as the first one after a database restart can, is written again). Ends when `stop`
/// is set (at its next period).
inline asio::awaitable<void> replay_watch(std::function<replay_progress()> progress, cms_reconciler& reconciler,
                                          bulwark::clock clock, std::chrono::milliseconds period,
                                          std::shared_ptr<std::atomic<bool>> stop,
                                          std::function<asio::awaitable<void>()> flush = {}, unsigned max_asks = 30) {
  std::uint64_t seen = progress().handled;
  std::uint64_t succeeded = 0;
  unsigned asks = 0;
  bool owed = false;
  while (!*stop) {
    const bool waited = co_await clock.wait_for(period);
    if (!waited || *stop) break;
    if (flush) co_await flush();
    if (*stop) break;
    const auto now = progress();
    const auto done = reconciler.stats().succeeded;
    if (owed && done != succeeded) owed = false; // a reconcile ran after the replays
    if (now.handled != seen && now.waiting == 0) {
      seen = now.handled;
      owed = true;
      asks = 0;
    }
    if (owed && !reconciler.active() && asks < max_asks) {
      ++asks;
      succeeded = done;
      reconciler.request();
    }
  }
}

/// Everything CRS's routes use.
struct crs_context {
  config settings = defaults(service::crs);
  /// "database" (the channel-metadata database it replays into), "outageLog" (its own), "bus".
  std::vector<health_probe> probes;
  /// The downtime log (read_downtime_log over the service's outage log).
  std::function<bulwark::task<std::vector<downtime_entry>>()> downtime_log;
  cms_reconciler* reconciler = nullptr;
  std::shared_ptr<bulwark::metrics::registry> metrics;
  std::function<void(const std::string&)> access_log;
};

/// Adds CRS's middleware (request id, access log, the contract's two 401 shapes) and routes.
/// `ctx` must outlive the router.
inline void add_crs_routes(bulwark::http::router& routes, crs_context& ctx) {
  namespace http = bulwark::http;
  using bulwark::task;
  routes.use(http::request_id());
  if (ctx.access_log) routes.use(http::access_log(ctx.access_log));
  routes.use(contract_basic_auth({{ctx.settings.user, ctx.settings.password}}, "cache-retry-service", crs_guard));

  routes.get("/trigger-cache-retry", [&ctx](http::request&) -> task<http::response> {
    if (ctx.reconciler) ctx.reconciler->request();
    co_return crs::trigger_accepted();
  });

  routes.get("/get-downtime-logs", [&ctx](http::request&) -> task<http::response> {
    if (!ctx.downtime_log) co_return crs::downtime_failed();
    auto entries = co_await ctx.downtime_log();
    if (!entries) co_return crs::downtime_failed();
    co_return http::response(200, "application/json", downtime_log_json(std::move(entries).value()).dump());
  });

  routes.get("/private/status",
             [](http::request&) -> task<http::response> { co_return http::text(200, std::string(text::status_ok)); });

  routes.get("/private/healthcheck", [&ctx](http::request&) -> task<http::response> {
    auto states = co_await probe_all(ctx.probes, ctx.settings.database_timeout);
    co_return health_response(crs_can_serve(states), states, {"database", "outageLog", "bus"}, std::nullopt);
  });

  routes.get("/private/info", [&ctx](http::request&) -> task<http::response> {
    nlohmann::ordered_json info{{"app", {{"name", text::crs_app_name}, {"version", CHANNEL_METADATA_VERSION}}},
                                {"backend", to_string(ctx.settings.backend)}};
    co_return http::response(200, "application/json", info.dump());
  });

  if (ctx.metrics) {
    routes.get("/private/prometheus", http::metrics_handler(ctx.metrics));
    routes.get("/metrics", http::metrics_handler(ctx.metrics));
  }
}

} // namespace channel_metadata
