// flows::write_through on the memory models, configured as a service runs it: the circuit
// breaker and a per-call timeout on every repository call, one deadline per request, the shared
// cache hit, no near cache. Next to each flow call, the bare model call it wraps; the ratios
// are benchmarks/write_through.sh's.
#include <bulwark/flows/write_through.hpp>
#include <bulwark/memory/cache.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/resilience/timeout.hpp>
#include <bulwark/testing/faults.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <benchmark/benchmark.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;

// Runs `body` inside one coroutine on a fresh io_context: the benchmark loop lives in it.
template <class Body> void in_coroutine(asio::io_context& ctx, Body body) {
  asio::co_spawn(ctx, body, asio::detached);
  ctx.run();
}

// The benchmark loop inside one coroutine: each iteration co_awaits next(i), i = 0, 1, ...
// A failed call ends the benchmark with its error: a ratio over failures would be meaningless.
template <class Next> void co_await_loop(benchmark::State& state, asio::io_context& ctx, Next next) {
  in_coroutine(ctx, [&]() -> asio::awaitable<void> {
    std::size_t i = 0;
    for (auto _ : state) {
      auto r = co_await next(i++);
      if (!r) {
        state.SkipWithError(r.error().message().c_str());
        break;
      }
      benchmark::DoNotOptimize(r);
    }
  });
  state.SetItemsProcessed(state.iterations());
}

std::vector<std::string> make_keys(std::size_t n) {
  std::vector<std::string> keys;
  for (std::size_t i = 0; i < n; ++i) keys.push_back("channel:" + std::to_string(i));
  return keys;
}

const std::string value_100(100, 'v');
constexpr std::size_t key_count = 1024;
constexpr auto request_budget = 1s; // the deadline each request carries

template <class Repository> using flow =
    bulwark::flows::write_through<Repository, bulwark::memory::cache, bulwark::memory::event_bus>;

template <class Repository> typename flow<Repository>::options service_options() {
  typename flow<Repository>::options o;
  o.name = "bench";
  o.retry_topic = "bench.retry";
  o.repository_timeout = 2s;
  return o; // default breaker (count window of 100, 50% failures), real clock, no metrics
}

// Runs `op` to completion on ctx (the setup's writes).
template <class T> T run_now(asio::io_context& ctx, asio::awaitable<T> op) {
  std::optional<T> out;
  asio::co_spawn(
      ctx, [&]() -> asio::awaitable<void> { out.emplace(co_await std::move(op)); }, asio::detached);
  ctx.run();
  ctx.restart();
  return std::move(*out);
}

// ---- reads ----

void cache_get_hit(benchmark::State& state) {
  asio::io_context ctx;
  bulwark::memory::cache cache;
  const auto keys = make_keys(key_count);
  for (const auto& k : keys) (void)cache.put_now(k, bulwark::versioned{value_100, 1}, 5min);
  co_await_loop(state, ctx, [&](std::size_t i) { return cache.get(keys[i % key_count]); });
}
BENCHMARK(cache_get_hit);

// The floor of the flow's hit: the same get under the request's deadline, as cache_get does it.
void cache_get_hit_with_deadline(benchmark::State& state) {
  asio::io_context ctx;
  bulwark::memory::cache cache;
  const auto keys = make_keys(key_count);
  for (const auto& k : keys) (void)cache.put_now(k, bulwark::versioned{value_100, 1}, 5min);
  co_await_loop(state, ctx, [&](std::size_t i) {
    return bulwark::with_deadline(cache.get(keys[i % key_count]), bulwark::deadline::after(request_budget),
                                  "cache get");
  });
}
BENCHMARK(cache_get_hit_with_deadline);

// A read the shared cache answers fresh: the flow's whole read path on a hit.
void write_through_read_hit(benchmark::State& state) {
  asio::io_context ctx;
  bulwark::memory::repository repo;
  bulwark::memory::cache cache;
  bulwark::memory::event_bus bus(ctx.get_executor());
  flow<bulwark::memory::repository> wt(repo, cache, bus, service_options<bulwark::memory::repository>());
  const auto keys = make_keys(key_count);
  for (const auto& k : keys) {
    auto w = run_now(ctx, wt.write(k, value_100, bulwark::deadline::after(request_budget)));
    if (!w || w.value().outcome != bulwark::flows::write_state::durable) throw std::runtime_error("setup write");
  }
  co_await_loop(state, ctx,
                [&](std::size_t i) { return wt.read(keys[i % key_count], bulwark::deadline::after(request_budget)); });
  if (wt.stats().misses != 0) state.SkipWithError("a read missed the cache");
}
BENCHMARK(write_through_read_hit);

// The repository down (every call unavailable; the breaker opens after its minimum calls): a
// read finds the cache entry past soft_ttl (0 here, so no entry is fresh), asks the breaker,
// which refuses, and serves the entry stale.
void write_through_read_stale(benchmark::State& state) {
  asio::io_context ctx;
  bulwark::memory::repository db;
  bulwark::testing::faulty_repository repo(db, bulwark::clock{});
  bulwark::memory::cache cache;
  bulwark::memory::event_bus bus(ctx.get_executor());
  auto o = service_options<bulwark::testing::faulty_repository<bulwark::memory::repository>>();
  o.soft_ttl = 0ms;
  flow<bulwark::testing::faulty_repository<bulwark::memory::repository>> wt(repo, cache, bus, o);
  const auto keys = make_keys(key_count);
  for (const auto& k : keys) {
    auto w = run_now(ctx, wt.write(k, value_100, bulwark::deadline::after(request_budget)));
    if (!w) throw std::runtime_error("setup write");
  }
  repo.faults().fail(bulwark::testing::op::every, bulwark::errc::unavailable);
  // Enough failed loads to open the breaker (a window's worth: the setup's successes are in it),
  // so that the loop measures the steady state of an outage.
  for (std::size_t i = 0; i < o.breaker.window_size; ++i)
    (void)run_now(ctx, wt.read(keys[i % key_count], bulwark::deadline::after(request_budget)));
  if (wt.breaker().current() != bulwark::circuit_breaker::state::open) throw std::runtime_error("breaker not open");
  co_await_loop(state, ctx,
                [&](std::size_t i) { return wt.read(keys[i % key_count], bulwark::deadline::after(request_budget)); });
  if (wt.breaker().current() != bulwark::circuit_breaker::state::open) state.SkipWithError("the breaker closed");
  if (wt.stats().stale_serves < static_cast<std::uint64_t>(state.iterations()))
    state.SkipWithError("a read was not served stale");
}
BENCHMARK(write_through_read_stale);

// ---- writes ----

void repository_put(benchmark::State& state) {
  asio::io_context ctx;
  bulwark::memory::repository repo;
  const auto keys = make_keys(key_count);
  co_await_loop(state, ctx, [&](std::size_t i) { return repo.put(keys[i % key_count], value_100, std::nullopt); });
}
BENCHMARK(repository_put);

// The floor of the flow's durable write: the same put through a closed breaker and a timeout
// within the request's deadline, as write_through's guarded() runs every repository call.
void repository_put_guarded(benchmark::State& state) {
  asio::io_context ctx;
  bulwark::memory::repository repo;
  bulwark::circuit_breaker breaker{bulwark::circuit_breaker::options{}};
  const auto keys = make_keys(key_count);
  co_await_loop(state, ctx, [&](std::size_t i) {
    const auto d = bulwark::deadline::after(request_budget);
    return breaker.call(bulwark::with_timeout(repo.put(keys[i % key_count], value_100, std::nullopt),
                                              std::min<bulwark::clock::duration>(d.remaining(), 2s), bulwark::clock{},
                                              "repository call"));
  });
}
BENCHMARK(repository_put_guarded);

// A durable write: the frame, the compare-and-set put (the version is known after the first
// round, so no read), the cache put.
void write_through_write_durable(benchmark::State& state) {
  asio::io_context ctx;
  bulwark::memory::repository repo;
  bulwark::memory::cache cache;
  bulwark::memory::event_bus bus(ctx.get_executor());
  flow<bulwark::memory::repository> wt(repo, cache, bus, service_options<bulwark::memory::repository>());
  const auto keys = make_keys(key_count);
  co_await_loop(state, ctx, [&](std::size_t i) {
    return wt.write(keys[i % key_count], value_100, bulwark::deadline::after(request_budget));
  });
  if (wt.stats().pending_writes != 0) state.SkipWithError("a write was accepted pending");
}
BENCHMARK(write_through_write_durable);

} // namespace

BENCHMARK_MAIN();
