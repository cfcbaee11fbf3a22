#pragma once
// The repository conformance suite: every model of bulwark::repository passes it unchanged.
// Instantiate with a factory (see README.md):
//   INSTANTIATE_TYPED_TEST_SUITE_P(name, repository_conformance, ::testing::Types<Factory>);

#include <bulwark/repository.hpp>
#include <bulwark/resilience/timeout.hpp>

#include "conformance/fixture.hpp"
#include "support/keys.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <set>
#include <string>
#include <vector>

namespace bulwark::test {

using namespace std::chrono_literals;

template <class Factory> class repository_conformance : public conformance_fixture<Factory> {
protected:
  auto& repo() { return this->model(); }
};

TYPED_TEST_SUITE_P(repository_conformance);

TYPED_TEST_P(repository_conformance, get_of_missing_key_is_empty_not_an_error) {
  auto got = this->run(this->repo().get("absent"));
  ASSERT_TRUE(got.has_value()) << got.error();
  EXPECT_FALSE(got.value().has_value());
}

TYPED_TEST_P(repository_conformance, put_then_get_round_trips_value_and_version) {
  auto v = this->run(this->repo().put("k1", "hello", std::nullopt));
  ASSERT_TRUE(v.has_value()) << v.error();
  auto got = this->run(this->repo().get("k1"));
  ASSERT_TRUE(got.has_value() && got.value().has_value());
  EXPECT_EQ(got.value()->value, "hello");
  EXPECT_EQ(got.value()->version, v.value());
  EXPECT_GT(v.value(), no_version);
}

TYPED_TEST_P(repository_conformance, binary_values_round_trip) {
  static constexpr char raw[] = "a\0b'\"\\\xff\xfe unicode: \xc3\xa9\xe2\x82\xac";
  const std::string value(raw, sizeof(raw) - 1);
  const std::string key = "bin/\xc3\xa9'\"";
  ASSERT_TRUE(this->run(this->repo().put(key, value, no_version)).has_value());
  auto got = this->run(this->repo().get(key));
  ASSERT_TRUE(got.has_value() && got.value().has_value());
  EXPECT_EQ(got.value()->value, value);
}

TYPED_TEST_P(repository_conformance, versions_rise_on_every_put_and_across_erase) {
  auto& r = this->repo();
  version_t last = no_version;
  for (int i = 0; i < 5; ++i) {
    auto v = this->run(r.put("mono", numbered_key("v", i), std::nullopt));
    ASSERT_TRUE(v.has_value()) << v.error();
    EXPECT_GT(v.value(), last);
    last = v.value();
  }
  auto erased = this->run(r.erase("mono"));
  ASSERT_TRUE(erased.has_value());
  EXPECT_TRUE(erased.value());
  auto again = this->run(r.put("mono", "back", no_version));
  ASSERT_TRUE(again.has_value()) << again.error();
  EXPECT_GT(again.value(), last);
}

TYPED_TEST_P(repository_conformance, compare_and_set_conflicts_on_stale_version) {
  auto& r = this->repo();
  auto v1 = this->run(r.put("cas", "one", no_version)).value();
  auto v2 = this->run(r.put("cas", "two", v1));
  ASSERT_TRUE(v2.has_value()) << v2.error();
  auto stale = this->run(r.put("cas", "three", v1));
  ASSERT_FALSE(stale.has_value());
  EXPECT_EQ(stale.error(), errc::conflict);
  auto exists = this->run(r.put("cas", "again", no_version));
  ASSERT_FALSE(exists.has_value());
  EXPECT_EQ(exists.error(), errc::conflict);
  auto missing = this->run(r.put("cas-missing", "x", version_t{7}));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error(), errc::conflict);
  EXPECT_EQ(this->run(r.get("cas")).value()->value, "two");
}

TYPED_TEST_P(repository_conformance, erase_reports_whether_the_key_existed) {
  auto& r = this->repo();
  ASSERT_TRUE(this->run(r.put("gone", "x", std::nullopt)).has_value());
  EXPECT_TRUE(this->run(r.erase("gone")).value());
  EXPECT_FALSE(this->run(r.erase("gone")).value());
  EXPECT_FALSE(this->run(r.get("gone")).value().has_value());
}

// The key and scan rules every model takes from detail/key_rules.hpp, texts included.
TYPED_TEST_P(repository_conformance, empty_key_is_invalid_argument) {
  auto put = this->run(this->repo().put("", "x", std::nullopt));
  ASSERT_FALSE(put.has_value());
  EXPECT_EQ(put.error(), errc::invalid_argument);
  EXPECT_EQ(put.error().detail(), "empty key");
  // Longer than any model's key limit.
  auto too_long = this->run(this->repo().put(std::string(4097, 'k'), "x", std::nullopt));
  ASSERT_FALSE(too_long.has_value());
  EXPECT_EQ(too_long.error(), errc::invalid_argument);
  EXPECT_TRUE(too_long.error().detail().starts_with("key of 4097 bytes exceeds ")) << too_long.error();
  auto no_limit = this->run(this->repo().scan("", "", 0));
  ASSERT_FALSE(no_limit.has_value());
  EXPECT_EQ(no_limit.error(), errc::invalid_argument);
}

TYPED_TEST_P(repository_conformance, scan_returns_prefix_in_byte_order_with_pagination) {
  auto& r = this->repo();
  std::vector<std::string> keys = {"user/b", "user/a", "user/c", "user/aa", "users", "usea", "user/d", "zzz"};
  for (const auto& k : keys) ASSERT_TRUE(this->run(r.put(k, "v:" + k, std::nullopt)).has_value());
  ASSERT_TRUE(this->run(r.erase("user/c")).value());
  std::vector<std::string> seen;
  std::string after;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = this->run(r.scan("user/", after, 2));
    ASSERT_TRUE(page.has_value()) << page.error();
    EXPECT_LE(page.value().entries.size(), 2u);
    for (const auto& e : page.value().entries) {
      EXPECT_EQ(e.value, "v:" + e.key);
      EXPECT_GT(e.version, no_version);
      seen.push_back(e.key);
    }
    if (!page.value().next) break;
    after = *page.value().next;
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"user/a", "user/aa", "user/b", "user/d"}));
  auto none = this->run(r.scan("nope/", "", 10));
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none.value().entries.empty());
  EXPECT_FALSE(none.value().next.has_value());
}

// Writers read, yield to the executor, then compare-and-set, so their read-modify-write cycles
// overlap on any model: in the first round every writer reads before any writes, so all but
// one conflict. A factory that declares context_threads (memory) also runs them on several
// threads at once, with more rounds, so races inside the model show too.
TYPED_TEST_P(repository_conformance, concurrent_writers_lose_no_update) {
  auto& r = this->repo();
  ASSERT_TRUE(this->run(r.put("counter", "0", no_version)).has_value());
  constexpr int writers = 8, increments = context_threads<TypeParam>() > 1 ? 50 : 10;
  auto writer = [&r]() -> asio::awaitable<result<int>> {
    int conflicts = 0;
    for (int done = 0; done < increments;) {
      auto cur = co_await r.get("counter");
      if (!cur) co_return cur.error();
      if (!cur.value()) co_return error(errc::not_found, "counter vanished");
      const int n = std::stoi(cur.value()->value);
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
      auto put = co_await r.put("counter", std::to_string(n + 1), cur.value()->version);
      if (put) {
        ++done;
      } else if (put.error() == errc::conflict) {
        ++conflicts;
      } else {
        co_return put.error();
      }
    }
    co_return conflicts;
  };
  auto all = [&]() -> asio::awaitable<result<int>> {
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::future<std::optional<result<int>>>> futures;
    for (int i = 0; i < writers; ++i) futures.push_back(spawn(ex, writer()));
    // All finish before any result is looked at (an error must not end the test under them).
    std::vector<std::optional<result<int>>> done;
    for (auto& f : futures) done.push_back(co_await bulwark::test::await_future(f));
    int conflicts = 0;
    for (auto& got : done) {
      auto c = *got;
      if (!c) co_return c.error();
      conflicts += c.value();
    }
    co_return conflicts;
  };
  auto conflicts = this->run_threaded(all());
  ASSERT_TRUE(conflicts.has_value()) << conflicts.error();
  auto final_value = this->run(r.get("counter"));
  ASSERT_TRUE(final_value.has_value() && final_value.value().has_value());
  EXPECT_EQ(final_value.value()->value, std::to_string(writers * increments));
  this->RecordProperty("conflicts", conflicts.value());
  // Without conflicts the writers never overlapped and the test proved nothing.
  EXPECT_GE(conflicts.value(), writers - 1) << "the writers' read-modify-write cycles never overlapped";
}

// with_timeout around repository calls: with a generous bound the call's own result comes
// back; with a bound that has passed before the call can finish, the result is the value or
// errc::timeout (a backend's call is cancelled in flight and may or may not have been
// applied). Afterwards the model is consistent and usable again: a backend may answer
// transient errors (unavailable, cancelled, timeout) while it re-opens a connection the
// cancellation closed, for at most 5 s.
TYPED_TEST_P(repository_conformance, timed_out_calls_leave_the_model_consistent) {
  auto& r = this->repo();
  auto first = this->run(with_timeout(r.put("deadline", "v0", no_version), 5s, "put"));
  ASSERT_TRUE(first.has_value()) << first.error();
  auto got = this->run(with_timeout(r.get("deadline"), 5s, "get"));
  ASSERT_TRUE(got.has_value() && got.value().has_value()) << (got ? "missing" : got.error().message());
  EXPECT_EQ(got.value()->version, first.value());
  auto page = this->run(with_timeout(r.scan("dead", "", 10), 5s, "scan"));
  ASSERT_TRUE(page.has_value()) << page.error();
  EXPECT_EQ(page.value().entries.size(), 1u);

  std::set<std::string> written = {"v0"};
  int timeouts = 0, transient_errors = 0;
  auto read = [&] { return this->run_settled([&] { return r.get("deadline"); }, transient_errors); };
  version_t expected = first.value();
  for (int i = 1; i <= 5; ++i) {
    const std::string value = "v" + std::to_string(i);
    written.insert(value);
    auto raced = this->run(with_timeout(r.put("deadline", value, expected), 0ms, "put"));
    if (raced) {
      EXPECT_GT(raced.value(), expected);
      expected = raced.value();
    } else {
      // errc::conflict: a put of an earlier round, cancelled, was applied late.
      EXPECT_TRUE(raced.error() == errc::timeout || raced.error() == errc::conflict || this->transient(raced.error()))
          << raced.error();
      if (raced.error() == errc::timeout) ++timeouts;
      // Unknown outcome: read what is there now.
      auto now = read();
      ASSERT_TRUE(now.has_value() && now.value().has_value())
          << "after a timed-out put: " << (now ? "no value" : now.error().message());
      expected = now.value()->version;
    }
    auto quick_get = this->run(with_timeout(r.get("deadline"), 0ms, "get"));
    if (!quick_get) {
      EXPECT_TRUE(this->transient(quick_get.error())) << quick_get.error();
    }
  }
  this->RecordProperty("timeouts", timeouts);
  this->RecordProperty("transient_errors", transient_errors);
  // Still usable: a read-then-compare-and-set lands within a few tries (a timed-out put that
  // the server applies late can make one try conflict), and the value read is one written.
  bool landed = false;
  for (int attempt = 0; attempt < 20 && !landed; ++attempt) {
    auto now = read();
    ASSERT_TRUE(now.has_value() && now.value().has_value()) << (now ? "no value" : now.error().message());
    EXPECT_EQ(written.count(now.value()->value), 1u) << now.value()->value;
    EXPECT_GE(now.value()->version, first.value());
    const auto seen = now.value()->version;
    auto put = this->run_settled([&] { return r.put("deadline", "final", seen); }, transient_errors);
    if (put) {
      landed = true;
      EXPECT_GT(put.value(), seen);
    } else {
      ASSERT_EQ(put.error(), errc::conflict) << put.error();
    }
  }
  ASSERT_TRUE(landed) << "compare-and-set kept conflicting after the timed-out calls";
  auto last = read();
  ASSERT_TRUE(last.has_value() && last.value().has_value());
  EXPECT_EQ(last.value()->value, "final");
  auto stale = this->run(r.put("deadline", "stale", first.value()));
  ASSERT_FALSE(stale.has_value());
  EXPECT_EQ(stale.error(), errc::conflict);
}

REGISTER_TYPED_TEST_SUITE_P(repository_conformance, get_of_missing_key_is_empty_not_an_error,
                            put_then_get_round_trips_value_and_version, binary_values_round_trip,
                            versions_rise_on_every_put_and_across_erase, compare_and_set_conflicts_on_stale_version,
                            erase_reports_whether_the_key_existed, empty_key_is_invalid_argument,
                            scan_returns_prefix_in_byte_order_with_pagination, concurrent_writers_lose_no_update,
                            timed_out_calls_leave_the_model_consistent);

} // namespace bulwark::test
