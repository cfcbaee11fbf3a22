// Real mode: order-service, stock-service and payment-service as separate processes, each on
// its own Redis namespace (a standalone server or a Redis Cluster, a {hash tag} per store so
// each store's keys share a slot) and all on the Kafka bus. The saga's pay and stock steps are
// commands to the payment and stock services' participants; the order service drives the saga
// and reaches the other two over HTTP for prices and users (--stock-url, --payment-url).
// Every Redis and Kafka call runs on one thread (the clients belong to one executor); the HTTP
// threads hop to it. Topics are created at start: 8 partitions, replication factor 3,
// min.insync.replicas 2 (--partitions, --replication for a smaller cluster).

#include "services.hpp"

#include <checkout/orders.hpp>
#include <checkout/payment.hpp>
#include <checkout/remote.hpp>
#include <checkout/routes.hpp>
#include <checkout/saga.hpp>
#include <checkout/stock.hpp>

#include <bulwark/app.hpp>
#include <bulwark/http/client.hpp>
#include <bulwark/http/metrics_handler.hpp>
#include <bulwark/http/server.hpp>
#include <bulwark/kafka/event_bus.hpp>
#include <bulwark/redis/client.hpp>
#include <bulwark/redis/ledger.hpp>
#include <bulwark/redis/repository.hpp>
#include <bulwark/saga/orchestrator.hpp>
#include <bulwark/saga/participant.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>

namespace checkout {
namespace {

using bulwark::app::option;
using redis_ledger = bulwark::redis::ledger;
using redis_repository = bulwark::redis::repository;
using kafka_bus = bulwark::kafka::event_bus;

struct settings {
  std::string name;
  std::string address, redis, redis_cluster, kafka, prefix;
  std::uint16_t port = 0;
  std::size_t threads = 2;
  int partitions = 8, replication = 3;
  unsigned redis_replicas_acked = 0;             // cluster: WAIT for this many replicas after each write
  std::chrono::milliseconds redis_timeout{2000}; // cluster: one call, redirections and retries included
  std::size_t max_batch = 128; // a participant's commands handled together (saga::participant_options)
  std::vector<std::pair<std::string, std::string>> kafka_properties; // extra librdkafka settings
  std::chrono::milliseconds linger{20}; // the producer's linger.ms (see README, "Benchmark")
  bool idempotent = false;              // the producer's enable.idempotence (see home())
};

std::vector<std::string> split(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

settings read_settings(int argc, char** argv, std::string name, const char* default_port) {
  settings s;
  s.name = std::move(name);
  s.address = option(argc, argv, "--address", "CHECKOUT_ADDRESS", "127.0.0.1");
  s.port = static_cast<std::uint16_t>(std::stoi(option(argc, argv, "--port", "CHECKOUT_PORT", default_port)));
  s.threads = static_cast<std::size_t>(std::stoi(option(argc, argv, "--threads", "CHECKOUT_THREADS", "2")));
  s.redis = option(argc, argv, "--redis", "CHECKOUT_REDIS", "127.0.0.1:6379");
  s.redis_cluster = option(argc, argv, "--redis-cluster", "CHECKOUT_REDIS_CLUSTER", "");
  s.redis_replicas_acked = static_cast<unsigned>(
      std::stoul(option(argc, argv, "--redis-replicas-acked", "CHECKOUT_REDIS_REPLICAS_ACKED", "0")));
  s.redis_timeout = std::chrono::milliseconds(
      std::stoll(option(argc, argv, "--redis-timeout-ms", "CHECKOUT_REDIS_TIMEOUT_MS", "2000")));
  s.kafka = option(argc, argv, "--kafka", "CHECKOUT_KAFKA", "127.0.0.1:9092");
  s.prefix = option(argc, argv, "--prefix", "CHECKOUT_PREFIX", "checkout");
  s.partitions = std::stoi(option(argc, argv, "--partitions", "CHECKOUT_PARTITIONS", "8"));
  s.replication = std::stoi(option(argc, argv, "--replication", "CHECKOUT_REPLICATION", "3"));
  s.max_batch = static_cast<std::size_t>(std::stoul(option(argc, argv, "--max-batch", "CHECKOUT_MAX_BATCH", "128")));
  if (s.max_batch == 0) throw std::invalid_argument("--max-batch must be at least 1");
  auto linger = bulwark::kafka::parse_linger_ms(option(argc, argv, "--linger-ms", "CHECKOUT_LINGER_MS", "20"));
  if (!linger) throw std::invalid_argument("--linger-ms: " + std::string(linger.error().detail()));
  s.linger = linger.value();
  const auto idempotent = option(argc, argv, "--idempotent-producer", "CHECKOUT_IDEMPOTENT_PRODUCER", "false");
  if (idempotent != "true" && idempotent != "false")
    throw std::invalid_argument("--idempotent-producer must be true or false, got '" + idempotent + "'");
  s.idempotent = idempotent == "true";
  // "name=value,name=value": librdkafka settings after the services' own (they win).
  auto properties =
      bulwark::kafka::parse_properties(option(argc, argv, "--kafka-properties", "CHECKOUT_KAFKA_PROPERTIES", ""));
  if (!properties) throw std::invalid_argument("--kafka-properties: " + std::string(properties.error().detail()));
  s.kafka_properties = std::move(properties).value();
  return s;
}

// A store's Redis namespace: "{<prefix>-<store>}:" (one slot per store on a cluster).
std::string ns(const settings& s, std::string_view store) { return "{" + s.prefix + "-" + std::string(store) + "}:"; }

// The one thread every Redis and Kafka call runs on, and the clients on it.
class home {
public:
  // metrics: the Kafka bus's consumer lag and backlog gauges go there too.
  home(const settings& s, std::shared_ptr<bulwark::metrics::registry> metrics) {
    if (!s.redis_cluster.empty()) {
      bulwark::redis::cluster_options c;
      c.seeds = split(s.redis_cluster);
      c.min_replicas_acked = s.redis_replicas_acked;
      c.request_timeout = s.redis_timeout;
      redis_.emplace(context_.get_executor(), std::move(c));
    } else {
      auto ep = bulwark::http::endpoint::parse(s.redis);
      if (!ep) throw std::invalid_argument("--redis: " + ep.error().message());
      bulwark::redis::connection_options c;
      c.host = ep.value().host;
      c.port = ep.value().port;
      redis_.emplace(context_.get_executor(), std::move(c));
    }
    auto cfg = bulwark::kafka::config{};
    cfg.bootstrap_servers = s.kafka;
    // Every publish of a checkout (two commands, two replies) waits up to this long for others
    // to share its produce request. At 1 ms the producer's broker threads woke for nearly every
    // message and took over half of the order service's CPU per checkout (README, "Benchmark").
    cfg.linger = s.linger;
    // acks=all without idempotence: the same durability (an acknowledged command or reply is on
    // min.insync.replicas brokers), but a message librdkafka retries may be written twice or
    // behind a later one of its saga. The saga tolerates both: participants answer a duplicate
    // from their record, a compensation ahead of its action leaves a ledger tombstone that
    // refuses the action, and the orchestrator drops duplicate replies. With the idempotent
    // producer (5 requests in flight per partition at most) the order service's librdkafka
    // broker threads took 118-225 us of CPU per checkout under the benchmark, without it 13-42
    // us (README, "Idempotence off, jemalloc").
    cfg.idempotent = s.idempotent;
    cfg.session_timeout = std::chrono::milliseconds(6000);
    cfg.heartbeat_interval = std::chrono::milliseconds(500);
    cfg.drain_timeout = std::chrono::milliseconds(2000);
    cfg.default_partitions = s.partitions;
    cfg.default_replication_factor = s.replication;
    cfg.properties = s.kafka_properties;
    cfg.metrics = std::move(metrics);
    auto bus = kafka_bus::create(context_.get_executor(), cfg);
    if (!bus) throw std::runtime_error("kafka: " + bus.error().message());
    bus_.emplace(std::move(bus).value());
    thread_ = std::thread([this] { context_.run(); });
  }
  home(const home&) = delete;
  home& operator=(const home&) = delete;
  // Everything on this thread has stopped by now (server, participant or orchestrator); the
  // Redis and HTTP clients' idle connections would keep run() going, so the loop is stopped.
  ~home() {
    bulwark::app::block_on(context_.get_executor(), bus_->stop());
    work_.reset();
    context_.stop();
    thread_.join();
  }

  asio::any_io_executor executor() { return context_.get_executor(); }
  bulwark::redis::client& redis() { return *redis_; }
  kafka_bus& bus() { return *bus_; }

  template <class T> T run(asio::awaitable<T> op) {
    return bulwark::app::block_on(context_.get_executor(), std::move(op));
  }

  // The topic with the settings' partitions and replication, min.insync.replicas 2 (1 on a
  // smaller cluster); one that exists already is fine.
  void ensure_topic(const settings& s, const std::string& name) {
    bulwark::kafka::topic_spec spec{
        name, s.partitions, s.replication, {{"min.insync.replicas", s.replication >= 3 ? "2" : "1"}}};
    auto created = bus_->admin().create_topic_blocking(spec);
    if (!created && created.error() != bulwark::errc::duplicate)
      throw std::runtime_error("kafka topic " + name + ": " + created.error().message());
  }

private:
  asio::io_context context_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(context_);
  std::optional<bulwark::redis::client> redis_;
  std::optional<kafka_bus> bus_;
  std::thread thread_;
};

// A service whose calls hop to the home thread: the routes call it like the service itself.
template <class Service> struct on_home {
  asio::any_io_executor ex;
  Service& s;
  template <class... A> auto create(A... a) { return run_on(ex, s.create(std::move(a)...)); }
  template <class... A> auto create_user(A... a) { return run_on(ex, s.create_user(std::move(a)...)); }
  template <class... A> auto batch_init(A... a) { return run_on(ex, s.batch_init(std::move(a)...)); }
  template <class... A> auto find(A... a) { return run_on(ex, s.find(std::move(a)...)); }
  template <class... A> auto find_user(A... a) { return run_on(ex, s.find_user(std::move(a)...)); }
  template <class... A> auto change(A... a) { return run_on(ex, s.change(std::move(a)...)); }
};

int serve(const settings& s, http::router& routes, const std::shared_ptr<bulwark::metrics::registry>& metrics,
          bulwark::app::stop_signals& signals) {
  routes.get("/metrics", http::metrics_handler(metrics));
  routes.get("/health", [name = s.name](http::request&) -> bulwark::task<http::response> {
    co_return http::json(nlohmann::json{{"status", "UP"}, {"service", name}});
  });
  http::server_options o;
  o.address = s.address;
  o.port = s.port;
  o.threads = s.threads;
  o.metrics = metrics;
  http::server server(o, routes.as_handler());
  if (auto started = server.start(); !started) {
    std::cerr << s.name << ": " << started.error().message() << '\n';
    return 1;
  }
  std::cout << s.name << ": listening on http://" << s.address << ':' << server.port() << std::endl;
  signals.wait();
  std::cout << s.name << ": stopping" << std::endl;
  server.stop(std::chrono::seconds(5));
  return 0;
}

template <class Participant> void start_participant(home& h, Participant& p, const std::string& name) {
  auto started = h.run(p.start());
  if (!started) throw std::runtime_error(name + " participant: " + started.error().message());
}

int guarded(const char* name, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << '\n';
    return 1;
  }
}

} // namespace

int run_stock_service(int argc, char** argv) {
  bulwark::app::stop_signals signals;
  return guarded("stock-service", [&] {
    const auto s = read_settings(argc, argv, "stock-service", "8002");
    auto metrics = std::make_shared<bulwark::metrics::registry>();
    home h(s, metrics);
    h.ensure_topic(s, stock_topic(s.prefix));
    redis_ledger stock(h.redis(), {.key_prefix = ns(s, "stock-ledger")});
    redis_repository items(h.redis(), {.key_prefix = ns(s, "stock-items")});
    redis_repository records(h.redis(), {.key_prefix = ns(s, "stock-participant")});
    stock_service<redis_ledger, redis_repository> service(stock, items);
    bulwark::saga::participant_options po;
    po.topic = stock_topic(s.prefix);
    po.group = s.prefix + "-stock";
    po.name = "stock";
    po.max_batch = s.max_batch;
    po.metrics = metrics;
    bulwark::saga::participant<kafka_bus, redis_repository> participant(h.bus(), records, po);
    participant.add_step("stock", stock_handlers(stock));
    start_participant(h, participant, "stock");
    http::router routes;
    routes.use(contract_statuses());
    on_home<decltype(service)> hop{h.executor(), service};
    add_stock_routes(routes, hop);
    const int code = serve(s, routes, metrics, signals);
    h.run(participant.stop());
    return code;
  });
}

int run_payment_service(int argc, char** argv) {
  bulwark::app::stop_signals signals;
  return guarded("payment-service", [&] {
    const auto s = read_settings(argc, argv, "payment-service", "8003");
    auto metrics = std::make_shared<bulwark::metrics::registry>();
    home h(s, metrics);
    h.ensure_topic(s, pay_topic(s.prefix));
    redis_ledger credit(h.redis(), {.key_prefix = ns(s, "payment-ledger")});
    redis_repository records(h.redis(), {.key_prefix = ns(s, "payment-participant")});
    payment_service<redis_ledger> service(credit);
    bulwark::saga::participant_options po;
    po.topic = pay_topic(s.prefix);
    po.group = s.prefix + "-payment";
    po.name = "payment";
    po.max_batch = s.max_batch;
    po.metrics = metrics;
    bulwark::saga::participant<kafka_bus, redis_repository> participant(h.bus(), records, po);
    participant.add_step("pay", pay_handlers(credit));
    start_participant(h, participant, "payment");
    http::router routes;
    routes.use(contract_statuses());
    on_home<decltype(service)> hop{h.executor(), service};
    add_payment_routes(routes, hop);
    const int code = serve(s, routes, metrics, signals);
    h.run(participant.stop());
    return code;
  });
}

int run_order_service(int argc, char** argv) {
  bulwark::app::stop_signals signals;
  return guarded("order-service", [&] {
    const auto s = read_settings(argc, argv, "order-service", "8001");
    // The lease owner: unique among the replicas, the same after a restart (default: the port).
    const auto replica = option(argc, argv, "--replica", "CHECKOUT_REPLICA",
                                "order-" + std::to_string(s.port == 0 ? ::getpid() : s.port));
    order_options oo;
    oo.answer_timeout = std::chrono::milliseconds(
        std::stoll(option(argc, argv, "--answer-timeout-ms", "CHECKOUT_ANSWER_TIMEOUT_MS", "10000")));
    const auto stock_url = option(argc, argv, "--stock-url", "CHECKOUT_STOCK_URL", "127.0.0.1:8002");
    const auto payment_url = option(argc, argv, "--payment-url", "CHECKOUT_PAYMENT_URL", "127.0.0.1:8003");
    const auto lease_ms = std::stoll(option(argc, argv, "--lease-ms", "CHECKOUT_LEASE_MS", "30000"));
    auto stock_at = bulwark::http::endpoint::parse(stock_url);
    auto payment_at = bulwark::http::endpoint::parse(payment_url);
    if (!stock_at || !payment_at) throw std::invalid_argument("--stock-url and --payment-url are host:port");
    auto metrics = std::make_shared<bulwark::metrics::registry>();
    home h(s, metrics);
    h.ensure_topic(s, pay_topic(s.prefix));
    h.ensure_topic(s, stock_topic(s.prefix));
    bulwark::saga::orchestrator_options so;
    so.replica = replica;
    so.reply_topic = s.prefix + ".replies." + replica;
    so.lease = std::chrono::milliseconds(lease_ms);
    so.sweep_interval = std::chrono::milliseconds(std::max<long long>(lease_ms / 3, 1000));
    so.metrics = metrics;
    h.ensure_topic(s, so.reply_topic);
    redis_repository orders(h.redis(), {.key_prefix = ns(s, "orders")});
    redis_repository saga_log(h.redis(), {.key_prefix = ns(s, "order-sagas")});
    using orchestrator_type = bulwark::saga::orchestrator<checkout_definition, redis_repository, kafka_bus>;
    orchestrator_type sagas(h.executor(),
                            checkout_saga(remote_pay_step(s.prefix), remote_stock_step(s.prefix), confirm_paid(orders)),
                            saga_log, h.bus(), so);
    bulwark::http::client peers(h.executor());
    // An item's price or a user's credit from the other services; nullopt on their 400.
    auto lookup = [&peers](bulwark::http::endpoint at, std::string target,
                           std::string field) -> bulwark::task<std::optional<bulwark::amount>> {
      auto got = co_await peers.get(at, std::move(target));
      if (!got) co_return got.error();
      if (got.value().status == 400) co_return std::optional<bulwark::amount>{};
      if (got.value().status != 200)
        co_return bulwark::error(bulwark::errc::unavailable, "peer answered " + std::to_string(got.value().status));
      auto j = nlohmann::json::parse(got.value().body, nullptr, false);
      if (j.is_discarded() || !j.contains(field) || !j[field].is_number_integer())
        co_return bulwark::error(bulwark::errc::protocol_error, "peer answered " + got.value().body);
      co_return std::optional<bulwark::amount>{j[field].get<bulwark::amount>()};
    };
    catalog c;
    c.price = [&, at = stock_at.value()](std::string item) { return lookup(at, "/stock/find/" + item, "price"); };
    c.credit = [&, at = payment_at.value()](std::string user) {
      return lookup(at, "/payment/find_user/" + user, "credit");
    };
    order_service<redis_repository, orchestrator_type> service(h.executor(), orders, sagas, std::move(c), oo);
    auto resumed = h.run(sagas.recover());
    if (!resumed) throw std::runtime_error("saga recovery: " + resumed.error().message());
    std::cout << "order-service: replica " << replica << " resumed " << resumed.value() << " sagas" << std::endl;
    http::router routes;
    routes.use(contract_statuses());
    add_order_routes(routes, service);
    const int code = serve(s, routes, metrics, signals);
    h.run(sagas.stop());
    return code;
  });
}

} // namespace checkout
