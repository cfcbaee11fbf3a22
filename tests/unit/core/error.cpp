#include <bulwark/error.hpp>
#include <bulwark/http/client_error.hpp>
#include <bulwark/ledger.hpp>
#include <bulwark/result.hpp>

#include "support/error_table.hpp"

#include <gtest/gtest.h>

namespace {

// A backend's native category mapped onto bulwark conditions, as every adapter does it.
enum class native : int { refused = 2003, deadlock = 1213, lock_wait = 1205 };
class native_category final : public std::error_category {
public:
  const char* name() const noexcept override { return "native"; }
  std::string message(int v) const override { return "native " + std::to_string(v); }
  std::error_condition default_error_condition(int v) const noexcept override {
    switch (static_cast<native>(v)) {
    case native::refused: return bulwark::errc::unavailable;
    case native::lock_wait: return bulwark::errc::timeout;
    default: return {v, *this};
    }
  }
};
const native_category native_cat;

bulwark::result<int> parse(int x) {
  if (x < 0) return bulwark::error(bulwark::errc::invalid_argument, "negative");
  return x * 2;
}
bulwark::result<int> twice(int x) {
  BOOST_OUTCOME_TRY(doubled, parse(x));
  return doubled + 1;
}

} // namespace

TEST(error, codes_are_stable) {
  EXPECT_EQ(static_cast<int>(bulwark::errc::not_found), 1);
  EXPECT_EQ(static_cast<int>(bulwark::errc::duplicate), 11);
  EXPECT_EQ(static_cast<int>(bulwark::errc::declined), 12);
  EXPECT_EQ(bulwark::to_string(bulwark::errc::circuit_open), "circuit_open");
  EXPECT_STREQ(bulwark::category().name(), "bulwark");
}

TEST(error, native_codes_compare_equal_to_bulwark_conditions) {
  std::error_code refused(static_cast<int>(native::refused), native_cat);
  EXPECT_TRUE(refused == bulwark::errc::unavailable);
  EXPECT_FALSE(refused == bulwark::errc::timeout);
  EXPECT_EQ(bulwark::condition_of(refused), bulwark::errc::unavailable);
  std::error_code deadlock(static_cast<int>(native::deadlock), native_cat);
  EXPECT_EQ(bulwark::condition_of(deadlock), bulwark::errc{});
  bulwark::error e(refused, "connect to 127.0.0.1:3306");
  EXPECT_EQ(e, bulwark::errc::unavailable);
  EXPECT_EQ(e.message(), "native 2003: connect to 127.0.0.1:3306");
}

TEST(error, bulwark_codes_compare_equal_to_their_condition) {
  auto ec = bulwark::make_error_code(bulwark::errc::conflict);
  EXPECT_TRUE(ec == bulwark::errc::conflict);
  EXPECT_FALSE(ec == bulwark::errc::not_found);
  EXPECT_EQ(ec.message(), "version conflict");
}

TEST(error, the_bulwark_table_matches_the_category_and_docs_errors_md) {
  bulwark::test::expect_category_matches_table_and_docs(bulwark::category(), bulwark::errc_rows, 13);
  // The table is the conditions themselves: one row per errc, in value order.
  for (std::size_t i = 0; i < bulwark::errc_rows.size(); ++i) {
    EXPECT_EQ(bulwark::errc_rows[i].value, static_cast<int>(i + 1));
    EXPECT_EQ(static_cast<int>(bulwark::errc_rows[i].condition), bulwark::errc_rows[i].value);
  }
  EXPECT_EQ(bulwark::to_string(bulwark::errc{}), "unknown");
}

TEST(error, the_ledger_table_matches_the_category_and_docs_errors_md) {
  EXPECT_STREQ(bulwark::ledger_category().name(), "ledger");
  bulwark::test::expect_category_matches_table_and_docs(bulwark::ledger_category(), bulwark::ledger_errc_rows, 4);
  EXPECT_EQ(std::error_code(bulwark::ledger_errc::insufficient), bulwark::errc::declined);
  EXPECT_EQ(std::error_code(bulwark::ledger_errc::reverted), bulwark::errc::declined);
  EXPECT_EQ(std::error_code(bulwark::ledger_errc::over_limit), bulwark::errc::too_large);
}

TEST(error, the_http_client_table_matches_the_category_and_docs_errors_md) {
  EXPECT_STREQ(bulwark::http::client_category().name(), "http.client");
  bulwark::test::expect_category_matches_table_and_docs(bulwark::http::client_category(),
                                                        bulwark::http::client_errc_rows, 7);
  EXPECT_EQ(std::error_code(bulwark::http::client_errc::timed_out), bulwark::errc::timeout);
}

// A business refusal is its own condition: neither an overload/auth refusal nor a lost
// compare-and-set, so a caller can tell "try later" and "your version is stale" from "no".
TEST(error, declined_is_a_refusal_by_the_rules_distinct_from_rejected_and_conflict) {
  const bulwark::error no_stock(bulwark::errc::declined, "2 left, 3 asked");
  EXPECT_EQ(no_stock, bulwark::errc::declined);
  EXPECT_FALSE(no_stock == bulwark::errc::rejected);
  EXPECT_FALSE(no_stock == bulwark::errc::conflict);
  EXPECT_EQ(no_stock.condition(), bulwark::errc::declined);
  EXPECT_EQ(bulwark::to_string(no_stock.condition()), "declined");
  EXPECT_EQ(no_stock.message(), "declined by the rules: 2 left, 3 asked");
}

TEST(result, try_propagates_the_error_with_its_detail) {
  auto ok = twice(2);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok.value(), 5);
  auto bad = twice(-1);
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error(), bulwark::errc::invalid_argument);
  EXPECT_EQ(bad.error().detail(), "negative");
}

TEST(result, value_of_an_error_throws_bad_result) {
  auto bad = parse(-1);
  try {
    (void)bad.value();
    FAIL() << "value() did not throw";
  } catch (const bulwark::bad_result& e) {
    EXPECT_EQ(e.error(), bulwark::errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("negative"), std::string::npos);
  }
}
