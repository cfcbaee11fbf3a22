#pragma once
// The ledger conformance suite: every model of bulwark::ledger passes it unchanged.
// Instantiate with a factory (see README.md):
//   INSTANTIATE_TYPED_TEST_SUITE_P(name, ledger_conformance, ::testing::Types<Factory>);
// Besides make() (a model with a retention far longer than any test), a ledger factory has
// make_with_retention(ms) and advance(ms): a manual clock for memory and mysql, a real sleep for
// Redis (whose records expire by the server's clock).

#include <bulwark/ledger.hpp>
#include <bulwark/resilience/timeout.hpp>

#include "conformance/fixture.hpp"
#include "support/keys.hpp"

#include <asio/co_spawn.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace bulwark::test {

using namespace std::chrono_literals;

template <class Factory> class ledger_conformance : public conformance_fixture<Factory> {
protected:
  auto& ledger() { return this->model(); }
  /// The balance at key, 0 when absent; fails the test on an error.
  amount balance_of(std::string_view key) { return balance_of_in(ledger(), key); }
  template <class Ledger> amount balance_of_in(Ledger& l, std::string_view key) {
    auto got = this->run(l.get(key));
    EXPECT_TRUE(got.has_value()) << got.error();
    return got && got.value() ? *got.value() : 0;
  }
  result<apply_outcome> apply(std::string_view op, std::vector<adjustment> adjustments) {
    return this->run(ledger().apply(op, adjustments));
  }
};

TYPED_TEST_SUITE_P(ledger_conformance);

TYPED_TEST_P(ledger_conformance, get_of_unknown_key_is_empty_and_set_add_administer) {
  auto& l = this->ledger();
  auto none = this->run(l.get("absent"));
  ASSERT_TRUE(none.has_value()) << none.error();
  EXPECT_FALSE(none.value().has_value());
  ASSERT_TRUE(this->run(l.set("item/1", 10)).has_value());
  EXPECT_EQ(this->balance_of("item/1"), 10);
  auto added = this->run(l.add("item/1", 5));
  ASSERT_TRUE(added.has_value()) << added.error();
  EXPECT_EQ(added.value(), 15);
  auto taken = this->run(l.add("item/1", -15));
  ASSERT_TRUE(taken.has_value()) << taken.error();
  EXPECT_EQ(taken.value(), 0);
  auto zero = this->run(l.get("item/1"));
  ASSERT_TRUE(zero.has_value() && zero.value().has_value()) << "a balance of 0 is still there";
  EXPECT_EQ(*zero.value(), 0);
  // add to a key never set starts from 0; below zero is refused and changes nothing.
  EXPECT_EQ(this->run(l.add("fresh", 3)).value(), 3);
  auto below = this->run(l.add("fresh", -4));
  ASSERT_FALSE(below.has_value());
  EXPECT_EQ(below.error(), errc::declined);
  EXPECT_EQ(below.error(), ledger_errc::insufficient);
  EXPECT_EQ(below.error().detail(), "'fresh' has 3, cannot take 4");
  EXPECT_EQ(this->balance_of("fresh"), 3);
  // set overwrites; a negative or oversized balance is invalid.
  ASSERT_TRUE(this->run(l.set("fresh", 7)).has_value());
  EXPECT_EQ(this->balance_of("fresh"), 7);
  auto negative = this->run(l.set("fresh", -1));
  ASSERT_FALSE(negative.has_value());
  EXPECT_EQ(negative.error(), errc::invalid_argument);
  auto huge = this->run(l.set("fresh", max_amount + 1));
  ASSERT_FALSE(huge.has_value());
  EXPECT_EQ(huge.error(), errc::invalid_argument);
  auto over = this->run(l.add("fresh", max_amount));
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error(), errc::too_large);
  EXPECT_EQ(over.error(), ledger_errc::over_limit);
  EXPECT_EQ(this->balance_of("fresh"), 7);
}

TYPED_TEST_P(ledger_conformance, set_many_initialises_many_keys) {
  auto& l = this->ledger();
  constexpr int keys = 2000;
  std::vector<balance> init;
  init.reserve(keys);
  for (int i = 0; i < keys; ++i) init.push_back(balance{numbered_key("stock/", i), amount{i} * 3});
  const auto started = std::chrono::steady_clock::now();
  auto done = this->run(l.set_many(init));
  const auto took = std::chrono::steady_clock::now() - started;
  ASSERT_TRUE(done.has_value()) << done.error();
  this->RecordProperty("set_many_2000_us",
                       static_cast<int>(std::chrono::duration_cast<std::chrono::microseconds>(took).count()));
  for (int i : {0, 1, 999, 1998, 1999}) EXPECT_EQ(this->balance_of(numbered_key("stock/", i)), amount{i} * 3);
  // Binary keys round-trip; a bad entry refuses the batch before anything is written.
  static constexpr char raw[] = "bin\0'\"\xff";
  const std::string binary(raw, sizeof(raw) - 1);
  ASSERT_TRUE(this->run(l.set_many(std::vector<balance>{{binary, 42}})).has_value());
  EXPECT_EQ(this->balance_of(binary), 42);
  auto bad = this->run(l.set_many(std::vector<balance>{{"ok-key", 1}, {"", 2}}));
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error(), errc::invalid_argument);
  auto untouched = this->run(l.get("ok-key"));
  ASSERT_TRUE(untouched.has_value());
  EXPECT_FALSE(untouched.value().has_value());
}

TYPED_TEST_P(ledger_conformance, apply_moves_balances_atomically_across_keys) {
  auto& l = this->ledger();
  ASSERT_TRUE(this->run(l.set_many(std::vector<balance>{{"user/a", 100}, {"item/x", 5}})).has_value());
  // A checkout: take credit and stock, credit the shop (a key never seen).
  auto first = this->apply("order-1", {{"user/a", -30}, {"item/x", -2}, {"shop", 30}});
  ASSERT_TRUE(first.has_value()) << first.error();
  EXPECT_EQ(first.value(), apply_outcome::applied);
  EXPECT_EQ(this->balance_of("user/a"), 70);
  EXPECT_EQ(this->balance_of("item/x"), 3);
  EXPECT_EQ(this->balance_of("shop"), 30);
  // One key short: nothing at all changes, and the detail names the key.
  auto refused = this->apply("order-2", {{"user/a", -30}, {"item/x", -4}, {"shop", 30}});
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error(), errc::declined);
  EXPECT_EQ(refused.error(), ledger_errc::insufficient);
  EXPECT_EQ(refused.error().detail(), "'item/x' has 3, cannot take 4");
  EXPECT_EQ(this->balance_of("user/a"), 70);
  EXPECT_EQ(this->balance_of("item/x"), 3);
  EXPECT_EQ(this->balance_of("shop"), 30);
  // A key never seen counts as 0: taking from it is refused.
  auto from_nothing = this->apply("order-3", {{"user/a", 1}, {"nobody", -1}});
  ASSERT_FALSE(from_nothing.has_value());
  EXPECT_EQ(from_nothing.error(), ledger_errc::insufficient);
  EXPECT_EQ(this->balance_of("user/a"), 70);
  auto nobody = this->run(l.get("nobody"));
  ASSERT_TRUE(nobody.has_value());
  EXPECT_FALSE(nobody.value().has_value()) << "a refused apply created a key";
  // Above the largest amount: refused whole.
  auto over = this->apply("order-4", {{"shop", max_amount}, {"user/a", -1}});
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error(), errc::too_large);
  EXPECT_EQ(over.error(), ledger_errc::over_limit);
  EXPECT_EQ(this->balance_of("shop"), 30);
  EXPECT_EQ(this->balance_of("user/a"), 70);
}

TYPED_TEST_P(ledger_conformance, an_op_id_seen_before_returns_its_first_result) {
  auto& l = this->ledger();
  ASSERT_TRUE(this->run(l.set("stock", 5)).has_value());
  ASSERT_EQ(this->apply("op-1", {{"stock", -2}}).value(), apply_outcome::applied);
  for (int i = 0; i < 3; ++i) {
    // The same id, even with other adjustments: the first result, nothing changes.
    auto again = this->apply("op-1", {{"stock", -3}});
    ASSERT_TRUE(again.has_value()) << again.error();
    EXPECT_EQ(again.value(), apply_outcome::already_applied);
  }
  EXPECT_EQ(this->balance_of("stock"), 3);
  // A refused id stays refused, even once the balance would allow it.
  auto refused = this->apply("op-2", {{"stock", -4}});
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error(), ledger_errc::insufficient);
  ASSERT_TRUE(this->run(l.add("stock", 10)).has_value());
  auto still = this->apply("op-2", {{"stock", -4}});
  ASSERT_FALSE(still.has_value());
  EXPECT_EQ(still.error(), ledger_errc::insufficient);
  EXPECT_EQ(this->balance_of("stock"), 13);
  auto over = this->apply("op-3", {{"stock", max_amount}});
  ASSERT_FALSE(over.has_value());
  auto over_again = this->apply("op-3", {{"stock", 1}});
  ASSERT_FALSE(over_again.has_value());
  EXPECT_EQ(over_again.error(), ledger_errc::over_limit);
  EXPECT_EQ(this->balance_of("stock"), 13);
}

TYPED_TEST_P(ledger_conformance, revert_undoes_an_applied_operation_once) {
  auto& l = this->ledger();
  ASSERT_TRUE(this->run(l.set_many(std::vector<balance>{{"credit", 50}, {"stock", 4}})).has_value());
  ASSERT_EQ(this->apply("pay-1", {{"credit", -20}, {"stock", -1}}).value(), apply_outcome::applied);
  auto undone = this->run(l.revert("pay-1"));
  ASSERT_TRUE(undone.has_value()) << undone.error();
  EXPECT_EQ(undone.value(), revert_outcome::undone);
  EXPECT_EQ(this->balance_of("credit"), 50);
  EXPECT_EQ(this->balance_of("stock"), 4);
  auto twice = this->run(l.revert("pay-1"));
  ASSERT_TRUE(twice.has_value()) << twice.error();
  EXPECT_EQ(twice.value(), revert_outcome::already_undone);
  EXPECT_EQ(this->balance_of("credit"), 50);
  // A late apply of a reverted id is refused and changes nothing.
  auto late = this->apply("pay-1", {{"credit", -20}, {"stock", -1}});
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error(), errc::declined);
  EXPECT_EQ(late.error(), ledger_errc::reverted);
  EXPECT_EQ(this->balance_of("credit"), 50);
  EXPECT_EQ(this->balance_of("stock"), 4);
  // Reverting a refused operation has nothing to undo.
  ASSERT_FALSE(this->apply("pay-2", {{"credit", -51}}).has_value());
  auto nothing = this->run(l.revert("pay-2"));
  ASSERT_TRUE(nothing.has_value()) << nothing.error();
  EXPECT_EQ(nothing.value(), revert_outcome::nothing_applied);
  EXPECT_EQ(this->balance_of("credit"), 50);
}

TYPED_TEST_P(ledger_conformance, revert_of_an_unknown_id_leaves_a_tombstone) {
  auto& l = this->ledger();
  ASSERT_TRUE(this->run(l.set("stock", 3)).has_value());
  // The compensation overtook its action.
  auto first = this->run(l.revert("reserve-9"));
  ASSERT_TRUE(first.has_value()) << first.error();
  EXPECT_EQ(first.value(), revert_outcome::tombstoned);
  auto again = this->run(l.revert("reserve-9"));
  ASSERT_TRUE(again.has_value()) << again.error();
  EXPECT_EQ(again.value(), revert_outcome::tombstoned);
  auto late = this->apply("reserve-9", {{"stock", -1}});
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error(), ledger_errc::reverted);
  EXPECT_EQ(this->balance_of("stock"), 3);
}

TYPED_TEST_P(ledger_conformance, revert_that_would_go_below_zero_is_refused_and_keeps_the_operation) {
  auto& l = this->ledger();
  ASSERT_EQ(this->apply("restock", {{"item", 5}}).value(), apply_outcome::applied);
  ASSERT_EQ(this->apply("sale", {{"item", -4}}).value(), apply_outcome::applied);
  auto refused = this->run(l.revert("restock"));
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error(), ledger_errc::insufficient);
  EXPECT_EQ(refused.error().detail(), "'item' has 1, cannot take 5");
  EXPECT_EQ(this->balance_of("item"), 1);
  // Still applied: once the sale is undone, the restock can be.
  ASSERT_EQ(this->run(l.revert("sale")).value(), revert_outcome::undone);
  ASSERT_EQ(this->run(l.revert("restock")).value(), revert_outcome::undone);
  EXPECT_EQ(this->balance_of("item"), 0);
  EXPECT_EQ(this->apply("restock", {{"item", 5}}).error(), ledger_errc::reverted);
}

TYPED_TEST_P(ledger_conformance, bad_input_is_invalid_argument_and_changes_nothing) {
  auto& l = this->ledger();
  ASSERT_TRUE(this->run(l.set("k", 5)).has_value());
  struct bad_case {
    std::string op;
    std::vector<adjustment> adjustments;
    errc expected;
    std::string detail;
  };
  const std::vector<bad_case> cases = {
      {"", {{"k", -1}}, errc::invalid_argument, "empty operation id"},
      {std::string(4097, 'o'), {{"k", -1}}, errc::invalid_argument, "operation id of 4097 bytes exceeds "},
      {"op", {}, errc::invalid_argument, "no adjustments"},
      {"op", {{"k", -1}, {"", 1}}, errc::invalid_argument, "empty key"},
      {"op", {{"k", -1}, {std::string(4097, 'k'), 1}}, errc::invalid_argument, "key of 4097 bytes exceeds "},
      {"op", {{"k", -1}, {"k", 1}}, errc::invalid_argument, "key 'k' appears twice"},
      {"op", {{"k", -max_amount - 1}}, errc::invalid_argument, "delta "},
      {"op", std::vector<adjustment>(100'000, adjustment{"k", 1}), errc::too_large, "100000 adjustments exceed "},
  };
  for (const auto& c : cases) {
    auto got = this->apply(c.op, c.adjustments);
    ASSERT_FALSE(got.has_value()) << c.detail;
    EXPECT_EQ(got.error(), c.expected) << got.error();
    EXPECT_TRUE(got.error().detail().starts_with(c.detail)) << got.error();
  }
  // None of them recorded "op": it applies now.
  EXPECT_EQ(this->apply("op", {{"k", -1}}).value(), apply_outcome::applied);
  EXPECT_EQ(this->balance_of("k"), 4);
  auto empty_revert = this->run(l.revert(""));
  ASSERT_FALSE(empty_revert.has_value());
  EXPECT_EQ(empty_revert.error(), errc::invalid_argument);
  auto empty_get = this->run(l.get(""));
  ASSERT_FALSE(empty_get.has_value());
  EXPECT_EQ(empty_get.error(), errc::invalid_argument);
}

// Many workers take one unit each from one hot key (with unique op ids), crediting a second key
// in the same apply: more attempts than units, so the last ones are refused. No balance goes
// below zero, the sum is conserved, and exactly the stock was sold. Workers yield between
// calls, so their applies interleave on every model (asserted: a run without it proves
// nothing); a thread-safe model also runs them from several threads.
TYPED_TEST_P(ledger_conformance, concurrent_applies_on_a_hot_key_never_go_below_zero) {
  auto& l = this->ledger();
  constexpr int workers = 8, stock = 300, per_worker = 50; // 400 attempts for 300 units
  ASSERT_TRUE(this->run(l.set_many(std::vector<balance>{{"hot", stock}, {"sold", 0}})).has_value());
  std::mutex order_mutex;
  std::vector<int> order; // worker of each successful apply, in completion order
  std::atomic<int> in_flight{0}, max_in_flight{0};
  auto worker = [&](int w) -> asio::awaitable<result<int>> {
    int refused = 0;
    for (int i = 0; i < per_worker; ++i) {
      const auto op = numbered_key(numbered_key("w", w) + "-", i);
      const int now = ++in_flight;
      for (int seen = max_in_flight.load(); now > seen && !max_in_flight.compare_exchange_weak(seen, now);) {
      }
      const std::vector<adjustment> sale = {{"hot", -1}, {"sold", 1}}; // named: GCC 12 and co_await
      auto got = co_await l.apply(op, sale);
      --in_flight;
      if (got) {
        std::lock_guard lock(order_mutex);
        order.push_back(w);
      } else if (got.error() == ledger_errc::insufficient) {
        ++refused;
      } else {
        co_return got.error();
      }
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    }
    co_return refused;
  };
  auto all = [&]() -> asio::awaitable<result<int>> {
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::future<std::optional<result<int>>>> futures;
    for (int w = 0; w < workers; ++w) futures.push_back(spawn(ex, worker(w)));
    std::vector<std::optional<result<int>>> done;
    for (auto& f : futures) done.push_back(co_await await_future(f));
    int refused = 0;
    for (auto& got : done) {
      auto r = *got;
      if (!r) co_return r.error();
      refused += r.value();
    }
    co_return refused;
  };
  auto refused = this->run_threaded(all());
  ASSERT_TRUE(refused.has_value()) << refused.error();
  EXPECT_EQ(this->balance_of("hot"), 0);
  EXPECT_EQ(this->balance_of("sold"), stock);
  EXPECT_EQ(static_cast<int>(order.size()), stock);
  EXPECT_EQ(refused.value(), workers * per_worker - stock);
  int switches = 0;
  for (std::size_t i = 1; i < order.size(); ++i) switches += order[i] != order[i - 1];
  this->RecordProperty("worker_switches", switches);
  this->RecordProperty("max_in_flight", max_in_flight.load());
  EXPECT_GE(switches, workers * 4) << "the workers' applies never interleaved";
}

// For each op id, several applies and reverts race (spawned together, in varying order). Per
// id at most one call applies and at most one undoes, and a final revert of every id brings
// every balance back to where it started: nothing applied twice, nothing undone twice.
TYPED_TEST_P(ledger_conformance, duplicate_and_revert_races_apply_and_undo_at_most_once) {
  auto& l = this->ledger();
  constexpr int ops = 40;
  ASSERT_TRUE(this->run(l.set_many(std::vector<balance>{{"race/stock", 1000}, {"race/credit", 1000}})).has_value());
  struct tally {
    std::atomic<int> applied{0}, undone{0};
  };
  std::vector<tally> tallies(ops);
  auto applier = [&](int i) -> asio::awaitable<result<void>> {
    const std::vector<adjustment> order = {{"race/stock", -(i % 5 + 1)}, {"race/credit", -(i % 7 + 1)}};
    const auto op = numbered_key("race-", i);
    auto got = co_await l.apply(op, order);
    if (got) {
      if (got.value() == apply_outcome::applied) ++tallies[static_cast<std::size_t>(i)].applied;
      co_return ok();
    }
    if (got.error() == ledger_errc::reverted) co_return ok();
    co_return got.error();
  };
  auto reverter = [&](int i) -> asio::awaitable<result<void>> {
    const auto op = numbered_key("race-", i);
    auto got = co_await l.revert(op);
    if (!got) co_return got.error();
    if (got.value() == revert_outcome::undone) ++tallies[static_cast<std::size_t>(i)].undone;
    co_return ok();
  };
  auto all = [&]() -> asio::awaitable<result<void>> {
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::future<std::optional<result<void>>>> futures;
    for (int i = 0; i < ops; ++i) {
      // Three applies and two reverts per id, the order rotating with i.
      for (int k = 0; k < 5; ++k) {
        const bool is_revert = ((k + i) % 5) >= 3;
        futures.push_back(spawn(ex, is_revert ? reverter(i) : applier(i)));
      }
    }
    std::vector<std::optional<result<void>>> done;
    for (auto& f : futures) done.push_back(co_await await_future(f));
    for (auto& got : done) {
      if (!*got) co_return got->error();
    }
    co_return ok();
  };
  auto raced = this->run_threaded(all());
  ASSERT_TRUE(raced.has_value()) << raced.error();
  int applied_ids = 0, tombstoned_first = 0;
  for (int i = 0; i < ops; ++i) {
    const auto& t = tallies[static_cast<std::size_t>(i)];
    EXPECT_LE(t.applied.load(), 1) << "op " << i << " applied twice";
    EXPECT_LE(t.undone.load(), 1) << "op " << i << " undone twice";
    EXPECT_LE(t.undone.load(), t.applied.load()) << "op " << i << " undone without being applied";
    applied_ids += t.applied.load();
    tombstoned_first += t.applied.load() == 0;
    // Whatever the race left, one more revert settles it: afterwards no op stands applied.
    auto settle = this->run(l.revert(numbered_key("race-", i)));
    ASSERT_TRUE(settle.has_value()) << settle.error();
    if (settle.value() == revert_outcome::undone) {
      EXPECT_EQ(t.undone.load(), 0) << "op " << i;
    }
    if (t.applied.load() == 0) {
      EXPECT_EQ(settle.value(), revert_outcome::tombstoned) << "op " << i;
    }
  }
  this->RecordProperty("applied_ids", applied_ids);
  this->RecordProperty("tombstoned_first", tombstoned_first);
  EXPECT_EQ(this->balance_of("race/stock"), 1000);
  EXPECT_EQ(this->balance_of("race/credit"), 1000);
  // Every id is settled: a late apply of any of them is refused.
  for (int i = 0; i < ops; ++i) {
    auto late = this->apply(numbered_key("race-", i), {{"race/stock", -1}});
    ASSERT_FALSE(late.has_value()) << "op " << i;
    EXPECT_EQ(late.error(), ledger_errc::reverted);
  }
  EXPECT_EQ(this->balance_of("race/stock"), 1000);
}

// Records are kept for the retention and forgotten after it: a duplicate or a tombstone older
// than the retention no longer refuses anything, and the id is new again.
TYPED_TEST_P(ledger_conformance, records_are_forgotten_after_the_retention) {
  constexpr auto retention = 1500ms;
  auto short_lived = this->factory_.make_with_retention(retention);
  auto& l = *short_lived;
  ASSERT_TRUE(this->run(l.set("stock", 10)).has_value());
  ASSERT_EQ(this->run(l.apply("kept", std::vector<adjustment>{{"stock", -1}})).value(), apply_outcome::applied);
  ASSERT_EQ(this->run(l.revert("buried")).value(), revert_outcome::tombstoned);
  this->factory_.advance(retention / 3);
  // Within the retention: still a duplicate, still a tombstone.
  EXPECT_EQ(this->run(l.apply("kept", std::vector<adjustment>{{"stock", -1}})).value(), apply_outcome::already_applied);
  auto buried = this->run(l.apply("buried", std::vector<adjustment>{{"stock", -1}}));
  ASSERT_FALSE(buried.has_value());
  EXPECT_EQ(buried.error(), ledger_errc::reverted);
  EXPECT_EQ(this->balance_of_in(l, "stock"), 9);
  this->factory_.advance(retention);
  // After it: both ids are new.
  EXPECT_EQ(this->run(l.apply("kept", std::vector<adjustment>{{"stock", -1}})).value(), apply_outcome::applied);
  EXPECT_EQ(this->run(l.apply("buried", std::vector<adjustment>{{"stock", -1}})).value(), apply_outcome::applied);
  EXPECT_EQ(this->balance_of_in(l, "stock"), 7);
  // A revert after the retention finds no record: it tombstones instead of undoing.
  this->factory_.advance(retention + retention / 3);
  EXPECT_EQ(this->run(l.revert("kept")).value(), revert_outcome::tombstoned);
  EXPECT_EQ(this->balance_of_in(l, "stock"), 7);
}

// errc::timeout on apply or revert means the outcome is unknown; asking again with the same id
// settles it. Each call here is cut by a deadline that has already passed (a backend's call is
// cancelled in flight, and may or may not land), then asked again until it answers (a backend
// may answer transient errors for a while as it re-opens a connection): every operation lands
// exactly once, and so does every revert.
TYPED_TEST_P(ledger_conformance, a_timed_out_call_is_settled_by_asking_again_with_its_id) {
  auto& l = this->ledger();
  ASSERT_TRUE(this->run(l.set("stock", 100)).has_value());
  constexpr int ops = 10;
  const std::vector<adjustment> take = {{"stock", -1}};
  int timeouts = 0, transient_errors = 0;
  for (int i = 0; i < ops; ++i) {
    const auto op = numbered_key("timed-", i);
    auto raced = this->run(with_timeout(l.apply(op, take), 0ms, "apply"));
    if (!raced) {
      EXPECT_TRUE(raced.error() == errc::timeout || this->transient(raced.error())) << raced.error();
      timeouts += raced.error() == errc::timeout;
    }
    auto settled = this->run_settled([&] { return l.apply(op, take); }, transient_errors);
    ASSERT_TRUE(settled.has_value()) << settled.error();
    if (raced) {
      EXPECT_EQ(settled.value(), apply_outcome::already_applied);
    }
  }
  auto after_applies = this->run_settled([&] { return l.get("stock"); }, transient_errors);
  ASSERT_TRUE(after_applies.has_value() && after_applies.value().has_value());
  EXPECT_EQ(*after_applies.value(), 100 - ops) << "an apply cut by its deadline landed twice or never";
  for (int i = 0; i < ops; ++i) {
    const auto op = numbered_key("timed-", i);
    auto raced = this->run(with_timeout(l.revert(op), 0ms, "revert"));
    if (!raced) {
      EXPECT_TRUE(raced.error() == errc::timeout || this->transient(raced.error())) << raced.error();
      timeouts += raced.error() == errc::timeout;
    }
    auto settled = this->run_settled([&] { return l.revert(op); }, transient_errors);
    ASSERT_TRUE(settled.has_value()) << settled.error();
    EXPECT_TRUE(settled.value() == revert_outcome::undone || settled.value() == revert_outcome::already_undone)
        << static_cast<int>(settled.value());
  }
  this->RecordProperty("timeouts", timeouts);
  this->RecordProperty("transient_errors", transient_errors);
  auto after_reverts = this->run_settled([&] { return l.get("stock"); }, transient_errors);
  ASSERT_TRUE(after_reverts.has_value() && after_reverts.value().has_value());
  EXPECT_EQ(*after_reverts.value(), 100) << "a revert cut by its deadline landed twice or never";
}

REGISTER_TYPED_TEST_SUITE_P(ledger_conformance, get_of_unknown_key_is_empty_and_set_add_administer,
                            set_many_initialises_many_keys, apply_moves_balances_atomically_across_keys,
                            an_op_id_seen_before_returns_its_first_result, revert_undoes_an_applied_operation_once,
                            revert_of_an_unknown_id_leaves_a_tombstone,
                            revert_that_would_go_below_zero_is_refused_and_keeps_the_operation,
                            bad_input_is_invalid_argument_and_changes_nothing,
                            concurrent_applies_on_a_hot_key_never_go_below_zero,
                            duplicate_and_revert_races_apply_and_undo_at_most_once,
                            records_are_forgotten_after_the_retention,
                            a_timed_out_call_is_settled_by_asking_again_with_its_id);

} // namespace bulwark::test
