// The channel-metadata example's core (examples/channel-metadata/channel_metadata/): document
// parsing and validation, the contract's errors and texts, the auth answers, configuration and
// the downtime log. Every fixed text is checked twice: against a literal here and against the
// contract's own text (examples/channel-metadata/contract.md).

#include <channel_metadata/auth.hpp>
#include <channel_metadata/config.hpp>
#include <channel_metadata/document.hpp>
#include <channel_metadata/downtime_log.hpp>
#include <channel_metadata/errors.hpp>
#include <channel_metadata/texts.hpp>

#include <bulwark/http/router.hpp>

#include "support/run.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <unistd.h>

namespace cm = channel_metadata;
namespace http = bulwark::http;
using namespace std::literals;

namespace {

const std::string& contract() {
  static const std::string text = [] {
    std::ifstream in(CHANNEL_METADATA_CONTRACT_MD);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }();
  return text;
}

bool in_contract(std::string_view s) { return contract().find(s) != std::string::npos; }
std::string backticked(std::string_view s) { return "`" + std::string(s) + "`"; }

const std::string example_body = R"({"countryCode": "GB",
 "metadata": [{"name": "AT One", "language": "English", "type": "News"}],
 "product": "exampleProduct"})";
const std::string example_canonical =
    R"({"countryCode":"GB","metadata":[{"name":"AT One","language":"English","type":"News"}],"product":"exampleProduct"})";

cm::cms_error refusal(std::string_view path, std::string_view body, cm::parse_limits limits = {}) {
  auto r = cm::parse_request(path, body, limits);
  EXPECT_FALSE(r.has_value()) << "accepted: " << body;
  return r ? cm::cms_error{} : r.error();
}

void expect_malformed(std::string_view body) {
  const auto e = refusal("GB", body);
  EXPECT_EQ(e.status, 400) << body;
  EXPECT_EQ(e.body().dump(), R"({"errorCode":"CMS-0007","message":"Malformed JSON request"})") << body;
}

void expect_mismatch(std::string_view body) {
  const auto e = refusal("GB", body);
  EXPECT_EQ(e.status, 400) << body;
  EXPECT_EQ(e.body().dump(), R"({"errorCode":"CMS-0007","message":"JSON field mismatch or invalid data structure"})")
      << body;
}

std::vector<cm::field_error> expect_validation(std::string_view body) {
  const auto e = refusal("GB", body);
  EXPECT_EQ(e.status, 400) << body;
  EXPECT_EQ(e.code, "CMS-0001") << body;
  EXPECT_FALSE(e.details.empty()) << body;
  return e.details;
}

void expect_bad_request(std::string_view path, std::string_view body) {
  const auto e = refusal(path, body);
  EXPECT_EQ(e.status, 400) << path << " " << body;
  EXPECT_EQ(e.code, "CMS-0004") << path << " " << body;
  EXPECT_FALSE(e.message.empty());
}

} // namespace

// ---- contract texts ---------------------------------------------------------------------------

TEST(channel_metadata_contract, every_fixed_text_is_the_contracts) {
  ASSERT_FALSE(contract().empty()) << "cannot read " << CHANNEL_METADATA_CONTRACT_MD;
  for (auto t : {cm::text::timeout, cm::text::not_found, cm::text::malformed_json, cm::text::field_mismatch,
                 cm::text::posted, cm::text::force_update_done, cm::text::status_ok, cm::text::cms_app_name,
                 cm::text::crs_app_name, cm::text::unauthorized, cm::text::validation_code, cm::text::timeout_code,
                 cm::text::not_found_code, cm::text::bad_request_code, cm::text::json_code, cm::text::unexpected_code})
    EXPECT_TRUE(in_contract(backticked(t))) << t;
  EXPECT_TRUE(in_contract(backticked(std::string(cm::text::unexpected_prefix) + "<reason>")));
  EXPECT_TRUE(in_contract(backticked(std::string(cm::text::force_update_failed_prefix) + "<reason>")));
  // Literals too, so a change to a text and to the copy of the contract together still fails.
  EXPECT_EQ(cm::text::timeout, "Timeout occurred");
  EXPECT_EQ(cm::text::not_found, "Failed to find item");
  EXPECT_EQ(cm::text::malformed_json, "Malformed JSON request");
  EXPECT_EQ(cm::text::field_mismatch, "JSON field mismatch or invalid data structure");
  EXPECT_EQ(cm::text::unexpected_prefix, "An unexpected error occurred: ");
  EXPECT_EQ(cm::text::posted, "Data successfully posted");
  EXPECT_EQ(cm::text::force_update_done, "Successfully updated the database with all cached metadata.");
  EXPECT_EQ(cm::text::force_update_failed_prefix, "Failed to update database: ");
  EXPECT_EQ(cm::text::unauthorized, "Invalid or missing credentials");
  EXPECT_EQ(cm::text::cms_app_name, "Channel Metadata Store");
  EXPECT_EQ(cm::text::crs_app_name, "cache-retry");
}

TEST(channel_metadata_contract, error_statuses_match_the_contracts_table) {
  const std::vector<cm::cms_error> errors{cm::errors::validation({{"product", "must not be blank"}}),
                                          cm::errors::timeout(),
                                          cm::errors::not_found(),
                                          cm::errors::bad_request("x"),
                                          cm::errors::malformed_json(),
                                          cm::errors::field_mismatch(),
                                          cm::errors::unexpected("x")};
  for (const auto& e : errors)
    EXPECT_TRUE(in_contract("| `" + e.code + "` | " + std::to_string(e.status) + " |")) << e.code << " " << e.status;
  EXPECT_EQ(cm::errors::timeout().status, 409);
  EXPECT_EQ(cm::errors::not_found().status, 404);
  EXPECT_EQ(cm::errors::unexpected("x").status, 500);
  // The one error body the contract spells out in full, byte for byte.
  EXPECT_EQ(cm::errors::not_found().body().dump(), R"({"errorCode":"CMS-0003","message":"Failed to find item"})");
  EXPECT_TRUE(in_contract(backticked(cm::errors::not_found().body().dump())));
}

TEST(channel_metadata_contract, crs_bodies_are_the_contracts) {
  const auto trigger = cm::crs::trigger_accepted();
  EXPECT_EQ(trigger.status, 200);
  EXPECT_EQ(trigger.body,
            R"({"statusCode":"CRS-1000","message":"Triggering a DB-write retry for channel-metadata-store"})");
  EXPECT_TRUE(in_contract(backticked(trigger.body)));
  const auto failed = cm::crs::downtime_failed();
  EXPECT_EQ(failed.status, 409);
  EXPECT_EQ(failed.body, R"({"errorCode":"CRS-0002","message":"Failed to fetch downtime logs"})");
  EXPECT_TRUE(in_contract("`409` " + backticked(failed.body)));
  const auto json401 = cm::unauthorized(cm::unauthorized_shape::json, "crs");
  EXPECT_EQ(json401.status, 401);
  EXPECT_EQ(json401.body, R"({"statusCode":"401","message":"Invalid or missing credentials"})");
  EXPECT_TRUE(in_contract("`401` JSON " + backticked(json401.body)));
  EXPECT_EQ(json401.headers.value_or("Content-Type", ""), "application/json");
  const auto text401 = cm::unauthorized(cm::unauthorized_shape::text, "cms");
  EXPECT_EQ(text401.body, "Invalid or missing credentials");
  EXPECT_TRUE(in_contract("`401` text " + backticked(text401.body)));
  EXPECT_EQ(text401.headers.value_or("WWW-Authenticate", ""), "Basic realm=\"cms\"");
  const auto force = cm::force_update_failed("db down");
  EXPECT_EQ(force.status, 500);
  EXPECT_EQ(force.body, "Failed to update database: db down");
}

TEST(channel_metadata_contract, configuration_defaults_are_the_contracts) {
  const auto cms = cm::defaults(cm::service::cms);
  const auto crs = cm::defaults(cm::service::crs);
  EXPECT_EQ(cms.port, 8080);
  EXPECT_TRUE(in_contract("## CMS (default port 8080)"));
  EXPECT_EQ(crs.port, 8090);
  EXPECT_TRUE(in_contract("## CRS (default port 8090)"));
  EXPECT_TRUE(in_contract("the demo\ndefault is `" + cms.user + "` / `" + cms.password + "`"));
  EXPECT_TRUE(in_contract("demo default `" + crs.user + "` / `" + crs.password + "`"));
  EXPECT_EQ(cms.retry_topic, "retry-db-write-from-cache");
  EXPECT_EQ(crs.consumer_group, "channel-metadata-group");
  EXPECT_TRUE(in_contract("(default name " + backticked(crs.retry_topic) + ", consumer group\n" +
                          backticked(crs.consumer_group)));
  EXPECT_EQ(crs.outage_mysql_database, "cache_retry_db");
  EXPECT_TRUE(in_contract(backticked(crs.outage_mysql_database)));
  EXPECT_EQ(cms.peer_user, crs.user); // each service calls the other with the other's credentials
  EXPECT_EQ(crs.peer_user, cms.user);
}

// ---- the document -----------------------------------------------------------------------------

TEST(channel_metadata_document, the_contracts_example_parses_and_serializes_canonically) {
  auto doc = cm::parse_request("GB", example_body);
  ASSERT_TRUE(doc.has_value()) << doc.error().message;
  EXPECT_EQ(doc.value().country_code, "GB");
  ASSERT_EQ(doc.value().metadata.size(), 1u);
  EXPECT_EQ(doc.value().metadata[0], (cm::channel{"AT One", "English", "News"}));
  EXPECT_EQ(doc.value().product, "exampleProduct");
  EXPECT_EQ(cm::serialize(doc.value()), example_canonical);
  // The example in the contract is this very body.
  EXPECT_TRUE(in_contract(example_body));
}

TEST(channel_metadata_document, the_path_code_is_the_key_upper_cased) {
  auto doc = cm::parse_request(
      "gb", R"({"countryCode":"gB","metadata":[{"name":"a","language":"b","type":"c"}],"product":"p"})");
  ASSERT_TRUE(doc.has_value()) << doc.error().message;
  EXPECT_EQ(doc.value().country_code, "GB");
  EXPECT_EQ(cm::parse_country_code("nl").value(), "NL");
}

TEST(channel_metadata_document, a_path_code_that_is_not_two_ascii_letters_is_cms_0004) {
  for (std::string_view path : {""sv, "G"sv, "GBR"sv, "G1"sv, "1G"sv, "G "sv, "--"sv, "\xC3\x84"sv, "G\0"sv})
    expect_bad_request(path, example_body);
  // The path is checked before the body: a bad key is refused whatever came with it.
  expect_bad_request("GBR", "{");
}

TEST(channel_metadata_document, a_body_code_other_than_the_paths_is_cms_0004) {
  expect_bad_request("FR", example_body);
  const auto e = refusal("FR", example_body);
  EXPECT_NE(e.message.find("GB"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("FR"), std::string::npos) << e.message;
  expect_bad_request("GB",
                     R"({"countryCode":" GB","metadata":[{"name":"a","language":"b","type":"c"}],"product":"p"})");
}

TEST(channel_metadata_document, a_body_that_is_not_json_is_cms_0007_malformed) {
  for (std::string_view body : {""sv, "{"sv, "not json"sv, R"({"countryCode":)"sv, "{} x"sv, "{\"a\" 1}"sv,
                                R"({"countryCode":"G)"
                                "\xff"
                                R"("})"sv,
                                "{'countryCode':'GB'}"sv, "\0"sv})
    expect_malformed(body);
}

TEST(channel_metadata_document, unknown_fields_wrong_types_repeats_and_depth_are_cms_0007_mismatch) {
  for (
      std::string_view body : {
          R"([])",
          R"("GB")",
          R"(42)",
          R"(null)",
          R"({"countryCode":"GB","metadata":[{"name":"a","language":"b","type":"c"}],"product":"p","extra":1})",
          R"({"countryCode":"GB","metadata":[{"name":"a","language":"b","type":"c","id":1}],"product":"p"})",
          R"({"countryCode":"GB","metadata":{"name":"a","language":"b","type":"c"},"product":"p"})",
          R"({"countryCode":"GB","metadata":["a"],"product":"p"})",
          R"({"countryCode":"GB","metadata":[{"name":1,"language":"b","type":"c"}],"product":"p"})",
          R"({"countryCode":"GB","metadata":[{"name":"a","language":"b","type":"c"}],"product":true})",
          R"({"countryCode":["GB"],"metadata":[{"name":"a","language":"b","type":"c"}],"product":"p"})",
          R"({"countryCode":"GB","countryCode":"GB","metadata":[{"name":"a","language":"b","type":"c"}],"product":"p"})",
          R"({"countryCode":"GB","metadata":[{"name":"a","name":"a","language":"b","type":"c"}],"product":"p"})",
          R"({"countryCode":"GB","metadata":[[{"name":"a","language":"b","type":"c"}]],"product":"p"})",
          R"({"countryCode":"GB","metadata":[{"name":{"x":[1]},"language":"b","type":"c"}],"product":"p"})",
      })
    expect_mismatch(body);
}

TEST(channel_metadata_document, deep_nesting_within_the_size_limit_is_refused_not_a_crash) {
  const std::size_t depth = 30'000; // 60 kB: under the default limit
  expect_mismatch(std::string(depth, '[') + std::string(depth, ']'));
  expect_mismatch(R"({"countryCode":"GB","metadata":)" + std::string(depth, '[') + std::string(depth, ']') +
                  R"(,"product":"p"})");
  expect_malformed(R"({"metadata":)" + std::string(depth, '['));
}

TEST(channel_metadata_document, missing_blank_and_empty_fields_are_cms_0001_with_every_field) {
  EXPECT_EQ(expect_validation("{}"), (std::vector<cm::field_error>{{"countryCode", "must not be null"},
                                                                   {"metadata", "must not be null"},
                                                                   {"product", "must not be null"}}));
  EXPECT_EQ(expect_validation(R"({"countryCode":"GB","metadata":[],"product":" \t"})"),
            (std::vector<cm::field_error>{{"metadata", "must not be empty"}, {"product", "must not be blank"}}));
  EXPECT_EQ(
      expect_validation(
          R"({"countryCode":"GB","metadata":[{"name":"a","language":"b","type":"c"},{"name":"","type":null},null],"product":"p"})"),
      (std::vector<cm::field_error>{{"metadata[1].name", "must not be blank"},
                                    {"metadata[1].language", "must not be null"},
                                    {"metadata[1].type", "must not be null"},
                                    {"metadata[2]", "must not be null"}}));
  EXPECT_EQ(expect_validation(R"({"countryCode":"","metadata":null,"product":null})").size(), 3u);
  // The body names the fields, and says what failed in its message too.
  const auto e = refusal("GB", R"({"countryCode":"GB","metadata":[],"product":"p"})");
  EXPECT_EQ(e.body().dump(), R"({"errorCode":"CMS-0001","message":"Validation failed: metadata must not be empty",)"
                             R"("details":[{"field":"metadata","message":"must not be empty"}]})");
}

TEST(channel_metadata_document, a_body_over_the_limit_is_cms_0004_before_parsing) {
  const cm::parse_limits limits{static_cast<std::size_t>(example_body.size())};
  EXPECT_TRUE(cm::parse_request("GB", example_body, limits).has_value());
  const std::string bigger = example_body + " ";
  const auto e = refusal("GB", bigger, limits);
  EXPECT_EQ(e.code, "CMS-0004");
  EXPECT_NE(e.message.find(std::to_string(limits.max_body_bytes)), std::string::npos) << e.message;
  // The default limit holds a large document and refuses a larger body.
  EXPECT_EQ(cm::parse_limits{}.max_body_bytes, 64u * 1024);
  EXPECT_EQ(refusal("GB", std::string(64 * 1024 + 1, ' ')).code, "CMS-0004");
}

TEST(channel_metadata_document, serialize_round_trips_and_keeps_text_as_given) {
  const cm::document d{
      "JP", {{"日本 One", "日本語", "News \"live\""}, {" padded ", "\\", "\u00e9\u0301"}, {"a", "b", "c"}}, "prod/1"};
  const auto bytes = cm::serialize(d);
  auto back = cm::parse_document(bytes);
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_EQ(back.value(), d);
  EXPECT_EQ(cm::serialize(back.value()), bytes);
}

// ---- error mapping ----------------------------------------------------------------------------

TEST(channel_metadata_errors, bulwark_errors_map_onto_the_contracts) {
  using bulwark::errc;
  for (auto op : {cm::operation::read, cm::operation::write}) {
    const auto t = cm::from_bulwark(bulwark::error(errc::timeout, "mysql"), op);
    EXPECT_EQ(t.status, 409);
    EXPECT_EQ(t.body().dump(), R"({"errorCode":"CMS-0002","message":"Timeout occurred"})");
    const auto n = cm::from_bulwark(errc::not_found, op);
    EXPECT_EQ(n.status, 404);
    EXPECT_EQ(n.body().dump(), R"({"errorCode":"CMS-0003","message":"Failed to find item"})");
    const auto c = cm::from_bulwark(bulwark::error(errc::conflict, "v7"), op);
    EXPECT_EQ(c.status, 500);
    EXPECT_EQ(c.message, "An unexpected error occurred: version conflict: v7");
  }
  for (auto e : {errc::unavailable, errc::circuit_open, errc::rejected}) {
    const auto w = cm::from_bulwark(bulwark::error(e, "everything down"), cm::operation::write);
    EXPECT_EQ(w.status, 503) << bulwark::to_string(e);
    EXPECT_EQ(w.code, "CMS-0009");
    EXPECT_NE(w.message.find("everything down"), std::string::npos);
    EXPECT_EQ(w.response().headers.value_or("Retry-After", ""), "1");
    const auto r = cm::from_bulwark(bulwark::error(e, "everything down"), cm::operation::read);
    EXPECT_EQ(r.status, 500);
    EXPECT_EQ(r.code, "CMS-0008");
    EXPECT_TRUE(r.message.starts_with("An unexpected error occurred: ")) << r.message;
  }
  // A native code that maps onto no bulwark condition is unexpected, its text kept as the reason.
  const auto native = cm::from_bulwark(std::make_error_code(std::errc::io_error), cm::operation::write);
  EXPECT_EQ(native.status, 500);
  EXPECT_EQ(native.message, "An unexpected error occurred: " + std::make_error_code(std::errc::io_error).message());
  const auto response = cm::errors::not_found().response();
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(response.headers.value_or("Content-Type", ""), "application/json");
  EXPECT_FALSE(response.headers.contains("Retry-After"));
}

// ---- auth -------------------------------------------------------------------------------------

namespace {

http::request make(std::string target, std::optional<std::string> authorization = std::nullopt) {
  http::request r;
  r.method = "GET";
  r.target = std::move(target);
  if (authorization) r.headers.add("Authorization", *authorization);
  return r;
}

http::response route(http::router& router, http::request req) {
  asio::io_context ctx;
  auto op = [](http::router& r, http::request& q) -> asio::awaitable<std::optional<bulwark::result<http::response>>> {
    co_return co_await r(q);
  };
  auto res = *bulwark::test::run(ctx, op(router, req), std::chrono::seconds(5));
  EXPECT_TRUE(res.has_value());
  return res ? std::move(res).value() : http::response(599);
}

http::handler answer(int status, std::string body) {
  return [status, body](http::request&) -> bulwark::task<http::response> { co_return http::text(status, body); };
}

const std::string cms_basic = "Basic Y21zOmNtc3Bhc3M="; // cms:cmspass
const std::string crs_basic = "Basic Y3JzOmNyc3Bhc3M="; // crs:crspass

} // namespace

TEST(channel_metadata_auth, cms_guards_the_api_with_the_text_401) {
  http::router r;
  r.use(cm::contract_basic_auth({{"cms", "cmspass"}}, "cms", cm::cms_guard));
  r.get("/api/channel-metadata/{countryCode}", answer(200, "doc"));
  r.get("/api/own-401", answer(401, "the handler's own"));
  r.get("/private/status", answer(200, "OK"));
  for (std::optional<std::string> auth :
       {std::optional<std::string>(), std::optional<std::string>("Basic Y21zOmNtc3Bhc3N4"), // cms:cmspassx
        std::optional<std::string>(crs_basic), std::optional<std::string>("Bearer x")}) {
    const auto refused = route(r, make("/api/channel-metadata/GB", auth));
    EXPECT_EQ(refused.status, 401);
    EXPECT_EQ(refused.body, "Invalid or missing credentials");
    EXPECT_EQ(refused.headers.value_or("Content-Type", ""), "text/plain; charset=utf-8");
    EXPECT_EQ(refused.headers.value_or("WWW-Authenticate", ""), "Basic realm=\"cms\"");
  }
  EXPECT_EQ(route(r, make("/api/channel-metadata/GB", cms_basic)).body, "doc");
  EXPECT_EQ(route(r, make("/private/status")).body, "OK");
  const auto own = route(r, make("/api/own-401", cms_basic));
  EXPECT_EQ(own.status, 401);
  EXPECT_EQ(own.body, "the handler's own");
}

TEST(channel_metadata_auth, crs_answers_each_route_with_its_own_401_shape) {
  http::router r;
  r.use(cm::contract_basic_auth({{"crs", "crspass"}}, "crs", cm::crs_guard));
  r.get("/trigger-cache-retry", answer(200, "triggered"));
  r.get("/get-downtime-logs", answer(200, "[]"));
  r.get("/private/healthcheck", answer(200, "up"));
  const auto trigger = route(r, make("/trigger-cache-retry", cms_basic));
  EXPECT_EQ(trigger.status, 401);
  EXPECT_EQ(trigger.body, R"({"statusCode":"401","message":"Invalid or missing credentials"})");
  const auto logs = route(r, make("/get-downtime-logs"));
  EXPECT_EQ(logs.status, 401);
  EXPECT_EQ(logs.body, "Invalid or missing credentials");
  EXPECT_EQ(route(r, make("/trigger-cache-retry", crs_basic)).body, "triggered");
  EXPECT_EQ(route(r, make("/get-downtime-logs?x=1", crs_basic)).body, "[]");
  EXPECT_EQ(route(r, make("/private/healthcheck")).body, "up");
}

// ---- configuration ----------------------------------------------------------------------------

namespace {

struct scratch_file {
  std::filesystem::path path;
  explicit scratch_file(const std::string& content) {
    static int n = 0;
    path = std::filesystem::temp_directory_path() /
           ("cms-config-" + std::to_string(::getpid()) + "-" + std::to_string(++n) + ".json");
    std::ofstream(path) << content;
  }
  ~scratch_file() { std::filesystem::remove(path); }
  std::string str() const { return path.string(); }
};

cm::environment env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

bulwark::result<cm::config> load(cm::service s, std::vector<std::string_view> args,
                                 std::map<std::string, std::string> env = {}) {
  return cm::load_config(s, args, env_of(std::move(env)));
}

std::string refusal_of(cm::service s, std::vector<std::string_view> args, std::map<std::string, std::string> env = {}) {
  auto c = load(s, std::move(args), std::move(env));
  EXPECT_FALSE(c.has_value());
  if (c) return "";
  EXPECT_EQ(c.error(), bulwark::errc::invalid_argument);
  return std::string(c.error().detail());
}

} // namespace

TEST(channel_metadata_config, defaults_when_nothing_is_given) {
  auto cms = load(cm::service::cms, {});
  ASSERT_TRUE(cms.has_value());
  EXPECT_EQ(cms.value().port, 8080);
  EXPECT_EQ(cms.value().backend, cm::backend_kind::memory);
  EXPECT_EQ(cms.value().user, "cms");
  EXPECT_FALSE(cms.value().help);
  auto crs = load(cm::service::crs, {});
  ASSERT_TRUE(crs.has_value());
  EXPECT_EQ(crs.value().port, 8090);
  EXPECT_EQ(crs.value().password, "crspass");
}

TEST(channel_metadata_config, flags_beat_environment_beats_file_beats_defaults) {
  scratch_file file(R"({"port": 1111, "mysql-host": "file-db", "retry-topic": "file-topic", "soft-ttl": "10s"})");
  const std::map<std::string, std::string> env{
      {"CMS_CONFIG", file.str()}, {"CMS_PORT", "2222"}, {"CMS_MYSQL_HOST", "env-db"}};
  auto all = load(cm::service::cms, {"--port", "3333"}, env);
  ASSERT_TRUE(all.has_value()) << all.error();
  EXPECT_EQ(all.value().port, 3333);
  EXPECT_EQ(all.value().mysql_host, "env-db");
  EXPECT_EQ(all.value().retry_topic, "file-topic");
  EXPECT_EQ(all.value().soft_ttl, 10s);
  EXPECT_EQ(all.value().consumer_group, "channel-metadata-group");
  auto no_flag = load(cm::service::cms, {}, env);
  ASSERT_TRUE(no_flag.has_value());
  EXPECT_EQ(no_flag.value().port, 2222);
  auto file_only = load(cm::service::cms, {"--config", file.str()});
  ASSERT_TRUE(file_only.has_value());
  EXPECT_EQ(file_only.value().port, 1111);
  EXPECT_EQ(file_only.value().mysql_host, "file-db");
  // The environment speaks to its own service only.
  auto crs = load(cm::service::crs, {}, {{"CMS_PORT", "2222"}, {"CRS_PORT", "4444"}});
  ASSERT_TRUE(crs.has_value());
  EXPECT_EQ(crs.value().port, 4444);
}

// Port 0 is a free port the kernel picks (the service logs the one it bound), for every port the
// services listen on; they listen on loopback unless told otherwise, as the other examples do.
TEST(channel_metadata_config, listen_ports_may_be_0_and_the_address_defaults_to_loopback) {
  for (auto s : {cm::service::cms, cm::service::crs}) {
    auto c = load(s, {"--port", "0"});
    ASSERT_TRUE(c.has_value()) << c.error();
    EXPECT_EQ(c.value().port, 0);
    EXPECT_EQ(c.value().listen_address, "127.0.0.1");
    const auto help = cm::help_text(s);
    const auto address = help.find("  --address ");
    ASSERT_NE(address, std::string::npos);
    EXPECT_NE(help.substr(address, help.find("  --port ") - address).find("; default 127.0.0.1)"), std::string::npos);
  }
  auto memory = load(cm::service::cms, {"--crs-port", "0"}, {{"CMS_PORT", "0"}});
  ASSERT_TRUE(memory.has_value()) << memory.error();
  EXPECT_EQ(memory.value().port, 0);
  EXPECT_EQ(memory.value().crs_port, 0);
  scratch_file file(R"({"port": 0, "address": "::1"})");
  auto from_file = load(cm::service::crs, {"--config", file.str()});
  ASSERT_TRUE(from_file.has_value()) << from_file.error();
  EXPECT_EQ(from_file.value().port, 0);
  EXPECT_EQ(from_file.value().listen_address, "::1");
}

TEST(channel_metadata_config, every_kind_of_value_parses) {
  scratch_file file(R"({"hazelcast-members": ["h1:5701", "h2:5702"], "max-body-bytes": 1024})");
  const std::string config_flag = "--config=" + file.str();
  auto c = load(cm::service::cms, {config_flag, "--backend=mysql+hazelcast", "--request-timeout", "250ms",
                                   "--database-timeout=2s", "--hard-limit", "1h", "--soft-ttl", "2m", "--kafka-brokers",
                                   "k1:9092,k2:9093", "--snapshot-path", "", "--threads", "4"});
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c.value().backend, cm::backend_kind::mysql_hazelcast);
  EXPECT_EQ(c.value().hazelcast_members, (std::vector<std::string>{"h1:5701", "h2:5702"}));
  EXPECT_EQ(c.value().max_body_bytes, 1024u);
  EXPECT_EQ(c.value().request_timeout, 250ms);
  EXPECT_EQ(c.value().database_timeout, 2s);
  EXPECT_EQ(c.value().hard_limit, 1h);
  EXPECT_EQ(c.value().soft_ttl, 2min);
  EXPECT_EQ(c.value().kafka_brokers, (std::vector<std::string>{"k1:9092", "k2:9093"}));
  EXPECT_EQ(c.value().snapshot_path, "");
  EXPECT_EQ(c.value().threads, 4u);
  EXPECT_EQ(c.value().reconcile_period, 5s) << "the default";
  auto redis = load(cm::service::cms, {"--backend", "mysql+redis", "--redis-port", "6380", "--request-timeout", "1500",
                                       "--reconcile-period", "2s"});
  ASSERT_TRUE(redis.has_value());
  EXPECT_EQ(redis.value().reconcile_period, 2s);
  EXPECT_EQ(redis.value().backend, cm::backend_kind::mysql_redis);
  EXPECT_EQ(redis.value().redis_port, 6380);
  EXPECT_EQ(redis.value().request_timeout, 1500ms);
  auto crs = load(cm::service::crs,
                  {"--consumer-group", "g2", "--outage-mysql-port", "3307", "--reconcile-retry-delay", "1s"});
  ASSERT_TRUE(crs.has_value()) << crs.error();
  EXPECT_EQ(crs.value().consumer_group, "g2");
  EXPECT_EQ(crs.value().outage_mysql_port, 3307);
  EXPECT_EQ(crs.value().reconcile_retry_delay, 1s);
  EXPECT_EQ(load(cm::service::crs, {"--peer-url", "http://cms-1:8080"}).value().peer_url, "http://cms-1:8080");
}

TEST(channel_metadata_config, bad_configuration_is_refused_with_a_message_naming_it) {
  using cm::service;
  auto has = [](const std::string& message, std::string_view part) { return message.find(part) != std::string::npos; };
  EXPECT_PRED2(has, refusal_of(service::cms, {"--nope", "1"}), "--nope");
  EXPECT_PRED2(has, refusal_of(service::cms, {"--consumer-group", "g"}), "--consumer-group"); // CRS's only
  EXPECT_PRED2(has, refusal_of(service::crs, {"--soft-ttl", "1s"}), "--soft-ttl");            // CMS's only
  EXPECT_PRED2(has, refusal_of(service::cms, {"8080"}), "'8080'");
  EXPECT_PRED2(has, refusal_of(service::cms, {"--port"}), "--port needs a value");
  for (std::string_view port : {"65536", "abc", "80x", "-1", ""})
    EXPECT_PRED2(has, refusal_of(service::cms, {"--port", port}), "is not a port");
  for (std::string_view port : {"0", "65536"}) // a port to connect to: 0 is no port
    EXPECT_PRED2(has, refusal_of(service::cms, {"--mysql-port", port}), "is not a port (1-65535)");
  EXPECT_PRED2(has, refusal_of(service::cms, {"--kafka-brokers", "k1:0"}), "is not a port (1-65535)");
  EXPECT_PRED2(has, refusal_of(service::cms, {"--backend", "postgres"}), "unknown backend 'postgres'");
  EXPECT_PRED2(has, refusal_of(service::cms, {"--backend", "MEMORY"}), "unknown backend");
  for (std::string_view d : {"0", "5x", "s", "-1s", "1.5s", "99999999999999h"})
    EXPECT_PRED2(has, refusal_of(service::cms, {"--soft-ttl", d}), "is not a duration");
  EXPECT_PRED2(has, refusal_of(service::cms, {"--hazelcast-members", "h1:5701,h2"}), "'h2' is not host:port");
  EXPECT_PRED2(has, refusal_of(service::cms, {"--user", ""}), "--user: must not be empty");
  EXPECT_PRED2(has, refusal_of(service::cms, {"--max-body-bytes", "0"}), "--max-body-bytes");
  EXPECT_PRED2(has, refusal_of(service::cms, {"--soft-ttl", "2h", "--hard-limit", "1h"}), "exceeds hard-limit");
  EXPECT_PRED2(has, refusal_of(service::cms, {}, {{"CMS_PORT", "http"}}), "CMS_PORT: 'http' is not a port");
  EXPECT_PRED2(has, refusal_of(service::crs, {"--peer-url", "cms:8080"}), "peer-url 'cms:8080' is not an http:// URL");
  EXPECT_PRED2(has, refusal_of(service::crs, {"--peer-url", "http://"}), "is not an http:// URL");
  EXPECT_PRED2(has, refusal_of(service::cms, {"--config", "/nonexistent/cms.json"}),
               "cannot read config file '/nonexistent/cms.json'");
  EXPECT_PRED2(has, refusal_of(service::cms, {"--config", std::filesystem::temp_directory_path().string()}),
               "cannot read config file");
  scratch_file not_json("{port: 1}");
  EXPECT_PRED2(has, refusal_of(service::cms, {"--config", not_json.str()}), "is not a JSON object");
  scratch_file unknown(R"({"prot": 8080})");
  EXPECT_PRED2(has, refusal_of(service::cms, {"--config", unknown.str()}), "\"prot\": unknown setting");
  scratch_file wrong_type(R"({"port": true})");
  EXPECT_PRED2(has, refusal_of(service::cms, {"--config", wrong_type.str()}), "\"port\": expected a string");
  scratch_file bad_value(R"({"port": 70000})");
  EXPECT_PRED2(has, refusal_of(service::cms, {}, {{"CMS_CONFIG", bad_value.str()}}), "\"port\": '70000' is not a port");
}

TEST(channel_metadata_config, help_lists_every_setting_and_startup_exits_as_main_should) {
  for (auto s : {cm::service::cms, cm::service::crs}) {
    const auto help = cm::help_text(s);
    std::size_t listed = 0;
    for (const auto& o : cm::options()) {
      const bool shown = help.find("--" + std::string(o.name) + " ") != std::string::npos;
      EXPECT_EQ(shown, o.applies_to(s)) << o.name;
      if (o.applies_to(s)) {
        ++listed;
        EXPECT_NE(help.find(cm::environment_name(s, o.name)), std::string::npos) << o.name;
      }
    }
    EXPECT_GT(listed, 20u);
    EXPECT_EQ(help.find("cmspass"), std::string::npos) << "secrets are not printed";
    EXPECT_EQ(help.find("crspass"), std::string::npos) << "secrets are not printed";
  }
  EXPECT_NE(cm::help_text(cm::service::crs).find("default channel-metadata-group"), std::string::npos);
  EXPECT_EQ(cm::environment_name(cm::service::crs, "outage-mysql-host"), "CRS_OUTAGE_MYSQL_HOST");

  const std::vector<std::string_view> help_args{"--port", "1", "--help", "--nope"};
  std::ostringstream out, err;
  auto s = cm::resolve_startup(cm::service::cms, help_args, env_of({}), out, err);
  EXPECT_FALSE(s.settings);
  EXPECT_EQ(s.exit_code, 0);
  EXPECT_EQ(out.str(), cm::help_text(cm::service::cms));
  EXPECT_EQ(err.str(), "");

  const std::vector<std::string_view> bad_args{"--port", "99999"};
  std::ostringstream out2, err2;
  s = cm::resolve_startup(cm::service::crs, bad_args, env_of({}), out2, err2);
  EXPECT_FALSE(s.settings);
  EXPECT_NE(s.exit_code, 0);
  EXPECT_EQ(out2.str(), "");
  EXPECT_EQ(err2.str(), "cache-retry-service: bad configuration: --port: '99999' is not a port (0-65535; 0 picks a "
                        "free one)\n"
                        "Run 'cache-retry-service --help' for the settings.\n");

  std::ostringstream out3, err3;
  s = cm::resolve_startup(cm::service::crs, {}, env_of({{"CRS_PORT", "9001"}}), out3, err3);
  ASSERT_TRUE(s.settings);
  EXPECT_EQ(s.settings->port, 9001);
  EXPECT_EQ(s.exit_code, 0);
}

// ---- downtime log -----------------------------------------------------------------------------

TEST(channel_metadata_downtime_log, the_contracts_shape_in_utc_newest_last) {
  using namespace std::chrono;
  const auto at = [](int y, unsigned m, unsigned d, int h, int min, int s) {
    return sys_days{year{y} / month{m} / day{d}} + hours{h} + minutes{min} + seconds{s};
  };
  const auto log = cm::downtime_log_json(
      {{3, at(2024, 9, 18, 8, 30, 5) + 999ms}, {1, at(2024, 9, 17, 12, 0, 0)}, {2, at(2024, 2, 29, 23, 59, 59)}});
  EXPECT_EQ(log.dump(), R"([{"id":2,"downtimeTimestamp":"2024-02-29 23:59:59"},)"
                        R"({"id":1,"downtimeTimestamp":"2024-09-17 12:00:00"},)"
                        R"({"id":3,"downtimeTimestamp":"2024-09-18 08:30:05"}])");
  // The contract's example entry, compared as JSON (it is written with spaces).
  const std::string example = R"([{"id": 1, "downtimeTimestamp": "2024-09-17 12:00:00"}])";
  EXPECT_TRUE(in_contract(example.substr(0, example.size() - 1)));
  EXPECT_EQ(nlohmann::json(cm::downtime_log_json({{1, at(2024, 9, 17, 12, 0, 0)}})), nlohmann::json::parse(example));
  EXPECT_EQ(cm::downtime_log_json({}).dump(), "[]");
  // Equal times keep id order; before 1970 still formats as a date, not garbage.
  EXPECT_EQ(
      cm::downtime_log_json({{9, at(2024, 1, 1, 0, 0, 0)}, {4, at(2024, 1, 1, 0, 0, 0)}}).dump(),
      R"([{"id":4,"downtimeTimestamp":"2024-01-01 00:00:00"},{"id":9,"downtimeTimestamp":"2024-01-01 00:00:00"}])");
  EXPECT_EQ(cm::format_utc(system_clock::time_point{} - 500ms), "1969-12-31 23:59:59");
}

// ---- fuzz-ish ---------------------------------------------------------------------------------

// Mutated and random bodies (and path codes) through parse_request: never an exception or a
// crash, always either a document that round-trips or a 400 with one of the contract's codes
// and, for CMS-0007, one of its two texts. The mutations must reach every outcome, or the test
// proves nothing. Seeded: a failure reproduces.
TEST(channel_metadata_document, mutated_bodies_always_get_a_contract_answer) {
  std::mt19937_64 rng(20240917);
  const std::vector<std::string> seeds{
      example_body, example_canonical,
      R"({"countryCode":"GB","metadata":[{"name":"a","language":"b","type":"c"},{"name":"d","language":"e","type":"f"}],"product":"p"})",
      R"({"countryCode":"gb","metadata":[],"product":" "})",
      R"({"countryCode":"GB","metadata":[{"name":"\u00e9","language":"b","type":"c","x":[1,{"y":null}]}],"product":"p"})"};
  const std::string alphabet = "{}[]\":,. \\-0123456789eEtrufalsn\x80\xff\xc3GBab";
  const std::vector<std::string> paths{"GB", "gb", "Gb", "G", "GBR", "1B", ""};
  std::map<std::string, int> outcomes;
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % std::max<std::size_t>(n, 1)); };
  for (int i = 0; i < 20000; ++i) {
    std::string body = seeds[pick(seeds.size())];
    const int edits = 1 + static_cast<int>(pick(4));
    for (int k = 0; k < edits; ++k) {
      switch (pick(6)) {
      case 0:
        if (!body.empty()) body[pick(body.size())] = alphabet[pick(alphabet.size())];
        break;
      case 1:
        body.insert(body.begin() + static_cast<std::ptrdiff_t>(pick(body.size() + 1)), alphabet[pick(alphabet.size())]);
        break;
      case 2:
        if (!body.empty()) body.erase(pick(body.size()), 1 + pick(8));
        break;
      case 3: body.resize(pick(body.size() + 1)); break;
      case 4: {
        const auto from = pick(body.size()), len = pick(24);
        body.insert(pick(body.size() + 1), body.substr(from, len));
        break;
      }
      default: break; // keep: a few valid bodies must pass too
      }
    }
    const auto& path = paths[pick(paths.size())];
    try {
      auto r = cm::parse_request(path, body, cm::parse_limits{512});
      if (r) {
        ++outcomes["ok"];
        ASSERT_EQ(r.value().country_code, cm::parse_country_code(path).value()) << body;
        auto again = cm::parse_document(cm::serialize(r.value()));
        ASSERT_TRUE(again.has_value()) << body;
        ASSERT_EQ(again.value(), r.value()) << body;
        continue;
      }
      const auto& e = r.error();
      ++outcomes[e.code];
      ASSERT_EQ(e.status, 400) << body;
      ASSERT_TRUE(e.code == "CMS-0001" || e.code == "CMS-0004" || e.code == "CMS-0007") << e.code << " " << body;
      if (e.code == "CMS-0007") {
        ASSERT_TRUE(e.message == cm::text::malformed_json || e.message == cm::text::field_mismatch) << e.message;
      }
      if (e.code == "CMS-0001") {
        ASSERT_FALSE(e.details.empty()) << body;
      }
      const auto dumped = e.body().dump(); // throws on invalid UTF-8 in a message or detail
      ASSERT_FALSE(dumped.empty());
    } catch (const std::exception& ex) {
      FAIL() << "exception " << ex.what() << " for body " << body;
    }
  }
  for (const char* outcome : {"ok", "CMS-0001", "CMS-0004", "CMS-0007"}) EXPECT_GT(outcomes[outcome], 50) << outcome;
}
