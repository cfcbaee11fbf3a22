// saga::orchestrator on the memory models with injected clocks (no sleeping): the happy path,
// compensation in reverse, timeouts, idempotent start, compensation_failed, remote steps over
// memory::event_bus with duplicated / reordered / lost replies, a crash at every transition,
// two replicas with leases, and a property test over shared ledger balances.
#include <bulwark/clock.hpp>
#include <bulwark/ledger.hpp>
#include <bulwark/manual_clock.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/ledger.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/saga.hpp>
#include <bulwark/saga/definition.hpp>
#include <bulwark/saga/log.hpp>
#include <bulwark/saga/orchestrator.hpp>
#include <bulwark/saga/wire.hpp>
#include <bulwark/testing/faults.hpp>

#include "support/run.hpp"

#include <gtest/gtest.h>

#include <asio/cancellation_signal.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using bulwark::adjustment;
using bulwark::amount;
using bulwark::errc;
using bulwark::error;
using bulwark::task;
namespace saga = bulwark::saga;
using saga::saga_state;

namespace {

// The saga's context: a transfer of `value` from one balance to another, with a fee to "bank".
// fail_at / hang_at / fail_undo make a step refuse, run past its deadline, or fail to undo.
struct transfer {
  std::string id;
  std::string from;
  std::string to;
  amount value = 0;
  int fail_at = -1;
  int hang_at = -1;
  bool fail_undo = false;
  int yields = 0;               // property test: how often each local call lets others run
  bool ignore_deadline = false; // a hung step waits 4 s past its deadline (a misbehaving call)
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(transfer, id, from, to, value, fail_at, hang_at, fail_undo, yields, ignore_deadline)

using transfer_saga = saga::definition<transfer>;

struct world {
  asio::io_context ctx;
  bulwark::clock clock = bulwark::clock::manual();
  bulwark::manual_clock wall;
  bulwark::memory::repository repo;
  bulwark::memory::ledger ledger;
  std::vector<std::string> journal; // "do:<saga>:<step>", "undo:<saga>:<step>"

  saga::orchestrator_options options(std::string replica = "r1") {
    saga::orchestrator_options o;
    o.replica = std::move(replica);
    o.clock = clock;
    o.wall = [w = wall] { return w.now(); };
    return o;
  }

  void advance(bulwark::clock::duration d) {
    clock.advance(d);
    wall.advance(std::chrono::duration_cast<std::chrono::system_clock::duration>(d));
  }

  // Runs what is ready, moving both clocks by `step` between rounds. Bounded by `rounds`.
  void settle(int rounds = 100, bulwark::clock::duration step = 10ms) {
    for (int i = 0; i < rounds; ++i) {
      poll();
      advance(step);
    }
    poll();
  }

  void poll() {
    ctx.restart();
    ctx.poll();
  }

  template <class T> T run(asio::awaitable<T> op) { return bulwark::test::run(ctx, std::move(op), 10s); }

  amount balance(const std::string& key) { return ledger.get_now(key).value().value_or(0); }
};

// A step that moves ledger balances under op id "<saga>/<step>", undone by reverting that id.
saga::step<transfer> ledger_step(world& w, std::string name, int index,
                                 std::function<std::vector<adjustment>(const transfer&)> changes) {
  auto action = [&w, name, index, changes](transfer& t, bulwark::clock::time_point deadline) -> task<void> {
    w.journal.push_back("do:" + t.id + ":" + name);
    for (int i = 0; i < t.yields; ++i) co_await asio::post(w.ctx.get_executor(), asio::use_awaitable);
    if (t.fail_at == index) co_return error(errc::declined, "refused by the test");
    if (t.hang_at == index) {
      const auto until = t.ignore_deadline ? deadline + 4s : deadline;
      const bool reached = co_await w.clock.wait_until(until);
      (void)reached;
      co_return error(errc::timeout, name + " ran past its deadline");
    }
    const auto adjustments = changes(t);
    auto applied = w.ledger.apply_now(t.id + "/" + name, adjustments);
    if (!applied) co_return applied.error();
    co_return bulwark::ok();
  };
  auto compensation = [&w, name](transfer& t, bulwark::clock::time_point) -> task<void> {
    w.journal.push_back("undo:" + t.id + ":" + name);
    for (int i = 0; i < t.yields; ++i) co_await asio::post(w.ctx.get_executor(), asio::use_awaitable);
    if (t.fail_undo) co_return error(errc::unavailable, "undo failed in the test");
    auto reverted = w.ledger.revert_now(t.id + "/" + name);
    if (!reverted) co_return reverted.error();
    co_return bulwark::ok();
  };
  auto s = saga::local_step<transfer>(std::move(name), action, compensation);
  s.timeout = 1s;
  s.retry.max_attempts = 1;
  s.compensation_retry.max_attempts = 3;
  return s;
}

// debit (from -= value), fee (from -= 1, bank += 1), credit (to += value).
transfer_saga transfer_definition(world& w) {
  transfer_saga d("transfer");
  d.add(ledger_step(w, "debit", 0,
                    [](const transfer& t) {
                      return std::vector<adjustment>{{t.from, -t.value}};
                    }))
      .add(ledger_step(w, "fee", 1,
                       [](const transfer& t) {
                         return std::vector<adjustment>{{t.from, -1}, {"bank", 1}};
                       }))
      .add(ledger_step(w, "credit", 2, [](const transfer& t) {
        return std::vector<adjustment>{{t.to, t.value}};
      }));
  return d;
}

using local_orchestrator = saga::orchestrator<transfer_saga, bulwark::memory::repository>;

transfer make_transfer(std::string id, amount value = 10) { return transfer{std::move(id), "alice", "bob", value}; }

// Starts `t` and settles the world; returns the saga's outcome as the log has it.
saga_state run_one(world& w, local_orchestrator& o, transfer t) {
  const auto id = t.id;
  auto started = w.run(o.start(id, std::move(t)));
  EXPECT_TRUE(started.has_value()) << started.error().message();
  w.settle();
  auto status = w.run(o.status(id));
  EXPECT_TRUE(status && status.value());
  return status.value()->state;
}

} // namespace

TEST(saga_log, record_round_trips_and_refuses_garbage) {
  saga::log_record r;
  r.state = saga_state::compensating;
  r.step = 2;
  r.attempt = 3;
  r.started = saga::wall_time(std::chrono::milliseconds(1'700'000'000'000));
  r.updated = r.started + std::chrono::seconds(5);
  r.lease_owner = "replica:1\nwith newline";
  r.lease_expiry = r.updated + std::chrono::seconds(30);
  r.detail = "step x: 12:34";
  r.context = std::string("{\"a\":1}\n\0bytes", 14);
  auto back = saga::log_codec::decode(saga::log_codec::encode(r));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back.value(), r);
  for (std::string bad : {"", "S2\n1\n", "S1\n9\n0\n0\n0\n0\n0\n0:\n0:\n", "S1\n1\n0\n0\n0\n0\n0\n5:ab\n0:\n"}) {
    auto refused = saga::log_codec::decode(bad);
    ASSERT_FALSE(refused) << bad;
    EXPECT_EQ(refused.error(), errc::invalid_argument);
  }
}

TEST(saga_definition, validate_names_the_broken_rule) {
  world w;
  transfer_saga empty("t");
  EXPECT_EQ(empty.validate().error(), errc::invalid_argument);
  auto d = transfer_definition(w);
  EXPECT_TRUE(d.validate());
  d.pivot_after("nope");
  EXPECT_NE(d.validate().error().message().find("nope"), std::string::npos);
  auto twice = transfer_definition(w);
  twice.add(ledger_step(w, "fee", 3, [](const transfer&) { return std::vector<adjustment>{}; }));
  EXPECT_NE(twice.validate().error().message().find("used twice"), std::string::npos);
  EXPECT_THROW(local_orchestrator(w.ctx.get_executor(), twice, w.repo, w.options()), std::invalid_argument);
}

TEST(saga_orchestrator, happy_path_runs_every_step_once_and_completes) {
  world w;
  w.ledger.set_now("alice", 100).value();
  auto registry = std::make_shared<bulwark::metrics::registry>();
  auto opts = w.options();
  opts.metrics = registry;
  local_orchestrator o(w.ctx.get_executor(), transfer_definition(w), w.repo, opts);
  EXPECT_EQ(run_one(w, o, make_transfer("s1")), saga_state::completed);
  EXPECT_EQ(w.journal, (std::vector<std::string>{"do:s1:debit", "do:s1:fee", "do:s1:credit"}));
  EXPECT_EQ(w.balance("alice"), 89);
  EXPECT_EQ(w.balance("bob"), 10);
  EXPECT_EQ(w.balance("bank"), 1);
  const auto stats = o.stats();
  EXPECT_EQ(stats.started, 1u);
  EXPECT_EQ(stats.completed, 1u);
  EXPECT_EQ(stats.in_flight, 0u);
  const auto text = registry->expose();
  EXPECT_NE(text.find("bulwark_saga_finished_total{saga=\"transfer\",state=\"completed\"} 1"), std::string::npos);
  EXPECT_NE(text.find("bulwark_saga_step_seconds_count{saga=\"transfer\",step=\"credit\"} 1"), std::string::npos);
  EXPECT_NE(text.find("bulwark_saga_in_flight{saga=\"transfer\"} 0"), std::string::npos);
  w.run(o.stop());
}

TEST(saga_orchestrator, business_failure_at_each_step_compensates_exactly_the_completed_steps_in_reverse) {
  const std::vector<std::string> names{"debit", "fee", "credit"};
  for (int k = 0; k < 3; ++k) {
    SCOPED_TRACE(k);
    world w;
    w.ledger.set_now("alice", 100).value();
    local_orchestrator o(w.ctx.get_executor(), transfer_definition(w), w.repo, w.options());
    auto t = make_transfer("s", 10);
    t.fail_at = k;
    EXPECT_EQ(run_one(w, o, t), saga_state::compensated);
    std::vector<std::string> expected;
    for (int i = 0; i <= k; ++i) expected.push_back("do:s:" + names[static_cast<std::size_t>(i)]);
    for (int i = k - 1; i >= 0; --i) expected.push_back("undo:s:" + names[static_cast<std::size_t>(i)]);
    EXPECT_EQ(w.journal, expected);
    EXPECT_EQ(w.balance("alice"), 100);
    EXPECT_EQ(w.balance("bob"), 0);
    EXPECT_EQ(w.balance("bank"), 0);
    auto outcome = w.run(o.outcome("s", w.clock.now() + 1s));
    ASSERT_TRUE(outcome);
    EXPECT_EQ(outcome.value().state, saga_state::compensated);
    EXPECT_NE(outcome.value().detail.find("step " + names[static_cast<std::size_t>(k)]), std::string::npos);
    w.run(o.stop());
  }
}

TEST(saga_orchestrator, a_refusal_of_the_ledger_is_a_business_failure) {
  world w;
  w.ledger.set_now("alice", 10).value(); // the debit of 10 passes, the fee of 1 does not
  local_orchestrator o(w.ctx.get_executor(), transfer_definition(w), w.repo, w.options());
  EXPECT_EQ(run_one(w, o, make_transfer("s", 10)), saga_state::compensated);
  EXPECT_EQ(w.balance("alice"), 10);
  w.run(o.stop());
}

TEST(saga_orchestrator, a_step_past_its_deadline_counts_as_possibly_applied_and_is_compensated) {
  world w;
  w.ledger.set_now("alice", 100).value();
  local_orchestrator o(w.ctx.get_executor(), transfer_definition(w), w.repo, w.options());
  auto t = make_transfer("s");
  t.hang_at = 1;
  auto started = w.run(o.start("s", t));
  ASSERT_TRUE(started);
  w.settle(50, 10ms); // 0.5 s: the fee step still waits for its 1 s deadline
  EXPECT_EQ(w.journal, (std::vector<std::string>{"do:s:debit", "do:s:fee"}));
  w.settle(100, 10ms);
  EXPECT_EQ(w.journal, (std::vector<std::string>{"do:s:debit", "do:s:fee", "undo:s:fee", "undo:s:debit"}));
  EXPECT_EQ(w.run(o.status("s")).value()->state, saga_state::compensated);
  // The fee's undo found nothing applied: the ledger tombstoned its id.
  EXPECT_EQ(w.ledger.apply_now("s/fee", std::vector<adjustment>{{"bank", 1}}).error(), bulwark::ledger_errc::reverted);
  EXPECT_EQ(w.balance("alice"), 100);
  w.run(o.stop());
}

TEST(saga_orchestrator, the_saga_deadline_compensates_before_the_pivot) {
  world w;
  w.ledger.set_now("alice", 100).value();
  auto d = transfer_definition(w);
  d.saga_timeout(500ms);
  local_orchestrator o(w.ctx.get_executor(), d, w.repo, w.options());
  auto t = make_transfer("s");
  t.hang_at = 2; // the credit waits for its deadline: the saga's, 0.5 s
  EXPECT_EQ(run_one(w, o, t), saga_state::compensated);
  EXPECT_EQ(w.balance("alice"), 100);
  EXPECT_EQ(w.balance("bank"), 0);
  w.run(o.stop());
}

TEST(saga_orchestrator, after_the_pivot_a_failure_leaves_it_failed_not_undone) {
  world w;
  w.ledger.set_now("alice", 100).value();
  auto d = transfer_definition(w);
  d.pivot_after("fee");
  local_orchestrator o(w.ctx.get_executor(), d, w.repo, w.options());
  auto t = make_transfer("s");
  t.fail_at = 2;
  EXPECT_EQ(run_one(w, o, t), saga_state::failed);
  EXPECT_EQ(w.balance("alice"), 89);
  auto failed = w.run(o.list(saga_state::failed));
  ASSERT_TRUE(failed);
  ASSERT_EQ(failed.value().size(), 1u);
  EXPECT_EQ(failed.value()[0].id, "s");
  EXPECT_EQ(o.stats().failed, 1u);
  w.run(o.stop());
}

TEST(saga_orchestrator, duplicate_start_finds_the_running_and_the_finished_saga) {
  world w;
  w.ledger.set_now("alice", 100).value();
  local_orchestrator o(w.ctx.get_executor(), transfer_definition(w), w.repo, w.options());
  auto t = make_transfer("s");
  t.hang_at = 2;
  auto first = w.run(o.start("s", t));
  ASSERT_TRUE(first);
  EXPECT_TRUE(first.value().created);
  w.poll();
  auto again = w.run(o.start("s", make_transfer("s", 50)));
  ASSERT_TRUE(again);
  EXPECT_FALSE(again.value().created);
  EXPECT_EQ(again.value().state, saga_state::running);
  w.settle(200);
  auto after = w.run(o.start("s", make_transfer("s", 50)));
  ASSERT_TRUE(after);
  EXPECT_FALSE(after.value().created);
  EXPECT_EQ(after.value().state, saga_state::compensated);
  auto outcome = w.run(o.outcome("s", w.clock.now() + 1s));
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome.value().context.value, 10); // the first start's context, not the duplicate's
  EXPECT_EQ(o.stats().started, 1u);
  EXPECT_EQ(w.balance("alice"), 100);
  w.run(o.stop());
}

TEST(saga_orchestrator, outcome_records_are_kept_for_the_retention_then_purged) {
  world w;
  w.ledger.set_now("alice", 100).value();
  auto opts = w.options();
  opts.retention = 1h;
  local_orchestrator o(w.ctx.get_executor(), transfer_definition(w), w.repo, opts);
  EXPECT_EQ(run_one(w, o, make_transfer("s")), saga_state::completed);
  w.advance(59min);
  EXPECT_EQ(w.run(o.sweep()).value(), 0u);
  EXPECT_TRUE(w.run(o.status("s")).value().has_value());
  w.advance(2min);
  EXPECT_EQ(w.run(o.sweep()).value(), 0u);
  EXPECT_FALSE(w.run(o.status("s")).value().has_value());
  EXPECT_EQ(w.run(o.outcome("s", w.clock.now() + 1s)).error(), errc::not_found);
  w.run(o.stop());
}

// A repository that counts what its callers read: each get, and each entry a scan returns.
struct counting_repository {
  bulwark::memory::repository& inner;
  std::size_t reads = 0;

  task<std::optional<bulwark::versioned>> get(std::string_view key) {
    ++reads;
    co_return co_await inner.get(key);
  }
  task<bulwark::version_t> put(std::string_view key, std::string value, std::optional<bulwark::version_t> expected) {
    co_return co_await inner.put(key, std::move(value), expected);
  }
  task<bool> erase(std::string_view key) { co_return co_await inner.erase(key); }
  task<bulwark::scan_page> scan(std::string_view prefix, std::string_view after, std::size_t limit) {
    auto page = co_await inner.scan(prefix, after, limit);
    if (page) reads += page.value().entries.size();
    co_return page;
  }
};
static_assert(bulwark::repository<counting_repository>);

// Regression: a sweep read every record kept for the retention, final ones included (after an
// hour at a steady rate, about 360 record reads per saga). Now it reads the sagas that are not
// final, and the outcomes only once they are due for purging.
TEST(saga_recovery, a_sweep_reads_the_sagas_not_final_and_the_outcomes_due_not_every_outcome_kept) {
  world w;
  w.ledger.set_now("alice", 100'000).value();
  auto opts = w.options("a");
  opts.retention = 1h;
  local_orchestrator a(w.ctx.get_executor(), transfer_definition(w), w.repo, opts);
  for (int i = 0; i < 200; ++i) {
    const auto id = "done" + std::to_string(i);
    ASSERT_TRUE(w.run(a.start(id, make_transfer(id))));
  }
  w.settle(20);
  EXPECT_EQ(a.stats().completed, 200u);
  for (int i = 0; i < 3; ++i) {
    auto t = make_transfer("live" + std::to_string(i));
    t.hang_at = 1; // waits in its fee step while the clocks stand still
    ASSERT_TRUE(w.run(a.start(t.id, t)));
  }
  w.poll();
  counting_repository counted{w.repo};
  auto opts_b = w.options("b");
  opts_b.retention = 1h;
  saga::orchestrator<transfer_saga, counting_repository> b(w.ctx.get_executor(), transfer_definition(w), counted,
                                                           opts_b);
  EXPECT_EQ(w.run(b.sweep()).value(), 0u); // a's leases hold
  // The 3 live entries, their 3 records, the oldest ended entry (not due); before: 203 records.
  EXPECT_EQ(counted.reads, 7u);
  w.settle(200); // the live ones run past their fee step's 1 s deadline and compensate
  EXPECT_EQ(a.stats().compensated, 3u);
  w.advance(61min); // every outcome is due
  counted.reads = 0;
  EXPECT_EQ(w.run(b.sweep()).value(), 0u);
  // The 203 ended entries (a first page of one, then the rest) and their records: all purged,
  // records and index entries alike.
  EXPECT_EQ(counted.reads, 2 * 203u);
  EXPECT_TRUE(w.run(w.repo.scan("", "", 10)).value().entries.empty());
  EXPECT_EQ(w.run(a.outcome("done0", w.clock.now() + 1s)).error(), errc::not_found);
  counted.reads = 0;
  EXPECT_EQ(w.run(b.sweep()).value(), 0u);
  EXPECT_EQ(counted.reads, 0u); // nothing left to read
  w.run(a.stop());
  w.run(b.stop());
}

TEST(saga_orchestrator, a_compensation_that_keeps_failing_leaves_compensation_failed_listed_and_counted) {
  world w;
  w.ledger.set_now("alice", 100).value();
  auto registry = std::make_shared<bulwark::metrics::registry>();
  auto opts = w.options();
  opts.metrics = registry;
  local_orchestrator o(w.ctx.get_executor(), transfer_definition(w), w.repo, opts);
  auto t = make_transfer("s");
  t.fail_at = 2;
  t.fail_undo = true;
  EXPECT_EQ(run_one(w, o, t), saga_state::compensation_failed);
  // The fee's undo was tried 3 times (its compensation_retry), then the saga stopped there.
  EXPECT_EQ(w.journal, (std::vector<std::string>{"do:s:debit", "do:s:fee", "do:s:credit", "undo:s:fee", "undo:s:fee",
                                                 "undo:s:fee"}));
  auto listed = w.run(o.list(saga_state::compensation_failed));
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed.value().size(), 1u);
  EXPECT_EQ(listed.value()[0].id, "s");
  EXPECT_NE(listed.value()[0].record.detail.find("compensation of step fee"), std::string::npos);
  EXPECT_EQ(o.stats().compensation_failed, 1u);
  EXPECT_NE(registry->expose().find("state=\"compensation_failed\"} 1"), std::string::npos);
  w.run(o.stop());
}

TEST(saga_orchestrator, several_waiters_each_cancellable_on_its_own) {
  world w;
  w.ledger.set_now("alice", 100).value();
  local_orchestrator o(w.ctx.get_executor(), transfer_definition(w), w.repo, w.options());
  auto t = make_transfer("s");
  t.hang_at = 1;
  ASSERT_TRUE(w.run(o.start("s", t)));
  std::optional<bulwark::result<saga::saga_outcome<transfer>>> a, b, c;
  asio::cancellation_signal cancel_b;
  bulwark::test::spawn_into(w.ctx, o.outcome("s", w.clock.now() + 10s), &a);
  bulwark::test::spawn_into(w.ctx, o.outcome("s", w.clock.now() + 10s), &b, cancel_b.slot());
  bulwark::test::spawn_into(w.ctx, o.outcome("s", w.clock.now() + 100ms), &c);
  w.poll();
  cancel_b.emit(asio::cancellation_type::terminal);
  w.settle(20);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->error(), errc::cancelled);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->error(), errc::timeout);
  EXPECT_FALSE(a.has_value());
  w.settle(200);
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(*a);
  EXPECT_EQ(a->value().state, saga_state::compensated);
  w.run(o.stop());
}

TEST(saga_orchestrator, abort_before_the_pivot_compensates_and_after_it_is_refused) {
  world w;
  w.ledger.set_now("alice", 100).value();
  auto d = transfer_definition(w);
  d.pivot_after("fee");
  local_orchestrator o(w.ctx.get_executor(), d, w.repo, w.options());
  auto t = make_transfer("s");
  t.hang_at = 1;
  ASSERT_TRUE(w.run(o.start("s", t)));
  w.poll();
  ASSERT_TRUE(w.run(o.abort("s")));
  w.settle(200);
  EXPECT_EQ(w.run(o.status("s")).value()->state, saga_state::compensated);
  EXPECT_EQ(w.balance("alice"), 100);
  EXPECT_EQ(w.run(o.abort("s")).error(), errc::rejected);
  EXPECT_EQ(w.run(o.abort("nobody")).error(), errc::not_found);
  auto late = make_transfer("late");
  late.hang_at = 2;
  ASSERT_TRUE(w.run(o.start("late", late)));
  w.poll();
  EXPECT_EQ(w.run(o.abort("late")).error(), errc::rejected); // past the pivot
  w.run(o.stop());
}

// abort() ends the wait of the running step (here an hour-long one) at once: no time passes.
TEST(saga_orchestrator, abort_interrupts_the_running_step_and_compensates) {
  world w;
  w.ledger.set_now("alice", 100).value();
  transfer_saga d("transfer");
  auto base = transfer_definition(w);
  for (auto s : base.steps()) {
    s.timeout = 1h;
    d.add(std::move(s));
  }
  local_orchestrator o(w.ctx.get_executor(), d, w.repo, w.options());
  auto t = make_transfer("s");
  t.hang_at = 1; // the fee waits for its deadline, an hour away
  ASSERT_TRUE(w.run(o.start("s", t)));
  w.poll();
  EXPECT_EQ(w.journal, (std::vector<std::string>{"do:s:debit", "do:s:fee"}));
  ASSERT_TRUE(w.run(o.abort("s")));
  w.poll();
  EXPECT_EQ(w.journal, (std::vector<std::string>{"do:s:debit", "do:s:fee", "undo:s:fee", "undo:s:debit"}));
  auto outcome = w.run(o.outcome("s", w.clock.now()));
  ASSERT_TRUE(outcome) << outcome.error().message();
  EXPECT_EQ(outcome.value().state, saga_state::compensated);
  EXPECT_EQ(outcome.value().detail, "aborted");
  EXPECT_EQ(w.balance("alice"), 100);
  EXPECT_EQ(o.stats().lost, 0u);
  EXPECT_EQ(o.stats().compensated, 1u);
  w.run(o.stop());
}

// ---- remote steps over memory::event_bus

namespace {

// A test participant on topic "accounts": applies "<key>:<delta>,..." under op id
// "<saga>/<step>" to the ledger once, reverts it on a compensation, and replies. Its faults
// say what happens to the replies. (The library's participant helper is saga/participant.hpp;
// this one is the test's, so faults can be injected between effect and reply.)
struct test_participant {
  world& w;
  bulwark::memory::event_bus& bus;
  int drop_replies = 0;                        // the next n replies are lost
  bool duplicate = false;                      // every reply is sent twice
  bool stale_first = false;                    // a reply for another (step, op) of the same saga goes first
  bulwark::clock::duration first_reply_late{}; // the first reply waits this long (a backlog)
  int handled = 0;

  task<void> handle(const bulwark::envelope& e) {
    auto c = saga::parse_command(e);
    if (!c) co_return c.error();
    ++handled;
    saga::reply r{c.value().saga_id, c.value().step, c.value().op, saga::reply_outcome::succeeded, ""};
    const auto op_id = c.value().saga_id + "/" + c.value().step;
    if (c.value().op == saga::op::action) {
      std::vector<adjustment> changes;
      std::string_view rest = c.value().payload;
      while (!rest.empty()) {
        auto comma = rest.find(',');
        auto item = rest.substr(0, comma);
        auto colon = item.find(':');
        changes.push_back({std::string(item.substr(0, colon)), std::stoll(std::string(item.substr(colon + 1)))});
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      }
      auto applied = w.ledger.apply_now(op_id, changes);
      if (!applied) {
        if (applied.error() != errc::declined) co_return applied.error();
        r.outcome = saga::reply_outcome::failed;
        r.payload = applied.error().message();
      }
    } else {
      auto reverted = w.ledger.revert_now(op_id);
      if (!reverted) co_return reverted.error();
    }
    if (drop_replies > 0) {
      --drop_replies;
      co_return bulwark::ok();
    }
    if (first_reply_late > bulwark::clock::duration::zero()) {
      const auto late = std::exchange(first_reply_late, bulwark::clock::duration::zero());
      co_await w.clock.wait_for(late);
    }
    if (stale_first) {
      auto stale = r;
      stale.op = r.op == saga::op::action ? saga::op::compensation : saga::op::action;
      auto sent = co_await bus.publish(c.value().reply_to, stale.to_message());
      if (!sent) co_return sent.error();
      stale.step = "other";
      stale.op = r.op;
      sent = co_await bus.publish(c.value().reply_to, stale.to_message());
      if (!sent) co_return sent.error();
    }
    for (int i = 0; i < (duplicate ? 2 : 1); ++i) {
      auto sent = co_await bus.publish(c.value().reply_to, r.to_message());
      if (!sent) co_return sent.error();
    }
    co_return bulwark::ok();
  }
};

saga::step<transfer> remote_ledger_step(std::string name, std::function<std::string(const transfer&)> payload) {
  auto s = saga::remote_step<transfer>(std::move(name), "accounts",
                                       [payload](const transfer& t, saga::op) { return payload(t); });
  s.timeout = 1s;
  s.retry.max_attempts = 3;
  s.retry.delays = bulwark::backoff{.initial = 10ms, .max = 10ms, .multiplier = 1.0, .jitter = false};
  return s;
}

transfer_saga remote_definition() {
  transfer_saga d("remote-transfer");
  d.add(remote_ledger_step("debit", [](const transfer& t) { return t.from + ":" + std::to_string(-t.value); }))
      .add(remote_ledger_step("fee", [](const transfer& t) { return t.from + ":-1,bank:1"; }))
      .add(remote_ledger_step("credit", [](const transfer& t) { return t.to + ":" + std::to_string(t.value); }));
  return d;
}

using remote_orchestrator = saga::orchestrator<transfer_saga, bulwark::memory::repository, bulwark::memory::event_bus>;

struct remote_world : world {
  bulwark::memory::event_bus bus{ctx.get_executor(), bulwark::memory::event_bus::options{.clock = clock}};
  test_participant participant{*this, bus};
  bulwark::memory::event_bus::subscription participant_subscription;

  void start_participant() {
    bulwark::subscribe_options o;
    o.topic = "accounts";
    o.group = "accounts";
    auto sub = run(bus.subscribe(o, [this](const bulwark::envelope& e) { return participant.handle(e); }));
    ASSERT_TRUE(sub);
    participant_subscription = std::move(sub).value();
  }
  ~remote_world() { run(bus.stop()); }
};

saga_state run_remote(remote_world& w, remote_orchestrator& o, transfer t) {
  const auto id = t.id;
  auto started = w.run(o.start(id, std::move(t)));
  EXPECT_TRUE(started.has_value());
  w.settle(1600); // 16 s: three attempts of 1, 2 and 4 s (each waits twice the one before) fit
  auto status = w.run(o.status(id));
  EXPECT_TRUE(status && status.value());
  return status.value()->state;
}

} // namespace

TEST(saga_remote, commands_and_replies_run_the_saga_and_a_refusal_compensates) {
  remote_world w;
  w.ledger.set_now("alice", 15).value();
  w.start_participant();
  remote_orchestrator o(w.ctx.get_executor(), remote_definition(), w.repo, w.bus, w.options());
  ASSERT_TRUE(w.run(o.recover()));
  EXPECT_EQ(run_remote(w, o, make_transfer("s1", 10)), saga_state::completed);
  EXPECT_EQ(w.balance("alice"), 4);
  EXPECT_EQ(w.balance("bob"), 10);
  // Only 4 left: the debit passes, the participant refuses the fee, the debit is reverted.
  EXPECT_EQ(run_remote(w, o, make_transfer("s2", 4)), saga_state::compensated);
  EXPECT_EQ(w.balance("alice"), 4);
  EXPECT_EQ(w.balance("bank"), 1);
  auto outcome = w.run(o.outcome("s2", w.clock.now() + 1s));
  ASSERT_TRUE(outcome);
  EXPECT_NE(outcome.value().detail.find("refused"), std::string::npos);
  w.run(o.stop());
}

TEST(saga_remote, duplicated_and_reordered_replies_are_dropped) {
  remote_world w;
  w.ledger.set_now("alice", 100).value();
  w.participant.duplicate = true;
  w.participant.stale_first = true;
  w.start_participant();
  remote_orchestrator o(w.ctx.get_executor(), remote_definition(), w.repo, w.bus, w.options());
  ASSERT_TRUE(w.run(o.recover()));
  EXPECT_EQ(run_remote(w, o, make_transfer("s", 10)), saga_state::completed);
  EXPECT_EQ(w.balance("alice"), 89);
  EXPECT_EQ(w.balance("bob"), 10);
  EXPECT_EQ(w.participant.handled, 3);
  EXPECT_EQ(o.stats().replies_dropped, 9u); // per step: two stale replies and one duplicate
  w.run(o.stop());
}

TEST(saga_remote, a_lost_reply_is_recovered_by_sending_the_command_again) {
  remote_world w;
  w.ledger.set_now("alice", 100).value();
  w.participant.drop_replies = 2; // the debit's first two replies are lost; its third attempt gets one
  w.start_participant();
  remote_orchestrator o(w.ctx.get_executor(), remote_definition(), w.repo, w.bus, w.options());
  ASSERT_TRUE(w.run(o.recover()));
  EXPECT_EQ(run_remote(w, o, make_transfer("s", 10)), saga_state::completed);
  EXPECT_EQ(w.participant.handled, 5); // the debit's command three times, applied once
  EXPECT_EQ(w.balance("alice"), 89);
  w.run(o.stop());
}

// A participant behind a backlog answers after the attempt's deadline, during the retry delay:
// the next attempt takes that reply instead of sending the command again (a resend would queue
// behind the same backlog and lengthen it).
TEST(saga_remote, a_reply_after_the_attempts_deadline_is_taken_by_the_next_attempt_without_a_resend) {
  remote_world w;
  w.ledger.set_now("alice", 100).value();
  w.participant.first_reply_late = 1500ms; // the debit's attempt waits 1 s, then 1 s of retry delay
  w.start_participant();
  auto def = remote_definition();
  transfer_saga slow("remote-transfer");
  for (auto s : def.steps()) {
    s.retry.delays = bulwark::backoff{.initial = 1s, .max = 1s, .multiplier = 1.0, .jitter = false};
    slow.add(std::move(s));
  }
  remote_orchestrator o(w.ctx.get_executor(), std::move(slow), w.repo, w.bus, w.options());
  ASSERT_TRUE(w.run(o.recover()));
  EXPECT_EQ(run_remote(w, o, make_transfer("s", 10)), saga_state::completed);
  EXPECT_EQ(w.participant.handled, 3); // one command per step: the debit's was not sent again
  EXPECT_EQ(o.stats().replies_dropped, 0u);
  EXPECT_EQ(w.balance("alice"), 89);
  w.run(o.stop());
}

// A step's attempt n waits timeout x 2^min(n, 3): with every reply lost, the commands go out at
// 0, 1 and 3 s (timeout 1 s, delays 10 ms), not once a second.
TEST(saga_remote, each_remote_attempt_waits_twice_as_long_as_the_one_before) {
  remote_world w;
  w.ledger.set_now("alice", 100).value();
  w.participant.drop_replies = 100;
  w.start_participant();
  remote_orchestrator o(w.ctx.get_executor(), remote_definition(), w.repo, w.bus, w.options());
  ASSERT_TRUE(w.run(o.recover()));
  ASSERT_TRUE(w.run(o.start("s", make_transfer("s", 10))));
  w.settle(280); // 2.8 s
  EXPECT_EQ(w.participant.handled, 2);
  w.settle(100); // 3.8 s
  EXPECT_EQ(w.participant.handled, 3);
  w.run(o.stop());
}

TEST(saga_remote, replies_lost_past_every_attempt_compensate_the_step_too) {
  remote_world w;
  w.ledger.set_now("alice", 100).value();
  w.participant.drop_replies = 3;
  w.start_participant();
  remote_orchestrator o(w.ctx.get_executor(), remote_definition(), w.repo, w.bus, w.options());
  ASSERT_TRUE(w.run(o.recover()));
  EXPECT_EQ(run_remote(w, o, make_transfer("s", 10)), saga_state::compensated);
  EXPECT_EQ(w.balance("alice"), 100); // the debit applied (its replies lost) and was reverted
  w.run(o.stop());
}

// ---- crashes and replicas

TEST(saga_recovery, a_crash_at_every_transition_ends_completed_or_compensated_with_no_effect_twice) {
  // Puts of a completed saga: its live index entry, create, debit done, fee done, credit done
  // (the final record), its ended index entry (6); of one refused at its credit: live entry,
  // create, debit, fee, compensating, fee undone, debit undone (final), ended entry (8). Fail
  // each put in turn, then resume on a fresh orchestrator.
  for (int fail_at : {-1, 2}) {
    for (std::size_t nth = 1; nth <= 10; ++nth) {
      SCOPED_TRACE("fail_at " + std::to_string(fail_at) + ", put " + std::to_string(nth));
      world w;
      w.ledger.set_now("alice", 100).value();
      bulwark::testing::faulty_repository<bulwark::memory::repository> faulty(w.repo, w.clock);
      faulty.faults().fail_nth(bulwark::testing::op::put, nth, errc::unavailable);
      auto t = make_transfer("s");
      t.fail_at = fail_at;
      {
        saga::orchestrator<transfer_saga, decltype(faulty)> first(w.ctx.get_executor(), transfer_definition(w), faulty,
                                                                  w.options());
        auto started = w.run(first.start("s", t));
        w.settle(50);
        EXPECT_EQ(started.has_value(), nth > 2); // put 1: the live index entry, put 2: the record
        w.run(first.stop());
      }
      local_orchestrator second(w.ctx.get_executor(), transfer_definition(w), w.repo, w.options());
      ASSERT_TRUE(w.run(second.recover()));
      auto again = w.run(second.start("s", t)); // the client asks again: idempotent
      ASSERT_TRUE(again);
      w.settle(100);
      auto outcome = w.run(second.outcome("s", w.clock.now() + 1s));
      ASSERT_TRUE(outcome) << outcome.error().message();
      if (fail_at < 0) {
        EXPECT_EQ(outcome.value().state, saga_state::completed);
        EXPECT_EQ(w.balance("alice"), 89);
        EXPECT_EQ(w.balance("bob"), 10);
        EXPECT_EQ(w.balance("bank"), 1);
      } else {
        EXPECT_EQ(outcome.value().state, saga_state::compensated);
        EXPECT_EQ(w.balance("alice"), 100);
        EXPECT_EQ(w.balance("bank"), 0);
      }
      w.run(second.stop());
    }
  }
}

TEST(saga_recovery, a_remote_saga_resumes_on_a_fresh_orchestrator_and_resends_its_command) {
  remote_world w;
  w.ledger.set_now("alice", 100).value();
  w.participant.drop_replies = 1; // the first replica never hears back from the debit
  w.start_participant();
  {
    remote_orchestrator first(w.ctx.get_executor(), remote_definition(), w.repo, w.bus, w.options());
    ASSERT_TRUE(w.run(first.recover()));
    ASSERT_TRUE(w.run(first.start("s", make_transfer("s"))));
    w.poll();
    w.run(first.stop()); // "crashes" while waiting for the reply
  }
  EXPECT_EQ(w.balance("alice"), 90);
  remote_orchestrator second(w.ctx.get_executor(), remote_definition(), w.repo, w.bus, w.options());
  EXPECT_EQ(w.run(second.recover()).value(), 1u);
  w.settle(100);
  EXPECT_EQ(w.run(second.status("s")).value()->state, saga_state::completed);
  EXPECT_EQ(w.balance("alice"), 89);
  EXPECT_EQ(w.balance("bob"), 10);
  w.run(second.stop());
}

TEST(saga_recovery, two_replicas_when_one_stops_the_other_finishes_its_sagas_within_the_lease) {
  world w;
  w.ledger.set_now("alice", 1000).value();
  auto opts_a = w.options("a");
  auto opts_b = w.options("b");
  opts_a.lease = opts_b.lease = 30s;
  opts_a.sweep_interval = opts_b.sweep_interval = 5s;
  auto slow = transfer_definition(w);
  local_orchestrator a(w.ctx.get_executor(), slow, w.repo, opts_a);
  local_orchestrator b(w.ctx.get_executor(), slow, w.repo, opts_b);
  ASSERT_TRUE(w.run(a.recover()));
  ASSERT_TRUE(w.run(b.recover()));
  for (int i = 0; i < 5; ++i) {
    auto t = make_transfer("s" + std::to_string(i));
    t.hang_at = 1; // each waits in its fee step (1 s) when a stops
    ASSERT_TRUE(w.run(a.start(t.id, t)));
  }
  w.poll();
  w.run(a.stop());
  EXPECT_EQ(b.stats().taken_over, 0u); // a's leases still hold
  // Within the lease (30 s + the fee step's 1 s) plus one sweep interval, b has taken them all.
  for (int i = 0; i < 37 * 10; ++i) {
    w.poll();
    w.advance(100ms);
  }
  w.settle(200);
  EXPECT_EQ(b.stats().taken_over, 5u);
  for (int i = 0; i < 5; ++i) {
    auto s = w.run(b.status("s" + std::to_string(i)));
    ASSERT_TRUE(s && s.value());
    // hang_at is in the context: b's fee step runs past its deadline too, so each compensates.
    EXPECT_EQ(s.value()->state, saga_state::compensated);
  }
  EXPECT_EQ(w.balance("alice"), 1000);
  w.run(b.stop());
}

TEST(saga_recovery, a_replica_that_lost_its_lease_lets_go) {
  world w;
  w.ledger.set_now("alice", 100).value();
  auto opts_a = w.options("a");
  opts_a.lease = 1s;
  opts_a.renew_interval = 1h; // a hangs: its renewals do not get through
  auto opts_b = w.options("b");
  local_orchestrator a(w.ctx.get_executor(), transfer_definition(w), w.repo, opts_a);
  local_orchestrator b(w.ctx.get_executor(), transfer_definition(w), w.repo, opts_b);
  auto t = make_transfer("s");
  t.hang_at = 2; // the credit ignores its deadline: a waits 5 s in it
  t.ignore_deadline = true;
  ASSERT_TRUE(w.run(a.start("s", t)));
  w.poll();
  w.advance(2500ms); // a's lease (1 s + the 1 s step) has run out while it still waits
  EXPECT_EQ(w.run(b.sweep()).value(), 1u);
  w.settle(1000);
  EXPECT_EQ(a.stats().lost, 1u);
  EXPECT_EQ(w.run(b.status("s")).value()->state, saga_state::compensated);
  EXPECT_EQ(w.balance("alice"), 100);
  w.run(a.stop());
  w.run(b.stop());
}

// A step that runs far past the lease (5 s against 1 s): the driving replica renews the lease
// while it waits, so the other replica's sweeps (every 0.5 s) never take the saga over.
TEST(saga_recovery, a_lease_is_renewed_while_a_step_runs_longer_than_it) {
  world w;
  w.ledger.set_now("alice", 100).value();
  auto opts_a = w.options("a");
  auto opts_b = w.options("b");
  opts_a.lease = opts_b.lease = 1s; // renewed every 1/3 s when less than 0.5 s is left
  opts_a.sweep_interval = opts_b.sweep_interval = 500ms;
  local_orchestrator a(w.ctx.get_executor(), transfer_definition(w), w.repo, opts_a);
  local_orchestrator b(w.ctx.get_executor(), transfer_definition(w), w.repo, opts_b);
  ASSERT_TRUE(w.run(b.recover()));
  auto t = make_transfer("s");
  t.hang_at = 2; // the credit ignores its 1 s deadline: a waits 5 s in it
  t.ignore_deadline = true;
  ASSERT_TRUE(w.run(a.start("s", t)));
  for (int i = 0; i < 48; ++i) { // 4.8 s, in steps of 0.1 s: still in the credit step
    w.poll();
    w.advance(100ms);
    auto record = w.repo.get_now(a.key_prefix() + "s").value();
    ASSERT_TRUE(record);
    const auto log = saga::log_codec::decode(record->value).value();
    ASSERT_EQ(log.lease_owner, "a") << "at " << (i + 1) * 100 << " ms";
    ASSERT_GT(log.lease_expiry, w.wall.now()) << "at " << (i + 1) * 100 << " ms";
  }
  EXPECT_EQ(b.stats().taken_over, 0u);
  EXPECT_GE(a.stats().renewed, 3u);
  w.settle(100);
  EXPECT_EQ(w.run(a.status("s")).value()->state, saga_state::compensated); // the credit timed out
  EXPECT_EQ(b.stats().taken_over, 0u);
  EXPECT_EQ(a.stats().lost, 0u);
  EXPECT_EQ(w.balance("alice"), 100);
  EXPECT_EQ(std::count(w.journal.begin(), w.journal.end(), "do:s:credit"), 1); // run once, by a
  w.run(a.stop());
  w.run(b.stop());
}

// outcome() on a replica that does not drive the saga reads the log after 20 ms, then twice as
// long each time up to poll_interval (1 s): a saga that ends after 5 s is seen within the
// second after, at the cost of about a dozen reads, not one every 20 ms.
TEST(saga_recovery, outcome_of_a_saga_another_replica_drives_polls_with_a_back_off) {
  world w;
  w.ledger.set_now("alice", 100).value();
  bulwark::testing::faulty_repository<bulwark::memory::repository> counted(w.repo, w.clock);
  local_orchestrator a(w.ctx.get_executor(), transfer_definition(w), w.repo, w.options("a"));
  saga::orchestrator<transfer_saga, decltype(counted)> b(w.ctx.get_executor(), transfer_definition(w), counted,
                                                         w.options("b"));
  auto t = make_transfer("s");
  t.hang_at = 1; // the fee ignores its 1 s deadline: the saga compensates after 5 s
  t.ignore_deadline = true;
  ASSERT_TRUE(w.run(a.start("s", t)));
  std::optional<bulwark::result<saga::saga_outcome<transfer>>> got;
  bulwark::test::spawn_into(w.ctx, b.outcome("s", w.clock.now() + 30s), &got);
  w.poll();
  EXPECT_EQ(counted.faults().calls(bulwark::testing::op::get), 1u);
  w.advance(20ms);
  w.poll();
  EXPECT_EQ(counted.faults().calls(bulwark::testing::op::get), 2u); // the first poll, 20 ms on
  const auto t0 = w.clock.now() - 20ms;
  std::optional<bulwark::clock::duration> seen_after;
  for (int i = 0; i < 800 && !got; ++i) { // at most 8 s, in steps of 10 ms
    w.advance(10ms);
    w.poll();
    if (got) seen_after = w.clock.now() - t0;
  }
  ASSERT_TRUE(got.has_value());
  ASSERT_TRUE(*got) << got->error().message();
  EXPECT_EQ(got->value().state, saga_state::compensated);
  ASSERT_TRUE(seen_after);
  EXPECT_GT(*seen_after, 5s);
  EXPECT_LE(*seen_after, 6s + 20ms); // within one poll_interval of the end
  // 0, 20, 60, 140, 300, 620 ms, 1.26 s, then once a second: 11 reads by 5.26 s.
  EXPECT_GE(counted.faults().calls(bulwark::testing::op::get), 9u);
  EXPECT_LE(counted.faults().calls(bulwark::testing::op::get), 12u);
  w.run(a.stop());
  w.run(b.stop());
}

// ---- the property test

TEST(saga_property, random_interleavings_of_concurrent_sagas_keep_the_ledger_invariants) {
  constexpr int accounts = 8;
  constexpr amount initial = 100;
  for (std::uint32_t seed = 1; seed <= 5; ++seed) {
    SCOPED_TRACE(seed);
    world w;
    std::mt19937 rng(seed);
    for (int i = 0; i < accounts; ++i) w.ledger.set_now("acct" + std::to_string(i), initial).value();
    // debit, an audit that may refuse, credit: a compensation only ever gives a debit back.
    transfer_saga d("moves");
    d.add(ledger_step(w, "debit", 0,
                      [](const transfer& t) {
                        return std::vector<adjustment>{{t.from, -t.value}};
                      }))
        .add(ledger_step(w, "audit", 1,
                         [](const transfer&) {
                           return std::vector<adjustment>{{"audits", 1}};
                         }))
        .add(ledger_step(w, "credit", 2, [](const transfer& t) {
          return std::vector<adjustment>{{t.to, t.value}};
        }));
    local_orchestrator o(w.ctx.get_executor(), d, w.repo, w.options());
    std::map<std::string, transfer> sagas;
    std::uniform_int_distribution<int> pick(0, accounts - 1), value(1, 60), yields(0, 3), coin(0, 4);
    for (int i = 0; i < 200; ++i) {
      transfer t{"m" + std::to_string(i), "acct" + std::to_string(pick(rng)), "acct" + std::to_string(pick(rng)),
                 value(rng)};
      t.yields = yields(rng);
      if (coin(rng) == 0) t.fail_at = 1;
      sagas.emplace(t.id, t);
      auto started = w.run(o.start(t.id, t));
      ASSERT_TRUE(started && started.value().created);
      for (int k = yields(rng); k > 0; --k) w.ctx.poll_one(); // let some run before the next start
    }
    w.settle(100);
    amount sum = 0;
    std::map<std::string, amount> expected;
    for (int i = 0; i < accounts; ++i) expected["acct" + std::to_string(i)] = initial;
    for (const auto& [id, t] : sagas) {
      auto s = w.run(o.status(id));
      ASSERT_TRUE(s && s.value()) << id;
      const auto state = s.value()->state;
      ASSERT_TRUE(state == saga_state::completed || state == saga_state::compensated) << id << to_string(state);
      if (state == saga_state::completed) {
        expected[t.from] -= t.value;
        expected[t.to] += t.value;
      }
    }
    for (int i = 0; i < accounts; ++i) {
      const auto key = "acct" + std::to_string(i);
      EXPECT_GE(w.balance(key), 0) << key;
      EXPECT_EQ(w.balance(key), expected[key]) << key;
      sum += w.balance(key);
    }
    EXPECT_EQ(sum, accounts * initial);
    const auto stats = o.stats();
    EXPECT_EQ(stats.completed + stats.compensated, 200u);
    EXPECT_GT(stats.compensated, 0u); // refusals and insufficient balances did happen
    EXPECT_GT(stats.completed, 0u);
    w.run(o.stop());
  }
}
