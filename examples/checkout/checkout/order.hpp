#pragma once
// The order record and the checkout saga's context: plain data and the rules on them, no I/O.
//
// An order record ("order/<id>" in the order service's repository) holds what the contract
// shows (user, items, total, paid) and the state of its checkout: the number of the latest
// attempt and where that attempt is. Every change is a compare-and-set on the record's version,
// so exactly one request starts attempt n + 1 (and drives its saga "<order id>#<n + 1>"); the
// others that raced it see `running` and wait on that saga.

#include <checkout/input.hpp>
#include <checkout/record_codec.hpp>

#include <bulwark/ledger.hpp>
#include <bulwark/versioned.hpp>

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

namespace detail {
inline void write_lines(field_writer& w, const std::vector<order_line>& lines) {
  w.number(lines.size());
  for (const auto& l : lines) w.text(l.item_id).number(l.quantity);
}
inline bool read_lines(field_reader& in, std::vector<order_line>& lines) {
  std::size_t n = 0;
  // Each line takes at least 5 bytes ("0:\n0\n"): a count the bytes cannot hold is refused
  // before anything is allocated for it.
  if (!in.number(n).ok() || n > in.left() / 5) return false;
  lines.resize(n);
  for (auto& l : lines)
    if (!in.text(l.item_id).number(l.quantity).ok() || l.quantity < 0 || l.quantity > bulwark::max_amount) return false;
  return true;
}
inline bool valid_total(bulwark::amount a) { return a >= 0 && a <= bulwark::max_amount; }
} // namespace detail

/// An order record's stored bytes (record_codec.hpp):
///   O1 \n paid \n attempt \n checkout state \n total \n user \n n lines \n (item \n quantity \n)*
inline std::string encode_order(const order_record& r) {
  detail::field_writer w("O1", 48 + r.user_id.size() + 24 * r.items.size());
  w.number(r.paid ? 1 : 0).number(r.attempt).number(static_cast<int>(r.checkout)).number(r.total_cost).text(r.user_id);
  detail::write_lines(w, r.items);
  return std::move(w).take();
}

/// An order record from its stored bytes; errc::protocol_error when they are not one.
inline bulwark::result<order_record> decode_order(std::string_view id, std::string_view bytes) {
  detail::field_reader in(bytes, "O1");
  order_record r;
  int paid = 0, state = 0;
  in.number(paid).number(r.attempt).number(state).number(r.total_cost).text(r.user_id);
  if (!in.ok() || paid < 0 || paid > 1 || state < 0 || state > static_cast<int>(checkout_state::paid) ||
      !detail::valid_total(r.total_cost) || !detail::read_lines(in, r.items) || !in.done())
    return bulwark::error(bulwark::errc::protocol_error, "order " + std::string(id) + ": not an order record");
  r.paid = paid == 1;
  r.checkout = static_cast<checkout_state>(state);
  return r;
}

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
/// (one ledger apply takes them all); and the order record as this attempt wrote it, so that the
/// confirm step can mark it paid without reading it first (confirm_paid, saga.hpp).
struct checkout_context {
  std::string order_id;
  std::string saga_id;
  std::uint32_t attempt = 0;
  std::string user_id;
  bulwark::amount total_cost = 0;
  std::vector<order_line> take;  ///< per item: its summed quantity, each item once, in id order
  std::vector<order_line> items; ///< the record's lines as added
  /// The record's version once this attempt was running in it; bulwark::no_version when unknown
  /// (a context of the first form): the confirm step then reads the record first.
  bulwark::version_t record_version = bulwark::no_version;
};

/// The saga's codec for its context (written into the saga log at every transition):
///   C2 \n attempt \n total \n record version \n order id \n saga id \n user \n
///      n lines \n (item \n quantity \n)* (take) n lines \n (item \n quantity \n)* (items)
/// It still reads the first form, C1 (no record version, no items), which a saga logged before
/// may carry.
struct context_codec {
  static std::string encode(const checkout_context& c) {
    detail::field_writer w("C2", 64 + c.order_id.size() + c.saga_id.size() + c.user_id.size() +
                                     24 * (c.take.size() + c.items.size()));
    w.number(c.attempt).number(c.total_cost).number(c.record_version).text(c.order_id).text(c.saga_id).text(c.user_id);
    detail::write_lines(w, c.take);
    detail::write_lines(w, c.items);
    return std::move(w).take();
  }
  /// errc::invalid_argument (what the saga codecs answer) for bytes that are not a context.
  static bulwark::result<checkout_context> decode(std::string_view bytes) {
    const bool first_form = bytes.starts_with("C1\n");
    detail::field_reader in(bytes, first_form ? "C1" : "C2");
    checkout_context c;
    in.number(c.attempt).number(c.total_cost);
    if (!first_form) in.number(c.record_version);
    in.text(c.order_id).text(c.saga_id).text(c.user_id);
    if (!in.ok() || !detail::valid_total(c.total_cost) || !detail::read_lines(in, c.take) ||
        (!first_form && !detail::read_lines(in, c.items)) || !in.done())
      return bulwark::error(bulwark::errc::invalid_argument, "not a checkout saga context");
    return c;
  }
};

/// The context of attempt r.attempt of an order whose record (r, running) has `version`.
inline checkout_context context_for(std::string_view order_id, const order_record& r,
                                    bulwark::version_t version = bulwark::no_version) {
  checkout_context c{
      std::string(order_id), saga_id(order_id, r.attempt), r.attempt, r.user_id, r.total_cost, {}, r.items, version};
  std::map<std::string, bulwark::amount, std::less<>> summed;
  for (const auto& l : r.items)
    if (l.quantity > 0) summed[l.item_id] += l.quantity;
  for (auto& [item, quantity] : summed) c.take.push_back({item, quantity});
  return c;
}

/// The order record once the attempt `c` completed: what it held while running, now paid.
inline order_record paid_record(const checkout_context& c) {
  order_record r;
  r.user_id = c.user_id;
  r.items = c.items;
  r.total_cost = c.total_cost;
  r.paid = true;
  r.attempt = c.attempt;
  r.checkout = checkout_state::paid;
  return r;
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
