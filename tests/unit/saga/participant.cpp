// saga::participant on the memory bus, repository and ledger, time on manual clocks (no sleeps):
// each (saga id, step, op) applied once, duplicates answered from the record, tombstones,
// business refusals as "failed" replies, crashes between effect, record and reply, malformed
// commands dead-lettered, and the retention purge.
#include <bulwark/saga/participant.hpp>

#include <bulwark/clock.hpp>
#include <bulwark/manual_clock.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/ledger.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/testing/faults.hpp>

#include "support/keys.hpp"
#include "support/run.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using bulwark::adjustment;
using bulwark::errc;
using bulwark::error;
using bulwark::message;
using bulwark::task;
using bulwark::saga::command;
using bulwark::saga::op;
using bulwark::saga::reply;
using bulwark::saga::reply_outcome;
using bulwark::saga::step_command;
using bulwark::saga::step_result;
using bulwark::testing::faulty_bus;
using bulwark::testing::faulty_repository;

namespace {

using test_ledger = bulwark::memory::basic_ledger<bulwark::manual_clock>;
using store_type = faulty_repository<bulwark::memory::repository>;
using bus_type = faulty_bus<bulwark::memory::event_bus>;
using participant_type = bulwark::saga::participant<bus_type, store_type, bulwark::manual_clock>;

constexpr const char* commands_topic = "stock.commands";
constexpr const char* replies_topic = "orchestrator.replies";

// A stock participant: step "reserve" takes `payload` units of stock:apple through the ledger,
// its compensation gives them back. The handlers count their calls, and fail with
// errc::unavailable while `ledger_down` is set (an infrastructure error).
struct fixture {
  asio::io_context ctx;
  bulwark::clock clk = bulwark::clock::manual();
  bulwark::manual_clock wall{};
  bulwark::memory::event_bus memory_bus{ctx.get_executor(), {.partitions = 2, .drain_timeout = 1s, .clock = clk}};
  bus_type bus{memory_bus, clk};
  bulwark::memory::repository memory_store;
  store_type store{memory_store, clk};
  test_ledger ledger{test_ledger::options{}, wall};
  std::shared_ptr<bulwark::metrics::registry> registry = std::make_shared<bulwark::metrics::registry>();
  std::unique_ptr<participant_type> participant;

  std::atomic<int> action_calls{0};
  std::atomic<int> compensation_calls{0};
  std::atomic<bool> ledger_down{false};
  std::vector<bulwark::apply_outcome> applied;
  std::vector<bulwark::revert_outcome> reverted;

  std::mutex replies_mutex;
  std::vector<reply> replies;
  std::optional<bulwark::memory::event_bus::subscription> reply_reader;

  bulwark::saga::participant_options options() {
    bulwark::saga::participant_options o;
    o.topic = commands_topic;
    o.group = "stock";
    o.retry = {.delays = {10ms, 100ms, 2.0, false}, .max_attempts = 10};
    o.key_prefix = "participant/stock/";
    o.retention = 1h;
    o.metrics = registry;
    o.name = "stock";
    return o;
  }

  void start(bulwark::saga::participant_options o) {
    ASSERT_TRUE(ledger.set_now("stock:apple", 10).has_value());
    participant = std::make_unique<participant_type>(bus, store, std::move(o), wall);
    participant->add_step("reserve", {.action = [this](const step_command& c) { return reserve(c); },
                                      .compensation = [this](const step_command& c) { return release(c); }});
    ASSERT_TRUE(bulwark::test::run(ctx, participant->start()).has_value());
    auto reading = bulwark::test::run(ctx, memory_bus.subscribe({.topic = replies_topic, .group = "orchestrator"},
                                                                [this](const bulwark::envelope& e) -> task<void> {
                                                                  auto r = bulwark::saga::parse_reply(e);
                                                                  if (!r) co_return r.error();
                                                                  std::lock_guard lock(replies_mutex);
                                                                  replies.push_back(std::move(r).value());
                                                                  co_return bulwark::ok();
                                                                }));
    ASSERT_TRUE(reading.has_value());
    reply_reader.emplace(std::move(reading).value());
  }
  void start() { start(options()); }

  task<step_result> reserve(const step_command& c) {
    ++action_calls;
    if (ledger_down) co_return error(errc::unavailable, "ledger down");
    const std::vector<adjustment> take = {{"stock:apple", -std::stoll(std::string(c.payload))}};
    auto applying = ledger.apply(c.op_id, take);
    BOOST_OUTCOME_CO_TRY(outcome, co_await std::move(applying)); // declined: a "failed" reply
    applied.push_back(outcome);
    co_return step_result::succeeded("reserved " + std::string(c.payload));
  }
  task<step_result> release(const step_command& c) {
    ++compensation_calls;
    if (ledger_down) co_return error(errc::unavailable, "ledger down");
    auto reverting = ledger.revert(c.op_id);
    BOOST_OUTCOME_CO_TRY(outcome, co_await std::move(reverting));
    reverted.push_back(outcome);
    co_return step_result::succeeded("released");
  }

  void send(const std::string& saga_id, op o, std::string payload = "3") {
    command c{saga_id, "reserve", o, replies_topic, std::move(payload)};
    send_raw(c.to_message());
  }
  // Every command published before the participant runs again: they wait in their partitions
  // together, so the participant takes them as batches.
  void send_together(const std::vector<command>& commands) {
    auto publish_all = [](bulwark::memory::event_bus& b, std::vector<command> cs) -> task<void> {
      for (const auto& c : cs) {
        auto published = co_await b.publish(commands_topic, c.to_message());
        if (!published) co_return published.error();
      }
      co_return bulwark::ok();
    };
    ASSERT_TRUE(bulwark::test::run(ctx, publish_all(memory_bus, commands)).has_value());
  }
  // `n` saga ids whose commands share one partition (so one batch can hold them all).
  std::vector<std::string> sagas_on_one_partition(int n) {
    std::vector<std::string> ids;
    for (int i = 0; static_cast<int>(ids.size()) < n; ++i) {
      auto id = bulwark::test::numbered_key("batch-saga-", i);
      if (memory_bus.partition_of(id) == 0) ids.push_back(id);
    }
    return ids;
  }
  // An action of step "reserve" taking one unit for each saga id.
  static std::vector<command> actions_of(const std::vector<std::string>& ids) {
    std::vector<command> out;
    for (const auto& id : ids) out.push_back({id, "reserve", op::action, replies_topic, "1"});
    return out;
  }
  // The first reply of each saga; every later reply of that saga must carry the same payload.
  std::map<std::string, reply> first_replies_all_alike() {
    std::map<std::string, reply> first;
    for (const auto& r : replies_now()) {
      auto [it, fresh] = first.emplace(r.saga_id, r);
      if (!fresh) {
        EXPECT_EQ(r.payload, it->second.payload) << r.saga_id;
      }
    }
    return first;
  }
  // Straight to the memory bus: the fault plan of `bus` is for the participant's replies.
  void send_raw(message m) {
    ASSERT_TRUE(bulwark::test::run(ctx, memory_bus.publish(commands_topic, std::move(m))).has_value());
  }

  // Runs what is ready, and moves the manual clock 10 ms at a time (bus retry backoff) until
  // `done` holds; false after 2000 steps (20 s of manual time).
  bool drive_until(const std::function<bool()>& done) {
    for (int i = 0; i < 2000; ++i) {
      for (int j = 0; j < 5; ++j) {
        if (ctx.stopped()) ctx.restart();
        ctx.poll();
      }
      if (done()) return true;
      clk.advance(10ms);
    }
    return done();
  }

  std::size_t reply_count() {
    std::lock_guard lock(replies_mutex);
    return replies.size();
  }
  std::vector<reply> replies_now() {
    std::lock_guard lock(replies_mutex);
    return replies;
  }
  std::int64_t committed() {
    std::int64_t n = 0;
    for (int p = 0; p < 2; ++p) n += memory_bus.committed(commands_topic, "stock", p).value_or(0);
    return n;
  }
  std::int64_t dead_lettered() {
    return memory_bus.end_offset(std::string(commands_topic) + ".dlq", 0) +
           memory_bus.end_offset(std::string(commands_topic) + ".dlq", 1);
  }
  bulwark::amount stock() { return ledger.get_now("stock:apple").value().value_or(-1); }
  std::size_t stored_keys(const std::string& infix) {
    return memory_store.scan_now("participant/stock/" + infix, "", 100000).value().entries.size();
  }
  double counter(const std::string& name, std::vector<std::string_view> labels, std::vector<std::string> names) {
    return registry->counter_family(name, "", std::move(names)).labels(labels).value();
  }

  void stop() {
    if (participant) bulwark::test::run(ctx, participant->stop());
    if (reply_reader) bulwark::test::run(ctx, reply_reader->stop());
  }
};

} // namespace

TEST(saga_participant, applies_an_action_once_and_replies) {
  fixture f;
  f.start();
  f.send("saga-1", op::action);
  ASSERT_TRUE(f.drive_until([&] { return f.reply_count() == 1 && f.committed() == 1; }));
  const auto r = f.replies_now().at(0);
  EXPECT_EQ(r.saga_id, "saga-1");
  EXPECT_EQ(r.step, "reserve");
  EXPECT_EQ(r.op, op::action);
  EXPECT_EQ(r.outcome, reply_outcome::succeeded);
  EXPECT_EQ(r.payload, "reserved 3");
  EXPECT_EQ(f.stock(), 7);
  EXPECT_EQ(f.action_calls, 1);
  auto recorded = bulwark::test::run(f.ctx, f.participant->recorded_reply("saga-1", "reserve", op::action));
  ASSERT_TRUE(recorded.has_value() && recorded.value());
  EXPECT_EQ(recorded.value()->payload, "reserved 3");
  EXPECT_EQ(f.participant->stats().handled, 1u);
  EXPECT_EQ(f.counter("bulwark_participant_commands_total", {"stock", "action", "succeeded"},
                      {"participant", "op", "outcome"}),
            1.0);
  f.stop();
}

TEST(saga_participant, a_duplicate_command_gets_the_same_reply_and_no_second_effect) {
  fixture f;
  f.start();
  f.send("saga-1", op::action);
  f.send("saga-1", op::action);
  ASSERT_TRUE(f.drive_until([&] { return f.reply_count() == 2 && f.committed() == 2; }));
  const auto rs = f.replies_now();
  EXPECT_EQ(rs[0].payload, "reserved 3");
  EXPECT_EQ(rs[1].payload, rs[0].payload);
  EXPECT_EQ(rs[1].outcome, rs[0].outcome);
  EXPECT_EQ(f.stock(), 7) << "the duplicate took stock again";
  EXPECT_EQ(f.action_calls, 1) << "the duplicate ran the handler";
  EXPECT_EQ(f.participant->stats().duplicates, 1u);
  EXPECT_EQ(f.counter("bulwark_participant_duplicates_total", {"stock", "action"}, {"participant", "op"}), 1.0);
  f.stop();
}

TEST(saga_participant, a_compensation_before_its_action_leaves_a_tombstone_and_the_late_action_is_refused) {
  fixture f;
  f.start();
  f.send("saga-1", op::compensation);
  f.send("saga-1", op::action); // same key, same partition: delivered after the compensation
  ASSERT_TRUE(f.drive_until([&] { return f.reply_count() == 2 && f.committed() == 2; }));
  const auto rs = f.replies_now();
  EXPECT_EQ(rs[0].op, op::compensation);
  EXPECT_EQ(rs[0].outcome, reply_outcome::succeeded);
  EXPECT_EQ(rs[1].op, op::action);
  EXPECT_EQ(rs[1].outcome, reply_outcome::failed);
  EXPECT_NE(rs[1].payload.find("compensation"), std::string::npos) << rs[1].payload;
  EXPECT_EQ(f.action_calls, 0) << "the late action was run";
  EXPECT_EQ(f.stock(), 10);
  ASSERT_EQ(f.reverted.size(), 1u);
  EXPECT_EQ(f.reverted[0], bulwark::revert_outcome::tombstoned) << "the compensation reached the ledger first";
  EXPECT_EQ(f.participant->stats().tombstones, 1u);
  EXPECT_EQ(f.participant->stats().late_actions_refused, 1u);
  EXPECT_EQ(f.counter("bulwark_participant_tombstones_total", {"stock"}, {"participant"}), 1.0);
  EXPECT_EQ(f.counter("bulwark_participant_late_actions_refused_total", {"stock"}, {"participant"}), 1.0);
  EXPECT_EQ(
      f.counter("bulwark_participant_commands_total", {"stock", "action", "failed"}, {"participant", "op", "outcome"}),
      1.0);
  // The refusal is recorded too: the late action's duplicate gets the same "failed".
  f.send("saga-1", op::action);
  ASSERT_TRUE(f.drive_until([&] { return f.reply_count() == 3; }));
  EXPECT_EQ(f.replies_now()[2].outcome, reply_outcome::failed);
  EXPECT_EQ(f.replies_now()[2].payload, rs[1].payload);
  EXPECT_EQ(f.action_calls, 0);
  f.stop();
}

TEST(saga_participant, reordered_and_redelivered_commands_of_many_sagas_apply_each_op_once) {
  fixture f;
  f.start();
  // Interleaved sagas; every command sent twice, some compensations before their actions.
  for (int round = 0; round < 2; ++round) {
    for (int s = 0; s < 4; ++s) f.send(bulwark::test::numbered_key("saga-", s), op::action, "1");
    f.send("saga-5", op::compensation, "1");
    for (int s = 0; s < 2; ++s) f.send(bulwark::test::numbered_key("saga-", s), op::compensation, "1");
    f.send("saga-5", op::action, "1");
  }
  ASSERT_TRUE(f.drive_until([&] { return f.reply_count() == 16 && f.committed() == 16; }));
  EXPECT_EQ(f.action_calls, 4) << "saga-0..3 once each; saga-5's action is refused";
  EXPECT_EQ(f.compensation_calls, 3) << "saga-0, saga-1 and saga-5 once each";
  EXPECT_EQ(f.stock(), 10 - 4 + 2) << "saga-2 and saga-3 keep their unit";
  EXPECT_EQ(f.participant->stats().duplicates, 8u);
  // Every duplicate reply equals the first one for its (saga, op).
  std::map<std::pair<std::string, op>, reply> first;
  for (const auto& r : f.replies_now()) {
    auto [it, fresh] = first.emplace(std::make_pair(r.saga_id, r.op), r);
    if (!fresh) {
      EXPECT_EQ(r.outcome, it->second.outcome) << r.saga_id;
      EXPECT_EQ(r.payload, it->second.payload) << r.saga_id;
    }
  }
  EXPECT_EQ(first.at({"saga-5", op::action}).outcome, reply_outcome::failed);
  f.stop();
}

TEST(saga_participant, a_business_refusal_replies_failed_and_commits_without_dead_lettering) {
  fixture f;
  f.start();
  f.send("saga-1", op::action, "11"); // 10 in stock
  ASSERT_TRUE(f.drive_until([&] { return f.reply_count() == 1 && f.committed() == 1; }));
  const auto r = f.replies_now().at(0);
  EXPECT_EQ(r.outcome, reply_outcome::failed);
  EXPECT_NE(r.payload.find("stock:apple"), std::string::npos) << "the refusal names the key: " << r.payload;
  EXPECT_EQ(f.dead_lettered(), 0);
  EXPECT_EQ(f.action_calls, 1) << "a refusal is not retried";
  EXPECT_EQ(f.stock(), 10);
  EXPECT_EQ(f.participant->stats().failed_replies, 1u);
  f.stop();
}

TEST(saga_participant, a_step_result_failed_is_a_failed_reply) {
  fixture f;
  auto o = f.options();
  f.participant = std::make_unique<participant_type>(f.bus, f.store, o, f.wall);
  f.participant->add_step("pay", {.action = [](const step_command&) -> task<step_result> {
                            co_return step_result::failed("card declined");
                          }});
  ASSERT_TRUE(bulwark::test::run(f.ctx, f.participant->start()).has_value());
  command c{"saga-9", "pay", op::action, replies_topic, "{}"};
  f.send_raw(c.to_message());
  ASSERT_TRUE(f.drive_until([&] { return f.committed() == 1; }));
  EXPECT_EQ(f.dead_lettered(), 0);
  auto recorded = bulwark::test::run(f.ctx, f.participant->recorded_reply("saga-9", "pay", op::action));
  ASSERT_TRUE(recorded.has_value() && recorded.value());
  EXPECT_EQ(recorded.value()->outcome, reply_outcome::failed);
  EXPECT_EQ(recorded.value()->payload, "card declined");
  // A compensation for a step without one: "succeeded", nothing to undo.
  command comp{"saga-9", "pay", op::compensation, replies_topic, "{}"};
  f.send_raw(comp.to_message());
  ASSERT_TRUE(f.drive_until([&] { return f.committed() == 2; }));
  recorded = bulwark::test::run(f.ctx, f.participant->recorded_reply("saga-9", "pay", op::compensation));
  ASSERT_TRUE(recorded.has_value() && recorded.value());
  EXPECT_EQ(recorded.value()->outcome, reply_outcome::succeeded);
  f.stop();
}

TEST(saga_participant, a_crash_between_the_effect_and_the_stored_reply_re_applies_nothing_on_redelivery) {
  fixture f;
  f.start();
  // A new step's first command puts its index entry, then its record: the record's put fails,
  // after the ledger took the stock (the participant "crashed" there).
  f.store.faults().fail_nth(bulwark::testing::op::put, 2, error(errc::unavailable, "store down"));
  f.send("saga-1", op::action);
  ASSERT_TRUE(f.drive_until([&] { return f.reply_count() == 1 && f.committed() == 1; }));
  EXPECT_EQ(f.store.faults().injected(bulwark::testing::op::put), 1u) << "the fault was not hit";
  EXPECT_EQ(f.action_calls, 2) << "the redelivery runs the handler again";
  ASSERT_EQ(f.applied.size(), 2u);
  EXPECT_EQ(f.applied[0], bulwark::apply_outcome::applied);
  EXPECT_EQ(f.applied[1], bulwark::apply_outcome::already_applied) << "the op id made the second apply a no-op";
  EXPECT_EQ(f.stock(), 7);
  EXPECT_EQ(f.replies_now().at(0).outcome, reply_outcome::succeeded);
  EXPECT_EQ(f.dead_lettered(), 0);
  f.stop();
}

TEST(saga_participant, a_crash_between_the_stored_reply_and_its_publish_answers_from_the_record) {
  fixture f;
  f.start();
  f.bus.faults().fail_nth(bulwark::testing::op::publish, 1, error(errc::unavailable, "broker down"));
  f.send("saga-1", op::action);
  ASSERT_TRUE(f.drive_until([&] { return f.reply_count() == 1 && f.committed() == 1; }));
  EXPECT_EQ(f.bus.faults().injected(bulwark::testing::op::publish), 1u);
  EXPECT_EQ(f.action_calls, 1) << "the redelivery was answered from the record";
  EXPECT_EQ(f.stock(), 7);
  EXPECT_EQ(f.participant->stats().duplicates, 1u);
  f.stop();
}

TEST(saga_participant, an_infrastructure_error_is_retried_by_the_bus_not_replied) {
  fixture f;
  f.start();
  f.ledger_down = true;
  f.send("saga-1", op::action);
  ASSERT_TRUE(f.drive_until([&] { return f.action_calls >= 3; }));
  EXPECT_EQ(f.reply_count(), 0u) << "an outage is not a business answer";
  EXPECT_EQ(f.committed(), 0);
  f.ledger_down = false;
  ASSERT_TRUE(f.drive_until([&] { return f.reply_count() == 1 && f.committed() == 1; }));
  EXPECT_EQ(f.replies_now()[0].outcome, reply_outcome::succeeded);
  EXPECT_EQ(f.stock(), 7);
  EXPECT_EQ(f.dead_lettered(), 0);
  f.stop();
}

TEST(saga_participant, malformed_commands_and_unknown_steps_are_dead_lettered_at_once) {
  fixture f;
  f.start();
  message no_op{"saga-1", "3", {{"bulwark-saga-id", "saga-1"}, {"bulwark-saga-step", "reserve"}}};
  f.send_raw(no_op);
  message bad_op = command{"saga-2", "reserve", op::action, replies_topic, "3"}.to_message();
  for (auto& h : bad_op.headers)
    if (h.name == "bulwark-saga-op") h.value = "undo";
  f.send_raw(bad_op);
  f.send_raw(command{"saga-3", "ship", op::action, replies_topic, "3"}.to_message());
  ASSERT_TRUE(f.drive_until([&] { return f.committed() == 3 && f.dead_lettered() == 3; }));
  EXPECT_EQ(f.reply_count(), 0u);
  EXPECT_EQ(f.action_calls, 0);
  EXPECT_EQ(f.participant->stats().malformed, 3u);
  EXPECT_EQ(f.counter("bulwark_participant_malformed_total", {"stock"}, {"participant"}), 3.0);
  // Each went to the dead-letter topic on its first attempt, with its reason.
  std::vector<std::string> reasons;
  auto reader = bulwark::test::run(
      f.ctx, f.memory_bus.subscribe({.topic = std::string(commands_topic) + ".dlq", .group = "inspect"},
                                    [&](const bulwark::envelope& e) -> task<void> {
                                      reasons.emplace_back(e.find_header(bulwark::dead_letter_error).value_or(""));
                                      EXPECT_EQ(e.find_header(bulwark::dead_letter_attempts).value_or(""), "1");
                                      co_return bulwark::ok();
                                    }));
  ASSERT_TRUE(reader.has_value());
  ASSERT_TRUE(f.drive_until([&] { return reasons.size() == 3; }));
  std::string all;
  for (const auto& r : reasons) all += r + "\n";
  EXPECT_NE(all.find("bulwark-saga-op"), std::string::npos) << all;
  EXPECT_NE(all.find("\"undo\""), std::string::npos) << all;
  EXPECT_NE(all.find("\"ship\""), std::string::npos) << all;
  bulwark::test::run(f.ctx, reader.value().stop());
  f.stop();
}

// A record it cannot read is not an outage that a retry outlasts: the command is dead-lettered
// on its first attempt with the key in the reason, nothing is run, and the record stays as found.
TEST(saga_participant, a_command_whose_record_is_unreadable_is_dead_lettered_at_once) {
  fixture f;
  f.start();
  const std::string key = "participant/stock/r/saga-7/reserve";
  ASSERT_TRUE(f.memory_store.put_now(key, "not a record", bulwark::no_version).has_value());
  f.send("saga-7", op::action);
  ASSERT_TRUE(f.drive_until([&] { return f.committed() == 1 && f.dead_lettered() == 1; }));
  EXPECT_EQ(f.reply_count(), 0u);
  EXPECT_EQ(f.action_calls, 0);
  EXPECT_EQ(f.stock(), 10);
  EXPECT_EQ(f.participant->stats().unreadable_records, 1u);
  EXPECT_EQ(f.participant->stats().malformed, 0u);
  EXPECT_EQ(f.counter("bulwark_participant_unreadable_records_total", {"stock"}, {"participant"}), 1.0);
  EXPECT_EQ(f.memory_store.get_now(key).value().value().value, "not a record");
  std::string reason;
  auto reader = bulwark::test::run(
      f.ctx, f.memory_bus.subscribe({.topic = std::string(commands_topic) + ".dlq", .group = "inspect"},
                                    [&](const bulwark::envelope& e) -> task<void> {
                                      reason = e.find_header(bulwark::dead_letter_error).value_or("");
                                      EXPECT_EQ(e.find_header(bulwark::dead_letter_attempts).value_or(""), "1");
                                      co_return bulwark::ok();
                                    }));
  ASSERT_TRUE(reader.has_value());
  ASSERT_TRUE(f.drive_until([&] { return !reason.empty(); }));
  EXPECT_NE(reason.find(key), std::string::npos) << reason;
  EXPECT_NE(reason.find("unreadable"), std::string::npos) << reason;
  // The next saga's command on the same participant is served as usual.
  f.send("saga-8", op::action);
  ASSERT_TRUE(f.drive_until([&] { return f.reply_count() == 1; }));
  EXPECT_EQ(f.stock(), 7);
  bulwark::test::run(f.ctx, reader.value().stop());
  f.stop();
}

TEST(saga_participant, records_are_purged_after_the_retention_and_stay_bounded) {
  fixture f;
  auto o = f.options();
  o.purge_every = 1;
  o.purge_batch = 4;
  f.start(o);
  // One saga every 10 minutes for 10 hours, retention 1 h: at most 7 records are alive.
  for (int s = 0; s < 60; ++s) {
    f.send(bulwark::test::numbered_key("saga-", s), op::action, "0");
    ASSERT_TRUE(f.drive_until([&] { return f.committed() == s + 1; }));
    EXPECT_LE(f.stored_keys("r/"), 8u) << "after saga " << s;
    EXPECT_LE(f.stored_keys("x/"), 8u) << "after saga " << s;
    f.wall.advance(10min);
  }
  EXPECT_GE(f.participant->stats().purged, 50u);
  EXPECT_EQ(f.participant->stats().purge_failures, 0u);

  // A record changed after it was indexed is kept until its last change's retention.
  f.send("late", op::action, "0");
  ASSERT_TRUE(f.drive_until([&] { return f.committed() == 61; }));
  f.wall.advance(50min);
  f.send("late", op::compensation, "0");
  ASSERT_TRUE(f.drive_until([&] { return f.committed() == 62; }));
  f.wall.advance(11min); // 61 min after the action, 11 after the compensation
  auto purged = bulwark::test::run(f.ctx, f.participant->purge_expired(1000));
  ASSERT_TRUE(purged.has_value());
  auto kept = bulwark::test::run(f.ctx, f.participant->recorded_reply("late", "reserve", op::compensation));
  ASSERT_TRUE(kept.has_value());
  EXPECT_TRUE(kept.value()) << "purged before its retention after the last change";
  f.wall.advance(50min);
  purged = bulwark::test::run(f.ctx, f.participant->purge_expired(1000));
  ASSERT_TRUE(purged.has_value());
  EXPECT_GE(purged.value(), 1u);
  EXPECT_EQ(f.stored_keys(""), 0u) << "records or index entries left after every retention passed";
  f.stop();
}

TEST(saga_participant, stops_and_starts_again_and_refuses_bad_configuration) {
  fixture f;
  f.start();
  f.send("saga-1", op::action);
  ASSERT_TRUE(f.drive_until([&] { return f.reply_count() == 1; }));
  bulwark::test::run(f.ctx, f.participant->stop());
  bulwark::test::run(f.ctx, f.participant->stop()); // idempotent
  f.send("saga-2", op::action);
  for (int i = 0; i < 10; ++i) f.ctx.poll();
  EXPECT_EQ(f.reply_count(), 1u) << "a stopped participant handled a command";
  ASSERT_TRUE(bulwark::test::run(f.ctx, f.participant->start()).has_value());
  ASSERT_TRUE(f.drive_until([&] { return f.reply_count() == 2; }));
  auto again = bulwark::test::run(f.ctx, f.participant->start());
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error(), errc::rejected);
  EXPECT_THROW(f.participant->add_step("late", {.action = [](const step_command&) -> task<step_result> {
                                         co_return step_result::succeeded();
                                       }}),
               std::logic_error);

  auto o = f.options();
  participant_type fresh(f.bus, f.store, o, f.wall);
  auto noop = [](const step_command&) -> task<step_result> { co_return step_result::succeeded(); };
  EXPECT_THROW(fresh.add_step("a/b", {.action = noop}), std::invalid_argument);
  EXPECT_THROW(fresh.add_step("", {.action = noop}), std::invalid_argument);
  EXPECT_THROW(fresh.add_step("x", {}), std::invalid_argument);
  fresh.add_step("x", {.action = noop});
  EXPECT_THROW(fresh.add_step("x", {.action = noop}), std::invalid_argument);
  o.topic.clear();
  EXPECT_THROW(participant_type(f.bus, f.store, o, f.wall), std::invalid_argument);
  f.stop();
}

TEST(saga_participant, record_codec_round_trips_binary_payloads_and_rejects_garbage) {
  bulwark::saga::detail::participant_record r;
  r.action = {{reply_outcome::failed, std::string("\0\xff not utf-8", 12)}};
  r.compensation = {{reply_outcome::succeeded, ""}};
  r.tombstone = true;
  r.changed_ms = 1234567890123;
  auto back = bulwark::saga::detail::decode(bulwark::saga::detail::encode(r));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back.value().action->payload, r.action->payload);
  EXPECT_EQ(back.value().action->outcome, reply_outcome::failed);
  EXPECT_EQ(back.value().compensation->outcome, reply_outcome::succeeded);
  EXPECT_TRUE(back.value().tombstone);
  EXPECT_EQ(back.value().changed_ms, r.changed_ms);
  const std::string encoded = bulwark::saga::detail::encode(r);
  for (std::size_t cut = 0; cut < encoded.size(); ++cut) {
    auto bad = bulwark::saga::detail::decode(encoded.substr(0, cut));
    ASSERT_FALSE(bad.has_value()) << cut;
    EXPECT_EQ(bad.error(), errc::protocol_error);
  }
  EXPECT_FALSE(bulwark::saga::detail::decode(encoded + "x").has_value());
}

// Batches (participant.hpp "Batches"): the memory bus hands the participant what a partition
// holds, so commands published together are handled together.

TEST(saga_participant, duplicates_within_one_batch_get_the_first_reply_and_no_second_effect) {
  fixture f;
  f.start();
  const auto ids = f.sagas_on_one_partition(4);
  auto commands = fixture::actions_of(ids);
  for (const auto& c : fixture::actions_of(ids)) commands.push_back(c);
  commands.push_back({ids[0], "reserve", op::action, replies_topic, "1"}); // a third copy
  f.send_together(commands);
  ASSERT_TRUE(f.drive_until([&] { return f.reply_count() == 9 && f.committed() == 9; }));
  EXPECT_GE(f.participant->stats().batches, 1u) << "the commands were not handled as a batch";
  EXPECT_EQ(f.action_calls, 4) << "a duplicate in the batch ran the handler";
  EXPECT_EQ(f.stock(), 10 - 4);
  EXPECT_EQ(f.participant->stats().handled, 4u);
  EXPECT_EQ(f.participant->stats().duplicates, 5u);
  for (const auto& r : f.replies_now()) EXPECT_EQ(r.outcome, reply_outcome::succeeded) << r.saga_id;
  EXPECT_EQ(f.first_replies_all_alike().size(), 4u);
  EXPECT_EQ(f.counter("bulwark_participant_batches_total", {"stock"}, {"participant"}),
            static_cast<double>(f.participant->stats().batches));
  f.stop();
}

TEST(saga_participant, a_compensation_before_its_action_in_one_batch_leaves_a_tombstone) {
  fixture f;
  f.start();
  const auto ids = f.sagas_on_one_partition(2);
  f.send_together({{ids[0], "reserve", op::compensation, replies_topic, "2"},
                   {ids[1], "reserve", op::action, replies_topic, "2"},
                   {ids[0], "reserve", op::action, replies_topic, "2"},
                   {ids[1], "reserve", op::compensation, replies_topic, "2"}});
  ASSERT_TRUE(f.drive_until([&] { return f.reply_count() == 4 && f.committed() == 4; }));
  EXPECT_GE(f.participant->stats().batches, 1u);
  EXPECT_EQ(f.action_calls, 1) << "only ids[1]'s action runs; ids[0]'s came after its compensation";
  EXPECT_EQ(f.compensation_calls, 2);
  EXPECT_EQ(f.stock(), 10) << "ids[1] took 2 and gave them back; ids[0] took nothing";
  EXPECT_EQ(f.participant->stats().tombstones, 1u);
  EXPECT_EQ(f.participant->stats().late_actions_refused, 1u);
  for (const auto& r : f.replies_now()) {
    const bool refused = r.saga_id == ids[0] && r.op == op::action;
    EXPECT_EQ(r.outcome, refused ? reply_outcome::failed : reply_outcome::succeeded) << r.saga_id;
  }
  ASSERT_EQ(f.reverted.size(), 2u);
  EXPECT_EQ(f.reverted[0], bulwark::revert_outcome::tombstoned) << "ids[0]'s compensation reached the ledger first";
  f.stop();
}

TEST(saga_participant, a_failed_batch_is_redelivered_one_at_a_time_and_answered_from_the_records) {
  fixture f;
  f.start();
  const auto ids = f.sagas_on_one_partition(5);
  const auto commands = fixture::actions_of(ids);
  // Every command is recorded, then the third reply's publish fails: the batch fails.
  f.bus.faults().fail_nth(bulwark::testing::op::publish, 3, error(errc::unavailable, "broker down"));
  f.send_together(commands);
  ASSERT_TRUE(f.drive_until([&] { return f.committed() == 5 && f.participant->stats().duplicates == 5; }));
  EXPECT_EQ(f.bus.faults().injected(bulwark::testing::op::publish), 1u) << "the fault was not hit";
  EXPECT_GE(f.participant->stats().batches, 1u);
  EXPECT_EQ(f.action_calls, 5) << "the redelivery ran a handler again instead of reading its record";
  EXPECT_EQ(f.participant->stats().handled, 5u);
  EXPECT_EQ(f.stock(), 5);
  EXPECT_EQ(f.dead_lettered(), 0);
  // Each saga answered (some twice: their reply left in the failed batch, then again from the
  // record), every answer the same.
  EXPECT_EQ(f.first_replies_all_alike().size(), 5u);
  f.stop();
}

TEST(saga_participant, max_batch_one_handles_a_command_at_a_time) {
  fixture f;
  auto o = f.options();
  o.max_batch = 1;
  f.start(o);
  const auto ids = f.sagas_on_one_partition(3);
  f.send_together({{ids[0], "reserve", op::action, replies_topic, "1"},
                   {ids[1], "reserve", op::action, replies_topic, "1"},
                   {ids[0], "reserve", op::action, replies_topic, "1"}});
  ASSERT_TRUE(f.drive_until([&] { return f.reply_count() == 3 && f.committed() == 3; }));
  EXPECT_EQ(f.participant->stats().batches, 0u);
  EXPECT_EQ(f.action_calls, 2);
  EXPECT_EQ(f.participant->stats().duplicates, 1u);
  o.max_batch = 0;
  EXPECT_THROW(participant_type(f.bus, f.store, o, f.wall), std::invalid_argument);
  f.stop();
}
