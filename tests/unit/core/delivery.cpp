// detail::deliver and detail::deliver_batch, the one implementation of the event-bus delivery
// rules (retry under the retry_policy, then the dead-letter topic, then commit; a failed batch
// delivered again one message at a time), tested on their own: the waits between attempts are
// recorded instead of slept, so every delay is checked exactly.
#include <bulwark/detail/delivery.hpp>

#include "support/run.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using bulwark::envelope;
using bulwark::errc;
using bulwark::error;
using bulwark::header;
using bulwark::message;
using bulwark::task;
using bulwark::detail::delivery_outcome;

namespace {

// A bus stand-in: records every park and every wait; parks fail while park_failures > 0;
// waits report "interrupted" once interrupt_after_waits waits were made.
struct fake_bus {
  std::vector<std::pair<std::string, message>> parked;
  int park_failures = 0;
  std::vector<std::chrono::milliseconds> waits;
  int interrupt_after_waits = -1;
  bool stop = false;
};

struct delivery_test : ::testing::Test {
  asio::io_context ctx;
  fake_bus bus;
  std::vector<header> headers{{"origin", "test"}};
  envelope e{"orders", 2, 41, 1, "key-1", "payload", headers};
  bulwark::retry_policy policy{{10ms, 1000ms, 2.0, false}, 3, {}};
  std::vector<unsigned> attempts_seen;
  // A member, not a literal: deliver() keeps a reference to it until its task completes.
  const std::string dead_letter_topic = "orders.dlq";

  // Runs the awaitable `start(park, wait, interrupted, rng)` makes against the fake bus.
  template <class Start> auto with_bus(Start start) {
    auto park = [this](const std::string& topic, message m) -> task<bulwark::delivery> {
      if (bus.park_failures > 0) {
        --bus.park_failures;
        co_return error(errc::unavailable, "dead-letter topic down");
      }
      bus.parked.emplace_back(topic, std::move(m));
      co_return bulwark::delivery{0, static_cast<std::int64_t>(bus.parked.size() - 1)};
    };
    auto wait = [this](std::chrono::milliseconds d) -> asio::awaitable<bool> {
      bus.waits.push_back(d);
      if (bus.interrupt_after_waits >= 0 && static_cast<int>(bus.waits.size()) > bus.interrupt_after_waits) {
        bus.stop = true;
        co_return false;
      }
      co_return true;
    };
    auto interrupted = [this] { return bus.stop; };
    std::mt19937_64 rng(7);
    return bulwark::test::run(ctx, start(park, wait, interrupted, rng));
  }

  delivery_outcome deliver(const bulwark::message_handler& handler) {
    return with_bus([&](auto& park, auto& wait, auto& interrupted, auto& rng) {
      return bulwark::detail::deliver(e, handler, policy, dead_letter_topic, park, wait, interrupted, rng);
    });
  }

  // deliver_batch over `batch`: how many of its messages (a prefix) are done.
  std::size_t deliver_batch(const bulwark::batch_handler& handler, const std::vector<envelope>& batch) {
    return with_bus([&](auto& park, auto& wait, auto& interrupted, auto& rng) {
      return bulwark::detail::deliver_batch(batch, handler, policy, dead_letter_topic, park, wait, interrupted, rng);
    });
  }

  // A handler that fails (with `why`) until attempt `succeed_at`, recording each attempt.
  bulwark::message_handler failing_until(unsigned succeed_at, error why = error(errc::unavailable, "db down")) {
    return [this, succeed_at, why](const envelope& m) -> task<void> {
      attempts_seen.push_back(m.attempt);
      if (m.attempt < succeed_at) co_return why;
      co_return bulwark::ok();
    };
  }

  std::map<std::string, std::string> dead_headers(std::size_t i = 0) {
    std::map<std::string, std::string> out;
    for (const auto& h : bus.parked.at(i).second.headers) out[h.name] = h.value;
    return out;
  }
};

TEST_F(delivery_test, success_commits_at_the_first_attempt_without_waiting) {
  EXPECT_EQ(deliver(failing_until(1)), delivery_outcome::commit);
  EXPECT_EQ(attempts_seen, (std::vector<unsigned>{1}));
  EXPECT_TRUE(bus.waits.empty());
  EXPECT_TRUE(bus.parked.empty());
}

TEST_F(delivery_test, failures_are_retried_after_the_backoff_delays) {
  EXPECT_EQ(deliver(failing_until(3)), delivery_outcome::commit);
  EXPECT_EQ(attempts_seen, (std::vector<unsigned>{1, 2, 3}));
  EXPECT_EQ(bus.waits, (std::vector<std::chrono::milliseconds>{10ms, 20ms}));
  EXPECT_TRUE(bus.parked.empty());
}

TEST_F(delivery_test, the_last_failure_parks_a_dead_letter_with_its_headers_and_commits) {
  EXPECT_EQ(deliver(failing_until(100)), delivery_outcome::commit);
  EXPECT_EQ(attempts_seen, (std::vector<unsigned>{1, 2, 3})) << "max_attempts counts the first attempt";
  EXPECT_EQ(bus.waits, (std::vector<std::chrono::milliseconds>{10ms, 20ms}));
  ASSERT_EQ(bus.parked.size(), 1u);
  EXPECT_EQ(bus.parked[0].first, "orders.dlq");
  EXPECT_EQ(bus.parked[0].second.key, "key-1");
  EXPECT_EQ(bus.parked[0].second.value, "payload");
  auto h = dead_headers();
  EXPECT_EQ(h["origin"], "test") << "the original headers are kept";
  EXPECT_EQ(h[std::string(bulwark::dead_letter_origin_topic)], "orders");
  EXPECT_EQ(h[std::string(bulwark::dead_letter_origin_partition)], "2");
  EXPECT_EQ(h[std::string(bulwark::dead_letter_origin_offset)], "41");
  EXPECT_EQ(h[std::string(bulwark::dead_letter_attempts)], "3");
  EXPECT_NE(h[std::string(bulwark::dead_letter_error)].find("db down"), std::string::npos);
}

TEST_F(delivery_test, an_error_the_policy_does_not_retry_is_parked_at_once) {
  EXPECT_EQ(deliver(failing_until(100, error(errc::invalid_argument, "cannot parse"))), delivery_outcome::commit);
  EXPECT_EQ(attempts_seen, (std::vector<unsigned>{1}));
  EXPECT_TRUE(bus.waits.empty());
  ASSERT_EQ(bus.parked.size(), 1u);
  EXPECT_EQ(dead_headers()[std::string(bulwark::dead_letter_attempts)], "1");
}

TEST_F(delivery_test, retry_if_chooses_which_errors_retry) {
  policy.retry_if = [](const error& why) { return why == errc::conflict; };
  EXPECT_EQ(deliver(failing_until(100, error(errc::unavailable, "down"))), delivery_outcome::commit);
  EXPECT_EQ(attempts_seen, (std::vector<unsigned>{1}));
  attempts_seen.clear();
  bus.parked.clear();
  EXPECT_EQ(deliver(failing_until(2, error(errc::conflict, "lost the race"))), delivery_outcome::commit);
  EXPECT_EQ(attempts_seen, (std::vector<unsigned>{1, 2}));
  EXPECT_TRUE(bus.parked.empty());
}

TEST_F(delivery_test, a_failing_park_is_retried_with_backoff_until_it_succeeds) {
  policy.max_attempts = 1;
  bus.park_failures = 3;
  EXPECT_EQ(deliver(failing_until(100)), delivery_outcome::commit);
  ASSERT_EQ(bus.parked.size(), 1u);
  EXPECT_EQ(bus.waits, (std::vector<std::chrono::milliseconds>{10ms, 20ms, 40ms}));
}

TEST_F(delivery_test, an_interrupted_wait_abandons_the_message) {
  bus.interrupt_after_waits = 1;
  EXPECT_EQ(deliver(failing_until(100)), delivery_outcome::abandon);
  EXPECT_EQ(attempts_seen, (std::vector<unsigned>{1, 2}));
  EXPECT_TRUE(bus.parked.empty()) << "an interrupted message is not dead-lettered";
}

TEST_F(delivery_test, an_interrupted_wait_for_a_park_abandons_the_message) {
  policy.max_attempts = 1;
  bus.park_failures = 100;
  bus.interrupt_after_waits = 2;
  EXPECT_EQ(deliver(failing_until(100)), delivery_outcome::abandon);
  EXPECT_EQ(bus.waits.size(), 3u) << "no park retried forever once interrupted";
  EXPECT_TRUE(bus.parked.empty());
}

TEST_F(delivery_test, a_failure_after_an_interruption_abandons_without_retry_or_park) {
  auto handler = [this](const envelope& m) -> task<void> {
    attempts_seen.push_back(m.attempt);
    bus.stop = true; // a stop arrived while the handler ran, and cancelled it
    co_return error(errc::cancelled, "cancelled");
  };
  EXPECT_EQ(deliver(handler), delivery_outcome::abandon);
  EXPECT_EQ(attempts_seen, (std::vector<unsigned>{1}));
  EXPECT_TRUE(bus.waits.empty());
  EXPECT_TRUE(bus.parked.empty());
}

TEST_F(delivery_test, a_success_during_an_interruption_still_commits) {
  auto handler = [this](const envelope&) -> task<void> {
    bus.stop = true; // the drain: the handler in flight finishes and is committed
    co_return bulwark::ok();
  };
  EXPECT_EQ(deliver(handler), delivery_outcome::commit);
}

TEST_F(delivery_test, exceptions_of_any_type_are_failures) {
  policy.max_attempts = 3;
  auto handler = [this](const envelope& m) -> task<void> {
    attempts_seen.push_back(m.attempt);
    if (m.attempt == 1) throw std::runtime_error("boom");
    if (m.attempt == 2) throw 42;
    co_return bulwark::ok();
  };
  EXPECT_EQ(deliver(handler), delivery_outcome::commit);
  EXPECT_EQ(attempts_seen, (std::vector<unsigned>{1, 2, 3}));

  attempts_seen.clear();
  policy.max_attempts = 1;
  auto throws = [](const envelope&) -> task<void> {
    throw std::runtime_error("boom");
    co_return bulwark::ok();
  };
  EXPECT_EQ(deliver(throws), delivery_outcome::commit);
  ASSERT_EQ(bus.parked.size(), 1u);
  EXPECT_EQ(dead_headers()[std::string(bulwark::dead_letter_error)].find("handler threw: boom") != std::string::npos,
            true);
}

TEST(retry_policy, counts_the_first_attempt_and_retries_all_but_permanent_errors) {
  bulwark::retry_policy p;
  p.max_attempts = 3;
  EXPECT_TRUE(p.retries(error(errc::unavailable, ""), 1));
  EXPECT_TRUE(p.retries(error(errc::timeout, ""), 2));
  EXPECT_FALSE(p.retries(error(errc::unavailable, ""), 3));
  EXPECT_FALSE(p.retries(error(errc::invalid_argument, ""), 1));
  EXPECT_FALSE(p.retries(error(errc::too_large, ""), 1));
  EXPECT_FALSE(p.retries(error(errc::declined, "not enough stock"), 1));
  EXPECT_TRUE(p.retries(error(errc::conflict, ""), 1));
  p.max_attempts = 0;
  EXPECT_EQ(p.attempts(), 1u);
  EXPECT_FALSE(p.retries(error(errc::unavailable, ""), 1));
}

} // namespace

// --- deliver_batch ---------------------------------------------------------------------------

struct batch_delivery_test : delivery_test {
  // Five consecutive messages of partition 2, offsets 40..44, values m0..m4.
  std::vector<std::string> values{"m0", "m1", "m2", "m3", "m4"};
  std::vector<envelope> batch;
  std::vector<std::vector<std::string>> calls; // the values of each handler call, in order
  batch_delivery_test() {
    for (std::size_t i = 0; i < values.size(); ++i)
      batch.push_back({"orders", 2, 40 + static_cast<std::int64_t>(i), 1, "key-1", values[i], headers});
  }
  // A batch handler that records each call and fails every call that holds `poison` (with
  // errc::unavailable, or by throwing when `throws`).
  bulwark::batch_handler failing_on(std::string poison, bool throws = false) {
    return [this, poison, throws](std::span<const envelope> got) -> task<void> {
      std::vector<std::string> seen;
      bool bad = false;
      for (const auto& m : got) {
        seen.emplace_back(m.value);
        bad = bad || m.value == poison;
        attempts_seen.push_back(m.attempt);
      }
      calls.push_back(std::move(seen));
      if (bad && throws) throw std::runtime_error("poison");
      if (bad) co_return error(errc::unavailable, "cannot apply " + poison);
      co_return bulwark::ok();
    };
  }
  using values_t = std::vector<std::vector<std::string>>;
};

TEST_F(batch_delivery_test, a_successful_batch_is_one_call_and_commits_all) {
  EXPECT_EQ(deliver_batch(failing_on("none"), batch), 5u);
  EXPECT_EQ(calls, (values_t{{"m0", "m1", "m2", "m3", "m4"}}));
  EXPECT_TRUE(bus.waits.empty());
  EXPECT_TRUE(bus.parked.empty());
}

TEST_F(batch_delivery_test, a_failed_batch_goes_one_at_a_time_and_only_the_poison_is_parked) {
  EXPECT_EQ(deliver_batch(failing_on("m2"), batch), 5u);
  EXPECT_EQ(calls, (values_t{{"m0", "m1", "m2", "m3", "m4"}, {"m0"}, {"m1"}, {"m2"}, {"m2"}, {"m2"}, {"m3"}, {"m4"}}));
  EXPECT_EQ(attempts_seen, (std::vector<unsigned>{1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 1, 1}))
      << "the batch's messages are attempt 1, the one-at-a-time run counts the poison's retries";
  EXPECT_EQ(bus.waits, (std::vector<std::chrono::milliseconds>{10ms, 20ms}));
  ASSERT_EQ(bus.parked.size(), 1u);
  EXPECT_EQ(bus.parked[0].second.value, "m2");
  EXPECT_EQ(dead_headers()[std::string(bulwark::dead_letter_origin_offset)], "42");
  EXPECT_EQ(dead_headers()[std::string(bulwark::dead_letter_attempts)], "3");
}

TEST_F(batch_delivery_test, a_batch_handler_that_throws_fails_the_batch) {
  policy.max_attempts = 1;
  EXPECT_EQ(deliver_batch(failing_on("m4", true), batch), 5u);
  EXPECT_EQ(calls.size(), 6u) << "the batch, then its five messages one by one";
  ASSERT_EQ(bus.parked.size(), 1u);
  EXPECT_EQ(bus.parked[0].second.value, "m4");
  EXPECT_NE(dead_headers()[std::string(bulwark::dead_letter_error)].find("handler threw: poison"), std::string::npos);
}

TEST_F(batch_delivery_test, a_batch_of_one_is_delivered_as_one_message) {
  batch.resize(1);
  EXPECT_EQ(deliver_batch(failing_on("m0"), batch), 1u);
  EXPECT_EQ(calls, (values_t{{"m0"}, {"m0"}, {"m0"}})) << "no extra batch run before the retries";
  EXPECT_EQ(attempts_seen, (std::vector<unsigned>{1, 2, 3}));
  ASSERT_EQ(bus.parked.size(), 1u);
}

TEST_F(batch_delivery_test, a_batch_failing_after_an_interruption_is_abandoned_whole) {
  auto handler = [this](std::span<const envelope> got) -> task<void> {
    calls.emplace_back(got.size(), "x");
    bus.stop = true; // a stop arrived while the batch ran, and cancelled it
    co_return error(errc::cancelled, "cancelled");
  };
  EXPECT_EQ(deliver_batch(handler, batch), 0u);
  EXPECT_EQ(calls.size(), 1u) << "no message of an interrupted batch is run again";
  EXPECT_TRUE(bus.parked.empty());
}

TEST_F(batch_delivery_test, an_interruption_between_two_single_deliveries_commits_the_ones_before) {
  auto poison = failing_on("m1");
  auto handler = [this, poison](std::span<const envelope> got) -> task<void> {
    if (got.size() == 1 && got[0].value == "m2") bus.stop = true; // the stop comes while m2 runs
    co_return co_await poison(got);
  };
  policy.max_attempts = 1;
  EXPECT_EQ(deliver_batch(handler, batch), 3u) << "m0, m1 (parked), m2 done; m3 and m4 left";
  EXPECT_EQ(calls, (values_t{{"m0", "m1", "m2", "m3", "m4"}, {"m0"}, {"m1"}, {"m2"}}));
  ASSERT_EQ(bus.parked.size(), 1u);
}

TEST_F(batch_delivery_test, an_abandoned_single_delivery_ends_the_batch_before_it) {
  bus.interrupt_after_waits = 0; // the first retry wait is interrupted
  EXPECT_EQ(deliver_batch(failing_on("m3"), batch), 3u) << "m0..m2 done, m3 abandoned, m4 not run";
  EXPECT_EQ(calls, (values_t{{"m0", "m1", "m2", "m3", "m4"}, {"m0"}, {"m1"}, {"m2"}, {"m3"}}));
  EXPECT_TRUE(bus.parked.empty());
}
