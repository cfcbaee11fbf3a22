// Instructions per call of the calls benchmarks/write_through.sh times, counted by callgrind
// (benchmarks/write_through_instructions.sh): a busy shared machine moves nanoseconds by a third
// between runs, instruction counts by less than one per cent. Each mode runs its call `calls`
// times, after a warm-up that leaves the flow in the benchmark's steady state (every key written,
// its repository version known); the script runs each mode with 0 and with `calls` calls and
// divides the difference of the totals by `calls` (the rest of the program is the same in both
// runs; callgrind's --toggle-collect cannot isolate the loop: Asio resumes an awaited coroutine
// from its own scheduler, outside the awaiting function).
//
//   bulwark_bench_write_through_instructions put|write|get|read [calls]
#include <bulwark/flows/write_through.hpp>
#include <bulwark/memory/cache.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using flow =
    bulwark::flows::write_through<bulwark::memory::repository, bulwark::memory::cache, bulwark::memory::event_bus>;

constexpr std::size_t key_count = 1024; // as benchmarks/flows/write_through.cpp
const std::string value_100(100, 'v');

struct setup {
  asio::io_context ctx;
  bulwark::memory::repository repo;
  bulwark::memory::repository bare; // the bare puts' own, as in the benchmark
  bulwark::memory::cache cache;
  bulwark::memory::event_bus bus{ctx.get_executor()};
  flow wt{repo, cache, bus, [] {
            flow::options o;
            o.name = "bench";
            o.retry_topic = "bench.retry";
            o.repository_timeout = 2s;
            return o;
          }()};
  std::vector<std::string> keys;
};

void fail(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::exit(1);
}

asio::awaitable<void> measured_put(setup& s, std::size_t calls) {
  for (std::size_t i = 0; i < calls; ++i)
    if (!co_await s.bare.put(s.keys[i % key_count], value_100, std::nullopt)) fail("put failed");
}
asio::awaitable<void> measured_write(setup& s, std::size_t calls) {
  for (std::size_t i = 0; i < calls; ++i) {
    auto w = co_await s.wt.write(s.keys[i % key_count], value_100, bulwark::deadline::after(1s));
    if (!w || w.value().outcome != bulwark::flows::write_state::durable) fail("write not durable");
  }
}
asio::awaitable<void> measured_get(setup& s, std::size_t calls) {
  for (std::size_t i = 0; i < calls; ++i)
    if (!co_await s.cache.get(s.keys[i % key_count])) fail("get failed");
}
asio::awaitable<void> measured_read(setup& s, std::size_t calls) {
  for (std::size_t i = 0; i < calls; ++i)
    if (!co_await s.wt.read(s.keys[i % key_count], bulwark::deadline::after(1s))) fail("read failed");
}

} // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "write";
  const std::size_t calls = argc > 2 ? std::stoul(argv[2]) : 20000;
  setup s;
  for (std::size_t i = 0; i < key_count; ++i) s.keys.push_back("channel:" + std::to_string(i));
  asio::co_spawn(
      s.ctx,
      [&]() -> asio::awaitable<void> {
        for (std::size_t i = 0; i < 4 * key_count; ++i) {
          auto w = co_await s.wt.write(s.keys[i % key_count], value_100, bulwark::deadline::after(1s));
          auto p = co_await s.bare.put(s.keys[i % key_count], value_100, std::nullopt);
          if (!w || !p) fail("warm-up failed");
        }
        if (mode == "put")
          co_await measured_put(s, calls);
        else if (mode == "write")
          co_await measured_write(s, calls);
        else if (mode == "get")
          co_await measured_get(s, calls);
        else if (mode == "read")
          co_await measured_read(s, calls);
        else
          fail("mode: put, write, get or read");
      },
      asio::detached);
  s.ctx.run();
  if (s.wt.stats().pending_writes != 0 || s.wt.stats().misses != 0) fail("a write went pending or a read missed");
  return 0;
}
