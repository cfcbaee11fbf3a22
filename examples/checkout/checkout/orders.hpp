#pragma once
// The order service: orders and their checkout. Checkout is the saga of saga.hpp, driven by
// this service's orchestrator; the HTTP answer waits for the saga to be final.
//
// One checkout request:
//   1. read the order record; unknown: 400; paid: 200 again, nothing charged;
//   2. no attempt running: compare-and-set the record to attempt n + 1, running (a request that
//      loses the race reads again and joins the winner's attempt);
//   3. start saga "<order>#<n>" (idempotent: a request that joins, or one that finds the record
//      running after a crash between 2 and 3, gets the same saga) and wait for its outcome;
//   4. completed: 200 (the confirm step marked the order paid). Compensated: the record goes to
//      failed (so the next checkout is a new attempt) and the answer is a 400 naming the
//      refusal. At the answer deadline a saga before its pivot is aborted and the answer waits
//      for its compensation (400); one past its pivot is waited for (200).
// Every call of this class runs on the orchestrator's executor (one hop from the HTTP thread).

#include <checkout/ids.hpp>
#include <checkout/input.hpp>
#include <checkout/order.hpp>

#include <bulwark/clock.hpp>
#include <bulwark/http/responses.hpp>
#include <bulwark/repository.hpp>
#include <bulwark/retry_policy.hpp>
#include <bulwark/run_on.hpp>
#include <bulwark/saga.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <utility>

namespace checkout {

using bulwark::run_on; // a task run on its client's executor, resumed on the caller's

/// What the order service asks the other two: an item's price and a user's credit (nullopt:
/// no such item or user). In one process these call the services; across processes, HTTP.
struct catalog {
  std::function<bulwark::task<std::optional<bulwark::amount>>(std::string item_id)> price;
  std::function<bulwark::task<std::optional<bulwark::amount>>(std::string user_id)> credit;
};

struct order_options {
  /// How long a checkout answer waits for its saga before aborting it (before the pivot).
  bulwark::clock::duration answer_timeout = std::chrono::seconds(10);
  /// How long it then waits for the compensation (or, past the pivot, the completion).
  bulwark::clock::duration settle_timeout = std::chrono::seconds(60);
  bulwark::clock clock{};
};

template <bulwark::repository Repository, class Orchestrator> class order_service {
public:
  using response = bulwark::http::response;

  order_service(asio::any_io_executor home, Repository& orders, Orchestrator& sagas, catalog c, order_options o = {})
      : home_(std::move(home)), orders_(orders), sagas_(sagas), catalog_(std::move(c)), opts_(std::move(o)) {}

  /// POST /orders/create/{user_id}
  bulwark::task<response> create(std::string user_id) { return run_on(home_, create_here(std::move(user_id))); }
  /// POST /orders/batch_init/{n}/{n_items}/{n_users}/{item_price}
  bulwark::task<response> batch_init(std::string n, std::string n_items, std::string n_users, std::string price) {
    return run_on(home_, batch_init_here(std::move(n), std::move(n_items), std::move(n_users), std::move(price)));
  }
  /// GET /orders/find/{order_id}
  bulwark::task<response> find(std::string id) { return run_on(home_, find_here(std::move(id))); }
  /// POST /orders/addItem/{order_id}/{item_id}/{quantity}
  bulwark::task<response> add_item(std::string id, std::string item, std::string quantity) {
    return run_on(home_, add_item_here(std::move(id), std::move(item), std::move(quantity)));
  }
  /// POST /orders/checkout/{order_id}
  bulwark::task<response> checkout(std::string id) { return run_on(home_, checkout_here(std::move(id))); }

private:
  struct loaded {
    order_record record;
    bulwark::version_t version = 0;
  };

  static response order_not_found(std::string_view id) {
    return bulwark::http::text(400, "Order: " + std::string(id) + " not found!");
  }

  // The record, nullopt when absent (or the id cannot be one).
  bulwark::task<std::optional<loaded>> load(const std::string& id) {
    if (!valid_id(id)) co_return std::optional<loaded>{};
    auto got = co_await orders_.get(order_key(id));
    if (!got) co_return got.error();
    if (!got.value()) co_return std::optional<loaded>{};
    auto decoded = decode_order(id, got.value()->value);
    if (!decoded) co_return decoded.error();
    co_return std::optional<loaded>{loaded{std::move(decoded).value(), got.value()->version}};
  }

  bulwark::task<bulwark::version_t> store(const std::string& id, const order_record& r,
                                          std::optional<bulwark::version_t> expected) {
    co_return co_await orders_.put(order_key(id), encode_order(r), expected);
  }

  bulwark::task<response> create_here(std::string user_id) {
    auto credit = co_await catalog_.credit(user_id);
    if (!credit) co_return credit.error();
    if (!credit.value()) co_return bulwark::http::text(400, "User: " + user_id + " not found!");
    const auto id = new_id();
    order_record r;
    r.user_id = std::move(user_id);
    auto put = co_await store(id, r, bulwark::no_version);
    if (!put) co_return put.error();
    co_return bulwark::http::json(nlohmann::json{{"order_id", id}});
  }

  bulwark::task<response> batch_init_here(std::string n_text, std::string items_text, std::string users_text,
                                          std::string price_text) {
    const auto n = parse_amount(n_text, max_batch);
    if (!n) co_return bulwark::http::text(400, not_an_amount("n", n_text, max_batch));
    const auto n_items = parse_amount(items_text, max_batch);
    if (!n_items || *n_items == 0) co_return bulwark::http::text(400, not_an_amount("n_items", items_text, max_batch));
    const auto n_users = parse_amount(users_text, max_batch);
    if (!n_users || *n_users == 0) co_return bulwark::http::text(400, not_an_amount("n_users", users_text, max_batch));
    const auto price = parse_amount(price_text, bulwark::max_amount / 2);
    if (!price) co_return bulwark::http::text(400, not_an_amount("Item price", price_text, bulwark::max_amount / 2));
    std::mt19937_64 rng{std::random_device{}()};
    std::uniform_int_distribution<bulwark::amount> item(0, *n_items - 1), user(0, *n_users - 1);
    for (bulwark::amount i = 0; i < *n; ++i) {
      order_record r;
      r.user_id = std::to_string(user(rng));
      r.items = {{std::to_string(item(rng)), 1}, {std::to_string(item(rng)), 1}};
      r.total_cost = 2 * *price;
      auto put = co_await store(std::to_string(i), r, std::nullopt);
      if (!put) co_return put.error();
    }
    co_return bulwark::http::json(nlohmann::json{{"msg", "Batch init for orders successful"}});
  }

  bulwark::task<response> find_here(std::string id) {
    auto got = co_await load(id);
    if (!got) co_return got.error();
    if (!got.value()) co_return order_not_found(id);
    co_return bulwark::http::json(order_json(id, got.value()->record));
  }

  bulwark::task<response> add_item_here(std::string id, std::string item_id, std::string quantity_text) {
    const auto quantity = parse_amount(quantity_text);
    if (!quantity) co_return bulwark::http::text(400, not_an_amount("Quantity", quantity_text));
    auto price = co_await catalog_.price(item_id);
    if (!price) co_return price.error();
    for (int tries = 0; tries < 16; ++tries) {
      auto got = co_await load(id);
      if (!got) co_return got.error();
      if (!got.value()) co_return order_not_found(id);
      if (!price.value()) co_return bulwark::http::text(400, "Item: " + item_id + " does not exist!");
      auto& r = got.value()->record;
      if (r.paid) co_return bulwark::http::text(400, "Order: " + id + " is already paid, items cannot be added");
      if (r.checkout == checkout_state::running)
        co_return bulwark::http::text(400, "Order: " + id + " is being checked out, items cannot be added");
      if (auto refused = add_line(r, item_id, *quantity, *price.value())) co_return bulwark::http::text(400, *refused);
      auto put = co_await store(id, r, got.value()->version);
      if (put)
        co_return bulwark::http::text(200, "Item: " + item_id + " added to: " + id +
                                               " price updated to: " + std::to_string(r.total_cost));
      if (put.error() != bulwark::errc::conflict) co_return put.error();
    }
    co_return bulwark::error(bulwark::errc::conflict, "order " + id + " kept changing; try again");
  }

  bulwark::task<response> checkout_here(std::string id) {
    // Bounded: each round either answers, lost one compare-and-set to another request, or met a
    // store error that may pass (then it waits, up to answer_timeout in all: see wait_out).
    const auto give_up = opts_.clock.now() + opts_.answer_timeout;
    unsigned waits = 0;
    for (int round = 0; round < 16; ++round) {
      auto got = co_await load(id);
      if (!got) {
        const bool again = co_await wait_out(got.error(), give_up, waits);
        if (again) continue;
        co_return got.error();
      }
      if (!got.value()) co_return order_not_found(id);
      auto& [r, version] = *got.value();
      if (r.paid) co_return bulwark::http::text(200, "Checkout successful");
      if (r.checkout == checkout_state::running) {
        // Another request's attempt (or one a crash left, or ours whose write's answer was
        // lost): join it, unless it is already over.
        auto status = co_await sagas_.status(saga_id(id, r.attempt));
        if (!status) {
          const bool again = co_await wait_out(status.error(), give_up, waits);
          if (again) continue;
          co_return status.error();
        }
        if (status.value() && status.value()->state == bulwark::saga::saga_state::compensated) {
          auto marked = co_await mark_failed(id, r.attempt);
          (void)marked;
          continue; // a new attempt
        }
        co_return co_await await_attempt(id, r, version, give_up);
      }
      r.attempt += 1;
      r.checkout = checkout_state::running;
      auto put = co_await store(id, r, version);
      if (put) co_return co_await await_attempt(id, r, put.value(), give_up);
      if (put.error() == bulwark::errc::conflict) continue;
      // Unavailable or timed out: the write may have been applied; the next round reads it back.
      const bool again = co_await wait_out(put.error(), give_up, waits);
      if (!again) co_return put.error();
    }
    co_return bulwark::error(bulwark::errc::conflict, "order " + id + " kept changing; try again");
  }

  // A store or saga-log call failed. When the error may pass (errc::unavailable: a Redis master
  // failing over, a connection being re-established; errc::timeout) and the answer deadline
  // leaves time, waits the `waits`-th delay of store_waits and says to try again: every step of a
  // checkout is idempotent (a lost write's answer shows on the next read as this attempt,
  // running, and start() of an existing saga joins it), so the client gets a business answer
  // (200 or 400) rather than a 5xx for an outage that passes within the deadline.
  asio::awaitable<bool> wait_out(const bulwark::error& e, bulwark::clock::time_point give_up, unsigned& waits) {
    if (e != bulwark::errc::unavailable && e != bulwark::errc::timeout) co_return false;
    const auto pause = store_waits.ceiling(waits + 1);
    if (opts_.clock.now() + pause >= give_up) co_return false;
    ++waits;
    const bool reached = co_await opts_.clock.wait_for(pause);
    (void)reached;
    co_return true;
  }
  // 20 ms doubling to 1 s, without jitter: a wait is at most 1 s, far below the answer deadline.
  static constexpr bulwark::backoff store_waits{std::chrono::milliseconds(20), std::chrono::seconds(1), 2.0, false};

  // Starts (or joins) the attempt's saga and answers with its final outcome. `version`: the
  // record's (r, running) version, carried in the saga's context for its confirm step.
  bulwark::task<response> await_attempt(std::string id, order_record r, bulwark::version_t version,
                                        bulwark::clock::time_point give_up) {
    const auto sid = saga_id(id, r.attempt);
    unsigned waits = 0;
    auto started = co_await sagas_.start(sid, context_for(id, r, version));
    while (!started) {
      const bool again = co_await wait_out(started.error(), give_up, waits);
      if (!again) co_return started.error();
      started = co_await sagas_.start(sid, context_for(id, r, version));
    }
    auto outcome = co_await sagas_.outcome(sid, opts_.clock.now() + opts_.answer_timeout);
    if (!outcome && outcome.error() == bulwark::errc::timeout) {
      // Before the pivot it compensates now; past it (rejected) it goes on to completion.
      auto aborted = co_await sagas_.abort(sid);
      (void)aborted;
      outcome = co_await sagas_.outcome(sid, opts_.clock.now() + opts_.settle_timeout);
    }
    if (!outcome) co_return outcome.error();
    const auto state = outcome.value().state;
    if (state == bulwark::saga::saga_state::completed) co_return bulwark::http::text(200, "Checkout successful");
    if (state == bulwark::saga::saga_state::compensated) {
      auto marked = co_await mark_failed(id, r.attempt);
      (void)marked;
      co_return bulwark::http::text(400, refusal_text(id, outcome.value().detail));
    }
    // failed or compensation_failed: not a business outcome; an operator settles it.
    co_return bulwark::error(bulwark::errc::unavailable,
                             "checkout of order " + id + " needs an operator: " + outcome.value().detail);
  }

  // The attempt was rolled back: the record says so (unless something newer happened).
  // A failure here is harmless: the next checkout finds the saga compensated and does it.
  bulwark::task<void> mark_failed(const std::string& id, std::uint32_t attempt) {
    for (int tries = 0; tries < 16; ++tries) {
      auto got = co_await load(id);
      if (!got || !got.value()) co_return bulwark::ok();
      auto& [r, version] = *got.value();
      if (r.attempt != attempt || r.checkout != checkout_state::running) co_return bulwark::ok();
      r.checkout = checkout_state::failed;
      auto put = co_await store(id, r, version);
      if (put || put.error() != bulwark::errc::conflict) co_return bulwark::ok();
    }
    co_return bulwark::ok();
  }

  asio::any_io_executor home_;
  Repository& orders_;
  Orchestrator& sagas_;
  catalog catalog_;
  order_options opts_;
};

} // namespace checkout
