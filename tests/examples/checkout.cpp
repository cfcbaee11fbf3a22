// The checkout example in process on the memory backends (checkout/memory_mode.hpp): the
// routers are called directly (no sockets) from two "HTTP" threads, as the server would. The
// course template's three functional scenarios, the contract's bad inputs, duplicate checkouts
// sharing one saga, the answer deadline before and past the pivot (a manual clock), and the
// consistency scenario: 1 item with stock 100, 1000 users with credit 1, 1000 orders for random
// users, 1000 concurrent checkouts -> exactly 100 succeed, stock 0, total credit 900.

#include <checkout/memory_mode.hpp>

#include <bulwark/http/client.hpp>
#include <bulwark/http/router.hpp>

#include "support/run.hpp"

#include <gtest/gtest.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace http = bulwark::http;
using json = nlohmann::json;
using namespace std::literals;

namespace {

bulwark::task<http::response> route(http::router& r, http::request req) { co_return co_await r(req); }

class checkout_services : public ::testing::Test {
protected:
  void SetUp() override {
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { http_.run(); });
  }
  void TearDown() override {
    services_.reset(); // stops the orchestrator (no request is in flight by now)
    work_.reset();
    for (auto& t : threads_) t.join();
  }

  void build(checkout::memory_options o = {}) {
    services_ = std::make_unique<checkout::memory_services>(std::move(o));
    routes_ = std::make_unique<http::router>();
    services_->add_routes(*routes_);
  }

  // Starts one request on the HTTP threads.
  std::future<std::optional<bulwark::result<http::response>>> send(std::string method, std::string target) {
    return bulwark::test::spawn(http_.get_executor(), route(*routes_, http::make_request(std::move(method), target)));
  }
  static http::response wait(std::future<std::optional<bulwark::result<http::response>>>& f) {
    if (f.wait_for(30s) != std::future_status::ready) throw std::runtime_error("no answer within 30 s");
    auto r = *f.get();
    if (!r) return http::error_response(r.error());
    return std::move(r).value();
  }
  http::response call(std::string method, std::string target) {
    auto f = send(std::move(method), std::move(target));
    return wait(f);
  }
  json call_json(std::string method, std::string target) {
    auto r = call(method, target);
    EXPECT_EQ(r.status, 200) << method << ' ' << target << ": " << r.body;
    EXPECT_EQ(r.headers.get("Content-Type").value_or(""), "application/json");
    return json::parse(r.body, nullptr, false);
  }
  std::string create_user() { return call_json("POST", "/payment/create_user")["user_id"]; }
  std::string create_item(int price) {
    return call_json("POST", "/stock/item/create/" + std::to_string(price))["item_id"];
  }
  std::string create_order(const std::string& user) { return call_json("POST", "/orders/create/" + user)["order_id"]; }
  long long stock_of(const std::string& item) { return call_json("GET", "/stock/find/" + item)["stock"]; }
  long long credit_of(const std::string& user) { return call_json("GET", "/payment/find_user/" + user)["credit"]; }

  asio::io_context http_{2};
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(http_);
  std::vector<std::thread> threads_;
  std::unique_ptr<checkout::memory_services> services_;
  std::unique_ptr<http::router> routes_;
};

// The course template's test_stock.
TEST_F(checkout_services, stock_scenario) {
  build();
  const auto item = create_item(5);
  EXPECT_EQ(call_json("GET", "/stock/find/" + item), (json{{"stock", 0}, {"price", 5}}));
  auto added = call("POST", "/stock/add/" + item + "/50");
  EXPECT_EQ(added.status, 200);
  EXPECT_EQ(added.body, "Item: " + item + " stock updated to: 50");
  auto over = call("POST", "/stock/subtract/" + item + "/200");
  EXPECT_EQ(over.status, 400);
  EXPECT_EQ(over.body, "Item: " + item + " stock cannot get reduced below zero!");
  EXPECT_EQ(stock_of(item), 50);
  EXPECT_EQ(call("POST", "/stock/subtract/" + item + "/15").status, 200);
  EXPECT_EQ(stock_of(item), 35);
}

// The course template's test_payment.
TEST_F(checkout_services, payment_scenario) {
  build();
  const auto user = create_user();
  EXPECT_EQ(call_json("GET", "/payment/find_user/" + user), (json{{"user_id", user}, {"credit", 0}}));
  auto funded = call("POST", "/payment/add_funds/" + user + "/15");
  EXPECT_EQ(funded.status, 200);
  EXPECT_EQ(funded.body, "User: " + user + " credit updated to: 15");
  auto over = call("POST", "/payment/pay/" + user + "/20");
  EXPECT_EQ(over.status, 400);
  EXPECT_EQ(over.body, "User: " + user + " credit cannot get reduced below zero!");
  EXPECT_EQ(call("POST", "/payment/pay/" + user + "/10").status, 200);
  EXPECT_EQ(credit_of(user), 5);
}

// The course template's test_order: rolled back on missing stock, then on missing credit, then
// it succeeds; every rollback leaves nothing behind.
TEST_F(checkout_services, order_scenario_rolls_back_then_succeeds) {
  build();
  const auto user = create_user();
  const auto order = create_order(user);
  const auto item1 = create_item(5);
  const auto item2 = create_item(5);
  ASSERT_EQ(call("POST", "/stock/add/" + item1 + "/15").status, 200);
  ASSERT_EQ(call("POST", "/stock/add/" + item2 + "/1").status, 200);
  auto added = call("POST", "/orders/addItem/" + order + "/" + item1 + "/1");
  EXPECT_EQ(added.body, "Item: " + item1 + " added to: " + order + " price updated to: 5");
  ASSERT_EQ(call("POST", "/orders/addItem/" + order + "/" + item2 + "/1").status, 200);
  ASSERT_EQ(call("POST", "/stock/subtract/" + item2 + "/1").status, 200);
  ASSERT_EQ(call("POST", "/payment/add_funds/" + user + "/10").status, 200);

  auto no_stock = call("POST", "/orders/checkout/" + order);
  EXPECT_EQ(no_stock.status, 400);
  EXPECT_EQ(no_stock.body, "Out of stock on item_id: " + item2);
  EXPECT_EQ(stock_of(item1), 15);
  EXPECT_EQ(credit_of(user), 10); // charged, then refunded

  ASSERT_EQ(call("POST", "/stock/add/" + item2 + "/15").status, 200);
  ASSERT_EQ(call("POST", "/payment/pay/" + user + "/10").status, 200);
  auto no_credit = call("POST", "/orders/checkout/" + order);
  EXPECT_EQ(no_credit.status, 400);
  EXPECT_EQ(no_credit.body, "User out of credit");
  EXPECT_EQ(stock_of(item1), 15);
  EXPECT_EQ(stock_of(item2), 15);

  ASSERT_EQ(call("POST", "/payment/add_funds/" + user + "/15").status, 200);
  auto paid = call("POST", "/orders/checkout/" + order);
  EXPECT_EQ(paid.status, 200);
  EXPECT_EQ(paid.body, "Checkout successful");
  EXPECT_EQ(stock_of(item1), 14);
  EXPECT_EQ(stock_of(item2), 14);
  EXPECT_EQ(credit_of(user), 5);
  const auto found = call_json("GET", "/orders/find/" + order);
  EXPECT_EQ(found["paid"], true);
  EXPECT_EQ(found["total_cost"], 10);
  EXPECT_EQ(found["items"], json::array({json::array({item1, 1}), json::array({item2, 1})}));

  // Paid: 200 again, nothing charged; no item can be added any more.
  EXPECT_EQ(call("POST", "/orders/checkout/" + order).status, 200);
  EXPECT_EQ(credit_of(user), 5);
  EXPECT_EQ(call("POST", "/orders/addItem/" + order + "/" + item1 + "/1").status, 400);
  const auto s = services_->orchestrator().stats();
  EXPECT_EQ(s.completed, 1u);
  EXPECT_EQ(s.compensated, 2u);
}

TEST_F(checkout_services, bad_input_is_a_400_with_a_text_and_creates_nothing) {
  build();
  const auto user = create_user();
  const auto order = create_order(user);
  const auto item = create_item(3);
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"GET /stock/find/nope", "Item: nope not found!"},
      {"POST /stock/add/nope/1", "Item: nope not found!"},
      {"POST /stock/item/create/-1", "Price must be an integer from 0 to 9007199254740991, got '-1'"},
      {"POST /stock/item/create/abc", "Price must be an integer from 0 to 9007199254740991, got 'abc'"},
      {"POST /stock/add/" + item + "/9007199254740992",
       "Amount must be an integer from 0 to 9007199254740991, got '9007199254740992'"},
      {"POST /stock/add/" + item + "/99999999999999999999999",
       "Amount must be an integer from 0 to 9007199254740991, got '99999999999999999999999'"},
      {"GET /payment/find_user/nope", "User: nope not found!"},
      {"POST /payment/add_funds/nope/5", "User: nope not found!"},
      {"POST /payment/pay/" + user + "/x1", "Amount must be an integer from 0 to 9007199254740991, got 'x1'"},
      {"POST /orders/create/nope", "User: nope not found!"},
      {"GET /orders/find/nope", "Order: nope not found!"},
      {"POST /orders/checkout/nope", "Order: nope not found!"},
      {"POST /orders/addItem/nope/" + item + "/1", "Order: nope not found!"},
      {"POST /orders/addItem/" + order + "/nope/1", "Item: nope does not exist!"},
      {"POST /orders/addItem/" + order + "/" + item + "/-2",
       "Quantity must be an integer from 0 to 9007199254740991, got '-2'"},
      {"POST /orders/addItem/" + order + "/" + item + "/3002399751580331", "Order total would exceed 9007199254740991"},
      {"POST /stock/batch_init/5000001/1/1", "n must be an integer from 0 to 5000000, got '5000001'"},
      {"GET /nowhere", "No such path: GET /nowhere"},
      {"GET /orders/checkout/" + order, "Method GET is not allowed on /orders/checkout/" + order},
  };
  for (const auto& [request, text] : refused) {
    const auto space = request.find(' ');
    auto r = call(request.substr(0, space), request.substr(space + 1));
    EXPECT_EQ(r.status, 400) << request;
    EXPECT_EQ(r.body, text) << request;
  }
  // Nothing was created by a lookup.
  EXPECT_EQ(services_->stock_ledger().get_now("nope").value(), std::nullopt);
  EXPECT_EQ(services_->credit_ledger().get_now("nope").value(), std::nullopt);
  EXPECT_EQ(call_json("GET", "/orders/find/" + order)["total_cost"], 0);
}

TEST_F(checkout_services, batch_init_makes_the_contract_ids) {
  build();
  EXPECT_EQ(call_json("POST", "/stock/batch_init/3/7/2"), (json{{"msg", "Batch init for stock successful"}}));
  EXPECT_EQ(call_json("POST", "/payment/batch_init/3/9"), (json{{"msg", "Batch init for users successful"}}));
  EXPECT_EQ(call_json("POST", "/orders/batch_init/4/3/3/2"), (json{{"msg", "Batch init for orders successful"}}));
  EXPECT_EQ(call_json("GET", "/stock/find/2"), (json{{"stock", 7}, {"price", 2}}));
  EXPECT_EQ(credit_of("2"), 9);
  const auto o = call_json("GET", "/orders/find/3");
  EXPECT_EQ(o["total_cost"], 4);
  EXPECT_EQ(o["items"].size(), 2u);
  EXPECT_EQ(o["paid"], false);
  EXPECT_EQ(call("GET", "/stock/find/3").status, 400);
}

// Concurrent duplicate checkouts of one order: one saga, one charge, every answer 200.
TEST_F(checkout_services, duplicate_checkouts_share_one_saga) {
  build();
  ASSERT_EQ(call("POST", "/stock/batch_init/1/10/1").status, 200);
  ASSERT_EQ(call("POST", "/payment/batch_init/1/5").status, 200);
  const auto order = create_order("0");
  ASSERT_EQ(call("POST", "/orders/addItem/" + order + "/0/2").status, 200);
  std::vector<std::future<std::optional<bulwark::result<http::response>>>> answers;
  for (int i = 0; i < 50; ++i) answers.push_back(send("POST", "/orders/checkout/" + order));
  for (auto& a : answers) EXPECT_EQ(wait(a).status, 200);
  EXPECT_EQ(credit_of("0"), 3);
  EXPECT_EQ(stock_of("0"), 8);
  EXPECT_EQ(services_->orchestrator().stats().started, 1u);
}

// A checkout whose payment hangs past the answer deadline: aborted before the pivot, the answer
// waits for the compensation and is a 400; nothing remains, and a later checkout succeeds.
TEST_F(checkout_services, deadline_before_the_pivot_aborts_and_answers_400) {
  auto clock = bulwark::clock::manual();
  auto slow = std::make_shared<std::atomic<bool>>(true);
  checkout::memory_options o;
  o.orders.clock = clock;
  o.orders.answer_timeout = 10s;
  o.timing.step_timeout = 30s;
  o.define = [clock, slow](auto pay, auto stock, auto confirm, const checkout::saga_timing& t) {
    auto charge = pay.action;
    pay.action = [clock, slow, charge](checkout::checkout_context& c,
                                       bulwark::clock::time_point deadline) -> bulwark::task<void> {
      auto charged = co_await charge(c, deadline); // it did charge...
      if (!charged) co_return charged.error();
      if (slow->load()) {
        auto reached = co_await clock.wait_until(deadline); // ... but the reply is late
        (void)reached;
        co_return bulwark::error(bulwark::errc::timeout, "payment answered late");
      }
      co_return bulwark::ok();
    };
    return checkout::checkout_saga(std::move(pay), std::move(stock), std::move(confirm), t);
  };
  build(std::move(o));
  ASSERT_EQ(call("POST", "/stock/batch_init/1/10/1").status, 200);
  ASSERT_EQ(call("POST", "/payment/batch_init/1/5").status, 200);
  const auto order = create_order("0");
  ASSERT_EQ(call("POST", "/orders/addItem/" + order + "/0/1").status, 200);
  auto answer = send("POST", "/orders/checkout/" + order);
  // Time moves in steps until the answer came (bounded): the answer deadline (10 s), then the
  // attempt's deadline (30 s) at which the slow action returns into the abort.
  for (int i = 0; i < 400 && answer.wait_for(5ms) != std::future_status::ready; ++i) clock.advance(250ms);
  auto r = wait(answer);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, "Checkout of order " + order +
                        " did not finish in time and was rolled back: nothing was charged, no stock was taken");
  EXPECT_EQ(credit_of("0"), 5);
  EXPECT_EQ(stock_of("0"), 10);
  slow->store(false);
  EXPECT_EQ(call("POST", "/orders/checkout/" + order).status, 200);
  EXPECT_EQ(credit_of("0"), 4);
  EXPECT_EQ(stock_of("0"), 9);
}

// A checkout whose confirm step (after the pivot) is slow past the answer deadline: not
// aborted, waited for, 200.
TEST_F(checkout_services, deadline_past_the_pivot_waits_and_answers_200) {
  auto clock = bulwark::clock::manual();
  checkout::memory_options o;
  o.orders.clock = clock;
  o.orders.answer_timeout = 10s;
  o.timing.step_timeout = 30s;
  o.define = [clock](auto pay, auto stock, auto confirm, const checkout::saga_timing& t) {
    auto slow_confirm = [clock, confirm](checkout::checkout_context& c,
                                         bulwark::clock::time_point deadline) -> bulwark::task<void> {
      auto reached = co_await clock.wait_for(20s);
      (void)reached;
      co_return co_await confirm(c, deadline);
    };
    return checkout::checkout_saga(std::move(pay), std::move(stock), slow_confirm, t);
  };
  build(std::move(o));
  ASSERT_EQ(call("POST", "/stock/batch_init/1/10/1").status, 200);
  ASSERT_EQ(call("POST", "/payment/batch_init/1/5").status, 200);
  const auto order = create_order("0");
  ASSERT_EQ(call("POST", "/orders/addItem/" + order + "/0/1").status, 200);
  auto answer = send("POST", "/orders/checkout/" + order);
  for (int i = 0; i < 400 && answer.wait_for(5ms) != std::future_status::ready; ++i) clock.advance(250ms);
  auto r = wait(answer);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(credit_of("0"), 4);
  EXPECT_EQ(stock_of("0"), 9);
  EXPECT_EQ(call_json("GET", "/orders/find/" + order)["paid"], true);
}

// The benchmark's consistency check: 1 item with stock 100, 1000 users with credit 1, 1000
// orders of that item for random users (users repeat), 1000 concurrent checkouts.
TEST_F(checkout_services, consistency_exactly_the_stock_is_sold) {
  build();
  ASSERT_EQ(call("POST", "/stock/batch_init/1/100/1").status, 200);
  ASSERT_EQ(call("POST", "/payment/batch_init/1000/1").status, 200);
  std::mt19937 rng(20261203);
  std::uniform_int_distribution<int> pick(0, 999);
  std::vector<std::string> orders;
  for (int i = 0; i < 1000; ++i) {
    orders.push_back(create_order(std::to_string(pick(rng))));
    ASSERT_EQ(call("POST", "/orders/addItem/" + orders.back() + "/0/1").status, 200);
  }
  std::vector<std::future<std::optional<bulwark::result<http::response>>>> answers;
  for (const auto& o : orders) answers.push_back(send("POST", "/orders/checkout/" + o));
  int succeeded = 0, refused = 0;
  for (auto& a : answers) {
    const auto r = wait(a);
    if (r.status == 200)
      ++succeeded;
    else if (r.status == 400)
      ++refused;
    else
      ADD_FAILURE() << r.status << ' ' << r.body;
  }
  EXPECT_EQ(succeeded, 100);
  EXPECT_EQ(refused, 900);
  EXPECT_EQ(stock_of("0"), 0);
  long long credit = 0;
  for (int u = 0; u < 1000; ++u) credit += credit_of(std::to_string(u));
  EXPECT_EQ(credit, 900);
  const auto s = services_->orchestrator().stats();
  EXPECT_EQ(s.completed, 100u);
  EXPECT_EQ(s.compensation_failed + s.failed, 0u);
}

} // namespace

// The stored forms of the order record and the saga context (checkout/record_codec.hpp): every
// field comes back, any bytes fit in a string, and bytes that are not a record are an error.
TEST(checkout_records, round_trip_and_refuse_what_is_not_a_record) {
  checkout::order_record r;
  r.user_id = "u:1\n2";
  r.items = {{"7", 2}, {"a:b", 1}};
  r.total_cost = 9007199254740991;
  r.paid = true;
  r.attempt = 3;
  r.checkout = checkout::checkout_state::paid;
  auto back = checkout::decode_order("o", checkout::encode_order(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(back.value().user_id, r.user_id);
  ASSERT_EQ(back.value().items.size(), 2u);
  EXPECT_EQ(back.value().items[1].item_id, "a:b");
  EXPECT_EQ(back.value().items[0].quantity, 2);
  EXPECT_EQ(back.value().total_cost, r.total_cost);
  EXPECT_TRUE(back.value().paid);
  EXPECT_EQ(back.value().attempt, 3u);
  EXPECT_EQ(back.value().checkout, checkout::checkout_state::paid);

  const auto c = checkout::context_for("o1", r, 42);
  auto c_back = checkout::context_codec::decode(checkout::context_codec::encode(c));
  ASSERT_TRUE(c_back);
  EXPECT_EQ(c_back.value().saga_id, "o1#3");
  EXPECT_EQ(c_back.value().user_id, r.user_id);
  ASSERT_EQ(c_back.value().take.size(), 2u);
  EXPECT_EQ(c_back.value().take[0].item_id, "7");
  EXPECT_EQ(c_back.value().record_version, 42u);
  ASSERT_EQ(c_back.value().items.size(), 2u);
  EXPECT_EQ(c_back.value().items[1].item_id, "a:b");
  // The first form (logged before the context carried the record) still reads, version unknown.
  auto first = checkout::context_codec::decode("C1\n3\n5\n2:o1\n4:o1#3\n1:u\n1\n1:7\n5\n");
  ASSERT_TRUE(first);
  EXPECT_EQ(first.value().record_version, bulwark::no_version);
  EXPECT_TRUE(first.value().items.empty());
  EXPECT_EQ(first.value().take.size(), 1u);

  const auto bytes = checkout::encode_order(r);
  const std::vector<std::string> bad_records = {"", "{\"paid\":true}", bytes.substr(0, bytes.size() - 1), bytes + "x",
                                                "O1\n2\n0\n0\n0\n0:\n0\n", "O1\n0\n0\n9\n0\n0:\n0\n",
                                                "O1\n0\n0\n0\n-1\n0:\n0\n", "O1\n0\n0\n0\n0\n5:ab\n0\n",
                                                "O1\n0\n0\n0\n0\n0:\n99999999999\n",
                                                // a length whose + 1 wraps to 0 (found by the fuzzer)
                                                "O1\n0\n0\n0\n0\n18446744073709551615:x\n0\n"};
  for (const auto& bad : bad_records) {
    auto got = checkout::decode_order("o", bad);
    ASSERT_FALSE(got) << bad;
    EXPECT_EQ(got.error(), bulwark::errc::protocol_error);
  }
  EXPECT_TRUE(checkout::decode_order("o", "O1\n0\n0\n0\n0\n0:\n0\n"));
  EXPECT_FALSE(checkout::context_codec::decode("C1\n1\n"));
  EXPECT_FALSE(checkout::context_codec::decode("C2\n3\n5\n2:o1\n4:o1#3\n1:u\n1\n1:7\n5\n")); // no version
}

// The confirm step writes the running record paid against the version its context carries,
// without reading it; when that version is stale (the step ran before, its answer lost) or
// unknown (a first-form context) it reads the record and ends the same way.
TEST(checkout_records, confirm_marks_the_record_paid_with_or_without_its_version) {
  bulwark::memory::repository orders;
  auto confirm = checkout::confirm_paid(orders);
  asio::io_context io;
  auto run = [&](checkout::checkout_context& c) {
    auto f = bulwark::test::spawn(io.get_executor(), confirm(c, bulwark::clock::time_point{}));
    io.restart();
    io.run();
    return *f.get();
  };
  checkout::order_record r;
  r.user_id = "u1";
  r.items = {{"i2", 1}, {"i1", 2}, {"i2", 3}};
  r.total_cost = 6;
  r.attempt = 2;
  r.checkout = checkout::checkout_state::running;
  auto stored = orders.put_now("order/o1", checkout::encode_order(r), bulwark::no_version);
  ASSERT_TRUE(stored);
  auto c = checkout::context_for("o1", r, stored.value());
  auto paid_once = [&] {
    auto got = orders.get_now("order/o1");
    EXPECT_TRUE(got && got.value());
    auto back = checkout::decode_order("o1", got.value()->value);
    EXPECT_TRUE(back);
    EXPECT_TRUE(back.value().paid);
    EXPECT_EQ(back.value().checkout, checkout::checkout_state::paid);
    EXPECT_EQ(back.value().attempt, 2u);
    EXPECT_EQ(back.value().user_id, "u1");
    EXPECT_EQ(back.value().total_cost, 6);
    EXPECT_EQ(back.value().items.size(), 3u);
    EXPECT_EQ(back.value().items[2].quantity, 3);
    return got.value()->version;
  };
  ASSERT_TRUE(run(c));
  const auto version = paid_once();
  EXPECT_NE(version, stored.value());
  ASSERT_TRUE(run(c)); // again, with the version it had before: reads, finds it paid, writes nothing
  EXPECT_EQ(paid_once(), version);

  auto other = orders.put_now("order/o2", checkout::encode_order(r), bulwark::no_version);
  ASSERT_TRUE(other);
  auto unknown = checkout::context_for("o2", r);
  ASSERT_TRUE(run(unknown));
  auto got = orders.get_now("order/o2");
  ASSERT_TRUE(got && got.value());
  EXPECT_TRUE(checkout::decode_order("o2", got.value()->value).value().paid);
}
