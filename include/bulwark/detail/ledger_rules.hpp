#pragma once
// The rules of the ledger concept (ledger.hpp), written once for every model: input checks and
// the balance arithmetic with its refusal texts. The memory and mysql models compute with them;
// the redis scripts only say which key left [0, max_amount] and at which balance, and the C++
// side builds the error with the same functions.

#include <bulwark/detail/key_rules.hpp>
#include <bulwark/ledger.hpp>

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::detail {

/// An op id is 1 to max_bytes bytes. Errors: errc::invalid_argument, "empty operation id" or
/// "operation id of N bytes exceeds M".
inline result<void> check_op_id(std::string_view id, std::size_t max_bytes) {
  if (id.empty()) return error(errc::invalid_argument, "empty operation id");
  if (id.size() > max_bytes)
    return error(errc::invalid_argument,
                 "operation id of " + std::to_string(id.size()) + " bytes exceeds " + std::to_string(max_bytes));
  return ok();
}

/// A balance given to set() is in [0, max_amount]. Errors: errc::invalid_argument.
inline result<void> check_balance(amount value) {
  if (value < 0 || value > max_amount)
    return error(errc::invalid_argument,
                 "balance " + std::to_string(value) + " is outside [0, " + std::to_string(max_amount) + "]");
  return ok();
}

/// A delta is in [-max_amount, max_amount]. Errors: errc::invalid_argument.
inline result<void> check_delta(amount delta) {
  if (delta < -max_amount || delta > max_amount)
    return error(errc::invalid_argument, "delta " + std::to_string(delta) + " is outside [-" +
                                             std::to_string(max_amount) + ", " + std::to_string(max_amount) + "]");
  return ok();
}

/// The adjustments of an apply, checked and copied in ascending key order (the order every model
/// locks or reads keys in). Errors: invalid_argument ("no adjustments", a bad key, "key 'k'
/// appears twice", a delta out of range), too_large (more than max_adjustments).
inline result<std::vector<adjustment>> checked_adjustments(std::span<const adjustment> adjustments,
                                                           std::size_t max_key_bytes, std::size_t max_adjustments) {
  if (adjustments.empty()) return error(errc::invalid_argument, "no adjustments");
  if (adjustments.size() > max_adjustments)
    return error(errc::too_large,
                 std::to_string(adjustments.size()) + " adjustments exceed " + std::to_string(max_adjustments));
  std::vector<adjustment> sorted(adjustments.begin(), adjustments.end());
  for (const auto& a : sorted) {
    BOOST_OUTCOME_TRY(check_key(a.key, max_key_bytes));
    BOOST_OUTCOME_TRY(check_delta(a.delta));
  }
  std::sort(sorted.begin(), sorted.end(), [](const adjustment& a, const adjustment& b) { return a.key < b.key; });
  for (std::size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i].key == sorted[i - 1].key)
      return error(errc::invalid_argument, "key '" + sorted[i].key + "' appears twice");
  }
  return sorted;
}

/// `current + delta` when it lies in [0, max_amount]. Errors: ledger_errc::insufficient
/// ("'k' has 3, cannot take 5") or ledger_errc::over_limit. |delta| <= max_amount and
/// current in [0, max_amount], so the sum cannot overflow.
inline result<amount> next_balance(std::string_view key, amount current, amount delta) {
  const amount next = current + delta;
  if (next < 0)
    return error(make_error_code(ledger_errc::insufficient), "'" + std::string(key) + "' has " +
                                                                 std::to_string(current) + ", cannot take " +
                                                                 std::to_string(-delta));
  if (next > max_amount)
    return error(make_error_code(ledger_errc::over_limit),
                 "'" + std::string(key) + "' has " + std::to_string(current) + ", cannot add " + std::to_string(delta));
  return next;
}

/// The refusal a repeated apply of a refused operation gets: the first refusal's code.
inline error refused_before(std::string_view op_id, ledger_errc first) {
  return error(make_error_code(first), "operation '" + std::string(op_id) + "' was refused when first applied");
}

/// The refusal of an apply whose id was reverted or tombstoned.
inline error reverted_before(std::string_view op_id) {
  return error(make_error_code(ledger_errc::reverted), "operation '" + std::string(op_id) + "' was reverted");
}

/// The refusal of a new record when a bounded model is full (memory::ledger's max_records).
inline error records_full(std::size_t bound) {
  return error(errc::rejected,
               "operation records full (" + std::to_string(bound) + "): raise max_records or shorten the retention");
}

} // namespace bulwark::detail
