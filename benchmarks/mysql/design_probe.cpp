// The measurement behind mysql::pool's design (docs/mysql.md): point get (prepared SELECT by
// primary key, 100-byte values) with 8 concurrent callers, 8 connections, on the raw C API.
//  raw      8 threads, one blocking connection each
//  offload  8 coroutines on one io_context, blocking connections on an 8-thread pool
//  nb       8 coroutines on one io_context, non-blocking API driven by asio (re-register per wait)
//  nb_keep  same, descriptor registered once per connection
#include <asio.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mysql.h>
#include <string>
#include <thread>
#include <vector>
using namespace std::chrono;
static const char *H, *U, *P, *D;
static unsigned PORT;
static const int N = 8;
static const int KEYS = 1000;
static double SECS = 3;
static_assert(N > 0);

MYSQL* open(bool nb) {
  MYSQL* m = mysql_init(nullptr);
  unsigned t = 2;
  mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &t);
  mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &t);
  mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &t);
  if (nb) mysql_options(m, MYSQL_OPT_NONBLOCK, nullptr);
  if (!mysql_real_connect(m, H, U, P, D, PORT, nullptr, 0)) {
    fprintf(stderr, "%s\n", mysql_error(m));
    exit(1);
  }
  return m;
}
struct stmt_t {
  MYSQL_STMT* s;
  char key[64];
  unsigned long klen;
  char val[2048];
  unsigned long vlen;
  unsigned long long ver;
  MYSQL_BIND in[1], out[2];
  stmt_t(MYSQL* m) {
    s = mysql_stmt_init(m);
    const char* q = "SELECT v, version FROM probe WHERE k = ?";
    if (mysql_stmt_prepare(s, q, strlen(q))) {
      fprintf(stderr, "%s\n", mysql_stmt_error(s));
      exit(1);
    }
    memset(in, 0, sizeof in);
    memset(out, 0, sizeof out);
    in[0].buffer_type = MYSQL_TYPE_BLOB;
    in[0].buffer = key;
    in[0].length = &klen;
    out[0].buffer_type = MYSQL_TYPE_BLOB;
    out[0].buffer = val;
    out[0].buffer_length = sizeof val;
    out[0].length = &vlen;
    out[1].buffer_type = MYSQL_TYPE_LONGLONG;
    out[1].is_unsigned = 1;
    out[1].buffer = &ver;
    mysql_stmt_bind_param(s, in);
    mysql_stmt_bind_result(s, out);
  }
  void set(int i) { klen = snprintf(key, sizeof key, "key-%d", i); }
  bool blocking_get() {
    if (mysql_stmt_execute(s)) return false;
    int r = mysql_stmt_fetch(s);
    mysql_stmt_free_result(s);
    return r == 0;
  }
};
void setup() {
  MYSQL* m = open(false);
  mysql_query(m, "DROP TABLE IF EXISTS probe");
  mysql_query(m, "CREATE TABLE probe (k VARBINARY(255) PRIMARY KEY, v LONGBLOB, version BIGINT UNSIGNED)");
  std::string v(100, 'x');
  for (int i = 0; i < KEYS; ++i) {
    std::string q = "INSERT INTO probe VALUES ('key-" + std::to_string(i) + "', '" + v + "', 1)";
    mysql_query(m, q.c_str());
  }
  mysql_close(m);
}
double raw() {
  std::atomic<long> ops{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < N; ++t)
    ts.emplace_back([&, t] {
      MYSQL* m = open(false);
      stmt_t st(m);
      long n = 0;
      int i = t;
      while (!stop) {
        st.set(i = (i + 7) % KEYS);
        if (!st.blocking_get()) abort();
        ++n;
      }
      ops += n;
      mysql_stmt_close(st.s);
      mysql_close(m);
    });
  std::this_thread::sleep_for(duration<double>(SECS));
  stop = true;
  for (auto& t : ts) t.join();
  return ops / SECS;
}
template <class F> auto offload(asio::thread_pool& pool, F f) {
  return asio::async_initiate<decltype(asio::use_awaitable), void(bool)>(
      [&pool](auto h, F f) {
        auto work = asio::make_work_guard(asio::get_associated_executor(h));
        asio::post(pool, [h = std::move(h), f = std::move(f), work = std::move(work)]() mutable {
          bool r = f();
          auto ex = work.get_executor();
          asio::post(ex, [h = std::move(h), r]() mutable { std::move(h)(r); });
        });
      },
      asio::use_awaitable, std::move(f));
}
double offloaded() {
  asio::io_context ctx;
  asio::thread_pool pool(N);
  long ops = 0;
  bool stop = false;
  std::vector<MYSQL*> ms;
  std::vector<std::unique_ptr<stmt_t>> sts;
  for (int t = 0; t < N; ++t) {
    ms.push_back(open(false));
    sts.push_back(std::make_unique<stmt_t>(ms.back()));
  }
  for (int t = 0; t < N; ++t)
    asio::co_spawn(
        ctx,
        [&, t]() -> asio::awaitable<void> {
          int i = t;
          auto* st = sts[t].get();
          while (!stop) {
            st->set(i = (i + 7) % KEYS);
            if (!co_await offload(pool, [st] { return st->blocking_get(); })) abort();
            ++ops;
          }
        },
        asio::detached);
  asio::steady_timer tm(ctx, duration_cast<nanoseconds>(duration<double>(SECS)));
  tm.async_wait([&](auto) { stop = true; });
  ctx.run();
  pool.join();
  return ops / SECS;
}
struct nbconn {
  MYSQL* m;
  asio::posix::stream_descriptor sd;
  bool keep;
  bool registered = false;
  nbconn(asio::io_context& c, MYSQL* m, bool keep) : m(m), sd(c), keep(keep) {}
  asio::awaitable<int> wait(int status) {
    if (!registered) {
      sd.assign(mysql_get_socket(m));
      registered = true;
    }
    co_await sd.async_wait((status & MYSQL_WAIT_WRITE) ? asio::posix::stream_descriptor::wait_write
                                                       : asio::posix::stream_descriptor::wait_read,
                           asio::use_awaitable);
    if (!keep) {
      sd.release();
      registered = false;
    }
    co_return status&(MYSQL_WAIT_READ | MYSQL_WAIT_WRITE);
  }
};
double nonblocking(bool keep) {
  asio::io_context ctx;
  long ops = 0;
  bool stop = false;
  std::vector<std::unique_ptr<nbconn>> cs;
  std::vector<std::unique_ptr<stmt_t>> sts;
  for (int t = 0; t < N; ++t) {
    MYSQL* m = open(true);
    sts.push_back(std::make_unique<stmt_t>(m));
    cs.push_back(std::make_unique<nbconn>(ctx, m, keep));
  }
  for (int t = 0; t < N; ++t)
    asio::co_spawn(
        ctx,
        [&, t]() -> asio::awaitable<void> {
          int i = t;
          auto* st = sts[t].get();
          auto* c = cs[t].get();
          while (!stop) {
            st->set(i = (i + 7) % KEYS);
            int r;
            int s = mysql_stmt_execute_start(&r, st->s);
            while (s) s = mysql_stmt_execute_cont(&r, st->s, co_await c->wait(s));
            if (r) abort();
            s = mysql_stmt_fetch_start(&r, st->s);
            while (s) s = mysql_stmt_fetch_cont(&r, st->s, co_await c->wait(s));
            if (r) abort();
            my_bool b;
            s = mysql_stmt_free_result_start(&b, st->s);
            while (s) s = mysql_stmt_free_result_cont(&b, st->s, co_await c->wait(s));
            ++ops;
          }
        },
        asio::detached);
  asio::steady_timer tm(ctx, duration_cast<nanoseconds>(duration<double>(SECS)));
  tm.async_wait([&](auto) { stop = true; });
  ctx.run();
  return ops / SECS;
}
int main() {
  if (!getenv("BULWARK_MYSQL_PORT")) return 1;
  H = getenv("BULWARK_MYSQL_HOST");
  U = getenv("BULWARK_MYSQL_USER");
  P = getenv("BULWARK_MYSQL_PASSWORD");
  D = getenv("BULWARK_MYSQL_DATABASE");
  PORT = atoi(getenv("BULWARK_MYSQL_PORT"));
  setup();
  for (int round = 0; round < 2; ++round) {
    printf("raw      %.0f ops/s\n", raw());
    printf("offload  %.0f ops/s\n", offloaded());
    printf("nb       %.0f ops/s\n", nonblocking(false));
    printf("nb_keep  %.0f ops/s\n", nonblocking(true));
  }
}
