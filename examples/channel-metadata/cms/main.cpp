// channel-metadata-store (CMS): configuration -> backends -> write_through -> routes.
// With --backend memory (the default) it also runs the cache-retry-service in this process, on
// the same in-memory models (CRS's port: --crs-port), so the demo needs no servers.
//
//   channel-metadata-store [--backend memory|mysql+redis|mysql+hazelcast] [--port 8080] ...
//   channel-metadata-store --help

#include <channel_metadata/admin_assets.hpp>
#include <channel_metadata/cms_routes.hpp>
#include <channel_metadata/config.hpp>
#include <channel_metadata/crs_routes.hpp>
#include <channel_metadata/memory_mode.hpp>
#include <channel_metadata/peer.hpp>
#include <channel_metadata/runtime.hpp>

#include <bulwark/app.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/http/server.hpp>

#ifdef CHANNEL_METADATA_REAL_BACKENDS
#include <channel_metadata/real_mode.hpp>
#endif

#include <atomic>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace cm = channel_metadata;
namespace http = bulwark::http;

namespace {

int run_memory(cm::config cms, bulwark::app::stop_signals& signals) {
  auto log = cm::line_log("channel-metadata-store");
  // The embedded CRS: CRS_* variables (CRS_USER, CRS_PASSWORD, CRS_RETRY_TOPIC, ...) as for the
  // cache-retry-service itself; its port and its way to CMS come from this process.
  auto crs_loaded = cm::embedded_crs_config(cms, cm::process_environment());
  if (!crs_loaded) {
    std::cerr << "channel-metadata-store: bad CRS_* configuration: " << crs_loaded.error().detail() << "\n";
    return 2;
  }
  cm::config crs = std::move(crs_loaded).value();
  // Each service calls the other on this process's ports, known once the servers listen (a
  // port 0 is the kernel's choice).
  const std::string host = cm::embedded_peer_host(cms);
  auto cms_port = std::make_shared<std::atomic<std::uint16_t>>(cms.port);
  auto crs_port = std::make_shared<std::atomic<std::uint16_t>>(crs.port);
  cms.peer_url = "http://" + host + ":" + std::to_string(crs.port);
  crs.peer_url = "http://" + host + ":" + std::to_string(cms.port);
  // The peer lives in the call's coroutine frame (peer::call is a member coroutine).
  auto send = [](cm::peer p, std::string method, std::string target, std::string id) -> bulwark::task<http::response> {
    co_return co_await p.call(std::move(method), std::move(target), {}, std::move(id));
  };
  auto peer_at = [host](const std::atomic<std::uint16_t>& port, const cm::config& from) {
    return cm::peer{
        {host, port.load()}, "", cm::basic_authorization(from.peer_user, from.peer_password), from.request_timeout};
  };

  cm::background_thread background;
  cm::memory_deployment::options o;
  o.cms = cms;
  o.crs = crs;
  o.log = log;
  o.call_cms = [=]() { return send(peer_at(*cms_port, crs), "POST", "/api/channel-metadata/force-update-all", {}); };
  o.call_crs = [=](std::string target, std::string id) {
    return send(peer_at(*crs_port, cms), "GET", std::move(target), std::move(id));
  };
  cm::memory_deployment deployment(background.executor(), std::move(o));
  if (auto started = bulwark::app::block_on(background.executor(), deployment.start()); !started) {
    std::cerr << "channel-metadata-store: " << started.error().message() << "\n";
    return 1;
  }

  http::router cms_routes, crs_routes;
  deployment.cms().admin = cm::embedded_admin_assets();
  cm::add_cms_routes(cms_routes, deployment.cms());
  cm::add_crs_routes(crs_routes, deployment.crs());
  http::server cms_server(cm::server_options_for(cms, cms.port, deployment.cms_metrics()), cms_routes.as_handler());
  http::server crs_server(cm::server_options_for(crs, crs.port, deployment.crs_metrics()), crs_routes.as_handler());
  for (auto* s : {&cms_server, &crs_server}) {
    if (auto started = s->start(); !started) {
      std::cerr << "channel-metadata-store: " << started.error().message() << "\n";
      bulwark::app::block_on(background.executor(), deployment.stop());
      return 1;
    }
  }
  cms_port->store(cms_server.port());
  crs_port->store(crs_server.port());
  log("channel-metadata-store listening on http://" + cms.listen_address + ":" + std::to_string(cms_server.port()) +
      " (backend memory: in-memory database, cache and bus" +
      (cms.fault_control ? ", fault control on: POST /private/faults/database" : "") + ")");
  log("cache-retry-service listening on http://" + crs.listen_address + ":" + std::to_string(crs_server.port()) +
      " (in this process, same memory models)");
  log("admin page: http://" + host + ":" + std::to_string(cms_server.port()) + "/admin/ (user " + cms.user + ")");

  signals.wait();
  log("stopping");
  cms_server.stop(std::chrono::seconds(5));
  crs_server.stop(std::chrono::seconds(5));
  bulwark::app::block_on(background.executor(), deployment.stop());
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  bulwark::app::stop_signals signals; // before any thread starts: only signals.wait() sees them
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  auto startup = cm::resolve_startup(cm::service::cms, args, cm::process_environment(), std::cout, std::cerr);
  if (!startup.settings) return startup.exit_code;
  cm::config c = std::move(*startup.settings);
  if (c.backend == cm::backend_kind::memory) return run_memory(std::move(c), signals);
#ifdef CHANNEL_METADATA_REAL_BACKENDS
  return cm::run_cms_real(std::move(c), cm::embedded_admin_assets(), signals);
#else
  std::cerr << "channel-metadata-store: backend " << cm::to_string(c.backend)
            << " is not built in (this tree was configured without the MySQL, Redis, Hazelcast and Kafka adapters)\n";
  return 2;
#endif
}
