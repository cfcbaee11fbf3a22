// The repository and ledger conformance suites on mysql::repository and mysql::ledger against a
// real MariaDB.
#include <bulwark/mysql.hpp>

#include "conformance/ledger_suite.hpp"
#include "conformance/repository_suite.hpp"
#include "fixture.hpp"

#include <bulwark/manual_clock.hpp>

#include <asio/io_context.hpp>

#include <memory>
#include <optional>
#include <string>

namespace {

using namespace bulwark;

/// A fresh, empty table per model on a pool of its own; the pool is stopped with the factory.
struct mysql_repository_factory {
  static bool available() { return ::bulwark::test::server_env("BULWARK_MYSQL_PORT").has_value(); }
  asio::io_context& context() { return ctx; }

  std::unique_ptr<mysql::repository> make() {
    if (!pool) pool.emplace(ctx.get_executor(), mysql::test::test_config());
    const auto table = mysql::test::table_name("conf_" + mysql::test::current_test_name() + std::to_string(made++));
    {
      auto l = mysql::test::run_in(ctx, pool->acquire());
      if (!l) throw std::runtime_error("mysql: " + l.error().message());
      auto dropped = mysql::test::run_in(ctx, l.value()->run_ddl("DROP TABLE IF EXISTS `" + table + "`"));
      if (!dropped) throw std::runtime_error("mysql: " + dropped.error().message());
    }
    auto repo = mysql::test::run_in(ctx, mysql::repository::open(*pool, table));
    if (!repo) throw std::runtime_error("mysql: " + repo.error().message());
    return std::make_unique<mysql::repository>(std::move(repo).value());
  }

  ~mysql_repository_factory() {
    if (pool) mysql::test::run_in(ctx, pool->stop());
  }

  asio::io_context ctx;
  std::optional<mysql::pool> pool;
  int made = 0;
};

/// A fresh pair of tables per model on a pool of its own; time is a manual clock (expires_at is
/// computed from it), so the retention test does not sleep.
struct mysql_ledger_factory {
  using model = mysql::basic_ledger<manual_clock>;
  static bool available() { return ::bulwark::test::server_env("BULWARK_MYSQL_PORT").has_value(); }
  asio::io_context& context() { return ctx; }
  std::unique_ptr<model> make() { return make_with_retention(std::chrono::hours(1)); }
  std::unique_ptr<model> make_with_retention(std::chrono::milliseconds retention) {
    if (!pool) pool.emplace(ctx.get_executor(), mysql::test::test_config());
    const auto name =
        mysql::test::table_name("lg" + std::to_string(made++) + "_" + mysql::test::current_test_name()).substr(0, 50);
    {
      auto l = mysql::test::run_in(ctx, pool->acquire());
      if (!l) throw std::runtime_error("mysql: " + l.error().message());
      for (const char* suffix : {"_balances", "_ops"}) {
        auto dropped = mysql::test::run_in(ctx, l.value()->run_ddl("DROP TABLE IF EXISTS `" + name + suffix + "`"));
        if (!dropped) throw std::runtime_error("mysql: " + dropped.error().message());
      }
    }
    mysql::ledger_options o;
    o.retention = retention;
    auto opened = mysql::test::run_in(ctx, model::open(*pool, name, o, clock));
    if (!opened) throw std::runtime_error("mysql: " + opened.error().message());
    return std::make_unique<model>(std::move(opened).value());
  }
  void advance(std::chrono::milliseconds d) { clock.advance(d); }

  ~mysql_ledger_factory() {
    if (pool) mysql::test::run_in(ctx, pool->stop());
  }

  asio::io_context ctx;
  std::optional<mysql::pool> pool;
  manual_clock clock;
  int made = 0;
};

} // namespace

namespace bulwark::test {
INSTANTIATE_TYPED_TEST_SUITE_P(mysql, repository_conformance, ::testing::Types<mysql_repository_factory>);
INSTANTIATE_TYPED_TEST_SUITE_P(mysql, ledger_conformance, ::testing::Types<mysql_ledger_factory>);
} // namespace bulwark::test
