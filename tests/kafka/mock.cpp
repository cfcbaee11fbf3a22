// What a real broker cannot do on cue, on librdkafka's mock cluster (rdkafka_mock.h): injected
// request errors and a moved partition leader. Plus the kafka error category's mapping.
#include <bulwark/kafka/detail/resume_hint.hpp>
#include <bulwark/kafka/event_bus.hpp>
#include <bulwark/resilience/timeout.hpp>

#include "support/error_table.hpp"
#include "support/run.hpp"

#include <asio/async_result.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka_mock.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace kafka = bulwark::kafka;
using bulwark::errc;

constexpr int16_t produce_api = 0; // the Kafka protocol's ApiKey of Produce

TEST(kafka_errors, native_codes_map_onto_bulwark_conditions) {
  EXPECT_EQ(kafka::make_error_code(RD_KAFKA_RESP_ERR__TRANSPORT), errc::unavailable);
  EXPECT_EQ(kafka::make_error_code(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN), errc::unavailable);
  EXPECT_EQ(kafka::make_error_code(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS), errc::unavailable);
  EXPECT_EQ(kafka::make_error_code(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT), errc::timeout);
  EXPECT_EQ(kafka::make_error_code(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT), errc::timeout);
  EXPECT_EQ(kafka::make_error_code(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART), errc::not_found);
  EXPECT_EQ(kafka::make_error_code(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), errc::too_large);
  EXPECT_EQ(kafka::make_error_code(RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR), errc::invalid_argument);
  EXPECT_EQ(kafka::make_error_code(RD_KAFKA_RESP_ERR__QUEUE_FULL), errc::rejected);
  EXPECT_EQ(kafka::make_error_code(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED), errc::rejected);
  EXPECT_EQ(kafka::make_error_code(RD_KAFKA_RESP_ERR_TOPIC_DELETION_DISABLED), errc::rejected);
  EXPECT_EQ(kafka::make_error_code(RD_KAFKA_RESP_ERR__PURGE_QUEUE), errc::cancelled);
  EXPECT_EQ(kafka::make_error_code(RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS), errc::duplicate);
  EXPECT_EQ(kafka::make_error_code(RD_KAFKA_RESP_ERR__BAD_MSG), errc::protocol_error);
  EXPECT_EQ(bulwark::condition_of(kafka::make_error_code(RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION)), errc{});
  EXPECT_STREQ(kafka::kafka_category().name(), "kafka");
  EXPECT_EQ(kafka::make_error_code(RD_KAFKA_RESP_ERR__TRANSPORT).message(), "Local: Broker transport failure");
}

TEST(kafka_errors, persistence_is_read_from_the_detail) {
  const auto maybe =
      kafka::make_error(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, "possibly persisted: Local: Message timed out");
  const auto never = kafka::make_error(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, "not persisted: Local: Message timed out");
  EXPECT_TRUE(kafka::possibly_persisted(maybe));
  EXPECT_FALSE(kafka::possibly_persisted(never));
  EXPECT_FALSE(kafka::possibly_persisted(bulwark::error(errc::unavailable)));
}

TEST(kafka_config, parse_properties_reads_a_command_lines_name_value_list) {
  auto parsed = bulwark::kafka::parse_properties("linger.ms=20,,sasl.jaas.config=a=b,acks=");
  ASSERT_TRUE(parsed) << parsed.error().message();
  const std::vector<std::pair<std::string, std::string>> expected{
      {"linger.ms", "20"}, {"sasl.jaas.config", "a=b"}, {"acks", ""}};
  EXPECT_EQ(parsed.value(), expected);
  EXPECT_TRUE(bulwark::kafka::parse_properties("").value().empty());
  for (std::string_view bad : {"linger.ms", "acks=all,=1", "acks=all,batch.size"}) {
    auto refused = bulwark::kafka::parse_properties(bad);
    ASSERT_FALSE(refused) << bad;
    EXPECT_EQ(refused.error(), bulwark::errc::invalid_argument);
    EXPECT_NE(refused.error().detail().find("is not name=value"), std::string_view::npos) << refused.error().detail();
  }
}

TEST(kafka_config, parse_linger_ms_takes_librdkafkas_range_and_nothing_else) {
  EXPECT_EQ(bulwark::kafka::parse_linger_ms("0").value(), std::chrono::milliseconds(0));
  EXPECT_EQ(bulwark::kafka::parse_linger_ms("20").value(), std::chrono::milliseconds(20));
  EXPECT_EQ(bulwark::kafka::parse_linger_ms("900000").value(), std::chrono::milliseconds(900000));
  for (std::string_view bad : {"", "-1", "+5", "900001", "20ms", " 20", "1e3", "99999999999999999999"}) {
    auto refused = bulwark::kafka::parse_linger_ms(bad);
    ASSERT_FALSE(refused) << bad;
    EXPECT_EQ(refused.error(), bulwark::errc::invalid_argument);
    EXPECT_NE(refused.error().detail().find("from 0 to 900000"), std::string_view::npos) << refused.error().detail();
  }
}

TEST(kafka_errors, bad_configuration_is_invalid_argument) {
  kafka::config cfg;
  cfg.bootstrap_servers = "127.0.0.1:1";
  cfg.properties.emplace_back("no.such.property", "1");
  auto p = kafka::producer::create(cfg);
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error(), errc::invalid_argument);
  EXPECT_NE(p.error().message().find("no.such.property"), std::string::npos);
}

// kafka::producer prefetches these frames a few delivery reports ahead of resuming them; an
// Asio whose internals moved would leave the hint with the bottom frame only, and per-message
// publish with 50,000 in flight would lose its main saving without any test failing but this.
TEST(kafka_resume_hint, names_the_frames_a_use_awaitable_completion_resumes) {
  asio::io_context ctx;
  kafka::detail::resume_hint hint;
  const void* bottom = nullptr;
  const char* local_address = nullptr;
  auto operation = [&]() -> asio::awaitable<int> {
    return asio::async_initiate<decltype(asio::use_awaitable), void(int)>(
        [&](auto handler) {
          hint = kafka::detail::hint_of(handler);
          bottom = handler.entry_point();
          std::move(handler)(7);
        },
        asio::use_awaitable);
  };
  int got = 0;
  auto awaiting = [&]() -> asio::awaitable<void> {
    int local = 0; // lives across the suspension: in this coroutine's frame
    local = co_await operation();
    local_address = reinterpret_cast<const char*>(&local);
    got = local;
  };
  asio::co_spawn(ctx, awaiting(), asio::detached);
  ctx.run();
  ASSERT_EQ(got, 7);
  hint.prefetch(); // harmless on any address, even freed frames
  EXPECT_EQ(hint.frames[0], bottom);
#if ASIO_VERSION >= 102200 && ASIO_VERSION < 103100
  ASSERT_NE(hint.frames[1], nullptr);
  ASSERT_NE(hint.frames[2], nullptr);
  EXPECT_NE(hint.frames[1], hint.frames[0]);
  EXPECT_NE(hint.frames[2], hint.frames[1]);
  const auto* awaiting_frame = static_cast<const char*>(hint.frames[2]);
  EXPECT_GT(local_address, awaiting_frame) << "the third frame is the awaiting coroutine's";
  EXPECT_LT(local_address - awaiting_frame, 1024) << "the third frame is the awaiting coroutine's";
#endif
}

/// A 3-broker mock cluster living in this process for the test's duration.
class kafka_mock : public ::testing::Test {
protected:
  void SetUp() override {
    char errstr[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr);
    host_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    ASSERT_NE(host_, nullptr) << errstr;
    cluster_ = rd_kafka_mock_cluster_new(host_, 3);
    ASSERT_NE(cluster_, nullptr);
    ASSERT_EQ(rd_kafka_mock_topic_create(cluster_, topic_.c_str(), 1, 3), RD_KAFKA_RESP_ERR_NO_ERROR);
    cfg_.bootstrap_servers = rd_kafka_mock_cluster_bootstraps(cluster_);
    cfg_.delivery_timeout = 10s;
    if (const char* d = std::getenv("BULWARK_KAFKA_DEBUG"); d && *d) cfg_.properties.emplace_back("debug", d);
  }
  void TearDown() override {
    if (cluster_) rd_kafka_mock_cluster_destroy(cluster_);
    if (host_) rd_kafka_destroy(host_);
  }
  bulwark::result<bulwark::delivery> publish(kafka::producer& p, std::string value) {
    auto op = [&]() -> bulwark::task<bulwark::delivery> {
      bulwark::message m{"key", std::move(value), {{"h", "v"}}};
      co_return co_await p.publish(topic_, std::move(m));
    };
    return bulwark::test::run(ctx_, op(), 30s);
  }

  /// The mock cluster calls topic_ unknown from now on, and the producer has heard it: its
  /// own metadata request got that answer (as from a broker that has not caught up).
  void make_topic_unknown(kafka::producer& p) {
    rd_kafka_mock_topic_set_error(cluster_, topic_.c_str(), RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(p.native_handle(), topic_.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    ASSERT_EQ(rd_kafka_metadata(p.native_handle(), 0, rkt, &md, 5000), RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(md->topic_cnt, 1);
    EXPECT_EQ(md->topics[0].err, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
  }

  asio::io_context ctx_;
  rd_kafka_t* host_ = nullptr;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
  std::string topic_ = "mocked";
  kafka::config cfg_;
};

// Retriable Produce errors (leader moved, too few replicas) are retried inside librdkafka:
// the publish succeeds, and the idempotent producer writes the message once (offset 0, 1).
TEST_F(kafka_mock, retriable_produce_errors_are_retried_without_duplicates) {
  auto p = kafka::producer::create(cfg_).value();
  ASSERT_TRUE(publish(p, "warm-up").has_value()); // PID acquired, metadata known
  rd_kafka_mock_push_request_errors(cluster_, produce_api, 3, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                    RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                    RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND);
  auto first = publish(p, "one");
  ASSERT_TRUE(first.has_value()) << first.error();
  EXPECT_EQ(first.value().offset, 1);
  auto second = publish(p, "two");
  ASSERT_TRUE(second.has_value()) << second.error();
  EXPECT_EQ(second.value().offset, 2) << "a retried message was written twice";
  bulwark::test::run(ctx_, p.stop());
}

/// librdkafka's effective value of `name` on a handle.
std::string handle_property(rd_kafka_t* rk, const char* name) {
  char value[64];
  std::size_t size = sizeof value;
  if (rd_kafka_conf_get(rd_kafka_conf(rk), name, value, &size) != RD_KAFKA_CONF_OK) return "(unknown)";
  return value;
}

// config::idempotent: on by default; off, the producer keeps acks=all and 5 requests in flight
// per broker (not librdkafka's 1,000,000) and still delivers through retried errors.
TEST_F(kafka_mock, idempotence_is_on_by_default_and_can_be_turned_off) {
  auto idempotent = kafka::producer::create(cfg_).value();
  EXPECT_EQ(handle_property(idempotent.native_handle(), "enable.idempotence"), "true");
  EXPECT_EQ(handle_property(idempotent.native_handle(), "max.in.flight.requests.per.connection"), "5");
  bulwark::test::run(ctx_, idempotent.stop());

  cfg_.idempotent = false;
  auto plain = kafka::producer::create(cfg_).value();
  EXPECT_EQ(handle_property(plain.native_handle(), "enable.idempotence"), "false");
  EXPECT_EQ(handle_property(plain.native_handle(), "acks"), "-1"); // all
  EXPECT_EQ(handle_property(plain.native_handle(), "max.in.flight.requests.per.connection"), "5");
  ASSERT_TRUE(publish(plain, "warm-up").has_value());
  rd_kafka_mock_push_request_errors(cluster_, produce_api, 2, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                    RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
  auto r = publish(plain, "retried");
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r.value().offset, 1);
  bulwark::test::run(ctx_, plain.stop());
}

// A permanent Produce error fails the publish with the broker's code mapped onto a condition,
// and the message is reported as not written.
TEST_F(kafka_mock, permanent_produce_error_fails_the_publish) {
  auto p = kafka::producer::create(cfg_).value();
  ASSERT_TRUE(publish(p, "warm-up").has_value());
  rd_kafka_mock_push_request_errors(cluster_, produce_api, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
  auto r = publish(p, "refused");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), errc::too_large) << r.error();
  EXPECT_EQ(r.error().code(), kafka::make_error_code(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE));
  bulwark::test::run(ctx_, p.stop());
}

// The partition leader moves to another broker between two publishes; the producer follows.
TEST_F(kafka_mock, publish_follows_a_moved_partition_leader) {
  auto p = kafka::producer::create(cfg_).value();
  ASSERT_TRUE(publish(p, "before").has_value());
  ASSERT_EQ(rd_kafka_mock_partition_set_leader(cluster_, topic_.c_str(), 0, 2), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_mock_push_request_errors(cluster_, produce_api, 1, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
  auto r = publish(p, "after");
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r.value().offset, 1);
  bulwark::test::run(ctx_, p.stop());
}

// A broker that has not caught up with the cluster's metadata answers "unknown topic" for a
// topic that exists (KRaft, right after the topic was created or the broker restarted), and
// librdkafka then fails every queued message of the topic at once. The producer produces them
// again once the topic is known, each exactly once and in publish order.
TEST_F(kafka_mock, a_topic_briefly_reported_unknown_loses_and_reorders_nothing) {
  cfg_.linger = 500ms;
  auto p = kafka::producer::create(cfg_).value();
  ASSERT_TRUE(publish(p, "warm-up").has_value());
  // The first wave waits in librdkafka's queue (a long linger) when the topic turns unknown:
  // librdkafka fails it, and the producer takes it back. The topic comes back 1.5 s later.
  using clock = std::chrono::steady_clock;
  std::atomic<clock::time_point> healed_at{clock::time_point::max()};
  std::jthread heal([&] {
    std::this_thread::sleep_for(1500ms);
    healed_at = clock::now(); // before the topic is back: nothing can complete ahead of it
    rd_kafka_mock_topic_set_error(cluster_, topic_.c_str(), RD_KAFKA_RESP_ERR_NO_ERROR);
  });
  // Eight waves of ten, 300 ms apart: five while the topic is unknown, three after it is
  // back, while the earlier ones may still wait for their next attempt.
  constexpr std::size_t n = 80;
  std::vector<bulwark::result<bulwark::delivery>> results(n, bulwark::error(errc::cancelled));
  std::vector<clock::time_point> done_at(n);
  std::vector<clock::time_point> sent_at(n);
  std::size_t done = 0;
  auto one = [&](std::size_t i) -> asio::awaitable<void> {
    bulwark::message m{"key", "v" + std::to_string(i), {{"h", "v"}}};
    sent_at[i] = clock::now();
    results[i] = co_await p.publish(topic_, std::move(m));
    done_at[i] = clock::now();
    ++done;
  };
  auto all = [&]() -> asio::awaitable<void> {
    for (std::size_t i = 0; i < n; ++i) {
      asio::co_spawn(ctx_, one(i), asio::detached);
      if (i == 9) { // the first wave is in librdkafka's queue once its coroutines ran
        asio::steady_timer t(ctx_, 0ms);
        co_await t.async_wait(asio::use_awaitable);
        make_topic_unknown(p);
      }
      if (i % 10 == 9) {
        asio::steady_timer t(ctx_, 300ms);
        co_await t.async_wait(asio::use_awaitable);
      }
    }
    while (done < n) {
      asio::steady_timer t(ctx_, 10ms);
      co_await t.async_wait(asio::use_awaitable);
    }
  };
  bulwark::test::run(ctx_, all(), 30s);
  heal.join();
  std::size_t waited = 0;
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_TRUE(results[i].has_value()) << "message " << i << ": " << results[i].error();
    EXPECT_EQ(results[i].value().offset, static_cast<std::int64_t>(i + 1)) << "message " << i << " out of order";
    if (sent_at[i] < healed_at.load()) {
      EXPECT_GE(done_at[i], healed_at.load()) << "message " << i << " was written while its topic was unknown";
      ++waited;
    }
  }
  EXPECT_GE(waited, 30u) << "the topic was not unknown for long: the test proved nothing";
  bulwark::test::run(ctx_, p.stop());
}

// A topic that stays unknown fails its publishes with errc::not_found once the delivery
// timeout has passed, as not written.
TEST_F(kafka_mock, a_topic_that_stays_unknown_fails_after_the_delivery_timeout) {
  cfg_.delivery_timeout = 2s;
  auto p = kafka::producer::create(cfg_).value();
  ASSERT_TRUE(publish(p, "warm-up").has_value());
  make_topic_unknown(p);
  const auto start = std::chrono::steady_clock::now();
  auto r = publish(p, "lost");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), errc::not_found) << r.error();
  EXPECT_FALSE(kafka::possibly_persisted(r.error())) << r.error();
  EXPECT_GE(elapsed, 1900ms);
  EXPECT_LT(elapsed, 6s);
  bulwark::test::run(ctx_, p.stop());
}

// stop() gives up on messages that cannot be delivered within config::stop_timeout: they fail
// with errc::cancelled instead of hanging the caller.
TEST_F(kafka_mock, stop_purges_what_it_cannot_flush_in_time) {
  cfg_.stop_timeout = 300ms;
  auto p = kafka::producer::create(cfg_).value();
  ASSERT_TRUE(publish(p, "warm-up").has_value());
  for (int b = 1; b <= 3; ++b) rd_kafka_mock_broker_set_down(cluster_, b);
  bulwark::result<bulwark::delivery> pending = bulwark::error(errc::timeout);
  bool stopped = false;
  auto op = [&]() -> asio::awaitable<void> {
    bulwark::message m{"key", "stuck", {}};
    pending = co_await p.publish(topic_, std::move(m));
  };
  auto stop = [&]() -> asio::awaitable<void> {
    co_await p.stop();
    stopped = true;
  };
  asio::co_spawn(ctx_, op(), asio::detached);
  const auto start = std::chrono::steady_clock::now();
  bulwark::test::run(ctx_, stop(), 20s);
  ctx_.restart();
  ctx_.run_for(100ms);
  EXPECT_TRUE(stopped);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 8s);
  ASSERT_FALSE(pending.has_value());
  EXPECT_EQ(pending.error(), errc::cancelled) << pending.error();
  auto late = publish(p, "late");
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error(), errc::rejected);
}

// Publishes from several executors through one producer, their reports served by one poll
// (one partition, spawned together): each completes on its own executor, a strand's inside its
// strand and another context's on that context's thread, however the reports interleave
// (the hand-over posts each run of reports that share an executor to that executor).
TEST_F(kafka_mock, each_publish_completes_on_its_own_executor) {
  auto p = kafka::producer::create(cfg_).value();
  ASSERT_TRUE(publish(p, "warm-up").has_value());
  asio::io_context other;
  auto other_work = asio::make_work_guard(other);
  std::thread other_thread([&] { other.run(); });
  auto strand = asio::make_strand(ctx_);
  constexpr int n = 90; // a third from each executor, interleaved
  std::atomic<int> done{0}, failed{0}, misplaced{0};
  auto one = [&](int i, std::function<bool()> on_own_executor) -> asio::awaitable<void> {
    bulwark::message m{"key", "v" + std::to_string(i), {}};
    auto r = co_await p.publish(topic_, std::move(m));
    if (!r) ++failed;
    if (!on_own_executor()) ++misplaced;
    ++done;
  };
  const std::function<bool()> on_context = [&] {
    return ctx_.get_executor().running_in_this_thread() && !strand.running_in_this_thread();
  };
  const std::function<bool()> on_strand = [&] { return strand.running_in_this_thread(); };
  const std::function<bool()> on_other = [&] { return other.get_executor().running_in_this_thread(); };
  auto all = [&]() -> asio::awaitable<void> {
    for (int i = 0; i < n; ++i) {
      if (i % 3 == 0) asio::co_spawn(ctx_, one(i, on_context), asio::detached);
      if (i % 3 == 1) asio::co_spawn(strand, one(i, on_strand), asio::detached);
      if (i % 3 == 2) asio::co_spawn(other, one(i, on_other), asio::detached);
    }
    co_await bulwark::test::eventually([&] { return done.load() == n; }, 20s);
  };
  bulwark::test::run(ctx_, all(), 30s);
  other_work.reset();
  other_thread.join();
  EXPECT_EQ(done.load(), n);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(misplaced.load(), 0) << "completions ran on another executor than their publisher's";
  bulwark::test::run(ctx_, p.stop());
}

// Lifetimes of publishes in flight (the brokers down, so none is acknowledged): a caller that
// gives up (with_timeout, or a cancelled coroutine) leaves its publish in flight, and dropping
// the bus, without stop(), completes every publish exactly once with errc::cancelled on the
// caller's executor; the context then runs out of work (ASan/UBSan check the frames and
// completion objects freed on the way).
TEST_F(kafka_mock, a_bus_dropped_with_publishes_in_flight_completes_each_once) {
  auto bus = std::make_optional(kafka::event_bus::create(ctx_.get_executor(), cfg_).value());
  ASSERT_TRUE(publish(bus->producer(), "warm-up").has_value());
  for (int b = 1; b <= 3; ++b) rd_kafka_mock_broker_set_down(cluster_, b);
  constexpr int n = 64;
  std::vector<std::optional<bulwark::result<bulwark::delivery>>> results(n);
  std::vector<int> completions(n, 0);
  std::vector<asio::cancellation_signal> signals(n);
  auto one = [&](int i) -> bulwark::task<bulwark::delivery> {
    bulwark::message m;
    m.key = "key-" + std::to_string(i);
    m.value = std::string("in flight");
    m.headers.push_back(bulwark::header{std::string("h"), std::string("v")});
    auto r = co_await bus->publish(topic_, std::move(m));
    ++completions[static_cast<std::size_t>(i)];
    co_return r;
  };
  for (int i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    if (i % 4 == 0) // a caller that stops waiting after 50 ms; its publish goes on
      bulwark::test::spawn_into(ctx_, bulwark::with_timeout(one(i), 50ms, "publish"), &results[k]);
    else
      bulwark::test::spawn_into(ctx_, one(i), &results[k], signals[k].slot());
  }
  ctx_.restart();
  ctx_.run_for(300ms);
  EXPECT_EQ(bus->producer().in_flight(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    if (i % 4 == 0) {
      ASSERT_TRUE(results[k]) << i;
      EXPECT_EQ(results[k]->error(), errc::timeout) << results[k]->error();
    } else {
      EXPECT_FALSE(results[k]) << i;
      if (i % 2 == 1) signals[k].emit(asio::cancellation_type::terminal); // ignored: the message is out
    }
  }
  ctx_.restart();
  ctx_.run_for(100ms);
  for (int i = 1; i < n; ++i) EXPECT_EQ(completions[static_cast<std::size_t>(i)], 0) << i;
  bus.reset(); // no stop(): the producer purges its queue and hands every publish its report
  ctx_.restart();
  const auto start = std::chrono::steady_clock::now();
  ctx_.run_for(20s); // returns once nothing waits any more
  EXPECT_TRUE(ctx_.stopped()) << "a publish still holds the context";
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  for (int i = 0; i < n; ++i) {
    const auto k = static_cast<std::size_t>(i);
    EXPECT_EQ(completions[k], 1) << i;
    if (i % 4 == 0) continue; // its caller had its answer already
    ASSERT_TRUE(results[k]) << i;
    ASSERT_FALSE(results[k]->has_value()) << i;
    EXPECT_EQ(results[k]->error(), errc::cancelled) << results[k]->error();
  }
}

} // namespace

// librdkafka owns the codes and texts, bulwark the mapping: each row's name is librdkafka's own
// name for that value, and the docs row shows librdkafka's text.
TEST(kafka_errors, the_table_matches_librdkafka_the_category_and_docs_errors_md) {
  bulwark::test::expect_category_matches_table_and_docs(kafka::kafka_category(), kafka::kafka_error_rows,
                                                        RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION);
  for (const auto& row : kafka::kafka_error_rows) {
    const auto code = static_cast<rd_kafka_resp_err_t>(row.value);
    EXPECT_EQ(row.name, rd_kafka_err2name(code)) << row.value;
    EXPECT_TRUE(row.message.empty()) << row.name;
    EXPECT_EQ(kafka::make_error_code(code).message(), rd_kafka_err2str(code));
  }
}
