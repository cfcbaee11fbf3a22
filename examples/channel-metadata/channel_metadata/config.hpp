#pragma once
// Configuration of both services (CMS, the channel-metadata-store; CRS, the cache-retry-service)
// from flags, environment variables and an optional JSON file. Precedence: flags > environment >
// file > defaults. One table (options()) names every setting once: its flag `--name`, its
// environment variable (CMS_NAME / CRS_NAME, '-' as '_'), its key in the file ("name"), its
// help line and the field it sets.
//
//   channel-metadata-store --port 8081 --backend mysql+redis --mysql-host db1
//   CMS_PORT=8081 CMS_CONFIG=/etc/cms.json channel-metadata-store
//   /etc/cms.json: {"port": 8081, "backend": "mysql+redis", "soft-ttl": "30s"}

#include <bulwark/error.hpp>
#include <bulwark/result.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <ostream>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

namespace channel_metadata {

enum class service { cms, crs };

/// Where documents live: in process memory (the default, no servers), or MySQL with Redis or
/// Hazelcast as the cache (Kafka carries the retry topic in both).
enum class backend_kind { memory, mysql_redis, mysql_hazelcast };

/// Every setting of both services; the service's defaults come from defaults(service).
struct config {
  service which = service::cms;
  bool help = false; ///< --help was given: print help_text() and exit 0

  std::string listen_address = "127.0.0.1";
  std::uint16_t port = 8080;
  std::size_t threads = 2;
  std::string user;     ///< who may call this service (HTTP Basic)
  std::string password; ///< that user's password

  backend_kind backend = backend_kind::memory;
  // The channel-metadata database (CMS stores documents there; CRS replays pending writes).
  std::string mysql_host = "127.0.0.1";
  std::uint16_t mysql_port = 3306;
  std::string mysql_user = "root";
  std::string mysql_password;
  std::string mysql_database = "channel_metadata_db";
  // CRS's own database: the downtime log.
  std::string outage_mysql_host = "127.0.0.1";
  std::uint16_t outage_mysql_port = 3306;
  std::string outage_mysql_user = "root";
  std::string outage_mysql_password;
  std::string outage_mysql_database = "cache_retry_db";
  std::string redis_host = "127.0.0.1";
  std::uint16_t redis_port = 6379;
  std::vector<std::string> hazelcast_members{"127.0.0.1:5701"};
  std::string hazelcast_cluster = "dev";
  std::vector<std::string> kafka_brokers{"127.0.0.1:9092"};
  std::string retry_topic = "retry-db-write-from-cache";
  std::string consumer_group = "channel-metadata-group";

  std::chrono::milliseconds request_timeout{5000};  ///< a whole request, end to end
  std::chrono::milliseconds database_timeout{1000}; ///< one database call
  std::chrono::milliseconds soft_ttl{30'000};       ///< cached values older than this are refreshed
  std::chrono::milliseconds hard_limit{86'400'000}; ///< last known good older than this is not served
  std::string snapshot_path;                        ///< last-known-good snapshot file; empty: none
  std::size_t max_body_bytes = 64 * 1024;

  // The other service: CMS proxies CRS's downtime log for the admin page; CRS calls CMS's
  // force-update-all.
  std::string peer_url;
  std::string peer_user;
  std::string peer_password;
  std::chrono::milliseconds reconcile_retry_delay{5000}; ///< CRS: before its one retry of force-update-all
  /// CMS: how often it reconciles its own pending writes while it has any (behind nginx, CRS's
  /// force-update-all reaches one replica; each replica's pending writes are its own).
  std::chrono::milliseconds reconcile_period{5000};

  /// CMS, memory backend: the port of the cache-retry-service run in the same process.
  std::uint16_t crs_port = 8090;
  /// CMS, memory backend: POST /private/faults/database can make the database fail (tests, demos).
  bool fault_control = false;
  /// CRS: outage windows kept in the downtime log (older ones are deleted at each recovery).
  std::size_t downtime_log_retention = 1000;
  /// Real backends: the documents' table, the downtime log's table, the cache's name (Redis key
  /// prefix "<name>:", Hazelcast map), this replica's order-stamp node id (0: from the pid).
  std::string mysql_table = "channel_metadata";
  std::string outage_mysql_table = "downtime_log";
  std::string cache_name = "channel-metadata";
  std::size_t node_id = 0;
  /// CMS, real backends: a per-process near cache in front of Redis or Hazelcast, kept coherent
  /// through a Kafka invalidation topic; false: every read asks the shared cache.
  bool near_cache = true;
};

/// The settings a service starts from before the file, environment and flags.
inline config defaults(service s) {
  config c;
  c.which = s;
  if (s == service::cms) {
    c.port = 8080;
    c.user = "cms";
    c.password = "cmspass";
    c.peer_url = "http://127.0.0.1:8090";
    c.peer_user = "crs";
    c.peer_password = "crspass";
  } else {
    c.port = 8090;
    c.user = "crs";
    c.password = "crspass";
    c.peer_url = "http://127.0.0.1:8080";
    c.peer_user = "cms";
    c.peer_password = "cmspass";
  }
  return c;
}

/// "memory", "mysql+redis" or "mysql+hazelcast".
constexpr std::string_view to_string(backend_kind b) noexcept {
  switch (b) {
  case backend_kind::memory: return "memory";
  case backend_kind::mysql_redis: return "mysql+redis";
  case backend_kind::mysql_hazelcast: return "mysql+hazelcast";
  }
  return "memory";
}

namespace detail {

struct non_empty_text {
  std::string config::*field;
};
struct any_text {
  std::string config::*field;
};
/// A port this service listens on (0: the kernel picks a free one).
struct listen_port {
  std::uint16_t config::*field;
};
using config_field = std::variant<non_empty_text, any_text, listen_port, std::uint16_t config::*, std::size_t config::*,
                                  std::chrono::milliseconds config::*, backend_kind config::*,
                                  std::vector<std::string> config::*, bool config::*>;

inline bulwark::error bad(std::string message) { return {bulwark::errc::invalid_argument, std::move(message)}; }

inline bulwark::result<std::uint64_t> parse_unsigned(std::string_view v, std::string_view what) {
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc{} || end != v.data() + v.size())
    return bad("'" + std::string(v) + "' is not " + std::string(what));
  return n;
}

inline bulwark::result<std::uint16_t> parse_port(std::string_view v) {
  auto n = parse_unsigned(v, "a port (1-65535)");
  if (!n) return n.error();
  if (n.value() < 1 || n.value() > 65535) return bad("'" + std::string(v) + "' is not a port (1-65535)");
  return static_cast<std::uint16_t>(n.value());
}

/// A port to listen on: 1-65535, or 0 for a free port the kernel picks (the service logs the
/// one it bound).
inline bulwark::result<std::uint16_t> parse_listen_port(std::string_view v) {
  auto n = parse_unsigned(v, "a port (0-65535; 0 picks a free one)");
  if (!n) return n.error();
  if (n.value() > 65535) return bad("'" + std::string(v) + "' is not a port (0-65535; 0 picks a free one)");
  return static_cast<std::uint16_t>(n.value());
}

/// "250ms", "5s", "2m", "1h", or a bare number of milliseconds; more than zero.
inline bulwark::result<std::chrono::milliseconds> parse_duration(std::string_view v) {
  const auto digits = v.find_first_not_of("0123456789");
  const std::string_view number = v.substr(0, digits), unit = digits == v.npos ? "" : v.substr(digits);
  const std::string what = "a duration (a positive number of ms, or with a unit: 250ms, 5s, 2m, 1h)";
  auto n = parse_unsigned(number, what);
  if (!n || n.value() == 0) return bad("'" + std::string(v) + "' is not " + what);
  std::uint64_t scale = 0;
  if (unit.empty() || unit == "ms")
    scale = 1;
  else if (unit == "s")
    scale = 1000;
  else if (unit == "m")
    scale = 60'000;
  else if (unit == "h")
    scale = 3'600'000;
  // Ten years bounds every setting here and keeps the product far from overflow.
  if (scale == 0 || n.value() > 315'360'000'000 / scale) return bad("'" + std::string(v) + "' is not " + what);
  return std::chrono::milliseconds(static_cast<std::int64_t>(n.value() * scale));
}

inline bulwark::result<backend_kind> parse_backend(std::string_view v) {
  for (auto b : {backend_kind::memory, backend_kind::mysql_redis, backend_kind::mysql_hazelcast})
    if (v == to_string(b)) return b;
  return bad("unknown backend '" + std::string(v) + "' (memory, mysql+redis or mysql+hazelcast)");
}

/// A comma-separated list of host:port, at least one.
inline bulwark::result<std::vector<std::string>> parse_addresses(std::string_view v) {
  std::vector<std::string> out;
  while (true) {
    const auto comma = v.find(',');
    const auto item = v.substr(0, comma);
    const auto colon = item.rfind(':');
    if (colon == item.npos || colon == 0)
      return bad("'" + std::string(item) + "' is not host:port (a comma-separated list of them is expected)");
    auto port = parse_port(item.substr(colon + 1));
    if (!port) return port.error();
    out.emplace_back(item);
    if (comma == v.npos) break;
    v.remove_prefix(comma + 1);
  }
  return out;
}

template <class... F> struct overloaded : F... { using F::operator()...; };
template <class... F> overloaded(F...) -> overloaded<F...>;

inline bulwark::result<void> assign(config& c, const config_field& field, std::string_view v) {
  return std::visit(overloaded{[&](non_empty_text f) -> bulwark::result<void> {
                                 if (v.empty()) return bad("must not be empty");
                                 c.*f.field = std::string(v);
                                 return bulwark::ok();
                               },
                               [&](any_text f) -> bulwark::result<void> {
                                 c.*f.field = std::string(v);
                                 return bulwark::ok();
                               },
                               [&](listen_port f) -> bulwark::result<void> {
                                 BOOST_OUTCOME_TRY(p, parse_listen_port(v));
                                 c.*f.field = p;
                                 return bulwark::ok();
                               },
                               [&](std::uint16_t config::*f) -> bulwark::result<void> {
                                 BOOST_OUTCOME_TRY(p, parse_port(v));
                                 c.*f = p;
                                 return bulwark::ok();
                               },
                               [&](std::size_t config::*f) -> bulwark::result<void> {
                                 BOOST_OUTCOME_TRY(n, parse_unsigned(v, "a positive number"));
                                 if (n == 0 || n > 1'000'000'000)
                                   return bad("'" + std::string(v) + "' is not a positive number");
                                 c.*f = static_cast<std::size_t>(n);
                                 return bulwark::ok();
                               },
                               [&](std::chrono::milliseconds config::*f) -> bulwark::result<void> {
                                 BOOST_OUTCOME_TRY(d, parse_duration(v));
                                 c.*f = d;
                                 return bulwark::ok();
                               },
                               [&](backend_kind config::*f) -> bulwark::result<void> {
                                 BOOST_OUTCOME_TRY(b, parse_backend(v));
                                 c.*f = b;
                                 return bulwark::ok();
                               },
                               [&](std::vector<std::string> config::*f) -> bulwark::result<void> {
                                 BOOST_OUTCOME_TRY(list, parse_addresses(v));
                                 c.*f = std::move(list);
                                 return bulwark::ok();
                               },
                               [&](bool config::*f) -> bulwark::result<void> {
                                 if (v == "true" || v == "1" || v == "yes" || v == "on")
                                   c.*f = true;
                                 else if (v == "false" || v == "0" || v == "no" || v == "off")
                                   c.*f = false;
                                 else
                                   return bad("'" + std::string(v) + "' is not a boolean (true or false)");
                                 return bulwark::ok();
                               }},
                    field);
}

inline std::string show(const config& c, const config_field& field) {
  return std::visit(
      overloaded{[&](non_empty_text f) { return c.*f.field; }, [&](any_text f) { return c.*f.field; },
                 [&](listen_port f) { return std::to_string(c.*f.field); },
                 [&](std::uint16_t config::*f) { return std::to_string(c.*f); },
                 [&](std::size_t config::*f) { return std::to_string(c.*f); },
                 [&](std::chrono::milliseconds config::*f) { return std::to_string((c.*f).count()) + "ms"; },
                 [&](backend_kind config::*f) { return std::string(to_string(c.*f)); },
                 [&](std::vector<std::string> config::*f) {
                   std::string s;
                   for (const auto& a : c.*f) s += (s.empty() ? "" : ",") + a;
                   return s;
                 },
                 [&](bool config::*f) { return std::string(c.*f ? "true" : "false"); }},
      field);
}

} // namespace detail

/// One setting: flag name (without "--"), help line, which services take it, the field it sets.
struct config_option {
  std::string_view name;
  std::string_view help;
  bool cms = true;
  bool crs = true;
  detail::config_field field;
  bool secret = false; ///< its default is not printed by --help

  bool applies_to(service s) const noexcept { return s == service::cms ? cms : crs; }
};

/// Every setting of both services, once.
inline std::span<const config_option> options() {
  using detail::any_text;
  using detail::non_empty_text;
  using c = config;
  static const config_option table[] = {
      {"address", "address to listen on", true, true, non_empty_text{&c::listen_address}},
      {"port", "port to listen on (0: a free one, logged as 'listening on ...')", true, true,
       detail::listen_port{&c::port}},
      {"threads", "I/O threads", true, true, &c::threads},
      {"user", "HTTP Basic user allowed to call this service", true, true, non_empty_text{&c::user}},
      {"password", "that user's password (prefer the environment: flags show in ps)", true, true,
       non_empty_text{&c::password}, true},
      {"backend", "memory | mysql+redis | mysql+hazelcast", true, true, &c::backend},
      {"mysql-host", "channel-metadata database host", true, true, non_empty_text{&c::mysql_host}},
      {"mysql-port", "channel-metadata database port", true, true, &c::mysql_port},
      {"mysql-user", "channel-metadata database user", true, true, non_empty_text{&c::mysql_user}},
      {"mysql-password", "channel-metadata database password", true, true, any_text{&c::mysql_password}, true},
      {"mysql-database", "channel-metadata database name", true, true, non_empty_text{&c::mysql_database}},
      {"outage-mysql-host", "downtime-log database host", false, true, non_empty_text{&c::outage_mysql_host}},
      {"outage-mysql-port", "downtime-log database port", false, true, &c::outage_mysql_port},
      {"outage-mysql-user", "downtime-log database user", false, true, non_empty_text{&c::outage_mysql_user}},
      {"outage-mysql-password", "downtime-log database password", false, true, any_text{&c::outage_mysql_password},
       true},
      {"outage-mysql-database", "downtime-log database name", false, true, non_empty_text{&c::outage_mysql_database}},
      {"redis-host", "Redis host (backend mysql+redis)", true, false, non_empty_text{&c::redis_host}},
      {"redis-port", "Redis port", true, false, &c::redis_port},
      {"hazelcast-members", "Hazelcast members, host:port,... (backend mysql+hazelcast)", true, false,
       &c::hazelcast_members},
      {"hazelcast-cluster", "Hazelcast cluster name", true, false, non_empty_text{&c::hazelcast_cluster}},
      {"kafka-brokers", "Kafka bootstrap brokers, host:port,...", true, true, &c::kafka_brokers},
      {"retry-topic", "topic of refused writes to replay", true, true, non_empty_text{&c::retry_topic}},
      {"consumer-group", "CRS's consumer group on the retry topic", false, true, non_empty_text{&c::consumer_group}},
      {"request-timeout", "deadline of a whole request (250ms, 5s, 2m, 1h; bare number: ms)", true, true,
       &c::request_timeout},
      {"database-timeout", "deadline of one database call", true, true, &c::database_timeout},
      {"soft-ttl", "cached values older than this are refreshed from the database", true, false, &c::soft_ttl},
      {"hard-limit", "while the database is down, last known good older than this is not served", true, false,
       &c::hard_limit},
      {"snapshot-path", "last-known-good snapshot file (empty: none)", true, false, any_text{&c::snapshot_path}},
      {"max-body-bytes", "largest accepted request body", true, false, &c::max_body_bytes},
      {"peer-url", "the other service's base URL (CMS: CRS's; CRS: CMS's)", true, true, non_empty_text{&c::peer_url}},
      {"peer-user", "user for calling the other service", true, true, non_empty_text{&c::peer_user}},
      {"peer-password", "password for calling the other service", true, true, non_empty_text{&c::peer_password}, true},
      {"reconcile-retry-delay", "delay before CRS retries a failed force-update-all once", false, true,
       &c::reconcile_retry_delay},
      {"reconcile-period", "how often CMS reconciles its own pending writes while it has any", true, false,
       &c::reconcile_period},
      {"crs-port", "backend memory: port of the cache-retry-service run in the same process (0: a free one)", true,
       false, detail::listen_port{&c::crs_port}},
      {"fault-control", "backend memory: serve POST /private/faults/database (a bare flag means true)", true, false,
       &c::fault_control},
      {"downtime-log-retention", "outage windows kept in the downtime log", false, true, &c::downtime_log_retention},
      {"mysql-table", "table of the documents in the channel-metadata database", true, true,
       non_empty_text{&c::mysql_table}},
      {"outage-mysql-table", "table of the downtime log", false, true, non_empty_text{&c::outage_mysql_table}},
      {"cache-name", "Redis key prefix (<name>:) or Hazelcast map of the cache", true, false,
       non_empty_text{&c::cache_name}},
      {"node-id", "order-stamp node id of this replica, 1-4095, unique per replica (default: from the pid)", true,
       false, &c::node_id},
      {"near-cache", "real backends: a per-process near cache in front of the shared cache (false: none)", true, false,
       &c::near_cache},
  };
  return table;
}

/// "CMS_" or "CRS_" followed by the option's name upper-cased with '-' as '_'.
inline std::string environment_name(service s, std::string_view option) {
  std::string out = s == service::cms ? "CMS_" : "CRS_";
  for (char ch : option) out += ch == '-' ? '_' : static_cast<char>(ch >= 'a' && ch <= 'z' ? ch - 'a' + 'A' : ch);
  return out;
}

/// Reads an environment variable; injected so tests need not touch the process's environment.
using environment = std::function<std::optional<std::string>(const std::string& name)>;

/// The process's environment (getenv).
inline environment process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    if (const char* v = std::getenv(name.c_str())) return std::string(v);
    return std::nullopt;
  };
}

/// The program name of a service's executable.
constexpr std::string_view program_name(service s) noexcept {
  return s == service::cms ? "channel-metadata-store" : "cache-retry-service";
}

/// The --help text: usage, every option of the service with its environment variable and
/// default, and the precedence.
inline std::string help_text(service s) {
  const config d = defaults(s);
  std::ostringstream out;
  out << "Usage: " << program_name(s) << " [--option value | --option=value]...\n\n"
      << "Settings come from flags, then environment variables, then a JSON file (--config or "
      << environment_name(s, "config") << "),\nthen defaults; the file's keys are the option names.\n\n"
      << "  --help                 print this help and exit\n"
      << "  --config PATH          JSON file of settings (" << environment_name(s, "config") << ")\n";
  for (const auto& o : options()) {
    if (!o.applies_to(s)) continue;
    std::string flag = "  --" + std::string(o.name);
    flag.resize(std::max<std::size_t>(flag.size() + 1, 25), ' ');
    out << flag << o.help << "\n" << std::string(25, ' ') << "(" << environment_name(s, o.name);
    if (!o.secret) out << "; default " << (detail::show(d, o.field).empty() ? "none" : detail::show(d, o.field));
    out << ")\n";
  }
  return out.str();
}

namespace detail {

inline const config_option* find_option(service s, std::string_view name) {
  for (const auto& o : options())
    if (o.name == name && o.applies_to(s)) return &o;
  return nullptr;
}

inline bulwark::error at(std::string_view where, const bulwark::error& e) {
  return bad(std::string(where) + ": " + std::string(e.detail()));
}

/// Applies the JSON file at `path`: an object whose keys are option names and whose values are
/// strings, numbers (ports, sizes, milliseconds) or arrays of strings (address lists).
inline bulwark::result<void> apply_file(config& c, const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return bad("cannot read config file '" + path + "': not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return bad("cannot read config file '" + path + "'");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  auto j = nlohmann::json::parse(bytes.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("config file '" + path + "' is not a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string where = path + ": \"" + it.key() + "\"";
    const auto* o = find_option(c.which, it.key());
    if (!o) return bad(where + ": unknown setting for " + std::string(program_name(c.which)));
    std::string value;
    const auto& v = it.value();
    if (v.is_string()) {
      value = v.get<std::string>();
    } else if (v.is_number_unsigned()) {
      value = std::to_string(v.get<std::uint64_t>());
    } else if (v.is_boolean() && std::holds_alternative<bool config::*>(o->field)) {
      value = v.get<bool>() ? "true" : "false";
    } else if (v.is_array()) {
      for (const auto& item : v) {
        if (!item.is_string()) return bad(where + ": expected a string, a non-negative integer or an array of strings");
        value += (value.empty() ? "" : ",") + item.get<std::string>();
      }
    } else {
      return bad(where + ": expected a string, a non-negative integer or an array of strings");
    }
    auto set = assign(c, o->field, value);
    if (!set) return at(where, set.error());
  }
  return bulwark::ok();
}

} // namespace detail

/// Builds a service's configuration from `args` (argv without the program name), `env` and the
/// optional JSON file they name. Errors (errc::invalid_argument, the message naming the flag,
/// variable or file and the value): unknown flag or file key, a flag without its value, a bad
/// port, duration, size, backend or address list, an unreadable or non-JSON file, soft TTL
/// above the hard limit, a peer URL that is not http://. `--help` returns at once with `help` set.
inline bulwark::result<config> load_config(service s, std::span<const std::string_view> args, const environment& env) {
  config c = defaults(s);
  // Flags are parsed first (and applied last) so that --config can name the file.
  std::vector<std::pair<const config_option*, std::string>> flags;
  std::optional<std::string> file;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      c.help = true;
      return c;
    }
    if (!arg.starts_with("--")) return detail::bad("unexpected argument '" + std::string(arg) + "'");
    arg.remove_prefix(2);
    std::string_view name = arg.substr(0, arg.find('='));
    std::string value;
    const auto* flag = detail::find_option(s, name);
    const bool boolean = flag && std::holds_alternative<bool config::*>(flag->field);
    if (name.size() < arg.size()) {
      value = std::string(arg.substr(name.size() + 1));
    } else if (boolean) {
      value = "true"; // a bare boolean flag; --flag=false turns it off
    } else if (i + 1 < args.size()) {
      value = std::string(args[++i]);
    } else {
      return detail::bad("--" + std::string(name) + " needs a value");
    }
    if (name == "config") {
      file = value;
      continue;
    }
    const auto* o = detail::find_option(s, name);
    if (!o)
      return detail::bad("unknown option --" + std::string(name) + " for " + std::string(program_name(s)) +
                         " (see --help)");
    flags.emplace_back(o, std::move(value));
  }
  if (!file) file = env(environment_name(s, "config"));
  if (file) {
    BOOST_OUTCOME_TRY(detail::apply_file(c, *file));
  }
  for (const auto& o : options()) {
    if (!o.applies_to(s)) continue;
    const auto name = environment_name(s, o.name);
    if (auto v = env(name)) {
      auto set = detail::assign(c, o.field, *v);
      if (!set) return detail::at(name, set.error());
    }
  }
  for (const auto& [o, value] : flags) {
    auto set = detail::assign(c, o->field, value);
    if (!set) return detail::at("--" + std::string(o->name), set.error());
  }
  // The client speaks plain HTTP/1.1; catching a typo here beats a failed call at run time.
  if (!c.peer_url.starts_with("http://") || c.peer_url.size() == 7)
    return detail::bad("peer-url '" + c.peer_url + "' is not an http:// URL");
  if (c.node_id > 4095) return detail::bad("node-id (" + std::to_string(c.node_id) + ") exceeds 4095");
  if (c.fault_control && c.backend != backend_kind::memory)
    return detail::bad("fault-control needs the memory backend (a real database is stopped for real)");
  if (c.soft_ttl > c.hard_limit)
    return detail::bad("soft-ttl (" + std::to_string(c.soft_ttl.count()) + "ms) exceeds hard-limit (" +
                       std::to_string(c.hard_limit.count()) + "ms)");
  return c;
}

/// What main() does with its arguments: a configuration to run with, or an exit code after
/// printing the help (0, to `out`) or the error and a hint (2, to `err`).
struct startup {
  std::optional<config> settings;
  int exit_code = 0;
};

/// load_config plus the printing and exit codes main() needs.
inline startup resolve_startup(service s, std::span<const std::string_view> args, const environment& env,
                               std::ostream& out, std::ostream& err) {
  auto c = load_config(s, args, env);
  if (!c) {
    err << program_name(s) << ": bad configuration: " << c.error().detail() << "\n"
        << "Run '" << program_name(s) << " --help' for the settings.\n";
    return {std::nullopt, 2};
  }
  if (c.value().help) {
    out << help_text(s);
    return {std::nullopt, 0};
  }
  return {std::move(c).value(), 0};
}

} // namespace channel_metadata
