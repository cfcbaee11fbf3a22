// The saga orchestrator's log and indexes on redis::repository (the `main` test server): on an
// atomic_batch_repository the live entry is written with the create and the index writes go with
// the final write, all or nothing (saga/orchestrator.hpp). What a sweep relies on must hold after
// every saga: a final record has its ended entry and no live entry; a duplicate start writes
// nothing. And the participant's record with its expiry-index entry (saga/participant.hpp).
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/redis.hpp>
#include <bulwark/saga/definition.hpp>
#include <bulwark/saga/orchestrator.hpp>
#include <bulwark/saga/participant.hpp>

#include "fixture.hpp"
#include "support/run.hpp"

#include <asio/io_context.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace redis = bulwark::redis;
namespace saga = bulwark::saga;

namespace {

struct order {
  bool refuse = false; // the second step declines: the saga compensates
  int undone = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(order, refuse, undone)

using order_saga = saga::definition<order>;

order_saga two_steps() {
  order_saga d("t");
  d.add(saga::local_step<order>(
            "reserve", [](order&, bulwark::clock::time_point) -> bulwark::task<void> { co_return bulwark::ok(); },
            [](order& o, bulwark::clock::time_point) -> bulwark::task<void> {
              ++o.undone;
              co_return bulwark::ok();
            }))
      .add(saga::local_step<order>("pay", [](order& o, bulwark::clock::time_point) -> bulwark::task<void> {
        if (o.refuse) co_return bulwark::error(bulwark::errc::declined, "no credit");
        co_return bulwark::ok();
      }));
  return d;
}

class redis_saga_log : public ::testing::Test {
protected:
  void SetUp() override {
    if (!redis::test::server_configured()) {
      if (std::getenv("BULWARK_REQUIRE_SERVERS")) FAIL() << "BULWARK_REDIS_PORT is not set";
      GTEST_SKIP() << "BULWARK_REDIS_PORT is not set (scripts/servers.sh up redis)";
    }
  }
  template <class T> T run(asio::awaitable<T> op) { return bulwark::test::run(ctx_, std::move(op), 20s); }

  // The keys under `prefix`, in order.
  std::vector<std::string> keys(redis::repository& repo, std::string_view prefix) {
    auto page = run(repo.scan(prefix, "", 100));
    EXPECT_TRUE(page.has_value());
    std::vector<std::string> out;
    if (page)
      for (const auto& e : page.value().entries) out.push_back(e.key);
    return out;
  }

  asio::io_context ctx_;
};

} // namespace

TEST_F(redis_saga_log, a_final_record_has_its_ended_entry_and_no_live_entry_and_a_duplicate_start_writes_nothing) {
  redis::client c(ctx_.get_executor(), redis::test::main_server());
  redis::repository repo(c, {.key_prefix = redis::test::fresh_prefix("saga")});
  static_assert(bulwark::atomic_batch_repository<redis::repository>);
  saga::orchestrator<order_saga, redis::repository> o(ctx_.get_executor(), two_steps(), repo);
  for (const bool refuse : {false, true}) {
    const std::string id = refuse ? "refused" : "paid";
    auto started = run(o.start(id, order{refuse, 0}));
    ASSERT_TRUE(started.has_value()) << started.error();
    EXPECT_TRUE(started.value().created);
    auto done = run(o.outcome(id, bulwark::clock{}.now() + 10s));
    ASSERT_TRUE(done.has_value()) << done.error();
    EXPECT_EQ(done.value().state, refuse ? saga::saga_state::compensated : saga::saga_state::completed);
    EXPECT_EQ(done.value().context.undone, refuse ? 1 : 0);
  }
  EXPECT_EQ(keys(repo, "saga/t/"), (std::vector<std::string>{"saga/t/paid", "saga/t/refused"}));
  EXPECT_TRUE(keys(repo, "~live/").empty()) << "the final write erases the live entry";
  auto ended = run(repo.scan("~ended/saga/t/", "", 10));
  ASSERT_TRUE(ended.has_value());
  ASSERT_EQ(ended.value().entries.size(), 2u) << "the final write adds the ended entry";
  std::vector<std::string> ids{ended.value().entries[0].value, ended.value().entries[1].value};
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"paid", "refused"}));

  // A duplicate start finds the saga and, all or nothing, leaves no live entry behind.
  auto again = run(o.start("paid", order{}));
  ASSERT_TRUE(again.has_value()) << again.error();
  EXPECT_FALSE(again.value().created);
  EXPECT_EQ(again.value().state, saga::saga_state::completed);
  EXPECT_TRUE(keys(repo, "~live/").empty()) << "a start that conflicts writes no live entry";
  run(o.stop());
  run(c.stop());
}

// A new command's record and its expiry-index entry are written together (one put_all); a
// duplicate is answered from the record and writes nothing more.
TEST_F(redis_saga_log, a_participant_writes_its_record_with_its_expiry_index_entry) {
  redis::client c(ctx_.get_executor(), redis::test::main_server());
  redis::repository store(c, {.key_prefix = redis::test::fresh_prefix("participant")});
  bulwark::memory::event_bus bus(ctx_.get_executor(), {.partitions = 1});
  saga::participant_options o;
  o.topic = "stock.commands";
  o.group = "stock";
  o.key_prefix = "p/";
  saga::participant<bulwark::memory::event_bus, redis::repository> p(bus, store, o);
  int runs = 0;
  p.add_step("reserve", {.action = [&runs](const saga::step_command&) -> bulwark::task<saga::step_result> {
               ++runs;
               co_return saga::step_result::succeeded("reserved");
             }});
  ASSERT_TRUE(run(p.start()).has_value());
  const saga::command cmd{"s1", "reserve", saga::op::action, "replies", "1"};
  auto handled = [&](std::uint64_t commands, std::uint64_t duplicates) {
    for (int i = 0; i < 1000 && (p.stats().handled < commands || p.stats().duplicates < duplicates); ++i)
      ctx_.run_one_for(10ms);
    return p.stats().handled == commands && p.stats().duplicates == duplicates;
  };
  ASSERT_TRUE(run(bus.publish("stock.commands", cmd.to_message())).has_value());
  ASSERT_TRUE(handled(1, 0));
  EXPECT_EQ(keys(store, "p/r/"), (std::vector<std::string>{"p/r/s1/reserve"}));
  const auto index = keys(store, "p/x/");
  ASSERT_EQ(index.size(), 1u);
  EXPECT_TRUE(index[0].ends_with("/s1/reserve")) << index[0];
  ASSERT_TRUE(run(bus.publish("stock.commands", cmd.to_message())).has_value());
  ASSERT_TRUE(handled(1, 1));
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(keys(store, "p/x/").size(), 1u);
  auto recorded = run(p.recorded_reply("s1", "reserve", saga::op::action));
  ASSERT_TRUE(recorded.has_value() && recorded.value().has_value());
  EXPECT_EQ(recorded.value()->payload, "reserved");
  run(p.stop());
  run(c.stop());
}
