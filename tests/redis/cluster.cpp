// redis::client on a Redis Cluster: hash slots (no server), routing and the cluster-only error
// codes on the shared cluster (scripts/servers/redis-cluster.sh up), and the faults - resharding
// under load, a master killed under load, the whole cluster down - on a private six-node cluster
// each test starts and stops itself (never the shared one). Every load loop is bounded in count
// and in time.
#include <bulwark/redis.hpp>

#include "fixture.hpp"
#include "support/keys.hpp"
#include "support/run.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>
#include <unistd.h>

using namespace std::chrono_literals;
namespace redis = bulwark::redis;
using steady = std::chrono::steady_clock;
using redis::detail::key_slot;

namespace {

// --- hash slots: the spec's and the Redis docs' values ---

TEST(redis_cluster_slots, crc16_is_the_xmodem_variant_of_the_spec) {
  EXPECT_EQ(redis::detail::crc16("123456789"), 0x31C3); // the Redis Cluster spec's check value
  EXPECT_EQ(redis::detail::crc16(""), 0);
  static_assert(redis::detail::crc16("123456789") == 0x31C3, "constexpr");
}

TEST(redis_cluster_slots, key_slots_and_hash_tags_match_redis) {
  // Values of CLUSTER KEYSLOT on Redis 7.0, and the hash tag rules of the spec.
  EXPECT_EQ(key_slot("foo"), 12182);
  EXPECT_EQ(key_slot("bar"), 5061);
  EXPECT_EQ(key_slot("hello"), 866);
  EXPECT_EQ(key_slot("123456789"), 12739);
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("user1000"));
  EXPECT_EQ(key_slot("{user1000}.following"), 3443);
  EXPECT_EQ(key_slot("foo{}{bar}"), 8363);    // an empty tag: the whole key
  EXPECT_EQ(key_slot("foo{{bar}}zap"), 4015); // the tag is "{bar"
  EXPECT_EQ(key_slot("foo{{bar}}zap"), key_slot("{bar"));
  EXPECT_EQ(key_slot("foo{bar}{zap}"), 5061);          // the first tag only
  EXPECT_EQ(key_slot("foo{bar"), key_slot("foo{bar")); // no closing brace: the whole key
  EXPECT_NE(key_slot("foo{bar"), key_slot("bar"));
}

TEST(redis_cluster_slots, commands_are_routed_by_their_first_key) {
  auto key = [](std::initializer_list<std::string_view> args) {
    return redis::detail::routing_key(std::span<const std::string_view>(args.begin(), args.size()));
  };
  EXPECT_EQ(key({"GET", "k"}), "k");
  EXPECT_EQ(key({"set", "k", "v"}), "k");
  EXPECT_EQ(key({"EVALSHA", "sha", "2", "a", "b", "x"}), "a");
  EXPECT_EQ(key({"EVAL", "return 1", "0"}), std::nullopt);
  EXPECT_EQ(key({"CLUSTER", "SLOTS"}), std::nullopt);
  EXPECT_EQ(key({"PING"}), std::nullopt);
  EXPECT_TRUE(redis::detail::read_only_command("hmget"));
  EXPECT_FALSE(redis::detail::read_only_command("EVALSHA"));
}

// --- helpers ---

std::string shell(const std::string& command) {
  std::string out;
  if (FILE* f = ::popen(command.c_str(), "r")) {
    char buf[4096];
    while (std::size_t n = std::fread(buf, 1, sizeof buf, f)) out.append(buf, n);
    ::pclose(f);
  }
  return out;
}

/// `count` keys "<base>:<i>" whose Redis keys (`prefix` + key) lie in slots [first, last].
std::vector<std::string> keys_in_slots(const std::string& prefix, const std::string& base, std::uint16_t first,
                                       std::uint16_t last, int count) {
  std::vector<std::string> out;
  for (int i = 0; static_cast<int>(out.size()) < count && i < 10'000'000; ++i) {
    auto k = bulwark::test::numbered_key(base + ":", i);
    const auto s = key_slot(prefix + k);
    if (s >= first && s <= last) out.push_back(std::move(k));
  }
  return out;
}

// --- on the shared cluster ---

class redis_cluster : public ::testing::Test {
protected:
  void SetUp() override {
    if (!redis::test::cluster_configured()) {
      if (std::getenv("BULWARK_REQUIRE_SERVERS")) FAIL() << "BULWARK_REDIS_CLUSTER_NODES is not set";
      GTEST_SKIP() << "BULWARK_REDIS_CLUSTER_NODES is not set (scripts/servers.sh up redis-cluster)";
    }
  }
  template <class T> T run(asio::awaitable<T> op) { return bulwark::test::run(ctx_, std::move(op), 30s); }
  asio::io_context ctx_;
};

TEST_F(redis_cluster, keys_on_every_master_are_written_and_read) {
  redis::client c(ctx_.get_executor(), redis::test::shared_cluster());
  const auto prefix = redis::test::fresh_prefix("spread");
  auto body = [&]() -> asio::awaitable<int> {
    int ok = 0;
    for (int i = 0; i < 200; ++i) {
      const auto k = bulwark::test::numbered_key(prefix, i);
      const auto v = bulwark::test::numbered_key("value:", i);
      auto w = co_await c.execute("SET", k, v);
      auto r = co_await c.execute("GET", k);
      if (w && r && r.value().str == v) ++ok;
    }
    co_return ok;
  };
  EXPECT_EQ(run(body()), 200);
  std::set<std::string> owners;
  for (int i = 0; i < 200; ++i) owners.insert(c.slot_owner(key_slot(bulwark::test::numbered_key(prefix, i))));
  owners.erase("");
  EXPECT_EQ(owners.size(), 3u) << "the keys reach every master";
  EXPECT_GE(c.cluster_counters().refreshes, 1u);
  run(c.stop());
}

TEST_F(redis_cluster, cross_slot_commands_and_single_node_clients_fail_clearly) {
  redis::client c(ctx_.get_executor(), redis::test::shared_cluster());
  const auto prefix = redis::test::fresh_prefix("xslot");
  const auto a = prefix + "a", b = prefix + "b";
  ASSERT_NE(key_slot(a), key_slot(b));
  auto r = run(c.execute("MSET", a, "1", b, "2"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), make_error_code(redis::redis_errc::cross_slot));
  EXPECT_EQ(r.error(), bulwark::errc::invalid_argument);
  // A single-node client pointed at one node: a key of another node comes back MOVED.
  const auto seeds = redis::test::shared_cluster().seeds;
  redis::connection_options single;
  single.host = "127.0.0.1";
  single.port = static_cast<std::uint16_t>(std::stoi(seeds[0].substr(seeds[0].rfind(':') + 1)));
  redis::client one(ctx_.get_executor(), single);
  int redirected = 0;
  for (int i = 0; i < 20; ++i) {
    const auto k = bulwark::test::numbered_key(prefix + "one:", i);
    auto g = run(one.execute("GET", k));
    if (!g && g.error().code() == make_error_code(redis::redis_errc::redirected)) {
      EXPECT_EQ(g.error(), bulwark::errc::unavailable);
      ++redirected;
    }
  }
  EXPECT_GT(redirected, 0);
  run(one.stop());
  run(c.stop());
}

TEST_F(redis_cluster, min_replicas_acked_waits_for_replicas_and_fails_when_too_few) {
  const auto prefix = redis::test::fresh_prefix("acked");
  auto one = redis::test::shared_cluster();
  one.min_replicas_acked = 1;
  redis::client c(ctx_.get_executor(), one);
  for (int i = 0; i < 10; ++i) {
    const auto k = bulwark::test::numbered_key(prefix, i);
    auto w = run(c.execute("SET", k, "v"));
    ASSERT_TRUE(w.has_value()) << w.error().message();
  }
  // Each master has one replica: two acknowledgements never come.
  auto two = redis::test::shared_cluster();
  two.min_replicas_acked = 2;
  two.request_timeout = 300ms;
  redis::client d(ctx_.get_executor(), two);
  const auto start = steady::now();
  auto w = run(d.execute("SET", prefix + "two", "v"));
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code(), make_error_code(redis::redis_errc::replicas_not_acked));
  EXPECT_EQ(w.error(), bulwark::errc::timeout);
  EXPECT_LT(steady::now() - start, 1500ms);
  // The write is on the master all the same: the outcome of a timeout is unknown, not failed.
  auto g = run(c.execute("GET", prefix + "two"));
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g.value().str, "v");
  run(c.stop());
  run(d.stop());
}

TEST_F(redis_cluster, reads_from_replicas_see_the_writes) {
  auto o = redis::test::shared_cluster();
  o.read_from_replicas = true;
  o.min_replicas_acked = 1; // so the replica has it when the read comes
  redis::client c(ctx_.get_executor(), o);
  const auto prefix = redis::test::fresh_prefix("replica");
  for (int i = 0; i < 20; ++i) {
    const auto k = bulwark::test::numbered_key(prefix, i);
    ASSERT_TRUE(run(c.execute("SET", k, bulwark::test::numbered_key("v", i))).has_value());
    auto g = run(c.execute("GET", k));
    ASSERT_TRUE(g.has_value()) << g.error().message();
    EXPECT_EQ(g.value().str, bulwark::test::numbered_key("v", i));
  }
  EXPECT_GT(c.cluster_counters().replica_reads, 0u);
  run(c.stop());
}

// --- redis::ledger split by slot, on the shared cluster ---
// A ledger prefix without a {tag}: balances spread over the slots, an apply across slots is
// split into per-slot parts (bulwark/redis/ledger.hpp, docs/ledger.md "Redis Cluster").

TEST(redis_cluster_slots, every_slot_has_a_tag_and_ledger_records_land_in_their_slot) {
  for (unsigned s = 0; s < redis::detail::slot_count; ++s) {
    const auto tag = redis::detail::slot_tag(static_cast<std::uint16_t>(s));
    ASSERT_TRUE(!tag.empty() && tag.size() <= 3) << s;
    ASSERT_EQ(key_slot("{" + std::string(tag) + "}"), s) << tag;
  }
  asio::io_context ctx;
  redis::client cluster(ctx.get_executor(), redis::cluster_options{.seeds = {"127.0.0.1:1"}});
  redis::client single(ctx.get_executor(), redis::connection_options{});
  const redis::ledger split(cluster, {.key_prefix = "svc:stock:"});
  EXPECT_TRUE(split.splits_by_slot());
  EXPECT_FALSE(redis::ledger(cluster, {.key_prefix = "svc:{stock}:"}).splits_by_slot()) << "a {tag}: one slot";
  EXPECT_FALSE(redis::ledger(single, {.key_prefix = "svc:stock:"}).splits_by_slot()) << "one server: unchanged";
  EXPECT_EQ(redis::ledger(single, {.key_prefix = "svc:stock:"}).record_key("op-1"), "svc:stock:o:op-1");
  for (std::string_view op : {"order-17", "{user/7}:order-18", "x}y{"}) {
    EXPECT_EQ(key_slot(split.record_key(op)), key_slot(op)) << op;
    for (std::uint16_t s : {0, 1, 866, 16383}) EXPECT_EQ(key_slot(split.part_key(op, s)), s) << op;
  }
  // An op id and a key that share a {tag} share a slot: such an apply is one call.
  EXPECT_EQ(split.slot_of("{user/7}:credit"), key_slot(split.record_key("{user/7}:order-18")));
}

class redis_cluster_ledger : public redis_cluster {
protected:
  void SetUp() override {
    redis_cluster::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    prefix_ = redis::test::fresh_prefix("lsplit");
    client_.emplace(ctx_.get_executor(), redis::test::shared_cluster());
    ledger_.emplace(*client_, redis::ledger_options{.key_prefix = prefix_});
    ASSERT_TRUE(ledger_->splits_by_slot());
    ASSERT_TRUE(run(ledger_->get("warm-up")).has_value()); // reads the slot map
  }
  void TearDown() override {
    if (client_) run(client_->stop());
  }
  /// `n` keys `stem/i` on n different slots, on different masters while there are masters left.
  std::vector<std::string> keys_apart(const std::string& stem, std::size_t n) {
    std::vector<std::string> keys;
    std::set<std::uint16_t> slots;
    std::set<std::string> owners;
    for (int i = 0; keys.size() < n && i < 100000; ++i) {
      auto k = bulwark::test::numbered_key(stem + "/", i);
      const auto slot = ledger_->slot_of(k);
      const auto owner = client_->slot_owner(slot);
      if (slots.count(slot) || (owners.size() < 3 && owners.count(owner))) continue;
      slots.insert(slot);
      owners.insert(owner);
      keys.push_back(std::move(k));
    }
    return keys;
  }
  bulwark::amount balance(std::string_view key) {
    auto got = run(ledger_->get(key));
    EXPECT_TRUE(got.has_value()) << got.error();
    return got && got.value() ? *got.value() : 0;
  }
  /// A field of a ledger record, "" when absent.
  std::string field(const std::string& key, const char* name) {
    auto got = run(client_->execute("HGET", key, name));
    EXPECT_TRUE(got.has_value()) << got.error();
    return got && !got.value().is_nil() ? got.value().str : std::string();
  }
  std::string part_state(std::string_view op, std::string_view key) {
    return field(ledger_->part_key(op, ledger_->slot_of(key)), "s");
  }
  bulwark::result<bulwark::apply_outcome> apply(std::string_view op, std::vector<bulwark::adjustment> adjustments) {
    return run(ledger_->apply(op, adjustments));
  }
  std::string prefix_;
  std::optional<redis::client> client_;
  std::optional<redis::ledger> ledger_;
};

TEST_F(redis_cluster_ledger, the_conformance_suites_keys_spread_over_slots_and_masters) {
  // The names the ledger conformance suite uses (tests/conformance/ledger_suite.hpp), under a
  // prefix like its factory's: they must not share one slot, or the suite would not test the split.
  std::set<std::uint16_t> slots;
  std::set<std::string> owners;
  for (std::string_view k : {"user/a", "item/x", "shop", "nobody", "stock", "credit", "item", "hot", "sold",
                             "race/stock", "race/credit", "k", "fresh", "item/1"}) {
    slots.insert(ledger_->slot_of(k));
    owners.insert(client_->slot_owner(ledger_->slot_of(k)));
  }
  EXPECT_GE(slots.size(), 12u);
  EXPECT_EQ(owners.size(), 3u);
  // A prefix with a '{' and no whole tag would move the records out of their slots: refused.
  redis::ledger stray(*client_, {.key_prefix = "svc{x:"});
  auto refused = apply("op", {{"k", 1}});
  ASSERT_TRUE(refused.has_value()) << refused.error(); // the fixture's ledger is fine
  auto bad = run(stray.apply("op", std::vector<bulwark::adjustment>{{"k", 1}}));
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error(), bulwark::errc::invalid_argument);
  EXPECT_NE(bad.error().detail().find("hash tag"), std::string::npos) << bad.error();
  auto bad_revert = run(stray.revert("op"));
  ASSERT_FALSE(bad_revert.has_value());
  EXPECT_EQ(bad_revert.error(), bulwark::errc::invalid_argument);
}

TEST_F(redis_cluster_ledger, an_apply_across_slots_lands_every_part_and_a_duplicate_returns_the_first_result) {
  const auto k = keys_apart("acct", 3);
  ASSERT_EQ(k.size(), 3u);
  ASSERT_TRUE(run(ledger_->set_many(std::vector<bulwark::balance>{{k[0], 10}, {k[1], 10}})).has_value());
  auto first = apply("order-1", {{k[0], -3}, {k[1], -2}, {k[2], 5}});
  ASSERT_TRUE(first.has_value()) << first.error();
  EXPECT_EQ(first.value(), bulwark::apply_outcome::applied);
  EXPECT_EQ(balance(k[0]), 7);
  EXPECT_EQ(balance(k[1]), 8);
  EXPECT_EQ(balance(k[2]), 5);
  for (const auto& key : k) EXPECT_EQ(part_state("order-1", key), "a") << "each part recorded in its own slot";
  const auto home = field(ledger_->record_key("order-1"), "g");
  EXPECT_TRUE(home == "p" || home == "A") << home;
  // The same id again, even with other adjustments: the first result, nothing changes.
  auto again = apply("order-1", {{k[0], -3}, {k[1], -2}, {k[2], 5}});
  ASSERT_TRUE(again.has_value()) << again.error();
  EXPECT_EQ(again.value(), bulwark::apply_outcome::already_applied);
  auto other = apply("order-1", {{k[0], -7}});
  ASSERT_TRUE(other.has_value()) << other.error();
  EXPECT_EQ(other.value(), bulwark::apply_outcome::already_applied);
  EXPECT_EQ(balance(k[0]), 7);
  EXPECT_EQ(balance(k[1]), 8);
  EXPECT_EQ(balance(k[2]), 5);
}

TEST_F(redis_cluster_ledger, a_refusal_in_one_slot_undoes_the_parts_applied_in_the_others) {
  const auto k = keys_apart("acct", 3);
  ASSERT_EQ(k.size(), 3u);
  ASSERT_TRUE(run(ledger_->set_many(std::vector<bulwark::balance>{{k[0], 10}, {k[1], 1}})).has_value());
  // k[0]'s part applies, k[1]'s is refused; k[2] (a credit) is never sent.
  auto refused = apply("order-2", {{k[0], -4}, {k[1], -2}, {k[2], 6}});
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error(), bulwark::ledger_errc::insufficient);
  EXPECT_EQ(refused.error().detail(), "'" + k[1] + "' has 1, cannot take 2");
  EXPECT_EQ(balance(k[0]), 10) << "the applied part was undone before the answer";
  EXPECT_EQ(balance(k[1]), 1);
  auto never = run(ledger_->get(k[2]));
  ASSERT_TRUE(never.has_value());
  EXPECT_FALSE(never.value().has_value()) << "a refused apply created a key";
  EXPECT_EQ(part_state("order-2", k[0]), "r") << "applied, then undone";
  EXPECT_EQ(part_state("order-2", k[1]), "d") << "refused";
  EXPECT_EQ(part_state("order-2", k[2]), "t") << "a tombstone refuses a late part";
  EXPECT_EQ(field(ledger_->record_key("order-2"), "g"), "d");
  // Refused stays refused, even once the balance would allow it; revert has nothing to undo.
  ASSERT_TRUE(run(ledger_->add(k[1], 10)).has_value());
  auto again = apply("order-2", {{k[0], -4}, {k[1], -2}, {k[2], 6}});
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error(), bulwark::ledger_errc::insufficient);
  EXPECT_EQ(balance(k[0]), 10);
  EXPECT_EQ(balance(k[1]), 11);
  auto nothing = run(ledger_->revert("order-2"));
  ASSERT_TRUE(nothing.has_value()) << nothing.error();
  EXPECT_EQ(nothing.value(), bulwark::revert_outcome::nothing_applied);
  // A refusal in the credit-only slot (over the limit) undoes the debits applied before it.
  ASSERT_TRUE(run(ledger_->set(k[2], 1)).has_value());
  auto over = apply("order-3", {{k[0], -1}, {k[2], bulwark::max_amount}});
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error(), bulwark::ledger_errc::over_limit);
  EXPECT_EQ(balance(k[0]), 10);
  EXPECT_EQ(part_state("order-3", k[0]), "r");
}

TEST_F(redis_cluster_ledger, a_revert_across_slots_undoes_every_part_once_and_tombstones_an_unknown_id) {
  const auto k = keys_apart("acct", 3);
  ASSERT_EQ(k.size(), 3u);
  ASSERT_TRUE(run(ledger_->set_many(std::vector<bulwark::balance>{{k[0], 10}, {k[1], 10}, {k[2], 0}})).has_value());
  ASSERT_EQ(apply("pay-1", {{k[0], -1}, {k[1], -1}, {k[2], 2}}).value(), bulwark::apply_outcome::applied);
  auto undone = run(ledger_->revert("pay-1"));
  ASSERT_TRUE(undone.has_value()) << undone.error();
  EXPECT_EQ(undone.value(), bulwark::revert_outcome::undone);
  EXPECT_EQ(balance(k[0]), 10);
  EXPECT_EQ(balance(k[1]), 10);
  EXPECT_EQ(balance(k[2]), 0);
  for (const auto& key : k) EXPECT_EQ(part_state("pay-1", key), "r");
  EXPECT_EQ(run(ledger_->revert("pay-1")).value(), bulwark::revert_outcome::already_undone);
  auto late = apply("pay-1", {{k[0], -1}, {k[1], -1}, {k[2], 2}});
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error(), bulwark::ledger_errc::reverted);
  EXPECT_EQ(balance(k[0]), 10);
  // The compensation overtook its action: the late apply is refused before any part is sent.
  EXPECT_EQ(run(ledger_->revert("ghost")).value(), bulwark::revert_outcome::tombstoned);
  auto ghost = apply("ghost", {{k[0], -1}, {k[1], -1}});
  ASSERT_FALSE(ghost.has_value());
  EXPECT_EQ(ghost.error(), bulwark::ledger_errc::reverted);
  EXPECT_EQ(balance(k[0]), 10);
  EXPECT_EQ(balance(k[1]), 10);
  EXPECT_EQ(run(ledger_->revert("ghost")).value(), bulwark::revert_outcome::tombstoned);
  // A credit spent since: the revert is refused, its credit part first, so the debit part stays
  // applied too; once the credit is back, a revert finishes it.
  ASSERT_EQ(apply("gift", {{k[0], -5}, {k[2], 5}}).value(), bulwark::apply_outcome::applied);
  ASSERT_EQ(apply("spend", {{k[2], -5}, {k[1], 5}}).value(), bulwark::apply_outcome::applied);
  auto spent = run(ledger_->revert("gift"));
  ASSERT_FALSE(spent.has_value());
  EXPECT_EQ(spent.error(), bulwark::ledger_errc::insufficient);
  EXPECT_EQ(spent.error().detail(), "'" + k[2] + "' has 0, cannot take 5");
  EXPECT_EQ(balance(k[0]), 5);
  EXPECT_EQ(balance(k[2]), 0);
  EXPECT_EQ(field(ledger_->record_key("gift"), "g"), "R") << "reverting, for a later revert to finish";
  EXPECT_EQ(apply("gift", {{k[0], -5}, {k[2], 5}}).error(), bulwark::ledger_errc::reverted);
  ASSERT_EQ(run(ledger_->revert("spend")).value(), bulwark::revert_outcome::undone);
  ASSERT_EQ(run(ledger_->revert("gift")).value(), bulwark::revert_outcome::undone);
  EXPECT_EQ(balance(k[0]), 10);
  EXPECT_EQ(balance(k[1]), 10);
  EXPECT_EQ(balance(k[2]), 0);
}

// A real server error on cue: a balance key that holds a hash makes its part's script fail
// (WRONGTYPE) after the other part landed, the state a crash between two parts leaves. A retry
// with the same id (even with other adjustments) finishes the recorded plan; a revert undoes the
// landed part and tombstones the other, so the failed caller's late part is refused.
TEST_F(redis_cluster_ledger, a_part_failing_mid_way_is_repaired_by_a_retry_or_a_revert) {
  const auto k = keys_apart("acct", 2);
  ASSERT_EQ(k.size(), 2u);
  const auto broken_key = prefix_ + "b:" + k[1];
  auto break_balance = [&] {
    ASSERT_TRUE(run(client_->execute("DEL", broken_key)).has_value());
    ASSERT_TRUE(run(client_->execute("HSET", broken_key, "x", "1")).has_value());
  };
  auto mend_balance = [&](bulwark::amount v) {
    ASSERT_TRUE(run(client_->execute("DEL", broken_key)).has_value());
    ASSERT_TRUE(run(ledger_->set(k[1], v)).has_value());
  };
  ASSERT_TRUE(run(ledger_->set(k[0], 10)).has_value());
  break_balance();
  auto failed = apply("mid-1", {{k[0], -1}, {k[1], -1}});
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error(), bulwark::errc::invalid_argument) << failed.error(); // WRONGTYPE
  EXPECT_EQ(balance(k[0]), 9) << "one part landed: what a reader may see until it is settled";
  EXPECT_EQ(field(ledger_->record_key("mid-1"), "g"), "p");
  // Asked again while still broken: the same failure, the landed part not applied twice.
  ASSERT_FALSE(apply("mid-1", {{k[0], -1}, {k[1], -1}}).has_value());
  EXPECT_EQ(balance(k[0]), 9);
  mend_balance(5);
  auto retried = apply("mid-1", {{k[0], -7}});
  ASSERT_TRUE(retried.has_value()) << retried.error();
  EXPECT_EQ(retried.value(), bulwark::apply_outcome::already_applied) << "the first plan, finished";
  EXPECT_EQ(balance(k[0]), 9);
  EXPECT_EQ(balance(k[1]), 4);

  break_balance();
  ASSERT_FALSE(apply("mid-2", {{k[0], -1}, {k[1], -1}}).has_value());
  EXPECT_EQ(balance(k[0]), 8);
  auto undone = run(ledger_->revert("mid-2"));
  ASSERT_TRUE(undone.has_value()) << undone.error();
  EXPECT_EQ(undone.value(), bulwark::revert_outcome::undone);
  EXPECT_EQ(balance(k[0]), 9);
  EXPECT_EQ(part_state("mid-2", k[1]), "t");
  mend_balance(4);
  // The failed caller's part, arriving late (the same script and arguments it sent): refused.
  const auto part = ledger_->part_key("mid-2", ledger_->slot_of(k[1]));
  const auto& s = redis::detail::ledger_apply_script();
  auto late = run(
      client_->execute("EVAL", s.text(), "2", part, broken_key, "60000", std::to_string(bulwark::max_amount), "-1"));
  ASSERT_TRUE(late.has_value()) << late.error();
  ASSERT_FALSE(late.value().elements.empty());
  EXPECT_EQ(late.value().elements[0].str, "t");
  EXPECT_EQ(balance(k[1]), 4);
  auto again = apply("mid-2", {{k[0], -1}, {k[1], -1}});
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error(), bulwark::ledger_errc::reverted);
  EXPECT_EQ(balance(k[0]), 9);
  EXPECT_EQ(balance(k[1]), 4);
}

// The state an apply leaves when it decided a refusal (home D) and stopped with a credit part
// still applied, made step by step with the ledger's own scripts on the real cluster; the credit
// is then spent. The apply must not answer declined (a saga would not compensate it) until the
// part is undone; once the credit is back, a retry undoes it and answers the refusal.
TEST_F(redis_cluster_ledger, a_refusal_whose_undo_is_refused_answers_conflict_until_a_retry_undoes_it) {
  const auto k = keys_apart("acct", 2);
  ASSERT_EQ(k.size(), 2u);
  ASSERT_TRUE(run(ledger_->set_many(std::vector<bulwark::balance>{{k[0], 0}, {k[1], 1}})).has_value());
  const auto b0 = prefix_ + "b:" + k[0], b1 = prefix_ + "b:" + k[1];
  const auto home = ledger_->record_key("stuck");
  const auto part0 = ledger_->part_key("stuck", ledger_->slot_of(k[0]));
  const auto part1 = ledger_->part_key("stuck", ledger_->slot_of(k[1]));
  const auto max = std::to_string(bulwark::max_amount);
  auto step = [&](const redis::script& s, auto... args) {
    auto r = run(client_->execute("EVAL", s.text(), args...));
    EXPECT_TRUE(r.has_value()) << r.error();
    return r && !r.value().elements.empty() ? r.value().elements[0].str : std::string();
  };
  EXPECT_EQ(step(redis::detail::ledger_begin_script(), "1", home, "60000", b0, "5", b1, "-2"), "P");
  EXPECT_EQ(step(redis::detail::ledger_apply_script(), "2", part0, b0, "60000", max, "5"), "A");
  EXPECT_EQ(step(redis::detail::ledger_apply_script(), "2", part1, b1, "60000", max, "-2"), "n");
  EXPECT_EQ(step(redis::detail::ledger_state_script(), "1", home, "60000", "p", "D"), "1");
  ASSERT_EQ(apply("spend", {{k[0], -5}}).value(), bulwark::apply_outcome::applied);
  auto stuck = apply("stuck", {{k[0], 5}, {k[1], -2}});
  ASSERT_FALSE(stuck.has_value());
  EXPECT_EQ(stuck.error(), bulwark::errc::conflict) << stuck.error();
  EXPECT_NE(stuck.error().detail().find("undoing its applied parts was refused"), std::string::npos) << stuck.error();
  EXPECT_EQ(field(home, "g"), "D");
  EXPECT_EQ(part_state("stuck", k[0]), "a") << "still applied: the next call with the id retries";
  ASSERT_TRUE(run(ledger_->add(k[0], 5)).has_value());
  auto settled = apply("stuck", {{k[0], 5}, {k[1], -2}});
  ASSERT_FALSE(settled.has_value());
  EXPECT_EQ(settled.error(), bulwark::ledger_errc::insufficient) << settled.error();
  EXPECT_EQ(balance(k[0]), 0);
  EXPECT_EQ(balance(k[1]), 1);
  EXPECT_EQ(field(home, "g"), "d");
  EXPECT_EQ(run(ledger_->revert("stuck")).value(), bulwark::revert_outcome::nothing_applied);
}

// Transfers between four hot keys on different slots (three masters), from concurrent
// coroutines, with every fifth one reverted at once by another: no balance is ever seen below
// zero, the sum is conserved at the end, and each balance is exactly what the answers say
// (applied minus undone). A reader meanwhile may see a transfer half done: counted, not failed.
TEST_F(redis_cluster_ledger, concurrent_transfers_across_slots_keep_every_balance_and_the_sum) {
  constexpr int keys_n = 4, workers = 8, per_worker = 30;
  constexpr bulwark::amount start = 20;
  const auto k = keys_apart("hot", keys_n);
  ASSERT_EQ(k.size(), static_cast<std::size_t>(keys_n));
  std::vector<bulwark::balance> init;
  for (const auto& key : k) init.push_back({key, start});
  ASSERT_TRUE(run(ledger_->set_many(init)).has_value());
  std::vector<bulwark::amount> expected(keys_n, start);
  int running = workers + 1, in_flight = 0, max_in_flight = 0, refused = 0, undone = 0, below_zero = 0, uneven_sums = 0,
      reads = 0;
  std::string first_error;
  auto fail = [&](const bulwark::error& e) {
    if (first_error.empty()) first_error = e.message() + ": " + std::string(e.detail());
  };
  auto reverter = [&](std::string op, int from, int to, bulwark::amount units) -> asio::awaitable<void> {
    auto r = co_await ledger_->revert(op);
    if (!r)
      fail(r.error());
    else if (r.value() == bulwark::revert_outcome::undone) {
      expected[static_cast<std::size_t>(from)] += units;
      expected[static_cast<std::size_t>(to)] -= units;
      ++undone;
    }
    --running;
  };
  auto worker = [&](int w) -> asio::awaitable<void> {
    for (int i = 0; i < per_worker; ++i) {
      const int from = (w + i) % keys_n, to = (from + 1 + (i + w) % (keys_n - 1)) % keys_n;
      const bulwark::amount units = 1 + (i + w) % 3;
      const auto op = bulwark::test::numbered_key(bulwark::test::numbered_key("t", w) + "-", i);
      const std::vector<bulwark::adjustment> transfer = {{k[static_cast<std::size_t>(from)], -units},
                                                         {k[static_cast<std::size_t>(to)], units}};
      max_in_flight = std::max(max_in_flight, ++in_flight);
      auto r = co_await ledger_->apply(op, transfer);
      --in_flight;
      if (r && r.value() == bulwark::apply_outcome::applied) {
        expected[static_cast<std::size_t>(from)] -= units;
        expected[static_cast<std::size_t>(to)] += units;
        if (i % 5 == 0) {
          ++running; // before the spawn: the loop below must not see 0 in between
          asio::co_spawn(ctx_, reverter(op, from, to, units), asio::detached);
        }
      } else if (!r && r.error() == bulwark::ledger_errc::insufficient) {
        ++refused;
      } else {
        fail(r ? bulwark::error(bulwark::errc::conflict, "not applied") : r.error());
      }
    }
    --running;
  };
  auto reader = [&]() -> asio::awaitable<void> {
    for (int round = 0; running > 1 && round < 5000; ++round) {
      bulwark::amount sum = 0;
      for (const auto& key : k) {
        auto b = co_await ledger_->get(key);
        if (!b) {
          fail(b.error());
          continue;
        }
        const auto v = b.value().value_or(0);
        below_zero += v < 0;
        sum += v;
      }
      ++reads;
      uneven_sums += sum != start * keys_n;
    }
    --running;
  };
  auto all = [&]() -> asio::awaitable<bool> {
    for (int w = 0; w < workers; ++w) asio::co_spawn(ctx_, worker(w), asio::detached);
    asio::co_spawn(ctx_, reader(), asio::detached);
    asio::steady_timer poll(ctx_);
    while (running > 0) {
      poll.expires_after(2ms);
      co_await poll.async_wait(asio::use_awaitable);
    }
    co_return true;
  };
  ASSERT_TRUE(run(all()));
  EXPECT_EQ(first_error, "");
  bulwark::amount sum = 0;
  for (int i = 0; i < keys_n; ++i) {
    const auto b = balance(k[static_cast<std::size_t>(i)]);
    EXPECT_GE(b, 0);
    EXPECT_EQ(b, expected[static_cast<std::size_t>(i)]) << k[static_cast<std::size_t>(i)];
    sum += b;
  }
  EXPECT_EQ(sum, start * keys_n);
  EXPECT_EQ(below_zero, 0);
  EXPECT_GE(max_in_flight, workers / 2) << "the applies never overlapped";
  EXPECT_GT(undone, 0);
  RecordProperty("refused", refused);
  RecordProperty("undone", undone);
  RecordProperty("reads", reads);
  RecordProperty("reads_with_a_transfer_half_done", uneven_sums);
}

// What an apply costs in commands: one with a {tag} prefix or within its op id's slot; a split
// one the plan, a part per slot and the final state (sent without waiting).
TEST_F(redis_cluster_ledger, one_slot_stays_one_call_and_a_split_apply_costs_a_command_per_slot) {
  const auto k = keys_apart("cost", 2);
  ASSERT_EQ(k.size(), 2u);
  redis::ledger tagged(*client_, {.key_prefix = redis::test::fresh_tagged_prefix("lcost")});
  ASSERT_FALSE(tagged.splits_by_slot());
  const std::vector<bulwark::balance> funds = {{k[0], 100}, {k[1], 100}, {"{u7}:credit", 100}};
  ASSERT_TRUE(run(tagged.set_many(funds)).has_value());
  ASSERT_TRUE(run(ledger_->set_many(funds)).has_value());
  auto commands_of = [&](auto& l, const std::string& op, std::vector<bulwark::adjustment> adjustments) {
    const auto before = client_->statistics().commands;
    auto r = run(l.apply(op, adjustments));
    EXPECT_TRUE(r.has_value() && r.value() == bulwark::apply_outcome::applied) << op;
    return client_->statistics().commands - before;
  };
  for (int round = 0; round < 2; ++round) { // the first loads the scripts where needed (NOSCRIPT)
    const auto n = [&](const char* op) { return bulwark::test::numbered_key(op, round); };
    const auto tagged_calls = commands_of(tagged, n("tag-"), {{k[0], -1}, {k[1], -1}});
    const auto local_calls = commands_of(*ledger_, "{u7}:" + n("local-"), {{"{u7}:credit", -1}});
    const auto debits_calls = commands_of(*ledger_, n("debits-"), {{k[0], -1}, {k[1], -1}});
    const auto transfer_calls = commands_of(*ledger_, n("transfer-"), {{k[0], -1}, {k[1], 1}});
    if (round == 0) continue;
    EXPECT_EQ(tagged_calls, 1u);
    EXPECT_EQ(local_calls, 1u) << "an op id and its key under one {tag}: one call";
    EXPECT_EQ(debits_calls, 4u) << "plan, two parts in parallel, final state";
    EXPECT_EQ(transfer_calls, 4u) << "plan, debit part, then credit part, final state";
  }
}

// --- on a private cluster, which the test may break ---

class redis_cluster_fault : public ::testing::Test {
protected:
  void SetUp() override {
    control_ = bulwark::test::server_env("BULWARK_REDIS_CLUSTER_CONTROL");
    dir_ = bulwark::test::server_env("BULWARK_REDIS_CLUSTER_SERVERS_DIR");
    if (!control_ || !dir_) {
      if (std::getenv("BULWARK_REQUIRE_SERVERS")) FAIL() << "BULWARK_REDIS_CLUSTER_CONTROL is not set";
      GTEST_SKIP() << "BULWARK_REDIS_CLUSTER_CONTROL is not set (scripts/servers.sh up redis-cluster)";
    }
    root_ = *dir_ + "/redis-cluster-private-" + std::to_string(::getpid());
    up_ = true;
    control("up");
    for (int n = 1; n <= 6; ++n) {
      std::ifstream in(bulwark::test::numbered_key(root_ + "/n", n) + "/port");
      std::string port;
      in >> port;
      seeds_.push_back("127.0.0.1:" + port);
      port_node_[port] = bulwark::test::numbered_key("n", n);
    }
  }
  void TearDown() override {
    if (up_) control("down");
    if (!root_.empty()) shell("rm -rf '" + root_ + "'");
  }

  void control(const std::string& action, const std::string& node = {}) {
    const auto command = "BULWARK_SERVERS_DIR='" + *dir_ + "' REDIS_CLUSTER_ROOT='" + root_ + "' '" + *control_ + "' " +
                         action + (node.empty() ? "" : " " + node) + " >/dev/null";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }

  redis::cluster_options options() const {
    redis::cluster_options o;
    o.seeds = seeds_;
    o.node.connect_timeout = 500ms;
    o.node.command_timeout = 1000ms;
    o.node.reconnect = bulwark::backoff{10ms, 200ms, 2.0, true};
    return o;
  }

  /// "port id" of the master that owns `slot`, from CLUSTER SLOTS of the first node that answers.
  std::pair<std::string, std::string> master_of(std::uint16_t slot) {
    for (const auto& seed : seeds_) {
      auto seen = master_seen_by(seed, slot);
      if (!seen.second.empty()) return seen;
    }
    return {};
  }

  // The master of `slot` once every node that answers agrees on it, else empty: a node just
  // restarted still sees itself as the master it was until the others tell it otherwise.
  std::pair<std::string, std::string> agreed_master_of(std::uint16_t slot) {
    std::pair<std::string, std::string> agreed;
    for (const auto& seed : seeds_) {
      auto seen = master_seen_by(seed, slot);
      if (seen.second.empty()) continue;
      if (!agreed.second.empty() && agreed != seen) return {};
      agreed = seen;
    }
    return agreed;
  }

  /// Each node's view of the masters (CLUSTER NODES) and the tail of `node`'s log: what a
  /// failed failover check prints, so that a failure in CI says why.
  std::string cluster_views(const std::string& node) {
    std::string out;
    for (const auto& seed : seeds_) {
      const auto port = seed.substr(seed.rfind(':') + 1);
      out += "node " + port_node_[port] + " (" + port + ") sees:\n" +
             shell("redis-cli -p " + port + " cluster nodes 2>&1 | grep master | cut -d' ' -f1-3,7-9");
    }
    return out + node + "'s log:\n" + shell("tail -n 15 '" + root_ + "/" + node + "/redis.log' 2>&1");
  }

  // `seed`'s view of the master of `slot` (empty when it does not answer).
  std::pair<std::string, std::string> master_seen_by(const std::string& seed, std::uint16_t slot) {
    const auto port = seed.substr(seed.rfind(':') + 1);
    std::istringstream lines(shell("redis-cli -p " + port + " cluster slots 2>/dev/null"));
    // Flat output: start, end, host, port, id, (metadata), ... per range; find by start/end.
    std::vector<std::string> words;
    for (std::string w; std::getline(lines, w);) words.push_back(w);
    for (std::size_t i = 0; i + 4 < words.size(); ++i) {
      if (words[i + 2] != "127.0.0.1") continue;
      char* end = nullptr;
      const long first = std::strtol(words[i].c_str(), &end, 10);
      if (*end != '\0' || words[i].empty()) continue;
      const long last = std::strtol(words[i + 1].c_str(), &end, 10);
      if (*end != '\0' || words[i + 1].empty()) continue;
      if (first <= slot && slot <= last && first <= last && last < 16384 && words[i + 4].size() == 40)
        return {words[i + 3], words[i + 4]};
    }
    return {};
  }

  template <class T> T run(asio::awaitable<T> op, std::chrono::milliseconds limit = 90s) {
    return bulwark::test::run(ctx_, std::move(op), limit);
  }

  asio::io_context ctx_;
  std::optional<std::string> control_, dir_;
  std::string root_;
  bool up_ = false;
  std::vector<std::string> seeds_;
  std::map<std::string, std::string> port_node_;
};

/// What a load of writers saw: calls, failures (with the first messages), the last version
/// each key's put was acknowledged with, and the time of each success.
struct load_report {
  int calls = 0;
  int failures = 0;
  std::vector<std::string> errors;
  std::map<std::string, std::uint64_t> acked;
  std::map<std::string, steady::time_point> last_success;
  std::map<std::string, steady::time_point> first_success_after_mark;
  std::atomic<steady::rep> mark{0}; ///< set by the fault's thread when it strikes
  void fail(const std::string& what) {
    ++failures;
    if (errors.size() < 5) errors.push_back(what);
  }
};

/// One writer per key: put version n (cache), then get it back; until `stop` or `hard_stop`.
asio::awaitable<void> writer(redis::cache& cache, std::string key, const std::atomic<bool>& stop,
                             steady::time_point hard_stop, load_report& report, int& running) {
  asio::steady_timer pause(co_await asio::this_coro::executor);
  for (std::uint64_t version = 1; !stop && steady::now() < hard_stop && version < 100'000; ++version) {
    ++report.calls;
    // Named: GCC 12 mishandles a braced temporary inside a co_await full-expression.
    bulwark::versioned value{std::string("value:").append(std::to_string(version)), version};
    auto put = co_await cache.put(key, std::move(value), 0ms);
    if (!put || !put.value()) {
      report.fail(key + " put: " + (put ? std::string("refused") : put.error().message()));
    } else {
      report.acked[key] = version;
      const auto now = steady::now();
      report.last_success[key] = now;
      const auto mark = report.mark.load();
      if (mark != 0 && !report.first_success_after_mark.contains(key) && now.time_since_epoch().count() > mark)
        report.first_success_after_mark[key] = now;
      auto got = co_await cache.get(key);
      if (!got || !got.value() || got.value()->version < version)
        report.fail(key + " get: " + (got ? std::string("stale or missing") : got.error().message()));
    }
    pause.expires_after(2ms);
    co_await pause.async_wait(asio::use_awaitable);
  }
  --running;
}

/// Runs a writer per key on ctx while `fault` runs on a thread; stops the writers `settle`
/// after the fault returns and once `enough` holds (bounded by `limit` overall).
void run_load(
    asio::io_context& ctx, redis::cache& cache, const std::vector<std::string>& keys,
    std::function<void(load_report&)> fault, std::chrono::milliseconds settle, std::chrono::milliseconds limit,
    load_report& report, std::function<bool(const load_report&)> enough = [](const load_report&) { return true; }) {
  std::atomic<bool> stop{false}, fault_done{false};
  const auto hard_stop = steady::now() + limit;
  int running = static_cast<int>(keys.size());
  for (const auto& k : keys) asio::co_spawn(ctx, writer(cache, k, stop, hard_stop, report, running), asio::detached);
  std::thread faulting([&] {
    std::this_thread::sleep_for(500ms); // the load runs before the fault
    fault(report);
    fault_done = true;
  });
  auto wait = [&]() -> asio::awaitable<bool> {
    co_await bulwark::test::eventually([&] { return fault_done.load(); }, limit);
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(settle);
    co_await t.async_wait(asio::use_awaitable);
    // Writers stop at hard_stop whatever happens: wait no longer than that.
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(hard_stop - steady::now());
    co_await bulwark::test::eventually([&] { return enough(report); }, std::max(left, std::chrono::milliseconds(0)));
    stop = true;
    co_return co_await bulwark::test::eventually([&] { return running == 0; }, 10s);
  };
  const bool finished = bulwark::test::run(ctx, wait(), limit + 20s);
  faulting.join();
  EXPECT_TRUE(finished) << "the writers stopped";
}

TEST_F(redis_cluster_fault, resharding_a_slot_range_under_load_fails_no_call_and_loses_no_key) {
  const auto [from_port, from_id] = master_of(0);
  const auto [to_port, to_id] = master_of(16383);
  ASSERT_FALSE(from_id.empty());
  ASSERT_FALSE(to_id.empty());
  ASSERT_NE(from_id, to_id);
  // redis-cli moves the source's lowest slots first: 200 of them, [0, 199]. Half the load's
  // keys are in that range, the others spread over the whole cluster.
  const std::string prefix = "bulwark:test:reshard:";
  auto keys = keys_in_slots(prefix, "reshard", 0, 199, 24);
  for (auto& k : keys_in_slots(prefix, "spread", 0, 16383, 24)) keys.push_back(k);
  redis::client c(ctx_.get_executor(), options());
  redis::cache cache(c, redis::cache_options{prefix});
  // Other keys in the migrating slots, so the migration takes a while (MIGRATE moves 5 at a time).
  const auto filler = keys_in_slots("", "filler", 0, 199, 3000);
  auto fill = [&]() -> asio::awaitable<int> {
    int ok = 0;
    for (const auto& k : filler) {
      auto r = co_await c.execute("SET", k, "x");
      if (r) ++ok;
    }
    co_return ok;
  };
  ASSERT_EQ(run(fill()), 3000);
  load_report report;
  run_load(
      ctx_, cache, keys,
      [&](load_report&) {
        shell("redis-cli --cluster reshard 127.0.0.1:" + from_port + " --cluster-from " + from_id + " --cluster-to " +
              to_id + " --cluster-slots 200 --cluster-yes --cluster-pipeline 5 >" + root_ + "/reshard.log 2>&1");
      },
      1s, 60s, report);
  EXPECT_GT(report.calls, 200);
  EXPECT_EQ(report.failures, 0) << (report.errors.empty() ? "" : report.errors.front());
  EXPECT_EQ(master_of(100).second, to_id) << shell("cat " + root_ + "/reshard.log | tail -5");
  const auto counters = c.cluster_counters();
  EXPECT_GT(counters.moved + counters.ask, 0u) << "the load met the migration";
  // No key lost: each holds at least the last acknowledged version.
  auto check = [&]() -> asio::awaitable<int> {
    int lost = 0;
    for (const auto& [k, v] : report.acked) {
      auto g = co_await cache.get(k);
      if (!g || !g.value() || g.value()->version < v) ++lost;
    }
    co_return lost;
  };
  EXPECT_EQ(report.acked.size(), keys.size());
  EXPECT_EQ(run(check()), 0);
  std::cout << "reshard: " << report.calls << " calls, moved " << counters.moved << ", ask " << counters.ask
            << ", retries " << counters.retries << ", refreshes " << counters.refreshes << "\n";
  run(c.stop());
}

TEST_F(redis_cluster_fault, a_killed_master_fails_over_and_acknowledged_writes_survive) {
  const auto [victim_port, victim_id] = master_of(0);
  ASSERT_FALSE(victim_id.empty());
  const auto victim = port_node_[victim_port];
  auto o = options();
  o.min_replicas_acked = 1;
  o.request_timeout = 1500ms;
  redis::client c(ctx_.get_executor(), o);
  const std::string prefix = "bulwark:test:failover:";
  redis::cache cache(c, redis::cache_options{prefix});
  // Keys on the victim's slots and on the others.
  auto keys = keys_in_slots(prefix, "victim", 0, 99, 16);
  for (auto& k : keys_in_slots(prefix, "other", 0, 16383, 16)) keys.push_back(k);
  steady::time_point killed_at{};
  load_report report;
  run_load(
      ctx_, cache, keys,
      [&](load_report& r) {
        control("kill", victim); // returns once the process is gone
        killed_at = steady::now();
        r.mark = killed_at.time_since_epoch().count();
        // Until the replica took over (bounded). Its shard then has no replica, so with
        // min_replicas_acked = 1 its writes fail (replicas_not_acked) until the old master
        // returns, as a replica of the new one; then the writers run on for the settle time.
        for (int i = 0; i < 300 && master_of(0).second == victim_id; ++i) std::this_thread::sleep_for(100ms);
        control("start", victim);
      },
      // The writers run on until every key was written again after the kill (bounded by the
      // load's 60 s): a fixed settle time after the restart failed the test whenever the old
      // master took longer to rejoin and sync (under load), before WAIT 1 could be met.
      3s, 60s, report, [&](const load_report& r) { return r.first_success_after_mark.size() == keys.size(); });
  // Bounded: the restarted victim learns that it was replaced within a few node timeouts.
  auto settled = agreed_master_of(0);
  for (int i = 0; i < 150 && (settled.second.empty() || settled.second == victim_id); ++i) {
    std::this_thread::sleep_for(100ms);
    settled = agreed_master_of(0);
  }
  EXPECT_NE(settled.second, victim_id) << "a replica was promoted\n" << cluster_views(victim);
  EXPECT_FALSE(settled.second.empty()) << "the nodes agree on slot 0's master\n" << cluster_views(victim);
  // Every key, the victim's included, was written again after the kill, within the failover time.
  steady::duration slowest{};
  for (const auto& k : keys) {
    ASSERT_TRUE(report.first_success_after_mark.contains(k))
        << k << " never succeeded after the kill; an early error: "
        << (report.errors.empty() ? std::string("none") : report.errors.back()) << "\n"
        << cluster_views(victim);
    slowest = std::max(slowest, report.first_success_after_mark.at(k) - killed_at);
  }
  EXPECT_LT(slowest, 15s);
  // min_replicas_acked = 1: an acknowledged write was on the replica that took over.
  auto check = [&]() -> asio::awaitable<int> {
    int lost = 0;
    for (const auto& [k, v] : report.acked) {
      auto g = co_await cache.get(k);
      if (!g || !g.value() || g.value()->version < v) ++lost;
    }
    co_return lost;
  };
  EXPECT_EQ(run(check()), 0);
  std::cout << "failover: " << report.calls << " calls, " << report.failures << " failed during the failover, "
            << "every key written again " << std::chrono::duration_cast<std::chrono::milliseconds>(slowest).count()
            << " ms after the kill\n";
  run(c.stop());
}

TEST_F(redis_cluster_fault, the_whole_cluster_down_is_unavailable_within_the_deadline_then_recovers) {
  auto o = options();
  o.request_timeout = 1000ms;
  redis::client c(ctx_.get_executor(), o);
  redis::cache cache(c, redis::cache_options{"bulwark:test:down:"});
  const auto keys = keys_in_slots("bulwark:test:down:", "down", 0, 16383, 12);
  auto put_all = [&]() -> asio::awaitable<int> {
    int ok = 0;
    for (const auto& k : keys) {
      bulwark::versioned value{"v", 1};
      auto r = co_await cache.put(k, std::move(value), 0ms);
      if (r && r.value()) ++ok;
    }
    co_return ok;
  };
  ASSERT_EQ(run(put_all()), static_cast<int>(keys.size()));
  control("down");
  for (const auto& k : {keys.front(), keys.back()}) {
    const auto start = steady::now();
    auto g = run(cache.get(k));
    const auto took = steady::now() - start;
    ASSERT_FALSE(g.has_value());
    EXPECT_EQ(g.error(), bulwark::errc::unavailable) << g.error().message();
    EXPECT_LT(took, 1500ms);
  }
  for (int n = 1; n <= 6; ++n) control("start", bulwark::test::numbered_key("n", n));
  // Back: the cluster re-forms from nodes.conf; calls succeed again (bounded wait).
  const auto deadline = steady::now() + 30s;
  int ok = 0;
  while (steady::now() < deadline && (ok = run(put_all())) != static_cast<int>(keys.size()))
    std::this_thread::sleep_for(200ms);
  EXPECT_EQ(ok, static_cast<int>(keys.size()));
  run(c.stop());
}

} // namespace
