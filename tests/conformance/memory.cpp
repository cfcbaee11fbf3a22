// The four conformance suites against the in-memory models.

// GCC 12 at -O1 (the tsan preset) reports a bogus -Wmaybe-uninitialized inside the
// std::optional that asio's awaitable operators wrap a result in (with_timeout's race).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "conformance/cache_suite.hpp"
#include "conformance/event_bus_suite.hpp"
#include "conformance/ledger_suite.hpp"
#include "conformance/repository_suite.hpp"

#include <bulwark/manual_clock.hpp>
#include <bulwark/memory/cache.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/ledger.hpp>
#include <bulwark/memory/repository.hpp>

namespace {

struct memory_repository_factory {
  static constexpr int context_threads = 4; // the model is thread-safe: concurrency tests use 4 threads
  static bool available() { return true; }
  asio::io_context& context() { return ctx; }
  std::unique_ptr<bulwark::memory::repository> make() { return std::make_unique<bulwark::memory::repository>(); }
  asio::io_context ctx;
};

struct memory_cache_factory {
  using model = bulwark::memory::basic_cache<bulwark::manual_clock>;
  static constexpr int context_threads = 4;
  static bool available() { return true; }
  asio::io_context& context() { return ctx; }
  std::unique_ptr<model> make() { return std::make_unique<model>(model::options{}, clock); }
  void advance(std::chrono::milliseconds d) { clock.advance(d); }
  asio::io_context ctx;
  bulwark::manual_clock clock;
};

struct memory_event_bus_factory {
  static constexpr int context_threads = 4;
  static constexpr std::chrono::milliseconds drain_period{1000};
  static bool available() { return true; }
  asio::io_context& context() { return ctx; }
  std::unique_ptr<bulwark::memory::event_bus> make() {
    bulwark::memory::event_bus::options o;
    o.drain_timeout = drain_period;
    return std::make_unique<bulwark::memory::event_bus>(ctx.get_executor(), std::move(o));
  }
  asio::io_context ctx;
};

struct memory_ledger_factory {
  using model = bulwark::memory::basic_ledger<bulwark::manual_clock>;
  static constexpr int context_threads = 4;
  static bool available() { return true; }
  asio::io_context& context() { return ctx; }
  std::unique_ptr<model> make() { return make_with_retention(std::chrono::hours(1)); }
  std::unique_ptr<model> make_with_retention(std::chrono::milliseconds retention) {
    model::options o;
    o.retention = retention;
    return std::make_unique<model>(o, clock);
  }
  void advance(std::chrono::milliseconds d) { clock.advance(d); }
  asio::io_context ctx;
  bulwark::manual_clock clock;
};

} // namespace

namespace bulwark::test {
INSTANTIATE_TYPED_TEST_SUITE_P(memory, repository_conformance, ::testing::Types<memory_repository_factory>);
INSTANTIATE_TYPED_TEST_SUITE_P(memory, cache_conformance, ::testing::Types<memory_cache_factory>);
INSTANTIATE_TYPED_TEST_SUITE_P(memory, event_bus_conformance, ::testing::Types<memory_event_bus_factory>);
INSTANTIATE_TYPED_TEST_SUITE_P(memory, batch_event_bus_conformance, ::testing::Types<memory_event_bus_factory>);
INSTANTIATE_TYPED_TEST_SUITE_P(memory, ledger_conformance, ::testing::Types<memory_ledger_factory>);
} // namespace bulwark::test
