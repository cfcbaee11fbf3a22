#pragma once
// The cache conformance suite: every model of bulwark::cache passes it unchanged.
//   INSTANTIATE_TYPED_TEST_SUITE_P(name, cache_conformance, ::testing::Types<Factory>);
// The factory's advance(d) lets d pass: a manual clock for memory, a real sleep for servers,
// so the TTLs used here are short.

#include <bulwark/cache.hpp>
#include <bulwark/resilience/timeout.hpp>

#include "conformance/fixture.hpp"

#include <asio/co_spawn.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>
#include <vector>

namespace bulwark::test {

template <class Factory> class cache_conformance : public conformance_fixture<Factory> {
protected:
  auto& cache() { return this->model(); }
};

using namespace std::chrono_literals;

TYPED_TEST_SUITE_P(cache_conformance);

TYPED_TEST_P(cache_conformance, miss_is_empty_not_an_error) {
  auto got = this->run(this->cache().get("absent"));
  ASSERT_TRUE(got.has_value()) << got.error();
  EXPECT_FALSE(got.value().has_value());
}

TYPED_TEST_P(cache_conformance, put_then_get_returns_value_version_and_stored_at) {
  auto put = this->run(this->cache().put("k", versioned{"value", 3}, 60s));
  ASSERT_TRUE(put.has_value()) << put.error();
  EXPECT_TRUE(put.value());
  auto got = this->run(this->cache().get("k"));
  ASSERT_TRUE(got.has_value() && got.value().has_value());
  EXPECT_EQ(got.value()->value, "value");
  EXPECT_EQ(got.value()->version, 3u);
  EXPECT_NE(got.value()->stored_at, std::chrono::system_clock::time_point{});
}

TYPED_TEST_P(cache_conformance, binary_values_round_trip) {
  static constexpr char raw[] = "\0\x01\xff'\"\r\n\xc3\xa9";
  const std::string value(raw, sizeof(raw) - 1);
  ASSERT_TRUE(this->run(this->cache().put("bin", versioned{value, 1}, 60s)).value());
  EXPECT_EQ(this->run(this->cache().get("bin")).value()->value, value);
}

TYPED_TEST_P(cache_conformance, lower_version_never_replaces_higher) {
  auto& c = this->cache();
  ASSERT_TRUE(this->run(c.put("v", versioned{"five", 5}, 60s)).value());
  auto older = this->run(c.put("v", versioned{"four", 4}, 60s));
  ASSERT_TRUE(older.has_value()) << older.error();
  EXPECT_FALSE(older.value());
  EXPECT_EQ(this->run(c.get("v")).value()->value, "five");
  EXPECT_TRUE(this->run(c.put("v", versioned{"six", 6}, 60s)).value());
  EXPECT_EQ(this->run(c.get("v")).value()->version, 6u);
  EXPECT_TRUE(this->run(c.put("v", versioned{"six again", 6}, 60s)).value()) << "an equal version refreshes";
}

TYPED_TEST_P(cache_conformance, entry_expires_after_its_ttl) {
  auto& c = this->cache();
  ASSERT_TRUE(this->run(c.put("ttl", versioned{"x", 1}, 300ms)).value());
  ASSERT_TRUE(this->run(c.put("forever", versioned{"y", 1}, 0ms)).value());
  EXPECT_TRUE(this->run(c.get("ttl")).value().has_value());
  this->factory_.advance(600ms);
  EXPECT_FALSE(this->run(c.get("ttl")).value().has_value());
  EXPECT_TRUE(this->run(c.get("forever")).value().has_value());
  // An expired entry no longer blocks a lower version.
  ASSERT_TRUE(this->run(c.put("ttl2", versioned{"high", 9}, 300ms)).value());
  this->factory_.advance(600ms);
  EXPECT_TRUE(this->run(c.put("ttl2", versioned{"low", 2}, 60s)).value());
  EXPECT_EQ(this->run(c.get("ttl2")).value()->value, "low");
}

TYPED_TEST_P(cache_conformance, erase_reports_whether_present) {
  auto& c = this->cache();
  ASSERT_TRUE(this->run(c.put("e", versioned{"x", 1}, 60s)).value());
  EXPECT_TRUE(this->run(c.erase("e")).value());
  EXPECT_FALSE(this->run(c.erase("e")).value());
  EXPECT_FALSE(this->run(c.get("e")).value().has_value());
}

// The key and ttl rules every model takes from detail/key_rules.hpp, texts included.
TYPED_TEST_P(cache_conformance, empty_key_is_invalid_argument) {
  auto put = this->run(this->cache().put("", versioned{"x", 1}, 60s));
  ASSERT_FALSE(put.has_value());
  EXPECT_EQ(put.error(), errc::invalid_argument);
  EXPECT_EQ(put.error().detail(), "empty key");
  // Longer than any model's key limit.
  auto too_long = this->run(this->cache().put(std::string(4097, 'k'), versioned{"x", 1}, 60s));
  ASSERT_FALSE(too_long.has_value());
  EXPECT_EQ(too_long.error(), errc::invalid_argument);
  EXPECT_TRUE(too_long.error().detail().starts_with("key of 4097 bytes exceeds ")) << too_long.error();
  auto negative_ttl = this->run(this->cache().put("k", versioned{"x", 1}, std::chrono::milliseconds(-1)));
  ASSERT_FALSE(negative_ttl.has_value());
  EXPECT_EQ(negative_ttl.error(), errc::invalid_argument);
  EXPECT_EQ(negative_ttl.error().detail(), "negative ttl");
}

TYPED_TEST_P(cache_conformance, concurrent_puts_keep_the_highest_version) {
  auto& c = this->cache();
  auto all = [&]() -> asio::awaitable<result<void>> {
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::future<std::optional<result<bool>>>> futures;
    for (version_t v : {4, 9, 1, 7, 3, 8, 2, 6, 5})
      futures.push_back(spawn(ex, c.put("race", versioned{std::to_string(v), v}, 60s)));
    for (auto& f : futures) {
      auto got = co_await bulwark::test::await_future(f);
      auto r = *got;
      if (!r) co_return r.error();
    }
    co_return ok();
  };
  ASSERT_TRUE(this->run(all()).has_value());
  EXPECT_EQ(this->run(c.get("race")).value()->version, 9u);
}

// Writers put rising versions of one key and read it back after a yield. In round k writer w
// puts version k*writers + (writers - w): writer 0 holds the round's highest, so whenever the
// writers overlap (always in the first round, where all put before any reads) the others'
// puts are refused. After an accepted put of v no reader may see less than v, and a refused
// put means something higher was there. A factory that declares context_threads (memory) runs
// the writers on several threads at once, with more rounds, so races inside the model show.
TYPED_TEST_P(cache_conformance, concurrent_writers_never_go_back_a_version) {
  auto& c = this->cache();
  constexpr int writers = 4, rounds = context_threads<TypeParam>() > 1 ? 200 : 10;
  struct tally {
    int accepted = 0, refused = 0;
  };
  auto writer = [&c](int w) -> asio::awaitable<result<tally>> {
    tally t;
    for (int k = 0; k < rounds; ++k) {
      const auto v = static_cast<version_t>(k * writers + (writers - w));
      versioned item{std::to_string(v), v}; // named: a braced temporary in co_await trips GCC 12 (PR 100611)
      auto put = co_await c.put("climb", std::move(item), 60s);
      if (!put) co_return put.error();
      ++(put.value() ? t.accepted : t.refused);
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
      auto got = co_await c.get("climb");
      if (!got) co_return got.error();
      if (!got.value()) co_return error(errc::not_found, "entry vanished after a put of " + std::to_string(v));
      const auto seen = got.value()->version;
      if (seen < v || (!put.value() && seen == v))
        co_return error(errc::conflict, "writer " + std::to_string(w) + " put version " + std::to_string(v) + " (" +
                                            (put.value() ? "accepted" : "refused") + ") then read version " +
                                            std::to_string(seen));
      if (got.value()->value != std::to_string(seen))
        co_return error(errc::conflict,
                        "version " + std::to_string(seen) + " carries the value of another put: " + got.value()->value);
    }
    co_return t;
  };
  auto all = [&]() -> asio::awaitable<result<tally>> {
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::future<std::optional<result<tally>>>> futures;
    for (int w = 0; w < writers; ++w) futures.push_back(spawn(ex, writer(w)));
    tally total;
    for (auto& f : futures) {
      auto got = co_await bulwark::test::await_future(f);
      auto t = *got;
      if (!t) co_return t.error();
      total.accepted += t.value().accepted;
      total.refused += t.value().refused;
    }
    co_return total;
  };
  auto total = this->run_threaded(all());
  ASSERT_TRUE(total.has_value()) << total.error();
  EXPECT_EQ(total.value().accepted + total.value().refused, writers * rounds);
  this->RecordProperty("refused", total.value().refused);
  // Without refusals the writers never overlapped and the test proved nothing.
  EXPECT_GE(total.value().refused, writers - 1) << "the writers' puts never overlapped";
  auto last = this->run(c.get("climb"));
  ASSERT_TRUE(last.has_value() && last.value().has_value());
  EXPECT_EQ(last.value()->version, static_cast<version_t>(rounds * writers));
  EXPECT_EQ(last.value()->value, std::to_string(rounds * writers));
}

// with_timeout around cache calls: with a generous bound the call's own result comes back;
// with a bound that has passed before the call can finish, the result is the value or
// errc::timeout (a backend's call is cancelled in flight). Afterwards the cache still never
// goes back a version and is usable again (transient errors allowed for at most 5 s while a
// backend re-opens a connection the cancellation closed).
TYPED_TEST_P(cache_conformance, timed_out_calls_leave_the_cache_consistent) {
  auto& c = this->cache();
  auto first = this->run(with_timeout(c.put("deadline", versioned{"1", 1}, 60s), 5s, "put"));
  ASSERT_TRUE(first.has_value()) << first.error();
  EXPECT_TRUE(first.value());
  auto got = this->run(with_timeout(c.get("deadline"), 5s, "get"));
  ASSERT_TRUE(got.has_value() && got.value().has_value()) << (got ? "missing" : got.error().message());
  EXPECT_EQ(got.value()->version, 1u);
  int timeouts = 0, transient_errors = 0;
  for (version_t v = 2; v <= 6; ++v) {
    auto raced = this->run(with_timeout(c.put("deadline", versioned{std::to_string(v), v}, 60s), 0ms, "put"));
    if (raced) {
      EXPECT_TRUE(raced.value()) << "version " << v << " is the highest yet";
    } else {
      EXPECT_TRUE(this->transient(raced.error())) << raced.error();
      if (raced.error() == errc::timeout) ++timeouts;
    }
    auto quick_get = this->run(with_timeout(c.get("deadline"), 0ms, "get"));
    if (!quick_get) {
      EXPECT_TRUE(this->transient(quick_get.error())) << quick_get.error();
    }
  }
  this->RecordProperty("timeouts", timeouts);
  auto now = this->run_settled([&] { return c.get("deadline"); }, transient_errors);
  ASSERT_TRUE(now.has_value() && now.value().has_value()) << (now ? "no entry" : now.error().message());
  EXPECT_GE(now.value()->version, 1u);
  EXPECT_LE(now.value()->version, 6u);
  EXPECT_EQ(now.value()->value, std::to_string(now.value()->version));
  // Still usable, and still monotonic: a lower version is refused, a higher one lands.
  auto lower = this->run_settled([&] { return c.put("deadline", versioned{"0", 0}, 60s); }, transient_errors);
  ASSERT_TRUE(lower.has_value()) << lower.error();
  EXPECT_FALSE(lower.value());
  auto higher = this->run_settled([&] { return c.put("deadline", versioned{"7", 7}, 60s); }, transient_errors);
  ASSERT_TRUE(higher.has_value()) << higher.error();
  EXPECT_TRUE(higher.value());
  auto last = this->run_settled([&] { return c.get("deadline"); }, transient_errors);
  ASSERT_TRUE(last.has_value() && last.value().has_value());
  EXPECT_EQ(last.value()->version, 7u);
  EXPECT_EQ(last.value()->value, "7");
  this->RecordProperty("transient_errors", transient_errors);
}

REGISTER_TYPED_TEST_SUITE_P(cache_conformance, miss_is_empty_not_an_error,
                            put_then_get_returns_value_version_and_stored_at, binary_values_round_trip,
                            lower_version_never_replaces_higher, entry_expires_after_its_ttl,
                            erase_reports_whether_present, empty_key_is_invalid_argument,
                            concurrent_puts_keep_the_highest_version, concurrent_writers_never_go_back_a_version,
                            timed_out_calls_leave_the_cache_consistent);

} // namespace bulwark::test
