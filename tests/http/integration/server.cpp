#include <bulwark/http/server.hpp>

#include <bulwark/http/router.hpp>

#include "support.hpp"
#include "support/run.hpp"

#include <asio/steady_timer.hpp>
#include <gtest/gtest.h>

#include <cstdio>
#include <future>
#include <thread>

namespace http = bulwark::http;
using bulwark::test::raw_client;
using namespace std::chrono_literals;

namespace {

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

struct fixture {
  http::router routes;
  std::unique_ptr<http::server> server;

  explicit fixture(http::server_options o = {}) {
    routes.get("/hello", [](http::request&) -> bulwark::task<http::response> { co_return http::text(200, "hello"); });
    routes.get("/echo/{word}", [](http::request& r) -> bulwark::task<http::response> {
      co_return http::text(200, std::string(*r.param("word")));
    });
    routes.get("/slow/{ms}", [](http::request& r) -> bulwark::task<http::response> {
      co_await sleep_for(std::chrono::milliseconds(std::stoi(std::string(*r.param("ms")))));
      co_return http::text(200, "slow");
    });
    routes.post("/body", [](http::request& r) -> bulwark::task<http::response> {
      co_return http::text(200, "got " + std::to_string(r.body.size()) + ":" + r.body);
    });
    routes.get("/throw", [](http::request&) -> bulwark::task<http::response> {
      throw std::runtime_error("boom");
      co_return http::text(200, "never");
    });
    routes.get("/fail", [](http::request&) -> bulwark::task<http::response> {
      co_return bulwark::error(bulwark::errc::conflict, "version 3 is not 4");
    });
    server = std::make_unique<http::server>(std::move(o), routes.as_handler());
    auto started = server->start();
    if (!started) throw std::runtime_error(started.error().message());
  }
  std::uint16_t port() const { return server->port(); }
};

} // namespace

TEST(http_server, answers_and_keeps_the_connection_alive) {
  fixture f;
  raw_client c(f.port());
  ASSERT_TRUE(c.connected());
  for (int i = 0; i < 3; ++i) {
    c.send("GET /echo/w" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n");
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "w" + std::to_string(i));
    EXPECT_FALSE(r->close);
    EXPECT_TRUE(r->headers.contains("Date"));
  }
  EXPECT_EQ(f.server->open_connections(), 1u);
}

TEST(http_server, pipelined_requests_are_answered_in_order) {
  fixture f;
  raw_client c(f.port());
  // The first is slow: the later ones must still come after it.
  c.send("GET /slow/100 HTTP/1.1\r\nHost: x\r\n\r\nGET /echo/two HTTP/1.1\r\nHost: x\r\n\r\n"
         "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /echo/four HTTP/1.1\r\nHost: x\r\n\r\n");
  std::vector<std::string> bodies;
  for (int i = 0; i < 4; ++i) {
    auto r = c.read_response();
    ASSERT_TRUE(r) << i;
    bodies.push_back(r->body);
  }
  EXPECT_EQ(bodies, (std::vector<std::string>{"slow", "two", "got 3:abc", "four"}));
}

TEST(http_server, routing_errors_and_head) {
  fixture f;
  raw_client c(f.port());
  c.send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  c.send("DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->headers.value_or("Allow", ""), "GET, HEAD");
  c.send("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  r = c.read_response(true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->headers.value_or("Content-Length", ""), "5");
  EXPECT_TRUE(r->body.empty());
  // The connection is still in sync after HEAD: the next answer parses.
  c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "hello");
}

TEST(http_server, handler_error_becomes_status_with_json_body) {
  fixture f;
  raw_client c(f.port());
  c.send("GET /fail HTTP/1.1\r\nHost: x\r\n\r\n");
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 409);
  EXPECT_EQ(r->headers.value_or("Content-Type", ""), "application/json");
  auto body = nlohmann::json::parse(r->body);
  EXPECT_EQ(body["error"], "conflict");
  EXPECT_NE(body["message"].get<std::string>().find("version 3 is not 4"), std::string::npos);
}

TEST(http_server, exception_becomes_500_and_spares_other_connections) {
  fixture f;
  raw_client other(f.port());
  other.send("GET /slow/200 HTTP/1.1\r\nHost: x\r\n\r\n");
  raw_client c(f.port());
  c.send("GET /throw HTTP/1.1\r\nHost: x\r\n\r\n");
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("boom"), std::string::npos);
  // Same connection still usable, the neighbour still answered.
  c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(c.read_response());
  auto o = other.read_response();
  ASSERT_TRUE(o);
  EXPECT_EQ(o->body, "slow");
}

TEST(http_server, malformed_request_gets_400_and_close) {
  fixture f;
  raw_client c(f.port());
  c.send("POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_TRUE(r->close);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST(http_server, limits_are_answered_with_431_413_414) {
  http::server_options o;
  o.limits.max_header_bytes = 256;
  o.limits.max_body = 16;
  o.limits.max_request_line = 64;
  fixture f(o);
  {
    raw_client c(f.port());
    c.send("GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(300, 'a') + "\r\n\r\n");
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 431);
  }
  {
    raw_client c(f.port());
    c.send("POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n");
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
  }
  {
    raw_client c(f.port());
    c.send("GET /" + std::string(100, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n");
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 414);
  }
}

TEST(http_server, expect_100_continue_and_chunked_body) {
  fixture f;
  raw_client c(f.port());
  c.send("POST /body HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
  auto interim = c.read_until("\r\n\r\n");
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  c.send("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "got 5:abcde");
}

TEST(http_server, idle_and_read_timeouts_close_the_connection) {
  http::server_options o;
  o.idle_timeout = 200ms;
  o.read_timeout = 300ms;
  fixture f(o);
  const auto t0 = std::chrono::steady_clock::now();
  raw_client idle(f.port());
  raw_client slow(f.port());
  slow.send("GET /hello HTTP/1.1\r\nHo"); // never finished
  EXPECT_TRUE(idle.closed_by_peer());
  EXPECT_TRUE(slow.closed_by_peer());
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 2s);
}

TEST(http_server, max_connections_turns_away_the_excess_with_503) {
  http::server_options o;
  o.max_connections = 2;
  fixture f(o);
  raw_client a(f.port()), b(f.port());
  a.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  b.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(a.read_response());
  ASSERT_TRUE(b.read_response());
  raw_client c(f.port());
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
}

TEST(http_server, graceful_shutdown_finishes_in_flight_and_closes_idle) {
  fixture f;
  raw_client busy(f.port()), idle(f.port());
  idle.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(idle.read_response());
  busy.send("GET /slow/300 HTTP/1.1\r\nHost: x\r\n\r\n");
  std::this_thread::sleep_for(50ms); // let the request reach its handler
  const auto t0 = std::chrono::steady_clock::now();
  auto stopped = std::async(std::launch::async, [&] { f.server->stop(5s); });
  EXPECT_TRUE(idle.closed_by_peer());
  auto r = busy.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "slow");
  EXPECT_TRUE(r->close);
  stopped.get();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  raw_client late(f.port());
  EXPECT_FALSE(late.connected());
}

TEST(http_server, shutdown_deadline_bounds_a_stuck_handler) {
  fixture f;
  raw_client busy(f.port());
  busy.send("GET /slow/10000 HTTP/1.1\r\nHost: x\r\n\r\n");
  std::this_thread::sleep_for(50ms);
  const auto t0 = std::chrono::steady_clock::now();
  f.server->stop(200ms);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_TRUE(busy.closed_by_peer());
}

TEST(http_server, several_threads_share_the_work_in_both_accept_modes) {
  for (auto mode : {http::server_options::accept_mode::reuse_port, http::server_options::accept_mode::round_robin}) {
    http::server_options o;
    o.threads = 2;
    o.accept = mode;
    fixture f(o);
    std::vector<std::unique_ptr<raw_client>> clients;
    for (int i = 0; i < 8; ++i) {
      clients.push_back(std::make_unique<raw_client>(f.port()));
      clients.back()->send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    for (auto& c : clients) {
      auto r = c->read_response();
      ASSERT_TRUE(r);
      EXPECT_EQ(r->body, "hello");
    }
    f.server->stop(std::chrono::seconds(1));
  }
}

TEST(http_server, curl_as_an_independent_client) {
  BULWARK_REQUIRE_TOOL(BULWARK_CURL, "curl");
  fixture f;
  const std::string url = "http://127.0.0.1:" + std::to_string(f.port());
  // Two URLs on one curl: the second reuses the connection; also a POST with a body.
  const std::string cmd = std::string(BULWARK_CURL) + " -sS --max-time 5 -w ' %{http_code} %{num_connects}\\n' " + url +
                          "/echo/a " + url + "/echo/b && " + BULWARK_CURL + " -sS --max-time 5 -d 'x=1' " + url +
                          "/body";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[256];
  while (auto n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0);
  EXPECT_EQ(out, "a 200 1\nb 200 0\ngot 3:x=1");
}
