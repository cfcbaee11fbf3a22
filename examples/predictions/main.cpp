// predictions: fans' predictions of World Cup matches. POST /input -> a topic -> a consumer
// group writing the logs and the live aggregates; GET /live and GET /logs as JSON, pages and
// server-sent events. Memory mode (the default): one process, no servers. Real mode: Kafka,
// MySQL, Redis; the API and the consumer in one process or in separate ones (--role).
//
//   predictions [--port 8080] [--backend memory|real] [--role all|api|consumer] ...
//   predictions --help

#include <predictions/config.hpp>
#include <predictions/runtime.hpp>

#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>

#ifdef PREDICTIONS_REAL_BACKENDS
#include <predictions/real_mode.hpp>
#endif

#include <iostream>
#include <string_view>
#include <vector>

namespace {

int run_memory(const predictions::config& c, bulwark::app::stop_signals& signals) {
  auto metrics = std::make_shared<bulwark::metrics::registry>();
  predictions::home_thread home;
  bulwark::memory::event_bus::options bo;
  bo.partitions = 4;
  bo.metrics = metrics;
  bo.drain_timeout = std::chrono::seconds(2);
  bulwark::memory::event_bus bus(home.executor(), bo);
  bulwark::memory::repository logs;
  predictions::memory_aggregates aggregates;
  predictions::models<bulwark::memory::event_bus, bulwark::memory::repository, predictions::memory_aggregates> all{
      bus, logs, aggregates, "backend memory: nothing survives a restart", {}};
  return predictions::serve(c, signals, home.executor(), all, metrics);
}

} // namespace

int main(int argc, char** argv) {
  bulwark::app::stop_signals signals; // before any thread starts: only signals.wait() sees them
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    std::cout << predictions::usage;
    return 0;
  }
  auto parsed = predictions::parse_config(args, predictions::process_environment());
  if (!parsed) {
    std::cerr << "predictions: " << parsed.error().detail() << "\n" << predictions::usage;
    return 2;
  }
  const auto& c = parsed.value();
  if (c.backend == predictions::backend_kind::memory) return run_memory(c, signals);
#ifdef PREDICTIONS_REAL_BACKENDS
  return predictions::run_real(c, signals);
#else
  std::cerr << "predictions: --backend real is not built in (this tree has no Kafka, MySQL and Redis adapters)\n";
  return 2;
#endif
}
