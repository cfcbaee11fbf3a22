// The saga orchestrator's remote-step path end to end on the real Kafka cluster
// (BULWARK_KAFKA_BOOTSTRAP): orchestrator<definition, memory::repository, kafka::event_bus> with
// three remote steps (reserve stock and book a courier slot, served by one saga::participant;
// charge credit, served by another), each participant applying to a memory::ledger.
//   (a) 20 sagas complete and every ledger effect is applied exactly once;
//   (b) a refusal at the last step (not enough credit) compensates the saga: the two earlier
//       steps are reverted exactly once, the refused charge changed nothing;
//   (c) commands delivered again by hand (an action and a compensation already answered) are
//       answered from the participants' records and change nothing.
#include <bulwark/memory/ledger.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/saga/definition.hpp>
#include <bulwark/saga/orchestrator.hpp>
#include <bulwark/saga/participant.hpp>

#include "saga_bus.hpp"
#include "support/run.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace kafka_saga {

struct order {
  std::string customer;
  bulwark::amount quantity = 0;
  bulwark::amount price = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(order, customer, quantity, price)

} // namespace kafka_saga

namespace {

using namespace std::chrono_literals;
using bulwark::task;
using kafka_saga::order;
namespace saga = bulwark::saga;
using bulwark::test::unique_name;

// What the participants did to the ledger, per op id (saga id + "/" + step).
struct effects {
  struct counts {
    int applied = 0; // apply answered applied (the effect happened now)
    int undone = 0;  // revert answered undone (the effect was taken back now)
  };
  std::mutex m;
  std::map<std::string, counts> by_op;

  counts of(const std::string& op_id) {
    std::lock_guard lock(m);
    return by_op[op_id];
  }
};

// A ledger step for a participant: the command's payload is "<key>:<delta>" (the key may hold
// ':' of its own: the delta is after the last one); the action applies
// it under the command's op id, the compensation reverts that op id.
saga::step_handlers ledger_step(bulwark::memory::ledger& ledger, effects& seen) {
  saga::step_handlers h;
  h.action = [&ledger, &seen](const saga::step_command& c) -> task<saga::step_result> {
    const auto colon = c.payload.rfind(':');
    if (colon == std::string_view::npos) co_return bulwark::error(bulwark::errc::invalid_argument, "bad payload");
    const std::vector<bulwark::adjustment> change = {
        {std::string(c.payload.substr(0, colon)), std::stoll(std::string(c.payload.substr(colon + 1)))}};
    const std::string op_id(c.op_id);
    auto applying = ledger.apply(op_id, change);
    BOOST_OUTCOME_CO_TRY(outcome, co_await std::move(applying)); // a refusal: errc::declined, "failed"
    if (outcome == bulwark::apply_outcome::applied) {
      std::lock_guard lock(seen.m);
      ++seen.by_op[op_id].applied;
    }
    co_return saga::step_result::succeeded();
  };
  h.compensation = [&ledger, &seen](const saga::step_command& c) -> task<saga::step_result> {
    const std::string op_id(c.op_id);
    auto reverting = ledger.revert(op_id);
    BOOST_OUTCOME_CO_TRY(outcome, co_await std::move(reverting));
    if (outcome == bulwark::revert_outcome::undone) {
      std::lock_guard lock(seen.m);
      ++seen.by_op[op_id].undone;
    }
    co_return saga::step_result::succeeded();
  };
  return h;
}

saga::step<order> remote(std::string name, std::string topic, std::function<std::string(const order&)> payload) {
  auto s = saga::remote_step<order>(std::move(name), std::move(topic),
                                    [payload](const order& o, saga::op) { return payload(o); });
  s.timeout = 10s; // the first command waits for the participant's group to be joined
  s.retry.max_attempts = 3;
  return s;
}

class kafka_saga_orchestrator : public bulwark::test::kafka_saga_bus {};

TEST_F(kafka_saga_orchestrator, remote_steps_complete_compensate_and_ignore_duplicate_commands) {
  auto& ctx = ctx_;
  auto& bus = *bus_;

  const auto stock_topic = unique_name("saga-stock-commands");
  const auto credit_topic = unique_name("saga-credit-commands");
  const auto reply_topic = unique_name("saga-checkout-replies");
  for (const auto& topic : {stock_topic, credit_topic, reply_topic}) {
    ASSERT_NO_FATAL_FAILURE(create_topic(topic, 2));
    ASSERT_NO_FATAL_FAILURE(create_topic(topic + ".dlq", 1));
  }

  // The participants' world: one ledger, one store for their records (distinct key prefixes).
  constexpr int sagas = 20;
  bulwark::memory::ledger ledger;
  ASSERT_TRUE(ledger.set_now("stock:widget", 100).has_value());
  ASSERT_TRUE(ledger.set_now("slots:courier", 50).has_value());
  for (int i = 0; i < sagas; ++i) ASSERT_TRUE(ledger.set_now("credit:c" + std::to_string(i), 100).has_value());
  ASSERT_TRUE(ledger.set_now("credit:poor", 10).has_value());
  effects seen;
  bulwark::memory::repository records;

  using participant_type = saga::participant<bulwark::kafka::event_bus, bulwark::memory::repository>;
  saga::participant_options so;
  so.topic = stock_topic;
  so.group = unique_name("stock-participant");
  so.key_prefix = "stock/";
  so.name = "stock";
  participant_type stock(bus, records, so);
  stock.add_step("reserve", ledger_step(ledger, seen));
  stock.add_step("book", ledger_step(ledger, seen));
  saga::participant_options co;
  co.topic = credit_topic;
  co.group = unique_name("credit-participant");
  co.key_prefix = "credit/";
  co.name = "credit";
  participant_type credit(bus, records, co);
  credit.add_step("charge", ledger_step(ledger, seen));
  for (auto* p : {&stock, &credit}) {
    auto started = bulwark::test::run(ctx, p->start());
    ASSERT_TRUE(started.has_value()) << started.error();
  }

  // The orchestrator: its log in memory, its commands and replies on Kafka.
  saga::definition<order> checkout("checkout");
  checkout
      .add(remote("reserve", stock_topic, [](const order& o) { return "stock:widget:" + std::to_string(-o.quantity); }))
      .add(remote("book", stock_topic, [](const order&) { return std::string("slots:courier:-1"); }))
      .add(remote("charge", credit_topic,
                  [](const order& o) { return "credit:" + o.customer + ":" + std::to_string(-o.price); }));
  bulwark::memory::repository log;
  saga::orchestrator_options oo;
  oo.replica = "kafka-test";
  oo.reply_topic = reply_topic;
  saga::orchestrator<saga::definition<order>, bulwark::memory::repository, bulwark::kafka::event_bus> orchestrator(
      ctx.get_executor(), checkout, log, bus, oo);
  auto recovered = bulwark::test::run(ctx, orchestrator.recover());
  ASSERT_TRUE(recovered.has_value()) << recovered.error();
  EXPECT_EQ(recovered.value(), 0u);

  // (a) and (b) at once: 20 sagas that can pay and one that cannot.
  auto id_of = [](int i) { return "order-" + std::to_string(i); };
  for (int i = 0; i < sagas; ++i) {
    auto started = bulwark::test::run(ctx, orchestrator.start(id_of(i), order{"c" + std::to_string(i), 1, 30}));
    ASSERT_TRUE(started.has_value()) << started.error();
    EXPECT_TRUE(started.value().created);
  }
  auto poor = bulwark::test::run(ctx, orchestrator.start("order-poor", order{"poor", 2, 30}));
  ASSERT_TRUE(poor.has_value()) << poor.error();

  const auto deadline = oo.clock.now() + 30s;
  for (int i = 0; i < sagas; ++i) {
    auto outcome = bulwark::test::run(ctx, orchestrator.outcome(id_of(i), deadline), 40s);
    ASSERT_TRUE(outcome.has_value()) << id_of(i) << ": " << outcome.error();
    EXPECT_EQ(outcome.value().state, saga::saga_state::completed) << id_of(i) << ": " << outcome.value().detail;
  }
  auto refused = bulwark::test::run(ctx, orchestrator.outcome("order-poor", deadline), 40s);
  ASSERT_TRUE(refused.has_value()) << refused.error();
  EXPECT_EQ(refused.value().state, saga::saga_state::compensated);
  EXPECT_NE(refused.value().detail.find("charge"), std::string::npos) << refused.value().detail;

  auto balance = [&](const std::string& key) { return ledger.get_now(key).value().value_or(-1); };
  EXPECT_EQ(balance("stock:widget"), 100 - sagas);
  EXPECT_EQ(balance("slots:courier"), 50 - sagas);
  for (int i = 0; i < sagas; ++i) {
    EXPECT_EQ(balance("credit:c" + std::to_string(i)), 70);
    for (const char* step : {"/reserve", "/book", "/charge"}) {
      const auto c = seen.of(id_of(i) + step);
      EXPECT_EQ(c.applied, 1) << id_of(i) << step;
      EXPECT_EQ(c.undone, 0) << id_of(i) << step;
    }
  }
  EXPECT_EQ(balance("credit:poor"), 10);
  for (const char* step : {"/reserve", "/book"}) {
    const auto c = seen.of(std::string("order-poor") + step);
    EXPECT_EQ(c.applied, 1) << "order-poor" << step;
    EXPECT_EQ(c.undone, 1) << "order-poor" << step;
  }
  EXPECT_EQ(seen.of("order-poor/charge").applied, 0);
  EXPECT_EQ(seen.of("order-poor/charge").undone, 0);
  EXPECT_EQ(credit.stats().failed_replies, 1u);
  EXPECT_EQ(orchestrator.stats().completed, static_cast<std::uint64_t>(sagas));
  EXPECT_EQ(orchestrator.stats().compensated, 1u);

  // (c) Commands delivered again: an action and a compensation on the stock topic, an action
  // on the credit topic. Each is answered from the record, the reply dropped by the orchestrator.
  const auto stock_before = stock.stats();
  const auto credit_before = credit.stats();
  const auto dropped_before = orchestrator.stats().replies_dropped;
  const std::vector<std::pair<std::string, saga::command>> again = {
      {stock_topic, saga::command{id_of(0), "reserve", saga::op::action, reply_topic, "stock:widget:-1"}},
      {stock_topic, saga::command{"order-poor", "reserve", saga::op::compensation, reply_topic, "stock:widget:-2"}},
      {credit_topic, saga::command{id_of(1), "charge", saga::op::action, reply_topic, "credit:c1:-30"}},
  };
  for (const auto& [topic, c] : again) {
    auto published = bulwark::test::run(ctx, bus.publish(topic, c.to_message()));
    ASSERT_TRUE(published.has_value()) << published.error();
  }
  const bool answered = bulwark::test::run(
      ctx, bulwark::test::eventually([&] { return orchestrator.stats().replies_dropped >= dropped_before + 3; }, 20s),
      30s);
  EXPECT_TRUE(answered) << "replies dropped: " << orchestrator.stats().replies_dropped - dropped_before;
  EXPECT_EQ(stock.stats().duplicates, stock_before.duplicates + 2);
  EXPECT_EQ(credit.stats().duplicates, credit_before.duplicates + 1);
  EXPECT_EQ(stock.stats().handled, stock_before.handled);
  EXPECT_EQ(credit.stats().handled, credit_before.handled);
  EXPECT_EQ(balance("stock:widget"), 100 - sagas);
  EXPECT_EQ(balance("credit:c1"), 70);
  EXPECT_EQ(seen.of(id_of(0) + "/reserve").applied, 1);
  EXPECT_EQ(seen.of("order-poor/reserve").undone, 1);
  EXPECT_EQ(seen.of(id_of(1) + "/charge").applied, 1);
  EXPECT_EQ(orchestrator.stats().completed, static_cast<std::uint64_t>(sagas));
  EXPECT_EQ(orchestrator.stats().compensated, 1u);

  bulwark::test::run(ctx, orchestrator.stop(), 30s);
  bulwark::test::run(ctx, stock.stop(), 30s);
  bulwark::test::run(ctx, credit.stop(), 30s);
  bulwark::test::run(ctx, bus.stop(), 30s);
}

} // namespace
