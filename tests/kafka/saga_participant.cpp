// saga::participant on the real Kafka cluster (BULWARK_KAFKA_BOOTSTRAP): a command published
// twice to a Kafka command topic has exactly one effect on the ledger, and both deliveries are
// answered with the same reply on the reply topic.
//
// What Kafka promises is at-least-once delivery, so the counts asserted are the contract's, not
// one lucky schedule's: under load a member can miss its session timeout (or its group can
// rebalance) before its offsets were committed, and the command, or a reply, is delivered once
// more. The participant answers such a redelivery from its record like any duplicate: one more
// identical reply, never one more effect.
#include <bulwark/memory/ledger.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/saga/participant.hpp>

#include "saga_bus.hpp"
#include "support/run.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using bulwark::task;
using bulwark::saga::command;
using bulwark::saga::op;
using bulwark::saga::reply;
using bulwark::saga::reply_outcome;
using bulwark::saga::step_command;
using bulwark::saga::step_result;
using bulwark::test::unique_name;

class kafka_saga_participant : public bulwark::test::kafka_saga_bus {};

TEST_F(kafka_saga_participant, a_command_sent_twice_has_one_effect_and_the_same_reply) {
  auto& ctx = ctx_;
  auto& bus = *bus_;

  const auto commands = unique_name("saga-commands");
  const auto replies = unique_name("saga-replies");
  ASSERT_NO_FATAL_FAILURE(create_topic(commands, 2));
  ASSERT_NO_FATAL_FAILURE(create_topic(commands + ".dlq", 1));
  ASSERT_NO_FATAL_FAILURE(create_topic(replies, 2));

  bulwark::memory::repository store;
  bulwark::memory::ledger ledger;
  ASSERT_TRUE(ledger.set_now("stock:pear", 10).has_value());
  std::atomic<int> effects{0};
  std::atomic<int> calls{0};

  bulwark::saga::participant_options o;
  o.topic = commands;
  o.group = unique_name("stock-participant");
  bulwark::saga::participant<bulwark::kafka::event_bus, bulwark::memory::repository> participant(bus, store, o);
  participant.add_step("reserve", {.action = [&](const step_command& c) -> task<step_result> {
                         ++calls;
                         const std::vector<bulwark::adjustment> take = {{"stock:pear", -4}};
                         auto applying = ledger.apply(c.op_id, take);
                         BOOST_OUTCOME_CO_TRY(outcome, co_await std::move(applying));
                         if (outcome == bulwark::apply_outcome::applied) ++effects;
                         co_return step_result::succeeded("reserved 4");
                       }});
  auto started = bulwark::test::run(ctx, participant.start());
  ASSERT_TRUE(started.has_value()) << started.error();

  std::mutex m;
  std::map<std::pair<std::int32_t, std::int64_t>, reply> got; // by (partition, offset): a reply message once
  bulwark::subscribe_options ro;
  ro.topic = replies;
  ro.group = unique_name("orchestrator");
  auto reader = bulwark::test::run(ctx, bus.subscribe(ro, [&](const bulwark::envelope& e) -> task<void> {
    auto r = bulwark::saga::parse_reply(e);
    if (!r) co_return r.error();
    std::lock_guard lock(m);
    got.insert_or_assign({e.partition, e.offset}, std::move(r).value());
    co_return bulwark::ok();
  }));
  ASSERT_TRUE(reader.has_value()) << reader.error();

  const command c{"saga-kafka-1", "reserve", op::action, replies, "4"};
  for (int i = 0; i < 2; ++i) {
    auto published = bulwark::test::run(ctx, bus.publish(commands, c.to_message()));
    ASSERT_TRUE(published.has_value()) << published.error();
  }
  auto count = [&] {
    std::lock_guard lock(m);
    return got.size();
  };
  ASSERT_TRUE(bulwark::test::run(ctx, bulwark::test::eventually([&] { return count() >= 2; }, 60s), 70s))
      << "replies received: " << count() << "; the participant handled " << participant.stats().handled
      << " and answered " << participant.stats().duplicates << " duplicates (none handled: its consumer held no "
      << "partition of " << commands << "; handled but no reply: the reader held none of " << replies << ")";
  // A third reply, if any, would come right behind.
  bulwark::test::run(ctx, bulwark::test::eventually([&] { return count() > 2; }, 1500ms), 10s);

  // Exactly once: one effect, the handler run once (every later delivery is answered from the
  // record), the stock taken once.
  EXPECT_EQ(effects.load(), 1);
  EXPECT_EQ(calls.load(), 1) << "the duplicate was answered from the record without running the handler";
  EXPECT_EQ(ledger.get_now("stock:pear").value().value_or(-1), 6);
  const auto stats = participant.stats();
  EXPECT_EQ(stats.handled, 1u);
  // At least once: both publishes answered; a redelivery (see the file comment) answers again.
  EXPECT_GE(stats.duplicates, 1u);
  {
    std::lock_guard lock(m);
    // One reply message per answer (the idempotent producer writes no duplicate of its own);
    // fewer only if an answer's publish failed, which the bus then retried as a duplicate.
    EXPECT_GE(got.size(), 2u) << "one reply per delivery";
    EXPECT_LE(got.size(), stats.handled + stats.duplicates) << "a reply no delivery answered";
    if (got.size() != 2u)
      std::cout << "redelivered under load: " << stats.duplicates << " duplicates, " << got.size() << " replies\n";
    for (const auto& [at, r] : got) {
      EXPECT_EQ(r.saga_id, "saga-kafka-1");
      EXPECT_EQ(r.step, "reserve");
      EXPECT_EQ(r.op, op::action);
      EXPECT_EQ(r.outcome, reply_outcome::succeeded) << "every reply is the recorded one";
      EXPECT_EQ(r.payload, "reserved 4");
    }
  }

  bulwark::test::run(ctx, participant.stop(), 30s);
  bulwark::test::run(ctx, reader.value().stop(), 30s);
  bulwark::test::run(ctx, bus.stop(), 30s);
}

} // namespace
