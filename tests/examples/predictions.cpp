// The predictions example (examples/predictions/): every validation rule, the ids and log keys,
// the aggregates' idempotence, content negotiation, the command line, and the pipeline end to
// end in memory mode over real sockets: POST /input -> bus -> consumer -> GET /live and
// GET /logs, a redelivered message counted once, the pages by content negotiation, and
// server-sent events that a graceful stop ends. Real mode runs in tests/e2e/predictions.sh.

#include <predictions/aggregates.hpp>
#include <predictions/config.hpp>
#include <predictions/prediction.hpp>
#include <predictions/runtime.hpp>
#include <predictions/service.hpp>

#include <bulwark/detail/when_all.hpp>
#include <bulwark/http/event_stream.hpp>
#include <bulwark/http/negotiation.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/testing/faults.hpp>
#ifdef PREDICTIONS_REAL_BACKENDS
#include <predictions/real_mode.hpp>

#include "support/run.hpp"
#endif

#include <gtest/gtest.h>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace pr = predictions;
using namespace std::literals;

namespace {

std::vector<std::string> codes_of(std::string_view body) {
  std::vector<std::string> out;
  for (const auto& v : pr::validate(body).violations) out.push_back(v.field + ":" + v.code);
  return out;
}

using codes = std::vector<std::string>;

} // namespace

// --- validation: every rule ------------------------------------------------------------------

TEST(PredictionsValidation, AcceptsAValidInputAndTrimsTeams) {
  const auto r = pr::validate(R"({"team1": " Guatemala ", "team2": "Argentina", "score": "2-5", "phase": 1})");
  ASSERT_TRUE(r.value) << r.violations.size();
  EXPECT_EQ(r.value->team1, "Guatemala");
  EXPECT_EQ(r.value->team2, "Argentina");
  EXPECT_EQ(r.value->score(), "2-5");
  EXPECT_EQ(r.value->phase, 1);
  for (int phase = 1; phase <= 4; ++phase)
    EXPECT_TRUE(pr::validate(R"({"team1":"A","team2":"B","score":"0-0","phase":)" + std::to_string(phase) + "}").value);
  EXPECT_TRUE(pr::validate(R"({"team1":"A","team2":"B","score":"99-10","phase":4})").value);
}

TEST(PredictionsValidation, MissingOrBlankTeam) {
  EXPECT_EQ(codes_of(R"({"team2":"B","score":"1-0","phase":1})"), (codes{"team1:missing"}));
  EXPECT_EQ(codes_of(R"({"team1":"A","score":"1-0","phase":1})"), (codes{"team2:missing"}));
  EXPECT_EQ(codes_of(R"({"team1":"  ","team2":"B","score":"1-0","phase":1})"), (codes{"team1:blank"}));
  EXPECT_EQ(codes_of(R"({"team1":"A","team2":"","score":"1-0","phase":1})"), (codes{"team2:blank"}));
  EXPECT_EQ(codes_of(R"({"team1":7,"team2":"B","score":"1-0","phase":1})"), (codes{"team1:not_a_string"}));
  EXPECT_EQ(codes_of(R"({"team1":")" + std::string(65, 'x') + R"(","team2":"B","score":"1-0","phase":1})"),
            (codes{"team1:too_long"}));
}

TEST(PredictionsValidation, SameTeamTwiceIgnoringCase) {
  EXPECT_EQ(codes_of(R"({"team1":"Brazil","team2":"Brazil","score":"1-0","phase":1})"), (codes{"team2:same_team"}));
  EXPECT_EQ(codes_of(R"({"team1":"brazil","team2":" BRAZIL","score":"1-0","phase":1})"), (codes{"team2:same_team"}));
}

TEST(PredictionsValidation, ScoreMustBeNDashMWithSmallNonNegativeIntegers) {
  for (const char* bad : {"2-", "-1", "a-1", "1-b", "-1-2", "2 - 1", "100-1", "1-100", "1:0", "", "1-0-0", "+1-0"}) {
    EXPECT_EQ(codes_of(R"({"team1":"A","team2":"B","score":")" + std::string(bad) + R"(","phase":1})"),
              (codes{"score:bad_score"}))
        << bad;
  }
  EXPECT_EQ(codes_of(R"({"team1":"A","team2":"B","score":3,"phase":1})"), (codes{"score:bad_score"}));
  EXPECT_EQ(codes_of(R"({"team1":"A","team2":"B","phase":1})"), (codes{"score:missing"}));
}

TEST(PredictionsValidation, PhaseMustBeAnIntegerInOneToFour) {
  for (const char* bad : {"0", "5", "-1", "2.5", "\"2\"", "null", "true"})
    EXPECT_EQ(codes_of(R"({"team1":"A","team2":"B","score":"1-0","phase":)" + std::string(bad) + "}"),
              (codes{"phase:bad_phase"}))
        << bad;
  EXPECT_EQ(codes_of(R"({"team1":"A","team2":"B","score":"1-0"})"), (codes{"phase:missing"}));
}

TEST(PredictionsValidation, UnknownFieldsAndNonObjects) {
  EXPECT_EQ(codes_of(R"({"team1":"A","team2":"B","score":"1-0","phase":1,"stadium":"Lusail"})"),
            (codes{"stadium:unknown_field"}));
  EXPECT_EQ(codes_of("[1,2]"), (codes{":not_an_object"}));
  EXPECT_EQ(codes_of("{\"team1\":"), (codes{":not_an_object"}));
  EXPECT_EQ(codes_of(""), (codes{":not_an_object"}));
}

TEST(PredictionsValidation, ReportsEveryViolationAtOnce) {
  const auto r = pr::validate(R"({"team1":"","score":"x","phase":9,"extra":1})");
  EXPECT_FALSE(r.value);
  EXPECT_EQ(r.violations.size(), 5u); // extra, team1 blank, team2 missing, score, phase
  const auto body = pr::violations_json(r.violations);
  EXPECT_EQ(body["error"], "invalid_argument");
  EXPECT_EQ(body["violations"].size(), 5u);
}

// --- ids, log keys, aggregates ------------------------------------------------------------------

TEST(PredictionsIds, UniqueAndLoggedNewestFirst) {
  pr::id_source ids(0xabcdef01u);
  const auto a = ids.next(1'000), b = ids.next(1'000), c = ids.next(2'000);
  EXPECT_EQ(a.size(), 28u);
  EXPECT_NE(a, b);
  EXPECT_LT(a, c);
  EXPECT_GT(pr::log_key(a), pr::log_key(c)); // byte order of the keys: newest first
  EXPECT_TRUE(pr::log_key(a).starts_with(pr::log_prefix));
}

TEST(PredictionsIds, TheKeyBeforeACutoffSeparatesOlderLogsFromTheRest) {
  pr::id_source ids(0xffffffffu), low(0u);
  const auto cutoff = pr::logs_before_key(5'000);
  for (auto id : {ids.next(4'999), low.next(4'999), ids.next(1), low.next(0)})
    EXPECT_GT(pr::log_key(id), cutoff) << id; // older: after the key
  for (auto id : {ids.next(5'000), low.next(5'000), ids.next(5'001), low.next(99'999'999)})
    EXPECT_LE(pr::log_key(id), cutoff) << id; // the cutoff's millisecond and newer: not after it
}

TEST(PredictionsAggregates, CountsEachIdOnceAndForgetsAfterTheRetention) {
  pr::memory_aggregates agg(std::chrono::seconds(10));
  pr::accepted a{"id-1", 0, {"Argentina", "France", 3, 3, 4}};
  const auto t0 = std::chrono::steady_clock::time_point{};
  EXPECT_TRUE(agg.record_now(a, t0));
  EXPECT_FALSE(agg.record_now(a, t0 + 1s)); // a redelivery
  a.id = "id-2";
  a.value.goals2 = 1;
  EXPECT_TRUE(agg.record_now(a, t0 + 2s));
  const auto live = agg.snapshot_now();
  EXPECT_EQ(live["total"], 2);
  EXPECT_EQ(live["phases"]["4"], 2);
  ASSERT_EQ(live["matches"].size(), 1u);
  EXPECT_EQ(live["matches"][0]["scores"]["3-3"], 1);
  EXPECT_EQ(live["matches"][0]["scores"]["3-1"], 1);
  EXPECT_EQ(agg.remembered(), 2u);
  a.id = "id-3";
  EXPECT_TRUE(agg.record_now(a, t0 + 11s)); // id-1 forgotten: bounded memory
  EXPECT_EQ(agg.remembered(), 2u);
}

// --- content negotiation and the command line --------------------------------------------------

TEST(PredictionsNegotiation, BrowsersGetThePageEverythingElseJson) {
  auto pick = [](const char* accept) {
    bulwark::http::request r;
    if (accept) r.headers.set("Accept", accept);
    return std::string(bulwark::http::preferred_type(r, {"application/json", "text/html"}));
  };
  EXPECT_EQ(pick("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"), "text/html");
  EXPECT_EQ(pick(nullptr), "application/json");
  EXPECT_EQ(pick("*/*"), "application/json");
  EXPECT_EQ(pick("application/json"), "application/json");
  EXPECT_EQ(pick("text/html;q=0.5, application/json"), "application/json");
  EXPECT_EQ(pick("text/*"), "text/html");
  EXPECT_EQ(pick("image/png"), "");
}

TEST(PredictionsConfig, DefaultsFlagsEnvironmentAndErrors) {
  auto none = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
  auto c = pr::parse_config({}, none);
  ASSERT_TRUE(c);
  EXPECT_EQ(c.value().port, 8080);
  EXPECT_EQ(c.value().backend, pr::backend_kind::memory);
  auto env = [](std::string_view n) -> std::optional<std::string> {
    if (n == "PREDICTIONS_KAFKA") return "127.0.0.1:9092";
    return std::nullopt;
  };
  c = pr::parse_config({"--backend", "real", "--role", "consumer", "--port", "0"}, env);
  ASSERT_TRUE(c);
  EXPECT_EQ(c.value().kafka, "127.0.0.1:9092");
  EXPECT_EQ(c.value().role, pr::role_kind::consumer);
  EXPECT_EQ(c.value().linger, 20ms);
  c = pr::parse_config({"--backend", "real", "--linger-ms", "5"}, env);
  ASSERT_TRUE(c);
  EXPECT_EQ(c.value().linger, 5ms);
  EXPECT_TRUE(c.value().kafka_properties.empty());
  c = pr::parse_config({"--backend", "real", "--kafka-properties", "enable.idempotence=true,linger.ms=7"}, env);
  ASSERT_TRUE(c);
  EXPECT_EQ(c.value().kafka_properties, "enable.idempotence=true,linger.ms=7");
  EXPECT_EQ(pr::parse_config({}, none).value().logs_retention, std::chrono::hours(24 * 7));
  c = pr::parse_config({"--logs-retention-s", "0", "--logs-prune-interval-s", "5"}, none);
  ASSERT_TRUE(c);
  EXPECT_EQ(c.value().logs_retention, 0s);
  EXPECT_EQ(c.value().logs_prune_interval, 5s);
  EXPECT_FALSE(pr::parse_config({"--logs-prune-interval-s", "0"}, none));
  EXPECT_FALSE(pr::parse_config({"--logs-retention-s", "-1"}, none));
  EXPECT_EQ(pr::parse_config({}, none).value().max_attempts, 1000u);
  EXPECT_EQ(pr::consumer_group(pr::parse_config({"--max-attempts", "7"}, none).value()).retry.max_attempts, 7u);
  EXPECT_FALSE(pr::parse_config({"--max-attempts", "0"}, none));
  EXPECT_FALSE(pr::parse_config({"--max-attempts", "many"}, none));
  EXPECT_FALSE(pr::parse_config({"--linger-ms", "900001"}, none));
  EXPECT_TRUE(pr::parse_config({"--linger-ms", "900000"}, none));
  EXPECT_FALSE(pr::parse_config({"--port", "70000"}, none));
  EXPECT_FALSE(pr::parse_config({"--colour", "blue"}, none));
  EXPECT_FALSE(pr::parse_config({"--port"}, none));
  EXPECT_FALSE(pr::parse_config({"--role", "api"}, none));     // memory mode is one process
  EXPECT_FALSE(pr::parse_config({"--backend", "real"}, none)); // no brokers
  EXPECT_TRUE(pr::logs_limit("limit=1000"));
  EXPECT_FALSE(pr::logs_limit("limit=0"));
  EXPECT_FALSE(pr::logs_limit("limit=1001"));
  EXPECT_FALSE(pr::logs_limit("limit=5x"));
  EXPECT_EQ(pr::logs_limit(""), pr::default_logs_limit);
}

// --- the pipeline end to end in memory mode, over sockets ---------------------------------------

namespace {

struct reply {
  int status = 0;
  std::string head;
  std::string body;
};

// One request on its own connection (Connection: close), read to the end. Bounded by the
// socket's own timeouts: the server answers or closes.
reply call(std::uint16_t port, std::string method, std::string target, std::string body = {},
           std::string accept = "application/json") {
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), port});
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAccept: " + accept +
                    "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  asio::write(s, asio::buffer(req));
  std::string all;
  asio::error_code ec;
  asio::read(s, asio::dynamic_buffer(all), ec);
  reply r;
  const auto end = all.find("\r\n\r\n");
  r.head = all.substr(0, end);
  r.body = end == std::string::npos ? "" : all.substr(end + 4);
  r.status = std::atoi(all.substr(9, 3).c_str());
  return r;
}

template <class Predicate> bool eventually(Predicate p, std::chrono::milliseconds limit = 10s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (p()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return p();
}

struct memory_pipeline {
  memory_pipeline() : bus(home.executor(), bus_options()) {
    c.port = 0;
    c.push_interval = 50ms;
  }
  static bulwark::memory::event_bus::options bus_options() {
    bulwark::memory::event_bus::options o;
    o.drain_timeout = 2s;
    return o;
  }
  pr::home_thread home;
  pr::config c;
  bulwark::memory::event_bus bus;
  bulwark::memory::repository logs;
  pr::memory_aggregates aggregates;
  std::shared_ptr<bulwark::metrics::registry> metrics = std::make_shared<bulwark::metrics::registry>();
};

} // namespace

// --- the consumer's batches: each id counted and logged once ---------------------------------

namespace {

std::int64_t sample(const bulwark::metrics::registry& m, const std::string& series) {
  const auto text = "\n" + m.expose(); // a sample's line, not the # HELP line naming the family
  const auto at = text.find("\n" + series + " ");
  return at == std::string::npos ? -1 : std::stoll(text.substr(at + series.size() + 2));
}

// A batch holding one id twice, then the same batch redelivered whole, then a batch with a message
// that is not a prediction (which fails whole: the bus then delivers it one at a time). The same
// checks run on the memory models and on MySQL and Redis.
template <class Logs, class Aggregates>
void a_batch_counts_each_id_once(asio::any_io_executor ex, Logs& logs, Aggregates& aggregates) {
  auto metrics = std::make_shared<bulwark::metrics::registry>();
  pr::consumer<Logs, Aggregates> out(logs, aggregates, metrics);
  pr::id_source ids;
  std::vector<pr::accepted> inputs;
  for (int i = 0; i < 3; ++i) inputs.push_back({ids.next(pr::unix_ms()), pr::unix_ms(), {"Qatar", "Ecuador", i, 2, 1}});
  std::vector<std::string> values;
  for (int i : {0, 1, 0, 2}) values.push_back(pr::to_json(inputs[static_cast<std::size_t>(i)]).dump());
  std::vector<bulwark::envelope> batch;
  for (std::size_t i = 0; i < values.size(); ++i) {
    bulwark::envelope e;
    e.topic = "predictions";
    e.offset = static_cast<std::int64_t>(i);
    e.value = values[i];
    batch.push_back(e);
  }
  auto handled = bulwark::app::block_on(ex, out.handle_batch(batch));
  ASSERT_TRUE(handled) << handled.error();
  auto live = bulwark::app::block_on(ex, aggregates.snapshot());
  ASSERT_TRUE(live) << live.error();
  EXPECT_EQ(live.value()["total"], 3) << live.value().dump();
  EXPECT_EQ(live.value()["phases"]["1"], 3);
  ASSERT_EQ(live.value()["matches"].size(), 1u);
  EXPECT_EQ(live.value()["matches"][0]["total"], 3);
  EXPECT_EQ(live.value()["matches"][0]["scores"]["0-2"], 1); // not 2: the repeated id counted once
  EXPECT_EQ(sample(*metrics, "predictions_consumed_total{outcome=\"counted\"}"), 3);
  EXPECT_EQ(sample(*metrics, "predictions_consumed_total{outcome=\"duplicate\"}"), 1);

  handled = bulwark::app::block_on(ex, out.handle_batch(batch)); // redelivered whole
  ASSERT_TRUE(handled) << handled.error();
  live = bulwark::app::block_on(ex, aggregates.snapshot());
  ASSERT_TRUE(live) << live.error();
  EXPECT_EQ(live.value()["total"], 3) << live.value().dump();
  EXPECT_EQ(live.value()["matches"][0]["scores"]["0-2"], 1);
  EXPECT_EQ(sample(*metrics, "predictions_consumed_total{outcome=\"counted\"}"), 3);
  EXPECT_EQ(sample(*metrics, "predictions_consumed_total{outcome=\"duplicate\"}"), 5);
  auto logged = bulwark::app::block_on(ex, pr::all_log_ids(logs));
  ASSERT_TRUE(logged) << logged.error();
  auto expected = std::vector<std::string>{inputs[0].id, inputs[1].id, inputs[2].id};
  std::sort(logged.value().begin(), logged.value().end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(logged.value(), expected); // each once

  const std::string fresh =
      pr::to_json(pr::accepted{ids.next(pr::unix_ms()), pr::unix_ms(), {"Qatar", "Ecuador", 5, 0, 1}}).dump();
  batch.resize(2);
  batch[0].value = fresh;
  batch[1].value = "not a prediction";
  handled = bulwark::app::block_on(ex, out.handle_batch(batch));
  ASSERT_FALSE(handled);
  EXPECT_EQ(handled.error(), bulwark::errc::invalid_argument);
  live = bulwark::app::block_on(ex, aggregates.snapshot());
  EXPECT_EQ(live.value()["total"], 3); // nothing of the failed batch was applied before the check
  batch.resize(1);
  ASSERT_TRUE(bulwark::app::block_on(ex, out.handle_batch(batch))); // its good message, on its own
  EXPECT_EQ(bulwark::app::block_on(ex, aggregates.snapshot()).value()["total"], 4);
}

// The retention: 120 logs accepted 8 days ago (one of them erased before: a tombstone) and 5
// just now; one pass (pages of 50, the last one partial) removes exactly the old ones, a second
// finds nothing; a stopped pruner stops, and runs again when started again. The memory repository's or MariaDB's.
template <class Logs> void old_logs_are_pruned(asio::any_io_executor ex, Logs& logs) {
  auto metrics = std::make_shared<bulwark::metrics::registry>();
  pr::id_source ids;
  const std::int64_t now = pr::unix_ms(), old = now - std::int64_t{8} * 24 * 3600 * 1000;
  std::vector<std::string> fresh, olds, keys;
  for (int i = 0; i < 125; ++i) {
    const auto id = ids.next(i < 120 ? old + i : now);
    (i >= 120 ? fresh : olds).push_back(id);
    keys.push_back(pr::log_key(id));
  }
  const auto put_all = [](Logs& l, const std::vector<std::string>& ks) -> bulwark::task<void> {
    std::vector<bulwark::task<bulwark::version_t>> putting;
    for (const auto& k : ks) putting.push_back(l.put(k, "{}", bulwark::no_version));
    for (auto& r : co_await bulwark::detail::when_all(std::move(putting)))
      if (!r) co_return r.error();
    co_return bulwark::ok();
  };
  ASSERT_TRUE(bulwark::app::block_on(ex, put_all(logs, keys)));
  const auto erase = [](Logs& l, std::string key) -> bulwark::task<bool> { co_return co_await l.erase(key); };
  ASSERT_TRUE(bulwark::app::block_on(ex, erase(logs, pr::log_key(olds[7]))).value()); // a tombstone now
  typename pr::logs_pruner<Logs>::options o;
  o.retention = std::chrono::hours(24 * 7);
  o.page = 50;
  pr::logs_pruner<Logs> pruner(ex, logs, o, metrics);
  auto erased = bulwark::app::block_on(ex, pruner.prune_now());
  ASSERT_TRUE(erased) << erased.error();
  EXPECT_EQ(erased.value(), 120u);
  EXPECT_EQ(sample(*metrics, "predictions_logs_pruned_total"), 120);
  auto left = bulwark::app::block_on(ex, pr::all_log_ids(logs));
  ASSERT_TRUE(left) << left.error();
  std::sort(fresh.begin(), fresh.end());
  auto kept = left.value(); // the values are not predictions: all_log_ids gives their keys
  for (auto& k : kept) k = pr::log_key(k.substr(pr::log_prefix.size())).substr(pr::log_prefix.size()); // un-complement
  std::sort(kept.begin(), kept.end());
  EXPECT_EQ(kept, fresh);
  EXPECT_EQ(bulwark::app::block_on(ex, pruner.prune_now()).value(), 0u);
  pruner.start(); // a first pass at once, then every minute; stop() ends it without waiting a minute
  pruner.stop();
  // Started again after a stop: a new loop, whose first pass removes a log that aged meanwhile.
  ASSERT_TRUE(bulwark::app::block_on(ex, put_all(logs, {pr::log_key(ids.next(old + 200))})));
  pruner.start();
  EXPECT_TRUE(eventually([&] { return sample(*metrics, "predictions_logs_pruned_total") == 121; }));
  pruner.stop();
  pruner.stop(); // idempotent
}

} // namespace

TEST(PredictionsConsumer, ABatchCountsEachIdOnceInMemoryMode) {
  pr::home_thread home;
  bulwark::memory::repository logs;
  pr::memory_aggregates aggregates;
  a_batch_counts_each_id_once(home.executor(), logs, aggregates);
}

// The logs store away for longer than the bus's default retry policy (5 attempts, about 0.15 s)
// would take to park a message: the consumer group the process joins (consumer_group, the
// options `start()` subscribes with) keeps trying, so once the store is back every accepted
// prediction is counted and none was parked on the dead-letter topic. A message that is not a
// prediction is still parked at once.
TEST(PredictionsConsumer, AStoreAwayLongerThanTheDefaultRetriesParksNoPrediction) {
  pr::home_thread home;
  const auto ex = home.executor();
  bulwark::memory::event_bus bus(ex, memory_pipeline::bus_options());
  bulwark::memory::repository stored;
  bulwark::testing::faulty_repository<bulwark::memory::repository> logs(stored);
  pr::memory_aggregates aggregates;
  auto metrics = std::make_shared<bulwark::metrics::registry>();
  pr::consumer<decltype(logs), pr::memory_aggregates> out(logs, aggregates, metrics);
  pr::config c;
  c.topic = "predictions-store-away";
  auto group = pr::consumer_group(c);
  ASSERT_GT(group.retry.max_attempts, bulwark::retry_policy{}.max_attempts);
  group.retry.delays.max = 20ms; // the test's patience: the attempts, not their spacing, are the point

  auto parked = std::make_shared<std::atomic<int>>(0);
  bulwark::subscribe_options dlq;
  dlq.topic = group.dead_letter_topic_name();
  dlq.group = "test-dlq";
  auto parking = [parked](const bulwark::envelope&) -> bulwark::task<void> {
    parked->fetch_add(1);
    co_return bulwark::ok();
  };
  auto dead = bulwark::app::block_on(ex, bus.subscribe(dlq, parking));
  ASSERT_TRUE(dead) << dead.error();
  logs.faults().fail(bulwark::testing::op::put, bulwark::errc::unavailable);
  auto handler = [&out](std::span<const bulwark::envelope> batch) { return out.handle_batch(batch); };
  auto sub = bulwark::app::block_on(ex, bus.subscribe_batch(group, handler));
  ASSERT_TRUE(sub) << sub.error();

  pr::id_source ids;
  for (int i = 0; i < 5; ++i) {
    pr::accepted a{ids.next(pr::unix_ms()), pr::unix_ms(), {"Qatar", "Ecuador", i, 0, 1}};
    bulwark::message m;
    m.key = a.id;
    m.value = pr::to_json(a).dump();
    ASSERT_TRUE(bulwark::app::block_on(ex, bus.publish(c.topic, m)));
  }
  // Under the default policy each message is refused at most 6 times (its 5 attempts and a
  // batch's run) before it is parked; the five (on several partitions, tried side by side) are
  // refused more than that here.
  const auto refused_at_most_by_default = 5 * (bulwark::retry_policy{}.max_attempts + 1);
  ASSERT_TRUE(
      eventually([&] { return logs.faults().injected(bulwark::testing::op::put) > refused_at_most_by_default; }));
  EXPECT_EQ(parked->load(), 0);
  EXPECT_EQ(sample(*metrics, "predictions_consumed_total{outcome=\"counted\"}"), 0);
  logs.faults().clear(bulwark::testing::op::put); // the store is back
  ASSERT_TRUE(eventually([&] { return sample(*metrics, "predictions_consumed_total{outcome=\"counted\"}") == 5; }));
  auto live = bulwark::app::block_on(ex, aggregates.snapshot());
  ASSERT_TRUE(live) << live.error();
  EXPECT_EQ(live.value()["total"], 5) << live.value().dump();
  auto logged = bulwark::app::block_on(ex, pr::all_log_ids(stored));
  ASSERT_TRUE(logged) << logged.error();
  EXPECT_EQ(logged.value().size(), 5u);
  EXPECT_EQ(parked->load(), 0);

  bulwark::message junk;
  junk.key = "junk";
  junk.value = "not a prediction";
  ASSERT_TRUE(bulwark::app::block_on(ex, bus.publish(c.topic, junk)));
  EXPECT_TRUE(eventually([&] { return parked->load() == 1; }, 3s)); // not retried: parked at once
  EXPECT_EQ(sample(*metrics, "predictions_consumed_total{outcome=\"counted\"}"), 5);
}

TEST(PredictionsRetention, OldLogsArePrunedInMemoryMode) {
  pr::home_thread home;
  bulwark::memory::repository logs;
  old_logs_are_pruned(home.executor(), logs);
}

#ifdef PREDICTIONS_REAL_BACKENDS
// The same on the real models: one multi-row INSERT into MariaDB, one script call to Redis.
TEST(PredictionsConsumer, ABatchCountsEachIdOnceAndOldLogsArePrunedOnMysqlAndRedis) {
  if (!bulwark::test::server_env("BULWARK_MYSQL_PORT") || !bulwark::test::server_env("BULWARK_REDIS_PORT")) {
    if (std::getenv("BULWARK_REQUIRE_SERVERS")) FAIL() << "BULWARK_MYSQL_PORT or BULWARK_REDIS_PORT is not set";
    GTEST_SKIP() << "needs MariaDB and Redis (scripts/servers.sh up mysql redis)";
  }
  pr::home_thread home;
  const auto ex = home.executor();
  const std::string name = "predictions_batch_" + std::to_string(::getpid()) + "_" + std::to_string(pr::unix_ms());
  bulwark::mysql::pool pool(ex, bulwark::mysql::config::from_env());
  auto logs = bulwark::app::block_on(ex, bulwark::mysql::repository::open(pool, name));
  ASSERT_TRUE(logs) << logs.error();
  bulwark::redis::connection_options r;
  r.host = bulwark::test::server_env("BULWARK_REDIS_HOST").value_or("127.0.0.1");
  r.port = static_cast<std::uint16_t>(std::stoi(*bulwark::test::server_env("BULWARK_REDIS_PORT")));
  bulwark::redis::client redis(ex, r);
  pr::redis_aggregates aggregates(redis, name, std::chrono::minutes(5));
  a_batch_counts_each_id_once(ex, logs.value(), aggregates);
  auto pruned = bulwark::app::block_on(ex, bulwark::mysql::repository::open(pool, name + "_pruned"));
  ASSERT_TRUE(pruned) << pruned.error();
  old_logs_are_pruned(ex, pruned.value());
  const auto drop = [](bulwark::mysql::pool& p, std::string table) -> bulwark::task<void> {
    BOOST_OUTCOME_CO_TRY(l, co_await p.acquire());
    co_return co_await l->run_ddl("DROP TABLE IF EXISTS `" + table + "`");
  };
  EXPECT_TRUE(bulwark::app::block_on(ex, drop(pool, name)));
  EXPECT_TRUE(bulwark::app::block_on(ex, drop(pool, name + "_pruned")));
  const auto forget = [](bulwark::redis::client& c, std::string prefix) -> bulwark::task<void> {
    const std::string total = prefix + ":total", phases = prefix + ":phases", matches = prefix + ":matches",
                      scores = prefix + ":scores:Qatar\tEcuador";
    const std::array<std::string_view, 5> del{"DEL", total, phases, matches, scores};
    BOOST_OUTCOME_CO_TRY(co_await c.async_execute(del));
    co_return bulwark::ok();
  };
  EXPECT_TRUE(bulwark::app::block_on(ex, forget(redis, name)));
  bulwark::app::block_on(ex, redis.stop());
  bulwark::app::block_on(ex, pool.stop());
}
#endif

TEST(PredictionsPipeline, InputToLiveAndLogsInMemoryMode) {
  memory_pipeline m;
  pr::process<bulwark::memory::event_bus, bulwark::memory::repository, pr::memory_aggregates> p(
      m.c, m.home.executor(), {m.bus, m.logs, m.aggregates, "test"}, m.metrics);
  ASSERT_TRUE(p.start());
  const auto port = p.port();

  auto bad = call(port, "POST", "/input", R"({"team1":"A","team2":"A","score":"1","phase":0})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("same_team"), std::string::npos) << bad.body;
  EXPECT_NE(bad.body.find("bad_score"), std::string::npos);
  EXPECT_NE(bad.body.find("bad_phase"), std::string::npos);

  std::vector<std::string> ids;
  const char* inputs[] = {R"({"team1":"Argentina","team2":"France","score":"3-3","phase":4})",
                          R"({"team1":"Argentina","team2":"France","score":"2-1","phase":4})",
                          R"({"team1":"Morocco","team2":"Portugal","score":"1-0","phase":3})"};
  for (const char* in : inputs) {
    auto r = call(port, "POST", "/input", in);
    ASSERT_EQ(r.status, 202) << r.body;
    ids.push_back(nlohmann::json::parse(r.body)["id"].get<std::string>());
  }
  nlohmann::json live;
  ASSERT_TRUE(eventually([&] {
    live = nlohmann::json::parse(call(port, "GET", "/live").body);
    return live["total"] == 3;
  })) << live.dump();
  EXPECT_EQ(live["phases"]["4"], 2);
  EXPECT_EQ(live["phases"]["3"], 1);
  EXPECT_EQ(live["matches"][0]["team1"], "Argentina");
  EXPECT_EQ(live["matches"][0]["scores"]["3-3"], 1);

  // A redelivery of an accepted message (same id) changes nothing.
  pr::accepted again{ids[0], pr::unix_ms(), {"Argentina", "France", 3, 3, 4}};
  bulwark::message dup;
  dup.key = again.id;
  dup.value = pr::to_json(again).dump();
  ASSERT_TRUE(bulwark::app::block_on(m.home.executor(), m.bus.publish(m.c.topic, dup)));
  ASSERT_TRUE(eventually([&] {
    return m.metrics->expose().find("predictions_consumed_total{outcome=\"duplicate\"} 1") != std::string::npos;
  }));
  EXPECT_EQ(nlohmann::json::parse(call(port, "GET", "/live").body)["total"], 3);

  const auto logs = nlohmann::json::parse(call(port, "GET", "/logs?limit=2").body);
  ASSERT_EQ(logs["logs"].size(), 2u) << logs.dump();
  EXPECT_EQ(logs["logs"][0]["id"], ids[2]); // newest first
  EXPECT_EQ(logs["logs"][1]["id"], ids[1]);
  EXPECT_EQ(nlohmann::json::parse(call(port, "GET", "/logs?limit=1000").body)["logs"].size(), 3u);
  EXPECT_EQ(call(port, "GET", "/logs?limit=0").status, 400);

  const auto page = call(port, "GET", "/live", {}, "text/html,application/xhtml+xml,*/*;q=0.8");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("new EventSource('/live')"), std::string::npos);
  EXPECT_NE(call(port, "GET", "/logs", {}, "text/html").body.find("Recent predictions"), std::string::npos);
  EXPECT_EQ(call(port, "GET", "/live", {}, "image/png").status, 406);
  p.stop();
}

TEST(PredictionsPipeline, EventStreamsCarryUpdatesAndEndAtAGracefulStop) {
  memory_pipeline m;
  pr::process<bulwark::memory::event_bus, bulwark::memory::repository, pr::memory_aggregates> p(
      m.c, m.home.executor(), {m.bus, m.logs, m.aggregates, "test"}, m.metrics);
  ASSERT_TRUE(p.start());
  asio::io_context io;
  asio::ip::tcp::socket s(io);
  s.connect({asio::ip::make_address("127.0.0.1"), p.port()});
  const std::string req = "GET /live HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
  asio::write(s, asio::buffer(req));
  std::string got;
  auto read_until = [&](std::string_view what) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (got.find(what) == std::string::npos && std::chrono::steady_clock::now() < until) {
      char buf[4096];
      asio::error_code ec;
      const auto n = s.read_some(asio::buffer(buf), ec);
      if (ec) break;
      got.append(buf, n);
    }
    return got.find(what) != std::string::npos;
  };
  ASSERT_TRUE(read_until("\"total\":0")) << got; // the state at once
  EXPECT_NE(got.find("Content-Type: text/event-stream"), std::string::npos);
  EXPECT_NE(got.find("Transfer-Encoding: chunked"), std::string::npos);
  EXPECT_NE(got.find("retry: 1000"), std::string::npos);
  ASSERT_TRUE(eventually([&] { return p.live_views().open_streams() == 1; }));
  ASSERT_EQ(call(p.port(), "POST", "/input", R"({"team1":"Japan","team2":"Croatia","score":"1-1","phase":2})").status,
            202);
  ASSERT_TRUE(read_until("\"total\":1")) << got; // pushed, not polled by the client
  EXPECT_NE(got.find("event: live"), std::string::npos);

  // The graceful stop ends the stream with its last chunk long before its 5 s deadline.
  const auto stopping = std::chrono::steady_clock::now();
  std::thread stopper([&] { p.stop(); });
  EXPECT_TRUE(read_until("\r\n0\r\n\r\n")) << got;
  char byte;
  asio::error_code ec;
  s.read_some(asio::buffer(&byte, 1), ec);
  EXPECT_EQ(ec, asio::error::eof);
  stopper.join();
  EXPECT_LT(std::chrono::steady_clock::now() - stopping, 3s);
}

TEST(PredictionsEventStream, FormatsEventsAndClosesASlowClientsStream) {
  bulwark::http::event_stream::options o;
  o.max_queued_bytes = 64;
  bulwark::http::event_stream s(o);
  EXPECT_TRUE(s.send("a\nb", "live", "7"));
  auto [text, ended] = s.take();
  EXPECT_EQ(text, "event: live\nid: 7\ndata: a\ndata: b\n\n");
  EXPECT_FALSE(ended);
  EXPECT_FALSE(s.send(std::string(100, 'x'))); // more than a client left unread: closed
  EXPECT_TRUE(s.closed());
  EXPECT_FALSE(s.send("late"));
}
