// write_through on the memory models, the fault decorators and manual clocks (steady and wall,
// moved together): durable and pending writes, the commit point, reads (hit, miss, populate,
// one load per key, stale within the hard limit), the cache-version rule against an older
// populate, the breaker, reconcile and a restart from the snapshot during an outage; every step
// of a write bounded by its deadline (a cache or an invalidation publish that never answers).
#include <bulwark/flows/near_cache.hpp>
#include <bulwark/flows/write_through.hpp>
#include <bulwark/manual_clock.hpp>
#include <bulwark/memory/cache.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/testing/faults.hpp>

#include "support/run.hpp"

#include <asio/io_context.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace flows = bulwark::flows;
namespace kit = bulwark::testing;
using kit::op;

namespace {

using mem_cache = bulwark::memory::basic_cache<bulwark::manual_clock>;
using repo_t = kit::faulty_repository<bulwark::memory::repository>;
using cache_t = kit::faulty_cache<mem_cache>;
using bus_t = kit::faulty_bus<bulwark::memory::event_bus>;
using flow_t = flows::write_through<repo_t, cache_t, bus_t>;

const std::string topic = "wt.retry";

struct world {
  asio::io_context ctx;
  bulwark::clock clk = bulwark::clock::manual();
  // 2026-03-04: order stamps count milliseconds from 2024, so the wall must be later.
  bulwark::manual_clock wall{std::chrono::system_clock::time_point(std::chrono::seconds(1772600767))};
  bulwark::memory::repository db;
  repo_t repo{db, clk};
  std::unique_ptr<mem_cache> shared_cache = std::make_unique<mem_cache>(mem_cache::options{}, wall);
  std::unique_ptr<cache_t> cache = std::make_unique<cache_t>(*shared_cache, clk);
  bulwark::memory::event_bus mem_bus{ctx.get_executor(), bus_options()};
  bus_t bus{mem_bus, clk};

  bulwark::memory::event_bus::options bus_options() {
    bulwark::memory::event_bus::options o;
    o.clock = clk;
    return o;
  }

  template <class Flow = flow_t> typename Flow::options options(std::uint16_t node = 1) {
    typename Flow::options o;
    o.retry_topic = topic;
    o.soft_ttl = 30s;
    o.hard_limit = 1h;
    o.repository_timeout = 1s;
    o.node = node;
    o.clock = clk;
    o.wall = [w = wall] { return w.now(); };
    o.breaker.minimum_calls = 1000; // tests that want the breaker to open say so
    o.breaker.window_size = 1000;
    return o;
  }

  std::unique_ptr<flow_t> make(flow_t::options o) {
    auto f = std::make_unique<flow_t>(repo, *cache, bus, std::move(o));
    EXPECT_TRUE(run(f->start()));
    return f;
  }

  template <class T> T run(asio::awaitable<T> a) { return bulwark::test::run(ctx, std::move(a)); }
  bulwark::deadline budget() { return bulwark::deadline::after(10s, clk); }
  void advance(std::chrono::milliseconds d) {
    wall.advance(d);
    clk.advance(d);
    settle();
  }
  void settle() {
    ctx.restart();
    ctx.poll();
  }
  template <class T> std::future<std::optional<T>> spawn(asio::awaitable<T> a) {
    return bulwark::test::spawn(ctx.get_executor(), std::move(a));
  }

  // The frame the repository holds under key.
  std::optional<flows::frame> stored(const std::string& key) {
    auto row = db.get_now(key).value();
    if (!row) return std::nullopt;
    return flows::decode(row->value).value();
  }
  std::optional<bulwark::cached> in_cache(const std::string& key) { return shared_cache->get_now(key).value(); }

  // The retry messages published so far (read by a fresh group from the earliest offset).
  std::vector<flows::retry_request> retry_messages(std::size_t expected) {
    std::vector<flows::retry_request> seen;
    auto sub = run(mem_bus.subscribe(bulwark::subscribe_options{topic, bulwark::test::unique_name("check")},
                                     [&seen](const bulwark::envelope& e) -> bulwark::task<void> {
                                       auto r = flows::parse_retry_message(e);
                                       if (!r) co_return r.error();
                                       seen.push_back(std::move(r).value());
                                       co_return bulwark::ok();
                                     }))
                   .value();
    run(bulwark::test::eventually([&] { return seen.size() >= expected; }, 10s));
    run(sub.stop());
    return seen;
  }
};

} // namespace

TEST(write_through, durable_write_lands_in_repository_and_cache_with_the_stamp) {
  world w;
  auto flow = w.make(w.options());
  auto receipt = w.run(flow->write("k", "v1", w.budget()));
  ASSERT_TRUE(receipt) << receipt.error();
  EXPECT_EQ(receipt.value().outcome, flows::write_state::durable);
  auto row = w.stored("k");
  ASSERT_TRUE(row);
  EXPECT_EQ(row->value, "v1");
  EXPECT_EQ(row->stamp, receipt.value().stamp);
  // A write that brings no request id gets 15 URL-safe characters (std::string's inline buffer).
  EXPECT_EQ(row->request_id.size(), bulwark::detail::request_id_chars);
  EXPECT_EQ(row->request_id.find_first_not_of(bulwark::detail::request_id_alphabet), std::string::npos)
      << row->request_id;
  EXPECT_EQ(row->state, flows::write_state::durable);
  auto c = w.in_cache("k");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->version, receipt.value().stamp.value);
  // A read is a hit: the repository is not asked.
  const auto gets = w.repo.faults().calls(op::get);
  auto r = w.run(flow->read("k", w.budget()));
  ASSERT_TRUE(r && r.value());
  EXPECT_EQ(r.value()->value, "v1");
  EXPECT_FALSE(r.value()->stale);
  EXPECT_FALSE(r.value()->pending);
  EXPECT_EQ(w.repo.faults().calls(op::get), gets);
  EXPECT_EQ(flow->stats().hits, 1u);
  // A given request id is kept; a second write of the key is newer and needs no read (the
  // version is known).
  auto second = w.run(flow->write("k", "v2", w.budget(), "my-request"));
  ASSERT_TRUE(second);
  EXPECT_GT(second.value().stamp, receipt.value().stamp);
  EXPECT_EQ(w.stored("k")->request_id, "my-request");
  EXPECT_EQ(w.repo.faults().calls(op::get), gets);
  auto too_long = w.run(flow->write("k", "v", w.budget(), std::string(65, 'x')));
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error(), bulwark::errc::invalid_argument);
  // The next write without one gets a new id.
  ASSERT_TRUE(w.run(flow->write("k", "v3", w.budget())));
  EXPECT_NE(w.stored("k")->request_id, row->request_id);
  EXPECT_EQ(w.stored("k")->request_id.size(), bulwark::detail::request_id_chars);
}

TEST(write_through, request_ids_option_names_the_writes_and_an_over_long_one_is_refused) {
  world w;
  auto o = w.options();
  std::string next = "from-the-option";
  o.request_ids = [&next] { return next; };
  auto flow = w.make(o);
  ASSERT_TRUE(w.run(flow->write("k", "v1", w.budget())));
  EXPECT_EQ(w.stored("k")->request_id, "from-the-option");
  next = std::string(flows::max_request_id + 1, 'x');
  auto refused = w.run(flow->write("k", "v2", w.budget()));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), bulwark::errc::invalid_argument);
  EXPECT_EQ(w.stored("k")->value, "v1") << "a refused write must not be stored";
  next = std::string(flows::max_request_id, 'y'); // the limit itself is fine
  ASSERT_TRUE(w.run(flow->write("k", "v3", w.budget())));
  EXPECT_EQ(w.stored("k")->request_id, next);
}

TEST(write_through, repository_down_the_write_is_pending_on_the_bus_and_readable) {
  world w;
  auto flow = w.make(w.options());
  ASSERT_TRUE(w.run(flow->write("k", "old", w.budget())));
  const auto known = w.db.get_now("k").value()->version;
  w.repo.faults().fail(op::every, bulwark::errc::unavailable);
  auto receipt = w.run(flow->write("k", "new", w.budget()));
  ASSERT_TRUE(receipt) << receipt.error();
  EXPECT_EQ(receipt.value().outcome, flows::write_state::pending);
  EXPECT_EQ(w.stored("k")->value, "old");
  EXPECT_EQ(flow->pending_count(), 1u);
  EXPECT_EQ(flow->stats().retry_published, 1u);

  auto messages = w.retry_messages(1);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].key, "k");
  EXPECT_EQ(messages[0].f.value, "new");
  EXPECT_EQ(messages[0].f.state, flows::write_state::pending);
  EXPECT_EQ(messages[0].f.stamp, receipt.value().stamp);
  EXPECT_EQ(messages[0].f.request_id.size(), bulwark::detail::request_id_chars);
  EXPECT_EQ(messages[0].known_version, known);

  auto r = w.run(flow->read("k", w.budget()));
  ASSERT_TRUE(r && r.value());
  EXPECT_EQ(r.value()->value, "new");
  EXPECT_TRUE(r.value()->pending);
  EXPECT_EQ(w.in_cache("k")->version, receipt.value().stamp.value);
}

TEST(write_through, bus_down_too_is_an_error_and_nothing_is_accepted) {
  world w;
  auto flow = w.make(w.options());
  w.repo.faults().fail(op::every, bulwark::errc::timeout);
  w.bus.faults().fail(op::publish, bulwark::errc::rejected);
  auto receipt = w.run(flow->write("k", "v", w.budget()));
  ASSERT_FALSE(receipt);
  EXPECT_EQ(receipt.error(), bulwark::errc::rejected);
  EXPECT_FALSE(w.in_cache("k")) << "a write nobody keeps must not be readable";
  EXPECT_EQ(flow->pending_count(), 0u);
  EXPECT_EQ(flow->stats().pending_writes, 0u);
  EXPECT_EQ(w.mem_bus.end_offset(topic, w.mem_bus.partition_of("k")), 0);
}

// Regression: the cache put after the repository took the write was not bounded by the write's
// deadline, so a cache that never answers held a durable write forever. The answer comes at the
// deadline: durable (the repository has it; the cache is a copy), the put counted as an error.
TEST(write_through, a_cache_put_that_never_answers_does_not_hold_a_durable_write_past_its_deadline) {
  world w;
  auto flow = w.make(w.options());
  w.cache->faults().hang(op::put);
  auto r = w.spawn(flow->write("k", "v", bulwark::deadline::after(2s, w.clk)));
  w.settle();
  ASSERT_NE(r.wait_for(0s), std::future_status::ready) << "the write did not wait for the cache";
  w.advance(2s);
  ASSERT_EQ(r.wait_for(0s), std::future_status::ready) << "the write outlived its deadline";
  auto written = *r.get();
  ASSERT_TRUE(written) << written.error().message();
  EXPECT_EQ(written.value().outcome, flows::write_state::durable);
  ASSERT_TRUE(w.stored("k"));
  EXPECT_EQ(w.stored("k")->value, "v");
  EXPECT_EQ(flow->stats().cache_errors, 1u);
  w.cache->faults().clear(op::put);
}

// The same while the repository is down: the retry message is published (the commit point), the
// pending cache put hangs, the write answers pending at its deadline.
TEST(write_through, a_cache_put_that_never_answers_does_not_hold_a_pending_write_past_its_deadline) {
  world w;
  auto flow = w.make(w.options());
  w.repo.faults().fail(op::every, bulwark::errc::unavailable);
  w.cache->faults().hang(op::put);
  auto r = w.spawn(flow->write("k", "v", bulwark::deadline::after(2s, w.clk)));
  w.settle();
  ASSERT_NE(r.wait_for(0s), std::future_status::ready) << "the write did not wait for the cache";
  w.advance(2s);
  ASSERT_EQ(r.wait_for(0s), std::future_status::ready) << "the write outlived its deadline";
  auto written = *r.get();
  ASSERT_TRUE(written) << written.error().message();
  EXPECT_EQ(written.value().outcome, flows::write_state::pending);
  EXPECT_EQ(w.retry_messages(1).size(), 1u);
  EXPECT_EQ(flow->pending_count(), 1u);
  w.cache->faults().clear(op::put);
}

// A near cache whose invalidation publish never completes (Kafka unreachable: a real producer
// waits for its delivery timeout, 30 s): the shared cache and the repository took the write,
// which answers durable at its deadline instead of waiting for the bus.
TEST(write_through, a_near_cache_invalidation_that_never_completes_does_not_hold_a_write_past_its_deadline) {
  world w;
  bus_t invalidations{w.mem_bus, w.clk};
  invalidations.faults().hang(op::publish);
  using near_t = flows::near_cache<mem_cache, bus_t>;
  near_t::options n;
  n.topic = "wt.invalidations";
  n.clock = w.clk;
  n.wall_clock = [wall = w.wall] { return wall.now(); };
  near_t near(*w.shared_cache, invalidations, n);
  using near_flow_t = flows::write_through<repo_t, near_t, bus_t>;
  near_flow_t flow(w.repo, near, w.bus, w.options<near_flow_t>());
  ASSERT_TRUE(w.run(flow.start()));
  auto r = w.spawn(flow.write("k", "v", bulwark::deadline::after(2s, w.clk)));
  w.settle();
  ASSERT_NE(r.wait_for(0s), std::future_status::ready) << "the write did not wait for the invalidation";
  EXPECT_EQ(invalidations.faults().calls(op::publish), 1u);
  w.advance(2s);
  ASSERT_EQ(r.wait_for(0s), std::future_status::ready) << "the write outlived its deadline";
  auto written = *r.get();
  ASSERT_TRUE(written) << written.error().message();
  EXPECT_EQ(written.value().outcome, flows::write_state::durable);
  ASSERT_TRUE(w.stored("k"));
  EXPECT_EQ(w.stored("k")->value, "v");
  ASSERT_TRUE(w.in_cache("k"));
  EXPECT_EQ(flow.stats().cache_errors, 1u);
  invalidations.faults().clear(op::publish);
  w.settle();
}

TEST(write_through, a_miss_loads_populates_and_then_hits) {
  world w;
  auto flow = w.make(w.options());
  ASSERT_TRUE(w.db.put_now("foreign", "raw bytes", std::nullopt)); // no frame: durable, stamp 0
  auto r = w.run(flow->read("foreign", w.budget()));
  ASSERT_TRUE(r && r.value()) << (r ? "" : r.error().message());
  EXPECT_EQ(r.value()->value, "raw bytes");
  EXPECT_EQ(r.value()->stamp.value, 0u);
  EXPECT_FALSE(r.value()->stale);
  EXPECT_EQ(flow->stats().misses, 1u);
  EXPECT_EQ(flow->stats().repository_loads, 1u);
  ASSERT_TRUE(w.in_cache("foreign"));
  auto again = w.run(flow->read("foreign", w.budget()));
  ASSERT_TRUE(again && again.value());
  EXPECT_EQ(again.value()->value, "raw bytes");
  EXPECT_EQ(flow->stats().hits, 1u);
  EXPECT_EQ(flow->stats().repository_loads, 1u);
  // Past the soft TTL the repository is asked again.
  w.advance(31s);
  ASSERT_TRUE(w.run(flow->read("foreign", w.budget())));
  EXPECT_EQ(flow->stats().repository_loads, 2u);
  // Absent everywhere: nullopt.
  auto none = w.run(flow->read("absent", w.budget()));
  ASSERT_TRUE(none);
  EXPECT_FALSE(none.value());
}

TEST(write_through, concurrent_misses_share_one_repository_get) {
  world w;
  auto flow = w.make(w.options());
  ASSERT_TRUE(w.db.put_now("k", flows::encode({flows::write_state::durable, {12345}, "r", "v"}), std::nullopt));
  w.repo.faults().hang(op::get);
  std::vector<std::future<std::optional<bulwark::result<std::optional<flows::read_result>>>>> readers;
  for (int i = 0; i < 5; ++i) readers.push_back(w.spawn(flow->read("k", w.budget())));
  w.settle();
  EXPECT_EQ(w.repo.faults().calls(op::get), 1u);
  EXPECT_EQ(w.repo.faults().hung(op::get), 1u);
  w.repo.faults().release(op::get);
  w.settle();
  for (auto& r : readers) {
    ASSERT_EQ(r.wait_for(0s), std::future_status::ready);
    auto got = *r.get();
    ASSERT_TRUE(got && got.value());
    EXPECT_EQ(got.value()->value, "v");
  }
  EXPECT_EQ(w.repo.faults().calls(op::get), 1u);
}

TEST(write_through, stale_serve_with_age_up_to_the_hard_limit) {
  world w;
  auto flow = w.make(w.options());
  ASSERT_TRUE(w.run(flow->write("k", "v", w.budget())));
  w.advance(31s);
  w.repo.faults().fail(op::every, bulwark::errc::unavailable);
  auto r = w.run(flow->read("k", w.budget()));
  ASSERT_TRUE(r && r.value()) << (r ? "" : r.error().message());
  EXPECT_EQ(r.value()->value, "v");
  EXPECT_TRUE(r.value()->stale);
  EXPECT_EQ(r.value()->age, 31s);
  EXPECT_EQ(flow->stats().stale_serves, 1u);
  // The cache down as well: this process's own copy still serves.
  w.cache->faults().fail(op::every);
  auto mine = w.run(flow->read("k", w.budget()));
  ASSERT_TRUE(mine && mine.value());
  EXPECT_TRUE(mine.value()->stale);
  w.cache->faults().clear_all();
  // Past the hard limit nothing is served.
  w.advance(1h);
  auto too_old = w.run(flow->read("k", w.budget()));
  ASSERT_FALSE(too_old);
  EXPECT_EQ(too_old.error(), bulwark::errc::unavailable);
  // Nothing known at all: the repository's error.
  EXPECT_EQ(w.run(flow->read("never", w.budget())).error(), bulwark::errc::unavailable);
}

TEST(write_through, cache_down_the_repository_answers) {
  world w;
  auto flow = w.make(w.options());
  w.cache->faults().fail(op::every, bulwark::errc::unavailable);
  auto receipt = w.run(flow->write("k", "v", w.budget()));
  ASSERT_TRUE(receipt);
  EXPECT_EQ(receipt.value().outcome, flows::write_state::durable);
  auto r = w.run(flow->read("k", w.budget()));
  ASSERT_TRUE(r && r.value()) << (r ? "" : r.error().message());
  EXPECT_EQ(r.value()->value, "v");
  EXPECT_FALSE(r.value()->stale);
  EXPECT_GE(flow->stats().cache_errors, 2u);
}

TEST(write_through, an_older_populate_never_replaces_a_pending_newer_write) {
  world w;
  auto a = w.make(w.options(1));
  auto b = w.make(w.options(2)); // another replica sharing repository, cache and bus
  ASSERT_TRUE(w.run(a->write("k", "old", w.budget())));
  w.repo.faults().fail(op::every);
  auto pending = w.run(a->write("k", "new", w.budget()));
  ASSERT_TRUE(pending);
  ASSERT_EQ(pending.value().outcome, flows::write_state::pending);
  w.repo.faults().clear_all(); // back, the retry not replayed yet
  w.advance(31s);              // the pending entry is past the soft TTL: reads ask the repository
  const auto gets = w.repo.faults().calls(op::get);
  for (auto* flow : {a.get(), b.get()}) {
    auto r = w.run(flow->read("k", w.budget()));
    ASSERT_TRUE(r && r.value());
    EXPECT_EQ(r.value()->value, "new");
    EXPECT_TRUE(r.value()->pending);
    EXPECT_EQ(w.in_cache("k")->version, pending.value().stamp.value) << "the populate of the older value won";
  }
  EXPECT_EQ(w.repo.faults().calls(op::get), gets + 2) << "both replicas loaded the older value";
  // With the cache down, this process's pending index still answers for it.
  w.cache->faults().fail(op::every);
  auto r = w.run(a->read("k", w.budget()));
  ASSERT_TRUE(r && r.value());
  EXPECT_EQ(r.value()->value, "new");
}

TEST(write_through, an_open_breaker_keeps_reads_off_the_repository) {
  world w;
  auto o = w.options();
  o.breaker.minimum_calls = 2;
  o.breaker.window_size = 2;
  o.breaker.failure_rate_threshold = 1.0; // opens on two failures in a row
  o.breaker.open_duration = 60s;
  auto flow = w.make(o);
  ASSERT_TRUE(w.run(flow->write("k", "v", w.budget())));
  w.advance(31s);
  w.repo.faults().hang(op::every); // a dead repository that accepts connections
  for (int i = 0; i < 2; ++i) {
    auto r = w.spawn(flow->read("k", w.budget()));
    w.settle();
    ASSERT_NE(r.wait_for(0s), std::future_status::ready) << "the read did not wait for the repository";
    w.advance(1s); // the repository timeout
    ASSERT_EQ(r.wait_for(0s), std::future_status::ready);
    auto got = *r.get();
    ASSERT_TRUE(got && got.value());
    EXPECT_TRUE(got.value()->stale);
  }
  EXPECT_EQ(flow->breaker().current(), bulwark::circuit_breaker::state::open);
  // From now on the manual clock stands still: a call that waited on the hung repository (its
  // timeout is on that clock) would never finish, and test::run would fail after 5 s.
  const auto gets = w.repo.faults().calls(op::get);
  auto got = bulwark::test::run(w.ctx, flow->read("k", w.budget()), 5s);
  ASSERT_TRUE(got && got.value());
  EXPECT_TRUE(got.value()->stale);
  EXPECT_EQ(w.repo.faults().calls(op::get), gets);
  // Writes are accepted pending at once too.
  auto write = bulwark::test::run(w.ctx, flow->write("k", "v2", w.budget()), 5s);
  ASSERT_TRUE(write);
  EXPECT_EQ(write.value().outcome, flows::write_state::pending);
  w.repo.faults().release(op::every);
}

// While the breaker is open a read does not start a repository load at all (no shared load,
// no call refused inside it): the stale copy, or the breaker's refusal when none is held.
TEST(write_through, an_open_breaker_serves_stale_without_starting_a_load) {
  world w;
  auto o = w.options();
  o.breaker.minimum_calls = 2;
  o.breaker.window_size = 2;
  o.breaker.failure_rate_threshold = 1.0;
  o.breaker.open_duration = 60s;
  auto flow = w.make(o);
  ASSERT_TRUE(w.run(flow->write("k", "v", w.budget())));
  w.advance(31s);
  w.repo.faults().fail(op::every, bulwark::errc::unavailable);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(w.run(flow->read("k", w.budget())));
  ASSERT_EQ(flow->breaker().current(), bulwark::circuit_breaker::state::open);
  const auto loads = flow->stats().repository_loads;
  const auto gets = w.repo.faults().calls(op::get);
  auto r = w.run(flow->read("k", w.budget()));
  ASSERT_TRUE(r && r.value());
  EXPECT_TRUE(r.value()->stale);
  EXPECT_EQ(r.value()->value, "v");
  auto none = w.run(flow->read("never", w.budget()));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error(), bulwark::errc::circuit_open);
  EXPECT_NE(none.error().message().find("circuit breaker"), std::string::npos) << none.error().message();
  EXPECT_EQ(flow->stats().repository_loads, loads) << "a load started while the breaker was open";
  EXPECT_EQ(w.repo.faults().calls(op::get), gets);
  // Past open_duration the breaker lets a probe through: the read asks the repository again.
  w.repo.faults().clear_all();
  w.advance(60s);
  auto probed = w.run(flow->read("k", w.budget()));
  ASSERT_TRUE(probed && probed.value());
  EXPECT_FALSE(probed.value()->stale);
  EXPECT_EQ(flow->stats().repository_loads, loads + 1);
}

// A read whose deadline has already passed does not call the cache (counted as a cache error,
// a miss); the repository call then runs with a zero budget, which what completes without
// suspending (the memory model) still answers.
TEST(write_through, a_read_past_its_deadline_skips_the_cache) {
  world w;
  auto flow = w.make(w.options());
  ASSERT_TRUE(w.run(flow->write("k", "v", w.budget())));
  const auto cache_gets = w.cache->faults().calls(op::get);
  const auto errors = flow->stats().cache_errors;
  auto r = w.run(flow->read("k", bulwark::deadline{w.clk.now(), w.clk}));
  ASSERT_TRUE(r && r.value()) << (r ? "" : r.error().message());
  EXPECT_EQ(r.value()->value, "v");
  EXPECT_FALSE(r.value()->stale);
  EXPECT_EQ(w.cache->faults().calls(op::get), cache_gets) << "the cache was called past the deadline";
  EXPECT_EQ(flow->stats().cache_errors, errors + 1);
  EXPECT_EQ(flow->stats().misses, 1u);
  EXPECT_EQ(flow->stats().hits, 0u);
}

TEST(write_through, reconcile_writes_pending_entries_and_skips_superseded_ones) {
  world w;
  auto a = w.make(w.options(1));
  auto b = w.make(w.options(2));
  w.repo.faults().fail(op::every);
  auto k1 = w.run(a->write("k1", "a1", w.budget()));
  auto k2 = w.run(a->write("k2", "a2", w.budget()));
  ASSERT_TRUE(k1 && k2);
  ASSERT_EQ(a->pending_count(), 2u);
  EXPECT_EQ(w.run(a->reconcile(w.budget())).value().failed, 2u) << "still down: both stay pending";
  EXPECT_EQ(a->pending_count(), 2u);
  w.repo.faults().clear_all();
  w.advance(5ms);
  auto newer = w.run(b->write("k2", "b2", w.budget())); // a later write by another replica
  ASSERT_TRUE(newer);
  ASSERT_EQ(newer.value().outcome, flows::write_state::durable);
  ASSERT_GT(newer.value().stamp, k2.value().stamp);

  auto report = w.run(a->reconcile(w.budget()));
  ASSERT_TRUE(report);
  EXPECT_EQ(report.value().written, 1u);
  EXPECT_EQ(report.value().superseded, 1u);
  EXPECT_EQ(report.value().failed, 0u);
  EXPECT_EQ(a->pending_count(), 0u);
  EXPECT_EQ(w.stored("k1")->value, "a1");
  EXPECT_EQ(w.stored("k1")->stamp, k1.value().stamp);
  EXPECT_EQ(w.stored("k2")->value, "b2");
  auto cached = flows::decode(w.in_cache("k1")->value).value();
  EXPECT_EQ(cached.state, flows::write_state::durable);
  EXPECT_EQ(w.in_cache("k1")->version, k1.value().stamp.value);
  // Once more: nothing left to do.
  auto again = w.run(a->reconcile(w.budget())).value();
  EXPECT_EQ(again.written + again.superseded + again.failed, 0u);
}

TEST(write_through, a_background_reconcile_writes_this_replicas_pending_entries_once_the_repository_is_back) {
  world w;
  auto o = w.options(1);
  o.name = "channels";
  o.metrics = std::make_shared<bulwark::metrics::registry>();
  o.reconcile_period = 2s;
  auto a = w.make(o);
  auto b = w.make(w.options(2)); // no period: its pending entry waits for a reconcile() call
  w.repo.faults().fail(op::every);
  auto k1 = w.run(a->write("k1", "a1", w.budget()));
  ASSERT_TRUE(w.run(b->write("k2", "b2", w.budget())));
  ASSERT_TRUE(k1);
  ASSERT_EQ(a->pending_count(), 1u);
  auto repository_calls = [&w] { return w.repo.faults().calls(op::get) + w.repo.faults().calls(op::put); };
  const auto calls_down = repository_calls();
  w.advance(2s);
  EXPECT_EQ(a->pending_count(), 1u) << "still down: it stays pending";
  EXPECT_GT(repository_calls(), calls_down) << "the first period's run did not try";
  w.repo.faults().clear_all();
  w.advance(2s);
  EXPECT_EQ(a->pending_count(), 0u);
  ASSERT_TRUE(w.stored("k1"));
  EXPECT_EQ(w.stored("k1")->value, "a1");
  EXPECT_EQ(w.stored("k1")->stamp, k1.value().stamp);
  EXPECT_EQ(flows::decode(w.in_cache("k1")->value).value().state, flows::write_state::durable);
  EXPECT_EQ(b->pending_count(), 1u);
  EXPECT_FALSE(w.stored("k2"));
  // Nothing pending: a period makes no repository call.
  const auto calls_idle = repository_calls();
  w.advance(2s);
  EXPECT_EQ(repository_calls(), calls_idle);
  const auto text = o.metrics->expose();
  for (const char* line : {"bulwark_write_through_reconciled_total{name=\"channels\",outcome=\"written\"} 1",
                           "bulwark_write_through_reconciled_total{name=\"channels\",outcome=\"failed\"} 1"})
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  // Stopped: the loop no longer runs.
  ASSERT_TRUE(w.run(a->stop()));
  w.repo.faults().fail(op::every);
  ASSERT_TRUE(w.run(a->write("k3", "a3", w.budget())));
  w.repo.faults().clear_all();
  w.advance(2s);
  EXPECT_EQ(a->pending_count(), 1u);
  EXPECT_FALSE(w.stored("k3"));
}

TEST(write_through, a_write_older_than_the_repository_copy_is_not_written) {
  world w;
  auto o = w.options(1);
  auto a = w.make(o);
  // A replica whose clock runs a minute ahead wrote the key.
  ASSERT_TRUE(w.db.put_now(
      "k",
      flows::encode({flows::write_state::durable, {a->stamps().now().value + (60'000ull << 23)}, "ahead", "future"}),
      std::nullopt));
  auto receipt = w.run(a->write("k", "late", w.budget()));
  ASSERT_TRUE(receipt);
  EXPECT_EQ(w.stored("k")->value, "future");
  // The clock moved past it: the next write wins.
  auto next = w.run(a->write("k", "later", w.budget()));
  ASSERT_TRUE(next);
  EXPECT_EQ(w.stored("k")->value, "later");
}

TEST(write_through, restart_during_an_outage_serves_the_snapshot) {
  const auto dir = std::filesystem::temp_directory_path() / bulwark::test::unique_name("wt-snapshot");
  std::filesystem::create_directories(dir);
  world w;
  auto o = w.options();
  o.snapshot = flow_t::snapshot_options{dir / "lkg", 10s};
  std::vector<std::string> snapshot_errors;
  o.on_snapshot_error = [&](const bulwark::error& e) { snapshot_errors.push_back(e.message()); };
  {
    auto first = w.make(o);
    ASSERT_TRUE(w.run(first->write("durable", "d", w.budget())));
    w.repo.faults().fail(op::every);
    auto p = w.run(first->write("pending", "p", w.budget()));
    ASSERT_TRUE(p);
    ASSERT_EQ(p.value().outcome, flows::write_state::pending);
    ASSERT_TRUE(w.run(first->stop()));
  }
  // The process restarts with an empty (memory) cache while the repository is still down.
  w.shared_cache = std::make_unique<mem_cache>(mem_cache::options{}, w.wall);
  w.cache = std::make_unique<cache_t>(*w.shared_cache, w.clk);
  w.advance(2min);
  auto second = w.make(o);
  const auto gets = w.repo.faults().calls(op::get);
  ASSERT_TRUE(w.in_cache("pending")) << "a pending entry goes back into the cache";
  EXPECT_EQ(second->pending_count(), 1u);
  auto d = w.run(second->read("durable", w.budget()));
  ASSERT_TRUE(d && d.value()) << (d ? "" : d.error().message());
  EXPECT_EQ(d.value()->value, "d");
  EXPECT_TRUE(d.value()->stale);
  EXPECT_GE(d.value()->age, 2min);
  auto p = w.run(second->read("pending", w.budget()));
  ASSERT_TRUE(p && p.value());
  EXPECT_EQ(p.value()->value, "p");
  EXPECT_TRUE(p.value()->pending);
  EXPECT_GT(w.repo.faults().calls(op::get), gets);
  EXPECT_TRUE(snapshot_errors.empty());
  // Back: reconcile writes the pending entry the snapshot carried.
  w.repo.faults().clear_all();
  EXPECT_EQ(w.run(second->reconcile(w.budget())).value().written, 1u);
  EXPECT_EQ(w.stored("pending")->value, "p");
  ASSERT_TRUE(w.run(second->stop()));

  // A corrupt snapshot is reported and ignored.
  { std::ofstream(dir / "lkg", std::ios::trunc) << "garbage"; }
  snapshot_errors.clear();
  auto third = w.make(o);
  EXPECT_EQ(snapshot_errors.size(), 1u);
  ASSERT_TRUE(w.run(third->read("durable", w.budget())));
  ASSERT_TRUE(w.run(third->stop()));
  std::filesystem::remove_all(dir);
}

TEST(write_through, metrics_follow_hits_misses_stale_serves_and_pending_writes) {
  world w;
  auto o = w.options();
  o.name = "channels";
  o.metrics = std::make_shared<bulwark::metrics::registry>();
  auto flow = w.make(o);
  ASSERT_TRUE(w.run(flow->write("k", "v", w.budget())));
  ASSERT_TRUE(w.run(flow->read("k", w.budget())));
  w.advance(31s);
  w.repo.faults().fail(op::every);
  ASSERT_TRUE(w.run(flow->read("k", w.budget())));
  ASSERT_TRUE(w.run(flow->write("k", "v2", w.budget())));
  const auto text = o.metrics->expose();
  for (const char* line : {"bulwark_write_through_cache_hits_total{name=\"channels\"} 1",
                           "bulwark_write_through_cache_misses_total{name=\"channels\"} 1",
                           "bulwark_write_through_stale_serves_total{name=\"channels\"} 1",
                           "bulwark_write_through_stale_age_seconds_count{name=\"channels\"} 1",
                           "bulwark_write_through_pending_writes_total{name=\"channels\"} 1",
                           "bulwark_write_through_pending_entries{name=\"channels\"} 1",
                           "bulwark_write_through_retry_published_total{name=\"channels\"} 1",
                           "bulwark_write_through_repository_seconds_count{name=\"channels\",op=\"put\"} 2",
                           "bulwark_circuit_breaker_state{name=\"write_through_channels\"}"})
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
}

namespace {

// A repository whose put throws from inside its task (a driver bug: no real server does that on
// cue). write_through's repository calls run through the breaker's permit API: an exception must
// still count as the breaker's failure, and reach the caller.
struct throwing_repository {
  bulwark::memory::repository inner;
  bool throw_on_put = true;
  bulwark::task<std::optional<bulwark::versioned>> get(std::string_view key) { return inner.get(key); }
  bulwark::task<bulwark::version_t> put(std::string_view key, std::string value,
                                        std::optional<bulwark::version_t> expected) {
    if (throw_on_put) throw std::runtime_error("driver bug");
    auto put = co_await inner.put(key, std::move(value), expected);
    co_return put;
  }
  bulwark::task<bool> erase(std::string_view key) { return inner.erase(key); }
  bulwark::task<bulwark::scan_page> scan(std::string_view prefix, std::string_view after, std::size_t limit) {
    return inner.scan(prefix, after, limit);
  }
};

} // namespace

TEST(write_through, a_repository_call_that_throws_counts_as_a_breaker_failure_and_reaches_the_caller) {
  world w;
  throwing_repository repo;
  using throwing_flow = flows::write_through<throwing_repository, cache_t, bus_t>;
  throwing_flow::options o; // as world::options()
  o.retry_topic = topic;
  o.repository_timeout = 1s;
  o.node = 1;
  o.clock = w.clk;
  o.wall = [wall = w.wall] { return wall.now(); };
  o.breaker.minimum_calls = 3;
  o.breaker.window_size = 3;
  throwing_flow flow(repo, *w.cache, w.bus, o);
  // Each write reads the stored frame first (no version known: the get succeeds), then its put
  // throws. Window of 3: after the second write it holds failure, success, failure -> open.
  int thrown = 0;
  for (int i = 0; i < 10 && flow.breaker().current() == bulwark::circuit_breaker::state::closed; ++i) {
    try {
      (void)w.run(flow.write("k" + std::to_string(i), "v", w.budget()));
      ADD_FAILURE() << "write " << i << " did not throw";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "driver bug");
      ++thrown;
    }
  }
  EXPECT_EQ(flow.breaker().current(), bulwark::circuit_breaker::state::open) << "the exceptions were not counted";
  EXPECT_EQ(thrown, 2);
  // Open: the next write is refused by the breaker without calling the repository, so it is
  // accepted pending (the retry topic takes it) instead of throwing.
  auto pending = w.run(flow.write("k9", "v", w.budget()));
  ASSERT_TRUE(pending) << pending.error();
  EXPECT_EQ(pending.value().outcome, flows::write_state::pending);
}

namespace {

// A synchronous repository (bulwark::synchronous_repository) that can be taken down or made to
// throw on cue, which memory::repository cannot. write_through must call it through its plain
// calls only (its tasks fail the test) and still through the breaker.
struct switchable_repository {
  bulwark::memory::repository inner;
  bool down = false, throw_on_put = false;
  int calls = 0;
  bulwark::result<std::optional<bulwark::versioned>> get_now(std::string_view key) {
    ++calls;
    if (down) return bulwark::errc::unavailable;
    return inner.get_now(key);
  }
  bulwark::result<bulwark::version_t> put_now(std::string_view key, std::string value,
                                              std::optional<bulwark::version_t> expected) {
    ++calls;
    if (throw_on_put) throw std::runtime_error("driver bug");
    if (down) return bulwark::errc::unavailable;
    return inner.put_now(key, std::move(value), expected);
  }
  bulwark::task<std::optional<bulwark::versioned>> get(std::string_view) {
    ADD_FAILURE() << "get's task used on a synchronous repository";
    co_return bulwark::errc::unavailable;
  }
  bulwark::task<bulwark::version_t> put(std::string_view, std::string, std::optional<bulwark::version_t>) {
    ADD_FAILURE() << "put's task used on a synchronous repository";
    co_return bulwark::errc::unavailable;
  }
  bulwark::task<bool> erase(std::string_view key) { return inner.erase(key); }
  bulwark::task<bulwark::scan_page> scan(std::string_view prefix, std::string_view after, std::size_t limit) {
    return inner.scan(prefix, after, limit);
  }
};
static_assert(bulwark::synchronous_repository<switchable_repository>);
static_assert(bulwark::synchronous_cache<mem_cache>);

using sync_flow = flows::write_through<switchable_repository, mem_cache, bus_t>;

sync_flow::options sync_options(world& w) { // as world::options(), a breaker that opens after 3
  sync_flow::options o;
  o.retry_topic = topic;
  o.soft_ttl = 30s;
  o.hard_limit = 1h;
  o.repository_timeout = 1s;
  o.node = 1;
  o.clock = w.clk;
  o.wall = [wall = w.wall] { return wall.now(); };
  o.breaker.minimum_calls = 3;
  o.breaker.window_size = 3;
  o.breaker.open_duration = 1h; // open for the whole test once open
  return o;
}

} // namespace

// The copying models' path (memory::repository and memory::cache: the frame encoded into the
// flow's one buffer, copied into the models' buffers, swapped into this process's entry): every
// copy holds the latest frame of its key, across keys and value sizes that alternate.
TEST(write_through, copying_models_hold_each_keys_latest_frame_everywhere) {
  using copying_flow = flows::write_through<bulwark::memory::repository, mem_cache, bus_t>;
  static_assert(bulwark::copying_repository<bulwark::memory::repository> && bulwark::copying_cache<mem_cache>);
  world w;
  copying_flow flow(w.db, *w.shared_cache, w.bus, w.options<copying_flow>());
  const std::vector<std::pair<std::string, std::string>> writes{
      {"a", std::string(100, '1')}, {"b", std::string(100, '2')}, {"a", std::string(100, '3')}, {"b", "short"},
      {"a", std::string(300, '5')}, {"b", std::string(100, '6')}};
  for (const auto& [key, value] : writes) {
    auto r = w.run(flow.write(key, value, w.budget()));
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(r.value().outcome, flows::write_state::durable);
  }
  const std::map<std::string, std::string> latest{{"a", std::string(300, '5')}, {"b", std::string(100, '6')}};
  for (const auto& [key, value] : latest) {
    auto stored = w.stored(key);
    ASSERT_TRUE(stored) << key;
    EXPECT_EQ(stored->value, value) << key;
    EXPECT_EQ(stored->state, flows::write_state::durable);
    auto cached = w.in_cache(key);
    ASSERT_TRUE(cached) << key;
    EXPECT_EQ(cached->value, w.db.get_now(key).value()->value) << key << ": the cache holds another frame";
    EXPECT_EQ(cached->version, stored->stamp.value);
  }
  const auto entries = flow.entries();
  ASSERT_EQ(entries.size(), 2u);
  for (const auto& e : entries) {
    EXPECT_EQ(e.entry.value, w.db.get_now(e.key).value()->value) << e.key << ": this process's copy is another frame";
    EXPECT_EQ(flows::decode(e.entry.value).value().value, latest.at(e.key));
  }
  EXPECT_EQ(flow.stats().cache_errors, 0u);
}

// The memory models' path (plain get_now / put_now calls, no with_timeout thread): writes, hits,
// the breaker counting the repository's failures and refusing once open, stale reads.
TEST(write_through, synchronous_models_are_called_directly_and_still_through_the_breaker) {
  world w;
  switchable_repository repo;
  sync_flow flow(repo, *w.shared_cache, w.bus, sync_options(w));
  auto first = w.run(flow.write("k", "v1", w.budget()));
  ASSERT_TRUE(first) << first.error();
  EXPECT_EQ(first.value().outcome, flows::write_state::durable);
  EXPECT_EQ(repo.calls, 2) << "no version known: the stored frame read first, then the put";
  auto second = w.run(flow.write("k", "v2", w.budget()));
  ASSERT_TRUE(second) << second.error();
  EXPECT_EQ(repo.calls, 3) << "the version known: one put";
  auto hit = w.run(flow.read("k", w.budget()));
  ASSERT_TRUE(hit && hit.value()) << (hit ? std::string("nullopt") : hit.error().message());
  EXPECT_EQ(hit.value()->value, "v2");
  EXPECT_FALSE(hit.value()->stale);
  EXPECT_EQ(flow.stats().hits, 1u);
  EXPECT_EQ(repo.calls, 3) << "a hit does not reach the repository";
  ASSERT_TRUE(w.in_cache("k"));

  repo.down = true;
  int writes = 0;
  for (; writes < 10 && flow.breaker().current() == bulwark::circuit_breaker::state::closed; ++writes) {
    auto pending = w.run(flow.write("k", "v" + std::to_string(3 + writes), w.budget()));
    ASSERT_TRUE(pending) << pending.error();
    EXPECT_EQ(pending.value().outcome, flows::write_state::pending);
  }
  EXPECT_EQ(flow.breaker().current(), bulwark::circuit_breaker::state::open)
      << "the plain calls' failures were not recorded";
  EXPECT_EQ(writes, 2) << "window of 3: success, failure, failure";
  const int before = repo.calls;
  auto refused = w.run(flow.write("j", "v", w.budget()));
  ASSERT_TRUE(refused) << refused.error();
  EXPECT_EQ(refused.value().outcome, flows::write_state::pending);
  EXPECT_EQ(repo.calls, before) << "the open breaker refuses without calling the repository";

  w.advance(31s); // the cache entry is past soft_ttl: a read must ask the repository, refused
  auto stale = w.run(flow.read("k", w.budget()));
  ASSERT_TRUE(stale && stale.value()) << (stale ? std::string("nullopt") : stale.error().message());
  EXPECT_TRUE(stale.value()->stale);
  EXPECT_TRUE(stale.value()->pending);
  EXPECT_EQ(stale.value()->value, "v4");
  EXPECT_EQ(repo.calls, before);
}

TEST(write_through, a_synchronous_repository_call_that_throws_counts_as_a_breaker_failure_and_reaches_the_caller) {
  world w;
  switchable_repository repo;
  sync_flow flow(repo, *w.shared_cache, w.bus, sync_options(w));
  ASSERT_TRUE(w.run(flow.write("k", "v", w.budget()))); // get + put: two successes
  repo.throw_on_put = true;
  try {
    (void)w.run(flow.write("k", "v2", w.budget()));
    ADD_FAILURE() << "the write did not throw";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "driver bug");
  }
  EXPECT_EQ(flow.breaker().current(), bulwark::circuit_breaker::state::closed) << "1 failure of 3";
  EXPECT_THROW((void)w.run(flow.write("k", "v3", w.budget())), std::runtime_error);
  EXPECT_EQ(flow.breaker().current(), bulwark::circuit_breaker::state::open) << "the exceptions were not counted";
}
