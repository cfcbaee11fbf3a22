// Cost per command of the event-log example's memory mode, stage by stage: the command API's
// route (in process, no socket), then the validator, the persister and the materializer, each
// started alone once the stage before it handled everything, so each sees full batches, as
// under load, and its cost is its own. On one io_context thread.
//
//   bulwark_bench_event_log_instructions [commands] [max_batch] [persister|materializer]
//
// The persister and the materializer read one topic in two groups, and the memory bus drops
// what every group that exists committed: the one started second would find nothing. So a run
// measures one of them (the third argument, default persister) and the other is not started.
//
// Prints, per stage, the process's CPU time over the stage (`cpu_us <stage> <microseconds>`);
// under callgrind (benchmarks/event_log_instructions.sh) each stage ends with a dump of its own
// counts (CALLGRIND_DUMP_STATS_AT, named after the stage). The script runs it with 0 and with
// `commands` commands and divides the differences (the rest is the same in both).
#include <event_log/memory_mode.hpp>
#include <event_log/routes.hpp>

#include <bulwark/app.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_DUMP_STATS_AT(name) ((void)(name))
#endif

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace el = event_log;

namespace {

bulwark::task<void> post(bulwark::http::router& commands, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    bulwark::http::request req;
    req.method = "POST";
    req.target = "/assets";
    req.body = R"({"title":"asset )" + std::to_string(i) + R"(","src":"https://example.com/)" + std::to_string(i) +
               R"(.png","width":)" + std::to_string(i) + "}";
    auto answered = co_await commands(req);
    if (!answered) co_return answered.error();
    if (answered.value().status != 202)
      co_return bulwark::error(bulwark::errc::invalid_argument, "not accepted: " + answered.value().body);
  }
  co_return bulwark::ok();
}

double cpu_us() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
}

} // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 10000;
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread loop([&] { io.run(); });
  const auto settings = el::parse_settings(el::default_settings_json).value();
  el::pipeline_options o;
  if (argc > 2) o.max_batch = std::strtoul(argv[2], nullptr, 10);
  o.max_in_flight = 0; // every command is posted before the stages start
  const std::string last = argc > 3 ? argv[3] : "persister";
  if (last != "persister" && last != "materializer") {
    std::fprintf(stderr, "the third argument is persister or materializer\n");
    return 2;
  }
  auto d = std::make_unique<el::memory_deployment>(io.get_executor(), settings, std::move(o));
  bulwark::http::router commands;
  el::add_command_routes(commands, d->commands());
  int rc = 0;
  auto fail = [&](const std::string& why) {
    std::fprintf(stderr, "%s\n", why.c_str());
    rc = 1;
  };
  // Until every group of `groups` committed everything (bounded: 600 s, callgrind is slow).
  auto wait_for = [&](std::vector<std::pair<const char*, const char*>> groups) {
    auto caught_up = [&] {
      for (const auto& [topic, group] : groups)
        for (std::int32_t p = 0; p < 4; ++p)
          if (d->bus().committed(topic, group, p).value_or(0) != d->bus().end_offset(topic, p)) return false;
      return true;
    };
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(600);
    while (!caught_up() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return caught_up();
  };
  auto& stages = d->stages();
  struct stage {
    const char* name;
    std::function<bulwark::task<void>()> start;
    std::vector<std::pair<const char*, const char*>> groups;
  };
  const std::vector<stage> order{
      {"command_api", [&] { return post(commands, n); }, {}},
      {"validator", [&] { return stages.start_validator(); }, {{"commands", "validator"}}},
      {"persister", [&] { return stages.start_persister(); }, {{"events", "persister"}}},
      {"materializer", [&] { return stages.start_materializer(); }, {{"events", "materializer"}}}};
  for (const auto& s : order) {
    if (s.name != last && (s.name == std::string("persister") || s.name == std::string("materializer"))) continue;
    const double before = cpu_us();
    if (auto done = bulwark::app::block_on(io.get_executor(), s.start()); !done) {
      fail(std::string(s.name) + ": " + done.error().message());
      break;
    }
    if (!wait_for(s.groups)) {
      fail(std::string(s.name) + " did not catch up");
      break;
    }
    CALLGRIND_DUMP_STATS_AT(s.name);
    std::printf("cpu_us %s %.0f\n", s.name, cpu_us() - before);
  }
  bulwark::app::block_on(io.get_executor(), d->stop());
  work.reset();
  loop.join();
  std::printf("%zu commands\n", n);
  return rc;
}
