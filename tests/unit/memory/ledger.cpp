// memory::ledger specifics beyond the conformance suite: its record bound and purge.
#include <bulwark/memory/ledger.hpp>

#include <bulwark/manual_clock.hpp>

#include "support/keys.hpp"

#include <gtest/gtest.h>

#include <vector>

using namespace std::chrono_literals;
using bulwark::adjustment;
using bulwark::test::numbered_key;
using test_ledger = bulwark::memory::basic_ledger<bulwark::manual_clock>;

TEST(memory_ledger, records_are_purged_after_the_retention_and_stay_bounded) {
  bulwark::manual_clock clock;
  test_ledger l(test_ledger::options{.retention = 10s}, clock);
  const std::vector<adjustment> credit = {{"k", 1}};
  // A steady stream: one op per second for a minute; at most a retention's worth is kept.
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(l.apply_now(numbered_key("op", i), credit).has_value());
    EXPECT_LE(l.records(), 11u) << "after op " << i;
    clock.advance(1s);
  }
  // A revert restarts its record's retention.
  ASSERT_EQ(l.revert_now("op59").value(), bulwark::revert_outcome::undone);
  clock.advance(9s);
  EXPECT_EQ(l.records(), 1u);
  EXPECT_EQ(l.apply_now("op59", credit).error(), bulwark::ledger_errc::reverted);
  clock.advance(2s);
  EXPECT_EQ(l.records(), 0u);
  EXPECT_EQ(l.get_now("k").value().value(), 59);
}

TEST(memory_ledger, past_max_records_new_ids_are_rejected_not_forgotten) {
  bulwark::manual_clock clock;
  test_ledger l(test_ledger::options{.retention = 10s, .max_records = 3}, clock);
  const std::vector<adjustment> credit = {{"k", 1}};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(l.apply_now(numbered_key("op", i), credit).has_value());
  auto full = l.apply_now("op3", credit);
  ASSERT_FALSE(full.has_value());
  EXPECT_EQ(full.error(), bulwark::errc::rejected);
  auto tomb = l.revert_now("op4");
  ASSERT_FALSE(tomb.has_value());
  EXPECT_EQ(tomb.error(), bulwark::errc::rejected);
  // The kept ids still answer as duplicates; nothing was forgotten early.
  EXPECT_EQ(l.apply_now("op0", credit).value(), bulwark::apply_outcome::already_applied);
  EXPECT_EQ(l.get_now("k").value().value(), 3);
  clock.advance(10s);
  EXPECT_EQ(l.apply_now("op3", credit).value(), bulwark::apply_outcome::applied);
  EXPECT_EQ(l.records(), 1u);
}
