// Failure tests, each on its own private server (scripts/servers/mysql.sh with
// BULWARK_MYSQL_INSTANCE) so that stopping, killing or hanging it disturbs no other test.
#include <bulwark/mysql.hpp>

#include "fixture.hpp"
#include "support/run.hpp"

#include <asio/io_context.hpp>
#include <gtest/gtest.h>

#include <string>

namespace {

using namespace bulwark;
using namespace std::chrono_literals;

class mysql_failure : public ::testing::Test {
protected:
  void SetUp() override {
    BULWARK_REQUIRE_SERVER(script, "BULWARK_MYSQL_SCRIPT");
    server_.emplace(script, "mysql-" + mysql::test::table_name(mysql::test::current_test_name()));
    auto cfg = server_->up();
    ASSERT_TRUE(cfg) << "could not start a private mariadbd:\n" << server_->log();
    cfg_ = *cfg;
    pool_.emplace(ctx_.get_executor(), cfg_);
    auto r = run(mysql::repository::open(*pool_, "failure"));
    ASSERT_TRUE(r.has_value()) << r.error();
    repo_.emplace(std::move(r).value());
  }
  void TearDown() override {
    repo_.reset();
    if (pool_) run(pool_->stop());
    if (server_) server_->command("resume");
    server_.reset();
  }
  template <class T> T run(asio::awaitable<T> op) { return mysql::test::run_in(ctx_, std::move(op)); }
  template <class T> std::chrono::milliseconds timed(asio::awaitable<T> op, T& out) {
    const auto start = std::chrono::steady_clock::now();
    out = run(std::move(op));
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  }

  asio::io_context ctx_;
  std::optional<mysql::test::private_server> server_;
  mysql::config cfg_;
  std::optional<mysql::pool> pool_;
  std::optional<mysql::repository> repo_;
};

TEST_F(mysql_failure, stopped_server_fails_unavailable_at_once_then_recovers) {
  ASSERT_TRUE(run(repo_->put("k", "before", std::nullopt)).has_value());
  ASSERT_TRUE(server_->command("stop"));
  // Several calls: the first finds its idle connection dead, the next ones fail to connect or
  // fail fast during the reconnect backoff. None waits for a timeout.
  for (int i = 0; i < 5; ++i) {
    result<std::optional<versioned>> r = bulwark::error(errc::cancelled);
    const auto took = timed(repo_->get("k"), r);
    ASSERT_FALSE(r.has_value()) << "call " << i << " succeeded against a stopped server";
    EXPECT_EQ(r.error(), errc::unavailable) << r.error();
    EXPECT_LT(took, 300ms) << "call " << i << " did not fail at once: " << r.error();
  }
  ASSERT_TRUE(server_->command("start"));
  result<std::optional<versioned>> got = bulwark::error(errc::cancelled);
  for (int i = 0; i < 100; ++i) {
    got = run(repo_->get("k"));
    if (got.has_value()) break;
    asio::steady_timer pause(ctx_, 20ms);
    run([&]() -> asio::awaitable<void> { co_await pause.async_wait(asio::use_awaitable); }());
  }
  ASSERT_TRUE(got.has_value()) << got.error();
  ASSERT_TRUE(got.value().has_value());
  EXPECT_EQ(got.value()->value, "before");
}

TEST_F(mysql_failure, killed_server_restarted_on_the_same_datadir_loses_no_committed_write) {
  // Committed writes on several connections, some keys written many times.
  int committed = 0;
  for (int i = 0; i < 40; ++i) {
    auto r = run(repo_->put("key-" + std::to_string(i % 10), "value-" + std::to_string(i), std::nullopt));
    ASSERT_TRUE(r.has_value()) << r.error();
    ++committed;
  }
  EXPECT_GE(pool_->stats().connects, 1u);
  ASSERT_TRUE(server_->command("kill"));
  auto during = run(repo_->get("key-0"));
  ASSERT_FALSE(during.has_value());
  EXPECT_EQ(during.error(), errc::unavailable) << during.error();
  ASSERT_TRUE(server_->command("start"));
  // Same pool, same repository object: it must reconnect by itself.
  result<std::optional<versioned>> got = bulwark::error(errc::cancelled);
  for (int i = 0; i < 100; ++i) {
    got = run(repo_->get("key-0"));
    if (got.has_value()) break;
    asio::steady_timer pause(ctx_, 20ms);
    run([&]() -> asio::awaitable<void> { co_await pause.async_wait(asio::use_awaitable); }());
  }
  ASSERT_TRUE(got.has_value()) << got.error();
  for (int k = 0; k < 10; ++k) {
    auto r = run(repo_->get("key-" + std::to_string(k)));
    ASSERT_TRUE(r.has_value()) << r.error();
    ASSERT_TRUE(r.value().has_value()) << "key-" << k << " lost";
    EXPECT_EQ(r.value()->value, "value-" + std::to_string(30 + k));
    EXPECT_EQ(r.value()->version, 4u);
  }
  // Statements were prepared again on the new connections: writes work too.
  auto next = run(repo_->put("key-0", "after", 4));
  ASSERT_TRUE(next.has_value()) << next.error();
  EXPECT_EQ(next.value(), 5u);
  EXPECT_GT(pool_->stats().discarded, 0u);
}

TEST_F(mysql_failure, hung_server_fails_with_the_read_timeout_not_a_hang) {
  ASSERT_TRUE(run(repo_->put("k", "v", std::nullopt)).has_value());
  ASSERT_TRUE(server_->command("hang"));
  result<std::optional<versioned>> r = bulwark::error(errc::cancelled);
  const auto took = timed(repo_->get("k"), r);
  ASSERT_FALSE(r.has_value()) << "answered in " << took.count() << " ms after SIGSTOP";
  EXPECT_EQ(r.error(), errc::timeout) << r.error();
  EXPECT_GE(took, cfg_.read_timeout - 50ms);
  EXPECT_LT(took, cfg_.read_timeout + 1000ms) << r.error();
  // A new connection to the hung server is bounded by the connect timeout.
  auto again = timed(repo_->get("k"), r);
  ASSERT_FALSE(r.has_value()) << "answered in " << again.count() << " ms by a stopped server? "
                              << pool_->stats().connects << " connects";
  EXPECT_LT(again, cfg_.connect_timeout + cfg_.read_timeout + 1000ms);
  ASSERT_TRUE(server_->command("resume"));
  result<std::optional<versioned>> got = bulwark::error(errc::cancelled);
  for (int i = 0; i < 100; ++i) {
    got = run(repo_->get("k"));
    if (got.has_value()) break;
    asio::steady_timer pause(ctx_, 20ms);
    run([&]() -> asio::awaitable<void> { co_await pause.async_wait(asio::use_awaitable); }());
  }
  ASSERT_TRUE(got.has_value()) << "not recovered after SIGCONT: " << got.error();
  ASSERT_TRUE(got.value().has_value());
  EXPECT_EQ(got.value()->value, "v");
}

} // namespace
