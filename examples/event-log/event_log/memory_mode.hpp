#pragma once
// Memory mode: every stage in one process on one memory event bus and three memory
// repositories (validator state, event store, snapshots). No servers; nothing survives a
// restart. main() puts the two HTTP servers in front; the tests call the routers in process.

#include <event_log/pipeline.hpp>
#include <event_log/routes.hpp>

#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <optional>

namespace event_log {

class memory_deployment {
public:
  using bus_type = bulwark::memory::event_bus;
  using repository_type = bulwark::memory::repository;
  using pipeline_type = pipeline<bus_type, repository_type>;

  memory_deployment(asio::any_io_executor ex, const settings& s, pipeline_options o = {})
      : settings_(s), max_in_flight_(o.max_in_flight), admit_timeout_(o.admit_timeout),
        bus_(ex, bus_options(o.metrics)), pipeline_(settings_, bus_, state_, events_, snapshots_, std::move(o)) {
    commands_.types = &settings_;
    commands_.metrics = pipeline_.metrics();
    commands_.mark_accepted = [this](std::string cid, std::string status) -> bulwark::task<void> {
      const std::string status_key = "status:" + cid;
      auto put = co_await snapshots_.put(status_key, std::move(status), bulwark::no_version);
      if (!put) co_return put.error();
      co_return bulwark::ok();
    };
    commands_.forget = [this](std::string cid) -> bulwark::task<void> {
      const std::string status_key = "status:" + cid;
      BOOST_OUTCOME_CO_TRY(co_await snapshots_.erase(status_key));
      co_return bulwark::ok();
    };
    commands_.publish = [this](std::string value) -> bulwark::task<void> {
      bulwark::message m;
      m.key = std::string(command_key);
      m.value = std::move(value);
      auto sent = co_await bus_.publish(pipeline_.topic_name(topic::commands), std::move(m));
      if (!sent) co_return sent.error();
      co_return bulwark::ok();
    };
    if (max_in_flight_ > 0) commands_.admit = [this] { return admit(); };
    queries_.types = &settings_;
    queries_.retention = pipeline_.options().retention;
    queries_.metrics = pipeline_.metrics();
    queries_.get = [this](std::string key) -> bulwark::task<std::optional<bulwark::versioned>> {
      co_return co_await snapshots_.get(key);
    };
    queries_.scan = [this](std::string prefix, std::string after,
                           std::size_t limit) -> bulwark::task<bulwark::scan_page> {
      co_return co_await snapshots_.scan(prefix, after, limit);
    };
  }

  /// Joins the three stages' groups.
  bulwark::task<void> start() {
    BOOST_OUTCOME_CO_TRY(co_await pipeline_.start_validator());
    BOOST_OUTCOME_CO_TRY(co_await pipeline_.start_persister());
    co_return co_await pipeline_.start_materializer();
  }
  asio::awaitable<void> stop() {
    co_await pipeline_.stop();
    co_await bus_.stop();
  }

  /// Messages of the pipeline not yet handled by every stage that reads them.
  std::int64_t in_flight() const {
    std::int64_t n = 0;
    for (const auto& [t, group] : {std::pair{topic::commands, "validator"}, std::pair{topic::events, "persister"},
                                   std::pair{topic::events, "materializer"}, std::pair{topic::rejections, "status"}}) {
      const auto name = pipeline_.topic_name(t);
      for (std::int32_t p = 0; p < bus_type::options{}.partitions; ++p)
        n += bus_.end_offset(name, p) - bus_.committed(name, group, p).value_or(0);
    }
    return n;
  }

  command_api_context& commands() { return commands_; }
  query_api_context& queries() { return queries_; }
  pipeline_type& stages() { return pipeline_; }
  bus_type& bus() { return bus_; }
  repository_type& snapshots() { return snapshots_; }
  repository_type& events() { return events_; }
  repository_type& state() { return state_; }

private:
  /// The command API's admission (pipeline_options::max_in_flight): waits, polling every
  /// millisecond, while the pipeline is too far behind. The count is taken at most once a
  /// millisecond for every request together (it locks the bus once per partition).
  bulwark::task<void> admit() {
    using clock = std::chrono::steady_clock;
    const auto give_up = clock::now() + admit_timeout_;
    std::optional<asio::steady_timer> timer;
    for (;;) {
      const auto now = clock::now().time_since_epoch().count();
      if (now - counted_at_.load(std::memory_order_relaxed) > 1'000'000) {
        counted_at_.store(now, std::memory_order_relaxed);
        in_flight_.store(in_flight(), std::memory_order_relaxed);
      }
      const auto n = in_flight_.load(std::memory_order_relaxed);
      if (n <= static_cast<std::int64_t>(max_in_flight_)) co_return bulwark::ok();
      if (clock::now() >= give_up)
        co_return bulwark::error(bulwark::errc::unavailable,
                                 "the pipeline is " + std::to_string(n) + " messages behind");
      if (!timer) timer.emplace(co_await asio::this_coro::executor);
      timer->expires_after(std::chrono::milliseconds(1));
      co_await timer->async_wait(asio::use_awaitable);
    }
  }

  static bus_type::options bus_options(std::shared_ptr<bulwark::metrics::registry> m) {
    bus_type::options b;
    b.metrics = std::move(m);
    b.drain_timeout = std::chrono::seconds(5);
    return b;
  }

  const settings& settings_;
  const std::size_t max_in_flight_;
  const std::chrono::milliseconds admit_timeout_;
  std::atomic<std::int64_t> counted_at_{0}, in_flight_{0}; // admit(): the last count, and when
  repository_type state_, events_, snapshots_;
  bus_type bus_;
  pipeline_type pipeline_;
  command_api_context commands_;
  query_api_context queries_;
};

} // namespace event_log
