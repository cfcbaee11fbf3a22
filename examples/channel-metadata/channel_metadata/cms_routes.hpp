#pragma once
// The channel-metadata-store's routes (contract.md, "CMS"), over a document_store, health
// probes and the calls to CRS; plain code, so the tests drive a router built by add_cms_routes
// in process. main() only wires what it is given.
//
// Beyond the contract: GET /admin/ and /admin/<file> (the embedded admin page), GET
// /admin/crs/get-downtime-logs and /admin/crs/private/healthcheck (CRS's answers passed
// through; CRS unreachable: 502 CMS-0010), and with --fault-control POST
// /private/faults/database {"down":true|false}.

#include <channel_metadata/admin.hpp>
#include <channel_metadata/auth.hpp>
#include <channel_metadata/config.hpp>
#include <channel_metadata/document.hpp>
#include <channel_metadata/errors.hpp>
#include <channel_metadata/health.hpp>
#include <channel_metadata/store.hpp>
#include <channel_metadata/texts.hpp>

#include <bulwark/http/message.hpp>
#include <bulwark/http/metrics_handler.hpp>
#include <bulwark/http/middleware.hpp>
#include <bulwark/http/responses.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/resilience/timeout.hpp>

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#ifndef CHANNEL_METADATA_VERSION
#define CHANNEL_METADATA_VERSION "0.1.0"
#endif

namespace channel_metadata {

namespace text {
/// Ours: CMS-0010, the admin page's proxy could not reach CRS (502); followed by the reason.
inline constexpr std::string_view crs_unavailable_code = "CMS-0010";
inline constexpr std::string_view crs_unavailable = "cache-retry-service unavailable: ";
} // namespace text

/// Response headers of a GET served from a last-known-good copy while the database is down
/// (with `Age`), and of a document accepted pending and not yet known durable.
inline constexpr std::string_view stale_header = "X-Stale";
inline constexpr std::string_view pending_header = "X-Write-Pending";
inline constexpr std::string_view stale_warning = "110 - \"Response is Stale\"";

/// Sends a GET to CRS: `target` ("/get-downtime-logs") and the request id; CRS's answer or the
/// transport error.
using crs_call = std::function<bulwark::task<bulwark::http::response>(std::string target, std::string request_id)>;

/// Everything CMS's routes use.
struct cms_context {
  config settings = defaults(service::cms);
  document_store* store = nullptr;
  /// "database", "cache", "bus" (health.hpp).
  std::vector<health_probe> probes;
  std::shared_ptr<bulwark::metrics::registry> metrics;
  /// Set only with --fault-control on the memory backend: makes the database fail (true) or
  /// answer again (false).
  std::function<void(bool down)> database_fault;
  /// CRS, for the admin page's proxy routes; empty: they answer 502.
  crs_call crs;
  std::span<const admin_asset> admin;
  /// One line per request (JSON, with its request id); empty: no access log.
  std::function<void(const std::string&)> access_log;
};

/// CMS's guard: /api/... (contract), and our /admin/crs/... and /private/faults/... .
inline std::optional<unauthorized_shape> cms_service_guard(const bulwark::http::request& req) {
  const auto p = req.path();
  if (p.starts_with("/api/") || p.starts_with("/admin/crs/") || p.starts_with("/private/faults/"))
    return unauthorized_shape::text;
  return std::nullopt;
}

namespace detail {

inline bulwark::deadline request_deadline(const config& c) { return bulwark::deadline::after(c.request_timeout); }

inline std::string request_id_of(const bulwark::http::request& req) {
  return std::string(req.headers.value_or("request-id", ""));
}

inline bulwark::http::response crs_unavailable(std::string_view reason) {
  return bulwark::http::response(
      502, "application/json",
      nlohmann::ordered_json{{"errorCode", text::crs_unavailable_code},
                             {"message", std::string(text::crs_unavailable) + std::string(reason)}}
          .dump());
}

} // namespace detail

/// 502 CMS-0010 `cache-retry-service unavailable: <reason>`.
inline bulwark::http::response crs_unavailable(std::string_view reason) { return detail::crs_unavailable(reason); }

/// Adds CMS's middleware (request id, access log, auth) and every route to `routes`. `ctx` must
/// outlive the router.
inline void add_cms_routes(bulwark::http::router& routes, cms_context& ctx) {
  namespace http = bulwark::http;
  using bulwark::task;
  // Outermost: every answer, a 401 or a 404 too, carries the request id, and the log has it.
  routes.use(http::request_id());
  if (ctx.access_log) routes.use(http::access_log(ctx.access_log));
  routes.use(
      contract_basic_auth({{ctx.settings.user, ctx.settings.password}}, "channel-metadata-store", cms_service_guard));

  // Before "{countryCode}": routes are tried in the order they were added.
  routes.post("/api/channel-metadata/force-update-all", [&ctx](http::request&) -> task<http::response> {
    auto report = co_await ctx.store->reconcile(detail::request_deadline(ctx.settings));
    if (!report) co_return force_update_failed(report.error().message());
    const auto& r = report.value();
    if (r.failed > 0)
      co_return force_update_failed(std::to_string(r.failed) + " of " +
                                    std::to_string(r.failed + r.written + r.superseded) +
                                    " pending writes could not be written (the database did not take them)");
    co_return http::text(200, std::string(text::force_update_done));
  });

  routes.post("/api/channel-metadata/{countryCode}", [&ctx](http::request& req) -> task<http::response> {
    auto doc = parse_request(*req.param("countryCode"), req.body, {ctx.settings.max_body_bytes});
    if (!doc) co_return doc.error().response();
    auto written = co_await ctx.store->write(doc.value().country_code, serialize(doc.value()),
                                             detail::request_deadline(ctx.settings), detail::request_id_of(req));
    if (!written) co_return from_bulwark(written.error(), operation::write).response();
    if (written.value().outcome == bulwark::flows::write_state::pending)
      co_return http::text(202, std::string(text::accepted_pending));
    co_return http::text(200, std::string(text::posted));
  });

  routes.get("/api/channel-metadata/{countryCode}", [&ctx](http::request& req) -> task<http::response> {
    auto key = parse_country_code(*req.param("countryCode"));
    if (!key) co_return key.error().response();
    auto got = co_await ctx.store->read(key.value(), detail::request_deadline(ctx.settings));
    if (!got) co_return from_bulwark(got.error(), operation::read).response();
    if (!got.value()) co_return errors::not_found().response();
    const auto& found = *got.value();
    http::response r(200, "application/json", found.value);
    if (found.stale) {
      r.headers.set(stale_header, "true");
      r.headers.set("Warning", std::string(stale_warning));
      r.headers.set("Age", std::to_string(std::chrono::duration_cast<std::chrono::seconds>(found.age).count()));
    }
    if (found.pending) r.headers.set(pending_header, "true");
    co_return r;
  });

  routes.get("/private/status",
             [](http::request&) -> task<http::response> { co_return http::text(200, std::string(text::status_ok)); });

  routes.get("/private/healthcheck", [&ctx](http::request&) -> task<http::response> {
    auto states = co_await probe_all(ctx.probes, ctx.settings.database_timeout);
    co_return health_response(cms_can_serve(states), states, {"database", "cache", "bus"}, ctx.store->pending());
  });

  routes.get("/private/info", [&ctx](http::request&) -> task<http::response> {
    nlohmann::ordered_json info{{"app", {{"name", text::cms_app_name}, {"version", CHANNEL_METADATA_VERSION}}},
                                {"backend", to_string(ctx.settings.backend)}};
    co_return http::response(200, "application/json", info.dump());
  });

  if (ctx.metrics) {
    routes.get("/private/prometheus", http::metrics_handler(ctx.metrics));
    routes.get("/metrics", http::metrics_handler(ctx.metrics));
  }

  if (ctx.database_fault) {
    routes.post("/private/faults/database", [&ctx](http::request& req) -> task<http::response> {
      auto j = nlohmann::json::parse(req.body, nullptr, false);
      if (j.is_discarded()) co_return errors::malformed_json().response();
      if (!j.is_object() || j.size() != 1 || !j.contains("down") || !j["down"].is_boolean())
        co_return errors::field_mismatch().response();
      const bool down = j["down"].get<bool>();
      ctx.database_fault(down);
      co_return http::response(200, "application/json", nlohmann::ordered_json{{"database", {{"down", down}}}}.dump());
    });
  }

  auto proxy = [&ctx](std::string target) {
    return [&ctx, target = std::move(target)](http::request& req) -> task<http::response> {
      if (!ctx.crs) co_return crs_unavailable("no peer-url configured");
      auto answer = co_await ctx.crs(target, detail::request_id_of(req));
      if (!answer) co_return crs_unavailable(answer.error().message());
      // CRS's status and body as they are; its own request-id is replaced by this request's.
      http::response r(answer.value().status);
      r.body = std::move(answer.value().body);
      if (auto type = answer.value().headers.get("Content-Type")) r.headers.set("Content-Type", std::string(*type));
      co_return r;
    };
  };
  routes.get("/admin/crs/get-downtime-logs", proxy("/get-downtime-logs"));
  routes.get("/admin/crs/private/healthcheck", proxy("/private/healthcheck"));

  routes.get("/admin", [](http::request&) -> task<http::response> {
    http::response r(301);
    r.headers.set("Location", "/admin/");
    co_return r;
  });
  routes.get("/admin/", admin_files(ctx.admin));
  routes.get("/admin/{path...}", admin_files(ctx.admin));
}

} // namespace channel_metadata
