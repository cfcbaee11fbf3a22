#include <bulwark/memory/cache.hpp>

#include <bulwark/manual_clock.hpp>

#include "support/keys.hpp"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using bulwark::versioned;
using test_cache = bulwark::memory::basic_cache<bulwark::manual_clock>;

using bulwark::test::numbered_key;

TEST(memory_cache, evicts_least_recently_used_beyond_max_entries) {
  test_cache c(test_cache::options{.max_entries = 3, .max_bytes = 1 << 20, .shards = 1});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c.put_now(numbered_key("k", i), versioned{"v", 1}, 0ms).value());
  ASSERT_TRUE(c.get_now("k0").value().has_value()); // k0 is now the most recently used
  ASSERT_TRUE(c.put_now("k3", versioned{"v", 1}, 0ms).value());
  EXPECT_TRUE(c.get_now("k0").value().has_value());
  EXPECT_FALSE(c.get_now("k1").value().has_value()) << "k1 was the least recently used";
  EXPECT_TRUE(c.get_now("k3").value().has_value());
  const auto s = c.stats();
  EXPECT_EQ(s.entries, 3u);
  EXPECT_EQ(s.evictions, 1u);
}

TEST(memory_cache, stays_within_max_bytes) {
  const std::size_t budget = 10 * (1000 + test_cache::entry_overhead + 4);
  test_cache c(test_cache::options{.max_entries = 1000, .max_bytes = budget, .shards = 1});
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(c.put_now(numbered_key("k", i), versioned{std::string(1000, 'x'), 1}, 0ms));
  const auto s = c.stats();
  EXPECT_LE(s.bytes, budget);
  EXPECT_GE(s.entries, 9u);
  EXPECT_LE(s.entries, 10u);
}

TEST(memory_cache, entry_larger_than_a_shard_is_too_large) {
  test_cache c(test_cache::options{.max_entries = 10, .max_bytes = 512, .shards = 1});
  auto r = c.put_now("big", versioned{std::string(1024, 'x'), 1}, 0ms);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), bulwark::errc::too_large);
}

TEST(memory_cache, ttl_follows_the_injected_clock_exactly) {
  bulwark::manual_clock clock;
  test_cache c(test_cache::options{}, clock);
  ASSERT_TRUE(c.put_now("k", versioned{"v", 1}, 1000ms).value());
  EXPECT_EQ(c.get_now("k").value()->stored_at, clock.now());
  clock.advance(999ms);
  EXPECT_TRUE(c.get_now("k").value().has_value());
  clock.advance(1ms);
  EXPECT_FALSE(c.get_now("k").value().has_value());
  EXPECT_EQ(c.stats().expirations, 1u);
}

TEST(memory_cache, a_ttl_of_milliseconds_max_never_expires) {
  bulwark::manual_clock clock;
  test_cache c(test_cache::options{}, clock);
  ASSERT_TRUE(c.put_now("k", versioned{"v", 1}, std::chrono::milliseconds::max()).value());
  EXPECT_TRUE(c.get_now("k").value().has_value());
  clock.advance(std::chrono::hours(24 * 365 * 100));
  EXPECT_TRUE(c.get_now("k").value().has_value());
  EXPECT_EQ(c.stats().expirations, 0u);
}

TEST(memory_cache, negative_ttl_is_invalid_argument) {
  test_cache c;
  EXPECT_EQ(c.put_now("k", versioned{"v", 1}, -1ms).error(), bulwark::errc::invalid_argument);
}

TEST(memory_cache, concurrent_threads_never_lower_a_version) {
  bulwark::memory::cache c;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&c, t] {
      for (bulwark::version_t v = 1; v <= 2000; ++v) {
        (void)c.put_now("shared", versioned{std::to_string(v), v * 4 + static_cast<bulwark::version_t>(t)}, 0ms);
        auto got = c.get_now("shared").value();
        if (!got) std::abort();
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.get_now("shared").value()->version, 2000u * 4 + 3);
}

TEST(memory_cache, a_hit_entry_outlives_half_a_shard_of_inserts) {
  test_cache c(test_cache::options{.max_entries = 100, .max_bytes = 1 << 20, .shards = 1});
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(c.put_now(numbered_key("k", i), versioned{"v", 1}, 0ms).value());
  ASSERT_TRUE(c.get_now("k0").value().has_value()); // the oldest entry, hit: moved to the front
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(c.put_now(numbered_key("n", i), versioned{"v", 1}, 0ms).value());
  EXPECT_TRUE(c.get_now("k0").value().has_value());
  for (int i = 1; i <= 50; ++i) EXPECT_FALSE(c.get_now(numbered_key("k", i)).value().has_value()) << i;
  EXPECT_TRUE(c.get_now("k51").value().has_value());
  EXPECT_EQ(c.stats().evictions, 50u);
}

TEST(memory_cache, a_hot_entry_survives_any_amount_of_churn) {
  test_cache c(test_cache::options{.max_entries = 100, .max_bytes = 1 << 20, .shards = 1});
  ASSERT_TRUE(c.put_now("hot", versioned{"v", 1}, 0ms).value());
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(c.get_now("hot").value().has_value()) << "evicted after " << i << " inserts";
    ASSERT_TRUE(c.put_now(numbered_key("cold", i), versioned{"v", 1}, 0ms).value());
  }
  EXPECT_EQ(c.stats().entries, 100u);
}

TEST(memory_cache, put_copy_now_is_put_now_and_keeps_the_version_rule) {
  test_cache c;
  const std::string first(130, 'a'), second(130, 'b');
  ASSERT_TRUE(c.put_copy_now("k", first, 5, 0ms).value());
  EXPECT_FALSE(c.put_copy_now("k", second, 4, 0ms).value()) << "a lower version replaced a higher one";
  EXPECT_EQ(c.get_now("k").value()->value, first);
  ASSERT_TRUE(c.put_copy_now("k", second, 6, 0ms).value());
  auto got = c.get_now("k").value();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->value, second);
  EXPECT_EQ(got->version, 6u);
  ASSERT_TRUE(c.put_copy_now("k", "short", 7, 0ms).value()); // another size
  EXPECT_EQ(c.get_now("k").value()->value, "short");
  EXPECT_EQ(c.put_copy_now("", "v", 1, 0ms).error(), bulwark::errc::invalid_argument);
  EXPECT_EQ(c.put_copy_now("k", "v", 8, -1ms).error(), bulwark::errc::invalid_argument);
}

// The regression behind detail::hash_key's finalizer: keys that differ only in their last bytes
// ("channel:17", "channel:18") shared the low bits a shard's index probes by, and every lookup
// walked one long run (a hit cost 655 instructions instead of ~150).
TEST(memory_cache, keys_that_differ_in_their_last_bytes_spread_over_the_low_hash_bits) {
  std::vector<bool> seen(1024);
  std::size_t distinct = 0;
  for (int i = 0; i < 1024; ++i) {
    const auto low = bulwark::detail::hash_key("channel:" + std::to_string(i)) & 1023;
    if (!seen[low]) ++distinct;
    seen[low] = true;
  }
  EXPECT_GT(distinct, 550u) << "1,024 keys hashed into " << distinct << " of 1,024 low-bit slots"; // random: ~647
}
