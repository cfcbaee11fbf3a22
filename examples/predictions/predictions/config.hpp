#pragma once
// The command line of `predictions`: every option is `--name value`, or the environment variable
// PREDICTIONS_<NAME> (upper case, '-' as '_'), or its default. Plain code, tested in process.

#include <bulwark/result.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace predictions {

enum class backend_kind { memory, real };
/// What one process runs: everything, the HTTP API (ingestion and the views), the consumer, or
/// the audit (reads the whole topic with a group of its own and compares it with the stores).
enum class role_kind { all, api, consumer, audit };

struct config {
  backend_kind backend = backend_kind::memory;
  role_kind role = role_kind::all;
  std::string address = "127.0.0.1";
  std::uint16_t port = 8080;
  /// How often open event streams are refreshed from the stores.
  std::chrono::milliseconds push_interval{200};
  /// How long the logs are kept (the consumers erase older ones every `logs_prune_interval`);
  /// 0: forever.
  std::chrono::seconds logs_retention{std::chrono::hours(24 * 7)};
  std::chrono::seconds logs_prune_interval{60};
  /// How often the consumer tries a batch (then each of its messages) before the bus parks it on
  /// the dead-letter topic. An accepted prediction must be counted, so a store that is away
  /// (MariaDB or Redis restarting, a timeout under load) must not park it: the bound is long
  /// (the bus's backoff, jittered up to 1 s, spreads 1000 attempts over several minutes). A
  /// message that is not a prediction is parked at once whatever this says (not retried).
  unsigned max_attempts = 1000;
  // real mode
  std::string kafka;                 ///< bootstrap servers
  std::string topic = "predictions"; ///< the inputs' topic (created with `partitions`, RF 3, min ISR 2)
  std::string group = "predictions-consumers";
  int partitions = 12;
  /// How long the producer waits to fill a batch (linger.ms). 20 ms, not the library's 5: an
  /// ingestion API with many requests in flight fills larger batches, and librdkafka's broker
  /// threads wake far less often (benchmarks/predictions.sh, quiet machine: 7,973/s at 5 ms,
  /// 15,229/s at 20 ms, the API's CPU per input 79 -> 33 us).
  std::chrono::milliseconds linger{20};
  /// Extra librdkafka properties for every Kafka handle, "name=value,..." (read by
  /// bulwark::kafka::parse_properties when real mode starts; applied after bulwark's own).
  std::string kafka_properties;
  std::string mysql_host = "127.0.0.1";
  std::uint16_t mysql_port = 3306;
  std::string mysql_user = "root";
  std::string mysql_password;
  std::string mysql_database = "predictions"; ///< created when missing (if the user may)
  std::string logs_table = "prediction_logs";
  std::string redis_host = "127.0.0.1";
  std::uint16_t redis_port = 6379;
  std::string redis_prefix = "predictions"; ///< every aggregate key starts with "<prefix>:"
};

using environment = std::function<std::optional<std::string>(std::string_view)>;

inline environment process_environment() {
  return [](std::string_view name) -> std::optional<std::string> {
    if (const char* v = std::getenv(std::string(name).c_str()); v && *v) return std::string(v);
    return std::nullopt;
  };
}

inline constexpr std::string_view usage = R"(usage: predictions [options]
  --backend memory|real     memory (default): one process, no servers; real: Kafka, MySQL, Redis
  --role all|api|consumer|audit
                            all (default): API and consumer in this process; real mode only:
                            api (POST /input, GET /live, GET /logs), consumer (the group member),
                            audit (reads the topic from the start with a group of its own, prints
                            {"accepted","logs","logsDistinct","missingLogs","aggregatesTotal"} and
                            exits 0 when the stores hold each accepted input exactly once)
  --address A --port P      where HTTP listens (default 127.0.0.1:8080; 0: a free port)
  --push-interval-ms N      how often open event streams are refreshed (default 200)
  --logs-retention-s N      logs older than N seconds are erased (default 604800, 7 days; 0: never)
  --logs-prune-interval-s N how often the consumers erase them (default 60)
  --max-attempts N          how often the consumer tries a message whose store write fails before
                            it goes to the dead-letter topic (default 1000: a store away for
                            minutes parks nothing; a message that is not a prediction goes at once)
  --kafka BROKERS --topic T --group G --partitions N
  --linger-ms N             the producer's linger.ms (default 20): longer fills larger batches
  --kafka-properties name=value,...
                            extra librdkafka properties for every Kafka handle, after bulwark's own
  --mysql-host H --mysql-port P --mysql-user U --mysql-password W --mysql-database D --logs-table T
  --redis-host H --redis-port P --redis-prefix X
Every option may also come from PREDICTIONS_<NAME> (PREDICTIONS_KAFKA, PREDICTIONS_MYSQL_PORT, ...).
)";

/// Reads the command line `args` (without the program name) over `env`. Errors:
/// errc::invalid_argument naming the option (unknown, missing value, bad number or choice).
inline bulwark::result<config> parse_config(const std::vector<std::string_view>& args, const environment& env) {
  std::map<std::string, std::string, std::less<>> given;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto a = args[i];
    if (!a.starts_with("--"))
      return bulwark::error(bulwark::errc::invalid_argument, "unexpected argument " + std::string(a));
    if (i + 1 >= args.size())
      return bulwark::error(bulwark::errc::invalid_argument, "option " + std::string(a) + " needs a value");
    given[std::string(a.substr(2))] = std::string(args[++i]);
  }
  std::vector<std::string> known;
  auto value = [&](std::string name) -> std::optional<std::string> {
    known.push_back(name);
    if (auto it = given.find(name); it != given.end()) return it->second;
    std::string var = "PREDICTIONS_";
    for (char c : name) var += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return env(var);
  };
  std::optional<bulwark::error> bad;
  auto text = [&](const char* name, std::string& out) {
    if (auto v = value(name)) out = *v;
  };
  auto number = [&](const char* name, auto& out, long long lo, long long hi) {
    auto v = value(name);
    if (!v) return;
    char* end = nullptr;
    const long long n = std::strtoll(v->c_str(), &end, 10);
    if (v->empty() || *end != '\0' || n < lo || n > hi) {
      bad = bulwark::error(bulwark::errc::invalid_argument, "--" + std::string(name) + ": not an integer in " +
                                                                std::to_string(lo) + ".." + std::to_string(hi));
      return;
    }
    out = static_cast<std::remove_reference_t<decltype(out)>>(n);
  };
  config c;
  if (auto v = value("backend")) {
    if (*v == "memory")
      c.backend = backend_kind::memory;
    else if (*v == "real")
      c.backend = backend_kind::real;
    else
      return bulwark::error(bulwark::errc::invalid_argument, "--backend: memory or real, not " + *v);
  }
  if (auto v = value("role")) {
    if (*v == "all")
      c.role = role_kind::all;
    else if (*v == "api")
      c.role = role_kind::api;
    else if (*v == "consumer")
      c.role = role_kind::consumer;
    else if (*v == "audit")
      c.role = role_kind::audit;
    else
      return bulwark::error(bulwark::errc::invalid_argument, "--role: all, api, consumer or audit, not " + *v);
  }
  text("address", c.address);
  number("port", c.port, 0, 65535);
  long long push_ms = c.push_interval.count();
  number("push-interval-ms", push_ms, 10, 60000);
  c.push_interval = std::chrono::milliseconds(push_ms);
  long long retention_s = c.logs_retention.count(), prune_s = c.logs_prune_interval.count();
  number("logs-retention-s", retention_s, 0, 100LL * 365 * 24 * 3600);
  number("logs-prune-interval-s", prune_s, 1, 24 * 3600);
  c.logs_retention = std::chrono::seconds(retention_s);
  c.logs_prune_interval = std::chrono::seconds(prune_s);
  number("max-attempts", c.max_attempts, 1, 1000000);
  text("kafka", c.kafka);
  text("topic", c.topic);
  text("group", c.group);
  number("partitions", c.partitions, 1, 1000);
  long long linger_ms = c.linger.count();
  number("linger-ms", linger_ms, 0, 900000); // librdkafka's range, as bulwark::kafka::parse_linger_ms
  c.linger = std::chrono::milliseconds(linger_ms);
  text("kafka-properties", c.kafka_properties);
  text("mysql-host", c.mysql_host);
  number("mysql-port", c.mysql_port, 1, 65535);
  text("mysql-user", c.mysql_user);
  text("mysql-password", c.mysql_password);
  text("mysql-database", c.mysql_database);
  text("logs-table", c.logs_table);
  text("redis-host", c.redis_host);
  number("redis-port", c.redis_port, 1, 65535);
  text("redis-prefix", c.redis_prefix);
  if (bad) return *bad;
  for (const auto& [name, v] : given) {
    (void)v;
    if (std::find(known.begin(), known.end(), name) == known.end())
      return bulwark::error(bulwark::errc::invalid_argument, "unknown option --" + name);
  }
  if (c.backend == backend_kind::memory && c.role != role_kind::all)
    return bulwark::error(bulwark::errc::invalid_argument,
                          "--role api, consumer or audit needs --backend real (memory mode is one process)");
  if (c.backend == backend_kind::real && c.kafka.empty())
    return bulwark::error(bulwark::errc::invalid_argument, "--backend real needs --kafka BROKERS");
  return c;
}

} // namespace predictions
