// mysql::repository, pool and error mapping against a real MariaDB.
#include <bulwark/http/responses.hpp>
#include <bulwark/mysql.hpp>
#include <bulwark/resilience/timeout.hpp>

#include "fixture.hpp"
#include "support/error_table.hpp"
#include "support/run.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <errmsg.h>
#include <gtest/gtest.h>
#include <mysqld_error.h>

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace bulwark;
using namespace std::chrono_literals;
using mysql::test::test_config;

class mysql_adapter : public ::testing::Test {
protected:
  void SetUp() override {
    if (!::bulwark::test::server_env("BULWARK_MYSQL_PORT")) {
      if (std::getenv("BULWARK_REQUIRE_SERVERS")) FAIL() << "BULWARK_MYSQL_PORT is not set";
      GTEST_SKIP() << "BULWARK_MYSQL_PORT is not set (scripts/servers.sh up mysql)";
    }
    pool_.emplace(ctx_.get_executor(), test_config());
    auto r = run(mysql::repository::open(*pool_, mysql::test::table_name(mysql::test::current_test_name())));
    ASSERT_TRUE(r.has_value()) << r.error();
    repo_.emplace(std::move(r).value());
  }
  void TearDown() override {
    repo_.reset();
    if (pool_) run(pool_->stop());
  }
  template <class T> T run(asio::awaitable<T> op) { return mysql::test::run_in(ctx_, std::move(op)); }

  asio::io_context ctx_;
  std::optional<mysql::pool> pool_;
  std::optional<mysql::repository> repo_;
};

TEST_F(mysql_adapter, keys_and_values_of_any_bytes_round_trip) {
  const std::vector<std::string> keys = {"plain",
                                         "it's \"quoted\" `back` \\slash",
                                         std::string("nul\0inside", 10),
                                         std::string("\0", 1),
                                         "unicode \xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80",
                                         "trailing space ",
                                         "trailing space",
                                         std::string(255, 'k'),
                                         std::string("\xFF\xFE\x00\x01", 4),
                                         "'; DROP TABLE x; --"};
  for (const auto& key : keys) {
    const std::string value = "v:" + key + std::string("\0\x01\xFF'\"", 5);
    auto put = run(repo_->put(key, value, std::nullopt));
    ASSERT_TRUE(put.has_value()) << put.error();
  }
  for (const auto& key : keys) {
    auto got = run(repo_->get(key));
    ASSERT_TRUE(got.has_value()) << got.error();
    ASSERT_TRUE(got.value().has_value()) << "missing key of size " << key.size();
    EXPECT_EQ(got.value()->value, "v:" + key + std::string("\0\x01\xFF'\"", 5));
    EXPECT_EQ(got.value()->version, 1u);
  }
  auto page = run(repo_->scan("", "", 100));
  ASSERT_TRUE(page.has_value()) << page.error();
  EXPECT_EQ(page.value().entries.size(), keys.size());
}

TEST_F(mysql_adapter, large_values_and_empty_values_round_trip) {
  std::string big(1u << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) ^ (i >> 8));
  ASSERT_TRUE(run(repo_->put("big", big, std::nullopt)).has_value());
  ASSERT_TRUE(run(repo_->put("empty", "", std::nullopt)).has_value());
  auto got = run(repo_->get("big"));
  ASSERT_TRUE(got.has_value() && got.value().has_value());
  EXPECT_TRUE(got.value()->value == big);
  auto empty = run(repo_->get("empty"));
  ASSERT_TRUE(empty.has_value() && empty.value().has_value()) << "an empty value is not an absent key";
  EXPECT_EQ(empty.value()->value, "");
}

TEST_F(mysql_adapter, bad_keys_and_oversized_values_are_refused) {
  auto too_long = run(repo_->put(std::string(256, 'k'), "v", std::nullopt));
  ASSERT_FALSE(too_long.has_value());
  EXPECT_EQ(too_long.error(), errc::invalid_argument);
  auto empty = run(repo_->get(""));
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error(), errc::invalid_argument);
  auto get_long = run(repo_->get(std::string(300, 'k')));
  ASSERT_FALSE(get_long.has_value());
  EXPECT_EQ(get_long.error(), errc::invalid_argument);

  mysql::pool small(ctx_.get_executor(), test_config());
  auto repo = run(mysql::repository::open(small, repo_->collection(), 1024));
  ASSERT_TRUE(repo.has_value());
  auto big = run(repo.value().put("k", std::string(1025, 'v'), std::nullopt));
  ASSERT_FALSE(big.has_value());
  EXPECT_EQ(big.error(), errc::too_large);
  run(small.stop());

  auto bad_table = run(mysql::repository::open(*pool_, "x`; DROP TABLE y"));
  ASSERT_FALSE(bad_table.has_value());
  EXPECT_EQ(bad_table.error(), errc::invalid_argument);
}

TEST_F(mysql_adapter, compare_and_set_by_version) {
  auto v1 = run(repo_->put("k", "a", no_version));
  ASSERT_TRUE(v1.has_value()) << v1.error();
  EXPECT_EQ(v1.value(), 1u);
  auto again = run(repo_->put("k", "b", no_version));
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error(), errc::conflict);
  auto v2 = run(repo_->put("k", "b", v1.value()));
  ASSERT_TRUE(v2.has_value()) << v2.error();
  EXPECT_EQ(v2.value(), 2u);
  auto stale = run(repo_->put("k", "c", v1.value()));
  ASSERT_FALSE(stale.has_value());
  EXPECT_EQ(stale.error(), errc::conflict);
  auto missing = run(repo_->put("other", "c", 7));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error(), errc::conflict);
  auto got = run(repo_->get("k"));
  ASSERT_TRUE(got.has_value() && got.value().has_value());
  EXPECT_EQ(got.value()->value, "b");
  EXPECT_EQ(got.value()->version, 2u);
  // Same value again still moves the version (affected rows must not be 0 for a no-op write).
  auto v3 = run(repo_->put("k", "b", 2));
  ASSERT_TRUE(v3.has_value()) << v3.error();
  EXPECT_EQ(v3.value(), 3u);
}

TEST_F(mysql_adapter, versions_stay_monotonic_across_erase) {
  ASSERT_TRUE(run(repo_->put("k", "a", std::nullopt)).has_value());
  ASSERT_TRUE(run(repo_->put("k", "b", std::nullopt)).has_value());
  auto erased = run(repo_->erase("k"));
  ASSERT_TRUE(erased.has_value() && erased.value());
  auto erased_again = run(repo_->erase("k"));
  ASSERT_TRUE(erased_again.has_value());
  EXPECT_FALSE(erased_again.value());
  auto gone = run(repo_->get("k"));
  ASSERT_TRUE(gone.has_value());
  EXPECT_FALSE(gone.value().has_value());
  auto stale = run(repo_->put("k", "x", 2));
  ASSERT_FALSE(stale.has_value()) << "a CAS on an erased key must not resurrect it";
  EXPECT_EQ(stale.error(), errc::conflict);
  auto v = run(repo_->put("k", "c", no_version));
  ASSERT_TRUE(v.has_value()) << v.error();
  EXPECT_EQ(v.value(), 3u);
  ASSERT_TRUE(run(repo_->erase("k")).value());
  auto w = run(repo_->put("k", "d", std::nullopt));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w.value(), 4u);
}

TEST_F(mysql_adapter, put_absent_many_stores_absent_keys_once_and_keeps_present_ones) {
  ASSERT_TRUE(run(repo_->put("present", "old", no_version)).has_value());
  ASSERT_TRUE(run(repo_->put("erased", "x", no_version)).has_value());
  ASSERT_TRUE(run(repo_->erase("erased")).value());
  using items = std::vector<std::pair<std::string, std::string>>;
  auto r =
      run(repo_->put_absent_many(items{{"a", "1"}, {"present", "new"}, {"b", "2"}, {"a", "again"}, {"erased", "y"}}));
  ASSERT_TRUE(r.has_value()) << r.error();
  const auto value_of = [&](std::string key) {
    auto got = run(repo_->get(key));
    return got && got.value() ? got.value()->value + "@" + std::to_string(got.value()->version) : std::string("-");
  };
  EXPECT_EQ(value_of("a"), "1@1"); // given twice: its first value, once
  EXPECT_EQ(value_of("b"), "2@1");
  EXPECT_EQ(value_of("present"), "old@1"); // kept, no error
  EXPECT_EQ(value_of("erased"), "y@2");    // the tombstone's sequence continues
  // The same items again (a redelivered batch) change nothing; so does an empty list.
  ASSERT_TRUE(run(repo_->put_absent_many(items{{"a", "z"}, {"b", "z"}})).has_value());
  ASSERT_TRUE(run(repo_->put_absent_many(items{})).has_value());
  EXPECT_EQ(value_of("a"), "1@1");
  EXPECT_EQ(value_of("b"), "2@1");
  // More than one statement's worth (256 rows, then 45 padded to 64), in key order on a scan.
  items many;
  for (int i = 0; i < 301; ++i) many.emplace_back("m/" + std::to_string(1000 + i), std::to_string(i));
  ASSERT_TRUE(run(repo_->put_absent_many(many)).has_value());
  auto page = run(repo_->scan("m/", "", 1000));
  ASSERT_TRUE(page.has_value()) << page.error();
  ASSERT_EQ(page.value().entries.size(), 301u);
  EXPECT_EQ(page.value().entries[300].value, "300");
  // A bad key anywhere refuses the whole call before anything is written.
  auto bad = run(repo_->put_absent_many(items{{"c", "3"}, {"", "empty key"}}));
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error(), errc::invalid_argument);
  EXPECT_EQ(value_of("c"), "-");
}

TEST_F(mysql_adapter, scan_pages_through_a_prefix_in_byte_order) {
  std::vector<std::string> inside = {"p",     "p\x01", "p a",      "pa", "pb", "pz", std::string("p\0", 2),
                                     "p\x7F", "p\xFF", "p\xFF\xFF"};
  for (const auto& k : inside) ASSERT_TRUE(run(repo_->put(k, "v" + k, std::nullopt)).has_value());
  for (const auto& k : {"o", "o\xFF", "q", "\xFF"}) ASSERT_TRUE(run(repo_->put(k, "x", std::nullopt)).has_value());
  ASSERT_TRUE(run(repo_->put("pdeleted", "x", std::nullopt)).has_value());
  ASSERT_TRUE(run(repo_->erase("pdeleted")).value());
  std::sort(inside.begin(), inside.end());
  std::vector<std::string> seen;
  std::string after;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = run(repo_->scan("p", after, 3));
    ASSERT_TRUE(page.has_value()) << page.error();
    EXPECT_LE(page.value().entries.size(), 3u);
    for (auto& e : page.value().entries) {
      EXPECT_EQ(e.value, "v" + e.key);
      seen.push_back(e.key);
    }
    if (!page.value().next) break;
    after = *page.value().next;
  }
  EXPECT_EQ(seen, inside);
  // Bounds longer than any key: a prefix matches nothing, an `after` still orders.
  auto long_prefix = run(repo_->scan(std::string(300, 'p'), "", 10));
  ASSERT_TRUE(long_prefix.has_value()) << long_prefix.error();
  EXPECT_TRUE(long_prefix.value().entries.empty());
  auto long_after = run(repo_->scan("p", std::string(300, 'p'), 10));
  ASSERT_TRUE(long_after.has_value()) << long_after.error();
  std::vector<std::string> after_keys;
  for (auto& e : long_after.value().entries) after_keys.push_back(e.key);
  EXPECT_EQ(after_keys, (std::vector<std::string>{"pz", "p\x7F", "p\xFF", "p\xFF\xFF"}));
  auto high = run(repo_->scan("\xFF", "", 10));
  ASSERT_TRUE(high.has_value());
  ASSERT_EQ(high.value().entries.size(), 1u);
  EXPECT_FALSE(high.value().next.has_value());
}

TEST_F(mysql_adapter, purge_removes_a_key_range_for_good_tombstones_too) {
  for (const auto& k : {"o", "p1", "p2", "p3", "p4", "p5", "p\xFF", "q"})
    ASSERT_TRUE(run(repo_->put(k, "v", std::nullopt)).has_value());
  ASSERT_TRUE(run(repo_->put("p2", "v2", std::nullopt)).has_value()); // version 2
  ASSERT_TRUE(run(repo_->erase("p2")).value());                       // a tombstone
  auto purged = run(repo_->purge("p", "p1", 2));                      // p2 (tombstone), p3
  ASSERT_TRUE(purged.has_value()) << purged.error();
  EXPECT_EQ(purged.value(), 2u);
  purged = run(repo_->purge("p", "p3", 100)); // the rest after p3 inside the prefix: p4, p5, p\xFF
  ASSERT_TRUE(purged.has_value()) << purged.error();
  EXPECT_EQ(purged.value(), 3u);
  EXPECT_EQ(run(repo_->purge("p", "p3", 100)).value(), 0u);
  std::vector<std::string> left;
  for (const auto& k : {"o", "p1", "p2", "p3", "p4", "q"})
    if (run(repo_->get(k)).value()) left.emplace_back(k);
  EXPECT_EQ(left, (std::vector<std::string>{"o", "p1", "q"}));
  // No tombstone is left: p2 written again starts its versions over.
  EXPECT_EQ(run(repo_->put("p2", "again", std::nullopt)).value(), 1u);
  EXPECT_EQ(run(repo_->purge("p", "", 0)).error(), bulwark::errc::invalid_argument);
}

TEST_F(mysql_adapter, errors_map_onto_bulwark_conditions) {
  EXPECT_EQ(std::error_code(mysql::make_error_code(2002)), errc::unavailable);
  EXPECT_EQ(std::error_code(mysql::make_error_code(2003)), errc::unavailable);
  EXPECT_EQ(std::error_code(mysql::make_error_code(2006)), errc::unavailable);
  EXPECT_EQ(std::error_code(mysql::make_error_code(2013)), errc::unavailable);
  EXPECT_EQ(std::error_code(mysql::make_error_code(1205)), errc::timeout);
  EXPECT_EQ(std::error_code(mysql::make_error_code(1062)), errc::conflict);
  EXPECT_EQ(std::error_code(mysql::make_error_code(1045)), errc::rejected);
  EXPECT_NE(std::error_code(mysql::make_error_code(1064)), errc::unavailable);
  EXPECT_STREQ(mysql::make_error_code(2013).category().name(), "mysql");

  // A real duplicate key (1062) from the server, through the connection.
  auto l = run(pool_->acquire());
  ASSERT_TRUE(l.has_value());
  const std::string t = "`" + repo_->collection() + "`";
  ASSERT_TRUE(run(l.value()->run_ddl("INSERT INTO " + t + " (k, v, version) VALUES ('dup', 'x', 1)")).has_value());
  auto dup = run(l.value()->run_ddl("INSERT INTO " + t + " (k, v, version) VALUES ('dup', 'x', 1)"));
  ASSERT_FALSE(dup.has_value());
  EXPECT_EQ(dup.error().code().value(), 1062);
  EXPECT_EQ(dup.error(), errc::conflict);
  EXPECT_TRUE(l.value()->is_open()) << "a server error must not cost the connection";

  // Wrong password: access denied (1045) -> rejected.
  auto cfg = test_config();
  cfg.password = "wrong";
  mysql::pool denied(ctx_.get_executor(), cfg);
  auto r = run(denied.ping());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), errc::rejected) << r.error();
  run(denied.stop());
}

TEST_F(mysql_adapter, lock_wait_timeout_maps_to_timeout) {
  ASSERT_TRUE(run(repo_->put("locked", "a", std::nullopt)).has_value());
  // The server's lock wait timeout (1 s) must come before the client's read timeout.
  auto cfg = test_config();
  cfg.read_timeout = 10s;
  mysql::pool patient(ctx_.get_executor(), cfg);
  auto holder = run(patient.acquire());
  auto other = run(patient.acquire());
  ASSERT_TRUE(holder.has_value() && other.has_value());
  const std::string t = "`" + repo_->collection() + "`";
  ASSERT_TRUE(run(holder.value()->run_ddl("START TRANSACTION")).has_value());
  ASSERT_TRUE(run(holder.value()->run_ddl("SELECT * FROM " + t + " WHERE k = 'locked' FOR UPDATE")).has_value());
  ASSERT_TRUE(run(other.value()->run_ddl("SET SESSION innodb_lock_wait_timeout = 1")).has_value());
  auto blocked = run(other.value()->run_ddl("UPDATE " + t + " SET version = 9 WHERE k = 'locked'"));
  ASSERT_FALSE(blocked.has_value());
  EXPECT_EQ(blocked.error().code().value(), 1205);
  EXPECT_EQ(blocked.error(), errc::timeout);
  ASSERT_TRUE(run(holder.value()->run_ddl("ROLLBACK")).has_value());
  holder.value().release();
  other.value().release();
  run(patient.stop());
}

TEST_F(mysql_adapter, pool_bounds_its_connections_and_its_waiters) {
  auto cfg = test_config();
  cfg.pool_size = 2;
  cfg.max_waiters = 1;
  cfg.acquire_timeout = 200ms;
  mysql::pool p(ctx_.get_executor(), cfg);
  auto a = run(p.acquire());
  auto b = run(p.acquire());
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(p.stats().open, 2u);
  // A third caller waits and times out; a fourth, while it waits, is rejected at once.
  std::optional<result<mysql::lease>> third, fourth;
  std::chrono::steady_clock::duration third_took{}, fourth_took{};
  const auto start = std::chrono::steady_clock::now();
  asio::co_spawn(ctx_, mysql::test::optional_of(p.acquire()),
                 [&](std::exception_ptr, std::optional<result<mysql::lease>> r) {
                   third_took = std::chrono::steady_clock::now() - start;
                   third.swap(r); // not `= std::move(*r)`: GCC 12 -O3 warns maybe-uninitialized on that move
                 });
  asio::co_spawn(ctx_, mysql::test::optional_of(p.acquire()),
                 [&](std::exception_ptr, std::optional<result<mysql::lease>> r) {
                   fourth_took = std::chrono::steady_clock::now() - start;
                   fourth.swap(r); // not `= std::move(*r)`: GCC 12 -O3 warns maybe-uninitialized on that move
                 });
  while ((!third || !fourth) && std::chrono::steady_clock::now() - start < 5s) ctx_.run_one_for(10ms);
  ASSERT_TRUE(third && fourth);
  ASSERT_FALSE(fourth->has_value());
  EXPECT_EQ(fourth->error(), errc::rejected);
  EXPECT_LT(fourth_took, 100ms);
  ASSERT_FALSE(third->has_value());
  EXPECT_EQ(third->error(), errc::timeout);
  EXPECT_GE(third_took, 150ms);
  // A returned lease goes to the next caller.
  a.value().release();
  auto c = run(p.acquire());
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(p.stats().open, 2u);
  ASSERT_TRUE(run(c.value()->ping()).has_value());
  c.value().release();
  b.value().release();
  run(p.stop());
  auto after_stop = run(p.acquire());
  ASSERT_FALSE(after_stop.has_value());
  EXPECT_EQ(after_stop.error(), errc::cancelled);
}

/// A TCP proxy on a free loopback port in front of the MySQL server. It holds the first
/// connection it accepts without a byte (a connect that hangs until its caller gives up) and
/// forwards every later one both ways.
class holding_proxy {
public:
  holding_proxy(asio::io_context& ctx, const std::string& host, unsigned short port)
      : ex_(ctx.get_executor()), acceptor_(ctx, {asio::ip::make_address("127.0.0.1"), 0}),
        upstream_(*asio::ip::tcp::resolver(ctx).resolve(host, std::to_string(port)).begin()) {
    asio::co_spawn(ex_, accept_loop(), asio::detached);
  }
  ~holding_proxy() {
    asio::error_code ignored;
    acceptor_.close(ignored);
    for (auto& s : held_) s.close(ignored);
  }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  std::size_t accepted() const { return accepted_; }

private:
  using socket_ptr = std::shared_ptr<asio::ip::tcp::socket>;

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, client] = co_await acceptor_.async_accept(asio::experimental::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      if (accepted_++ == 0) {
        held_.push_back(std::move(client));
        continue;
      }
      asio::co_spawn(ex_, forward(ex_, upstream_, std::make_shared<asio::ip::tcp::socket>(std::move(client))),
                     asio::detached);
    }
  }

  // Static, with its own copies: a forwarding outlives nothing of the proxy object.
  static asio::awaitable<void> forward(asio::any_io_executor ex, asio::ip::tcp::endpoint upstream, socket_ptr client) {
    auto server = std::make_shared<asio::ip::tcp::socket>(ex);
    auto [ec] = co_await server->async_connect(upstream, asio::experimental::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    asio::co_spawn(ex, pipe(client, server), asio::detached);
    co_await pipe(server, client);
  }

  static asio::awaitable<void> pipe(socket_ptr from, socket_ptr to) {
    std::array<char, 16384> buf;
    for (;;) {
      auto [rec, n] =
          co_await from->async_read_some(asio::buffer(buf), asio::experimental::as_tuple(asio::use_awaitable));
      if (rec) break;
      auto [wec, m] =
          co_await asio::async_write(*to, asio::buffer(buf, n), asio::experimental::as_tuple(asio::use_awaitable));
      if (wec) break;
    }
    asio::error_code ignored;
    to->shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  }

  asio::any_io_executor ex_;
  asio::ip::tcp::acceptor acceptor_;
  asio::ip::tcp::endpoint upstream_;
  std::vector<asio::ip::tcp::socket> held_;
  std::size_t accepted_ = 0;
};

TEST_F(mysql_adapter, a_cancelled_connect_starts_no_backoff_for_other_callers) {
  // The pool's first connect hangs (the proxy holds it), and the caller's deadline cuts it.
  // The next caller must connect at once, not meet a reconnect backoff started by the cut.
  auto cfg = test_config();
  holding_proxy proxy(ctx_, cfg.host, static_cast<unsigned short>(cfg.port));
  cfg.host = "127.0.0.1";
  cfg.port = proxy.port();
  cfg.unix_socket.clear();
  mysql::pool p(ctx_.get_executor(), cfg);
  auto cut = run(with_timeout(p.acquire(), 100ms, "acquire"));
  ASSERT_FALSE(cut.has_value()) << "the connect the proxy held was not cut";
  EXPECT_EQ(cut.error(), errc::timeout) << cut.error();
  auto next = run(p.acquire());
  ASSERT_TRUE(next.has_value()) << "after a cancelled connect: " << next.error();
  ASSERT_TRUE(run(next.value()->ping()).has_value());
  EXPECT_EQ(p.stats().connect_failures, 0u);
  EXPECT_EQ(proxy.accepted(), 2u);
  next.value().release();
  run(p.stop());
}

} // namespace

// Each row's name is the client headers' macro for that number, so a typo in a number shows.
TEST(mysql_errors, the_table_matches_the_client_headers_the_category_and_docs_errors_md) {
  EXPECT_STREQ(mysql::mysql_category().name(), "mysql");
  bulwark::test::expect_category_matches_table_and_docs(mysql::mysql_category(), mysql::mysql_error_rows, 1064);
#define BULWARK_MACRO(m)                                                                                               \
  { #m, m }
  const std::map<std::string_view, int> macros{
      BULWARK_MACRO(ER_CON_COUNT_ERROR),
      BULWARK_MACRO(ER_DBACCESS_DENIED_ERROR),
      BULWARK_MACRO(ER_ACCESS_DENIED_ERROR),
      BULWARK_MACRO(ER_SERVER_SHUTDOWN),
      BULWARK_MACRO(ER_DUP_ENTRY),
      BULWARK_MACRO(ER_TABLEACCESS_DENIED_ERROR),
      BULWARK_MACRO(ER_NET_PACKET_TOO_LARGE),
      BULWARK_MACRO(ER_LOCK_WAIT_TIMEOUT),
      BULWARK_MACRO(ER_LOCK_DEADLOCK),
      BULWARK_MACRO(ER_TRUNCATED_WRONG_VALUE_FOR_FIELD),
      BULWARK_MACRO(ER_DATA_TOO_LONG),
      BULWARK_MACRO(ER_CONNECTION_KILLED),
      BULWARK_MACRO(CR_SOCKET_CREATE_ERROR),
      BULWARK_MACRO(CR_CONNECTION_ERROR),
      BULWARK_MACRO(CR_CONN_HOST_ERROR),
      BULWARK_MACRO(CR_IPSOCK_ERROR),
      BULWARK_MACRO(CR_UNKNOWN_HOST),
      BULWARK_MACRO(CR_SERVER_GONE_ERROR),
      BULWARK_MACRO(CR_TCP_CONNECTION),
      BULWARK_MACRO(CR_SERVER_HANDSHAKE_ERR),
      BULWARK_MACRO(CR_SERVER_LOST),
      BULWARK_MACRO(CR_COMMANDS_OUT_OF_SYNC),
      BULWARK_MACRO(CR_NET_PACKET_TOO_LARGE),
      BULWARK_MACRO(CR_SSL_CONNECTION_ERROR),
      BULWARK_MACRO(CR_MALFORMED_PACKET),
      BULWARK_MACRO(CR_SERVER_LOST_EXTENDED),
      BULWARK_MACRO(CR_ERR_NET_READ),
      BULWARK_MACRO(CR_ERR_NET_WRITE),
  };
#undef BULWARK_MACRO
  for (const auto& row : mysql::mysql_error_rows) {
    const auto macro = macros.find(row.name);
    ASSERT_NE(macro, macros.end()) << row.name;
    EXPECT_EQ(macro->second, row.value) << row.name;
  }
  EXPECT_EQ(mysql::make_error_code(1064).message(), "mysql server error 1064");
  EXPECT_EQ(mysql::make_error_code(2099).message(), "mysql client error 2099");
}

// The service's own credentials refused by the server (a real 1045) is "rejected", which the
// HTTP layer answers 503: the caller is not at fault, so neither 401 nor 403.
TEST_F(mysql_adapter, a_refused_login_is_rejected_and_answered_503) {
  auto cfg = test_config();
  cfg.user = "bulwark_no_such_user";
  cfg.password = "wrong";
  mysql::pool refused(ctx_.get_executor(), cfg);
  auto l = run(refused.acquire());
  ASSERT_FALSE(l.has_value());
  EXPECT_EQ(l.error().code(), mysql::make_error_code(1045)) << l.error();
  EXPECT_EQ(l.error(), errc::rejected);
  const auto answer = bulwark::http::error_response(l.error());
  EXPECT_EQ(answer.status, 503);
  EXPECT_EQ(answer.headers.get("Retry-After"), std::optional<std::string_view>("1"));
  run(refused.stop());
}
