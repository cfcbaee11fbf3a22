#pragma once
// Real mode's saga steps: pay and stock as remote steps (commands on the Kafka bus to the
// payment and stock services' saga::participant), and those participants' handlers. The
// participants apply the same ledger operations as memory mode's local steps (op id =
// "<saga>/<step>", so a redelivered command or a resent one applies nothing twice).

#include <checkout/order.hpp>
#include <checkout/saga.hpp>

#include <bulwark/ledger.hpp>
#include <bulwark/saga/participant.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace checkout {

/// The command topics of a deployment named `prefix` (every deployment its own: a participant
/// of a new consumer group reads its topic from the start).
inline std::string pay_topic(std::string_view prefix) { return std::string(prefix) + ".payment.commands"; }
inline std::string stock_topic(std::string_view prefix) { return std::string(prefix) + ".stock.commands"; }

/// The pay step: {"user_id", "amount"} to the payment service.
inline saga::step<checkout_context> remote_pay_step(std::string_view prefix) {
  return saga::remote_step<checkout_context>("pay", pay_topic(prefix), [](const checkout_context& c, saga::op) {
    return nlohmann::json{{"user_id", c.user_id}, {"amount", c.total_cost}}.dump();
  });
}

/// The stock step: [[item, quantity], ...] (summed per item) to the stock service.
inline saga::step<checkout_context> remote_stock_step(std::string_view prefix) {
  return saga::remote_step<checkout_context>(
      "stock", stock_topic(prefix), [](const checkout_context& c, saga::op) { return nlohmann::json(c.take).dump(); });
}

/// The payment participant's "pay" step on `credit`.
template <bulwark::ledger Ledger> saga::step_handlers pay_handlers(Ledger& credit) {
  saga::step_handlers h;
  h.action = [&credit](const saga::step_command& c) -> bulwark::task<saga::step_result> {
    std::vector<bulwark::adjustment> pay;
    try {
      const auto j = nlohmann::json::parse(c.payload);
      const auto amount = j.at("amount").get<bulwark::amount>();
      if (amount < 0 || amount > bulwark::max_amount) throw std::out_of_range("amount");
      if (amount == 0) co_return saga::step_result::succeeded();
      pay.push_back({j.at("user_id").get<std::string>(), -amount});
    } catch (const std::exception& e) {
      co_return bulwark::error(bulwark::errc::invalid_argument, std::string("pay command: ") + e.what());
    }
    auto done = co_await credit.apply(c.op_id, pay);
    if (!done) co_return done.error(); // declined: the participant replies "failed"
    co_return saga::step_result::succeeded();
  };
  h.compensation = [&credit](const saga::step_command& c) -> bulwark::task<saga::step_result> {
    auto undone = co_await credit.revert(c.op_id);
    if (!undone) co_return undone.error();
    co_return saga::step_result::succeeded();
  };
  return h;
}

/// The stock participant's "stock" step on `stock`: one apply for all the order's items.
template <bulwark::ledger Ledger> saga::step_handlers stock_handlers(Ledger& stock) {
  saga::step_handlers h;
  h.action = [&stock](const saga::step_command& c) -> bulwark::task<saga::step_result> {
    std::vector<order_line> take;
    try {
      take = nlohmann::json::parse(c.payload).get<std::vector<order_line>>();
    } catch (const std::exception& e) {
      co_return bulwark::error(bulwark::errc::invalid_argument, std::string("stock command: ") + e.what());
    }
    if (take.empty()) co_return saga::step_result::succeeded();
    const auto adjustments = stock_adjustments(take);
    auto done = co_await stock.apply(c.op_id, adjustments);
    if (!done) co_return done.error();
    co_return saga::step_result::succeeded();
  };
  h.compensation = [&stock](const saga::step_command& c) -> bulwark::task<saga::step_result> {
    auto undone = co_await stock.revert(c.op_id);
    if (!undone) co_return undone.error();
    co_return saga::step_result::succeeded();
  };
  return h;
}

} // namespace checkout
