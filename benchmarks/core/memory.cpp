// Microbenchmarks of the in-memory models, measured through the concept operations
// (co_await from a coroutine), as a service calls them.
#include <bulwark/memory/cache.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/resilience/timeout.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <span>
#include <string>
#include <vector>

namespace {

// Runs `body` inside one coroutine on a fresh io_context: the benchmark loop lives in it.
template <class Body> void in_coroutine(Body body) {
  asio::io_context ctx;
  asio::co_spawn(ctx, body, asio::detached);
  ctx.run();
}

// The benchmark loop inside one coroutine: each iteration co_awaits next(i), i = 0, 1, ...
template <class Next> void co_await_loop(benchmark::State& state, Next next) {
  in_coroutine([&]() -> asio::awaitable<void> {
    std::size_t i = 0;
    for (auto _ : state) {
      auto r = co_await next(i++);
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

void cache_get_hit(benchmark::State& state) {
  bulwark::memory::cache cache;
  const auto keys = make_keys(1024);
  for (const auto& k : keys) (void)cache.put_now(k, bulwark::versioned{value_100, 1}, std::chrono::minutes(5));
  co_await_loop(state, [&](std::size_t i) { return cache.get(keys[i & 1023]); });
}
BENCHMARK(cache_get_hit);

// The same lookup without the coroutine: what co_await itself costs.
void cache_get_hit_sync(benchmark::State& state) {
  bulwark::memory::cache cache;
  const auto keys = make_keys(1024);
  for (const auto& k : keys) (void)cache.put_now(k, bulwark::versioned{value_100, 1}, std::chrono::minutes(5));
  std::size_t i = 0;
  for (auto _ : state) {
    auto r = cache.get_now(keys[i++ & 1023]);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(cache_get_hit_sync);

void cache_get_miss(benchmark::State& state) {
  bulwark::memory::cache cache;
  const auto keys = make_keys(1024);
  co_await_loop(state, [&](std::size_t i) { return cache.get(keys[i & 1023]); });
}
BENCHMARK(cache_get_miss);

void cache_put(benchmark::State& state) {
  bulwark::memory::cache cache;
  const auto keys = make_keys(1024);
  co_await_loop(state, [&](std::size_t i) {
    // The value is built here, outside the co_await full-expression: GCC 12 may destroy a braced
    // aggregate temporary there twice (GCC PR 100611).
    const auto v = static_cast<bulwark::version_t>(i + 1);
    bulwark::versioned value{value_100, v};
    return cache.put(keys[v & 1023], std::move(value), std::chrono::minutes(5));
  });
}
BENCHMARK(cache_put);

void repository_get(benchmark::State& state) {
  bulwark::memory::repository repo;
  const auto keys = make_keys(1024);
  for (const auto& k : keys) (void)repo.put_now(k, value_100, std::nullopt);
  co_await_loop(state, [&](std::size_t i) { return repo.get(keys[i & 1023]); });
}
BENCHMARK(repository_get);

// The same get bounded by a deadline (ratio_deadline_overhead in run.sh: bare / bounded). A
// memory get finishes without suspending, so this is the fast path: no timer is touched.
void repository_get_bounded(benchmark::State& state) {
  bulwark::memory::repository repo;
  const auto keys = make_keys(1024);
  for (const auto& k : keys) (void)repo.put_now(k, value_100, std::nullopt);
  co_await_loop(
      state, [&](std::size_t i) { return bulwark::with_timeout(repo.get(keys[i & 1023]), std::chrono::seconds(1)); });
}
BENCHMARK(repository_get_bounded);

// One deadline carried down to every call (deadline propagation): no clock read per call
// beyond the "already passed?" check.
void repository_get_deadline(benchmark::State& state) {
  bulwark::memory::repository repo;
  const auto keys = make_keys(1024);
  for (const auto& k : keys) (void)repo.put_now(k, value_100, std::nullopt);
  const auto request = bulwark::deadline::after(std::chrono::hours(1));
  co_await_loop(state, [&](std::size_t i) { return bulwark::with_deadline(repo.get(keys[i & 1023]), request); });
}
BENCHMARK(repository_get_deadline);

// An operation that suspends once (a post, standing in for I/O) before its get: bare, and
// bounded, where the deadline is registered in the context's deadline queue and withdrawn.
bulwark::task<std::optional<bulwark::versioned>> get_after_a_post(const bulwark::memory::repository& repo,
                                                                  const std::string& key) {
  co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
  co_return repo.get_now(key);
}

void suspending_get(benchmark::State& state) {
  bulwark::memory::repository repo;
  const auto keys = make_keys(1024);
  for (const auto& k : keys) (void)repo.put_now(k, value_100, std::nullopt);
  co_await_loop(state, [&](std::size_t i) { return get_after_a_post(repo, keys[i & 1023]); });
}
BENCHMARK(suspending_get);

void suspending_get_bounded(benchmark::State& state) {
  bulwark::memory::repository repo;
  const auto keys = make_keys(1024);
  for (const auto& k : keys) (void)repo.put_now(k, value_100, std::nullopt);
  co_await_loop(state, [&](std::size_t i) {
    return bulwark::with_timeout(get_after_a_post(repo, keys[i & 1023]), std::chrono::seconds(1));
  });
}
BENCHMARK(suspending_get_bounded);

void repository_put(benchmark::State& state) {
  bulwark::memory::repository repo;
  const auto keys = make_keys(1024);
  co_await_loop(state, [&](std::size_t i) { return repo.put(keys[i & 1023], value_100, std::nullopt); });
}
BENCHMARK(repository_put);

// Publish to a handler on the same thread (one core): each iteration is one message published
// and handled; batches of 1000 are published, then the handler drains them.
void bus_publish_to_handler(benchmark::State& state) {
  asio::io_context ctx;
  bulwark::memory::event_bus bus(ctx.get_executor(), {.partitions = 4});
  std::uint64_t handled = 0;
  bulwark::memory::event_bus::subscription sub;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        bulwark::subscribe_options options{.topic = "bench", .group = "g"};
        bulwark::message_handler count = [&](const bulwark::envelope&) -> bulwark::task<void> {
          ++handled;
          co_return bulwark::ok();
        };
        auto s = co_await bus.subscribe(std::move(options), std::move(count));
        sub = std::move(s).value();
        std::uint64_t published = 0;
        const std::string keys[4] = {"a", "b", "c", "d"};
        for (auto _ : state) {
          bulwark::message m{keys[published & 3], value_100, {}};
          auto d = co_await bus.publish("bench", std::move(m));
          benchmark::DoNotOptimize(d);
          if (++published % 1000 == 0)
            while (handled < published) co_await asio::post(ctx, asio::use_awaitable);
        }
        while (handled < published) co_await asio::post(ctx, asio::use_awaitable);
        co_await sub.stop();
      },
      asio::detached);
  ctx.run();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bus_publish_to_handler);

// A consumer whose handler awaits a round trip to another service (a Redis pipeline, a Kafka
// acknowledgement), simulated by a 100 us timer per call: subscribe() waits once per message,
// subscribe_batch() (max_batch 256) once per batch. 4 partitions; each iteration is one
// message published and handled; 1000 are published, then the consumer drains them, so a
// backlog is there to batch. Real time: the handler mostly waits.
constexpr auto round_trip = std::chrono::microseconds(100);

template <bool Batch> void bus_round_trip(benchmark::State& state) {
  asio::io_context ctx;
  bulwark::memory::event_bus bus(ctx.get_executor(), {.partitions = 4});
  std::uint64_t handled = 0, calls = 0;
  bulwark::memory::event_bus::subscription sub;
  auto wait_round_trip = [&ctx]() -> asio::awaitable<void> {
    asio::steady_timer t(ctx, round_trip);
    co_await t.async_wait(asio::use_awaitable);
  };
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        bulwark::subscribe_options options{.topic = "bench", .group = "g", .max_batch = 256};
        bulwark::batch_handler apply_batch = [&](std::span<const bulwark::envelope> batch) -> bulwark::task<void> {
          ++calls;
          co_await wait_round_trip();
          handled += batch.size();
          co_return bulwark::ok();
        };
        bulwark::message_handler apply_one = [&](const bulwark::envelope&) -> bulwark::task<void> {
          ++calls;
          co_await wait_round_trip();
          ++handled;
          co_return bulwark::ok();
        };
        auto subscribing = Batch ? bus.subscribe_batch(std::move(options), std::move(apply_batch))
                                 : bus.subscribe(std::move(options), std::move(apply_one));
        auto s = co_await std::move(subscribing);
        sub = std::move(s).value();
        std::uint64_t published = 0;
        const std::string keys[4] = {"a", "b", "c", "d"};
        asio::steady_timer poll(ctx);
        auto drain = [&]() -> asio::awaitable<void> {
          while (handled < published) {
            poll.expires_after(std::chrono::microseconds(20));
            co_await poll.async_wait(asio::use_awaitable);
          }
        };
        for (auto _ : state) {
          bulwark::message m{keys[published & 3], value_100, {}};
          auto d = co_await bus.publish("bench", std::move(m));
          benchmark::DoNotOptimize(d);
          if (++published % 1000 == 0) co_await drain();
        }
        co_await drain();
        co_await sub.stop();
      },
      asio::detached);
  ctx.run();
  state.SetItemsProcessed(state.iterations());
  state.counters["messages_per_call"] = calls ? static_cast<double>(handled) / static_cast<double>(calls) : 0.0;
}
void bus_round_trip_per_message(benchmark::State& state) { bus_round_trip<false>(state); }
void bus_round_trip_batch(benchmark::State& state) { bus_round_trip<true>(state); }
BENCHMARK(bus_round_trip_per_message)->UseRealTime();
BENCHMARK(bus_round_trip_batch)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
