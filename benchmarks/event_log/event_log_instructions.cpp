// Instructions per command of the event-log example's memory mode, counted by callgrind
// (benchmarks/event_log_instructions.sh): the command API's route (in process, no socket) and the
// three consumer stages, on one io_context thread. `commands` creates go through the command
// router first, then the stages start and the program waits until every group committed every
// message, so the stages see full batches, as under load. The script runs it with 0 and with
// `commands` commands and divides the difference of the totals (the rest is the same in both).
//
//   bulwark_bench_event_log_instructions [commands] [max_batch]
#include <event_log/memory_mode.hpp>
#include <event_log/routes.hpp>

#include <bulwark/app.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

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

} // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 10000;
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread loop([&] { io.run(); });
  const auto settings = el::parse_settings(el::default_settings_json).value();
  el::pipeline_options o;
  if (argc > 2) o.max_batch = std::strtoul(argv[2], nullptr, 10);
  auto d = std::make_unique<el::memory_deployment>(io.get_executor(), settings, std::move(o));
  bulwark::http::router commands;
  el::add_command_routes(commands, d->commands());
  int rc = 0;
  if (auto posted = bulwark::app::block_on(io.get_executor(), post(commands, n)); !posted) {
    std::fprintf(stderr, "%s\n", posted.error().message().c_str());
    rc = 1;
  } else if (auto started = bulwark::app::block_on(io.get_executor(), d->start()); !started) {
    std::fprintf(stderr, "%s\n", started.error().message().c_str());
    rc = 1;
  } else {
    // Until every group committed everything (bounded: 600 s, callgrind is slow).
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(600);
    auto caught_up = [&] {
      for (const auto& [topic, group] :
           {std::pair{"commands", "validator"}, std::pair{"events", "persister"}, std::pair{"events", "materializer"}})
        for (std::int32_t p = 0; p < 4; ++p)
          if (d->bus().committed(topic, group, p).value_or(0) != d->bus().end_offset(topic, p)) return false;
      return true;
    };
    while (!caught_up() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!caught_up()) {
      std::fprintf(stderr, "the pipeline did not catch up\n");
      rc = 1;
    }
  }
  bulwark::app::block_on(io.get_executor(), d->stop());
  work.reset();
  loop.join();
  std::printf("%zu commands\n", n);
  return rc;
}
