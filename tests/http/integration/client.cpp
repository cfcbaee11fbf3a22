#include <bulwark/http/client.hpp>

#include <bulwark/http/router.hpp>
#include <bulwark/http/server.hpp>

#include "support.hpp"
#include "support/run.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <thread>

namespace http = bulwark::http;
using bulwark::errc;
using namespace std::chrono_literals;

namespace {

/// A scripted server on a POSIX socket: `script(fd)` runs for every accepted connection.
class fake_server {
public:
  explicit fake_server(std::function<void(int)> script) : script_(std::move(script)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 16);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        ++accepted_;
        script_(c);
        ::close(c);
      }
    });
  }
  ~fake_server() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  http::endpoint where() const { return {"127.0.0.1", port_}; }
  int accepted() const { return accepted_.load(); }

  /// Reads one request head (up to the blank line); false on EOF.
  static bool read_head(int fd) {
    std::string got;
    char ch;
    while (got.find("\r\n\r\n") == std::string::npos) {
      if (::recv(fd, &ch, 1, 0) != 1) return false;
      got.push_back(ch);
    }
    return true;
  }
  static void send_all(int fd, std::string_view s) { ::send(fd, s.data(), s.size(), MSG_NOSIGNAL); }

private:
  std::function<void(int)> script_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

bulwark::result<http::response> call(http::client& c, const http::endpoint& to, http::request req,
                                     asio::io_context& ctx) {
  // test::run needs a default-constructible value: wrap the result in an optional.
  auto op = [](http::client& c, http::endpoint to,
               http::request req) -> asio::awaitable<std::optional<bulwark::result<http::response>>> {
    co_return co_await c.request(to, std::move(req));
  };
  return *bulwark::test::run(ctx, op(c, to, std::move(req)), 10s);
}

} // namespace

TEST(http_client, keep_alive_pool_reuses_connections) {
  http::router routes;
  routes.post("/echo", [](http::request& r) -> bulwark::task<http::response> { co_return http::text(201, r.body); });
  http::server server({}, routes.as_handler());
  ASSERT_TRUE(server.start());
  asio::io_context ctx;
  http::client c(ctx.get_executor());
  const http::endpoint to{"127.0.0.1", server.port()};
  for (int i = 0; i < 3; ++i) {
    auto r = call(c, to, http::make_request("POST", "/echo", "payload" + std::to_string(i), "text/plain"), ctx);
    ASSERT_TRUE(r.has_value()) << r.error();
    EXPECT_EQ(r.value().status, 201);
    EXPECT_EQ(r.value().body, "payload" + std::to_string(i));
    EXPECT_EQ(c.idle_connections(), 1u);
    EXPECT_EQ(server.open_connections(), 1u);
  }
  auto r = call(c, to, http::make_request("GET", "/missing"), ctx);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r.value().status, 404);
}

TEST(http_client, stale_pooled_connection_is_replaced) {
  http::router routes;
  routes.get("/x", [](http::request&) -> bulwark::task<http::response> { co_return http::text(200, "x"); });
  http::server_options o;
  o.idle_timeout = 50ms;
  http::server server(o, routes.as_handler());
  ASSERT_TRUE(server.start());
  asio::io_context ctx;
  http::client c(ctx.get_executor());
  const http::endpoint to{"127.0.0.1", server.port()};
  ASSERT_TRUE(call(c, to, http::make_request("GET", "/x"), ctx).has_value());
  std::this_thread::sleep_for(300ms); // the server closes the idle connection
  // A POST is never retried, so this only passes if the dead pooled connection is skipped.
  auto r = call(c, to, http::make_request("POST", "/x", "b"), ctx);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r.value().status, 405);
}

TEST(http_client, refused_connection_is_unavailable) {
  std::uint16_t port;
  {
    fake_server s([](int) {});
    port = s.where().port;
  }
  asio::io_context ctx;
  http::client c(ctx.get_executor());
  auto r = call(c, {"127.0.0.1", port}, http::make_request("GET", "/"), ctx);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), errc::unavailable);
  EXPECT_EQ(r.error().code(), http::client_errc::connect_failed);
}

TEST(http_client, closed_without_answer_is_a_protocol_error_and_retried_only_when_idempotent) {
  fake_server s([](int fd) { fake_server::read_head(fd); });
  asio::io_context ctx;
  http::client c(ctx.get_executor());
  const auto t0 = std::chrono::steady_clock::now();
  auto r = call(c, s.where(), http::make_request("POST", "/hazelcast/rest/nothing", "v"), ctx);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), errc::protocol_error);
  EXPECT_EQ(r.error().code(), http::client_errc::closed_without_response);
  EXPECT_EQ(s.accepted(), 1);
  r = call(c, s.where(), http::make_request("GET", "/hazelcast/rest/nothing"), ctx);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), http::client_errc::closed_without_response);
  EXPECT_EQ(s.accepted(), 3); // one retry
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}

TEST(http_client, silent_server_times_out) {
  std::atomic<bool> release{false};
  fake_server s([&](int fd) {
    fake_server::read_head(fd);
    while (!release) std::this_thread::sleep_for(10ms);
  });
  asio::io_context ctx;
  http::client_options o;
  o.request_timeout = 200ms;
  http::client c(ctx.get_executor(), o);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = call(c, s.where(), http::make_request("POST", "/", "x"), ctx);
  const auto took = std::chrono::steady_clock::now() - t0;
  release = true;
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), errc::timeout);
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 2s);
}

TEST(http_client, response_framings_and_interim_answers) {
  fake_server s([](int fd) {
    while (fake_server::read_head(fd)) {
      fake_server::send_all(fd, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "3\r\nabc\r\n0\r\n\r\n");
      if (!fake_server::read_head(fd)) return;
      fake_server::send_all(fd, "HTTP/1.1 200 OK\r\n\r\nuntil close");
      return; // close delimits the body
    }
  });
  asio::io_context ctx;
  http::client c(ctx.get_executor());
  auto r = call(c, s.where(), http::make_request("GET", "/a"), ctx);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r.value().body, "abc");
  r = call(c, s.where(), http::make_request("GET", "/b"), ctx);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r.value().body, "until close");
  EXPECT_EQ(c.idle_connections(), 0u);
}

TEST(http_client, truncated_and_malformed_answers) {
  fake_server s([](int fd) {
    fake_server::read_head(fd);
    fake_server::send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
  });
  asio::io_context ctx;
  http::client c(ctx.get_executor());
  auto r = call(c, s.where(), http::make_request("GET", "/"), ctx);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), http::client_errc::truncated_response);
  EXPECT_EQ(r.error(), errc::protocol_error);

  fake_server bad([](int fd) {
    fake_server::read_head(fd);
    fake_server::send_all(fd, "HTTP/1.1 OK\r\n\r\n");
  });
  r = call(c, bad.where(), http::make_request("GET", "/"), ctx);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), http::client_errc::malformed_response);
}
