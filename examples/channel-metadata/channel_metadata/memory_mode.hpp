#pragma once
// Memory mode: both services on in-memory models in one process, no servers. One memory
// repository is the channel-metadata database (behind a faulty_repository, so --fault-control
// and the tests can make it fail), one memory cache, one memory event bus carrying the retry
// topic from CMS's write_through to CRS's retry_replayer, and one memory repository as CRS's
// outage log. main() puts HTTP servers in front of the two contexts; the tests call the
// routers in process.
//
// Nothing survives a restart but the last-known-good snapshot (--snapshot-path).

#include <channel_metadata/cms_routes.hpp>
#include <channel_metadata/config.hpp>
#include <channel_metadata/crs_routes.hpp>
#include <channel_metadata/reconciler.hpp>
#include <channel_metadata/store.hpp>
#include <channel_metadata/wiring.hpp>

#include <bulwark/flows/retry_replayer.hpp>
#include <bulwark/flows/write_through.hpp>
#include <bulwark/memory/cache.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/testing/faults.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace channel_metadata {

/// The embedded CRS's configuration in memory mode: its own settings from CRS_* variables in
/// `env` (CRS_USER, CRS_PASSWORD, ...), and from CMS's `cms`: the listen address (every listener
/// of the process honours --address), its port (--crs-port; 0 picks a free one), the retry topic,
/// and each service's credentials for calling the other (written into `cms` too). Errors: a bad
/// CRS_* variable (errc::invalid_argument).
inline bulwark::result<config> embedded_crs_config(config& cms, const environment& env) {
  BOOST_OUTCOME_TRY(crs, load_config(service::crs, {}, env));
  crs.backend = backend_kind::memory;
  crs.listen_address = cms.listen_address;
  crs.port = cms.crs_port;
  crs.retry_topic = cms.retry_topic;
  crs.peer_user = cms.user;
  crs.peer_password = cms.password;
  cms.peer_user = crs.user;
  cms.peer_password = crs.password;
  return crs;
}

/// Where one service of the process calls the other: the listen address, or 127.0.0.1 when that
/// is a wildcard (0.0.0.0, ::).
inline std::string embedded_peer_host(const config& cms) {
  return cms.listen_address == "0.0.0.0" || cms.listen_address == "::" ? "127.0.0.1" : cms.listen_address;
}

class memory_deployment {
public:
  using database_type = bulwark::testing::faulty_repository<bulwark::memory::repository>;
  using flow_type = bulwark::flows::write_through<database_type, bulwark::memory::cache, bulwark::memory::event_bus>;
  using replayer_type =
      bulwark::flows::retry_replayer<database_type, bulwark::memory::event_bus, bulwark::memory::repository>;

  struct options {
    config cms = defaults(service::cms);
    config crs = defaults(service::crs);
    /// The flows', the replayer's, the bus's and the reconciler's time (manual in tests).
    bulwark::clock clock{};
    /// How often CRS looks whether writes were replayed (and then asks CMS to reconcile).
    std::chrono::milliseconds watch_period{std::chrono::seconds(1)};
    /// CRS -> CMS force-update-all; CMS -> CRS for the admin proxy (main: HTTP; tests: routers).
    cms_reconciler::call_type call_cms;
    crs_call call_crs;
    std::function<void(const std::string&)> log;
  };

  /// Builds everything on `ex` (the bus's deliveries, the replayer, the reconciler run there).
  memory_deployment(asio::any_io_executor ex, options o)
      : ex_(ex), opts_(std::move(o)), cms_metrics_(std::make_shared<bulwark::metrics::registry>()),
        crs_metrics_(std::make_shared<bulwark::metrics::registry>()), database_(documents_, opts_.clock),
        bus_(ex, bus_options(crs_metrics_, opts_.clock)),
        flow_(database_, cache_, bus_, store_options<flow_type>(opts_.cms, cms_metrics_, opts_.clock)), store_(flow_),
        replayer_(database_, bus_, outage_log_, crs_replayer_options()),
        reconciler_(ex, opts_.call_cms, opts_.crs.reconcile_retry_delay, opts_.clock, opts_.log) {
    cms_.settings = opts_.cms;
    cms_.store = &store_;
    cms_.metrics = cms_metrics_;
    cms_.probes = {repository_probe("database", database_), cache_probe("cache", cache_),
                   health_probe{"bus", [this]() -> bulwark::task<void> {
                                  if (bus_stopped_) co_return bulwark::error(bulwark::errc::unavailable, "bus stopped");
                                  co_return bulwark::ok();
                                }}};
    if (opts_.cms.fault_control) cms_.database_fault = [this](bool down) { set_database_down(down); };
    cms_.crs = opts_.call_crs;
    cms_.access_log = opts_.log;

    crs_.settings = opts_.crs;
    crs_.probes = {repository_probe("database", database_), repository_probe("outageLog", outage_log_), cms_.probes[2]};
    crs_.probes[2].name = "bus";
    crs_.downtime_log = [this]() {
      return read_downtime_log(outage_log_, std::string(outage_log_prefix), opts_.crs.downtime_log_retention);
    };
    crs_.reconciler = &reconciler_;
    crs_.metrics = crs_metrics_;
    crs_.access_log = opts_.log;
  }
  memory_deployment(const memory_deployment&) = delete;
  memory_deployment& operator=(const memory_deployment&) = delete;

  /// Loads the snapshot, subscribes the replayer, starts the replay watch.
  bulwark::task<void> start() {
    BOOST_OUTCOME_CO_TRY(co_await flow_.start());
    BOOST_OUTCOME_CO_TRY(co_await replayer_.start());
    auto progress = [this] {
      const auto s = replayer_.stats();
      return replay_progress{s.replayed + s.superseded + s.duplicates, s.waiting};
    };
    *watch_done_ = false;
    auto watching = replay_watch(progress, reconciler_, opts_.clock, opts_.watch_period, watch_stop_,
                                 [this] { return replayer_.flush(); });
    asio::co_spawn(
        ex_,
        [](asio::awaitable<void> watch, std::shared_ptr<std::atomic<bool>> done) -> asio::awaitable<void> {
          co_await std::move(watch);
          *done = true;
        }(std::move(watching), watch_done_),
        asio::detached);
    co_return bulwark::ok();
  }

  /// Stops the watch, the reconciler, the replayer, the bus and the flow (a last snapshot).
  asio::awaitable<void> stop() {
    *watch_stop_ = true;
    // The watch ends at its next period; its frame waits on the clock until then.
    for (int i = 0; i < 1000 && !*watch_done_; ++i) co_await opts_.clock.wait_for(std::chrono::milliseconds(10));
    co_await reconciler_.stop();
    co_await replayer_.stop();
    bus_stopped_ = true;
    co_await bus_.stop();
    auto stopped = co_await flow_.stop();
    if (!stopped && opts_.log) opts_.log("snapshot: " + stopped.error().message());
  }

  /// The database fails every call with errc::unavailable (true) or answers again (false).
  void set_database_down(bool down) {
    if (down)
      database_.faults().fail(bulwark::testing::op::every, bulwark::errc::unavailable);
    else
      database_.faults().clear(bulwark::testing::op::every);
  }

  cms_context& cms() noexcept { return cms_; }
  crs_context& crs() noexcept { return crs_; }
  flow_type& flow() noexcept { return flow_; }
  replayer_type& replayer() noexcept { return replayer_; }
  cms_reconciler& reconciler() noexcept { return reconciler_; }
  database_type& database() noexcept { return database_; }
  bulwark::memory::repository& outage_log() noexcept { return outage_log_; }
  bulwark::memory::cache& cache() noexcept { return cache_; }
  bulwark::memory::repository& documents() noexcept { return documents_; }
  std::shared_ptr<bulwark::metrics::registry> cms_metrics() const { return cms_metrics_; }
  std::shared_ptr<bulwark::metrics::registry> crs_metrics() const { return crs_metrics_; }

private:
  static bulwark::memory::event_bus::options bus_options(std::shared_ptr<bulwark::metrics::registry> m,
                                                         bulwark::clock clock) {
    bulwark::memory::event_bus::options o;
    o.metrics = std::move(m); // consumer lag: CRS's consumer group
    o.clock = std::move(clock);
    o.drain_timeout = std::chrono::seconds(2);
    return o;
  }

  bulwark::flows::retry_replayer_options crs_replayer_options() {
    auto o = replayer_options(opts_.crs, crs_metrics_, "memory", opts_.clock);
    o.on_recovery = [this](const bulwark::flows::outage_window&) -> bulwark::task<void> {
      reconciler_.request();
      auto pruning = prune_downtime_log(outage_log_, std::string(outage_log_prefix), opts_.crs.downtime_log_retention);
      BOOST_OUTCOME_CO_TRY(co_await std::move(pruning));
      co_return bulwark::ok();
    };
    return o;
  }

  asio::any_io_executor ex_;
  options opts_;
  std::shared_ptr<bulwark::metrics::registry> cms_metrics_, crs_metrics_;
  bulwark::memory::repository documents_;
  database_type database_;
  bulwark::memory::cache cache_;
  bulwark::memory::event_bus bus_;
  bulwark::memory::repository outage_log_;
  flow_type flow_;
  write_through_store<flow_type> store_;
  replayer_type replayer_;
  cms_reconciler reconciler_;
  std::shared_ptr<std::atomic<bool>> watch_stop_ = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<std::atomic<bool>> watch_done_ = std::make_shared<std::atomic<bool>>(true);
  std::atomic<bool> bus_stopped_{false};
  cms_context cms_;
  crs_context crs_;
};

} // namespace channel_metadata
