#include <bulwark/metrics/registry.hpp>

#include <bulwark/http/middleware.hpp>

#include <gtest/gtest.h>

#include <thread>

namespace metrics = bulwark::metrics;

TEST(metrics, counter_gauge_histogram_text_format) {
  metrics::registry reg;
  auto& requests = reg.counter_family("app_requests_total", "Requests served", {"route", "status"});
  requests.labels({"/a", "200"}).inc();
  requests.labels({"/a", "200"}).inc(2);
  requests.labels({"/b \"q\"\n", "500"}).inc();
  reg.gauge_family("app_open", "Open things", {}).labels({}).set(3.5);
  auto& h = reg.histogram_family("app_seconds", "Latency", {}, {0.1, 1}).labels({});
  h.observe(0.05);
  h.observe(0.1);
  h.observe(0.5);
  h.observe(7);
  const std::string expected = "# HELP app_open Open things\n"
                               "# TYPE app_open gauge\n"
                               "app_open 3.5\n"
                               "# HELP app_requests_total Requests served\n"
                               "# TYPE app_requests_total counter\n"
                               "app_requests_total{route=\"/a\",status=\"200\"} 3\n"
                               "app_requests_total{route=\"/b \\\"q\\\"\\n\",status=\"500\"} 1\n"
                               "# HELP app_seconds Latency\n"
                               "# TYPE app_seconds histogram\n"
                               "app_seconds_bucket{le=\"0.1\"} 2\n"
                               "app_seconds_bucket{le=\"1\"} 3\n"
                               "app_seconds_bucket{le=\"+Inf\"} 4\n"
                               "app_seconds_sum 7.65\n"
                               "app_seconds_count 4\n";
  EXPECT_EQ(reg.expose(), expected);
}

TEST(metrics, registration_rules) {
  metrics::registry reg;
  auto& a = reg.counter_family("x_total", "x", {"l"});
  EXPECT_EQ(&a, &reg.counter_family("x_total", "x", {"l"}));
  EXPECT_THROW(reg.gauge_family("x_total", "x", {"l"}), std::invalid_argument);
  EXPECT_THROW(reg.counter_family("x_total", "x", {"other"}), std::invalid_argument);
  EXPECT_THROW(reg.counter_family("bad-name", "x", {}), std::invalid_argument);
  EXPECT_THROW(reg.counter_family("y_total", "x", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(reg.histogram_family("h", "x", {}, {1, 1}), std::invalid_argument);
  EXPECT_THROW(a.labels({"1", "2"}), std::invalid_argument);
}

TEST(metrics, concurrent_updates_are_not_lost) {
  metrics::registry reg;
  auto& c = reg.counter_family("c_total", "c", {}).labels({});
  auto& h = reg.histogram_family("h_seconds", "h", {}, {1}).labels({});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        c.inc();
        h.observe(0.5);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.value(), 80000);
  EXPECT_EQ(h.count(), 80000u);
  EXPECT_EQ(h.sum(), 40000);
}
