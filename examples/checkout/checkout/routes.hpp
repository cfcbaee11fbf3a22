#pragma once
// The contract's paths (../contract.md), each mapped to its service call. A service may be
// absent (nullptr): the separate-process executables each serve one prefix.

#include <bulwark/http/router.hpp>

#include <string>

namespace checkout {

namespace http = bulwark::http;

inline std::string param(const http::request& req, std::string_view name) { return std::string(*req.param(name)); }

template <class Stock> void add_stock_routes(http::router& routes, Stock& stock) {
  routes.post("/stock/item/create/{price}", [&stock](http::request& req) { return stock.create(param(req, "price")); });
  routes.post("/stock/batch_init/{n}/{starting_stock}/{item_price}", [&stock](http::request& req) {
    return stock.batch_init(param(req, "n"), param(req, "starting_stock"), param(req, "item_price"));
  });
  routes.get("/stock/find/{item_id}", [&stock](http::request& req) { return stock.find(param(req, "item_id")); });
  routes.post("/stock/add/{item_id}/{amount}", [&stock](http::request& req) {
    return stock.change(param(req, "item_id"), param(req, "amount"), false);
  });
  routes.post("/stock/subtract/{item_id}/{amount}",
              [&stock](http::request& req) { return stock.change(param(req, "item_id"), param(req, "amount"), true); });
}

template <class Payment> void add_payment_routes(http::router& routes, Payment& payment) {
  routes.post("/payment/create_user", [&payment](http::request&) { return payment.create_user(); });
  routes.post("/payment/batch_init/{n}/{starting_money}", [&payment](http::request& req) {
    return payment.batch_init(param(req, "n"), param(req, "starting_money"));
  });
  routes.get("/payment/find_user/{user_id}",
             [&payment](http::request& req) { return payment.find_user(param(req, "user_id")); });
  routes.post("/payment/add_funds/{user_id}/{amount}", [&payment](http::request& req) {
    return payment.change(param(req, "user_id"), param(req, "amount"), false);
  });
  routes.post("/payment/pay/{user_id}/{amount}", [&payment](http::request& req) {
    return payment.change(param(req, "user_id"), param(req, "amount"), true);
  });
}

template <class Orders> void add_order_routes(http::router& routes, Orders& orders) {
  routes.post("/orders/create/{user_id}",
              [&orders](http::request& req) { return orders.create(param(req, "user_id")); });
  routes.post("/orders/batch_init/{n}/{n_items}/{n_users}/{item_price}", [&orders](http::request& req) {
    return orders.batch_init(param(req, "n"), param(req, "n_items"), param(req, "n_users"), param(req, "item_price"));
  });
  routes.get("/orders/find/{order_id}", [&orders](http::request& req) { return orders.find(param(req, "order_id")); });
  routes.post("/orders/addItem/{order_id}/{item_id}/{quantity}", [&orders](http::request& req) {
    return orders.add_item(param(req, "order_id"), param(req, "item_id"), param(req, "quantity"));
  });
  routes.post("/orders/checkout/{order_id}",
              [&orders](http::request& req) { return orders.checkout(param(req, "order_id")); });
}

/// The contract answers every failure of the caller's making with a 400 and a text: an unknown
/// path or a wrong method too (the router's 404 and 405). Add it first.
inline http::middleware contract_statuses() {
  return [](http::request& req, const http::handler& next) -> bulwark::task<http::response> {
    auto resp = co_await next(req);
    if (!resp) co_return resp;
    if (resp.value().status == 404)
      co_return http::text(400, "No such path: " + req.method + " " + std::string(req.target));
    if (resp.value().status == 405)
      co_return http::text(400, "Method " + req.method + " is not allowed on " + std::string(req.target));
    co_return resp;
  };
}

} // namespace checkout
