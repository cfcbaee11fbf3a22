#pragma once
// Real mode: the inputs on a Kafka topic (created at start: `partitions`, replication factor 3,
// min.insync.replicas 2, never auto-created), the logs in MySQL through the repository concept
// (mysql::repository on `logs_table` of `mysql_database`, created when missing), the live
// aggregates in Redis (redis_aggregates below). Every model lives on one thread (home); the
// HTTP threads publish directly and reach the stores with one hop.

#include <predictions/aggregates.hpp>
#include <predictions/config.hpp>
#include <predictions/runtime.hpp>

#include <bulwark/http/health.hpp>
#include <bulwark/kafka/admin.hpp>
#include <bulwark/kafka/event_bus.hpp>
#include <bulwark/mysql.hpp>
#include <bulwark/redis/client.hpp>
#include <bulwark/redis/script.hpp>

#include <atomic>
#include <iostream>
#include <map>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace predictions {

/// The live aggregates in Redis, under "<prefix>:": total (a counter), phases (a hash phase ->
/// count), matches (a hash "team1\tteam2" -> count), scores:<team1>\t<team2> (a hash score ->
/// count), seen:<id> (the ids counted, each expiring after `retention`). One Lua script per
/// batch of predictions marks each id and counts it, atomically on the server: an id found
/// (a redelivery, or the same id twice in one batch) changes nothing. One script reads
/// everything (one round trip). Single-server Redis (both scripts name keys they build; on a
/// Redis Cluster the prefix would need a {hash tag}).
class redis_aggregates {
public:
  redis_aggregates(bulwark::redis::client& c, std::string prefix,
                   std::chrono::milliseconds retention = std::chrono::hours(24))
      : client_(c), prefix_(std::move(prefix) + ":"), retention_ms_(std::to_string(retention.count())) {}

  /// Counts each of `batch` whose id was not counted before, in one round trip: [i] true when
  /// batch[i] was counted now.
  bulwark::task<std::vector<bool>> record_batch(std::span<const accepted> batch) {
    const std::string total = prefix_ + "total", phases = prefix_ + "phases", matches = prefix_ + "matches",
                      seen = prefix_ + "seen:", scores = prefix_ + "scores:";
    std::vector<std::string> owned; // the phases, matches and scores the views below point into
    owned.reserve(3 * batch.size());
    std::vector<std::string_view> args{retention_ms_, seen, scores};
    args.reserve(3 + 4 * batch.size());
    for (const auto& a : batch) {
      args.push_back(a.id);
      args.push_back(owned.emplace_back(std::to_string(a.value.phase)));
      args.push_back(owned.emplace_back(a.value.team1 + "\t" + a.value.team2));
      args.push_back(owned.emplace_back(a.value.score()));
    }
    const std::array<std::string_view, 3> keys{total, phases, matches};
    auto running = record_script().run(client_, keys, args);
    BOOST_OUTCOME_CO_TRY(r, co_await std::move(running));
    if (r.elements.size() != batch.size())
      co_return bulwark::error(bulwark::errc::protocol_error, "record script: not one answer per prediction");
    std::vector<bool> counted;
    counted.reserve(batch.size());
    for (const auto& e : r.elements) counted.push_back(e.as_integer().value_or(0) == 1);
    co_return counted;
  }

  /// One PING: whether Redis answers (the readiness probe).
  bulwark::task<void> ping() {
    auto pinging = client_.execute("PING");
    BOOST_OUTCOME_CO_TRY(co_await std::move(pinging));
    co_return bulwark::ok();
  }

  bulwark::task<nlohmann::json> snapshot() {
    const std::string total = prefix_ + "total", phases = prefix_ + "phases", matches = prefix_ + "matches",
                      scores = prefix_ + "scores:";
    const std::array<std::string_view, 3> keys{total, phases, matches};
    const std::array<std::string_view, 1> args{scores};
    auto running = read_script().run(client_, keys, args);
    BOOST_OUTCOME_CO_TRY(r, co_await std::move(running));
    const auto text = r.text();
    if (!text) co_return bulwark::error(bulwark::errc::protocol_error, "read script: not a string");
    const auto j = nlohmann::json::parse(*text, nullptr, false);
    if (j.is_discarded()) co_return bulwark::error(bulwark::errc::protocol_error, "read script: not JSON");
    std::map<int, std::int64_t> by_phase;
    if (j["phases"].is_object())
      for (const auto& [p, n] : j["phases"].items()) by_phase[std::atoi(p.c_str())] = n.get<std::int64_t>();
    std::vector<nlohmann::json> list;
    if (j["matches"].is_array())
      for (const auto& m : j["matches"]) {
        const auto name = m["match"].get<std::string>();
        const auto tab = name.find('\t');
        nlohmann::json s = nlohmann::json::object();
        if (m["scores"].is_object()) s = m["scores"];
        list.push_back({{"team1", name.substr(0, tab)},
                        {"team2", tab == std::string::npos ? "" : name.substr(tab + 1)},
                        {"total", m["total"]},
                        {"scores", s}});
      }
    co_return live_json(j["total"].get<std::int64_t>(), by_phase, std::move(list));
  }

private:
  // KEYS: total, phases, matches. ARGV: the retention (ms), the seen: and scores: prefixes,
  // then id, phase, match, score of each prediction. One INCRBY of the total for the batch.
  static const bulwark::redis::script& record_script() {
    static const bulwark::redis::script s(R"lua(
local counted, out = 0, {}
for i = 4, #ARGV, 4 do
  if redis.call('SET', ARGV[2] .. ARGV[i], '1', 'NX', 'PX', ARGV[1]) then
    redis.call('HINCRBY', KEYS[2], ARGV[i + 1], 1)
    redis.call('HINCRBY', KEYS[3], ARGV[i + 2], 1)
    redis.call('HINCRBY', ARGV[3] .. ARGV[i + 2], ARGV[i + 3], 1)
    counted = counted + 1
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if counted > 0 then redis.call('INCRBY', KEYS[1], counted) end
return out
)lua");
    return s;
  }
  static const bulwark::redis::script& read_script() {
    static const bulwark::redis::script s(R"lua(
local out = {total = tonumber(redis.call('GET', KEYS[1]) or '0'), phases = {}, matches = {}}
local phases = redis.call('HGETALL', KEYS[2])
for i = 1, #phases, 2 do out.phases[phases[i]] = tonumber(phases[i + 1]) end
local matches = redis.call('HGETALL', KEYS[3])
for i = 1, #matches, 2 do
  local scores = redis.call('HGETALL', ARGV[1] .. matches[i])
  local s = {}
  for j = 1, #scores, 2 do s[scores[j]] = tonumber(scores[j + 1]) end
  out.matches[#out.matches + 1] = {match = matches[i], total = tonumber(matches[i + 1]), scores = s}
end
return cjson.encode(out)
)lua");
    return s;
  }

  bulwark::redis::client& client_;
  std::string prefix_;
  std::string retention_ms_;
};

namespace detail {

inline bulwark::task<void> ensure_database(asio::any_io_executor ex, bulwark::mysql::config m) {
  const std::string name = m.database;
  m.database.clear();
  BOOST_OUTCOME_CO_TRY(c, co_await bulwark::mysql::connection::open(ex, m));
  co_return co_await c->run_ddl("CREATE DATABASE IF NOT EXISTS `" + name + "`");
}

inline bulwark::task<bulwark::mysql::repository> open_logs(asio::any_io_executor ex, bulwark::mysql::pool& pool,
                                                           bulwark::mysql::config m, std::string table) {
  auto making = ensure_database(ex, m);
  BOOST_OUTCOME_CO_TRY(co_await std::move(making));
  auto opening = bulwark::mysql::repository::open(pool, table);
  co_return co_await std::move(opening);
}

inline bulwark::task<void> ensure_topic(const bulwark::kafka::admin& a, std::string name, int partitions) {
  bulwark::kafka::topic_spec spec;
  spec.name = std::move(name);
  spec.partitions = partitions;
  spec.replication_factor = 3;
  spec.configs = {{"min.insync.replicas", "2"}};
  co_return co_await a.ensure_topic(std::move(spec));
}

} // namespace detail

/// --role audit: the accepted inputs are the topic's messages (a request cut by a kill may have
/// been accepted without its client knowing). Reads them all with a fresh group until none came
/// for 3 s, then compares: every accepted id logged once, the aggregates' total equal to the
/// count. Prints one JSON line; exit 0 when both hold, 1 when not, 2 when the audit failed.
inline int audit(const config& c, asio::any_io_executor ex, bulwark::kafka::event_bus& bus,
                 bulwark::mysql::repository& logs, redis_aggregates& aggregates) {
  auto ids = std::make_shared<std::set<std::string>>();
  auto messages = std::make_shared<std::atomic<std::int64_t>>(0);
  auto last = std::make_shared<std::atomic<std::int64_t>>(unix_ms());
  bulwark::subscribe_options o;
  o.topic = c.topic;
  o.group = c.group + "-audit-" + std::to_string(unix_ms());
  auto handler = [ids, messages, last](const bulwark::envelope& e) -> bulwark::task<void> {
    auto a = accepted_from_json(e.value);
    if (a) ids->insert(a.value().id); // on home: the handlers of one subscription never overlap on threads
    messages->fetch_add(1);
    last->store(unix_ms());
    co_return bulwark::ok();
  };
  auto subscribing = [](bulwark::kafka::event_bus& b, bulwark::subscribe_options so,
                        bulwark::message_handler h) -> bulwark::task<bulwark::kafka::event_bus::subscription> {
    co_return co_await b.subscribe(std::move(so), std::move(h));
  };
  auto sub = bulwark::app::block_on(ex, subscribing(bus, o, handler));
  if (!sub) {
    std::cerr << "predictions: audit: subscribe: " << sub.error().message() << "\n";
    return 2;
  }
  last->store(unix_ms());
  const auto give_up = unix_ms() + 300'000;
  while (unix_ms() - last->load() < 3000 && unix_ms() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  bulwark::app::block_on(ex, sub.value().stop());
  auto logged = bulwark::app::block_on(ex, all_log_ids(logs));
  auto live = bulwark::app::block_on(ex, aggregates.snapshot());
  if (!logged || !live) {
    std::cerr << "predictions: audit: " << (!logged ? logged.error().message() : live.error().message()) << "\n";
    return 2;
  }
  const auto accepted = bulwark::app::block_on(
      ex, [](std::shared_ptr<std::set<std::string>> s) -> asio::awaitable<std::size_t> { co_return s->size(); }(ids));
  std::set<std::string> distinct(logged.value().begin(), logged.value().end());
  std::size_t missing = 0;
  for (const auto& id : *ids) missing += distinct.count(id) ? 0 : 1;
  const auto total = live.value()["total"].get<std::int64_t>();
  nlohmann::json report = nlohmann::json::object();
  report["messages"] = messages->load();
  report["accepted"] = accepted;
  report["logs"] = logged.value().size();
  report["logsDistinct"] = distinct.size();
  report["missingLogs"] = missing;
  report["aggregatesTotal"] = total;
  std::cout << report.dump() << std::endl;
  const bool exact = missing == 0 && logged.value().size() == accepted && distinct.size() == accepted &&
                     total == static_cast<std::int64_t>(accepted);
  return exact ? 0 : 1;
}

/// Real mode: opens Kafka (the topic), MySQL (the logs table) and Redis, then serve().
inline int run_real(const config& c, bulwark::app::stop_signals& signals) {
  auto metrics = std::make_shared<bulwark::metrics::registry>();
  home_thread home;
  const auto ex = home.executor();

  bulwark::kafka::config k;
  k.bootstrap_servers = c.kafka;
  k.metrics = metrics;
  k.session_timeout = std::chrono::seconds(6);
  k.heartbeat_interval = std::chrono::milliseconds(500);
  k.drain_timeout = std::chrono::seconds(5);
  k.admin_timeout = std::chrono::seconds(10);
  k.stop_timeout = std::chrono::seconds(5);
  k.linger = c.linger;
  // Not idempotent: each prediction's key is its own id, so no per-key order can break, and
  // the consumers count and log each id once, so a duplicate written by a retry changes
  // nothing. What idempotence costs here is librdkafka's broker threads spinning whenever the
  // brokers acknowledge slower than the linger (kafka::config::idempotent): 25-77 us of the
  // API's CPU per input at 3,000/s on the loaded test machine, against 3-9 (in
  // benchmarks/predictions.sh there the API's 26-39 us per input against 54-127 us; the rate
  // within the noise of the shared brokers). `--kafka-properties enable.idempotence=true`
  // turns it back on.
  k.idempotent = false;
  auto properties = bulwark::kafka::parse_properties(c.kafka_properties);
  if (!properties) {
    std::cerr << "predictions: --kafka-properties: " << properties.error().detail() << "\n";
    return 2;
  }
  k.properties = std::move(properties).value();
  auto made = bulwark::kafka::event_bus::create(ex, k);
  if (!made) {
    std::cerr << "predictions: kafka: " << made.error().message() << "\n";
    return 1;
  }
  auto& bus = made.value();
  if (auto t = bulwark::app::block_on(ex, detail::ensure_topic(bus.admin(), c.topic, c.partitions)); !t) {
    std::cerr << "predictions: topic " << c.topic << ": " << t.error().message() << "\n";
    return 1;
  }

  bulwark::mysql::config m;
  m.host = c.mysql_host;
  m.port = c.mysql_port;
  m.user = c.mysql_user;
  m.password = c.mysql_password;
  m.database = c.mysql_database;
  m.pool_size = 16;
  bulwark::mysql::pool pool(ex, m);
  auto opened = bulwark::app::block_on(ex, detail::open_logs(ex, pool, m, c.logs_table));
  if (!opened) {
    std::cerr << "predictions: mysql: " << opened.error().message() << "\n";
    return 1;
  }
  auto& logs = opened.value();

  bulwark::redis::connection_options r;
  r.host = c.redis_host;
  r.port = c.redis_port;
  bulwark::redis::client redis(ex, r);
  redis_aggregates aggregates(redis, c.redis_prefix);
  if (auto probe = bulwark::app::block_on(ex, aggregates.snapshot()); !probe) {
    std::cerr << "predictions: redis: " << probe.error().message() << "\n";
    return 1;
  }

  if (c.role == role_kind::audit) {
    const int code = audit(c, ex, bus, logs, aggregates);
    bulwark::app::block_on(ex, bus.stop());
    bulwark::app::block_on(ex, redis.stop());
    bulwark::app::block_on(ex, pool.stop());
    return code;
  }
  // /ready's probes, each run where its client lives: the topic's metadata, a read of the logs
  // table, a PING.
  std::vector<bulwark::http::health_probe> probes{
      {"kafka",
       [&bus, topic = c.topic]() -> bulwark::task<void> {
         auto describing = bus.admin().describe_topic(topic);
         BOOST_OUTCOME_CO_TRY(co_await std::move(describing));
         co_return bulwark::ok();
       }},
      bulwark::http::probe_on(ex, bulwark::http::repository_probe("mysql", logs, "predictions-ready-probe")),
      bulwark::http::probe_on(ex, {"redis", [&aggregates] { return aggregates.ping(); }})};
  models<bulwark::kafka::event_bus, bulwark::mysql::repository, redis_aggregates> all{
      bus, logs, aggregates,
      "kafka topic " + c.topic + ", mysql " + c.mysql_database + "." + c.logs_table + ", redis prefix " +
          c.redis_prefix,
      std::move(probes)};
  const int code = serve(c, signals, ex, all, metrics);
  bulwark::app::block_on(ex, redis.stop());
  bulwark::app::block_on(ex, pool.stop());
  return code;
}

} // namespace predictions
