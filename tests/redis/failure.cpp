// Failure tests against the `fault` test server, which they stop, kill and restart through
// scripts/servers/redis.sh (BULWARK_REDIS_CONTROL). ctest runs them one at a time
// (RESOURCE_LOCK redis_fault_server); every wait is bounded.
#include <bulwark/redis.hpp>

#include "support/run.hpp"

#include <bulwark/resilience/timeout.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <gtest/gtest.h>

#include <array>
#include <cstdlib>
#include <iostream>
#include <unistd.h>

using namespace std::chrono_literals;
namespace redis = bulwark::redis;
using steady = std::chrono::steady_clock;

namespace {

class redis_failure : public ::testing::Test {
protected:
  void SetUp() override {
    port_ = bulwark::test::server_env("BULWARK_REDIS_FAULT_PORT");
    control_ = bulwark::test::server_env("BULWARK_REDIS_CONTROL");
    if (!port_ || !control_) {
      if (std::getenv("BULWARK_REQUIRE_SERVERS")) FAIL() << "BULWARK_REDIS_FAULT_PORT/CONTROL are not set";
      GTEST_SKIP() << "BULWARK_REDIS_FAULT_PORT is not set (scripts/servers.sh up redis)";
    }
    control("start"); // whatever an earlier test left behind
    prefix_ = "bulwark:failure:" + std::to_string(::getpid()) + ":" +
              std::to_string(steady::now().time_since_epoch().count()) + ":";
  }
  void TearDown() override {
    if (control_) control("start");
  }

  void control(const std::string& action) {
    std::string command;
    if (auto dir = bulwark::test::server_env("BULWARK_REDIS_SERVERS_DIR"))
      command = "BULWARK_SERVERS_DIR='" + *dir + "' ";
    command += "'" + *control_ + "' " + action + " fault";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }

  redis::connection_options options() const {
    redis::connection_options o;
    o.host = bulwark::test::server_env("BULWARK_REDIS_HOST").value_or("127.0.0.1");
    o.port = static_cast<std::uint16_t>(std::stoi(*port_));
    o.command_timeout = 500ms;
    o.connect_timeout = 500ms;
    o.reconnect = bulwark::backoff{10ms, 200ms, 2.0, true};
    return o;
  }

  template <class T> T run(asio::awaitable<T> op) { return bulwark::test::run(ctx_, std::move(op), 20s); }

  /// Retries `op` every 10 ms until it succeeds or `limit` passes; returns the last result.
  template <class F> auto poll_until_ok(F op, std::chrono::milliseconds limit) {
    const auto deadline = steady::now() + limit;
    for (;;) {
      auto r = run(op());
      if (r.has_value() || steady::now() > deadline) return r;
      std::this_thread::sleep_for(10ms);
    }
  }

  asio::io_context ctx_;
  std::optional<std::string> port_, control_;
  std::string prefix_;
};

// Runs `n` cache gets concurrently; returns each one's outcome and how long the slowest took.
asio::awaitable<std::pair<std::vector<bulwark::result<std::optional<bulwark::cached>>>, steady::duration>>
burst(redis::cache& cache, int n) {
  auto ex = co_await asio::this_coro::executor;
  const auto start = steady::now();
  std::vector<std::future<std::optional<bulwark::result<std::optional<bulwark::cached>>>>> futures;
  // The coroutines start later: their keys must outlive this statement (static storage).
  static const std::array<std::string, 10> keys = {"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"};
  for (int i = 0; i < n; ++i) futures.push_back(bulwark::test::spawn(ex, cache.get(keys[i % 10])));
  std::vector<bulwark::result<std::optional<bulwark::cached>>> out;
  for (auto& f : futures) {
    auto got = co_await bulwark::test::await_future(f);
    out.push_back(std::move(*got));
  }
  co_return std::make_pair(std::move(out), steady::now() - start);
}

TEST_F(redis_failure, server_stopped_mid_run_fails_unavailable_in_time_then_recovers_by_itself) {
  redis::client c(ctx_.get_executor(), options());
  redis::cache cache(c, {prefix_});
  ASSERT_TRUE(run(cache.put("k0", {"v", 1}, 0ms)).has_value());
  auto warm = run(burst(cache, 100));
  for (auto& r : warm.first) ASSERT_TRUE(r.has_value()) << r.error();

  // Stop the server while 200 gets are in flight, and a BLPOP that the server would hold for
  // 5 s, on a client whose command timeout (10 s) is longer still: the stop must end it.
  auto patient_options = options();
  patient_options.command_timeout = 10s;
  redis::client patient(ctx_.get_executor(), patient_options);
  ASSERT_TRUE(run(patient.execute("PING")).has_value());
  const auto never = prefix_ + "never"; // outlives the command, which starts later
  auto blocked = bulwark::test::spawn(ctx_.get_executor(), patient.execute("BLPOP", never, "5"));
  auto in_flight = bulwark::test::spawn(ctx_.get_executor(), burst(cache, 200));
  ctx_.poll(); // the commands are written
  const auto stopped_at = steady::now();
  control("stop");
  const auto limit = steady::now() + 10s;
  while (in_flight.wait_for(0s) != std::future_status::ready && steady::now() < limit) ctx_.run_one_for(10ms);
  ASSERT_EQ(in_flight.wait_for(0s), std::future_status::ready) << "calls in flight hung";
  auto [outcomes, took] = *in_flight.get();
  EXPECT_LT(took, 1500ms) << "calls in flight must end within the command timeout";
  int failed = 0;
  for (auto& r : outcomes) {
    if (!r) {
      ++failed;
      EXPECT_EQ(r.error(), bulwark::errc::unavailable) << r.error();
    }
  }
  std::cout << "in flight at the stop: " << outcomes.size() - failed << " answered, " << failed << " failed\n";
  while (blocked.wait_for(0s) != std::future_status::ready && steady::now() < limit) ctx_.run_one_for(10ms);
  ASSERT_EQ(blocked.wait_for(0s), std::future_status::ready) << "the BLPOP hung";
  EXPECT_LT(steady::now() - stopped_at, 2s) << "the stop must end the BLPOP, not its timeout";
  auto blpop = *blocked.get();
  ASSERT_FALSE(blpop.has_value());
  EXPECT_EQ(blpop.error(), bulwark::errc::unavailable) << blpop.error();
  run(patient.stop());

  // While the server is down: every call fails unavailable, at once, never hangs.
  for (int i = 0; i < 20; ++i) {
    const auto start = steady::now();
    auto r = run(cache.get("k0"));
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), bulwark::errc::unavailable) << r.error();
    EXPECT_LT(steady::now() - start, 600ms);
    std::this_thread::sleep_for(20ms); // let the backoff pass now and then: real reconnect attempts
  }
  EXPECT_GE(c.statistics().disconnects, 1u);

  control("start");
  const auto restarted = steady::now();
  auto back = poll_until_ok([&] { return cache.get("k0"); }, 5000ms);
  ASSERT_TRUE(back.has_value()) << "the client did not recover: " << back.error();
  EXPECT_LT(steady::now() - restarted, 2s);
  ASSERT_TRUE(back.value().has_value()) << "AOF: the entry survived the restart";
  EXPECT_EQ(back.value()->value, "v");
  run(c.stop());
}

TEST_F(redis_failure, server_killed_fails_unavailable_then_recovers) {
  redis::client c(ctx_.get_executor(), options());
  redis::repository repo(c, {prefix_});
  ASSERT_TRUE(run(repo.put("x", "1", std::nullopt)).has_value());
  control("kill");
  const auto start = steady::now();
  auto r = run(repo.get("x"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), bulwark::errc::unavailable) << r.error();
  EXPECT_LT(steady::now() - start, 600ms);
  auto w = run(repo.put("y", "2", std::nullopt));
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error(), bulwark::errc::unavailable) << w.error();
  control("start");
  auto back = poll_until_ok([&] { return repo.put("z", "3", std::nullopt); }, 5000ms);
  ASSERT_TRUE(back.has_value()) << back.error();
  run(c.stop());
}

TEST_F(redis_failure, aof_keeps_repository_and_cache_data_across_a_restart) {
  redis::client c(ctx_.get_executor(), options());
  redis::repository repo(c, {prefix_ + "repo:"});
  redis::cache cache(c, {prefix_ + "cache:"});
  auto v = run(repo.put("order/1", "paid", std::nullopt));
  ASSERT_TRUE(v.has_value()) << v.error();
  ASSERT_TRUE(run(repo.put("order/2", "new", std::nullopt)).has_value());
  ASSERT_TRUE(run(cache.put("order/1", {"paid", v.value()}, 60s)).has_value());
  control("stop");
  control("start");
  auto got = poll_until_ok([&] { return repo.get("order/1"); }, 5000ms);
  ASSERT_TRUE(got.has_value()) << got.error();
  ASSERT_TRUE(got.value().has_value());
  EXPECT_EQ(got.value()->value, "paid");
  EXPECT_EQ(got.value()->version, v.value());
  auto page = run(repo.scan("order/", "", 10));
  ASSERT_TRUE(page.has_value()) << page.error();
  EXPECT_EQ(page.value().entries.size(), 2u);
  auto cached = run(cache.get("order/1"));
  ASSERT_TRUE(cached.has_value() && cached.value().has_value());
  EXPECT_EQ(cached.value()->version, v.value());
  // The version counter survived too: the next put is above every earlier version.
  auto next = run(repo.put("order/3", "new", std::nullopt));
  ASSERT_TRUE(next.has_value());
  EXPECT_GT(next.value(), v.value());
  run(c.stop());
}

TEST_F(redis_failure, server_that_accepts_but_never_answers_times_out) {
  // A listening socket that never accepts: the kernel completes the TCP handshake, so the
  // client connects, writes, and waits for replies that never come.
  asio::ip::tcp::acceptor silent(ctx_, {asio::ip::make_address("127.0.0.1"), 0});
  auto o = options();
  o.port = silent.local_endpoint().port();
  o.command_timeout = 300ms;
  redis::client c(ctx_.get_executor(), o);
  redis::cache cache(c, {prefix_});
  for (int i = 0; i < 3; ++i) {
    const auto start = steady::now();
    auto r = run(cache.get("k"));
    const auto took = steady::now() - start;
    ASSERT_FALSE(r.has_value());
    if (i == 0 || r.error() != bulwark::errc::unavailable) { // later calls may land in the backoff
      EXPECT_EQ(r.error(), bulwark::errc::timeout) << r.error();
      EXPECT_GE(took, 290ms);
    }
    EXPECT_LT(took, 1500ms);
    std::this_thread::sleep_for(250ms); // past the backoff: the next call reconnects and waits again
  }
  EXPECT_GE(c.statistics().timeouts, 2u);
  run(c.stop());
}

TEST_F(redis_failure, connect_that_never_completes_times_out) {
  // A listener with a full accept queue (backlog 0, one connection already queued): the kernel
  // drops further SYNs, so a connect stays in progress until the client gives up.
  asio::ip::tcp::acceptor full(ctx_);
  full.open(asio::ip::tcp::v4());
  full.bind({asio::ip::make_address("127.0.0.1"), 0});
  full.listen(0);
  asio::ip::tcp::socket filler(ctx_);
  bool filled = false;
  filler.async_connect(full.local_endpoint(), [&](std::error_code ec) { filled = !ec; });
  for (int i = 0; i < 100 && !filled; ++i) ctx_.run_one_for(10ms);
  ASSERT_TRUE(filled);
  auto o = options();
  o.port = full.local_endpoint().port();
  o.pool_size = 1;
  o.connect_timeout = 300ms;
  o.command_timeout = 5s;
  redis::client c(ctx_.get_executor(), o);
  const auto start = steady::now();
  auto r = run(c.execute("PING"));
  const auto took = steady::now() - start;
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), bulwark::errc::timeout) << r.error();
  EXPECT_EQ(r.error().code(), redis::make_error_code(redis::redis_errc::connect_timeout)) << r.error();
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 1500ms);
}

} // namespace

// A batch of puts on a paused server (CLIENT PAUSE WRITE holds every script call): a caller
// that cancels resumes at once, the others of its batch all fail with the command timeout,
// and puts work again once the pause ends.
TEST_F(redis_failure, batched_puts_time_out_together_and_a_cancelled_caller_resumes_at_once) {
  auto o = options();
  o.pool_size = 1;
  redis::client c(ctx_.get_executor(), o);
  redis::cache cache(c, {prefix_});
  redis::client admin(ctx_.get_executor(), options());
  ASSERT_TRUE(run(cache.put("k", {"v", 1}, 0ms)).has_value());
  ASSERT_TRUE(run(admin.execute("CLIENT", "PAUSE", "1500", "WRITE")).has_value());
  std::vector<std::string> keys;
  for (int i = 0; i < 30; ++i) keys.push_back("k" + std::to_string(i));
  const auto batches_before = cache.put_batches();
  auto all = [&]() -> asio::awaitable<std::pair<bulwark::result<bool>, steady::duration>> {
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::future<std::optional<bulwark::result<bool>>>> futures;
    for (auto& k : keys) futures.push_back(bulwark::test::spawn(ex, cache.put(k, {"w", 2}, 0ms)));
    const auto start = steady::now();
    // (Named values, not temporaries in the co_await: GCC 12 destroys such temporaries twice.)
    bulwark::versioned entry{"w", 2};
    auto put = cache.put("impatient", std::move(entry), 0ms);
    auto cancelled = co_await bulwark::with_timeout(std::move(put), 50ms, "put");
    const auto took = steady::now() - start;
    for (auto& f : futures) {
      auto got = co_await bulwark::test::await_future(f);
      auto r = *got;
      EXPECT_FALSE(r.has_value());
      if (!r) {
        EXPECT_EQ(r.error(), bulwark::errc::timeout) << r.error();
      }
    }
    co_return std::pair{std::move(cancelled), took};
  };
  auto [cancelled, took] = run(all());
  ASSERT_FALSE(cancelled.has_value());
  EXPECT_EQ(cancelled.error(), bulwark::errc::timeout);
  EXPECT_LT(took, 300ms) << "a cancelled caller must not wait for its batch";
  EXPECT_EQ(cache.put_batches() - batches_before, 1u) << "the 31 puts of one turn form one batch";
  ASSERT_TRUE(run(admin.execute("CLIENT", "UNPAUSE")).has_value());
  auto back = poll_until_ok([&] { return cache.put("k", {"v", 3}, 0ms); }, 5000ms);
  ASSERT_TRUE(back.has_value()) << back.error();
  EXPECT_TRUE(back.value());
  run(admin.stop());
  run(c.stop());
}
