#include <bulwark/http.hpp>
#include <bulwark/metrics.hpp>

#include "support.hpp"
#include "support/run.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

namespace http = bulwark::http;
using bulwark::test::raw_client;

namespace {

std::string shell(const std::string& cmd, int* status) {
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (auto n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  *status = ::pclose(p);
  return out;
}

} // namespace

TEST(http_metrics, server_exports_requests_latency_and_connections_and_promtool_accepts_them) {
  BULWARK_REQUIRE_TOOL(BULWARK_PROMTOOL, "promtool");
  auto registry = std::make_shared<bulwark::metrics::registry>();
  http::router routes;
  routes.use(http::route_metrics(registry, "app_http"));
  routes.get("/items/{id}", [](http::request&) -> bulwark::task<http::response> { co_return http::text(200, "i"); });
  routes.get("/metrics", http::metrics_handler(registry));
  http::server_options o;
  o.metrics = registry;
  http::server server(o, routes.as_handler());
  ASSERT_TRUE(server.start());
  raw_client c(server.port());
  for (int i = 0; i < 3; ++i) {
    c.send("GET /items/" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(c.read_response());
  }
  c.send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(c.read_response());
  c.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->headers.value_or("Content-Type", ""), "text/plain; version=0.0.4; charset=utf-8");
  const std::string& text = r->body;
  EXPECT_NE(text.find("bulwark_http_requests_total{route=\"/items/{id}\",method=\"GET\",status=\"200\"} 3\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("bulwark_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("bulwark_http_request_duration_seconds_count{route=\"/items/{id}\",method=\"GET\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("bulwark_http_open_connections 1\n"), std::string::npos);
  EXPECT_NE(text.find("app_http_requests_total{route=\"/items/{id}\",method=\"GET\",status=\"200\"} 3\n"),
            std::string::npos);

  const auto file = std::filesystem::temp_directory_path() / ("bulwark-metrics-" + std::to_string(::getpid()));
  std::ofstream(file) << text;
  int status = 0;
  auto out = shell(std::string(BULWARK_PROMTOOL) + " check metrics < " + file.string() + " 2>&1", &status);
  std::filesystem::remove(file);
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(out, "") << out; // promtool prints lint problems even when it exits 0
  // promtool must be able to fail: a counter without _total is a lint error.
  std::ofstream(file) << "# HELP bad a counter\n# TYPE bad counter\nbad 1\n";
  out = shell(std::string(BULWARK_PROMTOOL) + " check metrics < " + file.string() + " 2>&1", &status);
  std::filesystem::remove(file);
  EXPECT_NE(status, 0) << out;
}

// Regression: the server's built-in metrics and route_metrics both counted every request, into
// bulwark_http_* and http_* (or twice into one series when given the same prefix).
TEST(http_metrics, server_metrics_and_route_metrics_count_one_request_once) {
  auto registry = std::make_shared<bulwark::metrics::registry>();
  http::router routes;
  routes.use(http::route_metrics(registry));
  routes.get("/items/{id}", [](http::request&) -> bulwark::task<http::response> { co_return http::text(200, "i"); });
  routes.get("/boom", [](http::request&) -> bulwark::task<http::response> {
    throw std::runtime_error("boom");
    co_return http::text(200, "never");
  });
  http::server_options o;
  o.metrics = registry;
  http::server server(o, routes.as_handler());
  ASSERT_TRUE(server.start());
  raw_client c(server.port());
  c.send("GET /items/1 HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(c.read_response());
  c.send("GET /boom HTTP/1.1\r\nHost: x\r\n\r\n");
  auto boom = c.read_response();
  ASSERT_TRUE(boom);
  EXPECT_EQ(boom->status, 500);
  const std::string text = registry->expose();
  // Every sample of every *_requests_total and *_request_duration_seconds_count series, summed.
  auto total = [&](std::string_view series) {
    double sum = 0;
    for (std::size_t at = 0; at < text.size();) {
      const auto eol = std::min(text.find('\n', at), text.size());
      const std::string_view line(text.data() + at, eol - at);
      at = eol + 1;
      if (line.starts_with("#")) continue;
      const auto name_end = line.find_first_of("{ ");
      if (!line.substr(0, name_end).ends_with(series)) continue;
      sum += std::stod(std::string(line.substr(line.rfind(' ') + 1)));
    }
    return sum;
  };
  EXPECT_EQ(total("_requests_total"), 2) << text;
  EXPECT_EQ(total("_request_duration_seconds_count"), 2) << text;
  EXPECT_NE(text.find("bulwark_http_requests_total{route=\"/items/{id}\",method=\"GET\",status=\"200\"} 1\n"),
            std::string::npos)
      << text;
  // The exception never reached route_metrics as an answer; the server counted its 500.
  EXPECT_NE(text.find("bulwark_http_requests_total{route=\"/boom\",method=\"GET\",status=\"500\"} 1\n"),
            std::string::npos)
      << text;
}

TEST(http_metrics, open_connections_return_to_zero_however_a_connection_ends) {
  auto registry = std::make_shared<bulwark::metrics::registry>();
  http::router routes;
  routes.get("/hello", [](http::request&) -> bulwark::task<http::response> { co_return http::text(200, "hi"); });
  http::server_options o;
  o.metrics = registry;
  o.idle_timeout = std::chrono::seconds(1);
  http::server server(o, routes.as_handler());
  ASSERT_TRUE(server.start());
  // Connections are accepted and closed on the server's thread: wait (bounded) for it.
  auto open_after_waiting_for = [&](std::size_t n) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (server.open_connections() != n && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return server.open_connections();
  };
  {
    raw_client answered(server.port()), malformed(server.port()), idle(server.port());
    EXPECT_EQ(open_after_waiting_for(3), 3u);
    EXPECT_NE(registry->expose().find("bulwark_http_open_connections 3\n"), std::string::npos);
    answered.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_TRUE(answered.read_response());
    malformed.send("GET /hello HTTP/1.1\r\nHost x\r\n\r\n");
    auto rejected = malformed.read_response();
    ASSERT_TRUE(rejected);
    EXPECT_EQ(rejected->status, 400);
    EXPECT_TRUE(idle.closed_by_peer()); // the idle timeout
  }                                     // `answered` leaves
  EXPECT_EQ(open_after_waiting_for(0), 0u);
  EXPECT_NE(registry->expose().find("bulwark_http_open_connections 0\n"), std::string::npos) << registry->expose();
}

class http_static : public ::testing::Test {
protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() / ("bulwark-static-" + std::to_string(::getpid()));
    std::filesystem::create_directories(root_ / "www" / "sub");
    std::ofstream(root_ / "www" / "index.html") << "<h1>hi</h1>";
    std::ofstream(root_ / "www" / "sub" / "data.json") << "{\"a\":1}";
    std::ofstream(root_ / "secret.txt") << "secret";
    std::filesystem::create_symlink(root_ / "secret.txt", root_ / "www" / "link.txt");
    big_.resize(1 << 20);
    for (std::size_t i = 0; i < big_.size(); ++i) big_[i] = static_cast<char>('a' + i % 26);
    std::ofstream(root_ / "www" / "big.bin", std::ios::binary) << big_;
    routes_.get("/static/{path...}", http::static_files(root_ / "www"));
    routes_.get("/static/", http::static_files(root_ / "www"));
    server_ = std::make_unique<http::server>(http::server_options{}, routes_.as_handler());
    ASSERT_TRUE(server_->start());
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(root_);
  }
  std::optional<http::response> get(const std::string& target, const std::string& extra = "") {
    raw_client c(server_->port());
    c.send("GET " + target + " HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n");
    return c.read_response();
  }
  std::filesystem::path root_;
  std::string big_;
  http::router routes_;
  std::unique_ptr<http::server> server_;
};

TEST_F(http_static, serves_files_with_types_and_etags) {
  auto r = get("/static/sub/data.json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "{\"a\":1}");
  EXPECT_EQ(r->headers.value_or("Content-Type", ""), "application/json");
  const std::string etag(r->headers.value_or("ETag", ""));
  ASSERT_FALSE(etag.empty());
  r = get("/static/sub/data.json", "If-None-Match: \"other\", " + etag + "\r\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 304);
  EXPECT_TRUE(r->body.empty());
  r = get("/static/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "<h1>hi</h1>");
  EXPECT_EQ(r->headers.value_or("Content-Type", ""), "text/html; charset=utf-8");
}

TEST_F(http_static, refuses_traversal_and_escaping_symlinks) {
  for (const char* t : {"/static/../secret.txt", "/static/sub/../../secret.txt", "/static/%2e%2e/secret.txt",
                        "/static/sub/%2E%2E/%2E%2E/secret.txt", "/static/link.txt", "/static/%2fetc%2fpasswd",
                        "/static/missing.txt", "/static/sub%5c..%5c..%5csecret.txt"}) {
    auto r = get(t);
    ASSERT_TRUE(r) << t;
    EXPECT_TRUE(r->status == 404 || r->status == 400) << t << " -> " << r->status;
    EXPECT_EQ(r->body.find("secret"), std::string::npos) << t;
  }
}

TEST_F(http_static, streams_large_files) {
  auto r = get("/static/big.bin");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->headers.value_or("Content-Length", ""), std::to_string(big_.size()));
  EXPECT_TRUE(r->body == big_);
}

namespace {
// A body of unknown length: three pieces, then the end.
class counting_source final : public http::body_source {
public:
  std::optional<std::uint64_t> size() const override { return std::nullopt; }
  bulwark::result<std::size_t> read(std::span<char> out) override {
    if (n_ == 3) return std::size_t{0};
    const std::string piece = "piece" + std::to_string(n_++) + ";";
    std::copy(piece.begin(), piece.end(), out.begin());
    return piece.size();
  }

private:
  int n_ = 0;
};
} // namespace

TEST(http_streaming, unknown_length_body_is_sent_chunked_and_keeps_the_connection) {
  http::router routes;
  routes.get("/stream", [](http::request&) -> bulwark::task<http::response> {
    http::response r(200);
    r.stream = std::make_shared<counting_source>();
    co_return r;
  });
  routes.get("/after", [](http::request&) -> bulwark::task<http::response> { co_return http::text(200, "after"); });
  http::server server({}, routes.as_handler());
  ASSERT_TRUE(server.start());
  raw_client c(server.port());
  c.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->headers.value_or("Transfer-Encoding", ""), "chunked");
  EXPECT_EQ(r->body, "piece0;piece1;piece2;");
  c.send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "after");
  // HTTP/1.0 gets a close-delimited body instead.
  raw_client old(server.port());
  old.send("GET /stream HTTP/1.0\r\n\r\n");
  r = old.read_response();
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->headers.contains("Transfer-Encoding"));
  EXPECT_EQ(r->body, "piece0;piece1;piece2;");
}
