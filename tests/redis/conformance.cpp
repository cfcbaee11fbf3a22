// The cache, repository and ledger conformance suites on redis::cache, redis::repository and
// redis::ledger against the `main` test server (scripts/servers/redis.sh up), then on the shared
// Redis Cluster (scripts/servers/redis-cluster.sh up).
#include <bulwark/redis.hpp>

#include "conformance/cache_suite.hpp"
#include "conformance/ledger_suite.hpp"
#include "conformance/repository_suite.hpp"
#include "fixture.hpp"

#include <asio/io_context.hpp>

#include <chrono>
#include <memory>
#include <thread>

namespace redis = bulwark::redis;

namespace {

struct redis_cache_factory {
  static bool available() { return redis::test::server_configured(); }
  asio::io_context& context() { return ctx; }
  std::unique_ptr<redis::cache> make() {
    return std::make_unique<redis::cache>(client, redis::cache_options{redis::test::fresh_prefix("cache")});
  }
  void advance(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }
  asio::io_context ctx;
  redis::client client{ctx.get_executor(), redis::test::main_server()};
};

struct redis_repository_factory {
  static bool available() { return redis::test::server_configured(); }
  asio::io_context& context() { return ctx; }
  std::unique_ptr<redis::repository> make() {
    return std::make_unique<redis::repository>(client, redis::repository_options{redis::test::fresh_prefix("repo")});
  }
  asio::io_context ctx;
  redis::client client{ctx.get_executor(), redis::test::main_server()};
};

struct redis_ledger_factory {
  static bool available() { return redis::test::server_configured(); }
  asio::io_context& context() { return ctx; }
  std::unique_ptr<redis::ledger> make() { return make_with_retention(std::chrono::hours(1)); }
  std::unique_ptr<redis::ledger> make_with_retention(std::chrono::milliseconds retention) {
    return std::make_unique<redis::ledger>(
        client, redis::ledger_options{.key_prefix = redis::test::fresh_prefix("ledger"), .retention = retention});
  }
  // Records expire by the server's clock.
  void advance(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }
  asio::io_context ctx;
  redis::client client{ctx.get_executor(), redis::test::main_server()};
};

// The same suites on the shared Redis Cluster (scripts/servers/redis-cluster.sh): cache keys
// spread over every master's slots; a repository's keys share one slot (a {hash tag} in the
// prefix), a fresh one per test, so the tests land on every master. A ledger's prefix has no tag:
// its balances spread over the slots and its applies across slots are split by slot
// (ledger_split_layout_spreads_the_suites_keys checks that the suite's keys do spread).
struct redis_cluster_cache_factory {
  static bool available() { return redis::test::cluster_configured(); }
  asio::io_context& context() { return ctx; }
  std::unique_ptr<redis::cache> make() {
    return std::make_unique<redis::cache>(client, redis::cache_options{redis::test::fresh_prefix("cache")});
  }
  void advance(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }
  asio::io_context ctx;
  redis::client client{ctx.get_executor(), redis::test::shared_cluster()};
};

struct redis_cluster_repository_factory {
  static bool available() { return redis::test::cluster_configured(); }
  asio::io_context& context() { return ctx; }
  std::unique_ptr<redis::repository> make() {
    return std::make_unique<redis::repository>(client,
                                               redis::repository_options{redis::test::fresh_tagged_prefix("repo")});
  }
  asio::io_context ctx;
  redis::client client{ctx.get_executor(), redis::test::shared_cluster()};
};

struct redis_cluster_ledger_factory {
  static bool available() { return redis::test::cluster_configured(); }
  asio::io_context& context() { return ctx; }
  std::unique_ptr<redis::ledger> make() { return make_with_retention(std::chrono::hours(1)); }
  std::unique_ptr<redis::ledger> make_with_retention(std::chrono::milliseconds retention) {
    return std::make_unique<redis::ledger>(
        client, redis::ledger_options{.key_prefix = redis::test::fresh_prefix("ledger"), .retention = retention});
  }
  void advance(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }
  asio::io_context ctx;
  redis::client client{ctx.get_executor(), redis::test::shared_cluster()};
};

} // namespace

namespace bulwark::test {
INSTANTIATE_TYPED_TEST_SUITE_P(redis, cache_conformance, ::testing::Types<redis_cache_factory>);
INSTANTIATE_TYPED_TEST_SUITE_P(redis, repository_conformance, ::testing::Types<redis_repository_factory>);
INSTANTIATE_TYPED_TEST_SUITE_P(redis, ledger_conformance, ::testing::Types<redis_ledger_factory>);
INSTANTIATE_TYPED_TEST_SUITE_P(redis_cluster, cache_conformance, ::testing::Types<redis_cluster_cache_factory>);
INSTANTIATE_TYPED_TEST_SUITE_P(redis_cluster, repository_conformance,
                               ::testing::Types<redis_cluster_repository_factory>);
INSTANTIATE_TYPED_TEST_SUITE_P(redis_cluster, ledger_conformance, ::testing::Types<redis_cluster_ledger_factory>);
} // namespace bulwark::test
