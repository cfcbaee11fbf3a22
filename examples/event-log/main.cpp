// event-log: the CQRS pipeline of issue 16. One executable; the stage it runs is its first
// argument or its name (event-log-validator, ... are links to it, see CMakeLists.txt):
//
//   event-log [all] [--mode memory|real]    every stage in this process (memory: the default)
//   event-log command-api | validator | persister | materializer | query-api   --mode real
//   event-log rebuild | verify              --mode real: snapshots from the event store
//
// Options: --settings FILE (default: the reference's types), --address 127.0.0.1,
// --command-port / --query-port (default: the settings' ports), --metrics-port N (consumer
// stages: /metrics), --kafka host:port,... ($BULWARK_KAFKA_BOOTSTRAP), --redis host:port
// ($BULWARK_REDIS_HOST/PORT), --prefix event-log. (topics, groups, Redis keys), --threads N,
// --retention SECONDS (a command's decision and status, default 86400; 0: for ever),
// --max-batch N (messages a stage takes at once: memory 256, real 1024), --max-in-flight N (the
// command API's admission bound, in messages the stages have not handled: memory 1024, real 2048;
// 0: none), --max-lag-ms N (real mode: also at most the commands the validator decides in N ms;
// default 0, the count alone), --min-in-flight N (the floor of that bound, default 1024),
// --admit-timeout-ms N (how long a request is held before its 503, default 5000),
// --admit-refresh-ms N (real mode: how often the admission counts the backlog, default 100),
// --linger-ms N (real mode's producer linger, default 20), --kafka-properties name=value,...
// (librdkafka settings, after the example's own).

#include <event_log/memory_mode.hpp>
#include <event_log/routes.hpp>

#ifdef EVENT_LOG_REAL_BACKENDS
#include <event_log/real_mode.hpp>
#endif

#include <bulwark/app.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/http/server.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace el = event_log;
namespace http = bulwark::http;

namespace {

struct options {
  std::string stage = "all";
  std::string mode = "memory";
  std::string settings_path;
  std::string address = "127.0.0.1";
  int command_port = -1, query_port = -1, metrics_port = -1;
  std::size_t threads = 1;
  /// Seconds a command's decision and status are kept (pipeline_options::retention; 0: for ever).
  std::chrono::seconds retention = std::chrono::duration_cast<std::chrono::seconds>(el::pipeline_options{}.retention);
  std::string kafka, redis, prefix = "event-log.";
  std::size_t max_batch = 0; ///< 0: the mode's (pipeline_options::max_batch, real_options::max_batch)
  /// The admission bound (none given: the mode's, pipeline_options / real_options::max_in_flight).
  std::optional<std::size_t> max_in_flight;
  std::chrono::milliseconds admit_timeout = el::pipeline_options{}.admit_timeout;
#ifdef EVENT_LOG_REAL_BACKENDS
  std::chrono::milliseconds max_lag = el::real_options{}.max_lag;
  std::size_t min_in_flight = el::real_options{}.min_in_flight;
  std::chrono::milliseconds admit_refresh = el::real_options{}.admit_refresh;
#endif
#ifdef EVENT_LOG_REAL_BACKENDS
  std::chrono::milliseconds linger = el::real_options{}.linger;
  std::vector<std::pair<std::string, std::string>> kafka_properties;
#endif
};

const std::vector<std::string> stages = {"all",          "command-api", "validator", "persister",
                                         "materializer", "query-api",   "rebuild",   "verify"};

int usage(const std::string& why) {
  std::cerr << "event-log: " << why
            << "\nusage: event-log [all|command-api|validator|persister|materializer|query-api|rebuild|verify]"
               " [--mode memory|real] [--settings FILE] [--address A] [--command-port N] [--query-port N]"
               " [--metrics-port N] [--threads N] [--retention SECONDS] [--max-batch N] [--max-in-flight N]"
               " [--admit-timeout-ms N] [--max-lag-ms N] [--min-in-flight N] [--admit-refresh-ms N]"
               " [--kafka LIST] [--redis HOST:PORT] [--prefix P] [--linger-ms N] [--kafka-properties name=value,...]\n";
  return 2;
}

// The backends' io_context (bulwark::app::io_threads) runs on two threads in memory mode: each
// subscription's handlers stay on their own strand, so the stages run in parallel; the memory
// models take locks. Real mode runs one: the Redis client is single-threaded. At exit the loop is
// stopped, not drained: the clients' idle connections would keep it running.
using bulwark::app::io_threads;
constexpr auto stop_loop = io_threads::at_exit::stop_loop;

/// The HTTP servers this process runs; stopped on destruction.
struct servers {
  std::vector<std::unique_ptr<http::router>> routers;
  std::vector<std::unique_ptr<http::server>> running;

  bool add(const options& o, std::uint16_t port, const std::function<void(http::router&)>& routes,
           const std::string& name) {
    routers.push_back(std::make_unique<http::router>());
    routes(*routers.back());
    http::server_options s;
    s.address = o.address;
    s.port = port;
    s.threads = o.threads;
    s.limits.max_body = 8u << 20; // the command API refuses > 64 KiB with its own 400
    running.push_back(std::make_unique<http::server>(s, routers.back()->as_handler()));
    if (auto started = running.back()->start(); !started) {
      std::cerr << "event-log: " << name << ": " << started.error().message() << "\n";
      return false;
    }
    std::cout << "event-log: " << name << " listening on http://" << o.address << ":" << running.back()->port()
              << std::endl;
    return true;
  }
  ~servers() {
    for (auto& s : running) s->stop(std::chrono::seconds(5));
  }
};

std::uint16_t port_of(int flag, std::uint16_t from_settings) {
  return flag >= 0 ? static_cast<std::uint16_t>(flag) : from_settings;
}

int run_memory(const options& o, const el::settings& s, bulwark::app::stop_signals& signals) {
  if (o.stage != "all") return usage("stage " + o.stage + " runs only with --mode real (memory mode is one process)");
  io_threads io(2, stop_loop);
  el::pipeline_options p;
  p.retention = o.retention;
  if (o.max_batch > 0) p.max_batch = o.max_batch;
  if (o.max_in_flight) p.max_in_flight = *o.max_in_flight;
  p.admit_timeout = o.admit_timeout;
  el::memory_deployment d(io.executor(), s, std::move(p));
  if (auto started = bulwark::app::block_on(io.executor(), d.start()); !started) {
    std::cerr << "event-log: " << started.error().message() << "\n";
    return 1;
  }
  {
    servers http_servers;
    if (!http_servers.add(
            o, port_of(o.command_port, s.command_port),
            [&](http::router& r) { el::add_command_routes(r, d.commands()); }, "command API") ||
        !http_servers.add(
            o, port_of(o.query_port, s.query_port), [&](http::router& r) { el::add_query_routes(r, d.queries()); },
            "query API")) {
      bulwark::app::block_on(io.executor(), d.stop());
      return 1;
    }
    std::cout << "event-log: all stages in this process on memory backends" << std::endl;
    signals.wait();
  }
  bulwark::app::block_on(io.executor(), d.stop());
  return 0;
}

#ifdef EVENT_LOG_REAL_BACKENDS
int run_real(const options& o, const el::settings& s, bulwark::app::stop_signals& signals) {
  el::real_options r;
  r.prefix = o.prefix;
  r.retention = o.retention;
  if (o.max_batch > 0) r.max_batch = o.max_batch;
  r.linger = o.linger;
  if (o.max_in_flight) r.max_in_flight = *o.max_in_flight;
  r.max_lag = o.max_lag;
  r.min_in_flight = o.min_in_flight;
  r.admit_timeout = o.admit_timeout;
  r.admit_refresh = o.admit_refresh;
  r.kafka_properties = o.kafka_properties;
  r.kafka_bootstrap = !o.kafka.empty()                         ? o.kafka
                      : std::getenv("BULWARK_KAFKA_BOOTSTRAP") ? std::getenv("BULWARK_KAFKA_BOOTSTRAP")
                                                               : "localhost:9092";
  std::string redis = o.redis;
  if (redis.empty() && std::getenv("BULWARK_REDIS_HOST") && std::getenv("BULWARK_REDIS_PORT"))
    redis = std::string(std::getenv("BULWARK_REDIS_HOST")) + ":" + std::getenv("BULWARK_REDIS_PORT");
  if (!redis.empty()) {
    auto colon = redis.rfind(':');
    if (colon == std::string::npos) return usage("--redis wants HOST:PORT");
    r.redis_host = redis.substr(0, colon);
    r.redis_port = static_cast<std::uint16_t>(std::stoi(redis.substr(colon + 1)));
  }
  io_threads io(1, stop_loop);
  auto created = el::real_deployment::create(io.executor(), s, r);
  if (!created) {
    std::cerr << "event-log: " << created.error().message() << "\n";
    return 1;
  }
  auto& d = *created.value();
  const bool all = o.stage == "all";
  if (o.stage == "rebuild" || o.stage == "verify") {
    auto ran = bulwark::app::block_on(io.executor(), [&]() -> bulwark::task<int> {
      if (o.stage == "rebuild") {
        auto report = co_await d.stages().snapshots().rebuild();
        if (!report) co_return report.error();
        std::cout << "rebuild: " << report.value().streams << " streams, " << report.value().written
                  << " snapshots written" << std::endl;
        co_return 0;
      }
      auto report = co_await d.stages().snapshots().verify();
      if (!report) co_return report.error();
      std::cout << "verify: " << report.value().streams << " streams, " << report.value().differ
                << " snapshots differ from a rebuild" << std::endl;
      co_return report.value().differ == 0 ? 0 : 1;
    }());
    bulwark::app::block_on(io.executor(), d.stop());
    if (!ran) {
      std::cerr << "event-log: " << ran.error().message() << "\n";
      return 1;
    }
    return ran.value();
  }
  auto start = [&](auto op, const char* what) {
    auto started = bulwark::app::block_on(io.executor(), op());
    if (!started) std::cerr << "event-log: " << what << ": " << started.error().message() << "\n";
    return bool(started);
  };
  bool ok = o.stage == "query-api" || start([&] { return d.create_topics(); }, "Kafka topics");
  if (all || o.stage == "validator") ok = ok && start([&] { return d.stages().start_validator(); }, "validator");
  if (all || o.stage == "persister") ok = ok && start([&] { return d.stages().start_persister(); }, "persister");
  if (all || o.stage == "materializer")
    ok = ok && start([&] { return d.stages().start_materializer(); }, "materializer");
  {
    servers http_servers;
    if (ok && (all || o.stage == "command-api"))
      ok = http_servers.add(
          o, port_of(o.command_port, s.command_port), [&](http::router& r) { el::add_command_routes(r, d.commands()); },
          "command API");
    if (ok && (all || o.stage == "query-api"))
      ok = http_servers.add(
          o, port_of(o.query_port, s.query_port), [&](http::router& r) { el::add_query_routes(r, d.queries()); },
          "query API");
    if (ok && o.metrics_port >= 0 && !all && o.stage != "command-api" && o.stage != "query-api")
      ok = http_servers.add(
          o, static_cast<std::uint16_t>(o.metrics_port),
          [&](http::router& r) { r.get("/metrics", http::metrics_handler(d.stages().metrics())); }, "metrics");
    if (ok) {
      std::cout << "event-log: " << o.stage << " running on Kafka " << r.kafka_bootstrap << " and Redis "
                << r.redis_host << ":" << r.redis_port << " (prefix " << r.prefix << ")" << std::endl;
      signals.wait();
    }
  }
  bulwark::app::block_on(io.executor(), d.stop());
  return ok ? 0 : 1;
}
#endif

} // namespace

int main(int argc, char** argv) {
  bulwark::app::stop_signals signals;
  options o;
  std::string self = argv[0];
  if (auto slash = self.rfind('/'); slash != std::string::npos) self = self.substr(slash + 1);
  if (self.starts_with("event-log-")) o.stage = self.substr(10);
  const std::vector<std::string> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      return args[++i];
    };
    // A whole decimal number from 0 to `max`.
    auto count = [&](std::size_t& out, std::size_t max) {
      auto v = value();
      if (!v || v->empty() || v->size() > 9 || v->find_first_not_of("0123456789") != std::string::npos) return false;
      out = std::stoul(*v);
      return out <= max;
    };
    auto number = [&](int& out) {
      std::size_t n = 0;
      if (!count(n, 65535)) return false;
      out = static_cast<int>(n);
      return true;
    };
    bool good = true;
    if (a == "--help" || a == "-h") {
      usage("the CQRS pipeline of examples/event-log (see its README)");
      return 0;
    } else if (a == "--mode") {
      auto v = value();
      good = v && (*v == "memory" || *v == "real");
      if (good) o.mode = *v;
    } else if (a == "--settings") {
      auto v = value();
      good = bool(v);
      if (good) o.settings_path = *v;
    } else if (a == "--address") {
      auto v = value();
      good = bool(v);
      if (good) o.address = *v;
    } else if (a == "--command-port") {
      good = number(o.command_port);
    } else if (a == "--query-port") {
      good = number(o.query_port);
    } else if (a == "--metrics-port") {
      good = number(o.metrics_port);
    } else if (a == "--threads") {
      int n = 0;
      good = number(n) && n > 0;
      o.threads = static_cast<std::size_t>(n);
    } else if (a == "--retention") {
      int n = 0;
      good = number(n) && n >= 0;
      o.retention = std::chrono::seconds(n);
    } else if (a == "--max-batch") {
      good = count(o.max_batch, 100000) && o.max_batch > 0;
    } else if (a == "--max-in-flight") {
      std::size_t n = 0;
      good = count(n, 100000000);
      o.max_in_flight = n;
    } else if (a == "--admit-timeout-ms") {
      std::size_t ms = 0;
      good = count(ms, 600000) && ms > 0;
      o.admit_timeout = std::chrono::milliseconds(ms);
#ifdef EVENT_LOG_REAL_BACKENDS
    } else if (a == "--max-lag-ms") {
      std::size_t ms = 0;
      good = count(ms, 600000);
      o.max_lag = std::chrono::milliseconds(ms);
    } else if (a == "--min-in-flight") {
      good = count(o.min_in_flight, 100000000);
    } else if (a == "--admit-refresh-ms") {
      std::size_t ms = 0;
      good = count(ms, 60000) && ms > 0;
      o.admit_refresh = std::chrono::milliseconds(ms);
    } else if (a == "--linger-ms") {
      auto v = value();
      if (!v) return usage("bad value for " + a);
      auto linger = bulwark::kafka::parse_linger_ms(*v);
      if (!linger) return usage("--linger-ms: " + std::string(linger.error().detail()));
      o.linger = linger.value();
    } else if (a == "--kafka-properties") {
      auto v = value();
      if (!v) return usage("bad value for " + a);
      auto parsed = bulwark::kafka::parse_properties(*v);
      if (!parsed) return usage("--kafka-properties: " + std::string(parsed.error().detail()));
      o.kafka_properties = std::move(parsed).value();
#endif
    } else if (a == "--kafka" || a == "--redis" || a == "--prefix") {
      auto v = value();
      good = bool(v);
      if (good) (a == "--kafka" ? o.kafka : a == "--redis" ? o.redis : o.prefix) = *v;
    } else if (!a.starts_with("--") && std::find(stages.begin(), stages.end(), a) != stages.end()) {
      o.stage = a;
    } else {
      return usage("unknown argument " + a);
    }
    if (!good) return usage("bad value for " + a);
  }
  if (std::find(stages.begin(), stages.end(), o.stage) == stages.end()) return usage("unknown stage " + o.stage);
  auto loaded =
      o.settings_path.empty() ? el::parse_settings(el::default_settings_json) : el::load_settings(o.settings_path);
  if (!loaded) {
    std::cerr << "event-log: " << loaded.error().detail() << "\n";
    return 2;
  }
  const el::settings s = std::move(loaded).value();
  if (o.mode == "memory") return run_memory(o, s, signals);
#ifdef EVENT_LOG_REAL_BACKENDS
  return run_real(o, s, signals);
#else
  std::cerr << "event-log: real mode is not built in (this tree was configured without the Kafka and Redis adapters)\n";
  return 2;
#endif
}
