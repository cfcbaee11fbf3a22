// Ledger apply throughput: each apply a new op id taking 1 unit from one balance, on a hot key
// (every apply the same balance) or spread over 10,000 keys; prints ops/s.
//   bench_saga_ledger --backend memory|redis|raw [--keys hot|spread] [--concurrency 50]
//                     [--requests 200000] [--host H] [--port P] [--pool 1]
//   memory  memory::ledger through its task interface, `concurrency` coroutines on one thread
//   redis   redis::ledger on one redis::client (pool 1 by default), `concurrency` coroutines
//   raw     the same apply Lua script (EVALSHA, the same KEYS and ARGV as redis::ledger sends)
//           from hiredis's synchronous API on one connection, `concurrency` commands kept in
//           flight by pipelining: the floor redis::ledger is measured against
//   cluster redis::ledger on a Redis Cluster (--seeds host:port,...), each apply two adjustments
//           of 1 over 1,000 key pairs, shaped by --shape:
//             tagged    a {tag} prefix: every key in one slot, one script per apply
//             local     no tag; the op id and both keys share a per-pair {tag}: one script
//             debits    no tag; two debits in two slots: split (plan, both parts at once)
//             transfer  no tag; a debit and a credit in two slots: split (plan, debit, credit)
// benchmarks/saga.sh runs it; benchmarks/ledger_cluster.sh runs the cluster shapes.
#include <bulwark/memory/ledger.hpp>
#include <bulwark/redis.hpp>
#include <bulwark/redis/ledger.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <hiredis/hiredis.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace {

constexpr int spread_keys = 10000;
constexpr bulwark::amount start_balance = 1'000'000'000'000;

struct settings {
  std::string backend = "memory";
  std::string keys = "hot";
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  int concurrency = 50;
  long requests = 200000;
  std::size_t pool = 1;
  std::string seeds;
  std::string shape = "tagged";
};

std::string key_of(const settings& s, long i) {
  return s.keys == "hot" ? std::string("hot") : std::string("k").append(std::to_string(i % spread_keys));
}

std::vector<bulwark::balance> initial_balances(const settings& s) {
  std::vector<bulwark::balance> b;
  if (s.keys == "hot")
    b.push_back({"hot", start_balance});
  else
    for (int k = 0; k < spread_keys; ++k) b.push_back({std::string("k").append(std::to_string(k)), start_balance});
  return b;
}

// Sets a Redis ledger's initial balances, running ctx until set_many answered (outside the
// measurement: it also opens the connections). False, with the error on stderr, when it failed.
template <class Ledger>
bool set_balances(asio::io_context& ctx, Ledger& ledger, const std::vector<bulwark::balance>& balances) {
  bool ready = false;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        auto r = co_await ledger.set_many(balances);
        if (!r) std::cerr << "set_many failed: " << r.error().message() << "\n";
        ready = r.has_value();
      },
      asio::detached);
  while (!ready && ctx.run_one() > 0) {
  }
  return ready;
}

// This process's CPU time (user + system) in seconds: what a busy shared machine inflates less
// than wall time.
double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

void print_rate(const settings& s, double seconds, double cpu) {
  std::printf("client_cpu_us_per_op: %.2f\n", cpu * 1e6 / static_cast<double>(s.requests));
  std::printf("ops_per_sec: %.0f\n", static_cast<double>(s.requests) / seconds);
}

struct run_state {
  long next = 0;
  long failed = 0;
  int running = 0;
  std::string first_error;
};

// `concurrency` coroutines, each taking the next op number until `requests` are done.
template <class Ledger> asio::awaitable<void> worker(Ledger& ledger, const settings& s, const std::string& run_id,
                                                     run_state& st, std::function<asio::awaitable<void>()> last) {
  std::vector<bulwark::adjustment> take(1);
  std::string op_id;
  while (st.next < s.requests) {
    const long i = st.next++;
    take[0] = {key_of(s, i), -1};
    op_id.assign(run_id).append(std::to_string(i));
    auto r = co_await ledger.apply(op_id, take);
    if (!r || r.value() != bulwark::apply_outcome::applied) {
      if (st.failed++ == 0) st.first_error = r ? "not applied" : r.error().message();
    }
  }
  if (--st.running == 0 && last) co_await last();
}

template <class Ledger> double run_ledger(asio::io_context& ctx, Ledger& ledger, const settings& s, run_state& st,
                                          std::function<asio::awaitable<void>()> last) {
  const std::string run_id = "op" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ":";
  st.running = s.concurrency;
  for (int i = 0; i < s.concurrency; ++i) asio::co_spawn(ctx, worker(ledger, s, run_id, st, last), asio::detached);
  const auto start = std::chrono::steady_clock::now();
  ctx.run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int run_memory(const settings& s) {
  asio::io_context ctx(1);
  // A short retention: the records stay bounded (purged as the run goes), as a service runs it.
  bulwark::memory::ledger ledger(
      bulwark::memory::ledger::options{.retention = std::chrono::seconds(1), .max_records = 8'000'000});
  auto balances = initial_balances(s);
  if (!ledger.set_many_now(balances)) return 1;
  run_state st;
  const double cpu_before = cpu_seconds();
  const double seconds = run_ledger(ctx, ledger, s, st, nullptr);
  const double cpu = cpu_seconds() - cpu_before;
  std::printf("backend=memory keys=%s concurrency=%d requests=%ld seconds=%.3f failed=%ld records_kept=%zu\n",
              s.keys.c_str(), s.concurrency, s.requests, seconds, st.failed, ledger.records());
  if (!st.first_error.empty()) std::printf("first error: %s\n", st.first_error.c_str());
  print_rate(s, seconds, cpu);
  return st.failed == 0 ? 0 : 1;
}

int run_redis(const settings& s) {
  asio::io_context ctx(1);
  bulwark::redis::connection_options o;
  o.host = s.host;
  o.port = s.port;
  o.pool_size = s.pool;
  o.command_timeout = std::chrono::seconds(10);
  o.max_pending = 1u << 20;
  bulwark::redis::ledger ledger(bulwark::redis::client(ctx.get_executor(), o),
                                {.key_prefix = "bench:ledger:", .retention = std::chrono::seconds(60)});
  // Initial balances and the connection, outside the measurement.
  auto balances = initial_balances(s);
  if (!set_balances(ctx, ledger, balances)) return 1;
  run_state st;
  const double cpu_before = cpu_seconds();
  const double seconds = run_ledger(ctx, ledger, s, st, [&]() { return ledger.connection().stop(); });
  const double cpu = cpu_seconds() - cpu_before;
  std::printf("backend=redis keys=%s concurrency=%d requests=%ld pool=%zu seconds=%.3f failed=%ld\n", s.keys.c_str(),
              s.concurrency, s.requests, s.pool, seconds, st.failed);
  if (!st.first_error.empty()) std::printf("first error: %s\n", st.first_error.c_str());
  print_rate(s, seconds, cpu);
  return st.failed == 0 ? 0 : 1;
}

int run_raw(const settings& s) {
  redisContext* c = redisConnect(s.host.c_str(), s.port);
  if (!c || c->err) {
    std::cerr << "connect: " << (c ? c->errstr : "no context") << "\n";
    return 1;
  }
  auto command = [&](std::vector<std::string> args) -> redisReply* {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    return static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
  };
  const auto& script = bulwark::redis::detail::ledger_apply_script();
  redisReply* loaded = command({"SCRIPT", "LOAD", std::string(script.text())});
  if (!loaded || loaded->type != REDIS_REPLY_STRING) {
    std::cerr << "SCRIPT LOAD failed\n";
    return 1;
  }
  const std::string sha(loaded->str, loaded->len);
  freeReplyObject(loaded);
  const std::string prefix = "bench:raw:";
  for (const auto& b : initial_balances(s))
    freeReplyObject(command({"SET", prefix + "b:" + b.key, std::to_string(b.value)}));

  // The same argv redis::ledger::apply sends for one adjustment.
  const std::string run_id = "op" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ":";
  const std::string retention = "60000", max = std::to_string(bulwark::max_amount), delta = "-1";
  std::string op_key, balance_key;
  long sent = 0, received = 0, failed = 0;
  auto append = [&] {
    op_key.assign(prefix).append("o:").append(run_id).append(std::to_string(sent));
    balance_key.assign(prefix).append("b:").append(key_of(s, sent));
    const char* argv[] = {"EVALSHA",          sha.data(),       "2",        op_key.data(),
                          balance_key.data(), retention.data(), max.data(), delta.data()};
    const std::size_t lens[] = {7,          sha.size(),  1, op_key.size(), balance_key.size(), retention.size(),
                                max.size(), delta.size()};
    redisAppendCommandArgv(c, 8, argv, lens);
    ++sent;
  };
  const double cpu_before = cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  while (sent < s.requests && sent - received < s.concurrency) append();
  while (received < s.requests) {
    void* reply = nullptr;
    if (redisGetReply(c, &reply) != REDIS_OK) {
      std::cerr << "redisGetReply: " << c->errstr << "\n";
      return 1;
    }
    auto* r = static_cast<redisReply*>(reply);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 || r->element[0]->type != REDIS_REPLY_STRING ||
        std::string(r->element[0]->str, r->element[0]->len) != "A")
      ++failed;
    freeReplyObject(r);
    ++received;
    // Keep `concurrency` in flight: hiredis writes the appended commands when it next reads.
    while (sent < s.requests && sent - received < s.concurrency) append();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = cpu_seconds() - cpu_before;
  redisFree(c);
  std::printf("backend=raw keys=%s concurrency=%d requests=%ld seconds=%.3f failed=%ld\n", s.keys.c_str(),
              s.concurrency, s.requests, seconds, failed);
  print_rate(s, seconds, cpu);
  return failed == 0 ? 0 : 1;
}

constexpr int cluster_pairs = 1000;

// The two adjustments and the op id of apply i in a cluster shape (see the top).
void cluster_apply(const settings& s, const std::string& run_id, long i, std::string& op_id,
                   std::vector<bulwark::adjustment>& adjustments) {
  const auto pair = std::to_string(i % cluster_pairs);
  const bool local = s.shape == "local";
  const std::string tag = local ? "{p" + pair + "}" : std::string();
  adjustments.resize(2);
  adjustments[0] = {tag + "a" + pair, -1};
  adjustments[1] = {tag + "b" + pair, s.shape == "transfer" ? 1 : -1};
  op_id.assign(tag).append(run_id).append(std::to_string(i));
}

asio::awaitable<void> cluster_worker(bulwark::redis::ledger& ledger, const settings& s, const std::string& run_id,
                                     run_state& st) {
  std::vector<bulwark::adjustment> adjustments;
  std::string op_id;
  while (st.next < s.requests) {
    const long i = st.next++;
    cluster_apply(s, run_id, i, op_id, adjustments);
    auto r = co_await ledger.apply(op_id, adjustments);
    if (!r || r.value() != bulwark::apply_outcome::applied) {
      if (st.failed++ == 0)
        st.first_error = r ? "not applied" : r.error().message() + " " + std::string(r.error().detail());
    }
  }
  if (--st.running == 0) co_await ledger.connection().stop();
}

int run_cluster(const settings& s) {
  asio::io_context ctx(1);
  bulwark::redis::cluster_options o;
  for (std::size_t start = 0; start < s.seeds.size();) {
    auto comma = s.seeds.find(',', start);
    if (comma == std::string::npos) comma = s.seeds.size();
    o.seeds.push_back(s.seeds.substr(start, comma - start));
    start = comma + 1;
  }
  o.node.command_timeout = std::chrono::seconds(10);
  o.node.max_pending = 1u << 20;
  o.request_timeout = std::chrono::seconds(20);
  const auto stamp = std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  const std::string prefix = s.shape == "tagged" ? "bench:{ledger" + stamp + "}:" : "bench:ledger" + stamp + ":";
  bulwark::redis::ledger ledger(bulwark::redis::client(ctx.get_executor(), o),
                                {.key_prefix = prefix, .retention = std::chrono::seconds(60)});
  std::vector<bulwark::balance> balances;
  {
    std::string op;
    std::vector<bulwark::adjustment> adjustments;
    for (long i = 0; i < cluster_pairs; ++i) {
      cluster_apply(s, "", i, op, adjustments);
      for (const auto& a : adjustments) balances.push_back({a.key, start_balance});
    }
  }
  if (!set_balances(ctx, ledger, balances)) return 1;
  run_state st;
  const std::string run_id = "op" + stamp + ":";
  const auto commands_before = ledger.connection().statistics().commands; // set_many's excluded
  st.running = s.concurrency;
  for (int i = 0; i < s.concurrency; ++i) asio::co_spawn(ctx, cluster_worker(ledger, s, run_id, st), asio::detached);
  const double cpu_before = cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  ctx.run();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = cpu_seconds() - cpu_before;
  const auto commands = ledger.connection().statistics().commands - commands_before;
  std::printf("backend=cluster shape=%s split=%d concurrency=%d requests=%ld seconds=%.3f failed=%ld "
              "commands_per_apply=%.2f\n",
              s.shape.c_str(), ledger.splits_by_slot() ? 1 : 0, s.concurrency, s.requests, seconds, st.failed,
              static_cast<double>(commands) / static_cast<double>(s.requests));
  if (!st.first_error.empty()) std::printf("first error: %s\n", st.first_error.c_str());
  std::printf("latency_us: %.1f\n", seconds * 1e6 * s.concurrency / static_cast<double>(s.requests));
  print_rate(s, seconds, cpu);
  return st.failed == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  settings s;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], v = argv[i + 1];
    if (flag == "--backend")
      s.backend = v;
    else if (flag == "--keys")
      s.keys = v;
    else if (flag == "--host")
      s.host = v;
    else if (flag == "--port")
      s.port = static_cast<std::uint16_t>(std::stoi(v));
    else if (flag == "--concurrency")
      s.concurrency = std::stoi(v);
    else if (flag == "--requests")
      s.requests = std::stol(v);
    else if (flag == "--pool")
      s.pool = std::stoul(v);
    else if (flag == "--seeds")
      s.seeds = v;
    else if (flag == "--shape")
      s.shape = v;
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  if ((s.keys != "hot" && s.keys != "spread") || s.concurrency < 1 || s.requests < 1) {
    std::cerr << "--keys hot|spread, --concurrency >= 1, --requests >= 1\n";
    return 2;
  }
  if (s.backend == "memory") return run_memory(s);
  if (s.backend == "redis") return run_redis(s);
  if (s.backend == "raw") return run_raw(s);
  if (s.backend == "cluster") {
    if (s.seeds.empty() ||
        (s.shape != "tagged" && s.shape != "local" && s.shape != "debits" && s.shape != "transfer")) {
      std::cerr << "--backend cluster needs --seeds host:port,... and --shape tagged|local|debits|transfer\n";
      return 2;
    }
    return run_cluster(s);
  }
  std::cerr << "--backend memory|redis|raw|cluster\n";
  return 2;
}
