// Health and readiness answers (http/health.hpp): every probe bounded, a hanging or failing
// dependency named DOWN, the answer's shape and status.
#include <bulwark/http/health.hpp>
#include <bulwark/memory/cache.hpp>
#include <bulwark/memory/repository.hpp>

#include "support/run.hpp"

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace http = bulwark::http;

namespace {

http::health_probe answers(std::string name) {
  return {std::move(name), []() -> bulwark::task<void> { co_return bulwark::ok(); }};
}
http::health_probe fails(std::string name) {
  return {std::move(name), []() -> bulwark::task<void> { co_return bulwark::errc::unavailable; }};
}
http::health_probe hangs(std::string name) { // answers after 10 s, long after its probe's limit
  return {std::move(name), []() -> bulwark::task<void> {
            asio::steady_timer t(co_await asio::this_coro::executor, 10s);
            co_await t.async_wait(asio::use_awaitable);
            co_return bulwark::ok();
          }};
}

} // namespace

TEST(http_health, a_failing_or_hanging_dependency_is_named_down_and_the_answer_is_503) {
  asio::io_context ctx;
  const std::vector<http::health_probe> probes{answers("kafka"), fails("mysql"), hangs("redis")};
  const auto started = std::chrono::steady_clock::now();
  auto states = bulwark::test::run(ctx, http::probe_all(probes, 50ms));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s); // the hanging probe was cut at 50 ms
  EXPECT_EQ(states, (http::component_states{{"kafka", true}, {"mysql", false}, {"redis", false}}));
  EXPECT_FALSE(http::all_up(states));
  const auto r = http::health_response(false, http::health_json(false, states, http::names_of(probes)));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.body, R"({"status":"DOWN","components":{"kafka":{"status":"UP"},"mysql":{"status":"DOWN"},)"
                    R"("redis":{"status":"DOWN"}}})");
}

TEST(http_health, every_dependency_up_is_200_in_the_probes_order) {
  asio::io_context ctx;
  bulwark::memory::repository repository;
  bulwark::memory::cache cache;
  const std::vector<http::health_probe> probes{http::repository_probe("logs", repository, "probe"),
                                               http::cache_probe("cache", cache, "probe"), answers("bus")};
  auto states = bulwark::test::run(ctx, http::probe_all(probes, 1s));
  EXPECT_TRUE(http::all_up(states));
  const auto r = http::health_response(true, http::health_json(true, states, http::names_of(probes)));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"status":"UP","components":{"logs":{"status":"UP"},"cache":{"status":"UP"},)"
                    R"("bus":{"status":"UP"}}})");
  EXPECT_EQ(repository.size(), 0u); // a probe reads, never writes
}

TEST(http_health, no_dependencies_is_up_and_a_component_without_a_state_is_down) {
  EXPECT_TRUE(http::all_up({}));
  EXPECT_EQ(http::health_json(true, {}, {}).dump(), R"({"status":"UP","components":{}})");
  EXPECT_EQ(http::health_json(false, {}, {"bus"}).dump(),
            R"({"status":"DOWN","components":{"bus":{"status":"DOWN"}}})");
}
