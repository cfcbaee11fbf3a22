#pragma once
// Memory mode: every stage in one process on one memory event bus and three memory
// repositories (validator state, event store, snapshots). No servers; nothing survives a
// restart. main() puts the two HTTP servers in front; the tests call the routers in process.

#include <event_log/admission.hpp>
#include <event_log/pipeline.hpp>
#include <event_log/routes.hpp>

#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>

#include <asio/any_io_executor.hpp>

#include <array>
#include <chrono>
#include <optional>

namespace event_log {

class memory_deployment {
public:
  using bus_type = bulwark::memory::event_bus;
  using repository_type = bulwark::memory::repository;
  using pipeline_type = pipeline<bus_type, repository_type>;

  memory_deployment(asio::any_io_executor ex, const settings& s, pipeline_options o = {})
      : settings_(s), bus_(ex, bus_options(o.metrics)),
        admission_(
            {.max_in_flight = o.max_in_flight, .timeout = o.admit_timeout, .refresh = std::chrono::milliseconds(1)},
            [this]() -> bulwark::task<pipeline_count> {
              co_return pipeline_count{in_flight(), 0};
            },
            *o.metrics),
        pipeline_(settings_, bus_, state_, events_, snapshots_, std::move(o)) {
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
    commands_.admit = [this] { return admission_.admit(); };
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

  /// Messages of the pipeline not yet handled by the stages, on a command's way through them
  /// (pipeline::behind_on_the_way).
  std::int64_t in_flight() const {
    std::array<std::int64_t, 4> behind{};
    std::size_t i = 0;
    for (const auto& [t, group] : pipeline_type::consumer_groups) {
      const auto name = pipeline_.topic_name(t);
      for (std::int32_t p = 0; p < bus_type::options{}.partitions; ++p)
        behind[i] += bus_.end_offset(name, p) - bus_.committed(name, pipeline_.group_name(group), p).value_or(0);
      ++i;
    }
    return pipeline_type::behind_on_the_way(behind);
  }

  command_api_context& commands() { return commands_; }
  query_api_context& queries() { return queries_; }
  pipeline_type& stages() { return pipeline_; }
  bus_type& bus() { return bus_; }
  repository_type& snapshots() { return snapshots_; }
  repository_type& events() { return events_; }
  repository_type& state() { return state_; }

private:
  static bus_type::options bus_options(std::shared_ptr<bulwark::metrics::registry> m) {
    bus_type::options b;
    b.metrics = std::move(m);
    b.drain_timeout = std::chrono::seconds(5);
    return b;
  }

  const settings& settings_;
  repository_type state_, events_, snapshots_;
  bus_type bus_;
  admission admission_; // the command API's (pipeline_options::max_in_flight), counted by in_flight()
  pipeline_type pipeline_;
  command_api_context commands_;
  query_api_context queries_;
};

} // namespace event_log
