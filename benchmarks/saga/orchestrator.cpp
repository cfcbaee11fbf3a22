// Sagas per second of saga::orchestrator on the memory models, one thread (one io_context):
// a three-step saga whose steps each apply a memory::ledger operation (op id = saga/step), the
// saga log in memory::repository, a raw-bytes context codec (the library's cost, not JSON's).
//   local   the three steps are local calls
//   remote  the three steps are commands over memory::event_bus to a participant that applies
//           them and replies (the wire format of saga/wire.hpp)
// `in_flight` clients each start a saga and await its outcome, again and again, until `count`
// sagas finished; every saga must complete (a failure ends the run with an error).
//   bench_saga_orchestrator [count_local] [count_remote] [in_flight]
// Each run also prints its CPU time and sagas per CPU second (the machine may be shared).
#include <bulwark/ledger.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/ledger.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/saga/definition.hpp>
#include <bulwark/saga/orchestrator.hpp>
#include <bulwark/saga/wire.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace std::chrono_literals;
using bulwark::task;
namespace saga = bulwark::saga;

// The context is the order id itself, stored as is.
struct raw_codec {
  static std::string encode(const std::string& s) { return s; }
  static bulwark::result<std::string> decode(std::string_view b) { return std::string(b); }
};
using order_saga = saga::definition<std::string, raw_codec>;

const std::vector<std::vector<bulwark::adjustment>> changes{{{"stock", -1}}, {{"credit", -1}}, {{"shipped", 1}}};
const char* const step_names[] = {"reserve", "pay", "ship"};

order_saga local_definition(bulwark::memory::ledger& ledger) {
  order_saga d("bench-local");
  for (std::size_t i = 0; i < 3; ++i) {
    std::string name = step_names[i];
    auto action = [&ledger, name, i](std::string& id, bulwark::clock::time_point) -> task<void> {
      auto r = ledger.apply_now(id + "/" + name, changes[i]);
      if (!r) co_return r.error();
      co_return bulwark::ok();
    };
    auto undo = [&ledger, name](std::string& id, bulwark::clock::time_point) -> task<void> {
      auto r = ledger.revert_now(id + "/" + name);
      if (!r) co_return r.error();
      co_return bulwark::ok();
    };
    d.add(saga::local_step<std::string>(name, action, undo));
  }
  return d;
}

order_saga remote_definition() {
  order_saga d("bench-remote");
  for (std::size_t i = 0; i < 3; ++i)
    d.add(saga::remote_step<std::string>(step_names[i], "bench-ledger",
                                         [](const std::string&, saga::op) { return std::string(); }));
  return d;
}

// Runs `clients` loops of start + outcome until `count` sagas finished; sagas per second.
template <class Orchestrator>
double drive(asio::io_context& ctx, Orchestrator& o, std::size_t count, std::size_t clients, const char* prefix) {
  std::size_t next = 0, done = 0;
  bool failed = false;
  auto client = [&]() -> asio::awaitable<void> {
    while (next < count && !failed) {
      std::string id = prefix + std::to_string(next++);
      auto started = co_await o.start(id, id);
      bulwark::result<saga::saga_outcome<std::string>> outcome = bulwark::error(bulwark::errc::cancelled);
      if (!started) outcome = started.error();
      if (started) { // no co_await inside a conditional expression (GCC 12)
        auto finished = co_await o.outcome(id, bulwark::clock::time_point::max());
        outcome = std::move(finished);
      }
      if (!outcome || outcome.value().state != saga::saga_state::completed) {
        std::fprintf(stderr, "saga %s did not complete: %s\n", id.c_str(),
                     outcome ? std::string(to_string(outcome.value().state)).c_str()
                             : outcome.error().message().c_str());
        failed = true;
      }
      ++done;
    }
  };
  const auto t0 = std::chrono::steady_clock::now();
  const auto cpu0 = std::clock();
  for (std::size_t c = 0; c < clients; ++c) asio::co_spawn(ctx, client(), asio::detached);
  ctx.restart();
  while (done < count && !failed) ctx.run_one(); // the bus's workers keep the context busy
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu_seconds = static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;
  if (failed || done != count) std::exit(1);
  // On a shared machine the wall figure depends on the load; the CPU figure is this process's.
  std::printf("%s: %zu sagas in %.3f s wall, %.3f s CPU: %.0f sagas/s by CPU\n", prefix, count, seconds, cpu_seconds,
              static_cast<double>(count) / cpu_seconds);
  return static_cast<double>(count) / seconds;
}

} // namespace

int main(int argc, char** argv) {
  const std::size_t count_local = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200'000;
  const std::size_t count_remote = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 50'000;
  const std::size_t clients = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 256;

  {
    asio::io_context ctx;
    bulwark::memory::repository repo;
    bulwark::memory::ledger ledger(bulwark::memory::ledger::options{.max_records = 4 * count_local + 16});
    ledger.set_now("stock", bulwark::max_amount).value();
    ledger.set_now("credit", bulwark::max_amount).value();
    saga::orchestrator<order_saga, bulwark::memory::repository> o(ctx.get_executor(), local_definition(ledger), repo);
    drive(ctx, o, count_local / 10, clients, "warm-"); // warm-up: allocator, maps
    const double rate = drive(ctx, o, count_local, clients, "local-");
    std::printf("sagas_per_s_local: %.0f\n", rate);
    asio::co_spawn(ctx, o.stop(), asio::detached);
    ctx.restart();
    ctx.run();
  }
  {
    asio::io_context ctx;
    bulwark::memory::repository repo;
    bulwark::memory::ledger ledger(bulwark::memory::ledger::options{.max_records = 4 * count_remote + 16});
    ledger.set_now("stock", bulwark::max_amount).value();
    bulwark::memory::event_bus bus(ctx.get_executor());
    // The participant: applies each (saga, step) once under its op id and replies.
    auto participant = [&](const bulwark::envelope& e) -> task<void> {
      auto c = saga::parse_command(e);
      if (!c) co_return c.error();
      const auto op_id = c.value().saga_id + "/" + c.value().step;
      if (c.value().op == saga::op::action) {
        auto r = ledger.apply_now(op_id, changes[0]);
        if (!r) co_return r.error();
      } else {
        auto r = ledger.revert_now(op_id);
        if (!r) co_return r.error();
      }
      saga::reply reply{c.value().saga_id, c.value().step, c.value().op, saga::reply_outcome::succeeded, {}};
      auto sent = co_await bus.publish(c.value().reply_to, reply.to_message());
      if (!sent) co_return sent.error();
      co_return bulwark::ok();
    };
    std::optional<bulwark::memory::event_bus::subscription> sub;
    asio::co_spawn(
        ctx,
        [&]() -> asio::awaitable<void> {
          bulwark::subscribe_options opts;
          opts.topic = "bench-ledger";
          opts.group = "participant";
          bulwark::message_handler handler = participant; // named: no temporary in a co_await (GCC 12)
          auto s = co_await bus.subscribe(opts, std::move(handler));
          if (s) sub.emplace(std::move(s).value());
        },
        asio::detached);
    for (int i = 0; i < 1000 && !sub; ++i) ctx.run_one();
    if (!sub) return 1;
    saga::orchestrator<order_saga, bulwark::memory::repository, bulwark::memory::event_bus> o(
        ctx.get_executor(), remote_definition(), repo, bus);
    const double rate = drive(ctx, o, count_remote, clients, "remote-");
    std::printf("sagas_per_s_remote: %.0f\n", rate);
    asio::co_spawn(
        ctx,
        [&]() -> asio::awaitable<void> {
          co_await o.stop();
          co_await bus.stop();
        },
        asio::detached);
    ctx.restart();
    ctx.run_for(5s);
  }
  return 0;
}
