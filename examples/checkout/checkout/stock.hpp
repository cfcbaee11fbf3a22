#pragma once
// The stock service: items with a price and a stock level. The stock is a ledger balance per
// item id (so the checkout saga takes all of an order's items in one atomic, idempotent apply);
// the price is a repository record "item/<id>" whose presence says that the item exists (a
// lookup never creates an item: add and subtract check it first).

#include <checkout/ids.hpp>
#include <checkout/input.hpp>

#include <bulwark/http/responses.hpp>
#include <bulwark/ledger.hpp>
#include <bulwark/repository.hpp>

#include <nlohmann/json.hpp>

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace checkout {

inline std::string item_key(std::string_view id) { return "item/" + std::string(id); }

template <bulwark::ledger Ledger, bulwark::repository Repository> class stock_service {
public:
  using response = bulwark::http::response;

  /// `stock`: the stock level per item id; `items`: the price records.
  stock_service(Ledger& stock, Repository& items) : stock_(stock), items_(items) {}

  /// POST /stock/item/create/{price}
  bulwark::task<response> create(std::string price_text) {
    const auto price = parse_amount(price_text);
    if (!price) co_return bulwark::http::text(400, not_an_amount("Price", price_text));
    const auto id = new_id();
    // The balance first, then the record that makes the item visible.
    auto zero = co_await stock_.set(id, 0);
    if (!zero) co_return zero.error();
    auto put = co_await items_.put(item_key(id), std::to_string(*price), std::nullopt);
    if (!put) co_return put.error();
    co_return bulwark::http::json(nlohmann::json{{"item_id", id}});
  }

  /// POST /stock/batch_init/{n}/{starting_stock}/{item_price}: items "0".."n-1".
  bulwark::task<response> batch_init(std::string n_text, std::string stock_text, std::string price_text) {
    const auto n = parse_amount(n_text, max_batch);
    if (!n) co_return bulwark::http::text(400, not_an_amount("n", n_text, max_batch));
    const auto stock = parse_amount(stock_text);
    if (!stock) co_return bulwark::http::text(400, not_an_amount("Starting stock", stock_text));
    const auto price = parse_amount(price_text);
    if (!price) co_return bulwark::http::text(400, not_an_amount("Item price", price_text));
    std::vector<bulwark::balance> levels;
    levels.reserve(static_cast<std::size_t>(*n));
    for (bulwark::amount i = 0; i < *n; ++i) levels.push_back({std::to_string(i), *stock});
    auto set = co_await stock_.set_many(levels);
    if (!set) co_return set.error();
    const auto price_bytes = std::to_string(*price);
    for (const auto& level : levels) {
      auto put = co_await items_.put(item_key(level.key), price_bytes, std::nullopt);
      if (!put) co_return put.error();
    }
    co_return bulwark::http::json(nlohmann::json{{"msg", "Batch init for stock successful"}});
  }

  /// GET /stock/find/{item_id}
  bulwark::task<response> find(std::string id) {
    auto price = co_await this->price(id);
    if (!price) co_return price.error();
    if (!price.value()) co_return not_found(id);
    auto level = co_await stock_.get(id);
    if (!level) co_return level.error();
    co_return bulwark::http::json(nlohmann::json{{"stock", level.value().value_or(0)}, {"price", *price.value()}});
  }

  /// POST /stock/add/{item_id}/{amount} and POST /stock/subtract/{item_id}/{amount}.
  bulwark::task<response> change(std::string id, std::string amount_text, bool subtract) {
    auto price = co_await this->price(id);
    if (!price) co_return price.error();
    if (!price.value()) co_return not_found(id);
    const auto amount = parse_amount(amount_text);
    if (!amount) co_return bulwark::http::text(400, not_an_amount("Amount", amount_text));
    auto level = co_await stock_.add(id, subtract ? -*amount : *amount);
    if (!level) {
      if (level.error() == bulwark::ledger_errc::insufficient)
        co_return bulwark::http::text(400, "Item: " + id + " stock cannot get reduced below zero!");
      if (level.error() == bulwark::ledger_errc::over_limit)
        co_return bulwark::http::text(400,
                                      "Item: " + id + " stock cannot exceed " + std::to_string(bulwark::max_amount));
      co_return level.error();
    }
    co_return bulwark::http::text(200, "Item: " + id + " stock updated to: " + std::to_string(level.value()));
  }

  /// The price of an item, nullopt when it does not exist (the order service's addItem).
  bulwark::task<std::optional<bulwark::amount>> price(std::string id) {
    if (!valid_id(id)) co_return std::optional<bulwark::amount>{};
    auto got = co_await items_.get(item_key(id));
    if (!got) co_return got.error();
    if (!got.value()) co_return std::optional<bulwark::amount>{};
    auto price = parse_amount(got.value()->value);
    if (!price)
      co_return bulwark::error(bulwark::errc::protocol_error, "item " + id + ": price record is not a number");
    co_return std::optional<bulwark::amount>{*price};
  }

  Ledger& ledger() noexcept { return stock_; }

private:
  static response not_found(std::string_view id) {
    return bulwark::http::text(400, "Item: " + std::string(id) + " not found!");
  }

  Ledger& stock_;
  Repository& items_;
};

} // namespace checkout
