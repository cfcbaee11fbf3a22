// bulwark::redis against the `main` test server (scripts/servers/redis.sh up): the client, and the
// cache and repository specifics the conformance suites (conformance.cpp) do not cover.
#include <bulwark/redis.hpp>
#include <bulwark/redis/ledger.hpp>

#include "fixture.hpp"
#include "support/error_table.hpp"
#include "support/keys.hpp"
#include "support/run.hpp"

#include <bulwark/resilience/timeout.hpp>

#include <asio/io_context.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;
namespace redis = bulwark::redis;

using bulwark::redis::test::fresh_prefix;
using bulwark::redis::test::main_server;
using bulwark::redis::test::server_configured;

namespace {

class redis_client : public ::testing::Test {
protected:
  void SetUp() override {
    if (!server_configured()) {
      if (std::getenv("BULWARK_REQUIRE_SERVERS")) FAIL() << "BULWARK_REDIS_PORT is not set";
      GTEST_SKIP() << "BULWARK_REDIS_PORT is not set (scripts/servers.sh up redis)";
    }
    prefix_ = fresh_prefix("client");
  }
  template <class T> T run(asio::awaitable<T> op) { return bulwark::test::run(ctx_, std::move(op), 20s); }
  std::string key(std::string_view k) const { return prefix_ + std::string(k); }

  asio::io_context ctx_;
  std::string prefix_;
};

TEST_F(redis_client, replies_of_every_kind) {
  redis::client c(ctx_.get_executor(), main_server());
  auto status = run(c.execute("SET", key("s"), "v"));
  ASSERT_TRUE(status.has_value()) << status.error();
  EXPECT_EQ(status.value().type, redis::reply::kind::status);
  EXPECT_EQ(status.value().text(), "OK");
  auto integer = run(c.execute("INCR", key("n")));
  ASSERT_TRUE(integer.has_value()) << integer.error();
  EXPECT_EQ(integer.value().as_integer(), 1);
  ASSERT_TRUE(run(c.execute("RPUSH", key("l"), "a", "b")).has_value());
  auto array = run(c.execute("LRANGE", key("l"), "0", "-1"));
  ASSERT_TRUE(array.has_value()) << array.error();
  ASSERT_EQ(array.value().elements.size(), 2u);
  EXPECT_EQ(array.value().elements[1].str, "b");
  auto nil = run(c.execute("GET", key("absent")));
  ASSERT_TRUE(nil.has_value());
  EXPECT_TRUE(nil.value().is_nil());
  run(c.stop());
}

TEST_F(redis_client, server_errors_map_onto_conditions) {
  redis::client c(ctx_.get_executor(), main_server());
  ASSERT_TRUE(run(c.execute("RPUSH", key("list"), "x")).has_value());
  auto wrong_type = run(c.execute("GET", key("list")));
  ASSERT_FALSE(wrong_type.has_value());
  EXPECT_EQ(wrong_type.error().code(), redis::make_error_code(redis::redis_errc::wrong_type));
  EXPECT_EQ(wrong_type.error(), bulwark::errc::invalid_argument);
  EXPECT_NE(wrong_type.error().detail().find("WRONGTYPE"), std::string_view::npos);
  auto unknown = run(c.execute("NO-SUCH-COMMAND"));
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error(), bulwark::errc::protocol_error);
  EXPECT_EQ(unknown.error().code().category().name(), std::string("redis"));
  // The connection is still usable after error replies.
  EXPECT_TRUE(run(c.execute("PING")).has_value());
  run(c.stop());
}

TEST_F(redis_client, concurrent_commands_leave_in_one_write) {
  auto options = main_server();
  options.pool_size = 1;
  redis::client c(ctx_.get_executor(), options);
  ASSERT_TRUE(run(c.execute("SET", key("p"), "v")).has_value()); // connected
  const auto before = c.statistics();
  auto burst = [&]() -> asio::awaitable<bulwark::result<int>> {
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::future<std::optional<bulwark::result<redis::reply>>>> futures;
    const auto k = key("p");
    for (int i = 0; i < 50; ++i) futures.push_back(bulwark::test::spawn(ex, c.execute("GET", k)));
    int ok = 0;
    for (auto& f : futures) {
      auto got = co_await bulwark::test::await_future(f);
      auto r = *got;
      if (!r) co_return r.error();
      ok += r.value().str == "v";
    }
    co_return ok;
  };
  auto ok = run(burst());
  ASSERT_TRUE(ok.has_value()) << ok.error();
  EXPECT_EQ(ok.value(), 50);
  const auto after = c.statistics();
  EXPECT_EQ(after.commands - before.commands, 50u);
  EXPECT_LE(after.writes - before.writes, 2u) << "50 commands started in one turn must share a write";
  run(c.stop());
}

TEST_F(redis_client, select_uses_the_configured_database) {
  auto db3 = main_server();
  db3.database = 3;
  redis::client in_db3(ctx_.get_executor(), db3);
  redis::client in_db0(ctx_.get_executor(), main_server());
  ASSERT_TRUE(run(in_db3.execute("SET", key("db"), "three")).has_value());
  EXPECT_EQ(run(in_db3.execute("GET", key("db"))).value().str, "three");
  EXPECT_TRUE(run(in_db0.execute("GET", key("db"))).value().is_nil());
  run(in_db3.stop());
  run(in_db0.stop());
}

TEST_F(redis_client, auth_with_acl_user_and_refusal) {
  redis::client admin(ctx_.get_executor(), main_server());
  const std::string user = "bulwark_test_" + std::to_string(::getpid());
  ASSERT_TRUE(run(admin.execute("ACL", "SETUSER", user, "on", ">secret", "~*", "+@all")).has_value());
  auto good = main_server();
  good.username = user;
  good.password = "secret";
  redis::client as_user(ctx_.get_executor(), good);
  auto who = run(as_user.execute("ACL", "WHOAMI"));
  ASSERT_TRUE(who.has_value()) << who.error();
  EXPECT_EQ(who.value().str, user);

  auto bad = good;
  bad.password = "wrong";
  bad.pool_size = 1;
  redis::client refused(ctx_.get_executor(), bad);
  auto r = run(refused.execute("PING"));
  ASSERT_FALSE(r.has_value()) << "a command behind a refused AUTH must not run";
  EXPECT_EQ(r.error(), bulwark::errc::rejected) << r.error();
  EXPECT_TRUE(run(admin.execute("ACL", "DELUSER", user)).has_value());
  run(as_user.stop());
  run(refused.stop());
  run(admin.stop());
}

TEST_F(redis_client, command_timeout_fails_with_timeout_then_reconnects) {
  auto options = main_server();
  options.pool_size = 1;
  options.command_timeout = 200ms;
  redis::client c(ctx_.get_executor(), options);
  ASSERT_TRUE(run(c.execute("PING")).has_value());
  const auto start = std::chrono::steady_clock::now();
  auto blocked = run(c.execute("BLPOP", key("never"), "5")); // the server holds the reply 5 s
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(blocked.has_value());
  EXPECT_EQ(blocked.error(), bulwark::errc::timeout) << blocked.error();
  EXPECT_EQ(blocked.error().code(), redis::make_error_code(redis::redis_errc::command_timeout));
  EXPECT_GE(took, 200ms);
  EXPECT_LT(took, 1500ms);
  EXPECT_EQ(c.statistics().timeouts, 1u);
  // The same client reconnects by itself once the backoff has passed.
  auto recovered = run([&]() -> asio::awaitable<bulwark::result<redis::reply>> {
    asio::steady_timer t(co_await asio::this_coro::executor);
    for (int i = 0;; ++i) {
      auto r = co_await c.execute("PING");
      if (r || i == 200) co_return r;
      t.expires_after(10ms);
      co_await t.async_wait(asio::use_awaitable);
    }
  }());
  ASSERT_TRUE(recovered.has_value()) << recovered.error();
  EXPECT_EQ(c.statistics().connects, 2u);
  run(c.stop());
}

TEST_F(redis_client, caller_cancellation_resumes_at_once_and_drops_the_late_reply) {
  auto options = main_server();
  options.pool_size = 1;
  options.command_timeout = 5s;
  redis::client c(ctx_.get_executor(), options);
  const auto start = std::chrono::steady_clock::now();
  auto r = run(bulwark::with_timeout(c.execute("BLPOP", key("cancel"), "0.3"), 50ms, "blpop"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), bulwark::errc::timeout);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 250ms);
  // The BLPOP reply (nil, after 0.3 s) is dropped; the next command gets its own reply.
  auto pong = run(c.execute("ECHO", "after"));
  ASSERT_TRUE(pong.has_value()) << pong.error();
  EXPECT_EQ(pong.value().str, "after");
  run(c.stop());
}

TEST_F(redis_client, stop_drains_then_refuses) {
  redis::client c(ctx_.get_executor(), main_server());
  const auto k = key("drain"); // outlives the command, which starts later
  auto f = bulwark::test::spawn(ctx_.get_executor(), c.execute("SET", k, "x"));
  run(c.stop());
  ASSERT_EQ(f.wait_for(0s), std::future_status::ready) << "stop() waits for commands in flight";
  EXPECT_TRUE(f.get()->has_value());
  auto after = run(c.execute("PING"));
  ASSERT_FALSE(after.has_value());
  EXPECT_EQ(after.error(), bulwark::errc::cancelled);
}

TEST_F(redis_client, nothing_listening_is_unavailable_at_once) {
  auto options = main_server();
  {
    asio::ip::tcp::acceptor probe(ctx_, {asio::ip::make_address("127.0.0.1"), 0});
    options.port = probe.local_endpoint().port();
  } // closed: nothing listens there now
  redis::client c(ctx_.get_executor(), options);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    auto r = run(c.execute("PING"));
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), bulwark::errc::unavailable) << r.error();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 500ms);
}

// --- adapter specifics beyond the conformance suites ---

TEST_F(redis_client, cache_rejects_a_value_not_in_its_layout_and_bad_arguments) {
  redis::client c(ctx_.get_executor(), main_server());
  redis::cache cache(c, {prefix_});
  ASSERT_TRUE(run(c.execute("SET", key("foreign"), "short")).has_value());
  auto got = run(cache.get("foreign"));
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error(), bulwark::errc::protocol_error);
  EXPECT_EQ(run(cache.put("k", {"v", 1}, -1ms)).error(), bulwark::errc::invalid_argument);
  EXPECT_EQ(run(cache.get(std::string(2000, 'k'))).error(), bulwark::errc::invalid_argument);
  redis::cache small(c, {prefix_, 1024, 8});
  EXPECT_EQ(run(small.put("big", {"123456789", 1}, 0ms)).error(), bulwark::errc::too_large);
  run(c.stop());
}

TEST_F(redis_client, ledger_apply_and_revert_fall_back_to_eval_after_noscript) {
  redis::client c(ctx_.get_executor(), main_server());
  redis::ledger ledger(c, {.key_prefix = prefix_});
  ASSERT_TRUE(run(ledger.set("apple", 5)).has_value());
  // apply awaits EVALSHA itself (not through run()): its NOSCRIPT path is its own.
  ASSERT_TRUE(run(c.execute("SCRIPT", "FLUSH")).has_value());
  const std::vector<bulwark::adjustment> take = {{"apple", -2}};
  auto applied = run(ledger.apply("op-1", take));
  ASSERT_TRUE(applied.has_value()) << applied.error();
  EXPECT_EQ(applied.value(), bulwark::apply_outcome::applied);
  ASSERT_TRUE(run(c.execute("SCRIPT", "FLUSH")).has_value());
  auto reverted = run(ledger.revert("op-1"));
  ASSERT_TRUE(reverted.has_value()) << reverted.error();
  EXPECT_EQ(reverted.value(), bulwark::revert_outcome::undone);
  EXPECT_EQ(run(ledger.get("apple")).value(), std::optional<bulwark::amount>(5));
  run(c.stop());
}

TEST_F(redis_client, cache_layout_ttl_and_noscript_fallback) {
  redis::client c(ctx_.get_executor(), main_server());
  redis::cache cache(c, {prefix_});
  // After SCRIPT FLUSH the EVALSHA fails with NOSCRIPT and the adapter falls back to EVAL.
  ASSERT_TRUE(run(c.execute("SCRIPT", "FLUSH")).has_value());
  auto put = run(cache.put("t", {"value", 0x1234}, 5000ms));
  ASSERT_TRUE(put.has_value()) << put.error();
  EXPECT_TRUE(put.value());
  auto raw = run(c.execute("GET", key("t")));
  ASSERT_TRUE(raw.has_value());
  EXPECT_EQ(raw.value().str.substr(0, 16), "0000000000001234");
  EXPECT_EQ(raw.value().str.substr(32), "value");
  auto pttl = run(c.execute("PTTL", key("t"))).value().integer;
  EXPECT_GT(pttl, 4000);
  EXPECT_LE(pttl, 5000);
  ASSERT_TRUE(run(cache.put("t", {"value", 0x1234}, 0ms)).value());
  EXPECT_EQ(run(c.execute("PTTL", key("t"))).value().integer, -1) << "ttl 0: no expiry";
  // Versions above 2^32 compare correctly (the script compares two 32-bit halves).
  ASSERT_TRUE(run(cache.put("big", {"a", (1ull << 40) + 1}, 0ms)).value());
  EXPECT_FALSE(run(cache.put("big", {"b", (1ull << 40)}, 0ms)).value());
  EXPECT_FALSE(run(cache.put("big", {"c", 1ull << 33}, 0ms)).value());
  EXPECT_TRUE(run(cache.put("big", {"d", (2ull << 40)}, 0ms)).value());
  auto now = std::chrono::system_clock::now();
  auto got = run(cache.get("big")).value();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->value, "d");
  EXPECT_LT(std::chrono::abs(now - got->stored_at), 5s);
  run(c.stop());
}

TEST_F(redis_client, repository_layout_index_and_scan_edges) {
  redis::client c(ctx_.get_executor(), main_server());
  redis::repository repo(c, {prefix_});
  const std::string hi("\xff\xff", 2);
  for (std::string k : {std::string("a"), std::string("b"), hi + "x", std::string("a\xff", 2)})
    ASSERT_TRUE(run(repo.put(k, "v", std::nullopt)).has_value());
  EXPECT_EQ(run(c.execute("ZCARD", key("index"))).value().integer, 4);
  EXPECT_EQ(run(c.execute("HGET", key("d:a"), "d")).value().str, "v");
  auto all = run(repo.scan("", "", 10));
  ASSERT_TRUE(all.has_value()) << all.error();
  ASSERT_EQ(all.value().entries.size(), 4u);
  EXPECT_EQ(all.value().entries[0].key, "a");
  EXPECT_EQ(all.value().entries[1].key, std::string("a\xff", 2));
  EXPECT_EQ(all.value().entries[3].key, hi + "x");
  auto high = run(repo.scan(hi, "", 10));
  ASSERT_EQ(high.value().entries.size(), 1u) << "a prefix of 0xff bytes has no successor: scan to the end";
  auto after = run(repo.scan("a", "a", 10));
  ASSERT_EQ(after.value().entries.size(), 1u);
  EXPECT_EQ(after.value().entries[0].key, std::string("a\xff", 2));
  EXPECT_EQ(run(repo.scan("", "", 0)).error(), bulwark::errc::invalid_argument);
  EXPECT_TRUE(run(repo.erase("a")).value());
  EXPECT_EQ(run(c.execute("ZCARD", key("index"))).value().integer, 3);
  redis::repository small(c, {prefix_, 1024, 4});
  EXPECT_EQ(run(small.put("k", "12345", std::nullopt)).error(), bulwark::errc::too_large);
  run(c.stop());
}

// put_batch and get_batch: each entry's result is what put() and get() give, in order, over
// several script calls (max_batch 2); a refused key or value fails alone and is not sent.
TEST_F(redis_client, repository_put_batch_and_get_batch_answer_per_entry) {
  redis::client c(ctx_.get_executor(), main_server());
  redis::repository repo(c, {.key_prefix = prefix_, .max_key_bytes = 8, .max_value_bytes = 8, .max_batch = 2});
  const auto v0 = run(repo.put("old", "o1", std::nullopt));
  ASSERT_TRUE(v0.has_value()) << v0.error();
  using entry = redis::repository::put_entry;
  auto put = run(repo.put_batch(
      {entry{"a", "a1", bulwark::no_version}, entry{"a", "a2", bulwark::no_version}, // exists by now: conflict
       entry{"too-long-key", "x", std::nullopt},                                     // refused, not sent
       entry{"old", "o2", v0.value()}, entry{"old", "o3", v0.value()},               // the version moved: conflict
       entry{"big", "123456789", std::nullopt}, entry{"b", "b1", std::nullopt}}));
  ASSERT_EQ(put.size(), 7u);
  ASSERT_TRUE(put[0].has_value()) << put[0].error();
  EXPECT_EQ(put[1].error(), bulwark::errc::conflict);
  EXPECT_EQ(put[1].error().detail(), "the key already exists");
  EXPECT_EQ(put[2].error(), bulwark::errc::invalid_argument);
  ASSERT_TRUE(put[3].has_value()) << put[3].error();
  EXPECT_GT(put[3].value(), put[0].value());
  EXPECT_EQ(put[4].error(), bulwark::errc::conflict);
  EXPECT_EQ(put[4].error().detail(), "expected version " + std::to_string(v0.value()) + " is not the current one");
  EXPECT_EQ(put[5].error(), bulwark::errc::too_large);
  ASSERT_TRUE(put[6].has_value()) << put[6].error();
  EXPECT_EQ(run(c.execute("ZCARD", key("index"))).value().integer, 3); // old, a, b

  auto got = run(repo.get_batch({"b", "missing", "too-long-key", "old", "a"}));
  ASSERT_EQ(got.size(), 5u);
  ASSERT_TRUE(got[0].has_value() && got[0].value().has_value());
  EXPECT_EQ(got[0].value()->value, "b1");
  EXPECT_EQ(got[0].value()->version, put[6].value());
  ASSERT_TRUE(got[1].has_value());
  EXPECT_FALSE(got[1].value().has_value());
  EXPECT_EQ(got[2].error(), bulwark::errc::invalid_argument);
  ASSERT_TRUE(got[3].has_value() && got[3].value().has_value());
  EXPECT_EQ(got[3].value()->value, "o2");
  EXPECT_EQ(got[3].value()->version, put[3].value());
  EXPECT_EQ(got[4].value(), run(repo.get("a")).value()); // what get() says
  EXPECT_TRUE(run(repo.put_batch({})).empty());
  EXPECT_TRUE(run(repo.get_batch({})).empty());
  run(c.stop());
}

// put_all: every put and erase or none. A conflict on any entry writes nothing (the other
// puts, the erases and the version counter stay as they were) and names the key; a refused key,
// a key twice or more than max_batch keys sends nothing; erase() and put() answer as before.
TEST_F(redis_client, repository_put_all_writes_every_key_or_none) {
  redis::client c(ctx_.get_executor(), main_server());
  redis::repository repo(c, {.key_prefix = prefix_, .max_key_bytes = 8, .max_value_bytes = 8, .max_batch = 4});
  using entry = redis::repository::put_entry;
  const auto old = run(repo.put("old", "o1", std::nullopt));
  const auto gone = run(repo.put("gone", "g1", std::nullopt));
  ASSERT_TRUE(old && gone);
  auto both = run(repo.put_all({entry{"rec", "r1", bulwark::no_version}, entry{"idx", "", std::nullopt}}, {"gone"}));
  ASSERT_TRUE(both.has_value()) << both.error();
  ASSERT_EQ(both.value().size(), 2u);
  EXPECT_GT(both.value()[1], both.value()[0]);
  EXPECT_GT(both.value()[0], gone.value());
  EXPECT_EQ(run(repo.get("rec")).value()->value, "r1");
  EXPECT_EQ(run(repo.get("rec")).value()->version, both.value()[0]);
  EXPECT_FALSE(run(repo.get("gone")).value().has_value());
  auto listed = run(repo.scan("", "", 10));
  ASSERT_TRUE(listed.has_value());
  std::vector<std::string> keys;
  for (const auto& e : listed.value().entries) keys.push_back(e.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"idx", "old", "rec"})) << "the erased key leaves the index";

  // Every condition holds: three puts in one call.
  auto three = run(repo.put_all(
      {entry{"new", "n1", std::nullopt}, entry{"rec", "r2", both.value()[0]}, entry{"old", "o2", old.value()}}));
  ASSERT_TRUE(three.has_value()) << three.error();
  EXPECT_EQ(run(repo.get("rec")).value()->version, three.value()[1]);
  const auto seq_before = run(c.execute("GET", key("seq"))).value().str;
  // The last entry's version moved: nothing of the call is written, the erase neither.
  auto refused = run(repo.put_all({entry{"new2", "n1", std::nullopt}, entry{"rec", "r3", both.value()[0]}}, {"idx"}));
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error(), bulwark::errc::conflict);
  EXPECT_EQ(refused.error().detail(),
            "put_all: \"rec\": expected version " + std::to_string(both.value()[0]) + " is not the current one");
  EXPECT_FALSE(run(repo.get("new2")).value().has_value()) << "a conflict writes nothing";
  EXPECT_TRUE(run(repo.get("idx")).value().has_value()) << "a conflict erases nothing";
  EXPECT_EQ(run(repo.get("rec")).value()->value, "r2");
  auto exists = run(repo.put_all({entry{"new3", "x", std::nullopt}, entry{"new", "x", bulwark::no_version}}));
  ASSERT_FALSE(exists.has_value());
  EXPECT_EQ(exists.error().detail(), "put_all: \"new\": the key already exists");
  EXPECT_FALSE(run(repo.get("new3")).value().has_value());
  EXPECT_EQ(run(c.execute("GET", key("seq"))).value().str, seq_before) << "a conflict takes no version";
  const auto& seq_after = seq_before;

  // Refused before sending: a bad key or value, a key twice (as put or erase), too many keys.
  EXPECT_EQ(run(repo.put_all({entry{"too-long-key", "x", std::nullopt}})).error(), bulwark::errc::invalid_argument);
  EXPECT_EQ(run(repo.put_all({entry{"a", "123456789", std::nullopt}})).error(), bulwark::errc::too_large);
  EXPECT_EQ(run(repo.put_all({entry{"a", "1", std::nullopt}}, {""})).error(), bulwark::errc::invalid_argument);
  auto twice = run(repo.put_all({entry{"a", "1", std::nullopt}}, {"a"}));
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.error(), bulwark::errc::invalid_argument);
  EXPECT_EQ(twice.error().detail(), "put_all: key \"a\" given twice");
  auto many = run(repo.put_all(
      {entry{"a", "1", std::nullopt}, entry{"b", "1", std::nullopt}, entry{"c", "1", std::nullopt}}, {"d", "e"}));
  ASSERT_FALSE(many.has_value());
  EXPECT_EQ(many.error(), bulwark::errc::invalid_argument);
  EXPECT_FALSE(run(repo.get("a")).value().has_value());
  EXPECT_EQ(run(c.execute("GET", key("seq"))).value().str, seq_after) << "a refused call sends nothing";
  EXPECT_TRUE(run(repo.put_all({}, {})).value().empty());

  // erase() goes through the same script: true once, then false; put() of an absent key.
  EXPECT_TRUE(run(repo.erase("idx")).value());
  EXPECT_FALSE(run(repo.erase("idx")).value());
  EXPECT_FALSE(run(repo.get("idx")).value().has_value());
  EXPECT_TRUE(run(repo.put("idx", "i", bulwark::no_version)).has_value());
  EXPECT_EQ(run(repo.put("idx", "i", bulwark::no_version)).error(), bulwark::errc::conflict);
  run(c.stop());
}

TEST_F(redis_client, two_clients_share_versions_and_conflicts) {
  redis::client one(ctx_.get_executor(), main_server());
  redis::client two(ctx_.get_executor(), main_server());
  redis::repository a(one, {prefix_});
  redis::repository b(two, {prefix_});
  auto v1 = run(a.put("shared", "from a", bulwark::no_version));
  ASSERT_TRUE(v1.has_value()) << v1.error();
  auto seen = run(b.get("shared"));
  ASSERT_TRUE(seen.has_value() && seen.value().has_value());
  EXPECT_EQ(seen.value()->version, v1.value());
  ASSERT_TRUE(run(b.put("shared", "from b", v1.value())).has_value());
  EXPECT_EQ(run(a.put("shared", "stale", v1.value())).error(), bulwark::errc::conflict);
  run(one.stop());
  run(two.stop());
}

} // namespace

namespace {
/// Starts every put in `puts` (key, version) in the same turn of the event loop, then waits
/// for all of them: their results in order.
asio::awaitable<std::vector<bulwark::result<bool>>>
concurrent_puts(redis::cache& cache, const std::vector<std::pair<std::string, bulwark::version_t>>& puts,
                std::vector<std::chrono::milliseconds> ttls = {}) {
  auto ex = co_await asio::this_coro::executor;
  std::vector<std::future<std::optional<bulwark::result<bool>>>> futures;
  for (std::size_t i = 0; i < puts.size(); ++i) {
    auto& [k, v] = puts[i];
    bulwark::versioned entry{"value:" + std::to_string(v), v};
    futures.push_back(bulwark::test::spawn(ex, cache.put(k, std::move(entry), i < ttls.size() ? ttls[i] : 0ms)));
  }
  std::vector<bulwark::result<bool>> out;
  for (auto& f : futures) {
    auto got = co_await bulwark::test::await_future(f);
    out.push_back(*got);
  }
  co_return out;
}
} // namespace

TEST_F(redis_client, concurrent_cache_puts_share_one_script_call) {
  auto options = main_server();
  options.pool_size = 1;
  redis::client c(ctx_.get_executor(), options);
  redis::cache cache(c, {prefix_});
  ASSERT_TRUE(run(c.execute("PING")).has_value()); // connected
  // One put first, so the server has the script cached: on a fresh server the first EVALSHA
  // answers NOSCRIPT and is followed by an EVAL, which would count as a second command.
  bulwark::versioned warm_up{"warm", 1};
  ASSERT_TRUE(run(cache.put("warm-up", std::move(warm_up), std::chrono::seconds(60))).has_value());
  std::vector<std::pair<std::string, bulwark::version_t>> puts;
  for (int i = 0; i < 100; ++i) puts.emplace_back(bulwark::test::numbered_key("k", i), 1 + i);
  const auto before = c.statistics();
  const auto batches_before = cache.put_batches();
  const auto batched_before = cache.batched_puts();
  auto results = run(concurrent_puts(cache, puts));
  const auto after = c.statistics();
  ASSERT_EQ(results.size(), 100u);
  for (auto& r : results) {
    ASSERT_TRUE(r.has_value()) << r.error();
    EXPECT_TRUE(r.value());
  }
  EXPECT_EQ(cache.put_batches() - batches_before, 1u) << "100 puts of one turn must share one script call";
  EXPECT_EQ(after.commands - before.commands, 1u);
  EXPECT_EQ(cache.batched_puts() - batched_before, 100u);
  for (int i : {0, 57, 99}) {
    auto got = run(cache.get("k" + std::to_string(i)));
    ASSERT_TRUE(got.has_value() && got.value().has_value());
    EXPECT_EQ(got.value()->version, static_cast<bulwark::version_t>(1 + i));
    EXPECT_EQ(got.value()->value, "value:" + std::to_string(1 + i));
  }
  // The batch size is bounded: 20 puts with max_put_batch 8 take 3 script calls.
  redis::cache small(c, {prefix_ + "small:", 1024, 1024, 8});
  puts.resize(20);
  const auto commands_before = c.statistics().commands;
  results = run(concurrent_puts(small, puts));
  for (auto& r : results) ASSERT_TRUE(r.has_value() && r.value());
  EXPECT_EQ(small.put_batches(), 3u);
  EXPECT_EQ(c.statistics().commands - commands_before, 3u);
  run(c.stop());
}

TEST_F(redis_client, a_batch_of_puts_keeps_individual_results_and_issue_order) {
  auto options = main_server();
  options.pool_size = 1;
  redis::client c(ctx_.get_executor(), options);
  redis::cache cache(c, {prefix_});
  ASSERT_TRUE(run(cache.put("high", {"stored", 10}, 0ms)).value());
  ASSERT_TRUE(run(c.execute("HSET", key("hash"), "f", "v")).has_value()); // WRONGTYPE for GET
  const auto batches_before = cache.put_batches();
  auto results = run(concurrent_puts(cache, {{"a", 1},
                                             {"high", 5}, // lower than the stored 10: false, alone
                                             {"hash", 1}, // WRONGTYPE: fails alone
                                             {"", 1},     // invalid: never joins the batch
                                             {"b", 2},
                                             {"same", 7},
                                             {"same", 3}, // after 7 in issue order: false
                                             {"up", 1},
                                             {"up", 2}, // after 1: true
                                             {"high", 11}}));
  ASSERT_EQ(results.size(), 10u);
  EXPECT_EQ(cache.put_batches() - batches_before, 1u);
  auto expect_stored = [&](std::size_t i, bool stored) {
    ASSERT_TRUE(results[i].has_value()) << i << ": " << results[i].error();
    EXPECT_EQ(results[i].value(), stored) << i;
  };
  expect_stored(0, true);
  expect_stored(1, false);
  ASSERT_FALSE(results[2].has_value());
  EXPECT_EQ(results[2].error(), bulwark::errc::invalid_argument); // redis wrong_type
  EXPECT_EQ(results[2].error().code(), make_error_code(redis::redis_errc::wrong_type));
  ASSERT_FALSE(results[3].has_value());
  EXPECT_EQ(results[3].error(), bulwark::errc::invalid_argument);
  expect_stored(4, true);
  expect_stored(5, true);
  expect_stored(6, false);
  expect_stored(7, true);
  expect_stored(8, true);
  expect_stored(9, true);
  EXPECT_EQ(run(cache.get("same")).value()->version, 7u);
  EXPECT_EQ(run(cache.get("up")).value()->version, 2u);
  EXPECT_EQ(run(cache.get("high")).value()->version, 11u);
  // Only the last accepted put of a key is written, with its own ttl (none, or PX).
  results = run(concurrent_puts(cache, {{"t", 1}, {"t", 2}, {"t", 1}, {"u", 1}, {"u", 2}, {"v", 1}, {"v", 0}},
                                {5000ms, 0ms, 5000ms, 0ms, 5000ms, 5000ms, 0ms}));
  ASSERT_EQ(results.size(), 7u);
  for (std::size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].has_value()) << i;
    EXPECT_EQ(results[i].value(), i != 2 && i != 6) << i;
  }
  EXPECT_EQ(run(c.execute("PTTL", key("t"))).value().integer, -1);
  EXPECT_GT(run(c.execute("PTTL", key("u"))).value().integer, 4000);
  EXPECT_GT(run(c.execute("PTTL", key("v"))).value().integer, 4000);
  EXPECT_EQ(run(cache.get("t")).value()->version, 2u);
  EXPECT_EQ(run(cache.get("u")).value()->value, "value:2");
  EXPECT_EQ(run(cache.get("v")).value()->value, "value:1");
  run(c.stop());
}

TEST(redis_errors, the_table_matches_the_category_and_docs_errors_md) {
  EXPECT_STREQ(redis::redis_category().name(), "redis");
  bulwark::test::expect_category_matches_table_and_docs(redis::redis_category(), redis::redis_errc_rows, 20);
  EXPECT_EQ(redis::classify_server_error("WRONGPASS invalid username-password pair"), redis::redis_errc::auth_failed);
}
