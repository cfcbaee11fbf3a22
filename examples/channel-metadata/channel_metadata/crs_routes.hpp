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
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#ifndef CHANNEL_METADATA_VERSION
#define CHANNEL_METADATA_VERSION "0.1.0"
#endif

namespace channel_metadata {

/// Where the replayer's outage windows live in CRS's own database (the OutageLog repository).
inline constexpr std::string_view outage_log_prefix = "outage-window/";

/// The outage windows under `prefix` in `log`, oldest first, at most `limit` (the newest ones
/// when there are more), as downtime-log entries numbered from 1. Errors: the log's.
/// Cost: one scan per 500 windows.
template <bulwark::repository OutageLog>
bulwark::task<std::vector<downtime_entry>> read_downtime_log(OutageLog& log, std::string prefix, std::size_t limit) {
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
  const std::size_t skip = all.size() > limit ? all.size() - limit : 0;
  std::vector<downtime_entry> out;
  out.reserve(all.size() - skip);
  for (std::size_t i = skip; i < all.size(); ++i)
    out.push_back(downtime_entry{static_cast<std::int64_t>(i - skip + 1), all[i].first_failure});
  co_return out;
}

/// Deletes the oldest outage windows beyond `keep`. Returns how many went. Errors: the log's.
template <bulwark::repository OutageLog>
bulwark::task<std::size_t> prune_downtime_log(OutageLog& log, std::string prefix, std::size_t keep) {
  std::vector<std::string> ids;
  std::string after;
  for (;;) {
    auto listing = bulwark::flows::list_outage_windows(log, prefix, after, 500);
    BOOST_OUTCOME_CO_TRY(page, co_await std::move(listing));
    if (page.empty()) break;
    after = page.back().id;
    const bool last = page.size() < 500;
    for (auto& w : page) ids.push_back(std::move(w.id));
    if (last) break;
  }
  std::size_t erased = 0;
  for (std::size_t i = 0; i + keep < ids.size(); ++i) {
    // Named: the erase may start lazily and views its key.
    const std::string key = prefix + ids[i];
    auto erasing = log.erase(key);
    BOOST_OUTCOME_CO_TRY(co_await std::move(erasing));
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
