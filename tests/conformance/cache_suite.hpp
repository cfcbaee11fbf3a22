#pragma once
// The cache conformance suite: every model of bulwark::cache passes it unchanged.
//   INSTANTIATE_TYPED_TEST_SUITE_P(name, cache_conformance, ::testing::Types<Factory>);
// The factory's advance(d) lets d pass: a manual clock for memory, a real sleep for servers,
// so the TTLs used here are short.

#include <bulwark/cache.hpp>

#include "conformance/fixture.hpp"

#include <asio/co_spawn.hpp>
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

TYPED_TEST_P(cache_conformance, empty_key_is_invalid_argument) {
  auto put = this->run(this->cache().put("", versioned{"x", 1}, 60s));
  ASSERT_FALSE(put.has_value());
  EXPECT_EQ(put.error(), errc::invalid_argument);
}

TYPED_TEST_P(cache_conformance, concurrent_puts_keep_the_highest_version) {
  auto& c = this->cache();
  auto all = [&]() -> asio::awaitable<result<void>> {
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::future<std::optional<result<bool>>>> futures;
    for (version_t v : {4, 9, 1, 7, 3, 8, 2, 6, 5})
      futures.push_back(spawn(ex, c.put("race", versioned{std::to_string(v), v}, 60s)));
    asio::steady_timer tick(ex);
    for (auto& f : futures) {
      while (f.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
        tick.expires_after(1ms);
        co_await tick.async_wait(asio::use_awaitable);
      }
      auto r = *f.get();
      if (!r) co_return r.error();
    }
    co_return ok();
  };
  ASSERT_TRUE(this->run(all()).has_value());
  EXPECT_EQ(this->run(c.get("race")).value()->version, 9u);
}

REGISTER_TYPED_TEST_SUITE_P(cache_conformance, miss_is_empty_not_an_error,
                            put_then_get_returns_value_version_and_stored_at, binary_values_round_trip,
                            lower_version_never_replaces_higher, entry_expires_after_its_ttl,
                            erase_reports_whether_present, empty_key_is_invalid_argument,
                            concurrent_puts_keep_the_highest_version);

} // namespace bulwark::test
