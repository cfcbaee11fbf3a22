// redis::cache throughput: `concurrency` coroutines on one thread (one io_context), each
// looping get (or put) until `requests` operations are done in total; prints ops/s.
//   bulwark_redis_benchmark --port P [--host H] [--op get|set] [--concurrency 50]
//                           [--requests 200000] [--value-size 100] [--pool 2] [--keys 1]
//                           [--cluster host:port,host:port,...] [--tagged 1]
// With --cluster the cache runs over a Redis Cluster client seeded with those nodes (--host,
// --port and --pool are ignored; one connection per node); give --keys >= --concurrency so that
// the workers' keys spread over the masters. --tagged 1: the keys carry one of three hash tags,
// one in each third of the slots (one per master of a three-master cluster as redis-cli
// --cluster create lays it out): the key layout redis-benchmark --cluster uses, so a turn's
// puts make one script call per master instead of one per key.
// Also prints the client's CPU time per operation (user + system, getrusage over the measured
// run), which a shared machine disturbs far less than the wall-clock rate.
#include <bulwark/redis.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

#include <sys/resource.h>

namespace redis = bulwark::redis;

namespace {

struct settings {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string op = "get";
  int concurrency = 50;
  long requests = 200000;
  std::size_t value_size = 100;
  std::size_t pool = 2;
  int keys = 1;
  std::string cluster; ///< seeds, comma-separated; empty: one server
  bool tagged = false;
};

/// Worker `id`'s key: "key:<id % keys>", or with tagged "{<tag>}key:..." (see the header).
std::string key_of(const settings& s, int id) {
  std::string key = "key:" + std::to_string(id % s.keys);
  if (!s.tagged) return key;
  static const std::array<std::string, 3> tags = [] {
    std::array<std::string, 3> out;
    for (int third = 0; third < 3; ++third)
      for (int i = 0;; ++i) {
        const auto t = "t" + std::to_string(i);
        if (bulwark::redis::detail::key_slot(t) * 3 / 16384 == static_cast<unsigned>(third)) {
          out[static_cast<std::size_t>(third)] = t;
          break;
        }
      }
    return out;
  }();
  return "{" + tags[static_cast<std::size_t>((id % s.keys) % 3)] + "}" + key;
}

struct state {
  long remaining = 0;
  long failed = 0;
  int running = 0;
  bulwark::version_t next_version = 1;
  std::string first_error;
};

asio::awaitable<void> worker(redis::cache& cache, const settings& s, state& st, int id) {
  const std::string value(s.value_size, 'x');
  const std::string key = key_of(s, id);
  while (st.remaining > 0) {
    --st.remaining;
    bool ok = false;
    if (s.op == "get") {
      auto r = co_await cache.get(key);
      ok = r.has_value() && r.value().has_value();
      if (!ok && st.first_error.empty()) st.first_error = r ? "miss" : r.error().message();
    } else {
      // (A named value, not a temporary in the co_await: GCC 12 destroys such temporaries twice.)
      bulwark::versioned entry{value, st.next_version++};
      auto r = co_await cache.put(key, std::move(entry), std::chrono::milliseconds(0));
      ok = r.has_value();
      if (!ok && st.first_error.empty()) st.first_error = r.error().message();
    }
    if (!ok) ++st.failed;
  }
  if (--st.running == 0) co_await cache.connection().stop();
}

} // namespace

int main(int argc, char** argv) {
  settings s;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], v = argv[i + 1];
    if (flag == "--host")
      s.host = v;
    else if (flag == "--port")
      s.port = static_cast<std::uint16_t>(std::stoi(v));
    else if (flag == "--op")
      s.op = v;
    else if (flag == "--concurrency")
      s.concurrency = std::stoi(v);
    else if (flag == "--requests")
      s.requests = std::stol(v);
    else if (flag == "--value-size")
      s.value_size = std::stoul(v);
    else if (flag == "--pool")
      s.pool = std::stoul(v);
    else if (flag == "--keys")
      s.keys = std::stoi(v);
    else if (flag == "--cluster")
      s.cluster = v;
    else if (flag == "--tagged")
      s.tagged = v == "1";
    else {
      std::cerr << "unknown flag " << flag << "\n";
      return 2;
    }
  }
  if (s.op != "get" && s.op != "set") {
    std::cerr << "--op get|set\n";
    return 2;
  }
  asio::io_context ctx(1);
  redis::connection_options o;
  o.host = s.host;
  o.port = s.port;
  o.pool_size = s.pool;
  o.command_timeout = std::chrono::seconds(10);
  o.max_pending = 1u << 20;
  auto make_client = [&] {
    if (s.cluster.empty()) return redis::client(ctx.get_executor(), o);
    redis::cluster_options c;
    for (std::size_t start = 0; start < s.cluster.size();) {
      auto comma = s.cluster.find(',', start);
      if (comma == std::string::npos) comma = s.cluster.size();
      c.seeds.push_back(s.cluster.substr(start, comma - start));
      start = comma + 1;
    }
    c.node.command_timeout = o.command_timeout;
    c.node.max_pending = o.max_pending;
    c.request_timeout = std::chrono::seconds(20);
    return redis::client(ctx.get_executor(), c);
  };
  redis::cache cache(make_client(), {"bench:"});

  // Fill the keys (so that gets hit) and connect, outside the measurement.
  // (Wait for each put itself: a put waits for its batch's flush before it counts as outstanding.)
  int warming = s.keys;
  for (int k = 0; k < s.keys; ++k) {
    asio::co_spawn(
        ctx,
        [&, k]() -> asio::awaitable<void> {
          const std::string key = key_of(s, k);
          bulwark::versioned entry{std::string(s.value_size, 'x'), 0};
          auto r = co_await cache.put(key, std::move(entry), std::chrono::milliseconds(0));
          if (!r) std::cerr << "warm-up put failed: " << r.error().message() << "\n";
          --warming;
        },
        asio::detached);
  }
  while (warming > 0 && ctx.run_one() > 0) {
  }
  ctx.poll();

  state st;
  st.remaining = s.requests;
  st.running = s.concurrency;
  st.next_version = 1;
  for (int i = 0; i < s.concurrency; ++i) asio::co_spawn(ctx, worker(cache, s, st, i), asio::detached);
  auto cpu_seconds = [] {
    rusage u{};
    ::getrusage(RUSAGE_SELF, &u);
    auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    return s(u.ru_utime) + s(u.ru_stime);
  };
  const double cpu_start = cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  ctx.run();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = cpu_seconds() - cpu_start;
  const auto stats = cache.connection().statistics();
  const double rate = static_cast<double>(s.requests) / seconds;
  std::printf("op=%s concurrency=%d requests=%ld pool=%zu seconds=%.3f failed=%ld writes=%llu reads=%llu\n",
              s.op.c_str(), s.concurrency, s.requests, s.pool, seconds, st.failed,
              static_cast<unsigned long long>(stats.writes), static_cast<unsigned long long>(stats.reads));
  if (!st.first_error.empty()) std::printf("first error: %s\n", st.first_error.c_str());
  if (s.op == "set")
    std::printf("put_batches: %llu (%.1f puts each)\n", static_cast<unsigned long long>(cache.put_batches()),
                static_cast<double>(cache.batched_puts()) /
                    static_cast<double>(std::max<std::uint64_t>(1, cache.put_batches())));
  std::printf("client_cpu_us_per_op: %.3f\n", cpu * 1e6 / static_cast<double>(s.requests));
  std::printf("ops_per_sec: %.0f\n", rate);
  return st.failed == 0 ? 0 : 1;
}
