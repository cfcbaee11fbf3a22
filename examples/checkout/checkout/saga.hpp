#pragma once
// The checkout saga: pay, then take the stock, then mark the order paid.
//
//   step     action                                   compensation
//   pay      credit apply  "<saga>/pay"   user -= total   revert "<saga>/pay"
//   stock    stock apply   "<saga>/stock" every item -= its summed quantity (one apply)
//                                                     revert "<saga>/stock"
//   confirm  the order record: paid, by compare-and-set  (none: after the pivot)
//   pivot after `stock`: once the stock is taken the saga only goes forward.
//
// Why pay first (README, "Step order"): the stock step is the scarce one, and it comes last of
// the compensable steps, so stock is only ever taken by a saga that completes; no checkout holds
// units that it gives back later. A checkout refused for credit changes nothing; one refused
// for stock gives its payment back, which can make a concurrent checkout *of the same user*
// fail for credit while the refund is on its way, but that one would have found no stock
// either (stock never comes back). So under the consistency test exactly min(stock, buyers)
// checkouts succeed, every run. Taking stock first would let a checkout that then fails to pay
// hold the last units while others are refused for stock: fewer sales than stock allowed.
//
// Every effect is a ledger operation whose id is the saga id plus the step: a step run again
// (retry, recovery, a second replica) applies nothing twice, and a revert of an operation that
// never arrived leaves a tombstone that refuses it if it arrives later.

#include <checkout/order.hpp>

#include <bulwark/ledger.hpp>
#include <bulwark/repository.hpp>
#include <bulwark/saga/definition.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace checkout {

namespace saga = bulwark::saga;
using checkout_definition = saga::definition<checkout_context, context_codec>;

/// How the saga's steps retry. Compensations and the confirm step (past the pivot) retry for
/// long (an hour at 1 s apart once the backoff is at its cap): both are idempotent, and neither
/// may give up while the stores are only slow or restarting.
struct saga_timing {
  bulwark::clock::duration step_timeout = std::chrono::seconds(5);
  bulwark::clock::duration saga_timeout = std::chrono::seconds(60);
  unsigned action_attempts = 3;
  unsigned settle_attempts = 3600;
};

/// The confirm step: the order record of this attempt becomes paid (compare-and-set; a record
/// already paid by this attempt is fine, the step may run twice).
///
/// While an attempt runs nothing else changes its record (items cannot be added, and only a
/// compensated attempt is marked failed), so the record is still the one the attempt wrote,
/// at the version the context carries: the step writes it paid against that version without
/// reading it (one Redis round trip less per checkout). When that compare-and-set loses (this
/// step ran before and its answer was lost, or the context does not know the version) it reads
/// the record and decides from what it holds, as before.
template <bulwark::repository Repository> saga::local_call<checkout_context> confirm_paid(Repository& orders) {
  return [&orders](checkout_context& c, bulwark::clock::time_point) -> bulwark::task<void> {
    const auto key = order_key(c.order_id);
    if (c.record_version != bulwark::no_version) {
      auto put = co_await orders.put(key, encode_order(paid_record(c)), c.record_version);
      if (put) co_return bulwark::ok();
      if (put.error() != bulwark::errc::conflict) co_return put.error();
    }
    for (int tries = 0; tries < 16; ++tries) {
      auto got = co_await orders.get(key);
      if (!got) co_return got.error();
      if (!got.value()) co_return bulwark::error(bulwark::errc::not_found, "order " + c.order_id + " vanished");
      auto decoded = decode_order(c.order_id, got.value()->value);
      if (!decoded) co_return decoded.error();
      auto& r = decoded.value();
      if (r.paid) co_return bulwark::ok();
      r.paid = true;
      r.checkout = checkout_state::paid;
      r.attempt = c.attempt;
      auto put = co_await orders.put(key, encode_order(r), got.value()->version);
      if (put) co_return bulwark::ok();
      if (put.error() != bulwark::errc::conflict) co_return put.error();
    }
    co_return bulwark::error(bulwark::errc::conflict, "order " + c.order_id + " kept changing");
  };
}

/// The pay step's action and compensation on the payment service's ledger, in process.
template <bulwark::ledger Ledger> saga::step<checkout_context> local_pay_step(Ledger& credit) {
  auto charge = [&credit](checkout_context& c, bulwark::clock::time_point) -> bulwark::task<void> {
    if (c.total_cost == 0) co_return bulwark::ok();
    const std::vector<bulwark::adjustment> pay{{c.user_id, -c.total_cost}};
    auto done = co_await credit.apply(c.saga_id + "/pay", pay);
    if (!done) co_return done.error();
    co_return bulwark::ok();
  };
  auto refund = [&credit](checkout_context& c, bulwark::clock::time_point) -> bulwark::task<void> {
    auto undone = co_await credit.revert(c.saga_id + "/pay");
    if (!undone) co_return undone.error();
    co_return bulwark::ok();
  };
  return saga::local_step<checkout_context>("pay", charge, refund);
}

/// The stock step's action and compensation on the stock service's ledger, in process.
template <bulwark::ledger Ledger> saga::step<checkout_context> local_stock_step(Ledger& stock) {
  auto take = [&stock](checkout_context& c, bulwark::clock::time_point) -> bulwark::task<void> {
    if (c.take.empty()) co_return bulwark::ok();
    const auto adjustments = stock_adjustments(c.take);
    auto done = co_await stock.apply(c.saga_id + "/stock", adjustments);
    if (!done) co_return done.error();
    co_return bulwark::ok();
  };
  auto give_back = [&stock](checkout_context& c, bulwark::clock::time_point) -> bulwark::task<void> {
    auto undone = co_await stock.revert(c.saga_id + "/stock");
    if (!undone) co_return undone.error();
    co_return bulwark::ok();
  };
  return saga::local_step<checkout_context>("stock", take, give_back);
}

/// The definition from its pay and stock steps (local or remote) and the confirm step.
inline checkout_definition checkout_saga(saga::step<checkout_context> pay, saga::step<checkout_context> stock,
                                         saga::local_call<checkout_context> confirm, const saga_timing& t = {}) {
  auto confirm_step = saga::local_step<checkout_context>("confirm", std::move(confirm));
  for (auto* s : {&pay, &stock, &confirm_step}) {
    s->timeout = t.step_timeout;
    s->retry.max_attempts = t.action_attempts;
    s->compensation_retry.max_attempts = t.settle_attempts;
  }
  confirm_step.retry.max_attempts = t.settle_attempts; // past the pivot: only forward
  checkout_definition d("checkout");
  d.add(std::move(pay)).add(std::move(stock)).add(std::move(confirm_step)).pivot_after("stock");
  d.saga_timeout(t.saga_timeout);
  return d;
}

} // namespace checkout
