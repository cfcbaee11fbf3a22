#pragma once
// The payment service: users and their credit, a ledger balance per user id. A user exists when
// their balance does (create_user and batch_init set it); add_funds and pay check that first, so
// a lookup never creates a user.

#include <checkout/ids.hpp>
#include <checkout/input.hpp>

#include <bulwark/http/responses.hpp>
#include <bulwark/ledger.hpp>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace checkout {

template <bulwark::ledger Ledger> class payment_service {
public:
  using response = bulwark::http::response;

  explicit payment_service(Ledger& credit) : credit_(credit) {}

  /// POST /payment/create_user
  bulwark::task<response> create_user() {
    const auto id = new_id();
    auto zero = co_await credit_.set(id, 0);
    if (!zero) co_return zero.error();
    co_return bulwark::http::json(nlohmann::json{{"user_id", id}});
  }

  /// POST /payment/batch_init/{n}/{starting_money}: users "0".."n-1".
  bulwark::task<response> batch_init(std::string n_text, std::string money_text) {
    const auto n = parse_amount(n_text, max_batch);
    if (!n) co_return bulwark::http::text(400, not_an_amount("n", n_text, max_batch));
    const auto money = parse_amount(money_text);
    if (!money) co_return bulwark::http::text(400, not_an_amount("Starting money", money_text));
    std::vector<bulwark::balance> credits;
    credits.reserve(static_cast<std::size_t>(*n));
    for (bulwark::amount i = 0; i < *n; ++i) credits.push_back({std::to_string(i), *money});
    auto set = co_await credit_.set_many(credits);
    if (!set) co_return set.error();
    co_return bulwark::http::json(nlohmann::json{{"msg", "Batch init for users successful"}});
  }

  /// GET /payment/find_user/{user_id}
  bulwark::task<response> find_user(std::string id) {
    auto credit = co_await this->credit(id);
    if (!credit) co_return credit.error();
    if (!credit.value()) co_return not_found(id);
    co_return bulwark::http::json(nlohmann::json{{"user_id", id}, {"credit", *credit.value()}});
  }

  /// POST /payment/add_funds/{user_id}/{amount} and POST /payment/pay/{user_id}/{amount}.
  bulwark::task<response> change(std::string id, std::string amount_text, bool pay) {
    auto credit = co_await this->credit(id);
    if (!credit) co_return credit.error();
    if (!credit.value()) co_return not_found(id);
    const auto amount = parse_amount(amount_text);
    if (!amount) co_return bulwark::http::text(400, not_an_amount("Amount", amount_text));
    auto now = co_await credit_.add(id, pay ? -*amount : *amount);
    if (!now) {
      if (now.error() == bulwark::ledger_errc::insufficient)
        co_return bulwark::http::text(400, "User: " + id + " credit cannot get reduced below zero!");
      if (now.error() == bulwark::ledger_errc::over_limit)
        co_return bulwark::http::text(400,
                                      "User: " + id + " credit cannot exceed " + std::to_string(bulwark::max_amount));
      co_return now.error();
    }
    co_return bulwark::http::text(200, "User: " + id + " credit updated to: " + std::to_string(now.value()));
  }

  /// The user's credit, nullopt when the user does not exist.
  bulwark::task<std::optional<bulwark::amount>> credit(std::string id) {
    if (!valid_id(id)) co_return std::optional<bulwark::amount>{};
    co_return co_await credit_.get(id);
  }

  Ledger& ledger() noexcept { return credit_; }

private:
  static response not_found(std::string_view id) {
    return bulwark::http::text(400, "User: " + std::string(id) + " not found!");
  }

  Ledger& credit_;
};

} // namespace checkout
