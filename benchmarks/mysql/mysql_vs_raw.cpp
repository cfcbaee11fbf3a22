// Point get and compare-and-set put with 8 concurrent callers: through mysql::repository (one
// io_context thread, a pool of 8 non-blocking connections) against a raw loop on the C API
// (8 threads, one blocking connection and prepared statement each), same SQL, same server.
// Prints ops/s for each, then `ratio_get:` and `ratio_put:` (repository / raw).
// The four runs alternate in short slices (BENCH_SECONDS each, BENCH_ROUNDS times) and each
// figure is the total over its slices, so a machine whose load drifts during the run (other
// builds on a shared box) skews both sides alike.
//   BULWARK_MYSQL_* from scripts/servers/mysql.sh; BENCH_SECONDS (default 1), BENCH_ROUNDS (6).
#include <bulwark/mysql.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>

#include <mysql.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

int callers = 8;
constexpr int keys = 1000;
const std::string table = "bench_mysql_vs_raw";
double seconds = 1;

std::string key_of(int i) { return "key-" + std::to_string(i); }

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "mysql_vs_raw: %s\n", what.c_str());
  std::exit(1);
}

template <class T> T run(asio::io_context& ctx, asio::awaitable<T> op) {
  auto wrapped = [](asio::awaitable<T> inner) -> asio::awaitable<std::optional<T>> {
    co_return co_await std::move(inner);
  };
  auto f = asio::co_spawn(ctx, wrapped(std::move(op)), asio::use_future);
  ctx.restart();
  while (f.wait_for(0s) != std::future_status::ready) ctx.run_one();
  return std::move(*f.get());
}

// ---- raw: blocking C API, one thread and one connection per caller -------------------------
struct raw_connection {
  MYSQL* handle = mysql_init(nullptr);
  explicit raw_connection(const bulwark::mysql::config& cfg) {
    unsigned int t = 5;
    my_bool no = 0;
    mysql_options(handle, MYSQL_OPT_CONNECT_TIMEOUT, &t);
    mysql_options(handle, MYSQL_OPT_READ_TIMEOUT, &t);
    mysql_options(handle, MYSQL_OPT_WRITE_TIMEOUT, &t);
    mysql_options(handle, MYSQL_OPT_RECONNECT, &no);
    if (!mysql_real_connect(handle, cfg.host.c_str(), cfg.user.c_str(), cfg.password.c_str(), cfg.database.c_str(),
                            cfg.port, nullptr, 0))
      die(mysql_error(handle));
  }
  ~raw_connection() { mysql_close(handle); }
  MYSQL_STMT* prepare(const std::string& sql) {
    MYSQL_STMT* s = mysql_stmt_init(handle);
    if (mysql_stmt_prepare(s, sql.data(), sql.size())) die(mysql_stmt_error(s));
    return s;
  }
};

MYSQL_BIND blob(void* data, unsigned long capacity, unsigned long* length) {
  MYSQL_BIND b;
  std::memset(&b, 0, sizeof b);
  b.buffer_type = MYSQL_TYPE_BLOB;
  b.buffer = data;
  b.buffer_length = capacity;
  b.length = length;
  return b;
}
MYSQL_BIND u64(unsigned long long* v) {
  MYSQL_BIND b;
  std::memset(&b, 0, sizeof b);
  b.buffer_type = MYSQL_TYPE_LONGLONG;
  b.buffer = v;
  b.is_unsigned = 1;
  return b;
}

template <class Body> double raw_threads(const bulwark::mysql::config& cfg, Body body) {
  std::atomic<long> ops{0};
  std::atomic<bool> stop{false};
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < callers; ++t) {
    threads.emplace_back([&, t] {
      raw_connection c(cfg);
      auto step = body(c, t);
      ++ready;
      while (ready < callers) std::this_thread::yield();
      long n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        step();
        if (!stop.load(std::memory_order_relaxed)) ++n; // only operations finished in the window
      }
      ops += n;
    });
  }
  while (ready < callers) std::this_thread::sleep_for(1ms);
  const auto start = clock_type::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  const auto elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  for (auto& th : threads) th.join();
  return static_cast<double>(ops) / elapsed;
}

double raw_get(const bulwark::mysql::config& cfg) {
  return raw_threads(cfg, [](raw_connection& c, int t) {
    struct state {
      MYSQL_STMT* stmt;
      char key[64];
      unsigned long key_length = 0, value_length = 0;
      char value[4096];
      unsigned long long version = 0;
      int i;
    };
    auto s = std::make_shared<state>();
    s->stmt = c.prepare("SELECT v, version FROM " + table + " WHERE k = ? AND v IS NOT NULL");
    s->i = t;
    return [s] {
      s->i = (s->i + 7) % keys;
      s->key_length = static_cast<unsigned long>(std::snprintf(s->key, sizeof s->key, "key-%d", s->i));
      MYSQL_BIND in[1] = {blob(s->key, s->key_length, &s->key_length)};
      MYSQL_BIND out[2] = {blob(s->value, sizeof s->value, &s->value_length), u64(&s->version)};
      mysql_stmt_bind_param(s->stmt, in);
      if (mysql_stmt_execute(s->stmt)) die(mysql_stmt_error(s->stmt));
      mysql_stmt_bind_result(s->stmt, out);
      int rc, rows = 0;
      while ((rc = mysql_stmt_fetch(s->stmt)) == 0) ++rows;
      if (rc != MYSQL_NO_DATA || rows != 1) die("raw get: no row");
    };
  });
}

double raw_put(const bulwark::mysql::config& cfg, std::vector<unsigned long long>& versions) {
  return raw_threads(cfg, [&versions](raw_connection& c, int t) {
    struct state {
      MYSQL_STMT* stmt;
      std::string key, value = std::string(100, 'w');
      unsigned long key_length = 0, value_length = 0;
      unsigned long long* version;
    };
    auto s = std::make_shared<state>();
    s->stmt = c.prepare("UPDATE " + table +
                        " SET version = LAST_INSERT_ID(version + 1), v = ?, updated_at = NOW(6)"
                        " WHERE k = ? AND version = ? AND v IS NOT NULL");
    s->key = key_of(t);
    s->version = &versions[static_cast<std::size_t>(t)];
    return [s] {
      unsigned long long expected = *s->version;
      MYSQL_BIND in[3] = {blob(s->value.data(), s->value.size(), &s->value_length),
                          blob(s->key.data(), s->key.size(), &s->key_length), u64(&expected)};
      s->value_length = static_cast<unsigned long>(s->value.size());
      s->key_length = static_cast<unsigned long>(s->key.size());
      mysql_stmt_bind_param(s->stmt, in);
      if (mysql_stmt_execute(s->stmt)) die(mysql_stmt_error(s->stmt));
      if (mysql_stmt_affected_rows(s->stmt) != 1) die("raw put: conflict");
      *s->version = mysql_stmt_insert_id(s->stmt);
    };
  });
}

// ---- through mysql::repository: coroutines on io_context threads -----------------------------
// A shard is what an application runs per thread: one io_context, one pool, one repository.
// The callers and the connections are split evenly over the shards.
struct shard {
  shard(const bulwark::mysql::config& cfg, int first, int count)
      : pool(ctx.get_executor(), cfg), first_caller(first), callers(count) {}
  asio::io_context ctx;
  bulwark::mysql::pool pool;
  std::optional<bulwark::mysql::repository> repo;
  int first_caller, callers;
  long ops = 0;
};

std::vector<std::unique_ptr<shard>> make_shards(bulwark::mysql::config cfg, int count) {
  std::vector<std::unique_ptr<shard>> shards;
  for (int s = 0; s < count; ++s) {
    const int first = callers * s / count, last = callers * (s + 1) / count;
    cfg.pool_size = static_cast<std::size_t>(last - first);
    shards.push_back(std::make_unique<shard>(cfg, first, last - first));
    auto opened = run(shards.back()->ctx, bulwark::mysql::repository::open(shards.back()->pool, table));
    if (!opened) die(opened.error().message());
    shards.back()->repo.emplace(std::move(opened).value());
  }
  return shards;
}

/// Runs body(repo, caller) in a loop for every caller for `seconds`; returns total ops/s.
template <class Body> double repository_callers(std::vector<std::unique_ptr<shard>>& shards, Body body) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (auto& sh : shards) {
    sh->ops = 0;
    for (int t = sh->first_caller; t < sh->first_caller + sh->callers; ++t) {
      asio::co_spawn(
          sh->ctx,
          [&stop, &body, s = sh.get(), t]() -> asio::awaitable<void> {
            while (!stop.load(std::memory_order_relaxed)) {
              co_await body(*s->repo, t);
              if (!stop.load(std::memory_order_relaxed)) ++s->ops; // only those finished in the window
            }
          },
          asio::detached);
    }
  }
  const auto start = clock_type::now();
  for (auto& sh : shards) {
    threads.emplace_back([s = sh.get()] {
      s->ctx.restart();
      s->ctx.run();
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  const auto elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  for (auto& th : threads) th.join();
  long ops = 0;
  for (auto& sh : shards) ops += sh->ops;
  return static_cast<double>(ops) / elapsed;
}

} // namespace

int main() {
  if (const char* s = std::getenv("BENCH_SECONDS")) seconds = std::atof(s);
  if (const char* s = std::getenv("BENCH_CALLERS")) callers = std::max(1, std::atoi(s));
  const int rounds = std::getenv("BENCH_ROUNDS") ? std::max(1, std::atoi(std::getenv("BENCH_ROUNDS"))) : 6;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads =
      std::getenv("BENCH_THREADS") ? std::max(1, std::atoi(std::getenv("BENCH_THREADS"))) : std::min(cores, callers);
  auto cfg = bulwark::mysql::config::from_env();
  if (!std::getenv("BULWARK_MYSQL_PORT")) die("BULWARK_MYSQL_* not set (scripts/servers/mysql.sh up)");

  auto single = make_shards(cfg, 1);
  auto per_core = make_shards(cfg, threads);
  auto& repo = *single.front()->repo;
  auto& ctx = single.front()->ctx;
  std::vector<unsigned long long> versions(static_cast<std::size_t>(callers));
  for (int i = 0; i < keys; ++i) {
    auto v = run(ctx, repo.put(key_of(i), std::string(100, 'v'), std::nullopt));
    if (!v) die(v.error().message());
    if (i < callers) versions[static_cast<std::size_t>(i)] = v.value();
  }

  auto get_body = [](bulwark::mysql::repository& r, int t) -> asio::awaitable<void> {
    thread_local int i = 0;
    i = (i + 7 + t) % keys;
    auto got = co_await r.get(key_of(i));
    if (!got || !got.value()) die("repository get failed");
  };
  // Each caller CASes its own key with the version it last got, so callers never conflict;
  // every side continues from the versions the previous run left.
  auto put_body = [&versions](bulwark::mysql::repository& r, int t) -> asio::awaitable<void> {
    auto& expected = versions[static_cast<std::size_t>(t)];
    auto v = co_await r.put(key_of(t), std::string(100, 'w'), bulwark::version_t{expected});
    if (!v) die("repository put failed: " + v.error().message());
    expected = v.value();
  };

  // raw get, get 1 thread, get per core, raw put, put 1 thread, put per core
  double total[6] = {0, 0, 0, 0, 0, 0};
  for (int round = 0; round < rounds; ++round) {
    total[0] += raw_get(cfg);
    total[1] += repository_callers(single, get_body);
    total[2] += repository_callers(per_core, get_body);
    total[3] += raw_put(cfg, versions);
    total[4] += repository_callers(single, put_body);
    total[5] += repository_callers(per_core, put_body);
  }
  for (auto* shards : {&single, &per_core}) {
    for (auto& sh : *shards) {
      sh->repo.reset();
      (void)run(sh->ctx, [&]() -> asio::awaitable<bulwark::result<void>> {
        co_await sh->pool.stop();
        co_return bulwark::ok();
      }());
    }
  }

  double mean[6];
  for (int i = 0; i < 6; ++i) mean[i] = total[i] / rounds;
  std::printf("callers: %d, connections: %d each side, keys: %d, value: 100 B, %d alternating slices of %g s (mean)\n",
              callers, callers, keys, rounds, seconds);
  std::printf("get  raw C API, %d threads, blocking:              %10.0f ops/s\n", callers, mean[0]);
  std::printf("get  mysql::repository, 1 io_context thread:      %10.0f ops/s  (%.2f)\n", mean[1], mean[1] / mean[0]);
  std::printf("get  mysql::repository, %d io_context threads:     %10.0f ops/s  (%.2f)\n", threads, mean[2],
              mean[2] / mean[0]);
  std::printf("put  raw C API CAS, %d threads, blocking:          %10.0f ops/s\n", callers, mean[3]);
  std::printf("put  mysql::repository CAS, 1 io_context thread:  %10.0f ops/s  (%.2f)\n", mean[4], mean[4] / mean[3]);
  std::printf("put  mysql::repository CAS, %d io_context threads: %10.0f ops/s  (%.2f)\n", threads, mean[5],
              mean[5] / mean[3]);
  std::printf("ratio_get_single_thread: %.2f\n", mean[1] / mean[0]);
  std::printf("ratio_put_single_thread: %.2f\n", mean[4] / mean[3]);
  std::printf("ratio_get: %.2f\n", mean[2] / mean[0]);
  std::printf("ratio_put: %.2f\n", mean[5] / mean[3]);
}
