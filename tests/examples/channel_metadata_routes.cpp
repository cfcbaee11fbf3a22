// The channel-metadata services' routes, in process on the memory backends (memory_mode.hpp):
// every row of the contract, bad inputs, the request id, the healthcheck while the database is
// down, a write accepted pending and then replayed by CRS until everything converges, the
// downtime log, the admin page and CMS's proxy of CRS. The routers are called directly (no
// sockets) and all time is a manual clock the tests move, except the one test of the peer
// client, which talks to a server on a loopback port.

#include <channel_metadata/admin.hpp>
#include <channel_metadata/cms_routes.hpp>
#include <channel_metadata/config.hpp>
#include <channel_metadata/crs_routes.hpp>
#include <channel_metadata/deferred.hpp>
#include <channel_metadata/health.hpp>
#include <channel_metadata/memory_mode.hpp>
#include <channel_metadata/peer.hpp>
#include <channel_metadata/reconciler.hpp>
#include <channel_metadata/texts.hpp>

#include <bulwark/flows/frame.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/http/server.hpp>
#include <bulwark/memory/repository.hpp>

#include "support/run.hpp"

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace cm = channel_metadata;
namespace http = bulwark::http;
using namespace std::literals;

namespace {

const std::string gb_body =
    R"({"countryCode":"GB","metadata":[{"name":"AT One","language":"English","type":"News"}],"product":"exampleProduct"})";

std::string body_for(std::string_view code, std::string_view name) {
  return R"({"countryCode":")" + std::string(code) + R"(","metadata":[{"name":")" + std::string(name) +
         R"(","language":"English","type":"News"}],"product":"p"})";
}

// Routes one request through `r`; the request lives in the coroutine's frame.
bulwark::task<http::response> route(http::router& r, http::request req) { co_return co_await r(req); }

http::request make(std::string method, std::string target, std::string body = {},
                   std::string authorization = cm::basic_authorization("cms", "cmspass")) {
  auto req = http::make_request(std::move(method), std::move(target), std::move(body));
  if (!authorization.empty()) req.headers.set("Authorization", std::move(authorization));
  return req;
}

const std::string crs_auth = cm::basic_authorization("crs", "crspass");

// Both services on the memory backends, their routers, one io_context driven by the test, and
// a manual clock for everything that waits.
class channel_metadata_services : public ::testing::Test {
protected:
  void SetUp() override { build({}); }

  void build(std::function<void(cm::memory_deployment::options&)> tweak) {
    cms_routes_ = std::make_unique<http::router>();
    crs_routes_ = std::make_unique<http::router>();
    cm::memory_deployment::options o;
    o.cms.fault_control = true;
    o.crs.reconcile_retry_delay = 2s;
    o.clock = clock_;
    o.watch_period = 100ms;
    o.call_cms = [this]() { return route(*cms_routes_, make("POST", "/api/channel-metadata/force-update-all")); };
    o.call_crs = [this](std::string target, std::string id) {
      auto req = make("GET", std::move(target), {}, crs_auth);
      req.headers.set("request-id", std::move(id));
      return route(*crs_routes_, std::move(req));
    };
    o.log = [this](const std::string& line) { log_.push_back(line); };
    if (tweak) tweak(o);
    services_ = std::make_unique<cm::memory_deployment>(ctx_.get_executor(), std::move(o));
    cm::add_cms_routes(*cms_routes_, services_->cms());
    cm::add_crs_routes(*crs_routes_, services_->crs());
    auto started = run(services_->start());
    ASSERT_TRUE(started.has_value()) << started.error();
  }

  // The database back first, so that no replayer handler waits for it; then the stop, with the
  // manual clock moved along (the bus's drain period runs on it), bounded.
  void TearDown() override {
    if (!services_) return;
    services_->set_database_down(false);
    bool stopped = false;
    asio::co_spawn(
        ctx_,
        [](cm::memory_deployment& d, bool& done) -> asio::awaitable<void> {
          co_await d.stop();
          done = true;
        }(*services_, stopped),
        asio::detached);
    EXPECT_TRUE(drive_until([&] { return stopped; }, 600, 100ms)) << "the services did not stop";
    services_.reset();
  }

  // Builds the services again with other options.
  void rebuild(std::function<void(cm::memory_deployment::options&)> tweak) {
    TearDown();
    build(std::move(tweak));
  }

  template <class T> T run(asio::awaitable<T> op) { return bulwark::test::run(ctx_, std::move(op), 20s); }

  http::response cms(http::request req) {
    auto r = run(route(*cms_routes_, std::move(req)));
    EXPECT_TRUE(r.has_value()) << r.error();
    return r ? std::move(r).value() : http::response(0);
  }
  http::response crs(http::request req) {
    auto r = run(route(*crs_routes_, std::move(req)));
    EXPECT_TRUE(r.has_value()) << r.error();
    return r ? std::move(r).value() : http::response(0);
  }
  http::response post(std::string_view code, std::string body) {
    return cms(make("POST", "/api/channel-metadata/" + std::string(code), std::move(body)));
  }
  http::response get(std::string_view code) { return cms(make("GET", "/api/channel-metadata/" + std::string(code))); }

  // Runs what is ready, then moves the clock by `step`, at most `steps` times, until `done`.
  bool drive_until(const std::function<bool()>& done, int steps = 400, std::chrono::milliseconds step = 50ms) {
    for (int i = 0; i < steps; ++i) {
      for (int k = 0; k < 20 && ctx_.poll() > 0; ++k) {
      }
      if (done()) return true;
      clock_.advance(step);
    }
    ctx_.poll();
    return done();
  }

  nlohmann::json health(http::response& r) { return nlohmann::json::parse(r.body); }

  asio::io_context ctx_;
  bulwark::clock clock_ = bulwark::clock::manual();
  std::unique_ptr<http::router> cms_routes_;
  std::unique_ptr<http::router> crs_routes_;
  std::vector<std::string> log_;
  std::unique_ptr<cm::memory_deployment> services_;
};

// --- CMS: the contract's rows ---

TEST_F(channel_metadata_services, a_durable_write_is_200_data_successfully_posted_and_reads_back_canonical) {
  auto posted = post("GB", gb_body);
  EXPECT_EQ(posted.status, 200);
  EXPECT_EQ(posted.body, "Data successfully posted");
  auto got = get("gb"); // the path's code is upper-cased: the key
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.body, gb_body);
  EXPECT_EQ(got.headers.value_or("Content-Type", ""), "application/json");
  EXPECT_FALSE(got.headers.contains(cm::stale_header));
  EXPECT_FALSE(got.headers.contains(cm::pending_header));
  // Durable: the database itself holds it.
  auto stored = run(services_->documents().get("GB"));
  ASSERT_TRUE(stored.has_value() && stored.value().has_value());
}

TEST_F(channel_metadata_services, a_second_write_upserts_instead_of_adding_a_row) {
  ASSERT_EQ(post("GB", gb_body).status, 200);
  ASSERT_EQ(post("GB", body_for("GB", "BBC One")).status, 200);
  EXPECT_EQ(get("GB").body, body_for("GB", "BBC One"));
  auto page = run(services_->documents().scan("", "", 10));
  ASSERT_TRUE(page.has_value());
  EXPECT_EQ(page.value().entries.size(), 1u);
}

TEST_F(channel_metadata_services, an_unknown_country_is_404_cms_0003) {
  auto r = get("FR");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, R"({"errorCode":"CMS-0003","message":"Failed to find item"})");
}

TEST_F(channel_metadata_services, bad_inputs_get_the_contracts_codes) {
  auto bad_code = post("G1", gb_body);
  EXPECT_EQ(bad_code.status, 400);
  EXPECT_EQ(nlohmann::json::parse(bad_code.body)["errorCode"], "CMS-0004");
  auto mismatch = post("FR", gb_body);
  EXPECT_EQ(mismatch.status, 400);
  EXPECT_EQ(nlohmann::json::parse(mismatch.body)["errorCode"], "CMS-0004");
  auto malformed = post("GB", "{not json");
  EXPECT_EQ(malformed.status, 400);
  EXPECT_EQ(malformed.body, R"({"errorCode":"CMS-0007","message":"Malformed JSON request"})");
  auto unknown_field = post("GB", R"({"countryCode":"GB","metadata":[],"product":"p","extra":1})");
  EXPECT_EQ(unknown_field.body,
            R"({"errorCode":"CMS-0007","message":"JSON field mismatch or invalid data structure"})");
  auto blank = post("GB", R"({"countryCode":"GB","metadata":[],"product":" "})");
  EXPECT_EQ(blank.status, 400);
  const auto j = nlohmann::json::parse(blank.body);
  EXPECT_EQ(j["errorCode"], "CMS-0001");
  EXPECT_EQ(j["details"].size(), 2u) << blank.body; // empty metadata, blank product
  auto too_large = post("GB", std::string(70 * 1024, ' '));
  EXPECT_EQ(too_large.status, 400);
  EXPECT_EQ(nlohmann::json::parse(too_large.body)["errorCode"], "CMS-0004");
  auto bad_get = get("GBR");
  EXPECT_EQ(bad_get.status, 400);
  EXPECT_EQ(nlohmann::json::parse(bad_get.body)["errorCode"], "CMS-0004");
  // Nothing of it was stored.
  auto page = run(services_->documents().scan("", "", 10));
  ASSERT_TRUE(page.has_value());
  EXPECT_TRUE(page.value().entries.empty());
}

TEST_F(channel_metadata_services, every_api_route_wants_the_cms_credentials) {
  for (auto auth : {std::string(), cm::basic_authorization("cms", "wrong"), crs_auth}) {
    auto r = cms(make("POST", "/api/channel-metadata/GB", gb_body, auth));
    EXPECT_EQ(r.status, 401);
    EXPECT_EQ(r.body, "Invalid or missing credentials");
    EXPECT_EQ(cms(make("GET", "/api/channel-metadata/GB", {}, auth)).status, 401);
    EXPECT_EQ(cms(make("POST", "/api/channel-metadata/force-update-all", {}, auth)).status, 401);
    EXPECT_EQ(cms(make("GET", "/admin/crs/get-downtime-logs", {}, auth)).status, 401);
    EXPECT_EQ(cms(make("POST", "/private/faults/database", R"({"down":true})", auth)).status, 401);
  }
  // The private routes and the page itself are open.
  EXPECT_EQ(cms(make("GET", "/private/status", {}, "")).body, "OK");
  EXPECT_EQ(cms(make("GET", "/private/healthcheck", {}, "")).status, 200);
  EXPECT_EQ(cms(make("GET", "/private/info", {}, "")).status, 200);
  EXPECT_EQ(cms(make("GET", "/private/prometheus", {}, "")).status, 200);
}

TEST_F(channel_metadata_services, every_answer_carries_a_request_id_the_callers_uuid_or_a_fresh_v4) {
  const std::string mine = "123e4567-e89b-12d3-a456-426614174000";
  auto req = make("GET", "/api/channel-metadata/GB");
  req.headers.set("request-id", mine);
  EXPECT_EQ(cms(std::move(req)).headers.value_or("request-id", ""), mine);
  for (auto* target : {"/api/channel-metadata/GB", "/private/status", "/no/such/route"}) {
    auto bad = make("GET", target, {}, "");
    bad.headers.set("request-id", "not-a-uuid");
    auto r = cms(std::move(bad));
    const std::string id(r.headers.value_or("request-id", ""));
    ASSERT_EQ(id.size(), 36u) << target;
    EXPECT_EQ(id[14], '4') << id; // version 4
    EXPECT_NE(id, "not-a-uuid");
  }
  auto crs_answer = crs(make("GET", "/private/status", {}, ""));
  EXPECT_EQ(crs_answer.headers.value_or("request-id", "").size(), 36u);
}

TEST_F(channel_metadata_services, the_write_carries_the_request_id_into_the_stored_frame) {
  const std::string id = "0b5f2a4e-6f2e-4c1d-9a57-2f1f0c9b8e11";
  auto req = make("POST", "/api/channel-metadata/GB", gb_body);
  req.headers.set("request-id", id);
  ASSERT_EQ(cms(std::move(req)).status, 200);
  auto stored = run(services_->documents().get("GB"));
  ASSERT_TRUE(stored.has_value() && stored.value().has_value());
  auto f = bulwark::flows::decode(stored.value()->value);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f.value().request_id, id);
  EXPECT_EQ(f.value().value, gb_body);
}

TEST_F(channel_metadata_services, info_status_and_metrics) {
  auto info = nlohmann::json::parse(cms(make("GET", "/private/info")).body);
  EXPECT_EQ(info["app"]["name"], "Channel Metadata Store");
  EXPECT_FALSE(info["app"]["version"].get<std::string>().empty());
  EXPECT_EQ(nlohmann::json::parse(crs(make("GET", "/private/info")).body)["app"]["name"], "cache-retry");
  ASSERT_EQ(post("GB", gb_body).status, 200);
  get("GB");
  for (auto* path : {"/private/prometheus", "/metrics"}) {
    auto m = cms(make("GET", path));
    EXPECT_EQ(m.status, 200);
    EXPECT_NE(m.headers.value_or("Content-Type", "").find("version=0.0.4"), std::string_view::npos);
    EXPECT_NE(m.body.find("bulwark_write_through_cache_hits_total{name=\"channel_metadata\"} 1"), std::string::npos)
        << m.body;
    EXPECT_NE(m.body.find("bulwark_circuit_breaker_state"), std::string::npos);
  }
  auto crs_metrics = crs(make("GET", "/private/prometheus")).body;
  EXPECT_NE(crs_metrics.find("bulwark_replayer_messages_total"), std::string::npos);
  EXPECT_NE(crs_metrics.find("bulwark_bus_consumer_lag_messages"), std::string::npos);
}

// --- the database down ---

TEST_F(channel_metadata_services, with_the_database_down_a_write_is_202_pending_and_read_back_flagged_pending) {
  services_->set_database_down(true);
  auto posted = post("GB", gb_body);
  EXPECT_EQ(posted.status, 202);
  EXPECT_EQ(posted.body, cm::text::accepted_pending);
  auto got = get("GB");
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.body, gb_body);
  EXPECT_EQ(got.headers.value_or(cm::pending_header, ""), "true");
  // Not in the database: in the cache and on the retry topic.
  auto stored = run(services_->documents().get("GB"));
  ASSERT_TRUE(stored.has_value());
  EXPECT_FALSE(stored.value().has_value());
}

TEST_F(channel_metadata_services, with_the_database_down_a_get_serves_the_last_known_good_flagged_stale) {
  ASSERT_EQ(post("GB", gb_body).status, 200);
  // The cache lost it (evicted, expired or restarted): only this process's copy is left.
  ASSERT_TRUE(run(services_->cache().erase("GB")).has_value());
  services_->set_database_down(true);
  auto got = get("GB");
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.body, gb_body);
  EXPECT_EQ(got.headers.value_or(cm::stale_header, ""), "true");
  EXPECT_EQ(got.headers.value_or("Warning", ""), cm::stale_warning);
  EXPECT_TRUE(got.headers.contains("Age"));
  // A key nobody has: not a 404 (the database could not be asked) but the contract's 500.
  auto unknown = get("FR");
  EXPECT_EQ(unknown.status, 500);
  EXPECT_EQ(nlohmann::json::parse(unknown.body)["errorCode"], "CMS-0008");
}

TEST_F(channel_metadata_services, the_healthcheck_says_which_dependency_is_down_and_stays_200_while_cms_can_serve) {
  auto up = cms(make("GET", "/private/healthcheck", {}, ""));
  EXPECT_EQ(up.status, 200);
  EXPECT_EQ(up.body, R"({"status":"UP","components":{"database":{"status":"UP"},"cache":{"status":"UP"},)"
                     R"("bus":{"status":"UP"},"writes":{"status":"UP","details":{"pending":0}}}})");
  services_->set_database_down(true);
  ASSERT_EQ(post("GB", gb_body).status, 202);
  auto down = cms(make("GET", "/private/healthcheck", {}, ""));
  EXPECT_EQ(down.status, 200);
  EXPECT_EQ(down.body, R"({"status":"UP","components":{"database":{"status":"DOWN"},"cache":{"status":"UP"},)"
                       R"("bus":{"status":"UP"},"writes":{"status":"UP","details":{"pending":1}}}})");
  auto crs_health = crs(make("GET", "/private/healthcheck", {}, ""));
  EXPECT_EQ(crs_health.status, 200);
  EXPECT_EQ(crs_health.body, R"({"status":"UP","components":{"database":{"status":"DOWN"},)"
                             R"("outageLog":{"status":"UP"},"bus":{"status":"UP"}}})");
}

TEST(channel_metadata_health, cms_is_down_only_when_neither_the_database_nor_cache_and_bus_can_serve) {
  EXPECT_TRUE(cm::cms_can_serve({{"database", true}, {"cache", false}, {"bus", false}}));
  EXPECT_TRUE(cm::cms_can_serve({{"database", false}, {"cache", true}, {"bus", true}}));
  EXPECT_FALSE(cm::cms_can_serve({{"database", false}, {"cache", true}, {"bus", false}}));
  EXPECT_FALSE(cm::cms_can_serve({{"database", false}, {"cache", false}, {"bus", true}}));
  EXPECT_FALSE(cm::cms_can_serve({}));
  EXPECT_TRUE(cm::crs_can_serve({{"database", false}, {"outageLog", false}, {"bus", true}}));
  EXPECT_FALSE(cm::crs_can_serve({{"database", true}, {"outageLog", true}, {"bus", false}}));
  auto r = cm::health_response(false, {{"database", false}, {"cache", false}, {"bus", true}},
                               {"database", "cache", "bus"}, 4);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, R"({"status":"DOWN","components":{"database":{"status":"DOWN"},"cache":{"status":"DOWN"},)"
                    R"("bus":{"status":"UP"},"writes":{"status":"UP","details":{"pending":4}}}})");
}

TEST_F(channel_metadata_services, a_probe_that_hangs_counts_as_down_within_the_database_timeout) {
  services_->database().faults().hang(bulwark::testing::op::get);
  std::optional<bulwark::result<http::response>> answer;
  bulwark::test::spawn_into(ctx_, route(*cms_routes_, make("GET", "/private/healthcheck", {}, "")), &answer);
  // The probe's bound is the real clock's (the database timeout, 1 s): run until it answers.
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!answer && std::chrono::steady_clock::now() < until) ctx_.run_one_for(10ms);
  services_->database().faults().clear(bulwark::testing::op::get);
  ASSERT_TRUE(answer && answer->has_value());
  EXPECT_NE(answer->value().body.find(R"("database":{"status":"DOWN"})"), std::string::npos) << answer->value().body;
}

TEST_F(channel_metadata_services, force_update_all_writes_the_pending_entries_once_the_database_is_back) {
  services_->set_database_down(true);
  ASSERT_EQ(post("GB", gb_body).status, 202);
  auto refused = cms(make("POST", "/api/channel-metadata/force-update-all"));
  EXPECT_EQ(refused.status, 500);
  EXPECT_TRUE(refused.body.starts_with("Failed to update database: ")) << refused.body;
  EXPECT_EQ(services_->flow().pending_count(), 1u);
  services_->set_database_down(false);
  clock_.advance(6s); // past the breaker's open period
  auto done = cms(make("POST", "/api/channel-metadata/force-update-all"));
  EXPECT_EQ(done.status, 200);
  EXPECT_EQ(done.body, "Successfully updated the database with all cached metadata.");
  EXPECT_EQ(services_->flow().pending_count(), 0u);
  auto stored = run(services_->documents().get("GB"));
  ASSERT_TRUE(stored.has_value() && stored.value().has_value());
  EXPECT_EQ(bulwark::flows::decode(stored.value()->value).value().value, gb_body);
}

TEST_F(channel_metadata_services, a_pending_write_is_replayed_by_crs_and_everything_converges) {
  ASSERT_EQ(post("FR", body_for("FR", "before")).status, 200);
  services_->set_database_down(true);
  ASSERT_EQ(post("GB", gb_body).status, 202);
  ASSERT_EQ(post("FR", body_for("FR", "during")).status, 202);
  // CRS got the retry messages and waits for the database: nothing dead-lettered, nothing lost.
  ASSERT_TRUE(drive_until([&] { return services_->replayer().stats().waiting >= 1; }));
  EXPECT_EQ(services_->replayer().stats().dead_lettered, 0u);
  ASSERT_TRUE(drive_until([&] { return services_->replayer().stats().outage_windows == 1; }));

  services_->set_database_down(false);
  ASSERT_TRUE(drive_until([&] {
    const auto s = services_->replayer().stats();
    return s.replayed + s.superseded + s.duplicates == 2 && services_->flow().pending_count() == 0;
  })) << "replayed "
      << services_->replayer().stats().replayed << ", pending " << services_->flow().pending_count();
  // CRS asked CMS to reconcile after the replays, and CMS's pending index emptied.
  EXPECT_GE(services_->reconciler().stats().succeeded, 1u);
  for (const auto& [code, body] : {std::pair{"GB"s, gb_body}, std::pair{"FR"s, body_for("FR", "during")}}) {
    auto stored = run(services_->documents().get(code));
    ASSERT_TRUE(stored.has_value() && stored.value().has_value()) << code;
    EXPECT_EQ(bulwark::flows::decode(stored.value()->value).value().value, body) << code;
    auto got = get(code);
    EXPECT_EQ(got.body, body);
    EXPECT_FALSE(got.headers.contains(cm::pending_header)) << code;
  }
  // The outage is in the downtime log, newest last, also through CMS's proxy for the page.
  auto logs = crs(make("GET", "/get-downtime-logs", {}, crs_auth));
  EXPECT_EQ(logs.status, 200);
  auto entries = nlohmann::json::parse(logs.body);
  ASSERT_EQ(entries.size(), 1u) << logs.body;
  EXPECT_EQ(entries[0]["id"], 1);
  EXPECT_EQ(entries[0]["downtimeTimestamp"].get<std::string>().size(), 19u);
  auto proxied = cms(make("GET", "/admin/crs/get-downtime-logs"));
  EXPECT_EQ(proxied.status, 200);
  EXPECT_EQ(proxied.body, logs.body);
  auto health = nlohmann::json::parse(cms(make("GET", "/private/healthcheck", {}, "")).body);
  EXPECT_EQ(health["components"]["writes"]["details"]["pending"], 0);
}

// --- CRS ---

TEST_F(channel_metadata_services, crs_answers_its_two_401_shapes) {
  for (auto auth : {std::string(), cm::basic_authorization("crs", "nope")}) {
    auto trigger = crs(make("GET", "/trigger-cache-retry", {}, auth));
    EXPECT_EQ(trigger.status, 401);
    EXPECT_EQ(trigger.body, R"({"statusCode":"401","message":"Invalid or missing credentials"})");
    auto logs = crs(make("GET", "/get-downtime-logs", {}, auth));
    EXPECT_EQ(logs.status, 401);
    EXPECT_EQ(logs.body, "Invalid or missing credentials");
  }
  EXPECT_EQ(services_->reconciler().stats().requested, 0u);
}

TEST_F(channel_metadata_services, trigger_cache_retry_answers_crs_1000_then_calls_force_update_all) {
  auto r = crs(make("GET", "/trigger-cache-retry", {}, crs_auth));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"statusCode":"CRS-1000","message":"Triggering a DB-write retry for channel-metadata-store"})");
  ASSERT_TRUE(drive_until([&] { return services_->reconciler().stats().succeeded == 1; }));
  EXPECT_EQ(services_->reconciler().stats().attempts, 1u);
}

TEST_F(channel_metadata_services, a_failed_force_update_all_is_retried_once_after_the_delay) {
  services_->set_database_down(true);
  ASSERT_EQ(post("GB", gb_body).status, 202); // CMS's force-update-all now answers 500
  ASSERT_EQ(crs(make("GET", "/trigger-cache-retry", {}, crs_auth)).status, 200);
  ASSERT_TRUE(drive_until([&] { return services_->reconciler().stats().attempts == 1; }, 10, 10ms));
  // Not before the delay (2 s here).
  drive_until([] { return false; }, 10, 100ms);
  EXPECT_EQ(services_->reconciler().stats().attempts, 1u);
  ASSERT_TRUE(drive_until([&] { return !services_->reconciler().active(); }, 40, 100ms));
  const auto s = services_->reconciler().stats();
  EXPECT_EQ(s.attempts, 2u);
  EXPECT_EQ(s.failed, 1u);
  EXPECT_NE(s.last_error.find("HTTP 500: Failed to update database: "), std::string::npos) << s.last_error;
}

TEST(channel_metadata_crs, get_downtime_logs_is_409_crs_0002_when_its_database_cannot_be_read) {
  cm::crs_context ctx;
  ctx.downtime_log = []() -> bulwark::task<std::vector<cm::downtime_entry>> {
    co_return bulwark::error(bulwark::errc::unavailable, "outage log down");
  };
  http::router routes;
  cm::add_crs_routes(routes, ctx);
  asio::io_context io;
  auto r = bulwark::test::run(io, route(routes, make("GET", "/get-downtime-logs", {}, crs_auth)), 5s);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r.value().status, 409);
  EXPECT_EQ(r.value().body, R"({"errorCode":"CRS-0002","message":"Failed to fetch downtime logs"})");
}

TEST(channel_metadata_crs, the_downtime_log_lists_the_newest_windows_oldest_first_and_is_pruned_to_its_retention) {
  asio::io_context io;
  bulwark::memory::repository log;
  auto run = [&](auto op) { return bulwark::test::run(io, std::move(op), 5s); };
  const auto epoch = std::chrono::system_clock::time_point(std::chrono::seconds(1'726'574'400)); // 2024-09-17 12:00
  auto add_window = [&](int minute) {
    bulwark::flows::outage_window w;
    w.first_failure = epoch + std::chrono::minutes(minute);
    char id[32];
    std::snprintf(
        id, sizeof id, "%016lld-x",
        static_cast<long long>(
            std::chrono::duration_cast<std::chrono::milliseconds>(w.first_failure.time_since_epoch()).count()));
    w.id = id;
    return run(log.put(std::string(cm::outage_log_prefix) + w.id, bulwark::flows::to_json(w), std::nullopt))
        .has_value();
  };
  for (int i = 4; i >= 0; --i) ASSERT_TRUE(add_window(i)); // written out of order: the keys sort them
  auto newest = run(cm::read_downtime_log(log, std::string(cm::outage_log_prefix), 3));
  ASSERT_TRUE(newest.has_value());
  EXPECT_EQ(cm::downtime_log_json(newest.value()).dump(),
            R"([{"id":1,"downtimeTimestamp":"2024-09-17 12:02:00"},{"id":2,"downtimeTimestamp":"2024-09-17 12:03:00"},)"
            R"({"id":3,"downtimeTimestamp":"2024-09-17 12:04:00"}])");
  auto pruned = run(cm::prune_downtime_log(log, std::string(cm::outage_log_prefix), 3));
  ASSERT_TRUE(pruned.has_value());
  EXPECT_EQ(pruned.value(), 2u);
  auto all = run(cm::read_downtime_log(log, std::string(cm::outage_log_prefix), 100));
  ASSERT_TRUE(all.has_value());
  ASSERT_EQ(all.value().size(), 3u);
  EXPECT_EQ(cm::format_utc(all.value().front().first_failure), "2024-09-17 12:02:00");
}

// An id given to a client keeps naming the same outage: pruning older windows does not renumber
// the kept ones, a new window gets the next id, and the ids of pruned windows are never reused.
TEST(channel_metadata_crs, downtime_log_ids_are_stable_across_pruning_and_new_windows) {
  asio::io_context io;
  bulwark::memory::repository log;
  auto run = [&](auto op) { return bulwark::test::run(io, std::move(op), 5s); };
  const auto epoch = std::chrono::system_clock::time_point(std::chrono::seconds(1'726'574'400)); // 2024-09-17 12:00
  const std::string prefix(cm::outage_log_prefix);
  auto window_id = [&](int minute) {
    char id[40];
    std::snprintf(id, sizeof id, "%016lld-x",
                  static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             (epoch + std::chrono::minutes(minute)).time_since_epoch())
                                             .count()));
    return std::string(id);
  };
  auto add_window = [&](int minute) {
    bulwark::flows::outage_window w;
    w.first_failure = epoch + std::chrono::minutes(minute);
    w.id = window_id(minute);
    return run(log.put(prefix + w.id, bulwark::flows::to_json(w), std::nullopt)).has_value();
  };
  auto shown = [&](std::size_t limit) {
    auto entries = run(cm::read_downtime_log(log, prefix, limit));
    return entries ? cm::downtime_log_json(entries.value()).dump() : "error: " + entries.error().message();
  };
  for (int minute : {0, 1, 2}) ASSERT_TRUE(add_window(minute));
  EXPECT_EQ(shown(10), R"([{"id":1,"downtimeTimestamp":"2024-09-17 12:00:00"},)"
                       R"({"id":2,"downtimeTimestamp":"2024-09-17 12:01:00"},)"
                       R"({"id":3,"downtimeTimestamp":"2024-09-17 12:02:00"}])");
  EXPECT_EQ(shown(10), shown(10)) << "reading again changes nothing";
  ASSERT_TRUE(add_window(3));
  ASSERT_EQ(run(cm::prune_downtime_log(log, prefix, 2)).value(), 2u); // 12:00 and 12:01 go
  EXPECT_EQ(shown(10), R"([{"id":3,"downtimeTimestamp":"2024-09-17 12:02:00"},)"
                       R"({"id":4,"downtimeTimestamp":"2024-09-17 12:03:00"}])");
  // The pruned windows' ids went with them; their numbers are not given again.
  auto leftover = run(log.get(std::string(cm::downtime_id_prefix) + window_id(0)));
  ASSERT_TRUE(leftover.has_value());
  EXPECT_FALSE(leftover.value().has_value());
  ASSERT_TRUE(add_window(4));
  EXPECT_EQ(shown(2), R"([{"id":4,"downtimeTimestamp":"2024-09-17 12:03:00"},)"
                      R"({"id":5,"downtimeTimestamp":"2024-09-17 12:04:00"}])");

  // Another replica sharing the log gave window 12:05 an id first (and moved the sequence): that
  // id is the one shown, and the next window's id comes after it.
  ASSERT_TRUE(add_window(5));
  ASSERT_TRUE(add_window(6));
  auto seq = run(log.get(cm::downtime_id_sequence_key));
  ASSERT_TRUE(seq.has_value() && seq.value().has_value());
  ASSERT_TRUE(run(log.put(cm::downtime_id_sequence_key, "9", seq.value()->version)).has_value());
  ASSERT_TRUE(run(log.put(std::string(cm::downtime_id_prefix) + window_id(5), "9", bulwark::no_version)).has_value());
  EXPECT_EQ(shown(3), R"([{"id":5,"downtimeTimestamp":"2024-09-17 12:04:00"},)"
                      R"({"id":9,"downtimeTimestamp":"2024-09-17 12:05:00"},)"
                      R"({"id":10,"downtimeTimestamp":"2024-09-17 12:06:00"}])");
}

// A read that would have to give a new id but cannot store it fails (409 CRS-0002 on the route)
// rather than show an id that could change.
TEST(channel_metadata_crs, a_downtime_log_read_that_cannot_store_a_new_id_fails) {
  asio::io_context io;
  bulwark::memory::repository inner;
  bulwark::testing::faulty_repository<bulwark::memory::repository> log(inner);
  auto run = [&](auto op) { return bulwark::test::run(io, std::move(op), 5s); };
  bulwark::flows::outage_window w;
  w.first_failure = std::chrono::system_clock::time_point(std::chrono::seconds(1'726'574'400));
  w.id = "0001726574400000-x";
  ASSERT_TRUE(run(inner.put(std::string(cm::outage_log_prefix) + w.id, bulwark::flows::to_json(w), std::nullopt)));
  log.faults().fail(bulwark::testing::op::put, bulwark::errc::unavailable);
  EXPECT_FALSE(run(cm::read_downtime_log(log, std::string(cm::outage_log_prefix), 10)).has_value());
  log.faults().clear(bulwark::testing::op::put);
  auto entries = run(cm::read_downtime_log(log, std::string(cm::outage_log_prefix), 10));
  ASSERT_TRUE(entries.has_value());
  ASSERT_EQ(entries.value().size(), 1u);
  EXPECT_EQ(entries.value().front().id, 1);
}

// --- starting while the database is down ---

// The real services' databases are opened this way (real_mode.hpp): until the server answers,
// every call is errc::unavailable at once (an outage to write_through and the replayer, DOWN to
// the healthcheck), attempts go on with a bounded, logged backoff, and the first success opens it.
TEST(channel_metadata_deferred, a_repository_opened_in_the_background_is_unavailable_until_the_server_answers) {
  using model = bulwark::testing::faulty_repository<bulwark::memory::repository>;
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  auto clk = bulwark::clock::manual();
  bulwark::memory::repository inner;
  int attempts = 0;
  bool server_up = false;
  std::vector<std::string> lines;
  cm::background_attempts::options o;
  o.name = "test database";
  o.clock = clk;
  o.first_delay = 250ms;
  o.max_delay = 1s;
  o.log = [&](const std::string& line) { lines.push_back(line); };
  cm::deferred_repository<model> repo(
      [&]() -> bulwark::task<model> {
        ++attempts;
        if (!server_up) co_return bulwark::error(bulwark::errc::unavailable, "connection refused");
        co_return model(inner);
      },
      o);
  auto run = [&](auto op) { return bulwark::test::run(io, std::move(op), 5s); };
  auto before = run(repo.get("GB"));
  ASSERT_FALSE(before.has_value());
  EXPECT_EQ(before.error(), bulwark::errc::unavailable);
  EXPECT_NE(before.error().message().find("test database not reachable yet"), std::string::npos);

  repo.start(io.get_executor());
  io.poll();
  EXPECT_EQ(attempts, 1);
  EXPECT_FALSE(repo.ready());
  auto down = run(repo.put("GB", "v", std::nullopt));
  ASSERT_FALSE(down.has_value());
  EXPECT_NE(down.error().message().find("connection refused"), std::string::npos) << down.error().message();
  EXPECT_FALSE(run(repo.scan("", "", 10)).has_value());
  EXPECT_FALSE(run(repo.erase("GB")).has_value());
  // Backoff: 250 ms, 500 ms, then capped at 1 s; each failure logged with the next delay.
  for (auto step : {250ms, 500ms, 1000ms, 1000ms}) {
    clk.advance(step - 1ms);
    io.poll();
    const int seen = attempts;
    clk.advance(1ms);
    io.poll();
    EXPECT_EQ(attempts, seen + 1) << "after " << step.count() << " ms";
  }
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0], "test database: not reachable (attempt 1): backend unavailable: connection refused; trying again "
                      "in 250 ms");
  EXPECT_NE(lines[2].find("trying again in 1000 ms"), std::string::npos) << lines[2];
  EXPECT_NE(lines[4].find("(attempt 5)"), std::string::npos) << lines[4];
  EXPECT_NE(lines[4].find("trying again in 1000 ms"), std::string::npos) << lines[4];

  server_up = true;
  clk.advance(1s);
  io.poll();
  EXPECT_EQ(attempts, 6);
  EXPECT_TRUE(repo.ready());
  EXPECT_EQ(lines.back(), "test database: reachable again after 6 attempts");
  auto put = run(repo.put("GB", "v", std::nullopt));
  ASSERT_TRUE(put.has_value()) << put.error();
  auto stored = run(inner.get("GB"));
  ASSERT_TRUE(stored.has_value() && stored.value().has_value());
  EXPECT_EQ(stored.value()->value, "v");
  clk.advance(10s);
  io.poll();
  EXPECT_EQ(attempts, 6) << "no attempt after the success";
  run(repo.stop());
}

// The services make one attempt before serving (a database that answers is ready when they
// listen); start() then goes on after the first delay, or does nothing after a success.
TEST(channel_metadata_deferred, a_first_attempt_before_start) {
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  auto clk = bulwark::clock::manual();
  int attempts = 0;
  bool up = false;
  cm::background_attempts::options o;
  o.name = "db";
  o.clock = clk;
  o.first_delay = 100ms;
  cm::background_attempts failing(
      [&]() -> bulwark::task<void> {
        ++attempts;
        if (!up) co_return bulwark::error(bulwark::errc::unavailable, "down");
        co_return bulwark::ok();
      },
      o);
  EXPECT_FALSE(bulwark::test::run(io, failing.first_attempt(), 5s));
  failing.start(io.get_executor());
  io.poll();
  EXPECT_EQ(attempts, 1) << "start() waits the first delay after a failed first attempt";
  up = true;
  clk.advance(100ms);
  io.poll();
  EXPECT_EQ(attempts, 2);
  EXPECT_TRUE(failing.succeeded());
  bulwark::test::run(io, failing.stop(), 5s);

  attempts = 0;
  cm::background_attempts succeeding(
      [&]() -> bulwark::task<void> {
        ++attempts;
        co_return bulwark::ok();
      },
      o);
  EXPECT_TRUE(bulwark::test::run(io, succeeding.first_attempt(), 5s));
  succeeding.start(io.get_executor());
  clk.advance(1s);
  io.poll();
  EXPECT_EQ(attempts, 1);
  bulwark::test::run(io, succeeding.stop(), 5s);
}

TEST(channel_metadata_deferred, stop_ends_the_attempts_while_they_wait) {
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  auto clk = bulwark::clock::manual();
  int attempts = 0;
  cm::background_attempts::options o;
  o.name = "Kafka";
  o.clock = clk;
  cm::background_attempts topics(
      [&]() -> bulwark::task<void> {
        ++attempts;
        co_return bulwark::error(bulwark::errc::unavailable, "all brokers down");
      },
      o);
  topics.start(io.get_executor());
  io.poll();
  EXPECT_EQ(attempts, 1);
  EXPECT_EQ(topics.last_error(), "backend unavailable: all brokers down");
  bulwark::test::run(io, topics.stop(), 5s); // the clock is not moved: stop ends the wait
  clk.advance(1min);
  io.poll();
  EXPECT_EQ(attempts, 1);
  EXPECT_FALSE(topics.succeeded());
}

TEST(channel_metadata_crs, the_replay_watch_asks_cms_to_reconcile_after_replays_until_one_succeeds) {
  asio::io_context io;
  auto work = asio::make_work_guard(io); // poll() must not find the context stopped between steps
  auto clk = bulwark::clock::manual();
  int calls = 0;
  cm::cms_reconciler reconciler(
      io.get_executor(),
      [&]() -> bulwark::task<http::response> {
        ++calls;
        co_return http::text(calls <= 3 ? 500 : 200, "answer"); // CMS's breaker still open at first
      },
      50ms, clk);
  std::uint64_t handled = 0;
  auto stop = std::make_shared<std::atomic<bool>>(false);
  int flushes = 0;
  asio::co_spawn(io,
                 cm::replay_watch(
                     [&] {
                       return cm::replay_progress{handled, 0};
                     },
                     reconciler, clk, 100ms, stop,
                     [&]() -> asio::awaitable<void> {
                       ++flushes;
                       co_return;
                     }),
                 asio::detached);
  auto steps = [&](int n) {
    for (int i = 0; i < n; ++i) {
      while (io.poll() > 0) {
      }
      clk.advance(50ms);
    }
    io.poll();
  };
  steps(10);
  EXPECT_EQ(calls, 0) << "nothing was replayed: nothing to reconcile";
  EXPECT_GE(flushes, 4);
  handled = 2;
  steps(40);
  // The first request fails twice (its call and its one retry), the next period asks again:
  // the third call fails, its retry succeeds; then the watch is done asking.
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(reconciler.stats().failed, 1u);
  EXPECT_EQ(reconciler.stats().succeeded, 1u);
  steps(40);
  EXPECT_EQ(calls, 4);
  *stop = true;
  steps(4);
  bool stopped = false;
  asio::co_spawn(
      io,
      [](cm::cms_reconciler& r, bool& done) -> asio::awaitable<void> {
        co_await r.stop();
        done = true;
      }(reconciler, stopped),
      asio::detached);
  for (int i = 0; i < 100 && !stopped; ++i) steps(1);
  EXPECT_TRUE(stopped);
}

// --- fault control, the admin page and the proxy ---

TEST_F(channel_metadata_services, the_fault_route_takes_the_database_down_and_back) {
  auto bad = cms(make("POST", "/private/faults/database", R"({"down":"yes"})"));
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(cms(make("POST", "/private/faults/database", "down")).status, 400);
  auto down = cms(make("POST", "/private/faults/database", R"({"down":true})"));
  EXPECT_EQ(down.status, 200);
  EXPECT_EQ(down.body, R"({"database":{"down":true}})");
  EXPECT_EQ(post("GB", gb_body).status, 202);
  EXPECT_EQ(cms(make("POST", "/private/faults/database", R"({"down":false})")).status, 200);
  clock_.advance(6s);
  EXPECT_EQ(post("FR", body_for("FR", "x")).status, 200);
}

TEST_F(channel_metadata_services, without_fault_control_there_is_no_fault_route) {
  rebuild([](cm::memory_deployment::options& o) { o.cms.fault_control = false; });
  EXPECT_EQ(cms(make("POST", "/private/faults/database", R"({"down":true})")).status, 404);
}

TEST_F(channel_metadata_services, crs_unreachable_through_the_proxy_is_502_cms_0010) {
  rebuild([](cm::memory_deployment::options& o) {
    o.call_crs = [](std::string, std::string) -> bulwark::task<http::response> {
      co_return bulwark::error(bulwark::errc::unavailable, "connection refused");
    };
  });
  auto r = cms(make("GET", "/admin/crs/private/healthcheck"));
  EXPECT_EQ(r.status, 502);
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["errorCode"], "CMS-0010");
  EXPECT_TRUE(j["message"].get<std::string>().starts_with("cache-retry-service unavailable: ")) << r.body;
  EXPECT_NE(j["message"].get<std::string>().find("connection refused"), std::string::npos);
}

TEST_F(channel_metadata_services, the_proxy_passes_crs_status_and_body_through) {
  auto r = cms(make("GET", "/admin/crs/private/healthcheck"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, crs(make("GET", "/private/healthcheck", {}, "")).body);
  EXPECT_EQ(r.headers.value_or("Content-Type", ""), "application/json");
}

TEST(channel_metadata_admin, the_page_is_served_from_the_embedded_files) {
  static const cm::admin_asset files[] = {
      {"index.html", "<!doctype html><title>x</title>"}, {"app.js", "console.log(1)"}, {"style.css", "body{}"}};
  cm::cms_context ctx;
  ctx.admin = files;
  http::router routes;
  cm::add_cms_routes(routes, ctx);
  asio::io_context io;
  auto call = [&](http::request req) {
    auto r = bulwark::test::run(io, route(routes, std::move(req)), 5s);
    EXPECT_TRUE(r.has_value());
    return r.value();
  };
  auto index = call(make("GET", "/admin/", {}, ""));
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(index.body, "<!doctype html><title>x</title>");
  EXPECT_EQ(index.headers.value_or("Content-Type", ""), "text/html; charset=utf-8");
  auto js = call(make("GET", "/admin/app.js", {}, ""));
  EXPECT_EQ(js.body, "console.log(1)");
  EXPECT_EQ(js.headers.value_or("Content-Type", ""), "text/javascript; charset=utf-8");
  EXPECT_EQ(call(make("GET", "/admin/style.css", {}, "")).headers.value_or("Content-Type", ""),
            "text/css; charset=utf-8");
  EXPECT_EQ(call(make("GET", "/admin/nothing.js", {}, "")).status, 404);
  EXPECT_EQ(call(make("GET", "/admin/../config.hpp", {}, "")).status, 404);
  auto moved = call(make("GET", "/admin", {}, ""));
  EXPECT_EQ(moved.status, 301);
  EXPECT_EQ(moved.headers.value_or("Location", ""), "/admin/");
  auto again = make("GET", "/admin/app.js", {}, "");
  again.headers.set("If-None-Match", std::string(js.headers.value_or("ETag", "")));
  EXPECT_EQ(call(std::move(again)).status, 304);
  // No CRS configured: the proxy answers 502, not a crash.
  EXPECT_EQ(call(make("GET", "/admin/crs/get-downtime-logs")).status, 502);
}

// --- configuration additions and the peer client ---

TEST(channel_metadata_config, fault_control_is_a_bare_flag_for_the_memory_backend_only) {
  auto none = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  const std::vector<std::string_view> bare{"--fault-control", "--port", "9000"};
  auto c = cm::load_config(cm::service::cms, bare, none);
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_TRUE(c.value().fault_control);
  EXPECT_EQ(c.value().port, 9000);
  const std::vector<std::string_view> off{"--fault-control=false"};
  EXPECT_FALSE(cm::load_config(cm::service::cms, off, none).value().fault_control);
  const std::vector<std::string_view> real{"--fault-control", "--backend", "mysql+redis"};
  auto refused = cm::load_config(cm::service::cms, real, none);
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().detail().find("fault-control"), std::string::npos);
  const std::vector<std::string_view> bad{"--fault-control=maybe"};
  EXPECT_FALSE(cm::load_config(cm::service::cms, bad, none).has_value());
  EXPECT_FALSE(cm::load_config(cm::service::crs, bare, none).has_value()) << "a CMS-only flag";
  const std::vector<std::string_view> port{"--crs-port", "9100"};
  EXPECT_EQ(cm::load_config(cm::service::cms, port, none).value().crs_port, 9100);
  EXPECT_NE(cm::help_text(cm::service::cms).find("--fault-control"), std::string::npos);
}

TEST(channel_metadata_config, near_cache_is_on_unless_turned_off) {
  auto none = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  const std::vector<std::string_view> plain{"--backend", "mysql+redis"};
  EXPECT_TRUE(cm::load_config(cm::service::cms, plain, none).value().near_cache);
  const std::vector<std::string_view> off{"--backend", "mysql+redis", "--near-cache=false"};
  EXPECT_FALSE(cm::load_config(cm::service::cms, off, none).value().near_cache);
  auto env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "CMS_NEAR_CACHE") return "false";
    return std::nullopt;
  };
  EXPECT_FALSE(cm::load_config(cm::service::cms, plain, env).value().near_cache);
  const std::vector<std::string_view> bad{"--near-cache=sometimes"};
  EXPECT_FALSE(cm::load_config(cm::service::cms, bad, none).has_value());
  EXPECT_FALSE(cm::load_config(cm::service::crs, off, none).has_value()) << "a CMS-only flag";
  EXPECT_NE(cm::help_text(cm::service::cms).find("--near-cache"), std::string::npos);
}

// Memory mode: the embedded CRS listens where CMS does (--address), on --crs-port, and each
// service calls the other with the other's credentials.
TEST(channel_metadata_config, the_embedded_crs_honours_the_address_and_its_own_variables) {
  const std::vector<std::string_view> args{"--address", "127.0.0.2", "--crs-port", "0", "--user", "me"};
  const auto none = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  auto cms = cm::load_config(cm::service::cms, args, none).value();
  const auto env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "CRS_PASSWORD") return "secret";
    if (name == "CRS_ADDRESS") return "0.0.0.0"; // --address is the process's, for every listener
    return std::nullopt;
  };
  auto crs = cm::embedded_crs_config(cms, env);
  ASSERT_TRUE(crs.has_value()) << crs.error();
  EXPECT_EQ(crs.value().listen_address, "127.0.0.2");
  EXPECT_EQ(crs.value().port, 0);
  EXPECT_EQ(crs.value().backend, cm::backend_kind::memory);
  EXPECT_EQ(crs.value().password, "secret");
  EXPECT_EQ(crs.value().peer_user, "me");
  EXPECT_EQ(cms.peer_user, "crs");
  EXPECT_EQ(cms.peer_password, "secret");
  EXPECT_EQ(cm::embedded_peer_host(cms), "127.0.0.2");
  auto defaults = cm::load_config(cm::service::cms, {}, none).value();
  EXPECT_EQ(cm::embedded_crs_config(defaults, none).value().listen_address, "127.0.0.1");
  cms.listen_address = "0.0.0.0";
  EXPECT_EQ(cm::embedded_peer_host(cms), "127.0.0.1");
  const auto bad = [](const std::string& name) -> std::optional<std::string> {
    return name == "CRS_THREADS" ? std::optional<std::string>("many") : std::nullopt;
  };
  EXPECT_FALSE(cm::embedded_crs_config(cms, bad).has_value());
}

TEST(channel_metadata_peer, basic_authorization_and_urls) {
  EXPECT_EQ(cm::basic_authorization("cms", "cmspass"), "Basic Y21zOmNtc3Bhc3M=");
  EXPECT_EQ(cm::basic_authorization("crs", "crspass"), "Basic Y3JzOmNyc3Bhc3M=");
  EXPECT_EQ(cm::basic_authorization("a", "bc"), "Basic YTpiYw==");
  auto p = cm::peer::make("http://127.0.0.1:8090/", "u", "p", 1s);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p.value().at.to_string(), "127.0.0.1:8090");
  EXPECT_EQ(p.value().base_path, "");
  auto prefixed = cm::peer::make("http://crs.internal/retry", "u", "p", 1s);
  ASSERT_TRUE(prefixed.has_value());
  EXPECT_EQ(prefixed.value().at.to_string(), "crs.internal:80");
  EXPECT_EQ(prefixed.value().base_path, "/retry");
  EXPECT_FALSE(cm::peer::make("https://x:1", "u", "p", 1s).has_value());
  EXPECT_FALSE(cm::peer::make("http://", "u", "p", 1s).has_value());
}

// The one test with a socket: the peer client against a real server, twice in a row (a client
// without a pool closes each connection; it used to crash giving one back).
TEST(channel_metadata_peer, calls_the_other_service_with_its_credentials_and_request_id) {
  http::router routes;
  routes.get("/seen", [](http::request& req) -> bulwark::task<http::response> {
    co_return http::text(200, std::string(req.headers.value_or("Authorization", "")) + "|" +
                                  std::string(req.headers.value_or("request-id", "")));
  });
  http::server_options so;
  http::server server(so, routes.as_handler());
  ASSERT_TRUE(server.start().has_value());
  auto p = cm::peer::make("http://127.0.0.1:" + std::to_string(server.port()), "crs", "crspass", 2s).value();
  asio::io_context io;
  for (int i = 0; i < 2; ++i) {
    auto r = bulwark::test::run(io, p.call("GET", "/seen", {}, "id-" + std::to_string(i)), 10s);
    ASSERT_TRUE(r.has_value()) << r.error();
    EXPECT_EQ(r.value().body, "Basic Y3JzOmNyc3Bhc3M=|id-" + std::to_string(i));
  }
  server.stop(0ms);
  auto refused = bulwark::test::run(io, p.call("GET", "/seen"), 10s);
  EXPECT_FALSE(refused.has_value());
}

} // namespace
