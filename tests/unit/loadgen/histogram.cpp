// loadgen's histogram (the precision promise, percentiles, merging), the recorder (outcomes,
// the time series and its bounded coarsening) and the reports built from them.
#include <loadgen/histogram.hpp>
#include <loadgen/recorder.hpp>
#include <loadgen/report.hpp>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>
#include <vector>

using namespace std::chrono_literals;
using loadgen::histogram;
using loadgen::outcome;
using loadgen::recorder;

TEST(loadgen_histogram, small_values_are_exact_and_buckets_tile_the_range) {
  histogram h(11);
  for (std::uint64_t v = 0; v < 2048; ++v) EXPECT_EQ(h.index_of(v), v);
  // Every bucket's lowest value maps to it, and the next bucket starts right after its highest.
  for (std::size_t i = 0; i < 40'000 && h.highest_equivalent(i) < (std::uint64_t{1} << 41); ++i) {
    ASSERT_EQ(h.index_of(h.lowest_equivalent(i)), i) << i;
    ASSERT_EQ(h.index_of(h.highest_equivalent(i)), i) << i;
    ASSERT_EQ(h.lowest_equivalent(i + 1), h.highest_equivalent(i) + 1) << i;
  }
}

TEST(loadgen_histogram, every_value_is_kept_within_the_relative_error) {
  for (int bits : {6, 11}) {
    histogram h(bits);
    const double bound = 1.0 / static_cast<double>(std::uint64_t{1} << (bits - 1));
    std::mt19937_64 random(7);
    for (int n = 0; n < 100'000; ++n) {
      const std::uint64_t v = random() >> (random() % 60 + 4); // spread over every magnitude
      if (v >= (std::uint64_t{1} << histogram::max_bits)) continue;
      const auto i = h.index_of(v);
      ASSERT_LE(h.lowest_equivalent(i), v);
      ASSERT_GE(h.highest_equivalent(i), v);
      const double width = static_cast<double>(h.highest_equivalent(i) - h.lowest_equivalent(i));
      ASSERT_LE(width, std::max(0.0, static_cast<double>(v) * bound)) << "bits " << bits << " value " << v;
    }
  }
}

TEST(loadgen_histogram, percentiles_match_the_sorted_values) {
  histogram h;
  std::vector<std::uint64_t> values;
  std::mt19937_64 random(42);
  std::lognormal_distribution<double> latency(13.0, 1.0); // around 450 us, a long tail
  for (int n = 0; n < 200'000; ++n) {
    const auto v = static_cast<std::uint64_t>(latency(random));
    values.push_back(v);
    h.record(v);
  }
  std::sort(values.begin(), values.end());
  EXPECT_EQ(h.count(), values.size());
  EXPECT_EQ(h.min(), values.front());
  EXPECT_EQ(h.max(), values.back());
  for (double p : {50.0, 90.0, 99.0, 99.9, 100.0}) {
    const auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(values.size()) + 0.5);
    const double exact = static_cast<double>(values[std::max<std::size_t>(rank, 1) - 1]);
    const double reported = static_cast<double>(h.percentile(p));
    EXPECT_GE(reported, exact) << "p" << p; // never below: the bucket's highest value
    EXPECT_LE(reported, exact * 1.001 + 1) << "p" << p;
  }
}

TEST(loadgen_histogram, empty_single_and_huge_values) {
  histogram h;
  EXPECT_EQ(h.percentile(99), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  h.record(1'234'567);
  EXPECT_EQ(h.percentile(0), 1'234'567u); // capped by max, which is exact
  EXPECT_EQ(h.percentile(50), 1'234'567u);
  const std::uint64_t huge = std::uint64_t{1} << 50; // beyond the range: the top bucket, max exact
  h.record(huge);
  EXPECT_EQ(h.max(), huge);
  EXPECT_EQ(h.percentile(100), huge);
  EXPECT_EQ(h.count(), 2u);
}

TEST(loadgen_histogram, add_merges_counts_min_and_max) {
  histogram a(6), b(6), other_precision(11);
  a.record(100);
  b.record(5'000);
  b.record(7);
  a.add(b);
  EXPECT_EQ(a.count(), 3u);
  EXPECT_EQ(a.min(), 7u);
  EXPECT_EQ(a.max(), 5'000u);
  other_precision.record(1);
  a.add(other_precision); // different bucket layouts do not mix
  EXPECT_EQ(a.count(), 3u);
}

TEST(loadgen_recorder, outcomes_errors_and_latency) {
  recorder r;
  r.record(10ms, 1ms, outcome::status_2xx);
  r.record(20ms, 2ms, outcome::status_3xx);
  r.record(30ms, 3ms, outcome::status_4xx);
  r.record(40ms, 4ms, outcome::status_5xx);
  r.record(150ms, 10s, outcome::timeout);
  r.record(160ms, 1us, outcome::refused);
  r.record(170ms, 1us, outcome::reset);
  EXPECT_EQ(r.completed(), 7u);
  EXPECT_EQ(r.errors(), 5u);          // 4xx, 5xx, timeout, refused, reset
  EXPECT_EQ(r.latency().count(), 4u); // only answers carry a latency
  EXPECT_EQ(r.latency().max(), 4'000'000u);
  ASSERT_EQ(r.intervals().size(), 2u); // 100 ms intervals
  EXPECT_EQ(r.intervals()[0].requests, 4u);
  EXPECT_EQ(r.intervals()[0].errors, 2u);
  EXPECT_EQ(r.intervals()[1].requests, 3u);
  EXPECT_EQ(r.intervals()[1].errors, 3u);
  EXPECT_EQ(loadgen::outcome_of_status(204), outcome::status_2xx);
  EXPECT_EQ(loadgen::outcome_of_status(302), outcome::status_3xx);
  EXPECT_EQ(loadgen::outcome_of_status(429), outcome::status_4xx);
  EXPECT_EQ(loadgen::outcome_of_status(503), outcome::status_5xx);
}

TEST(loadgen_recorder, a_long_run_coarsens_the_series_instead_of_growing_it) {
  recorder r;
  // One request every 50 ms for 10 minutes: 6000 intervals of 100 ms would exceed the bound.
  std::uint64_t n = 0;
  for (auto at = 0ms; at < 600s; at += 50ms, ++n) r.record(at, 1ms, outcome::status_2xx);
  EXPECT_LE(r.intervals().size(), recorder::max_intervals);
  EXPECT_EQ(r.interval_length(), 800ms); // 100 -> 200 -> 400 -> 800
  std::uint64_t total = 0;
  for (const auto& i : r.intervals()) total += i.requests;
  EXPECT_EQ(total, n);
  EXPECT_EQ(r.intervals().front().requests, 16u);
}

TEST(loadgen_recorder, event_marks_are_bounded) {
  recorder r;
  for (std::size_t i = 0; i < loadgen::max_events + 10; ++i) r.mark(1s, std::string(500, 'x'));
  EXPECT_EQ(r.events().size(), loadgen::max_events);
  EXPECT_EQ(r.events().front().label.size(), loadgen::max_event_label);
}

namespace {

recorder sample_run() {
  recorder r;
  for (int i = 0; i < 1000; ++i)
    r.record(std::chrono::milliseconds(i), std::chrono::microseconds(100 + i), outcome::status_2xx);
  r.record(500ms, 5ms, outcome::status_5xx);
  r.record(600ms, 2s, outcome::timeout);
  r.mark(400ms, "database <stopped>");
  r.set_elapsed(1s);
  return r;
}

} // namespace

TEST(loadgen_report, json_summary_holds_counts_percentiles_errors_and_series) {
  const auto r = sample_run();
  loadgen::run_description d{"t",  "loadgen -n 1002 http://x/", "2026-12-03T00:00:00Z", "GET", {"http://x/"}, 10, {},
                             false};
  const auto j = loadgen::summary_json(d, r);
  EXPECT_EQ(j["requests"], 1002);
  EXPECT_DOUBLE_EQ(j["requests_per_s"].get<double>(), 1002.0);
  EXPECT_EQ(j["model"], "closed");
  EXPECT_EQ(j["status"]["2xx"], 1000);
  EXPECT_EQ(j["status"]["5xx"], 1);
  EXPECT_EQ(j["errors"]["total"], 2);
  EXPECT_EQ(j["errors"]["timeout"], 1);
  EXPECT_EQ(j["errors"]["refused"], 0);
  EXPECT_NEAR(j["latency_ms"]["p50"].get<double>(), 0.6, 0.01);
  EXPECT_NEAR(j["latency_ms"]["p99"].get<double>(), 1.09, 0.01);
  EXPECT_DOUBLE_EQ(j["latency_ms"]["max"].get<double>(), 5.0);
  EXPECT_EQ(j["timeline"]["requests"].size(), 10u);
  EXPECT_EQ(j["events"][0]["label"], "database <stopped>");
  const auto text = loadgen::summary_text(d, r);
  EXPECT_NE(text.find("1002 requests"), std::string::npos) << text;
  EXPECT_NE(text.find("timeout 1"), std::string::npos) << text;
  EXPECT_NE(text.find("5xx 1"), std::string::npos) << text;
}

TEST(loadgen_report, html_is_self_contained_escaped_and_has_every_chart) {
  const auto r = sample_run();
  loadgen::run_description d{
      "run <1>", "loadgen 'http://x/{seq:1..2}'", "2026-12-03T00:00:00Z", "GET", {"http://x/"}, 10, 500.0, false};
  const auto html = loadgen::html_report(d, r);
  for (const char* id : {"id=\"latency\"", "id=\"throughput\"", "id=\"errors\"", "id=\"histogram\"", "id=\"summary\""})
    EXPECT_NE(html.find(id), std::string::npos) << id;
  EXPECT_NE(html.find("class=\"event\""), std::string::npos);
  EXPECT_NE(html.find("database &lt;stopped&gt;"), std::string::npos);
  EXPECT_EQ(html.find("<stopped>"), std::string::npos); // escaped everywhere, the JSON data too
  EXPECT_NE(html.find("run &lt;1&gt;"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos); // no external asset
  EXPECT_EQ(html.find("href="), std::string::npos);
  EXPECT_EQ(html.find("<script>"), std::string::npos); // only the JSON data block
}
