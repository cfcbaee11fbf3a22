#pragma once
// The three services in one process on the memory models (what the `checkout` executable runs,
// and what the tests drive): a stock ledger and item records, a credit ledger, the order
// records and the saga log in one repository, the saga's pay and stock steps as local calls.
// The orchestrator and the order service live on one thread of their own (the orchestrator
// needs an executor that runs one handler at a time); stock and payment calls run on the HTTP
// threads (the memory models are thread-safe). Nothing survives a restart.

#include <checkout/orders.hpp>
#include <checkout/payment.hpp>
#include <checkout/routes.hpp>
#include <checkout/saga.hpp>
#include <checkout/stock.hpp>

#include <bulwark/app.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/memory/ledger.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/saga/orchestrator.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

namespace checkout {

struct memory_options {
  /// Ledger operation records kept at most (two per checkout: pay and stock; each expires after
  /// the retention). Past it new checkouts are refused (503), never a record dropped early.
  std::size_t max_ledger_records = 20'000'000;
  saga_timing timing{};
  order_options orders{};
  std::shared_ptr<bulwark::metrics::registry> metrics{};
  /// Builds the definition from the pay, stock and confirm steps; empty: checkout_saga. A seam
  /// for tests that make a step slow (the answer deadline before and past the pivot).
  std::function<checkout_definition(saga::step<checkout_context> pay, saga::step<checkout_context> stock,
                                    saga::local_call<checkout_context> confirm, const saga_timing&)>
      define{};
};

class memory_services {
public:
  using orchestrator_type = saga::orchestrator<checkout_definition, bulwark::memory::repository>;

  explicit memory_services(memory_options o = {})
      : stock_ledger_(ledger_options(o)), credit_ledger_(ledger_options(o)), stock_(stock_ledger_, items_),
        payment_(credit_ledger_) {
    saga::orchestrator_options so;
    so.replica = "checkout";
    so.clock = o.orders.clock;
    so.metrics = o.metrics;
    auto define = o.define ? o.define : checkout_saga;
    orchestrator_.emplace(
        saga_context_.get_executor(),
        define(local_pay_step(credit_ledger_), local_stock_step(stock_ledger_), confirm_paid(orders_), o.timing),
        orders_, so);
    catalog c;
    c.price = [this](std::string item) { return stock_.price(std::move(item)); };
    c.credit = [this](std::string user) { return payment_.credit(std::move(user)); };
    orders_service_.emplace(saga_context_.get_executor(), orders_, *orchestrator_, std::move(c), o.orders);
    saga_thread_ = std::thread([this] { saga_context_.run(); });
    auto resumed = bulwark::app::block_on(saga_context_.get_executor(), orchestrator_->recover());
    (void)resumed; // nothing to resume in memory; this starts the periodic sweep
  }

  memory_services(const memory_services&) = delete;
  memory_services& operator=(const memory_services&) = delete;

  ~memory_services() {
    bulwark::app::block_on(saga_context_.get_executor(), orchestrator_->stop());
    work_.reset();
    saga_thread_.join();
  }

  /// Every route of the contract on `routes`.
  void add_routes(http::router& routes) {
    routes.use(contract_statuses());
    add_stock_routes(routes, stock_);
    add_payment_routes(routes, payment_);
    add_order_routes(routes, *orders_service_);
  }

  bulwark::memory::ledger& stock_ledger() noexcept { return stock_ledger_; }
  bulwark::memory::ledger& credit_ledger() noexcept { return credit_ledger_; }
  orchestrator_type& orchestrator() noexcept { return *orchestrator_; }

private:
  static bulwark::memory::ledger::options ledger_options(const memory_options& o) {
    bulwark::memory::ledger::options l;
    l.max_records = o.max_ledger_records;
    return l;
  }

  asio::io_context saga_context_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(saga_context_);
  bulwark::memory::ledger stock_ledger_;
  bulwark::memory::ledger credit_ledger_;
  bulwark::memory::repository items_;
  bulwark::memory::repository orders_; // order records and the saga log ("saga/checkout/")
  stock_service<bulwark::memory::ledger, bulwark::memory::repository> stock_;
  payment_service<bulwark::memory::ledger> payment_;
  std::optional<orchestrator_type> orchestrator_;
  std::optional<order_service<bulwark::memory::repository, orchestrator_type>> orders_service_;
  std::thread saga_thread_;
};

} // namespace checkout
