// cache-retry-service (CRS): configuration -> backends -> retry_replayer -> routes.
// Its job is the retry topic of the real backends (Kafka, MySQL); with --backend memory it runs
// inside channel-metadata-store instead, since an in-memory bus lives in one process.
//
//   cache-retry-service --backend mysql+redis [--port 8090] [--kafka-brokers host:port,...] ...
//   cache-retry-service --help

#include <channel_metadata/config.hpp>

#include <bulwark/app.hpp>

#ifdef CHANNEL_METADATA_REAL_BACKENDS
#include <channel_metadata/real_mode.hpp>
#endif

#include <iostream>
#include <string_view>
#include <vector>

namespace cm = channel_metadata;

int main(int argc, char** argv) {
  bulwark::app::stop_signals signals; // before any thread starts: only signals.wait() sees them
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  auto startup = cm::resolve_startup(cm::service::crs, args, cm::process_environment(), std::cout, std::cerr);
  if (!startup.settings) return startup.exit_code;
  cm::config c = std::move(*startup.settings);
  if (c.backend == cm::backend_kind::memory) {
    std::cerr << "cache-retry-service: with --backend memory the cache-retry-service runs inside "
                 "channel-metadata-store\n(its in-memory bus lives in that process): run "
                 "'channel-metadata-store --backend memory' (CRS on --crs-port, default 8090),\nor give "
                 "this service --backend mysql+redis or mysql+hazelcast.\n";
    return 2;
  }
#ifdef CHANNEL_METADATA_REAL_BACKENDS
  return cm::run_crs_real(std::move(c), signals);
#else
  std::cerr << "cache-retry-service: backend " << cm::to_string(c.backend)
            << " is not built in (this tree was configured without the MySQL, Redis, Hazelcast and Kafka adapters)\n";
  return 2;
#endif
}
