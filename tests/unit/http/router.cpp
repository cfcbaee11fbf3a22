#include <bulwark/http/router.hpp>

#include <bulwark/http/middleware.hpp>

#include "support/run.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace http = bulwark::http;

namespace {

http::request make(std::string method, std::string target, std::vector<std::pair<std::string, std::string>> h = {}) {
  http::request r;
  r.method = std::move(method);
  r.target = std::move(target);
  for (auto& [n, v] : h) r.headers.add(n, v);
  return r;
}

http::response route(http::router& router, http::request& req) {
  asio::io_context ctx;
  auto op = [](http::router& r, http::request& q) -> asio::awaitable<std::optional<bulwark::result<http::response>>> {
    co_return co_await r(q);
  };
  auto res = *bulwark::test::run(ctx, op(router, req), std::chrono::seconds(5));
  if (!res.has_value()) return http::error_response(res.error());
  return std::move(res).value();
}

http::handler answer(std::string body) {
  return [body](http::request& req) -> bulwark::task<http::response> {
    std::string params;
    for (auto& [n, v] : req.params) params += "," + n + "=" + v;
    co_return http::text(200, body + params);
  };
}

} // namespace

TEST(http_router, matches_literals_and_parameters) {
  http::router r;
  r.get("/", answer("root"));
  r.get("/api/channel-metadata/{countryCode}", answer("one"));
  r.get("/api/channel-metadata/{countryCode}/channels/{id}", answer("two"));
  r.get("/files/{path...}", answer("files"));
  auto q = make("GET", "/api/channel-metadata/NL?x=1");
  EXPECT_EQ(route(r, q).body, "one,countryCode=NL");
  EXPECT_EQ(q.route, "/api/channel-metadata/{countryCode}");
  q = make("GET", "/api/channel-metadata/N%20L/channels/7");
  EXPECT_EQ(route(r, q).body, "two,countryCode=N L,id=7");
  q = make("GET", "/files/a/b/c.txt");
  EXPECT_EQ(route(r, q).body, "files,path=a/b/c.txt");
  q = make("GET", "/");
  EXPECT_EQ(route(r, q).body, "root");
  // An empty parameter segment and extra segments do not match.
  q = make("GET", "/api/channel-metadata/");
  EXPECT_EQ(route(r, q).status, 404);
  q = make("GET", "/api/channel-metadata/NL/extra");
  EXPECT_EQ(route(r, q).status, 404);
  q = make("GET", "/files/");
  EXPECT_EQ(route(r, q).status, 404);
}

TEST(http_router, method_not_allowed_lists_allowed_methods_and_head_uses_get) {
  http::router r;
  r.get("/items/{id}", answer("get"));
  r.put("/items/{id}", answer("put"));
  r.post("/items", answer("post"));
  auto q = make("DELETE", "/items/3");
  auto resp = route(r, q);
  EXPECT_EQ(resp.status, 405);
  EXPECT_EQ(resp.headers.value_or("Allow", ""), "GET, HEAD, PUT");
  EXPECT_EQ(nlohmann::json::parse(resp.body)["error"], "method_not_allowed");
  q = make("HEAD", "/items/3");
  EXPECT_EQ(route(r, q).body, "get,id=3");
  q = make("GET", "/nothing");
  resp = route(r, q);
  EXPECT_EQ(resp.status, 404);
  EXPECT_EQ(nlohmann::json::parse(resp.body)["error"], "not_found");
}

TEST(http_router, handler_errors_map_to_statuses) {
  EXPECT_EQ(http::error_response(bulwark::error(bulwark::errc::not_found)).status, 404);
  EXPECT_EQ(http::error_response(bulwark::error(bulwark::errc::unavailable)).status, 503);
  EXPECT_EQ(http::error_response(bulwark::error(bulwark::errc::timeout)).status, 504);
  EXPECT_EQ(http::error_response(bulwark::error(bulwark::errc::invalid_argument)).status, 400);
  EXPECT_EQ(http::error_response(bulwark::error(std::make_error_code(std::errc::io_error))).status, 500);
}

TEST(http_middleware, runs_in_order_around_the_handler_and_sees_the_route) {
  http::router r;
  std::vector<std::string> trace;
  r.use([&](http::request& q, const http::handler& next) -> bulwark::task<http::response> {
    trace.push_back("outer:" + q.route);
    auto res = co_await next(q);
    trace.push_back("outer-after");
    co_return res;
  });
  r.use([&](http::request& q, const http::handler& next) -> bulwark::task<http::response> {
    trace.push_back("inner");
    co_return co_await next(q);
  });
  r.get("/x/{id}", answer("x"));
  auto q = make("GET", "/x/1");
  route(r, q);
  EXPECT_EQ(trace, (std::vector<std::string>{"outer:/x/{id}", "inner", "outer-after"}));
}

TEST(http_middleware, request_id_echoes_a_uuid_or_generates_v4) {
  http::router r;
  r.use(http::request_id());
  r.get("/", [](http::request& q) -> bulwark::task<http::response> {
    co_return http::text(200, std::string(q.headers.value_or("request-id", "")));
  });
  const std::string given = "123e4567-e89b-12d3-a456-426614174000";
  auto q = make("GET", "/", {{"request-id", given}});
  auto resp = route(r, q);
  EXPECT_EQ(resp.body, given);
  EXPECT_EQ(resp.headers.value_or("request-id", ""), given);
  q = make("GET", "/", {{"request-id", "not-a-uuid; DROP TABLE"}});
  resp = route(r, q);
  const auto id = std::string(resp.headers.value_or("request-id", ""));
  ASSERT_EQ(id.size(), 36u);
  EXPECT_EQ(id[14], '4');
  EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos);
  EXPECT_EQ(resp.body, id);
  q = make("GET", "/");
  EXPECT_NE(route(r, q).headers.value_or("request-id", ""), id);
}

TEST(http_middleware, basic_auth) {
  http::router r;
  r.use(http::basic_auth({{"admin", "s3cret"}}, "ops", {"/health"}));
  r.get("/", answer("in"));
  r.get("/health", answer("ok"));
  auto q = make("GET", "/");
  auto resp = route(r, q);
  EXPECT_EQ(resp.status, 401);
  EXPECT_EQ(resp.headers.value_or("WWW-Authenticate", ""), "Basic realm=\"ops\"");
  q = make("GET", "/", {{"Authorization", "Basic YWRtaW46czNjcmV0"}}); // admin:s3cret
  EXPECT_EQ(route(r, q).status, 200);
  q = make("GET", "/", {{"Authorization", "Basic YWRtaW46czNjcmV1"}}); // admin:s3creu
  EXPECT_EQ(route(r, q).status, 401);
  q = make("GET", "/", {{"Authorization", "Basic !!!!"}});
  EXPECT_EQ(route(r, q).status, 401);
  q = make("GET", "/health");
  EXPECT_EQ(route(r, q).status, 200);
}

TEST(http_middleware, bearer_auth_and_constant_time_compare) {
  http::router r;
  r.use(http::bearer_auth({"tok-1", "tok-2"}));
  r.get("/", answer("in"));
  auto q = make("GET", "/", {{"Authorization", "Bearer tok-2"}});
  EXPECT_EQ(route(r, q).status, 200);
  q = make("GET", "/", {{"Authorization", "Bearer tok-"}});
  EXPECT_EQ(route(r, q).status, 401);
  q = make("GET", "/", {{"Authorization", "Bearer tok-22"}});
  EXPECT_EQ(route(r, q).status, 401);
  EXPECT_TRUE(http::detail::constant_time_equal("abc", "abc"));
  EXPECT_FALSE(http::detail::constant_time_equal("abc", "abd"));
  EXPECT_FALSE(http::detail::constant_time_equal("abc", "abcd"));
  EXPECT_FALSE(http::detail::constant_time_equal("", "a"));
}

TEST(http_middleware, cors_preflight_and_simple_requests) {
  http::router r;
  r.use(http::cors({.origins = {"https://ok.example"}}));
  r.get("/", answer("in"));
  auto q = make("OPTIONS", "/", {{"Origin", "https://ok.example"}, {"Access-Control-Request-Method", "GET"}});
  auto resp = route(r, q);
  EXPECT_EQ(resp.status, 204);
  EXPECT_EQ(resp.headers.value_or("Access-Control-Allow-Origin", ""), "https://ok.example");
  EXPECT_TRUE(resp.headers.contains("Access-Control-Allow-Methods"));
  q = make("OPTIONS", "/", {{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "GET"}});
  EXPECT_EQ(route(r, q).status, 403);
  q = make("GET", "/", {{"Origin", "https://ok.example"}});
  resp = route(r, q);
  EXPECT_EQ(resp.headers.value_or("Access-Control-Allow-Origin", ""), "https://ok.example");
  EXPECT_EQ(resp.headers.value_or("Vary", ""), "Origin");
  q = make("GET", "/", {{"Origin", "https://evil.example"}});
  EXPECT_FALSE(route(r, q).headers.contains("Access-Control-Allow-Origin"));
}

TEST(http_middleware, access_log_writes_one_json_line) {
  http::router r;
  std::vector<std::string> lines;
  r.use(http::request_id());
  r.use(http::access_log([&](const std::string& l) { lines.push_back(l); }));
  r.get("/x/{id}", answer("x"));
  auto q = make("GET", "/x/9?y=1");
  route(r, q);
  ASSERT_EQ(lines.size(), 1u);
  auto j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["method"], "GET");
  EXPECT_EQ(j["target"], "/x/9?y=1");
  EXPECT_EQ(j["route"], "/x/{id}");
  EXPECT_EQ(j["status"], 200);
  EXPECT_EQ(j["request_id"].get<std::string>().size(), 36u);
}

TEST(http_middleware, access_log_lines_stay_valid_json_whatever_they_carry) {
  http::router r;
  std::vector<std::string> lines;
  r.use(http::access_log([&](const std::string& l) { lines.push_back(l); }));
  r.get("/ok", answer("12345"));
  // An error whose message has quotes, a backslash, control characters, valid UTF-8 (é, €,
  // U+1F600) and invalid bytes: a lone continuation byte, 0xff, a truncated sequence, an
  // overlong '/' (0xc0 0xaf) and a UTF-16 surrogate (0xed 0xa0 0x80).
  const std::string message =
      "say \"no\" \\ \n\t\x01\x1f \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \x80\xff\xe2\x82 \xc0\xaf \xed\xa0\x80.";
  r.get("/fail", [&](http::request&) -> bulwark::task<http::response> {
    co_return bulwark::error(bulwark::errc::conflict, message);
  });
  auto ok = make("GET", "/ok?q=\"a\\b\"", {{"request-id", "id \"1\""}});
  route(r, ok);
  auto fail = make("GET", "/fail");
  route(r, fail);
  ASSERT_EQ(lines.size(), 2u);

  auto first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first["target"], "/ok?q=\"a\\b\"");
  EXPECT_EQ(first["route"], "/ok");
  EXPECT_EQ(first["method"], "GET");
  EXPECT_EQ(first["status"], 200);
  EXPECT_EQ(first["bytes"], 5);
  EXPECT_EQ(first["request_id"], "id \"1\"");
  EXPECT_TRUE(first["duration_ms"].is_number());
  EXPECT_GE(first["duration_ms"].get<double>(), 0.0);
  EXPECT_FALSE(first.contains("error"));
  // Keys in a fixed order, as the line's documentation says.
  EXPECT_EQ(lines[0].rfind("{\"bytes\":5,\"duration_ms\":", 0), 0u) << lines[0];

  auto second = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(second["status"], 409);
  EXPECT_FALSE(second.contains("bytes"));
  const std::string replacement = "\xef\xbf\xbd"; // U+FFFD
  const std::string expected = "say \"no\" \\ \n\t\x01\x1f \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 " + replacement +
                               replacement + replacement + replacement + " " + replacement + replacement + " " +
                               replacement + replacement + replacement + ".";
  // message() is "<the code's text>: <detail>"; the code's text is plain ASCII.
  const auto full = bulwark::error(bulwark::errc::conflict, message).message();
  const auto prefix = full.substr(0, full.size() - message.size());
  EXPECT_EQ(second["error"], prefix + expected);
  EXPECT_NE(lines[1].find("\\u0001\\u001f"), std::string::npos) << lines[1];
}

TEST(http_middleware, route_metrics_counts_each_request_once_per_series) {
  auto registry = std::make_shared<bulwark::metrics::registry>();
  http::router r;
  r.use(http::route_metrics(registry));
  r.use(http::route_metrics(registry)); // the same series again: must not count twice
  r.use(http::route_metrics(registry, "app_http"));
  r.get("/x/{id}", answer("x"));
  r.get("/fail", [](http::request&) -> bulwark::task<http::response> {
    co_return bulwark::error(bulwark::errc::conflict, "stale");
  });
  for (const auto& target : {"/x/1", "/x/2", "/nope", "/fail"}) {
    auto q = make("GET", target);
    route(r, q);
  }
  const std::string text = registry->expose();
  for (const std::string prefix : {"bulwark_http", "app_http"}) {
    EXPECT_NE(text.find(prefix + "_requests_total{route=\"/x/{id}\",method=\"GET\",status=\"200\"} 2\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find(prefix + "_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find(prefix + "_requests_total{route=\"/fail\",method=\"GET\",status=\"409\"} 1\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find(prefix + "_request_duration_seconds_count{route=\"/x/{id}\",method=\"GET\"} 2\n"),
              std::string::npos)
        << text;
  }
  EXPECT_EQ(text.find("open_connections"), std::string::npos) << text; // a server's gauge, not the router's
}
