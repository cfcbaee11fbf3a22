#pragma once
// The event-bus conformance suite: every model of bulwark::event_bus passes it unchanged.
//   INSTANTIATE_TYPED_TEST_SUITE_P(name, event_bus_conformance, ::testing::Types<Factory>);
// Below it, batch_event_bus_conformance for the models of bulwark::batch_event_bus.
// Topics and groups get unique names per test, so a persistent broker needs no clean-up.
// Each test publishes before it subscribes (a broker may create topics on first publish).

#include <bulwark/event_bus.hpp>
#include <bulwark/resilience/timeout.hpp>

#include "conformance/fixture.hpp"
#include "support/keys.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace bulwark::test {

using namespace std::chrono_literals;

/// What a handler saw, safe to read from the test body.
struct received_log {
  std::mutex mutex;
  std::vector<std::pair<std::string, std::string>> messages; // key, value
  std::map<std::string, int> attempts;                       // value -> last attempt seen
  std::size_t size() {
    std::lock_guard lock(mutex);
    return messages.size();
  }
  void add(const envelope& e) {
    std::lock_guard lock(mutex);
    messages.emplace_back(std::string(e.key), std::string(e.value));
    attempts[std::string(e.value)] = static_cast<int>(e.attempt);
  }
};

template <class Factory> class event_bus_conformance : public conformance_fixture<Factory> {
protected:
  using conformance_fixture<Factory>::run;
  auto& bus() { return this->model(); }

  subscribe_options options(const std::string& topic, const std::string& group) {
    subscribe_options o;
    o.topic = topic;
    o.group = group;
    o.retry.max_attempts = 3;
    o.retry.delays = backoff{5ms, 20ms, 2.0, true};
    return o;
  }
  // Publishes (key, value) pairs in order; fails the test on any error.
  void publish_all(const std::string& topic, const std::vector<std::pair<std::string, std::string>>& items) {
    auto op = [&]() -> asio::awaitable<result<void>> {
      for (const auto& item : items) {
        message m{item.first, item.second, {header{"origin", "suite"}}};
        auto d = co_await bus().publish(topic, std::move(m));
        if (!d) co_return d.error();
      }
      co_return ok();
    };
    auto r = run(op());
    ASSERT_TRUE(r.has_value()) << r.error();
  }
  delivery publish_one(const std::string& topic, std::string key, std::string value) {
    auto op = [&]() -> asio::awaitable<result<delivery>> {
      message m{std::move(key), std::move(value), {}};
      co_return co_await bus().publish(topic, std::move(m));
    };
    auto d = run(op());
    EXPECT_TRUE(d.has_value()) << d.error();
    return d ? d.value() : delivery{-1, -1};
  }
  using subscription_t = typename std::remove_reference_t<decltype(*std::declval<Factory&>().make())>::subscription;
  subscription_t subscribe(subscribe_options o, message_handler h) {
    auto s = run(bus().subscribe(std::move(o), std::move(h)));
    EXPECT_TRUE(s.has_value()) << s.error();
    return std::move(s).value();
  }
  void stop(subscription_t& s) { run(s.stop()); }
  bool wait_for(std::function<bool()> done, std::chrono::milliseconds limit = 60s) {
    return run(eventually(std::move(done), limit));
  }
};

TYPED_TEST_SUITE_P(event_bus_conformance);

TYPED_TEST_P(event_bus_conformance, delivers_every_message_in_per_key_order) {
  const auto topic = unique_name("order");
  std::vector<std::pair<std::string, std::string>> items;
  for (int i = 0; i < 30; ++i)
    for (const char* k : {"alpha", "beta", "gamma"}) items.emplace_back(k, std::string(k) + ":" + std::to_string(i));
  this->publish_all(topic, items);
  received_log log;
  std::atomic<bool> headers_ok{true};
  auto sub = this->subscribe(this->options(topic, unique_name("g")), [&](const envelope& e) -> task<void> {
    if (e.find_header("origin") != std::optional<std::string_view>("suite")) headers_ok = false;
    if (e.topic != topic) headers_ok = false;
    log.add(e);
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] { return log.size() >= items.size(); }));
  this->stop(sub);
  EXPECT_TRUE(headers_ok);
  std::map<std::string, std::vector<std::string>> by_key;
  for (const auto& [k, v] : log.messages) by_key[k].push_back(v);
  for (const char* k : {"alpha", "beta", "gamma"}) {
    ASSERT_EQ(by_key[k].size(), 30u) << k;
    for (int i = 0; i < 30; ++i)
      EXPECT_EQ(by_key[k][static_cast<std::size_t>(i)], std::string(k) + ":" + std::to_string(i));
  }
}

TYPED_TEST_P(event_bus_conformance, failed_handler_gets_the_message_again) {
  const auto topic = unique_name("retry");
  this->publish_all(topic, {{"k", "flaky"}, {"k", "after"}});
  received_log log;
  std::atomic<int> failures{0};
  auto sub = this->subscribe(this->options(topic, unique_name("g")), [&](const envelope& e) -> task<void> {
    if (e.value == "flaky" && e.attempt < 3) {
      ++failures;
      co_return error(errc::unavailable, "not yet");
    }
    log.add(e);
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] { return log.size() >= 2; }));
  this->stop(sub);
  EXPECT_EQ(failures.load(), 2);
  EXPECT_EQ(log.attempts["flaky"], 3);
  ASSERT_EQ(log.messages.size(), 2u);
  EXPECT_EQ(log.messages[0].second, "flaky");
  EXPECT_EQ(log.messages[1].second, "after") << "per-key order holds across retries";
}

TYPED_TEST_P(event_bus_conformance, message_that_keeps_failing_is_dead_lettered) {
  const auto topic = unique_name("poison");
  this->publish_all(topic, {{"p", "poison"}, {"p", "healthy"}});
  received_log log;
  std::atomic<int> poison_attempts{0};
  auto o = this->options(topic, unique_name("g"));
  auto sub = this->subscribe(o, [&](const envelope& e) -> task<void> {
    if (e.value == "poison") {
      ++poison_attempts;
      co_return error(errc::unavailable, "cannot parse");
    }
    log.add(e);
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] { return log.size() >= 1; }));
  this->stop(sub);
  EXPECT_EQ(poison_attempts.load(), 3);

  received_log dead;
  std::mutex m;
  std::map<std::string, std::string> dead_headers;
  auto dlq = this->subscribe(this->options(o.dead_letter_topic_name(), unique_name("dlq")),
                             [&](const envelope& e) -> task<void> {
                               std::lock_guard lock(m);
                               for (const auto& h : e.headers) dead_headers[h.name] = h.value;
                               dead.add(e);
                               co_return ok();
                             });
  ASSERT_TRUE(this->wait_for([&] { return dead.size() >= 1; }));
  this->stop(dlq);
  EXPECT_EQ(dead.messages[0], (std::pair<std::string, std::string>{"p", "poison"}));
  EXPECT_EQ(dead_headers[std::string(dead_letter_origin_topic)], topic);
  EXPECT_EQ(dead_headers[std::string(dead_letter_attempts)], "3");
  EXPECT_EQ(dead_headers["origin"], "suite") << "original headers are kept";
  EXPECT_FALSE(dead_headers[std::string(dead_letter_origin_partition)].empty());
  EXPECT_FALSE(dead_headers[std::string(dead_letter_origin_offset)].empty());
  EXPECT_NE(dead_headers[std::string(dead_letter_error)].find("cannot parse"), std::string::npos);
}

TYPED_TEST_P(event_bus_conformance, restarted_member_resumes_from_committed_offset) {
  const auto topic = unique_name("resume");
  const auto group = unique_name("g");
  std::vector<std::pair<std::string, std::string>> first, second;
  for (int i = 0; i < 10; ++i) first.emplace_back(numbered_key("k", i % 3), numbered_key("first-", i));
  for (int i = 0; i < 10; ++i) second.emplace_back(numbered_key("k", i % 3), numbered_key("second-", i));
  this->publish_all(topic, first);
  received_log log1;
  auto sub = this->subscribe(this->options(topic, group), [&](const envelope& e) -> task<void> {
    log1.add(e);
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] { return log1.size() >= 10; }));
  this->stop(sub);
  this->publish_all(topic, second);
  received_log log2;
  auto again = this->subscribe(this->options(topic, group), [&](const envelope& e) -> task<void> {
    log2.add(e);
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] { return log2.size() >= 10; }));
  this->stop(again);
  std::set<std::string> values;
  for (const auto& [k, v] : log2.messages) values.insert(v);
  for (const auto& [k, v] : first) EXPECT_EQ(values.count(v), 0u) << v << " was committed before the restart";
  for (const auto& [k, v] : second) EXPECT_EQ(values.count(v), 1u) << v;
}

TYPED_TEST_P(event_bus_conformance, stop_drains_the_message_in_flight) {
  const auto topic = unique_name("drain");
  const auto group = unique_name("g");
  this->publish_all(topic, {{"d", "slow"}});
  std::atomic<bool> started{false}, finished{false};
  auto sub = this->subscribe(this->options(topic, group), [&](const envelope&) -> task<void> {
    started = true;
    asio::steady_timer t(co_await asio::this_coro::executor, 300ms);
    co_await t.async_wait(asio::use_awaitable);
    finished = true;
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] { return started.load(); }));
  this->stop(sub);
  EXPECT_TRUE(finished) << "stop() returned before the handler in flight finished";
  // The drained message was committed: a new member of the group does not see it again.
  this->publish_all(topic, {{"d", "marker"}});
  received_log log;
  auto again = this->subscribe(this->options(topic, group), [&](const envelope& e) -> task<void> {
    log.add(e);
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] { return log.size() >= 1; }));
  this->stop(again);
  ASSERT_EQ(log.messages.size(), 1u);
  EXPECT_EQ(log.messages[0].second, "marker");
}

// Both groups exist before the messages are published: a group that joins later starts at the
// oldest message the bus still holds, and the memory bus holds only what an existing group has
// not committed (see start_from).
TYPED_TEST_P(event_bus_conformance, every_group_gets_every_message) {
  const auto topic = unique_name("fanout");
  this->publish_all(topic, {{"w", "warm-up"}});
  received_log one, two;
  auto s1 = this->subscribe(this->options(topic, unique_name("g1")), [&](const envelope& e) -> task<void> {
    if (e.value != "warm-up") one.add(e);
    co_return ok();
  });
  auto s2 = this->subscribe(this->options(topic, unique_name("g2")), [&](const envelope& e) -> task<void> {
    if (e.value != "warm-up") two.add(e);
    co_return ok();
  });
  this->publish_all(topic, {{"a", "1"}, {"b", "2"}, {"c", "3"}});
  ASSERT_TRUE(this->wait_for([&] { return one.size() >= 3 && two.size() >= 3; }));
  this->stop(s1);
  this->stop(s2);
}

TYPED_TEST_P(event_bus_conformance, subscribe_without_group_is_invalid_argument) {
  subscribe_options o;
  o.topic = unique_name("t");
  auto s = this->run(this->bus().subscribe(o, [](const envelope&) -> task<void> { co_return ok(); }));
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error(), errc::invalid_argument);
}

TYPED_TEST_P(event_bus_conformance, idle_member_stops_promptly) {
  const auto topic = unique_name("idle");
  this->publish_all(topic, {{"x", "only"}});
  received_log log;
  auto sub = this->subscribe(this->options(topic, unique_name("g")), [&](const envelope& e) -> task<void> {
    log.add(e);
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] { return log.size() >= 1; }));
  const auto start = std::chrono::steady_clock::now();
  this->stop(sub);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
}

// Publishers on several coroutines at once (on several threads when the factory declares
// context_threads, delivery too): every message arrives once, each key's in publish order.
TYPED_TEST_P(event_bus_conformance, concurrent_publishers_keep_per_key_order) {
  const auto topic = unique_name("parallel");
  constexpr int publishers = 4, per_key = context_threads<TypeParam>() > 1 ? 200 : 25;
  auto publisher = [&](int p) -> asio::awaitable<result<void>> {
    const std::string key = "k" + std::to_string(p);
    for (int i = 0; i < per_key; ++i) {
      message m{key, key + ":" + std::to_string(i), {}};
      auto d = co_await this->bus().publish(topic, std::move(m));
      if (!d) co_return d.error();
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    }
    co_return ok();
  };
  auto all = [&]() -> asio::awaitable<result<void>> {
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::future<std::optional<result<void>>>> futures;
    for (int p = 0; p < publishers; ++p) futures.push_back(spawn(ex, publisher(p)));
    for (auto& f : futures) {
      auto got = co_await bulwark::test::await_future(f);
      auto r = *got;
      if (!r) co_return r.error();
    }
    co_return ok();
  };
  auto published = this->run_threaded(all());
  ASSERT_TRUE(published.has_value()) << published.error();
  received_log log;
  auto sub = this->subscribe(this->options(topic, unique_name("g")), [&](const envelope& e) -> task<void> {
    log.add(e);
    co_return ok();
  });
  const std::size_t total = publishers * per_key;
  ASSERT_TRUE(this->run_threaded(eventually([&] { return log.size() >= total; }, 60s)))
      << log.size() << " of " << total;
  this->stop(sub);
  std::map<std::string, std::vector<std::string>> by_key;
  for (const auto& [k, v] : log.messages) by_key[k].push_back(v);
  ASSERT_EQ(by_key.size(), static_cast<std::size_t>(publishers));
  for (const auto& [k, values] : by_key) {
    ASSERT_EQ(values.size(), static_cast<std::size_t>(per_key)) << k;
    for (int i = 0; i < per_key; ++i) EXPECT_EQ(values[static_cast<std::size_t>(i)], k + ":" + std::to_string(i));
  }
}

// Cancellation inside a handler: the handler bounds a slow call with with_timeout, the call is
// cancelled at the deadline and the handler fails with errc::timeout; the bus retries and the
// second attempt goes through, in order. publish runs under with_timeout too (a generous
// bound: its own result comes back).
TYPED_TEST_P(event_bus_conformance, handler_call_cancelled_by_its_timeout_is_retried) {
  const auto topic = unique_name("deadline");
  auto publish = [&]() -> asio::awaitable<result<void>> {
    for (const char* v : {"slow", "after"}) {
      message m{"t", v, {}}; // named: a braced temporary in co_await trips GCC 12 (PR 100611)
      auto publish_call = with_timeout(this->bus().publish(topic, std::move(m)), 30s, "publish");
      auto d = co_await std::move(publish_call);
      if (!d) co_return d.error();
    }
    co_return ok();
  };
  auto published = this->run(publish());
  ASSERT_TRUE(published.has_value()) << published.error();
  received_log log;
  std::atomic<int> timeouts{0}, other_outcomes{0};
  std::atomic<long long> waited_ms{-1};
  auto slow_call = []() -> task<void> {
    asio::steady_timer t(co_await asio::this_coro::executor, 60s);
    co_await t.async_wait(asio::use_awaitable); // throws operation_aborted when cancelled
    co_return ok();
  };
  message_handler handler = [&](const envelope& e) -> task<void> {
    if (e.value == "slow" && e.attempt == 1) {
      const auto start = std::chrono::steady_clock::now();
      auto bounded = with_timeout(slow_call(), 100ms, "slow call");
      auto r = co_await std::move(bounded);
      waited_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
      if (!r && r.error() == errc::timeout) {
        ++timeouts;
        co_return r.error();
      }
      ++other_outcomes;
      co_return error(errc::unavailable, "the slow call was not timed out");
    }
    log.add(e);
    co_return ok();
  };
  auto sub = this->subscribe(this->options(topic, unique_name("g")), handler);
  ASSERT_TRUE(this->wait_for([&] { return log.size() >= 2; }, 30s))
      << "timeouts: " << timeouts << ", the slow call took " << waited_ms << " ms (-1: still running)";
  this->stop(sub);
  EXPECT_EQ(timeouts.load(), 1);
  EXPECT_EQ(other_outcomes.load(), 0);
  EXPECT_GE(waited_ms.load(), 90);
  EXPECT_LT(waited_ms.load(), 5000) << "the cancelled call did not end promptly";
  ASSERT_EQ(log.messages.size(), 2u);
  EXPECT_EQ(log.messages[0].second, "slow");
  EXPECT_EQ(log.messages[1].second, "after");
  EXPECT_EQ(log.attempts["slow"], 2);
}

// Stop while a handler is blocked, then a cancellation: the application stops its member and
// cancels the handler's slow work through an asio::cancellation_signal. The handler ends at
// once with errc::cancelled; since it failed, stop() does not retry or commit the message and
// returns; nothing after it was handled (per-key order), and the next member of the group gets
// the message again (at-least-once).
TYPED_TEST_P(event_bus_conformance, handler_cancelled_during_stop_is_redelivered) {
  const auto topic = unique_name("cancel");
  const auto group = unique_name("g");
  this->publish_all(topic, {{"c", "blocked"}, {"c", "next"}});
  asio::cancellation_signal cancel;
  std::atomic<bool> blocked_once{false}, started{false}, saw_cancel{false}, handler_done{false};
  std::atomic<bool> stop_began{false}, stopped{false};
  received_log first;
  auto sub = this->subscribe(this->options(topic, group), [&](const envelope& e) -> task<void> {
    if (e.value == "blocked" && !blocked_once.exchange(true)) {
      asio::steady_timer t(co_await asio::this_coro::executor, 60s);
      asio::error_code ec;
      started = true;
      co_await t.async_wait(asio::bind_cancellation_slot(cancel.slot(), asio::redirect_error(asio::use_awaitable, ec)));
      saw_cancel = ec == asio::error::operation_aborted;
      handler_done = true;
      if (saw_cancel) co_return error(errc::cancelled, "handler cancelled");
      co_return ok();
    }
    first.add(e);
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] { return started.load(); }));

  struct timing {
    bool stopped = false;
    long long handler_ms = -1, stop_ms = -1;
  };
  auto shutdown = [&]() -> asio::awaitable<timing> {
    auto ex = co_await asio::this_coro::executor;
    asio::co_spawn(
        ex,
        [&]() -> asio::awaitable<void> {
          stop_began = true; // stop() runs from here to its first wait: the stop is requested
          co_await sub.stop();
          stopped = true;
        },
        asio::detached);
    // Waits are named before co_await (temporaries in co_await expressions trip GCC 12).
    auto began = eventually([&] { return stop_began.load(); }, 5s);
    co_await std::move(began);
    const auto at = std::chrono::steady_clock::now();
    cancel.emit(asio::cancellation_type::terminal);
    auto since = [&] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - at).count();
    };
    timing t;
    auto handler_ended = eventually([&] { return handler_done.load(); }, 30s);
    if (co_await std::move(handler_ended)) t.handler_ms = since();
    auto stop_returned = eventually([&] { return stopped.load(); }, 60s);
    t.stopped = co_await std::move(stop_returned);
    if (t.stopped) t.stop_ms = since();
    co_return t;
  };
  const auto t = this->run(shutdown());
  ASSERT_TRUE(t.stopped) << "stop() did not return after the handler was cancelled";
  EXPECT_TRUE(saw_cancel.load()) << "the handler's wait was not cancelled";
  EXPECT_GE(t.handler_ms, 0);
  EXPECT_LT(t.handler_ms, 5000) << "the cancelled handler did not end promptly";
  EXPECT_LT(t.stop_ms, 30000);
  EXPECT_EQ(first.size(), 0u) << "a message after the uncommitted one was handled";

  received_log second;
  auto again = this->subscribe(this->options(topic, group), [&](const envelope& e) -> task<void> {
    second.add(e);
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] { return second.size() >= 1; }));
  {
    std::lock_guard lock(second.mutex);
    ASSERT_EQ(second.messages[0].second, "blocked") << "the cancelled message was committed";
  }
  ASSERT_TRUE(this->wait_for([&] { return second.size() >= 2; }));
  this->stop(again);
  EXPECT_EQ(second.messages[1].second, "next");
}

TYPED_TEST_P(event_bus_conformance, message_the_policy_does_not_retry_is_dead_lettered_at_once) {
  const auto topic = unique_name("permanent");
  this->publish_all(topic, {{"p", "unparsable"}, {"p", "fine"}});
  received_log log;
  std::atomic<int> attempts{0};
  auto o = this->options(topic, unique_name("g"));
  auto sub = this->subscribe(o, [&](const envelope& e) -> task<void> {
    if (e.value == "unparsable") {
      ++attempts;
      co_return error(errc::invalid_argument, "cannot parse"); // retrying cannot cure it
    }
    log.add(e);
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] { return log.size() >= 1; }));
  this->stop(sub);
  EXPECT_EQ(attempts.load(), 1);
  std::atomic<bool> got{false};
  std::string attempts_header;
  auto dlq = this->subscribe(this->options(o.dead_letter_topic_name(), unique_name("dlq")),
                             [&](const envelope& e) -> task<void> {
                               if (!got)
                                 attempts_header = std::string(e.find_header(dead_letter_attempts).value_or(""));
                               got = true;
                               co_return ok();
                             });
  ASSERT_TRUE(this->wait_for([&] { return got.load(); }));
  this->stop(dlq);
  EXPECT_EQ(attempts_header, "1");
}

// One message in flight per partition, partitions in parallel: a handler that waits for a
// message of another partition sees it handled (on a bus that runs one handler at a time per
// member it waits in vain).
TYPED_TEST_P(event_bus_conformance, partitions_are_handled_in_parallel) {
  const auto topic = unique_name("parallel-partitions");
  const auto first = this->publish_one(topic, "a", "warm-up");
  std::string other_key;
  for (int i = 0; i < 64 && other_key.empty(); ++i) {
    const auto key = bulwark::test::numbered_key("b", i);
    if (this->publish_one(topic, key, "warm-up").partition != first.partition) other_key = key;
  }
  ASSERT_FALSE(other_key.empty()) << "the topic needs two partitions";
  std::atomic<int> warmed{0};
  std::atomic<bool> blocker_started{false}, other_ran{false}, blocker_done{false}, blocker_saw_other{false};
  auto sub = this->subscribe(this->options(topic, unique_name("g")), [&](const envelope& e) -> task<void> {
    if (e.value == "blocker") {
      blocker_started = true;
      asio::steady_timer tick(co_await asio::this_coro::executor);
      const auto until = std::chrono::steady_clock::now() + 10s;
      while (!other_ran && std::chrono::steady_clock::now() < until) {
        tick.expires_after(5ms);
        co_await tick.async_wait(asio::use_awaitable);
      }
      blocker_saw_other = other_ran.load();
      blocker_done = true;
    } else if (e.value == "other") {
      other_ran = true;
    } else {
      ++warmed;
    }
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] { return warmed.load() >= 2; }));
  this->publish_one(topic, "a", "blocker");
  ASSERT_TRUE(this->wait_for([&] { return blocker_started.load(); }));
  this->publish_one(topic, other_key, "other");
  ASSERT_TRUE(this->wait_for([&] { return blocker_done.load(); }));
  this->stop(sub);
  EXPECT_TRUE(blocker_saw_other.load()) << "the other partition waited for the blocked one";
}

// stop() gives the handler in flight the drain period, then cancels it through its
// cancellation slot: a handler waiting on a cancellable wait ends at once, its message is not
// committed, and the next member of the group gets it again (then the one after it).
TYPED_TEST_P(event_bus_conformance, stop_interrupts_a_waiting_handler_after_the_drain_period) {
  const auto topic = unique_name("interrupt");
  const auto group = unique_name("g");
  this->publish_all(topic, {{"w", "waits"}, {"w", "next"}});
  std::atomic<bool> waited_once{false}, started{false}, aborted{false};
  received_log first;
  auto sub = this->subscribe(this->options(topic, group), [&](const envelope& e) -> task<void> {
    if (e.value == "waits" && !waited_once.exchange(true)) {
      started = true;
      asio::steady_timer until_back(co_await asio::this_coro::executor, 120s); // "until the database is back"
      asio::error_code ec;
      co_await until_back.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      aborted = ec == asio::error::operation_aborted;
      co_return error(errc::cancelled, "interrupted");
    }
    first.add(e);
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] { return started.load(); }));
  const auto at = std::chrono::steady_clock::now();
  this->stop(sub);
  const auto took = std::chrono::steady_clock::now() - at;
  EXPECT_TRUE(aborted.load()) << "the handler's wait was not cancelled";
  EXPECT_GE(took, TypeParam::drain_period - 100ms) << "stop() did not give the handler its drain period";
  EXPECT_LT(took, TypeParam::drain_period + 20s);
  EXPECT_EQ(first.size(), 0u) << "a message after the interrupted one was handled";

  received_log second;
  auto again = this->subscribe(this->options(topic, group), [&](const envelope& e) -> task<void> {
    second.add(e);
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] { return second.size() >= 2; }));
  this->stop(again);
  EXPECT_EQ(second.messages[0].second, "waits") << "the interrupted message was committed";
  EXPECT_EQ(second.messages[1].second, "next");
}

REGISTER_TYPED_TEST_SUITE_P(event_bus_conformance, delivers_every_message_in_per_key_order,
                            failed_handler_gets_the_message_again, message_that_keeps_failing_is_dead_lettered,
                            restarted_member_resumes_from_committed_offset, stop_drains_the_message_in_flight,
                            every_group_gets_every_message, subscribe_without_group_is_invalid_argument,
                            idle_member_stops_promptly, handler_call_cancelled_by_its_timeout_is_retried,
                            handler_cancelled_during_stop_is_redelivered, concurrent_publishers_keep_per_key_order,
                            message_the_policy_does_not_retry_is_dead_lettered_at_once,
                            partitions_are_handled_in_parallel,
                            stop_interrupts_a_waiting_handler_after_the_drain_period);

} // namespace bulwark::test

// --- batch_event_bus: subscribe_batch (event_bus.hpp, "Batches") -----------------------------
//   INSTANTIATE_TYPED_TEST_SUITE_P(name, batch_event_bus_conformance, ::testing::Types<Factory>);
// Each test publishes its messages before it subscribes, so the member holds a backlog and its
// batches hold more than one message.

namespace bulwark::test {

/// Every batch handler call, safe to read from the test body.
struct batch_log {
  struct call {
    std::int32_t partition = -1;
    std::vector<std::int64_t> offsets;
    std::vector<std::string> keys, values;
    std::vector<unsigned> attempts;
  };
  std::mutex mutex;
  std::vector<call> calls;
  std::size_t messages = 0; // in all calls
  void add(std::span<const envelope> batch) {
    call c;
    if (!batch.empty()) c.partition = batch.front().partition;
    for (const auto& e : batch) {
      if (e.partition != c.partition) c.partition = -2; // a batch spanning partitions: never
      c.offsets.push_back(e.offset);
      c.keys.emplace_back(e.key);
      c.values.emplace_back(e.value);
      c.attempts.push_back(e.attempt);
    }
    std::lock_guard lock(mutex);
    messages += batch.size();
    calls.push_back(std::move(c));
  }
  std::size_t size() {
    std::lock_guard lock(mutex);
    return messages;
  }
  std::vector<call> snapshot() {
    std::lock_guard lock(mutex);
    return calls;
  }
};

template <class Factory> class batch_event_bus_conformance : public event_bus_conformance<Factory> {
protected:
  using subscription_t = typename event_bus_conformance<Factory>::subscription_t;
  subscription_t subscribe_batch(subscribe_options o, batch_handler h) {
    auto s = this->run(this->bus().subscribe_batch(std::move(o), std::move(h)));
    EXPECT_TRUE(s.has_value()) << s.error();
    return std::move(s).value();
  }
  subscribe_options batch_options(const std::string& topic, const std::string& group, std::size_t max_batch) {
    auto o = this->options(topic, group);
    o.max_batch = max_batch;
    return o;
  }
  static std::size_t largest(const std::vector<batch_log::call>& calls) {
    std::size_t n = 0;
    for (const auto& c : calls) n = std::max(n, c.values.size());
    return n;
  }
};

TYPED_TEST_SUITE_P(batch_event_bus_conformance);

// Every message once, each batch consecutive messages of one partition in offset order, at most
// max_batch of them, more than one while a backlog waits; one batch in flight per partition.
TYPED_TEST_P(batch_event_bus_conformance, batches_hold_consecutive_messages_of_one_partition_in_order) {
  const auto topic = unique_name("batch-order");
  constexpr std::size_t max_batch = 16;
  constexpr int per_key = 40;
  std::vector<std::pair<std::string, std::string>> items;
  for (int i = 0; i < per_key; ++i)
    for (const char* k : {"alpha", "beta", "gamma"}) items.emplace_back(k, numbered_key(std::string(k) + ":", i));
  this->publish_all(topic, items);
  batch_log log;
  std::atomic<bool> envelopes_ok{true}, overlapped_in_partition{false};
  std::map<std::int32_t, int> in_flight; // strand: no lock needed, but the handler suspends
  auto sub = this->subscribe_batch(
      this->batch_options(topic, unique_name("g"), max_batch), [&](std::span<const envelope> batch) -> task<void> {
        for (const auto& e : batch)
          if (e.topic != topic || e.attempt != 1 || e.find_header("origin") != std::optional<std::string_view>("suite"))
            envelopes_ok = false;
        const auto partition = batch.empty() ? -1 : batch.front().partition;
        if (++in_flight[partition] > 1) overlapped_in_partition = true;
        log.add(batch);
        // Suspends: a second batch of this partition started now would overlap this one.
        co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
        --in_flight[partition];
        co_return ok();
      });
  ASSERT_TRUE(this->wait_for([&] { return log.size() >= items.size(); }));
  this->stop(sub);
  EXPECT_TRUE(envelopes_ok) << "an envelope had the wrong topic, attempt or headers";
  EXPECT_FALSE(overlapped_in_partition) << "two batches of one partition were in flight at once";
  const auto calls = log.snapshot();
  std::map<std::int32_t, std::int64_t> last_offset;
  std::map<std::string, std::vector<std::string>> by_key;
  for (const auto& c : calls) {
    ASSERT_FALSE(c.values.empty()) << "an empty batch";
    ASSERT_GE(c.partition, 0) << "a batch spanned partitions";
    EXPECT_LE(c.values.size(), max_batch);
    for (std::size_t i = 0; i < c.offsets.size(); ++i) {
      auto [at, fresh] = last_offset.try_emplace(c.partition, c.offsets[i]);
      if (!fresh) {
        EXPECT_GT(c.offsets[i], at->second) << "offsets go back in partition " << c.partition;
        at->second = c.offsets[i];
      }
      by_key[c.keys[i]].push_back(c.values[i]);
    }
  }
  for (const char* k : {"alpha", "beta", "gamma"}) {
    ASSERT_EQ(by_key[k].size(), static_cast<std::size_t>(per_key)) << k << ": every message once";
    for (int i = 0; i < per_key; ++i)
      EXPECT_EQ(by_key[k][static_cast<std::size_t>(i)], numbered_key(std::string(k) + ":", i));
  }
  EXPECT_GT(TestFixture::largest(calls), 1u) << "a backlog of " << items.size() << " came one message at a time";
  EXPECT_LT(calls.size(), items.size());
}

// A batch holding a poison message fails; its messages are delivered again one at a time, the
// poison one is retried and dead-lettered alone, the others are handled, and batching resumes.
TYPED_TEST_P(batch_event_bus_conformance, failed_batch_is_delivered_one_by_one_and_only_the_poison_is_dead_lettered) {
  const auto topic = unique_name("batch-poison");
  const std::string poison = "v1";
  std::vector<std::pair<std::string, std::string>> items;
  for (int i = 0; i < 12; ++i) items.emplace_back("p", numbered_key("v", i));
  this->publish_all(topic, items);
  batch_log log;
  std::mutex m;
  std::vector<std::string> applied; // values of the calls that succeeded, in order
  auto o = this->batch_options(topic, unique_name("g"), 4);
  auto sub = this->subscribe_batch(o, [&](std::span<const envelope> batch) -> task<void> {
    log.add(batch);
    for (const auto& e : batch)
      if (e.value == poison) co_return error(errc::unavailable, "cannot apply " + poison);
    std::lock_guard lock(m);
    for (const auto& e : batch) applied.emplace_back(e.value);
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] {
    std::lock_guard lock(m);
    return applied.size() >= items.size() - 1;
  }));
  this->stop(sub);
  std::vector<std::string> expected;
  for (const auto& [k, v] : items)
    if (v != poison) expected.push_back(v);
  EXPECT_EQ(applied, expected) << "each healthy message once, in order";

  const auto calls = log.snapshot();
  std::size_t first_failed = calls.size(), last_poison = 0;
  std::vector<unsigned> poison_attempts;
  for (std::size_t i = 0; i < calls.size(); ++i) {
    const auto& v = calls[i].values;
    if (std::find(v.begin(), v.end(), poison) == v.end()) continue;
    if (first_failed == calls.size()) first_failed = i;
    last_poison = i;
    if (v.size() == 1) poison_attempts.push_back(calls[i].attempts[0]);
  }
  ASSERT_LT(first_failed, calls.size());
  const auto& failed = calls[first_failed].values;
  ASSERT_GT(failed.size(), 1u) << "the poison came in a batch of one: nothing to split";
  EXPECT_EQ(poison_attempts, (std::vector<unsigned>{1, 2, 3})) << "retried alone under the policy";
  // The failed batch's messages, one call each, in order, right after the failed call.
  std::size_t next = first_failed + 1;
  for (const auto& v : failed) {
    if (v == poison) {
      next += 3;
      continue;
    }
    ASSERT_LT(next, calls.size());
    EXPECT_EQ(calls[next].values, std::vector<std::string>{v}) << "call " << next;
    ++next;
  }
  bool resumed = false;
  for (std::size_t i = last_poison + 1; i < calls.size(); ++i) resumed = resumed || calls[i].values.size() > 1;
  EXPECT_TRUE(resumed) << "no batch of more than one after the poison was dead-lettered";

  // The dead-letter topic holds the poison only: a marker published after it on its key comes
  // right after it.
  this->publish_all(o.dead_letter_topic_name(), {{"p", "dlq-marker"}});
  received_log dead;
  auto dlq = this->subscribe(this->options(o.dead_letter_topic_name(), unique_name("dlq")),
                             [&](const envelope& e) -> task<void> {
                               dead.add(e);
                               co_return ok();
                             });
  ASSERT_TRUE(this->wait_for([&] {
    std::lock_guard lock(dead.mutex);
    return !dead.messages.empty() && dead.messages.back().second == "dlq-marker";
  }));
  this->stop(dlq);
  std::vector<std::string> dead_values;
  for (const auto& [k, v] : dead.messages) dead_values.push_back(v);
  EXPECT_EQ(dead_values, (std::vector<std::string>{poison, "dlq-marker"}));
}

// A batch's success commits through its last message: a member of the group that joins after
// a stop starts after the last batch handled.
TYPED_TEST_P(batch_event_bus_conformance, restarted_member_resumes_after_the_last_successful_batch) {
  const auto topic = unique_name("batch-resume");
  const auto group = unique_name("g");
  std::vector<std::pair<std::string, std::string>> first, second;
  for (int i = 0; i < 10; ++i) first.emplace_back("k", numbered_key("first-", i));
  for (int i = 0; i < 4; ++i) second.emplace_back("k", numbered_key("second-", i));
  this->publish_all(topic, first);
  batch_log log1;
  auto sub =
      this->subscribe_batch(this->batch_options(topic, group, 4), [&](std::span<const envelope> b) -> task<void> {
        log1.add(b);
        co_return ok();
      });
  ASSERT_TRUE(this->wait_for([&] { return log1.size() >= first.size(); }));
  this->stop(sub);
  EXPECT_GT(TestFixture::largest(log1.snapshot()), 1u);
  this->publish_all(topic, second);
  batch_log log2;
  auto again =
      this->subscribe_batch(this->batch_options(topic, group, 4), [&](std::span<const envelope> b) -> task<void> {
        log2.add(b);
        co_return ok();
      });
  ASSERT_TRUE(this->wait_for([&] { return log2.size() >= second.size(); }));
  this->stop(again);
  std::vector<std::string> seen, expected;
  for (const auto& c : log2.snapshot()) seen.insert(seen.end(), c.values.begin(), c.values.end());
  for (const auto& [k, v] : second) expected.push_back(v);
  EXPECT_EQ(seen, expected) << "the restarted member saw messages its group had committed";
}

// A batch in flight when its member stops gets the drain period, then its handler is
// cancelled; the batch stays uncommitted as a whole and the group's next member gets all of it.
TYPED_TEST_P(batch_event_bus_conformance, stop_leaves_a_batch_in_flight_uncommitted) {
  const auto topic = unique_name("batch-interrupt");
  const auto group = unique_name("g");
  std::vector<std::pair<std::string, std::string>> items;
  for (int i = 0; i < 6; ++i) items.emplace_back("w", numbered_key("w", i));
  this->publish_all(topic, items);
  std::atomic<bool> blocked_once{false}, started{false}, aborted{false};
  std::vector<std::string> blocked; // written before `started`
  batch_log after;
  auto sub =
      this->subscribe_batch(this->batch_options(topic, group, 8), [&](std::span<const envelope> b) -> task<void> {
        if (!blocked_once.exchange(true)) {
          for (const auto& e : b) blocked.emplace_back(e.value);
          started = true;
          asio::steady_timer until_back(co_await asio::this_coro::executor, 120s);
          asio::error_code ec;
          co_await until_back.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          aborted = ec == asio::error::operation_aborted;
          co_return error(errc::cancelled, "interrupted");
        }
        after.add(b);
        co_return ok();
      });
  ASSERT_TRUE(this->wait_for([&] { return started.load(); }));
  const auto at = std::chrono::steady_clock::now();
  this->stop(sub);
  const auto took = std::chrono::steady_clock::now() - at;
  EXPECT_TRUE(aborted.load()) << "the batch handler's wait was not cancelled";
  EXPECT_GE(took, TypeParam::drain_period - 100ms) << "stop() did not give the batch its drain period";
  EXPECT_EQ(after.size(), 0u) << "messages were handled after the interrupted batch";
  ASSERT_GT(blocked.size(), 1u) << "the backlog came one message at a time";

  received_log second;
  auto again = this->subscribe(this->options(topic, group), [&](const envelope& e) -> task<void> {
    second.add(e);
    co_return ok();
  });
  ASSERT_TRUE(this->wait_for([&] { return second.size() >= items.size(); }));
  this->stop(again);
  std::vector<std::string> seen, expected;
  for (const auto& [k, v] : second.messages) seen.push_back(v);
  for (const auto& [k, v] : items) expected.push_back(v);
  EXPECT_EQ(seen, expected) << "part of the interrupted batch was committed";
  EXPECT_EQ(seen.front(), blocked.front());
}

// One batch in flight per partition, partitions in parallel: a batch that waits for a message
// of another partition sees it handled.
TYPED_TEST_P(batch_event_bus_conformance, batches_of_different_partitions_run_in_parallel) {
  const auto topic = unique_name("batch-parallel");
  const auto first = this->publish_one(topic, "a", "warm-up");
  std::string other_key;
  for (int i = 0; i < 64 && other_key.empty(); ++i) {
    const auto key = numbered_key("b", i);
    if (this->publish_one(topic, key, "warm-up").partition != first.partition) other_key = key;
  }
  ASSERT_FALSE(other_key.empty()) << "the topic needs two partitions";
  std::atomic<int> warmed{0};
  std::atomic<bool> blocker_started{false}, other_ran{false}, blocker_done{false}, blocker_saw_other{false};
  auto has = [](std::span<const envelope> b, std::string_view v) {
    return std::any_of(b.begin(), b.end(), [&](const envelope& e) { return e.value == v; });
  };
  auto sub = this->subscribe_batch(
      this->batch_options(topic, unique_name("g"), 8), [&](std::span<const envelope> b) -> task<void> {
        if (has(b, "blocker")) {
          blocker_started = true;
          asio::steady_timer tick(co_await asio::this_coro::executor);
          const auto until = std::chrono::steady_clock::now() + 10s;
          while (!other_ran && std::chrono::steady_clock::now() < until) {
            tick.expires_after(5ms);
            co_await tick.async_wait(asio::use_awaitable);
          }
          blocker_saw_other = other_ran.load();
          blocker_done = true;
        }
        if (has(b, "other")) other_ran = true;
        warmed +=
            static_cast<int>(std::count_if(b.begin(), b.end(), [](const envelope& e) { return e.value == "warm-up"; }));
        co_return ok();
      });
  ASSERT_TRUE(this->wait_for([&] { return warmed.load() >= 2; }));
  this->publish_one(topic, "a", "blocker");
  ASSERT_TRUE(this->wait_for([&] { return blocker_started.load(); }));
  this->publish_one(topic, other_key, "other");
  ASSERT_TRUE(this->wait_for([&] { return blocker_done.load(); }));
  this->stop(sub);
  EXPECT_TRUE(blocker_saw_other.load()) << "the other partition waited for the blocked one";
}

TYPED_TEST_P(batch_event_bus_conformance, max_batch_zero_is_invalid_argument) {
  auto o = this->batch_options(unique_name("t"), unique_name("g"), 0);
  auto s = this->run(this->bus().subscribe_batch(o, [](std::span<const envelope>) -> task<void> { co_return ok(); }));
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error(), errc::invalid_argument);
}

REGISTER_TYPED_TEST_SUITE_P(batch_event_bus_conformance, batches_hold_consecutive_messages_of_one_partition_in_order,
                            failed_batch_is_delivered_one_by_one_and_only_the_poison_is_dead_lettered,
                            restarted_member_resumes_after_the_last_successful_batch,
                            stop_leaves_a_batch_in_flight_uncommitted, batches_of_different_partitions_run_in_parallel,
                            max_batch_zero_is_invalid_argument);

} // namespace bulwark::test
