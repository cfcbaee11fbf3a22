// Publish N messages of S bytes through kafka::event_bus and through a raw librdkafka produce
// loop with the same producer configuration; then consume N messages both ways (a raw
// rd_kafka_consumer_poll loop storing every offset, as bulwark does, against an event_bus
// subscription). Prints msgs/s and the ratios bulwark/raw.
//   bulwark_kafka_bench [messages] [bytes] [window] [rounds] [batch] [small_window] [small_messages]
//   (cluster: $BULWARK_KAFKA_BOOTSTRAP)
// The publish phase runs four ways in `rounds` rounds (default 3) that rotate their order: raw
// librdkafka keeping `window` messages waiting for their reports; bulwark publish per message
// with `window` coroutines; bulwark publish_batch of `batch` messages, window/batch batches in
// flight; and, for reference, raw librdkafka with no bound but its queue (the baseline before
// issue 17's third pass). `ratio:` is raw / publish_batch; `ratio_per_message_publish:` is raw
// / publish, both at the same in-flight bound. Each way prints its client CPU per message (the
// whole process, and the main thread's part), minor page faults, and its CPU per message by
// kind of thread (main, librdkafka's rdk:main, its rdk:broker<n> threads, the delivery-report
// poll threads), counted from the moment its clock starts; before them, the producer settings
// in which the raw loop's handle and kafka::producer's differ (rd_kafka_conf_dump). Then
// `small_messages` (default
// min(messages, 9,000)) go out with `small_window` (default 64) in flight, in the same rounds
// alternating raw (a loop that keeps that many waiting for their reports) and publish per
// message (that many coroutines), on topics of their own: `ratio_per_message_publish_64:`.
// Then a consumer whose handler awaits a simulated round trip (a 100 us timer per call) reads
// min(N, 50,000) of bulwark's messages again in a fresh group twice: subscribe (a wait per
// message) and subscribe_batch (max_batch 256, a wait per batch). `ratio_batch:` is batch
// msgs/s / per-message msgs/s.
#include <bulwark/kafka.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>

namespace {

namespace kafka = bulwark::kafka;
using clock_type = std::chrono::steady_clock;

/// CPU seconds this process used so far (all threads): the client's own cost.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/// The threads of this process by kind: the main (publishing) thread, librdkafka's main
/// thread (rdk:main), its broker threads (rdk:broker<n>), its other threads, and the rest
/// (the delivery-report poll threads: kafka::producer's and the raw loop's).
enum thread_kind { main_thread, rdk_main, rdk_broker, rdk_other, poll_threads, thread_kinds };
constexpr const char* thread_kind_names[thread_kinds] = {"main", "rdk:main", "rdk:broker*", "rdk:other", "poll"};

/// CPU seconds each kind of thread used so far, from the kernel's per-thread run time
/// (/proc/self/task/<tid>/schedstat, nanoseconds; a thread that ended is no longer counted, so
/// a phase's difference is exact only for threads living through it: every thread of a
/// producer does).
std::array<double, thread_kinds> cpu_by_thread_kind() {
  std::array<double, thread_kinds> out{};
  const long self = static_cast<long>(getpid());
  DIR* dir = opendir("/proc/self/task");
  if (!dir) return out;
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const std::string task = std::string("/proc/self/task/") + e->d_name;
    char name[64] = {};
    unsigned long long ns = 0;
    if (FILE* f = std::fopen((task + "/comm").c_str(), "r")) {
      if (!std::fgets(name, sizeof name, f)) name[0] = 0;
      std::fclose(f);
    }
    if (FILE* f = std::fopen((task + "/schedstat").c_str(), "r")) {
      if (std::fscanf(f, "%llu", &ns) != 1) ns = 0;
      std::fclose(f);
    }
    const std::string_view n(name, std::strcspn(name, "\n"));
    const thread_kind kind = std::atol(e->d_name) == self  ? main_thread
                             : n == "rdk:main"             ? rdk_main
                             : n.starts_with("rdk:broker") ? rdk_broker
                             : n.starts_with("rdk:")       ? rdk_other
                                                           : poll_threads;
    out[kind] += static_cast<double>(ns) / 1e9;
  }
  closedir(dir);
  return out;
}

/// What a phase cost the client: CPU of the whole process, CPU of the calling (main) thread,
/// the process's minor page faults, CPU by kind of thread.
struct client_cost {
  double cpu = 0, main_cpu = 0;
  long faults = 0;
  std::array<double, thread_kinds> threads{};
  static client_cost now() {
    rusage self{}, thread{};
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_THREAD, &thread);
    const auto secs = [](const rusage& u) {
      return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
             static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
    };
    return {secs(self), secs(thread), self.ru_minflt, cpu_by_thread_kind()};
  }
  client_cost& operator+=(const client_cost& o) {
    cpu += o.cpu;
    main_cpu += o.main_cpu;
    faults += o.faults;
    for (int k = 0; k < thread_kinds; ++k) threads[k] += o.threads[k];
    return *this;
  }
  client_cost operator-(const client_cost& o) const {
    client_cost d{cpu - o.cpu, main_cpu - o.main_cpu, faults - o.faults, {}};
    for (int k = 0; k < thread_kinds; ++k) d.threads[k] = threads[k] - o.threads[k];
    return d;
  }
};

/// What the last publish phase cost from the moment its clock started to its last report.
client_cost last_cost;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "kafka_vs_raw: %s\n", what.c_str());
  std::exit(1);
}

std::string key_of(long i) { return "key-" + std::to_string(i % 1000); }

// The producer settings kafka::producer uses, for the raw loop.
rd_kafka_conf_t* raw_producer_conf(const kafka::config& cfg) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  const std::pair<const char*, std::string> props[] = {
      {"bootstrap.servers", cfg.bootstrap_servers},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"message.timeout.ms", std::to_string(cfg.delivery_timeout.count())},
      {"linger.ms", std::to_string(cfg.linger.count())},
      {"queue.buffering.max.messages", std::to_string(cfg.max_queued_messages)},
      {"reconnect.backoff.ms", "100"},
      {"reconnect.backoff.max.ms", "1000"},
  };
  for (const auto& [name, value] : props)
    if (rd_kafka_conf_set(conf, name, value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) die(errstr);
  return conf;
}

std::atomic<long> raw_delivered{0}, raw_failed{0};
std::atomic<long> raw_reported{0}; // delivered + failed, waited on by a windowed raw loop
// A windowed raw loop sleeps here until the poll thread counted more reports. A mutex and a
// condition variable, not atomic::wait: with GCC 12's libstdc++ a windowed run once spun in
// atomic<long>::wait for 15 minutes after the last report had been counted (a lost wake-up).
std::mutex reported_mutex;
std::condition_variable reported_changed;
void wait_for_reports_beyond(long seen) {
  std::unique_lock lock(reported_mutex);
  reported_changed.wait(lock, [&] { return raw_reported.load() != seen; });
}

// A raw librdkafka producer with kafka::producer's threading: a poll thread serves the
// delivery reports. Kept for every round, as the bus keeps its producer.
class raw_producer {
public:
  explicit raw_producer(const kafka::config& cfg) {
    char errstr[512];
    rd_kafka_conf_t* conf = raw_producer_conf(cfg);
    rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
      if (m->err)
        ++raw_failed;
      else
        ++raw_delivered;
      raw_reported.fetch_add(1, std::memory_order_release);
    });
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk_) die(errstr);
    // Wakes a windowed publisher once per poll (the reports one rd_kafka_poll served), as
    // kafka::producer hands a poll's reports over in one post.
    poller_ = std::thread([this] {
      long notified = 0;
      while (polling_) {
        rd_kafka_poll(rk_, 50);
        if (const long now = raw_reported.load(); now != notified) {
          notified = now;
          { const std::lock_guard lock(reported_mutex); } // a waiter is asleep or sees the new count
          reported_changed.notify_one();
        }
      }
    });
  }
  ~raw_producer() {
    polling_ = false;
    poller_.join();
    rd_kafka_destroy(rk_);
  }

  // Publishes messages [first, first + count) and waits for their reports; returns seconds.
  double publish(const std::string& topic, long first, long count, const std::string& value) {
    const long target = raw_delivered + raw_failed + count;
    const auto t0 = clock_type::now();
    const auto cost0 = client_cost::now();
    for (long i = first; i < first + count; ++i) {
      const auto key = key_of(i);
      for (;;) {
        const auto err =
            rd_kafka_producev(rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_KEY(key.data(), key.size()),
                              RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) die(rd_kafka_err2str(err));
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
    while (raw_delivered + raw_failed < target) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const double elapsed = seconds_since(t0);
    last_cost = client_cost::now() - cost0;
    if (raw_failed) die(std::to_string(raw_failed.load()) + " raw deliveries failed");
    return elapsed;
  }

  // The same with at most `window` messages waiting for their reports (an API serving
  // `window` requests at a time): it produces while fewer are outstanding, else sleeps until
  // the poll thread counts a report. Returns seconds.
  double publish_windowed(const std::string& topic, long first, long count, const std::string& value, long window) {
    const long base = raw_reported.load();
    const auto t0 = clock_type::now();
    const auto cost0 = client_cost::now();
    for (long i = first; i < first + count; ++i) {
      for (long seen = raw_reported.load(); (i - first) - (seen - base) >= window; seen = raw_reported.load())
        wait_for_reports_beyond(seen);
      const auto key = key_of(i);
      const auto err =
          rd_kafka_producev(rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_KEY(key.data(), key.size()),
                            RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()), RD_KAFKA_V_END);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) die(rd_kafka_err2str(err));
    }
    for (long seen = raw_reported.load(); seen - base < count; seen = raw_reported.load())
      wait_for_reports_beyond(seen);
    const double elapsed = seconds_since(t0);
    last_cost = client_cost::now() - cost0;
    if (raw_failed) die(std::to_string(raw_failed.load()) + " raw deliveries failed");
    return elapsed;
  }

  rd_kafka_t* native_handle() const noexcept { return rk_; }

private:
  rd_kafka_t* rk_ = nullptr;
  std::atomic<bool> polling_{true};
  std::thread poller_;
};

/// A handle's effective configuration (rd_kafka_conf_dump), name -> value.
std::map<std::string, std::string> effective_conf(rd_kafka_t* rk) {
  std::map<std::string, std::string> out;
  std::size_t count = 0;
  const char** dump = rd_kafka_conf_dump(const_cast<rd_kafka_conf_t*>(rd_kafka_conf(rk)), &count);
  for (std::size_t i = 0; i + 1 < count; i += 2) out[dump[i]] = dump[i + 1];
  rd_kafka_conf_dump_free(dump, count);
  return out;
}

/// Prints the settings in which two producers' effective configurations differ.
void print_conf_differences(rd_kafka_t* raw, rd_kafka_t* bulwark) {
  const auto a = effective_conf(raw), b = effective_conf(bulwark);
  std::map<std::string, std::pair<std::string, std::string>> differ;
  for (const auto& [name, value] : a)
    if (auto it = b.find(name); it == b.end() || it->second != value) differ[name].first = value;
  for (const auto& [name, value] : b)
    if (auto it = a.find(name); it == a.end() || it->second != value) differ[name].second = value;
  std::printf("  producer settings that differ (raw / kafka::producer):%s\n", differ.empty() ? " none" : "");
  for (const auto& [name, values] : differ)
    std::printf("    %s: %s / %s\n", name.c_str(), values.first.c_str(), values.second.c_str());
}

// Publishes messages [first, first + count) through the bus with `window` publishers, each
// awaiting its delivery before it takes the next message (in index order, as the raw loop
// produces them; a publisher that took every window-th message, as this did before, kept one
// key, since window is a multiple of the 1,000 keys, and so one partition, and the two loops
// produced different key orders); returns seconds. The publishers
// (coroutines, as an API's requests are) are spawned before the clock starts and wait at a
// gate that opens when it starts: creating them is the caller's cost, not the publish's (the
// raw loop pays nothing for its callers either); spawning 50,000 per round (about 7 publishes
// each) had put their frames' allocations and page faults in the timed span. Waking each at
// the gate and its end still fall inside it.
double bulwark_publish(kafka::event_bus& bus, asio::io_context& ctx, const std::string& topic, long first, long count,
                       const std::string& value, long window) {
  std::atomic<long> done{0}, failed{0};
  long next = first; // the next message to publish, taken by whichever publisher is free
  asio::steady_timer gate(ctx, asio::steady_timer::time_point::max());
  auto lane = [&]() -> asio::awaitable<void> {
    co_await gate.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    for (long i = next++; i < first + count; i = next++) {
      bulwark::message m{key_of(i), value, {}};
      auto d = co_await bus.publish(topic, std::move(m));
      if (!d) ++failed;
      if (++done == count) ctx.stop();
    }
  };
  for (long l = 0; l < window && l < count; ++l) asio::co_spawn(ctx, lane(), asio::detached);
  ctx.restart();
  ctx.poll(); // every publisher starts and waits at the gate
  const auto t0 = clock_type::now();
  const auto cost0 = client_cost::now();
  gate.cancel();
  ctx.run(); // until the last delivery stops it (a plain run(): no per-handler clock reads)
  const double elapsed = seconds_since(t0);
  last_cost = client_cost::now() - cost0;
  if (failed) die(std::to_string(failed.load()) + " bulwark publishes failed");
  return elapsed;
}

// Publishes messages [first, first + count) through the bus in batches of `batch_size` with
// publish_batch, `window / batch_size` batches in flight; returns seconds.
double bulwark_publish_batched(kafka::event_bus& bus, asio::io_context& ctx, const std::string& topic, long first,
                               long count, const std::string& value, long window, long batch_size) {
  std::atomic<long> done{0}, failed{0};
  const long lanes = std::max(1L, window / batch_size);
  auto lane = [&](long lane_index) -> asio::awaitable<void> {
    for (long b = first + lane_index * batch_size; b < first + count; b += lanes * batch_size) {
      std::vector<bulwark::message> batch;
      const long end = std::min(b + batch_size, first + count);
      batch.reserve(static_cast<std::size_t>(end - b));
      for (long i = b; i < end; ++i) batch.push_back(bulwark::message{key_of(i), value, {}});
      auto results = co_await bus.publish_batch(topic, std::move(batch));
      for (const auto& r : results)
        if (!r) ++failed;
      if ((done += static_cast<long>(results.size())) == count) ctx.stop();
    }
  };
  const auto t0 = clock_type::now();
  const auto cost0 = client_cost::now();
  for (long l = 0; l < lanes && first + l * batch_size < first + count; ++l)
    asio::co_spawn(ctx, lane(l), asio::detached);
  ctx.restart();
  ctx.run();
  const double elapsed = seconds_since(t0);
  last_cost = client_cost::now() - cost0;
  if (failed) die(std::to_string(failed.load()) + " bulwark batched publishes failed");
  return elapsed;
}

double raw_consume(const kafka::config& cfg, const std::string& topic, long n) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  const std::pair<const char*, std::string> props[] = {
      {"bootstrap.servers", cfg.bootstrap_servers},
      {"group.id", topic + "-raw-reader"},
      {"enable.auto.commit", "true"},
      {"auto.commit.interval.ms", "1000"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "false"},
      {"auto.offset.reset", "earliest"},
      {"fetch.wait.max.ms", "100"},
  };
  for (const auto& [name, value] : props)
    if (rd_kafka_conf_set(conf, name, value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) die(errstr);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (!rk) die(errstr);
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  long seen = 0;
  clock_type::time_point t0;
  std::size_t bytes = 0;
  while (seen < n) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (!m) continue;
    if (!m->err) {
      if (seen == 0) t0 = clock_type::now();
      bytes += m->len;
      rd_kafka_offset_store(m->rkt, m->partition, m->offset);
      ++seen;
    }
    rd_kafka_message_destroy(m);
  }
  const double elapsed = seconds_since(t0);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  if (bytes == 0) die("raw consumer read nothing");
  return elapsed;
}

/// How the consumer's handler works: at once, or awaiting a simulated round trip (100 us) per
/// call, one message per call or a batch (max_batch 256) per call.
enum class handling { at_once, round_trip_per_message, round_trip_per_batch };
constexpr auto round_trip = std::chrono::microseconds(100);

double bulwark_consume(kafka::event_bus& bus, asio::io_context& ctx, const std::string& topic, long n,
                       handling how = handling::at_once, const std::string& group_suffix = "-bulwark-reader") {
  long seen = 0;
  std::size_t bytes = 0;
  clock_type::time_point t0;
  bulwark::subscribe_options o;
  o.topic = topic;
  o.group = topic + group_suffix;
  o.max_batch = 256;
  std::optional<kafka::event_bus::subscription> sub;
  auto wait_round_trip = [&ctx]() -> asio::awaitable<void> {
    asio::steady_timer t(ctx, round_trip);
    co_await t.async_wait(asio::use_awaitable);
  };
  auto count = [&](const bulwark::envelope& e) {
    if (seen++ == 0) t0 = clock_type::now();
    bytes += e.value.size();
    if (seen == n) ctx.stop();
  };
  bulwark::message_handler one = [&](const bulwark::envelope& e) -> bulwark::task<void> {
    if (how == handling::round_trip_per_message) co_await wait_round_trip();
    count(e);
    co_return bulwark::ok();
  };
  bulwark::batch_handler batch = [&](std::span<const bulwark::envelope> b) -> bulwark::task<void> {
    co_await wait_round_trip();
    for (const auto& e : b) count(e);
    co_return bulwark::ok();
  };
  auto start = [&]() -> asio::awaitable<void> {
    auto subscribing = how == handling::round_trip_per_batch ? bus.subscribe_batch(o, batch) : bus.subscribe(o, one);
    auto s = co_await std::move(subscribing);
    if (!s) die("subscribe: " + s.error().message());
    sub.emplace(std::move(s).value());
  };
  asio::co_spawn(ctx, start(), asio::detached);
  ctx.restart();
  // A watchdog: the handler stops the context at the n-th message, or this after 60 s idle.
  asio::steady_timer watchdog(ctx);
  long last = -1;
  std::function<void()> arm = [&] {
    watchdog.expires_after(std::chrono::seconds(60));
    watchdog.async_wait([&](std::error_code ec) {
      if (ec) return;
      if (seen == last)
        die("bulwark consumer stalled at " + std::to_string(seen) + " of " + std::to_string(n) +
            (sub && sub->member() ? ", last error: " + sub->member()->last_error().message() : std::string()));
      last = seen;
      arm();
    });
  };
  arm();
  ctx.run();
  watchdog.cancel();
  const double elapsed = seconds_since(t0);
  bool stopped = false;
  auto stop = [&]() -> asio::awaitable<void> {
    co_await sub->stop();
    stopped = true;
  };
  asio::co_spawn(ctx, stop(), asio::detached);
  ctx.restart();
  while (!stopped) ctx.run_one_for(std::chrono::milliseconds(10));
  if (bytes == 0) die("bulwark consumer read nothing");
  return elapsed;
}

} // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const long n = argc > 1 ? std::atol(argv[1]) : 1'000'000;
  const std::size_t size = argc > 2 ? static_cast<std::size_t>(std::atol(argv[2])) : 100;
  const long window = argc > 3 ? std::atol(argv[3]) : 50'000;
  const int rounds = std::max(1, argc > 4 ? std::atoi(argv[4]) : 3);
  const long batch_size = std::max(1L, argc > 5 ? std::atol(argv[5]) : 1000);
  const long small_window = std::max(1L, argc > 6 ? std::atol(argv[6]) : 64);
  const long small_n = std::max(1L, argc > 7 ? std::atol(argv[7]) : std::min(n, 9'000L));
  auto cfg = kafka::config::from_env();
  if (const char* b = std::getenv("BENCH_BUFFERED")) cfg.max_buffered_per_partition = std::strtoul(b, nullptr, 10);
  const std::string value(size, 'x');
  const std::string run = std::to_string(std::random_device{}() % 1'000'000);
  const std::string raw_topic = "bench-raw-" + run, bulwark_topic = "bench-bulwark-" + run;

  asio::io_context ctx;
  auto bus = kafka::event_bus::create(ctx.get_executor(), cfg);
  if (!bus) die(bus.error().message());
  for (const auto& t : {raw_topic, bulwark_topic}) {
    auto created = bus.value().admin().create_topic_blocking({t, -1, -1, {}});
    if (!created) die("create " + t + ": " + created.error().message());
  }
  std::printf("kafka_vs_raw: %ld messages of %zu bytes, bootstrap %s, window %ld\n", n, size,
              cfg.bootstrap_servers.c_str(), window);

  // Publish in rounds that rotate the order of the three ways (raw, bulwark publish per
  // message, bulwark publish_batch), so that each meets the brokers in the same states (fresh
  // topics, growing logs, JVM warm-up); each way's time and client CPU are sums over rounds.
  const std::string batched_topic = bulwark_topic + "-batched";
  {
    auto created = bus.value().admin().create_topic_blocking({batched_topic, -1, -1, {}});
    if (!created) die("create " + batched_topic + ": " + created.error().message());
  }
  // Raw (way 0) keeps `window` messages waiting for their reports, as publish (`window`
  // coroutines) and publish_batch (window / batch batches) do; way 3, raw with no bound but
  // librdkafka's queue (the baseline before issue 17's third pass), is printed for reference.
  const std::string unbounded_topic = raw_topic + "-unbounded";
  {
    auto created = bus.value().admin().create_topic_blocking({unbounded_topic, -1, -1, {}});
    if (!created) die("create " + unbounded_topic + ": " + created.error().message());
  }
  constexpr int ways = 4;
  double secs[ways] = {0, 0, 0, 0};
  client_cost costs[ways];
  const char* names[ways] = {"raw", "publish", "publish_batch", "raw unbounded"};
  // The same with `small_window` messages in flight (an ingestion API's concurrency), on topics
  // of their own: raw keeps that many waiting for reports, bulwark runs that many publishers.
  const std::string raw_small_topic = raw_topic + "-w" + std::to_string(small_window),
                    bulwark_small_topic = bulwark_topic + "-w" + std::to_string(small_window);
  for (const auto& t : {raw_small_topic, bulwark_small_topic}) {
    auto created = bus.value().admin().create_topic_blocking({t, -1, -1, {}});
    if (!created) die("create " + t + ": " + created.error().message());
  }
  double small_secs[2] = {0, 0}, small_cpus[2] = {0, 0};
  {
    raw_producer raw(cfg);
    print_conf_differences(raw.native_handle(), bus.value().producer().native_handle());
    // Warm-up, not counted: every way connects and the brokers' JVMs warm up before timing.
    const long warm = std::max(1000L, n / 10);
    raw.publish_windowed(raw_topic, 0, warm, value, window);
    raw.publish(unbounded_topic, 0, warm, value);
    bulwark_publish(bus.value(), ctx, bulwark_topic, 0, warm, value, std::min(window, warm));
    bulwark_publish_batched(bus.value(), ctx, batched_topic, 0, warm, value, window, batch_size);
    std::printf("  warm-up: %ld messages each way, not counted\n", warm);
    long first = 0;
    for (int r = 0; r < rounds; ++r) {
      const long count = r + 1 < rounds ? n / rounds : n - first;
      double round_secs[ways] = {0, 0, 0, 0};
      for (int k = 0; k < ways; ++k) {
        const int way = (r + k) % ways;
        if (way == 0)
          round_secs[0] = raw.publish_windowed(raw_topic, first, count, value, window);
        else if (way == 3)
          round_secs[3] = raw.publish(unbounded_topic, first, count, value);
        else if (way == 1)
          round_secs[1] = bulwark_publish(bus.value(), ctx, bulwark_topic, first, count, value, window);
        else
          round_secs[2] =
              bulwark_publish_batched(bus.value(), ctx, batched_topic, first, count, value, window, batch_size);
        costs[way] += last_cost;
      }
      for (int w = 0; w < ways; ++w) secs[w] += round_secs[w];
      std::printf("  publish round %d (%ld messages each, %s first): raw %8.0f, publish %8.0f, publish_batch %8.0f, "
                  "raw unbounded %8.0f msgs/s\n",
                  r + 1, count, names[r % ways], count / round_secs[0], count / round_secs[1], count / round_secs[2],
                  count / round_secs[3]);
      first += count;
    }
    raw.publish_windowed(raw_small_topic, 0, warm / 10, value, small_window);
    bulwark_publish(bus.value(), ctx, bulwark_small_topic, 0, warm / 10, value, small_window);
    first = 0;
    for (int r = 0; r < rounds; ++r) {
      const long count = r + 1 < rounds ? small_n / rounds : small_n - first;
      double round_secs[2] = {0, 0};
      for (int k = 0; k < 2; ++k) {
        const int way = (r + k) % 2;
        round_secs[way] =
            way == 0 ? raw.publish_windowed(raw_small_topic, first, count, value, small_window)
                     : bulwark_publish(bus.value(), ctx, bulwark_small_topic, first, count, value, small_window);
        small_cpus[way] += last_cost.cpu;
        small_secs[way] += round_secs[way];
      }
      std::printf("  publish round %d, %ld in flight (%ld messages each, %s first): raw %8.0f, publish %8.0f msgs/s\n",
                  r + 1, small_window, count, r % 2 ? "publish" : "raw", count / round_secs[0], count / round_secs[1]);
      first += count;
    }
  }
  const double raw_pub = secs[0], bulwark_pub = secs[2];
  // Client CPU (getrusage: every thread of this process, librdkafka's included) per message, the
  // main thread's part (the publishing loop, the completions), minor page faults per 1,000.
  const auto us_per = [](double cpu_s, long count) { return cpu_s * 1e6 / static_cast<double>(count); };
  const auto cost_of = [&](int way) {
    char line[160];
    std::snprintf(line, sizeof line, "client cpu %.2f s, %.2f us/msg, main thread %.2f us/msg, %.1f faults/1k msgs",
                  costs[way].cpu, us_per(costs[way].cpu, n), us_per(costs[way].main_cpu, n),
                  static_cast<double>(costs[way].faults) * 1000.0 / static_cast<double>(n));
    std::string text(line);
    text += "; by thread us/msg:";
    for (int k = 0; k < thread_kinds; ++k) {
      std::snprintf(line, sizeof line, " %s %.2f", thread_kind_names[k], us_per(costs[way].threads[k], n));
      text += line;
    }
    return text;
  };
  std::printf("publish raw librdkafka, %ld in flight: %10.0f msgs/s  (%.2f s, %s)\n", window, n / secs[0], secs[0],
              cost_of(0).c_str());
  std::printf("publish kafka::event_bus, publish per message (%ld coroutines): %10.0f msgs/s  (%.2f s, %s)\n", window,
              n / secs[1], secs[1], cost_of(1).c_str());
  std::printf("publish kafka::event_bus, publish_batch (%ld per batch, %ld in flight): %10.0f msgs/s  (%.2f s, %s)\n",
              batch_size, std::max(1L, window / batch_size) * batch_size, n / secs[2], secs[2], cost_of(2).c_str());
  std::printf("publish raw librdkafka, no bound but its queue (%zu), for reference: %10.0f msgs/s  (%.2f s, %s; "
              "publish per message at %.3f of it)\n",
              cfg.max_queued_messages, n / secs[3], secs[3], cost_of(3).c_str(), secs[3] / secs[1]);
  std::printf("publish raw librdkafka, %ld in flight:      %10.0f msgs/s  (%.2f s, client cpu %.2f s, %.2f us/msg)\n",
              small_window, small_n / small_secs[0], small_secs[0], small_cpus[0], us_per(small_cpus[0], small_n));
  std::printf("publish kafka::event_bus, publish per message (%ld coroutines): %10.0f msgs/s  (%.2f s, client cpu "
              "%.2f s, %.2f us/msg)\n",
              small_window, small_n / small_secs[1], small_secs[1], small_cpus[1], us_per(small_cpus[1], small_n));

  double cpu = 0;
  cpu = cpu_seconds();
  const double raw_con = raw_consume(cfg, raw_topic, n);
  const double raw_con_cpu = cpu_seconds() - cpu;
  std::printf("consume raw librdkafka:      %10.0f msgs/s  (%.2f s, client cpu %.2f s incl. group join)\n", n / raw_con,
              raw_con, raw_con_cpu);
  cpu = cpu_seconds();
  const double bulwark_con = bulwark_consume(bus.value(), ctx, bulwark_topic, n);
  const double bulwark_con_cpu = cpu_seconds() - cpu;
  std::printf("consume kafka::event_bus:    %10.0f msgs/s  (%.2f s, client cpu %.2f s incl. group join)\n",
              n / bulwark_con, bulwark_con, bulwark_con_cpu);

  // A handler bounded by a round trip per call: one message per call against a batch per call,
  // on the same messages (bulwark's topic), each in a fresh group.
  const long round_trip_n = std::min(n, 50'000L);
  const double per_message = bulwark_consume(bus.value(), ctx, bulwark_topic, round_trip_n,
                                             handling::round_trip_per_message, "-round-trip-per-message");
  std::printf("consume, handler awaiting 100 us per call, subscribe:       %10.0f msgs/s  (%ld messages, %.2f s)\n",
              round_trip_n / per_message, round_trip_n, per_message);
  const double per_batch = bulwark_consume(bus.value(), ctx, bulwark_topic, round_trip_n,
                                           handling::round_trip_per_batch, "-round-trip-per-batch");
  std::printf("consume, handler awaiting 100 us per call, subscribe_batch: %10.0f msgs/s  (%ld messages, %.2f s)\n",
              round_trip_n / per_batch, round_trip_n, per_batch);

  bool stopped = false;
  auto stop = [&]() -> asio::awaitable<void> {
    co_await bus.value().stop();
    stopped = true;
  };
  asio::co_spawn(ctx, stop(), asio::detached);
  ctx.restart();
  while (!stopped) ctx.run_one_for(std::chrono::milliseconds(10));

  // The topics go with the run: on a shared cluster (kafka_vs_raw.sh with KAFKA=shared) they
  // would otherwise keep a few hundred MB per run.
  for (const auto& t : {raw_topic, bulwark_topic, batched_topic, unbounded_topic, raw_small_topic, bulwark_small_topic})
    if (auto deleted = bus.value().admin().delete_topic_blocking(t); !deleted)
      std::fprintf(stderr, "kafka_vs_raw: delete %s: %s\n", t.c_str(), deleted.error().message().c_str());

  std::printf("ratio_per_message_publish: %.3f\n", secs[0] / secs[1]);
  std::printf("ratio_per_message_publish_%ld: %.3f\n", small_window, small_secs[0] / small_secs[1]);
  std::printf("ratio: %.3f\n", raw_pub / bulwark_pub);
  std::printf("ratio_consume: %.3f\n", raw_con / bulwark_con);
  std::printf("ratio_batch: %.3f\n", per_message / per_batch);
  return 0;
}
