#pragma once
// What loadgen prints and writes from a recorder: the summary text, the JSON summary (--json)
// and the HTML report (--report): one self-contained file, charts drawn as inline SVG by this
// code, no executable script and no external asset, so it opens anywhere and can be archived
// with a run (the JSON summary rides along in a type="application/json" block for scripts).

#include <loadgen/recorder.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace loadgen {

/// What the run was, for the summary's headings.
struct run_description {
  std::string title;      ///< the report's title
  std::string command;    ///< the command line as given
  std::string started_at; ///< wall-clock start, ISO 8601 UTC
  std::string method;
  std::vector<std::string> urls;
  std::size_t concurrency = 0;
  std::optional<double> rate;
  bool cut_short = false; ///< --timeout or a signal ended it
};

/// The percentiles every summary shows.
inline constexpr std::array<double, 4> summary_percentiles{50.0, 90.0, 99.0, 99.9};

namespace detail {

inline std::string format(const char* pattern, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, pattern, v);
  return buf;
}
/// A latency for people: "850 us", "12.3 ms", "1.25 s".
inline std::string human_latency(std::uint64_t ns) {
  const double v = static_cast<double>(ns);
  if (v < 1e6) return format("%.0f us", v / 1e3);
  if (v < 1e9) return format("%.3g ms", v / 1e6);
  return format("%.3g s", v / 1e9);
}
inline double ms(std::uint64_t ns) { return std::round(static_cast<double>(ns) / 1e3) / 1e3; }
inline double seconds(nanoseconds d) { return static_cast<double>(d.count()) / 1e9; }
inline std::string percentile_name(double p) {
  std::string name = "p";
  name += p == std::floor(p) ? std::to_string(static_cast<int>(p)) : format("%g", p);
  return name;
}
/// Appends every part to `out`. (GCC 12 at -O3 warns falsely, -Wstringop-overflow, about
/// `"literal" + std::string&&` once inlined; appending says the same without the temporaries.)
template <class... Parts> void append(std::string& out, const Parts&... parts) {
  (out.append(std::string_view(parts)), ...);
}

} // namespace detail

/// Requests per second over the run (completed requests / elapsed).
inline double throughput(const recorder& r) {
  const double s = detail::seconds(r.elapsed());
  return s > 0 ? static_cast<double>(r.completed()) / s : 0.0;
}

/// The summary printed at the end of a run.
inline std::string summary_text(const run_description& d, const recorder& r) {
  using detail::append;
  using detail::human_latency;
  std::string out;
  append(out, "loadgen: ", std::to_string(r.completed()), " requests in ",
         detail::format("%.2f", detail::seconds(r.elapsed())), " s, ", detail::format("%.1f", throughput(r)),
         " requests/s (", std::to_string(d.concurrency), " connections, ",
         d.rate ? detail::format("open model at %g requests/s", *d.rate) : std::string("closed model"), ")",
         d.cut_short ? ", cut short" : "", "\n");
  const auto& h = r.latency();
  out += "  latency ";
  for (double p : summary_percentiles)
    append(out, " ", detail::percentile_name(p), " ", human_latency(h.percentile(p)));
  append(out, "  max ", human_latency(h.max()), "  (mean ", human_latency(static_cast<std::uint64_t>(h.mean())), ", ",
         std::to_string(h.count()), " answers)\n");
  out += "  answers ";
  for (std::size_t i = 0; i < outcome_count; ++i) {
    const auto o = static_cast<outcome>(i);
    if (o <= outcome::status_5xx && r.count(o) != 0) append(out, " ", name_of(o), " ", std::to_string(r.count(o)));
  }
  append(out, "\n  errors   ", std::to_string(r.errors()));
  if (r.completed() != 0)
    out += detail::format(" (%.2f %%)", 100.0 * static_cast<double>(r.errors()) / static_cast<double>(r.completed()));
  for (std::size_t i = 0; i < outcome_count; ++i) {
    const auto o = static_cast<outcome>(i);
    if (is_error(o) && r.count(o) != 0) append(out, "  ", name_of(o), " ", std::to_string(r.count(o)));
  }
  out += "\n";
  if (r.unfinished() != 0)
    append(out, "  unfinished ", std::to_string(r.unfinished()), " (in flight when the run stopped)\n");
  return out;
}

/// The JSON summary (--json). Latencies in milliseconds, times in seconds from the start.
inline nlohmann::json summary_json(const run_description& d, const recorder& r) {
  using nlohmann::json;
  const auto& h = r.latency();
  json latency = {
      {"min", detail::ms(h.min())}, {"mean", std::round(h.mean() / 1e3) / 1e3}, {"max", detail::ms(h.max())}};
  for (double p : summary_percentiles) latency[detail::percentile_name(p)] = detail::ms(h.percentile(p));
  json status = json::object(), errors = {{"total", r.errors()}};
  for (std::size_t i = 0; i < outcome_count; ++i) {
    const auto o = static_cast<outcome>(i);
    if (o <= outcome::status_5xx) status[std::string(name_of(o))] = r.count(o);
    if (is_error(o)) errors[std::string(name_of(o))] = r.count(o);
  }
  json events = json::array();
  for (const auto& e : r.events()) events.push_back({{"at_s", detail::seconds(e.at)}, {"label", e.label}});
  json series = {{"interval_s", detail::seconds(r.interval_length())},
                 {"requests", json::array()},
                 {"errors", json::array()},
                 {"p50_ms", json::array()},
                 {"p99_ms", json::array()},
                 {"max_ms", json::array()}};
  for (const auto& i : r.intervals()) {
    series["requests"].push_back(i.requests);
    series["errors"].push_back(i.errors);
    series["p50_ms"].push_back(detail::ms(i.latency.percentile(50)));
    series["p99_ms"].push_back(detail::ms(i.latency.percentile(99)));
    series["max_ms"].push_back(detail::ms(i.latency.max()));
  }
  return {{"title", d.title},
          {"command", d.command},
          {"started_at", d.started_at},
          {"method", d.method},
          {"urls", d.urls},
          {"concurrency", d.concurrency},
          {"rate", d.rate ? json(*d.rate) : json(nullptr)},
          {"model", d.rate ? "open" : "closed"},
          {"cut_short", d.cut_short},
          {"requests", r.completed()},
          {"unfinished", r.unfinished()},
          {"duration_s", detail::seconds(r.elapsed())},
          {"requests_per_s", throughput(r)},
          {"latency_ms", latency},
          {"status", status},
          {"errors", errors},
          {"events", events},
          {"timeline", series}};
}

namespace detail {

inline std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
    case '&': out += "&amp;"; break;
    case '<': out += "&lt;"; break;
    case '>': out += "&gt;"; break;
    case '"': out += "&quot;"; break;
    case '\'': out += "&#39;"; break;
    default: out.push_back(c);
    }
  }
  return out;
}

struct series {
  std::string name;
  std::string color;
  std::vector<double> values;
};

/// A "nice" axis maximum: 1, 2 or 5 times a power of ten, at least `v`.
inline double nice_ceiling(double v) {
  if (!(v > 0)) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= v) return m * p;
  return 10 * p;
}

constexpr int chart_width = 900, chart_height = 260, left = 70, right = 20, top = 30, bottom = 40;

/// A line chart over time: x from 0 to `x_max` seconds, each series sampled every `step`
/// seconds (the value at the middle of each interval), with the events as vertical marks.
inline std::string time_chart(std::string_view id, std::string_view title, std::string_view unit,
                              const std::vector<series>& lines, double step, double x_max,
                              const std::vector<event_mark>& events) {
  const double plot_w = chart_width - left - right, plot_h = chart_height - top - bottom;
  double y_max = 0;
  for (const auto& s : lines)
    for (double v : s.values) y_max = std::max(y_max, v);
  y_max = nice_ceiling(y_max);
  if (!(x_max > 0)) x_max = 1;
  auto x_of = [&](double t) { return left + plot_w * std::clamp(t / x_max, 0.0, 1.0); };
  auto y_of = [&](double v) { return top + plot_h * (1 - std::clamp(v / y_max, 0.0, 1.0)); };
  std::string svg;
  append(svg, "<figure id=\"", id, "\"><figcaption>", html_escape(title), "</figcaption>\n<svg viewBox=\"0 0 ",
         std::to_string(chart_width), " ", std::to_string(chart_height), "\" role=\"img\" aria-label=\"",
         html_escape(title), "\">\n");
  // Axes and grid: five horizontal lines with their values, time ticks below.
  for (int i = 0; i <= 4; ++i) {
    const double v = y_max * i / 4;
    const double y = y_of(v);
    svg += format("<line class=\"grid\" x1=\"70\" x2=\"880\" y1=\"%.1f\" y2=\"", y) + format("%.1f\"/>", y);
    svg +=
        format("<text class=\"tick\" x=\"64\" y=\"%.1f\" text-anchor=\"end\">", y + 4) + format("%g", v) + "</text>\n";
  }
  for (int i = 0; i <= 5; ++i) {
    const double t = x_max * i / 5;
    svg += format("<text class=\"tick\" x=\"%.1f\" y=\"", x_of(t)) + std::to_string(chart_height - bottom + 16) +
           "\" text-anchor=\"middle\">" + format("%.3g s", t) + "</text>\n";
  }
  append(svg, "<text class=\"unit\" x=\"8\" y=\"18\">", html_escape(unit), "</text>\n");
  for (const auto& s : lines) {
    std::string points;
    for (std::size_t i = 0; i < s.values.size(); ++i)
      points += format("%.1f,", x_of((static_cast<double>(i) + 0.5) * step)) + format("%.1f ", y_of(s.values[i]));
    append(svg, "<polyline class=\"series\" data-series=\"", html_escape(s.name), "\" fill=\"none\" stroke=\"", s.color,
           "\" stroke-width=\"2\" points=\"", points, "\"/>\n");
  }
  for (const auto& e : events) {
    const double x = x_of(seconds(e.at));
    svg += format("<line class=\"event\" x1=\"%.1f\" x2=\"", x) + format("%.1f\" y1=\"", x) + std::to_string(top) +
           "\" y2=\"" + std::to_string(chart_height - bottom) + "\"><title>" + html_escape(e.label) + "</title></line>";
    svg += format("<text class=\"event-label\" x=\"%.1f\" y=\"", x + 3) + std::to_string(top - 6) + "\">" +
           html_escape(e.label) + "</text>\n";
  }
  // The legend, top right.
  double lx = chart_width - right;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    lx -= 12 + 7.0 * static_cast<double>(it->name.size()) + 14;
    svg += format("<rect x=\"%.1f\" y=\"8\" width=\"10\" height=\"10\" fill=\"", lx) + it->color + "\"/>";
    svg += format("<text class=\"legend\" x=\"%.1f\" y=\"17\">", lx + 14) + html_escape(it->name) + "</text>\n";
  }
  svg += "</svg></figure>\n";
  return svg;
}

/// The latency histogram: answers per latency bin, bins spaced logarithmically from min to max.
inline std::string histogram_chart(const histogram& h) {
  constexpr int bins = 48;
  const double plot_w = chart_width - left - right, plot_h = chart_height - top - bottom;
  std::vector<double> counts(bins, 0);
  const double lo = std::max<double>(1, static_cast<double>(h.min())),
               hi = std::max<double>(lo * 1.01, static_cast<double>(h.max()));
  const double span = std::log(hi / lo);
  h.for_each_bucket([&](std::uint64_t low, std::uint64_t high, std::uint64_t n) {
    const double mid = std::max(1.0, (static_cast<double>(low) + static_cast<double>(high)) / 2);
    const int bin = std::clamp(static_cast<int>(std::log(mid / lo) / span * bins), 0, bins - 1);
    counts[static_cast<std::size_t>(bin)] += static_cast<double>(n);
  });
  const double y_max = nice_ceiling(*std::max_element(counts.begin(), counts.end()));
  std::string svg;
  append(svg,
         "<figure id=\"histogram\"><figcaption>Latency histogram (answers per bin, log-spaced bins)</figcaption>\n"
         "<svg viewBox=\"0 0 ",
         std::to_string(chart_width), " ", std::to_string(chart_height),
         "\" role=\"img\" aria-label=\"latency histogram\">\n");
  const double bar_w = plot_w / bins;
  for (int i = 0; i < bins; ++i) {
    const double height = plot_h * counts[static_cast<std::size_t>(i)] / y_max;
    if (height <= 0) continue;
    svg += format("<rect class=\"bar\" x=\"%.1f\" ", left + bar_w * i) + format("y=\"%.1f\" ", top + plot_h - height) +
           format("width=\"%.1f\" ", bar_w - 1) + format("height=\"%.1f\">", height) + "<title>" +
           format("%.0f answers", counts[static_cast<std::size_t>(i)]) + "</title></rect>\n";
  }
  for (int i = 0; i <= 4; ++i) {
    const double v = y_max * i / 4, y = top + plot_h * (1 - static_cast<double>(i) / 4);
    svg += format("<line class=\"grid\" x1=\"70\" x2=\"880\" y1=\"%.1f\" y2=\"", y) + format("%.1f\"/>", y);
    svg +=
        format("<text class=\"tick\" x=\"64\" y=\"%.1f\" text-anchor=\"end\">", y + 4) + format("%g", v) + "</text>\n";
  }
  for (int i = 0; i <= 4; ++i) {
    const double v = lo * std::exp(span * i / 4);
    svg += format("<text class=\"tick\" x=\"%.1f\" y=\"", left + plot_w * i / 4) +
           std::to_string(chart_height - bottom + 16) + "\" text-anchor=\"middle\">" +
           html_escape(human_latency(static_cast<std::uint64_t>(v))) + "</text>\n";
  }
  svg += "</svg></figure>\n";
  return svg;
}

} // namespace detail

/// The HTML report (--report): a summary table, then latency, throughput and error rate over
/// time with the event marks, then the latency histogram. Self-contained (inline CSS and SVG).
inline std::string html_report(const run_description& d, const recorder& r) {
  using detail::html_escape;
  using detail::series;
  const double step = detail::seconds(r.interval_length());
  const double x_max = std::max(detail::seconds(r.elapsed()), step * static_cast<double>(r.intervals().size()));
  series p50{"p50", "#1f77b4", {}}, p99{"p99", "#d62728", {}}, max{"max", "#999999", {}};
  series rps{"requests/s", "#2ca02c", {}}, error_rate{"errors %", "#d62728", {}};
  for (const auto& i : r.intervals()) {
    p50.values.push_back(static_cast<double>(i.latency.percentile(50)) / 1e6);
    p99.values.push_back(static_cast<double>(i.latency.percentile(99)) / 1e6);
    max.values.push_back(static_cast<double>(i.latency.max()) / 1e6);
    rps.values.push_back(static_cast<double>(i.requests) / step);
    error_rate.values.push_back(
        i.requests == 0 ? 0.0 : 100.0 * static_cast<double>(i.errors) / static_cast<double>(i.requests));
  }
  const auto json = summary_json(d, r);
  constexpr std::string_view style = R"(<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px auto; max-width: 940px; color: #222; }
h1 { font-size: 20px; } code { font-size: 12px; word-break: break-all; }
table { border-collapse: collapse; margin: 8px 0 16px; } td, th { padding: 3px 12px 3px 0; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 18px 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
svg { width: 100%; height: auto; background: #fcfcfc; border: 1px solid #ddd; }
.grid { stroke: #e4e4e4; } .tick, .unit, .legend { font-size: 11px; fill: #555; }
.event { stroke: #6a3d9a; stroke-width: 1.5; stroke-dasharray: 5 3; } .event-label { font-size: 11px; fill: #6a3d9a; }
.bar { fill: #1f77b4; }
</style>)";
  std::string html;
  detail::append(html, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>", html_escape(d.title),
                 "</title>\n", style, "</head><body><main>\n<h1>", html_escape(d.title), "</h1>\n<p>Started ",
                 html_escape(d.started_at), " &middot; <code>", html_escape(d.command),
                 "</code></p>\n<table id=\"summary\">\n");
  auto row = [&](std::string_view name, const std::string& value) {
    detail::append(html, "<tr><th>", html_escape(name), "</th><td class=\"n\">", html_escape(value), "</td></tr>\n");
  };
  row("requests", std::to_string(r.completed()));
  row("requests/s", detail::format("%.1f", throughput(r)));
  row("duration", detail::format("%.2f s", detail::seconds(r.elapsed())));
  row("model", d.rate ? detail::format("open, %g requests/s scheduled", *d.rate) : std::string("closed"));
  row("connections", std::to_string(d.concurrency));
  for (double p : summary_percentiles)
    row(std::string("latency ").append(detail::percentile_name(p)), detail::human_latency(r.latency().percentile(p)));
  row("latency max", detail::human_latency(r.latency().max()));
  row("errors", std::to_string(r.errors()));
  for (std::size_t i = 0; i < outcome_count; ++i) {
    const auto o = static_cast<outcome>(i);
    if (r.count(o) != 0) row(std::string("  ").append(name_of(o)), std::to_string(r.count(o)));
  }
  if (r.unfinished() != 0) row("unfinished", std::to_string(r.unfinished()));
  html += "</table>\n";
  html += detail::time_chart("latency", "Latency over time", "ms", {p50, p99, max}, step, x_max, r.events());
  html += detail::time_chart("throughput", "Throughput over time", "requests/s", {rps}, step, x_max, r.events());
  html += detail::time_chart("errors", "Error rate over time", "% of requests", {error_rate}, step, x_max, r.events());
  html += detail::histogram_chart(r.latency());
  // The figures as data, for scripts that read the report (and the tests).
  std::string data = json.dump();
  // '<' only occurs inside JSON strings, where \u003c means the same: no "</script>" can end the block.
  for (std::size_t at = 0; (at = data.find('<', at)) != std::string::npos; at += 6) data.replace(at, 1, "\\u003c");
  detail::append(html, "<script type=\"application/json\" id=\"loadgen-summary\">", data,
                 "</script>\n</main></body></html>\n");
  return html;
}

} // namespace loadgen
