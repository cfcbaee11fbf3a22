// The channel-metadata executables against the real servers (label integration): both services
// started as processes, on MySQL + Redis + Kafka and on MySQL + Hazelcast + Kafka (the shared
// servers, unique tables, key prefixes, topics and groups), and an outage of a private MariaDB
// that this test stops and starts (scripts/servers/mysql.sh, as tests/mysql/failure.cpp does):
// a write accepted pending (202), read back while the database is down, replayed by CRS once it
// is back, the outage in the downtime log. Servers from `source /work/servers/env`
// (BULWARK_*); missing ones skip, or fail under BULWARK_REQUIRE_SERVERS.

#include <channel_metadata/peer.hpp>

#include <bulwark/http/client.hpp>

#include "mysql/fixture.hpp"
#include "support/run.hpp"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace cm = channel_metadata;
namespace http = bulwark::http;
using namespace std::literals;

namespace {

// A free loopback port (bound and released: another process could take it first, rarely).
std::uint16_t free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

// One service process; SIGTERM (then SIGKILL after 10 s) when it goes.
class service_process {
public:
  service_process(const std::string& program, const std::vector<std::string>& args, std::string log)
      : log_(std::move(log)) {
    std::vector<char*> argv;
    std::vector<std::string> all{program};
    all.insert(all.end(), args.begin(), args.end());
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (posix_spawn(&pid_, program.c_str(), &fa, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~service_process() { terminate(10s); }
  // SIGTERM, then SIGKILL after `limit`. How long the process took to exit by itself (nullopt:
  // it had to be killed, or was not running).
  std::optional<std::chrono::milliseconds> terminate(std::chrono::milliseconds limit) {
    if (pid_ <= 0) return std::nullopt;
    const pid_t pid = std::exchange(pid_, -1);
    const auto sent = std::chrono::steady_clock::now();
    ::kill(pid, SIGTERM);
    while (std::chrono::steady_clock::now() - sent < limit) {
      if (::waitpid(pid, nullptr, WNOHANG) == pid)
        return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - sent);
      ::usleep(10'000);
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return std::nullopt;
  }
  service_process(const service_process&) = delete;
  service_process& operator=(const service_process&) = delete;
  bool running() const { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }
  std::string log() const {
    std::ifstream in(log_);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

private:
  std::string log_;
  pid_t pid_ = -1;
};

struct answer {
  int status = 0; // 0: no answer (transport error)
  std::string body;
  std::string header(std::string_view name) const {
    return headers.contains(name) ? std::string(*headers.get(name)) : "";
  }
  http::fields headers;
};

class channel_metadata_servers : public ::testing::Test {
protected:
  answer call(std::uint16_t port, std::string method, std::string target, std::string body = {},
              std::string auth = cm::basic_authorization("cms", "cmspass")) {
    http::client c(io_.get_executor(), {.connect_timeout = 2s, .request_timeout = 10s, .max_retries = 0});
    auto req = http::make_request(std::move(method), std::move(target), std::move(body), "application/json");
    if (!auth.empty()) req.headers.set("Authorization", std::move(auth));
    auto r = bulwark::test::run(io_, c.request({"127.0.0.1", port}, std::move(req)), 20s);
    if (!r) return {};
    return {r.value().status, r.value().body, r.value().headers};
  }

  // Polls `done` every 100 ms (real time: these are other processes) until it holds or `limit`.
  bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = 30s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      if (done()) return true;
      asio::steady_timer t(io_, 100ms);
      bulwark::test::run(io_, [](asio::steady_timer& timer) -> asio::awaitable<void> {
        co_await timer.async_wait(asio::use_awaitable);
      }(t));
    }
    return done();
  }

  // Starts CMS and CRS with `backend_flags` (the cache) and `mysql` (both services' databases).
  void start(const std::vector<std::string>& backend_flags, const bulwark::mysql::config& mysql,
             std::string kafka_override = {}) {
    BULWARK_REQUIRE_SERVER(kafka_servers, "BULWARK_KAFKA_BOOTSTRAP");
    const std::string kafka = kafka_override.empty() ? std::string(kafka_servers) : kafka_override;
    const std::string unique = bulwark::test::unique_name("cm");
    std::string stem = unique;
    for (char& ch : stem)
      if (ch == '-') ch = '_';
    cms_port_ = free_port();
    crs_port_ = free_port();
    std::vector<std::string> common{
        "--kafka-brokers",    kafka,          "--retry-topic",    unique + "-retry",
        "--mysql-host",       mysql.host,     "--mysql-port",     std::to_string(mysql.port),
        "--mysql-user",       mysql.user,     "--mysql-password", mysql.password,
        "--mysql-database",   mysql.database, "--mysql-table",    stem + "_documents",
        "--database-timeout", "1s",           "--address",        "127.0.0.1"};
    std::vector<std::string> cms_args{"--port",       std::to_string(cms_port_),
                                      "--peer-url",   "http://127.0.0.1:" + std::to_string(crs_port_),
                                      "--cache-name", unique};
    cms_args.insert(cms_args.end(), common.begin(), common.end());
    cms_args.insert(cms_args.end(), backend_flags.begin(), backend_flags.end());
    std::vector<std::string> crs_args{"--port",
                                      std::to_string(crs_port_),
                                      "--peer-url",
                                      "http://127.0.0.1:" + std::to_string(cms_port_),
                                      "--backend",
                                      backend_flags.at(1),
                                      "--consumer-group",
                                      unique + "-group",
                                      "--outage-mysql-host",
                                      mysql.host,
                                      "--outage-mysql-port",
                                      std::to_string(mysql.port),
                                      "--outage-mysql-user",
                                      mysql.user,
                                      "--outage-mysql-password",
                                      mysql.password,
                                      "--outage-mysql-database",
                                      mysql.database,
                                      "--outage-mysql-table",
                                      stem + "_downtime",
                                      "--reconcile-retry-delay",
                                      "500ms"};
    crs_args.insert(crs_args.end(), common.begin(), common.end());
    const std::string logs = ::testing::TempDir() + unique;
    cms_.emplace(CHANNEL_METADATA_STORE, cms_args, logs + "-cms.log");
    crs_.emplace(CACHE_RETRY_SERVICE, crs_args, logs + "-crs.log");
    ASSERT_TRUE(eventually([&] { return call(cms_port_, "GET", "/private/status", {}, "").status == 200; }, 60s))
        << cms_->log();
    ASSERT_TRUE(eventually([&] { return call(crs_port_, "GET", "/private/status", {}, "").status == 200; }, 60s))
        << crs_->log();
  }

  void TearDown() override {
    crs_.reset();
    cms_.reset();
  }

  // A write, a read, both healthchecks UP, the proxy to CRS; the near cache's metrics when it is on.
  void write_and_read(bool near_cache = true) {
    const std::string doc =
        R"({"countryCode":"GB","metadata":[{"name":"AT One","language":"English","type":"News"}],"product":"p"})";
    auto posted = call(cms_port_, "POST", "/api/channel-metadata/GB", doc);
    ASSERT_EQ(posted.status, 200) << posted.body << cms_->log();
    EXPECT_EQ(posted.body, "Data successfully posted");
    EXPECT_EQ(posted.header("request-id").size(), 36u);
    auto got = call(cms_port_, "GET", "/api/channel-metadata/gb");
    EXPECT_EQ(got.status, 200);
    EXPECT_EQ(got.body, doc);
    EXPECT_EQ(call(cms_port_, "GET", "/api/channel-metadata/FR").status, 404);
    auto health = call(cms_port_, "GET", "/private/healthcheck", {}, "");
    EXPECT_EQ(health.status, 200);
    EXPECT_EQ(health.body, R"({"status":"UP","components":{"database":{"status":"UP"},"cache":{"status":"UP"},)"
                           R"("bus":{"status":"UP"},"writes":{"status":"UP","details":{"pending":0}}}})");
    auto crs_health = call(cms_port_, "GET", "/admin/crs/private/healthcheck");
    EXPECT_EQ(crs_health.status, 200);
    EXPECT_EQ(crs_health.body, R"({"status":"UP","components":{"database":{"status":"UP"},)"
                               R"("outageLog":{"status":"UP"},"bus":{"status":"UP"}}})");
    auto metrics = call(cms_port_, "GET", "/private/prometheus", {}, "").body;
    for (auto* name :
         {"bulwark_write_through_cache_hits_total", "bulwark_circuit_breaker_state", "bulwark_http_requests_total"})
      EXPECT_NE(metrics.find(name), std::string::npos) << name;
    EXPECT_EQ(metrics.find("bulwark_near_cache_gets_total") != std::string::npos, near_cache);
  }

  asio::io_context io_;
  std::uint16_t cms_port_ = 0, crs_port_ = 0;
  std::optional<service_process> cms_, crs_;
};

bulwark::mysql::config shared_mysql() { return bulwark::mysql::config::from_env(); }

// The value of the first sample in a Prometheus exposition whose line starts with `series`.
double sample(const std::string& exposition, const std::string& series) {
  const auto at = exposition.find("\n" + series);
  if (at == std::string::npos) return -1;
  const auto line_end = exposition.find('\n', at + 1);
  const auto line = exposition.substr(at + 1, line_end - at - 1);
  return std::stod(line.substr(line.rfind(' ') + 1));
}

// Seconds since `from` (real time: these are other processes).
double seconds_since(std::chrono::steady_clock::time_point from) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - from).count();
}

TEST_F(channel_metadata_servers, mysql_redis_kafka_write_and_read) {
  BULWARK_REQUIRE_SERVER(mysql_host, "BULWARK_MYSQL_HOST");
  BULWARK_REQUIRE_SERVER(redis_port, "BULWARK_REDIS_PORT");
  start({"--backend", "mysql+redis", "--redis-host", "127.0.0.1", "--redis-port", redis_port}, shared_mysql());
  if (HasFatalFailure() || IsSkipped()) return;
  write_and_read();
}

// --near-cache=false: the write_through serves Redis itself (the path the benchmark's "shared" runs).
TEST_F(channel_metadata_servers, mysql_redis_kafka_write_and_read_without_the_near_cache) {
  BULWARK_REQUIRE_SERVER(mysql_host, "BULWARK_MYSQL_HOST");
  BULWARK_REQUIRE_SERVER(redis_port, "BULWARK_REDIS_PORT");
  start({"--backend", "mysql+redis", "--redis-host", "127.0.0.1", "--redis-port", redis_port, "--near-cache=false"},
        shared_mysql());
  if (HasFatalFailure() || IsSkipped()) return;
  write_and_read(false);
}

TEST_F(channel_metadata_servers, mysql_hazelcast_kafka_write_and_read) {
  BULWARK_REQUIRE_SERVER(mysql_host, "BULWARK_MYSQL_HOST");
  BULWARK_REQUIRE_SERVER(members, "BULWARK_HAZELCAST_MEMBERS");
  start({"--backend", "mysql+hazelcast", "--hazelcast-members", members}, shared_mysql());
  if (HasFatalFailure() || IsSkipped()) return;
  write_and_read();
}

// A private MariaDB stopped under both services: 202 pending, read back, healthcheck 200 with
// the database DOWN; started again: CRS replays, CMS's pending index empties, the downtime log
// has the outage.
TEST_F(channel_metadata_servers, mariadb_outage_202_pending_then_replayed_by_crs) {
  BULWARK_REQUIRE_SERVER(script, "BULWARK_MYSQL_SCRIPT");
  BULWARK_REQUIRE_SERVER(redis_port, "BULWARK_REDIS_PORT");
  bulwark::mysql::test::private_server db(script, "cm-outage-" + std::to_string(::getpid()));
  auto cfg = db.up();
  ASSERT_TRUE(cfg) << "could not start a private mariadbd:\n" << db.log();
  start({"--backend", "mysql+redis", "--redis-host", "127.0.0.1", "--redis-port", redis_port}, *cfg);
  if (HasFatalFailure() || IsSkipped()) return;
  const std::string before =
      R"({"countryCode":"FR","metadata":[{"name":"before","language":"French","type":"News"}],"product":"p"})";
  const std::string during =
      R"({"countryCode":"FR","metadata":[{"name":"during","language":"French","type":"News"}],"product":"p"})";
  ASSERT_EQ(call(cms_port_, "POST", "/api/channel-metadata/FR", before).status, 200) << cms_->log();

  ASSERT_TRUE(db.command("stop"));
  auto pending = call(cms_port_, "POST", "/api/channel-metadata/FR", during);
  ASSERT_EQ(pending.status, 202) << pending.body << cms_->log();
  auto read = call(cms_port_, "GET", "/api/channel-metadata/FR");
  EXPECT_EQ(read.status, 200);
  EXPECT_EQ(read.body, during);
  EXPECT_EQ(read.header("X-Write-Pending"), "true");
  auto health = call(cms_port_, "GET", "/private/healthcheck", {}, "");
  EXPECT_EQ(health.status, 200) << health.body;
  EXPECT_NE(health.body.find(R"("database":{"status":"DOWN"})"), std::string::npos) << health.body;
  EXPECT_NE(health.body.find(R"("pending":1)"), std::string::npos) << health.body;
  // CRS has the retry message and waits for the database.
  // (On failure: CRS's metrics, whose bus gauges say which partitions it holds, and both logs.)
  std::string crs_metrics;
  ASSERT_TRUE(eventually([&] {
    crs_metrics = call(crs_port_, "GET", "/private/prometheus", {}, "").body;
    return crs_metrics.find("bulwark_replayer_outage_open{replayer=\"channel_metadata\"} 1") != std::string::npos;
  })) << crs_metrics
      << crs_->log() << cms_->log();

  ASSERT_TRUE(db.command("start")) << db.log();
  ASSERT_TRUE(eventually(
      [&] {
        auto h = call(cms_port_, "GET", "/private/healthcheck", {}, "");
        return h.status == 200 && h.body.find(R"("database":{"status":"UP"})") != std::string::npos &&
               h.body.find(R"("pending":0)") != std::string::npos;
      },
      60s))
      << cms_->log() << crs_->log();
  auto after = call(cms_port_, "GET", "/api/channel-metadata/FR");
  EXPECT_EQ(after.body, during);
  EXPECT_EQ(after.header("X-Write-Pending"), "");
  // The outage window goes to CRS's log at recovery (or, when that first write after the restart
  // fails, at the replay watch's next flush).
  answer logs;
  EXPECT_TRUE(eventually([&] {
    logs = call(crs_port_, "GET", "/get-downtime-logs", {}, cm::basic_authorization("crs", "crspass"));
    auto entries = nlohmann::json::parse(logs.body, nullptr, false);
    return logs.status == 200 && entries.is_array() && entries.size() == 1;
  })) << logs.status
      << " " << logs.body << crs_->log();
  auto proxied = call(cms_port_, "GET", "/admin/crs/get-downtime-logs");
  EXPECT_EQ(proxied.body, logs.body);
}

// Both services started while their MariaDB is down (it was never up for them): they start,
// answer their healthchecks 200 with the database DOWN, keep trying (logged), CMS takes a write
// as pending (202) and reads it back; once the database is up, CMS opens it, CRS replays the
// write from the retry topic, the pending index empties, and nothing is lost.
TEST_F(channel_metadata_servers, both_services_start_with_the_database_down_and_recover_when_it_comes_up) {
  BULWARK_REQUIRE_SERVER(script, "BULWARK_MYSQL_SCRIPT");
  BULWARK_REQUIRE_SERVER(redis_port, "BULWARK_REDIS_PORT");
  bulwark::mysql::test::private_server db(script, "cm-start-down-" + std::to_string(::getpid()));
  auto cfg = db.up();
  ASSERT_TRUE(cfg) << "could not start a private mariadbd:\n" << db.log();
  ASSERT_TRUE(db.command("stop")) << db.log();
  start({"--backend", "mysql+redis", "--redis-host", "127.0.0.1", "--redis-port", redis_port}, *cfg);
  if (HasFatalFailure() || IsSkipped()) return;
  auto health = call(cms_port_, "GET", "/private/healthcheck", {}, "");
  EXPECT_EQ(health.status, 200) << health.body;
  EXPECT_NE(health.body.find(R"("database":{"status":"DOWN"})"), std::string::npos) << health.body;
  auto crs_health = call(crs_port_, "GET", "/private/healthcheck", {}, "");
  EXPECT_EQ(crs_health.status, 200) << crs_health.body;
  EXPECT_EQ(crs_health.body, R"({"status":"UP","components":{"database":{"status":"DOWN"},)"
                             R"("outageLog":{"status":"DOWN"},"bus":{"status":"UP"}}})");
  EXPECT_EQ(call(crs_port_, "GET", "/get-downtime-logs", {}, cm::basic_authorization("crs", "crspass")).status, 409);
  const std::string doc =
      R"({"countryCode":"DE","metadata":[{"name":"early","language":"German","type":"News"}],"product":"p"})";
  auto pending = call(cms_port_, "POST", "/api/channel-metadata/DE", doc);
  ASSERT_EQ(pending.status, 202) << pending.body << cms_->log();
  auto read = call(cms_port_, "GET", "/api/channel-metadata/DE");
  EXPECT_EQ(read.status, 200);
  EXPECT_EQ(read.body, doc);
  EXPECT_EQ(read.header("X-Write-Pending"), "true");
  EXPECT_NE(cms_->log().find("channel-metadata database " + cfg->host + ":" + std::to_string(cfg->port) + "/" +
                             cfg->database + ": not reachable (attempt 1)"),
            std::string::npos)
      << cms_->log();
  EXPECT_NE(crs_->log().find("downtime-log database"), std::string::npos) << crs_->log();

  ASSERT_TRUE(db.command("start")) << db.log();
  ASSERT_TRUE(eventually(
      [&] {
        auto h = call(cms_port_, "GET", "/private/healthcheck", {}, "");
        return h.status == 200 && h.body.find(R"("database":{"status":"UP"})") != std::string::npos &&
               h.body.find(R"("pending":0)") != std::string::npos;
      },
      60s))
      << cms_->log() << crs_->log();
  EXPECT_TRUE(eventually([&] {
    return call(crs_port_, "GET", "/private/healthcheck", {}, "").body ==
           R"({"status":"UP","components":{"database":{"status":"UP"},"outageLog":{"status":"UP"},)"
           R"("bus":{"status":"UP"}}})";
  })) << crs_->log();
  auto after = call(cms_port_, "GET", "/api/channel-metadata/DE");
  EXPECT_EQ(after.status, 200);
  EXPECT_EQ(after.body, doc);
  EXPECT_EQ(after.header("X-Write-Pending"), "");
  EXPECT_NE(cms_->log().find(": reachable again after "), std::string::npos) << cms_->log();
  EXPECT_NE(crs_->log().find(": reachable again after "), std::string::npos) << crs_->log();
  // CRS replayed the write (the row is in MySQL: read it back from the table directly).
  auto metrics = call(crs_port_, "GET", "/private/prometheus", {}, "").body;
  EXPECT_NE(metrics.find(R"(bulwark_replayer_messages_total{replayer="channel_metadata",outcome="replayed"} 1)"),
            std::string::npos)
      << metrics;
  // The downtime log answers again, and its ids stay put between reads.
  answer first, second;
  EXPECT_TRUE(eventually([&] {
    first = call(crs_port_, "GET", "/get-downtime-logs", {}, cm::basic_authorization("crs", "crspass"));
    return first.status == 200;
  })) << first.body;
  second = call(crs_port_, "GET", "/get-downtime-logs", {}, cm::basic_authorization("crs", "crspass"));
  EXPECT_EQ(first.body, second.body);
}

// Kafka unreachable at start: both services start, say so in the log and in the healthcheck (bus
// DOWN: 503 for CRS, whose job is the bus; CMS serves from its database, 200), and stop cleanly.
TEST_F(channel_metadata_servers, both_services_start_with_kafka_unreachable_and_report_the_bus_down) {
  BULWARK_REQUIRE_SERVER(mysql_host, "BULWARK_MYSQL_HOST");
  BULWARK_REQUIRE_SERVER(redis_port, "BULWARK_REDIS_PORT");
  const auto dead = std::to_string(free_port()); // nobody listens there
  start({"--backend", "mysql+redis", "--redis-host", "127.0.0.1", "--redis-port", redis_port}, shared_mysql(),
        "127.0.0.1:" + dead);
  if (HasFatalFailure() || IsSkipped()) return;
  auto health = call(cms_port_, "GET", "/private/healthcheck", {}, "");
  EXPECT_EQ(health.status, 200) << health.body;
  EXPECT_NE(health.body.find(R"("database":{"status":"UP"})"), std::string::npos) << health.body;
  EXPECT_NE(health.body.find(R"("bus":{"status":"DOWN"})"), std::string::npos) << health.body;
  auto crs_health = call(crs_port_, "GET", "/private/healthcheck", {}, "");
  EXPECT_EQ(crs_health.status, 503) << crs_health.body;
  EXPECT_NE(crs_health.body.find(R"("bus":{"status":"DOWN"})"), std::string::npos) << crs_health.body;
  // The database answers: a read is served from it.
  auto missing = call(cms_port_, "GET", "/api/channel-metadata/NL");
  EXPECT_EQ(missing.status, 404) << missing.body << cms_->log();
  // A write reaches the database; its near-cache invalidation cannot be published (the producer
  // would wait for its 30 s delivery timeout): the write answers 200 (durable) by the request
  // timeout (5 s) all the same, and reads back.
  const std::string doc =
      R"({"countryCode":"NL","metadata":[{"name":"n","language":"Dutch","type":"News"}],"product":"p"})";
  const auto posting = std::chrono::steady_clock::now();
  auto posted = call(cms_port_, "POST", "/api/channel-metadata/NL", doc);
  EXPECT_EQ(posted.status, 200) << posted.body << cms_->log();
  EXPECT_LT(seconds_since(posting), 6.5) << "the write outlived the request timeout";
  auto got = call(cms_port_, "GET", "/api/channel-metadata/NL");
  EXPECT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.body, doc);
  EXPECT_TRUE(eventually([&] {
    return crs_->log().find("Kafka (127.0.0.1:" + dead + "): not reachable") != std::string::npos;
  })) << crs_->log();
  EXPECT_TRUE(cms_->running());
  EXPECT_TRUE(crs_->running());
  // And both stop within a few seconds (an admin call in flight and the producer's queue are
  // bounded by 2 s each; it took ~30 s with librdkafka's defaults).
  const auto cms_stopped = cms_->terminate(15s);
  ASSERT_TRUE(cms_stopped) << "CMS did not exit within 15 s of SIGTERM";
  EXPECT_LT(cms_stopped->count(), 8000) << cms_->log();
  const auto crs_stopped = crs_->terminate(15s);
  ASSERT_TRUE(crs_stopped) << "CRS did not exit within 15 s of SIGTERM";
  EXPECT_LT(crs_stopped->count(), 8000) << crs_->log();
}

// Every Hazelcast member unreachable (nobody listens on their ports): a read that misses the near
// cache asks Hazelcast, bounded by --database-timeout, then the database, well within the request
// timeout (it answered 409 CMS-0002 at the request timeout); a write is durable and reads back.
TEST_F(channel_metadata_servers, with_hazelcast_unreachable_reads_and_writes_are_answered_by_the_database_in_time) {
  BULWARK_REQUIRE_SERVER(mysql_host, "BULWARK_MYSQL_HOST");
  const auto members = "127.0.0.1:" + std::to_string(free_port()) + ",127.0.0.1:" + std::to_string(free_port());
  start({"--backend", "mysql+hazelcast", "--hazelcast-members", members}, shared_mysql());
  if (HasFatalFailure() || IsSkipped()) return;
  auto reading = std::chrono::steady_clock::now();
  auto missing = call(cms_port_, "GET", "/api/channel-metadata/SE");
  EXPECT_EQ(missing.status, 404) << missing.body << cms_->log();
  EXPECT_LT(seconds_since(reading), 3.5) << "the read waited for the request timeout";
  const std::string doc =
      R"({"countryCode":"SE","metadata":[{"name":"s","language":"Swedish","type":"News"}],"product":"p"})";
  auto posted = call(cms_port_, "POST", "/api/channel-metadata/SE", doc);
  EXPECT_EQ(posted.status, 200) << posted.body << cms_->log();
  reading = std::chrono::steady_clock::now();
  auto got = call(cms_port_, "GET", "/api/channel-metadata/SE");
  EXPECT_EQ(got.status, 200) << got.body << cms_->log();
  EXPECT_EQ(got.body, doc);
  EXPECT_LT(seconds_since(reading), 3.5) << "the read waited for the request timeout";
  auto health = call(cms_port_, "GET", "/private/healthcheck", {}, "");
  EXPECT_EQ(health.status, 200) << health.body;
  EXPECT_NE(health.body.find(R"("cache":{"status":"DOWN"})"), std::string::npos) << health.body;
}

// The cache unreachable at start (Redis on a port nobody listens on): CMS starts, says the cache
// is DOWN (200: the database serves) and serves reads and durable writes from the database.
TEST_F(channel_metadata_servers, cms_starts_with_redis_unreachable_and_serves_from_the_database) {
  BULWARK_REQUIRE_SERVER(mysql_host, "BULWARK_MYSQL_HOST");
  const auto dead = std::to_string(free_port());
  start({"--backend", "mysql+redis", "--redis-host", "127.0.0.1", "--redis-port", dead}, shared_mysql());
  if (HasFatalFailure() || IsSkipped()) return;
  answer health; // the database and the topics are opened and made in the background: soon
  EXPECT_TRUE(eventually([&] {
    health = call(cms_port_, "GET", "/private/healthcheck", {}, "");
    return health.status == 200 &&
           health.body == R"({"status":"UP","components":{"database":{"status":"UP"},"cache":{"status":"DOWN"},)"
                          R"("bus":{"status":"UP"},"writes":{"status":"UP","details":{"pending":0}}}})";
  })) << health.body;
  const std::string doc =
      R"({"countryCode":"IT","metadata":[{"name":"i","language":"Italian","type":"News"}],"product":"p"})";
  auto posted = call(cms_port_, "POST", "/api/channel-metadata/IT", doc);
  EXPECT_EQ(posted.status, 200) << posted.body << cms_->log();
  auto got = call(cms_port_, "GET", "/api/channel-metadata/IT");
  EXPECT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.body, doc);
  EXPECT_TRUE(cms_->running());
}

// The cache down at start, then up: CMS serves from the database meanwhile (no cache hit), and
// once Redis listens on its port the cache is UP again and reads hit it.
TEST_F(channel_metadata_servers, the_cache_down_at_start_is_used_again_once_it_comes_up) {
  BULWARK_REQUIRE_SERVER(mysql_host, "BULWARK_MYSQL_HOST");
  const auto port = std::to_string(free_port());
  start({"--backend", "mysql+redis", "--redis-host", "127.0.0.1", "--redis-port", port}, shared_mysql());
  if (HasFatalFailure() || IsSkipped()) return;
  const std::string doc =
      R"({"countryCode":"PT","metadata":[{"name":"p","language":"Portuguese","type":"News"}],"product":"p"})";
  EXPECT_EQ(call(cms_port_, "POST", "/api/channel-metadata/PT", doc).status, 200) << cms_->log();
  for (int i = 0; i < 2; ++i) EXPECT_EQ(call(cms_port_, "GET", "/api/channel-metadata/PT").body, doc);
  const std::string hits = R"(bulwark_write_through_cache_hits_total{name=")";
  EXPECT_EQ(sample(call(cms_port_, "GET", "/private/prometheus", {}, "").body, hits), 0) << "a hit with Redis down";

  const std::string dir = ::testing::TempDir() + bulwark::test::unique_name("cm-redis");
  service_process redis("/usr/bin/redis-server",
                        {"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", "/tmp"},
                        dir + ".log");
  answer health;
  EXPECT_TRUE(eventually([&] {
    health = call(cms_port_, "GET", "/private/healthcheck", {}, "");
    return health.body.find(R"("cache":{"status":"UP"})") != std::string::npos;
  })) << health.body
      << redis.log();
  double hit = 0;
  EXPECT_TRUE(eventually([&] {
    EXPECT_EQ(call(cms_port_, "GET", "/api/channel-metadata/PT").body, doc);
    hit = sample(call(cms_port_, "GET", "/private/prometheus", {}, "").body, hits);
    return hit >= 1;
  })) << hit
      << cms_->log();
}

} // namespace
