#pragma once
// The order record and the checkout saga's context: plain data and the rules on them, no I/O.
//
// An order record ("order/<id>" in the order service's repository) holds what the contract
// shows (user, items, total, paid) and the state of its checkout: the number of the latest
// attempt and where that attempt is. Every change is a compare-and-set on the record's version,
// so exactly one request starts attempt n + 1 (and drives its saga "<order id>#<n + 1>"); the
// others that raced it see `running` and wait on that saga.

#include <checkout/input.hpp>

#include <bulwark/ledger.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace checkout {

/// Where an order's latest checkout attempt is.
enum class checkout_state : std::uint8_t {
  idle,    ///< never checked out
  running, ///< attempt `attempt` has a saga that is not known to be over
  failed,  ///< attempt `attempt` was rolled back (compensated): a new checkout may start
  paid,    ///< attempt `attempt` completed: the order is paid, for good
};
NLOHMANN_JSON_SERIALIZE_ENUM(checkout_state, {{checkout_state::idle, "idle"},
                                              {checkout_state::running, "running"},
                                              {checkout_state::failed, "failed"},
                                              {checkout_state::paid, "paid"}})

struct order_line {
  std::string item_id;
  bulwark::amount quantity = 0;
};

struct order_record {
  std::string user_id;
  std::vector<order_line> items; ///< as added, [[item, quantity], ...] in the contract's find
  bulwark::amount total_cost = 0;
  bool paid = false;
  std::uint32_t attempt = 0;
  checkout_state checkout = checkout_state::idle;
};

inline void to_json(nlohmann::json& j, const order_line& l) { j = nlohmann::json::array({l.item_id, l.quantity}); }
inline void from_json(const nlohmann::json& j, order_line& l) {
  l.item_id = j.at(0).get<std::string>();
  l.quantity = j.at(1).get<bulwark::amount>();
}
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(order_record, user_id, items, total_cost, paid, attempt, checkout)

/// An order record from its stored bytes; errc::protocol_error when they are not one.
inline bulwark::result<order_record> decode_order(std::string_view id, std::string_view bytes) {
  try {
    return nlohmann::json::parse(bytes).get<order_record>();
  } catch (const nlohmann::json::exception& e) {
    return bulwark::error(bulwark::errc::protocol_error, "order " + std::string(id) + ": " + e.what());
  }
}

inline std::string encode_order(const order_record& r) { return nlohmann::json(r).dump(); }

inline std::string order_key(std::string_view id) { return "order/" + std::string(id); }

/// The saga id of attempt `attempt` of an order: also the prefix of its ledger operation ids.
inline std::string saga_id(std::string_view order_id, std::uint32_t attempt) {
  return std::string(order_id) + "#" + std::to_string(attempt);
}

/// The contract's GET /orders/find answer.
inline nlohmann::json order_json(std::string_view id, const order_record& r) {
  return {{"order_id", id}, {"paid", r.paid}, {"items", r.items}, {"user_id", r.user_id}, {"total_cost", r.total_cost}};
}

/// Adds `quantity` of an item at `price` to the order; the text of a 400 when the total or the
/// item's summed quantity would pass max_amount (what every ledger holds exactly).
inline std::optional<std::string> add_line(order_record& r, std::string item_id, bulwark::amount quantity,
                                           bulwark::amount price) {
  if (quantity > 0 && price > (bulwark::max_amount - r.total_cost) / quantity)
    return "Order total would exceed " + std::to_string(bulwark::max_amount);
  bulwark::amount summed = quantity;
  for (const auto& l : r.items)
    if (l.item_id == item_id) summed += l.quantity; // each <= max_amount: no overflow
  if (summed > bulwark::max_amount)
    return "Quantity of item " + item_id + " would exceed " + std::to_string(bulwark::max_amount);
  r.total_cost += price * quantity;
  r.items.push_back({std::move(item_id), quantity});
  return std::nullopt;
}

/// The ledger adjustments that take an order's stock (one apply for all its items).
inline std::vector<bulwark::adjustment> stock_adjustments(const std::vector<order_line>& take) {
  std::vector<bulwark::adjustment> out;
  out.reserve(take.size());
  for (const auto& l : take) out.push_back({l.item_id, -l.quantity});
  return out;
}

/// What one checkout saga carries: who pays how much, and the stock to take, summed per item
/// (one ledger apply takes them all).
struct checkout_context {
  std::string order_id;
  std::string saga_id;
  std::uint32_t attempt = 0;
  std::string user_id;
  bulwark::amount total_cost = 0;
  std::vector<order_line> take; ///< per item: its summed quantity, each item once, in id order
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(checkout_context, order_id, saga_id, attempt, user_id, total_cost, take)

inline checkout_context context_for(std::string_view order_id, const order_record& r) {
  checkout_context c{std::string(order_id), saga_id(order_id, r.attempt), r.attempt, r.user_id, r.total_cost, {}};
  std::map<std::string, bulwark::amount, std::less<>> summed;
  for (const auto& l : r.items)
    if (l.quantity > 0) summed[l.item_id] += l.quantity;
  for (auto& [item, quantity] : summed) c.take.push_back({item, quantity});
  return c;
}

/// The 400's text for a checkout that was rolled back, from the saga's detail ("step pay: ...",
/// "step stock: ... 'item' has 0, cannot take 1", "aborted", "saga deadline passed").
inline std::string refusal_text(std::string_view order_id, std::string_view detail) {
  if (detail.starts_with("step pay:")) return "User out of credit";
  if (detail.starts_with("step stock:")) {
    // The ledger's refusal names the key, the item id: "'<id>' has 3, cannot take 5".
    const auto open = detail.find('\'');
    const auto close = open == std::string_view::npos ? open : detail.find('\'', open + 1);
    if (close != std::string_view::npos)
      return "Out of stock on item_id: " + std::string(detail.substr(open + 1, close - open - 1));
    return "Out of stock";
  }
  return "Checkout of order " + std::string(order_id) +
         " did not finish in time and was rolled back: nothing was charged, no stock was taken";
}

} // namespace checkout
