#include <bulwark/memory/repository.hpp>

#include "support/keys.hpp"

#include <gtest/gtest.h>

#include <thread>

using bulwark::memory::repository;

TEST(memory_repository, over_long_key_is_invalid_argument_and_big_value_too_large) {
  repository r(repository::options{.max_key_bytes = 8, .max_value_bytes = 16});
  EXPECT_EQ(r.put_now("123456789", "v", std::nullopt).error(), bulwark::errc::invalid_argument);
  EXPECT_EQ(r.put_now("k", std::string(17, 'x'), std::nullopt).error(), bulwark::errc::too_large);
  EXPECT_TRUE(r.put_now("12345678", std::string(16, 'x'), std::nullopt).has_value());
}

TEST(memory_repository, versions_stay_monotonic_after_tombstones_are_compacted) {
  repository r;
  bulwark::version_t highest = 0;
  for (int i = 0; i < 3000; ++i) {
    const auto key = bulwark::test::numbered_key("k", i);
    for (int j = 0; j < 3; ++j) highest = std::max(highest, r.put_now(key, "v", std::nullopt).value());
    ASSERT_TRUE(r.erase_now(key).value());
  }
  EXPECT_EQ(r.size(), 0u);
  // k0's tombstone has been compacted away; its next version must still be above all before.
  EXPECT_GT(r.put_now("k0", "again", bulwark::no_version).value(), 3u);
}

TEST(memory_repository, purge_removes_a_key_range_for_good_and_versions_stay_monotonic) {
  repository r;
  for (const auto* k : {"o", "p1", "p2", "p3", "p4", "p5", "q"}) ASSERT_TRUE(r.put_now(k, "v", std::nullopt));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(r.put_now("p2", "v", std::nullopt)); // version 5
  ASSERT_TRUE(r.erase_now("p2").value());                                      // a tombstone
  EXPECT_EQ(r.purge_now("p", "p1", 2).value(), 2u);                            // p2 (tombstone), p3
  EXPECT_EQ(r.purge_now("p", "p3", 100).value(), 2u);                          // p4, p5: not q
  EXPECT_EQ(r.purge_now("p", "p3", 100).value(), 0u);
  EXPECT_EQ(r.size(), 3u); // o, p1, q
  EXPECT_TRUE(r.get_now("p1").value());
  EXPECT_FALSE(r.get_now("p4").value());
  EXPECT_GT(r.put_now("p2", "again", bulwark::no_version).value(), 5u); // above every purged version
  EXPECT_EQ(r.purge_now("p", "", 0).error(), bulwark::errc::invalid_argument);
}

TEST(memory_repository, threads_incrementing_with_cas_lose_no_update) {
  repository r;
  ASSERT_TRUE(r.put_now("n", "0", bulwark::no_version).has_value());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&r] {
      for (int done = 0; done < 500;) {
        auto cur = r.get_now("n").value();
        auto put = r.put_now("n", std::to_string(std::stoi(cur->value) + 1), cur->version);
        if (put) ++done;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(r.get_now("n").value()->value, "2000");
}

TEST(memory_repository, scan_limit_zero_is_invalid_argument) {
  repository r;
  EXPECT_EQ(r.scan_now("", "", 0).error(), bulwark::errc::invalid_argument);
}

TEST(memory_repository, put_copy_now_is_put_now_and_rewrites_in_place) {
  repository repo;
  const std::string first(130, 'a'), second(130, 'b');
  ASSERT_EQ(repo.put_copy_now("k", first, bulwark::no_version).value(), 1u);
  auto conflict = repo.put_copy_now("k", second, bulwark::no_version);
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error(), bulwark::errc::conflict);
  EXPECT_EQ(repo.put_copy_now("", second, std::nullopt).error(), bulwark::errc::invalid_argument);
  ASSERT_EQ(repo.put_copy_now("k", second, 1u).value(), 2u);
  auto got = repo.get_now("k").value();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->value, second);
  EXPECT_EQ(got->version, 2u);
  ASSERT_EQ(repo.put_copy_now("k", "short", std::nullopt).value(), 3u); // another size
  EXPECT_EQ(repo.get_now("k").value()->value, "short");
}
