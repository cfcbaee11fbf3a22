#pragma once
// Real mode: CMS on MySQL (the documents) + Redis or Hazelcast (the shared cache, with a near
// cache in front invalidated through Kafka unless --near-cache=false) + Kafka (the retry topic); CRS on the same MySQL
// database (where it replays), its own MySQL database (cache_retry_db: the downtime log) and
// Kafka. Every model is made on one background thread, since the MySQL and Redis clients
// belong to one executor; the HTTP server's threads reach them with one hop (run_on).
//
// At start each service creates what it uses when missing: the databases (when the MySQL user
// may), the tables, and the Kafka topics with explicit partitions, replication factor 3 and
// min.insync.replicas 2 (never auto-created).

#include <channel_metadata/admin.hpp>
#include <channel_metadata/cms_routes.hpp>
#include <channel_metadata/config.hpp>
#include <channel_metadata/crs_routes.hpp>
#include <channel_metadata/deferred.hpp>
#include <channel_metadata/peer.hpp>
#include <channel_metadata/reconciler.hpp>
#include <channel_metadata/runtime.hpp>
#include <channel_metadata/store.hpp>
#include <channel_metadata/wiring.hpp>

#include <bulwark/app.hpp>
#include <bulwark/flows/near_cache.hpp>
#include <bulwark/flows/retry_replayer.hpp>
#include <bulwark/flows/write_through.hpp>
#include <bulwark/hazelcast/cache.hpp>
#include <bulwark/hazelcast/members.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/http/server.hpp>
#include <bulwark/kafka/admin.hpp>
#include <bulwark/kafka/event_bus.hpp>
#include <bulwark/mysql.hpp>
#include <bulwark/redis/cache.hpp>
#include <bulwark/redis/client.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>

#include <algorithm>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unistd.h>
#include <vector>

namespace channel_metadata {

/// Partitions of the topics the services create (the retry topic, the near cache's).
inline constexpr int topic_partitions = 6;

/// The MariaDB Connector/C configuration of the channel-metadata database (outage = false) or
/// of CRS's own (true).
inline bulwark::mysql::config mysql_config(const config& c, bool outage) {
  bulwark::mysql::config m;
  m.host = outage ? c.outage_mysql_host : c.mysql_host;
  m.port = outage ? c.outage_mysql_port : c.mysql_port;
  m.user = outage ? c.outage_mysql_user : c.mysql_user;
  m.password = outage ? c.outage_mysql_password : c.mysql_password;
  m.database = outage ? c.outage_mysql_database : c.mysql_database;
  m.connect_timeout = c.database_timeout;
  m.read_timeout = c.database_timeout;
  m.write_timeout = c.database_timeout;
  m.acquire_timeout = c.database_timeout;
  return m;
}

/// Creates `m.database` when missing, if the user may (an error is only logged: the pool's
/// first call then says what is wrong).
inline bulwark::task<void> ensure_database(asio::any_io_executor ex, bulwark::mysql::config m) {
  const std::string name = m.database;
  m.database.clear();
  BOOST_OUTCOME_CO_TRY(c, co_await bulwark::mysql::connection::open(ex, m));
  co_return co_await c->run_ddl("CREATE DATABASE IF NOT EXISTS `" + name + "`");
}

/// One attempt at a repository on `table` of `m.database`: the database created when missing (if
/// the user may), then the table. Errors: the server's (down, refused, ...).
inline bulwark::task<bulwark::mysql::repository> open_mysql_repository(asio::any_io_executor ex,
                                                                       bulwark::mysql::pool& pool,
                                                                       bulwark::mysql::config m, std::string table) {
  auto making = ensure_database(ex, m);
  auto made = co_await std::move(making);
  (void)made; // a user who may not create databases: open() says what is wrong
  auto opening = bulwark::mysql::repository::open(pool, table);
  co_return co_await std::move(opening);
}

/// The repository on `table` of `m.database` in `pool`, opened in the background until the
/// server answers (every attempt and its error logged; DOWN in the healthcheck meanwhile).
using deferred_mysql = deferred_repository<bulwark::mysql::repository>;
inline background_attempts::options attempt_options(std::string name, std::function<void(const std::string&)> log) {
  background_attempts::options o;
  o.name = std::move(name);
  o.first_delay = std::chrono::milliseconds(250);
  o.max_delay = std::chrono::seconds(5);
  o.log = std::move(log);
  return o;
}

/// Kafka's configuration from ours.
inline bulwark::kafka::config kafka_config(const config& c, std::shared_ptr<bulwark::metrics::registry> m) {
  bulwark::kafka::config k;
  for (const auto& b : c.kafka_brokers) k.bootstrap_servers += (k.bootstrap_servers.empty() ? "" : ",") + b;
  k.metrics = std::move(m);
  k.session_timeout = std::chrono::seconds(6);
  k.heartbeat_interval = std::chrono::milliseconds(500);
  k.drain_timeout = std::chrono::seconds(5);
  // While Kafka is unreachable every admin call (the topics made at start, the healthcheck's
  // describe) lasts its whole admin_timeout, and a stop waits for the background attempt in flight
  // (its blocking metadata request ignores cancellation) and then for the producer's queue: with
  // the defaults (15 s, 10 s) a service took ~25 s to start listening and ~30 s to stop. 2 s each
  // keep both to a few seconds; an attempt cut short is tried again (background_attempts).
  k.admin_timeout = std::chrono::seconds(2);
  k.stop_timeout = std::chrono::seconds(2);
  return k;
}

/// The topic `name` with explicit partitions, replication factor 3 and min.insync.replicas 2.
inline bulwark::task<void> ensure_topic(const bulwark::kafka::admin& a, std::string name) {
  bulwark::kafka::topic_spec spec;
  spec.name = std::move(name);
  spec.partitions = topic_partitions;
  spec.replication_factor = 3;
  spec.configs = {{"min.insync.replicas", "2"}};
  co_return co_await a.ensure_topic(std::move(spec));
}

/// One attempt at every topic in `names` (see ensure_topic). Errors: the cluster's.
inline bulwark::task<void> ensure_topics(std::shared_ptr<bulwark::kafka::admin> a, std::vector<std::string> names) {
  for (auto& name : names) {
    auto making = ensure_topic(*a, name);
    auto made = co_await std::move(making);
    if (!made)
      co_return bulwark::error(made.error().code(), "topic " + name + ": " + std::string(made.error().detail()));
  }
  co_return bulwark::ok();
}

/// One attempt at Kafka for a service: its topics (ensure_topics), then `subscribe` (the
/// subscription that reads one of them: subscribing first could miss a topic made just after).
inline bulwark::task<void> ensure_topics_then(std::shared_ptr<bulwark::kafka::admin> a, std::vector<std::string> names,
                                              std::function<bulwark::task<void>()> subscribe) {
  auto making = ensure_topics(std::move(a), std::move(names));
  BOOST_OUTCOME_CO_TRY(co_await std::move(making));
  auto subscribing = subscribe();
  co_return co_await std::move(subscribing);
}

/// What ensure_topics_then subscribes when a service has nothing to read: nothing.
inline bulwark::task<void> no_subscription() { co_return bulwark::ok(); }

/// A probe of the Kafka cluster: the retry topic's metadata.
inline health_probe kafka_probe(std::shared_ptr<bulwark::kafka::admin> a, std::string topic) {
  return {"bus", [a, topic]() -> bulwark::task<void> {
            BOOST_OUTCOME_CO_TRY(co_await a->describe_topic(topic));
            co_return bulwark::ok();
          }};
}

/// "<host>-<pid>": names this process in consumer groups and outage-window ids.
inline std::string instance_name(std::string_view service_name) {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return std::string(service_name) + "-" + host + "-" + std::to_string(::getpid());
}

namespace detail {

/// Runs `f` when it goes (every way out of a run_* function stops what runs in the background
/// before the pools it uses go).
struct at_exit {
  std::function<void()> f;
  ~at_exit() { f(); }
};

inline int fail(std::string_view program, const std::string& what) {
  std::cerr << program << ": " << what << "\n";
  return 1;
}

template <class T> T on(asio::any_io_executor ex, asio::awaitable<T> op) {
  return bulwark::app::block_on(ex, std::move(op));
}

// CMS's flow over `cache` (the near cache or the shared cache itself), its routes and server,
// from the flow's start to its stop.
inline int serve_cms(const config& c, std::span<const admin_asset> assets, bulwark::app::stop_signals& signals,
                     asio::any_io_executor ex, deferred_mysql& documents, document_cache& cache,
                     bulwark::kafka::event_bus& bus, std::vector<health_probe> probes,
                     std::shared_ptr<bulwark::metrics::registry> metrics,
                     const std::function<void(const std::string&)>& log) {
  using flow_type = bulwark::flows::write_through<deferred_mysql, document_cache, bulwark::kafka::event_bus>;
  const std::string_view program = "channel-metadata-store";
  const auto node = static_cast<std::uint16_t>(c.node_id != 0 ? c.node_id : 1 + ::getpid() % 4095);
  flow_type flow(documents, cache, bus, store_options<flow_type>(c, metrics, {}, node));
  if (auto started = on(ex, flow.start()); !started) return fail(program, "snapshot: " + started.error().message());
  write_through_store<flow_type> store(flow, ex);

  cms_context ctx;
  ctx.settings = c;
  ctx.store = &store;
  ctx.metrics = metrics;
  ctx.probes = std::move(probes);
  auto to_crs = peer::make(c.peer_url, c.peer_user, c.peer_password, c.request_timeout);
  if (to_crs)
    ctx.crs = [p = to_crs.value()](std::string target, std::string id) {
      return p.call("GET", std::move(target), {}, std::move(id));
    };
  ctx.admin = assets;
  ctx.access_log = log;
  bulwark::http::router routes;
  add_cms_routes(routes, ctx);
  bulwark::http::server server(server_options_for(c, c.port, metrics), routes.as_handler());
  if (auto started = server.start(); !started) return fail(program, started.error().message());
  log("listening on http://" + c.listen_address + ":" + std::to_string(server.port()) + " (backend " +
      std::string(to_string(c.backend)) + ", node " + std::to_string(node) + ", near cache " +
      (c.near_cache ? "on" : "off") + "); admin page /admin/");
  signals.wait();
  log("stopping");
  server.stop(std::chrono::seconds(5));
  if (auto stopped = on(ex, flow.stop()); !stopped) log("snapshot: " + stopped.error().message());
  return 0;
}

// CMS over the shared cache (redis::cache or hazelcast::cache), behind a near cache unless
// --near-cache=false, from its start to its stop.
inline int run_cms_on(const config& c, std::span<const admin_asset> assets, bulwark::app::stop_signals& signals,
                      background_thread& bg, document_cache& shared,
                      std::shared_ptr<bulwark::metrics::registry> metrics,
                      std::function<void(const std::string&)> log) {
  using bus_type = bulwark::kafka::event_bus;
  using near_type = bulwark::flows::near_cache<document_cache, bus_type>;
  const auto ex = bg.executor();
  const std::string_view program = "channel-metadata-store";

  // The database need not answer at start: it is opened in the background (bounded backoff,
  // logged) and is DOWN in the healthcheck until then; CMS serves meanwhile what the cache holds
  // and accepts writes as pending (the retry topic), as in any outage.
  const auto m = mysql_config(c, false);
  bulwark::mysql::pool pool(ex, m);
  deferred_mysql documents(
      [ex, &pool, m, table = c.mysql_table] { return open_mysql_repository(ex, pool, m, table); },
      attempt_options("channel-metadata database " + m.host + ":" + std::to_string(m.port) + "/" + m.database, log));
  on(ex, documents.first_attempt()); // ready when listening if it answers (see run_crs_real)
  documents.start(ex);

  const auto kcfg = kafka_config(c, metrics);
  auto admin = bulwark::kafka::admin::create(kcfg);
  if (!admin) return fail(program, "Kafka: " + admin.error().message());
  auto kafka_admin = std::make_shared<bulwark::kafka::admin>(std::move(admin).value());
  const std::string invalidations = c.retry_topic + ".near-cache";
  at_exit stop_documents{[&] { on(ex, documents.stop()); }};
  auto created = bus_type::create(ex, kcfg);
  if (!created) return fail(program, "Kafka: " + created.error().message());
  auto bus = std::move(created).value();

  std::vector<health_probe> probes{probe_on(ex, repository_probe("database", documents)),
                                   probe_on(ex, cache_probe("cache", shared)), kafka_probe(kafka_admin, c.retry_topic)};
  std::vector<std::string> topics{c.retry_topic};
  if (c.near_cache) topics.push_back(invalidations);
  // Kafka: the topics made when missing, then the invalidation subscription joined (with the
  // near cache); one attempt before serving, then in the background (Kafka may be down at start:
  // the bus is DOWN until then, and other replicas' writes reach this one's local entries at
  // their local TTL).
  const auto kafka_attempts = attempt_options("Kafka (" + kcfg.bootstrap_servers + ")", log);
  // One path with the near cache on or off: only the subscription (and the cache served) differ.
  std::optional<near_type> near;
  std::optional<document_cache_over<near_type>> served_near;
  if (c.near_cache) {
    near_type::options n;
    n.topic = invalidations;
    n.group_prefix = invalidations;
    n.instance_id = instance_name("cms");
    n.metrics = metrics;
    n.name = std::string(flow_name);
    near.emplace(shared, bus, n);
    served_near.emplace(*near);
  }
  background_attempts kafka_start(
      [kafka_admin, topics, &near] {
        return ensure_topics_then(kafka_admin, topics, [&near] { return near ? near->start() : no_subscription(); });
      },
      kafka_attempts);
  on(ex, kafka_start.first_attempt());
  kafka_start.start(ex);
  document_cache& served = served_near ? static_cast<document_cache&>(*served_near) : shared;
  const int code = serve_cms(c, assets, signals, ex, documents, served, bus, std::move(probes), metrics, log);
  on(ex, kafka_start.stop());
  if (near) on(ex, near->stop());
  on(ex, bus.stop());
  on(ex, documents.stop());
  on(ex, pool.stop());
  return code;
}

} // namespace detail

/// channel-metadata-store on MySQL + Redis or Hazelcast + Kafka, until `signals` sees SIGINT or
/// SIGTERM (made before any thread starts, so that only it sees them).
inline int run_cms_real(config c, std::span<const admin_asset> assets, bulwark::app::stop_signals& signals) {
  background_thread bg;
  auto log = line_log("channel-metadata-store");
  auto metrics = std::make_shared<bulwark::metrics::registry>();
  const auto ex = bg.executor();
  if (c.backend == backend_kind::mysql_redis) {
    bulwark::redis::connection_options r;
    r.host = c.redis_host;
    r.port = c.redis_port;
    bulwark::redis::client client(ex, r);
    bulwark::redis::cache redis_cache(client, bulwark::redis::cache_options{c.cache_name + ":"});
    document_cache_over<bulwark::redis::cache> shared(redis_cache);
    const int code = detail::run_cms_on(c, assets, signals, bg, shared, metrics, log);
    detail::on(ex, client.stop());
    return code;
  }
  bulwark::hazelcast::member_options h;
  for (const auto& a : c.hazelcast_members) h.members.push_back(bulwark::http::endpoint::parse(a).value());
  // A read that misses the near cache asks Hazelcast before the database: bounded as a database
  // call is, so that with every member unreachable the database still answers within the request's
  // deadline (with the 5 s default such a read answered 409 CMS-0002 at the request timeout).
  h.operation_timeout = std::min(h.operation_timeout, c.database_timeout);
  h.attempt_timeout = std::min(h.attempt_timeout, c.database_timeout);
  auto members = bulwark::hazelcast::member_list::create(ex, h);
  if (!members) return detail::fail("channel-metadata-store", "Hazelcast: " + members.error().message());
  bulwark::hazelcast::cache_options o;
  o.map = c.cache_name;
  auto hazelcast_cache = bulwark::hazelcast::cache::create(members.value(), o);
  if (!hazelcast_cache)
    return detail::fail("channel-metadata-store", "Hazelcast: " + hazelcast_cache.error().message());
  document_cache_over<bulwark::hazelcast::cache> shared(hazelcast_cache.value());
  return detail::run_cms_on(c, assets, signals, bg, shared, metrics, log);
}

/// cache-retry-service on MySQL (the channel-metadata database and its own) + Kafka, until
/// `signals` sees SIGINT or SIGTERM.
inline int run_crs_real(config c, bulwark::app::stop_signals& signals) {
  using replayer_type = bulwark::flows::retry_replayer<deferred_mysql, bulwark::kafka::event_bus, deferred_mysql>;
  const std::string_view program = "cache-retry-service";
  background_thread bg;
  const auto ex = bg.executor();
  auto log = line_log(std::string(program));
  auto metrics = std::make_shared<bulwark::metrics::registry>();

  const auto data_cfg = mysql_config(c, false);
  const auto log_cfg = mysql_config(c, true);
  bulwark::mysql::pool data_pool(ex, data_cfg);
  bulwark::mysql::pool log_pool(ex, log_cfg);
  // Neither database has to answer at start: each is opened in the background (bounded backoff,
  // logged) and is DOWN in the healthcheck until then; the replayer meanwhile waits, as in any
  // outage, and the messages stay on the retry topic.
  deferred_mysql documents([ex, &data_pool, data_cfg,
                            table = c.mysql_table] { return open_mysql_repository(ex, data_pool, data_cfg, table); },
                           attempt_options("channel-metadata database " + data_cfg.host + ":" +
                                               std::to_string(data_cfg.port) + "/" + data_cfg.database,
                                           log));
  deferred_mysql outage_log(
      [ex, &log_pool, log_cfg, table = c.outage_mysql_table] {
        return open_mysql_repository(ex, log_pool, log_cfg, table);
      },
      attempt_options(
          "downtime-log database " + log_cfg.host + ":" + std::to_string(log_cfg.port) + "/" + log_cfg.database, log));
  // One attempt each before serving (bounded by --database-timeout): a database that answers is
  // ready when the service starts listening.
  detail::on(ex, documents.first_attempt());
  detail::on(ex, outage_log.first_attempt());
  documents.start(ex);
  outage_log.start(ex);

  const auto kcfg = kafka_config(c, metrics);
  auto admin = bulwark::kafka::admin::create(kcfg);
  if (!admin) return detail::fail(program, "Kafka: " + admin.error().message());
  auto kafka_admin = std::make_shared<bulwark::kafka::admin>(std::move(admin).value());
  detail::at_exit stop_databases{[&] {
    detail::on(ex, documents.stop());
    detail::on(ex, outage_log.stop());
  }};
  auto created = bulwark::kafka::event_bus::create(ex, kcfg);
  if (!created) return detail::fail(program, "Kafka: " + created.error().message());
  auto bus = std::move(created).value();

  auto to_cms = peer::make(c.peer_url, c.peer_user, c.peer_password, c.request_timeout);
  if (!to_cms) return detail::fail(program, "peer-url: " + to_cms.error().message());
  cms_reconciler reconciler(
      ex, [p = to_cms.value()]() { return p.call("POST", "/api/channel-metadata/force-update-all"); },
      c.reconcile_retry_delay, {}, log);

  auto o = replayer_options(c, metrics, instance_name("crs"));
  o.on_recovery = [&](const bulwark::flows::outage_window& w) -> bulwark::task<void> {
    log("the channel-metadata database is back (outage " + w.id + "); asking CMS to reconcile");
    reconciler.request();
    auto pruning = prune_downtime_log(outage_log, std::string(outage_log_prefix), c.downtime_log_retention);
    BOOST_OUTCOME_CO_TRY(co_await std::move(pruning));
    co_return bulwark::ok();
  };
  replayer_type replayer(documents, bus, outage_log, o);
  // Kafka: the retry topic made when missing, then the replayer's subscription; one attempt
  // before serving, then in the background (Kafka may be down at start: the bus is DOWN and the
  // messages wait on the retry topic until then).
  background_attempts kafka_start(
      [kafka_admin, t = c.retry_topic, &replayer] {
        return ensure_topics_then(kafka_admin, {t}, [&replayer] { return replayer.start(); });
      },
      attempt_options("Kafka (" + kcfg.bootstrap_servers + ")", log));
  detail::on(ex, kafka_start.first_attempt());
  kafka_start.start(ex);
  detail::at_exit stop_kafka_start{[&] { detail::on(ex, kafka_start.stop()); }};
  auto watch_stop = std::make_shared<std::atomic<bool>>(false);
  auto progress = [&replayer] {
    const auto s = replayer.stats();
    return replay_progress{s.replayed + s.superseded + s.duplicates, s.waiting};
  };
  asio::co_spawn(ex,
                 replay_watch(progress, reconciler, {}, std::chrono::seconds(1), watch_stop,
                              [&replayer] { return replayer.flush(); }),
                 asio::detached);

  crs_context ctx;
  ctx.settings = c;
  ctx.metrics = metrics;
  ctx.reconciler = &reconciler;
  ctx.access_log = log;
  ctx.probes = {probe_on(ex, repository_probe("database", documents)),
                probe_on(ex, repository_probe("outageLog", outage_log)), kafka_probe(kafka_admin, c.retry_topic)};
  ctx.downtime_log = [&]() {
    return run_on(ex, read_downtime_log(outage_log, std::string(outage_log_prefix), c.downtime_log_retention));
  };
  bulwark::http::router routes;
  add_crs_routes(routes, ctx);
  bulwark::http::server server(server_options_for(c, c.port, metrics), routes.as_handler());
  if (auto started = server.start(); !started) return detail::fail(program, started.error().message());
  log("listening on http://" + c.listen_address + ":" + std::to_string(server.port()) + " (retry topic " +
      c.retry_topic + ", group " + c.consumer_group + ")");
  signals.wait();
  log("stopping");
  server.stop(std::chrono::seconds(5));
  *watch_stop = true;
  detail::on(ex, reconciler.stop());
  detail::on(ex, kafka_start.stop());
  detail::on(ex, replayer.stop());
  detail::on(ex, bus.stop());
  detail::on(ex, documents.stop());
  detail::on(ex, outage_log.stop());
  detail::on(ex, data_pool.stop());
  detail::on(ex, log_pool.stop());
  return 0;
}

} // namespace channel_metadata
