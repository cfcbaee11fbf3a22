#pragma once
// loadgen's command line: options, their parsing and checking, durations ("3m", "1m30s",
// "250ms"), and the request bodies of -f. Plain code (no I/O): tests/unit/loadgen covers it.
//
// Every mistake is an errc::invalid_argument whose detail names the option and what it wants,
// so `loadgen` can print it and exit 2 before sending anything.

#include <loadgen/url_template.hpp>

#include <bulwark/error.hpp>
#include <bulwark/result.hpp>

#include <nlohmann/json.hpp>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loadgen {

using std::chrono::nanoseconds;

/// A vertical mark on the report's time charts ("database stopped"), `at` after the start.
struct event_mark {
  nanoseconds at{0};
  std::string label;
};

/// Upper bounds that keep every run bounded in memory and connections.
inline constexpr std::size_t max_concurrency = 10'000;
inline constexpr std::size_t max_events = 1'000;
inline constexpr std::size_t max_event_label = 200;

struct options {
  std::vector<url> urls;              ///< sent in turn (request i goes to urls[i % size])
  std::vector<std::string> url_files; ///< --urls FILE: read by the caller (parse_url_lines)
  std::string method;                 ///< empty: GET, or POST when bodies come from -f
  std::vector<std::pair<std::string, std::string>> headers;
  std::string basic_auth; ///< "user:password", empty for none
  std::string body_file;  ///< -f: JSON object or array of them
  std::string content_type = "application/json";
  std::size_t concurrency = 10;                           ///< requests in flight at most (connections)
  std::optional<std::uint64_t> requests;                  ///< -n: total requests
  std::optional<nanoseconds> duration;                    ///< stop starting requests after this
  std::optional<double> rate;                             ///< open model: requests per second on a fixed schedule
  nanoseconds timeout = std::chrono::minutes(10);         ///< the whole run, in-flight requests included
  nanoseconds request_timeout = std::chrono::seconds(10); ///< one request, write to last byte
  nanoseconds connect_timeout = std::chrono::seconds(2);
  std::string json_path;    ///< --json FILE
  std::string report_path;  ///< --report FILE.html
  std::string control_path; ///< --control SOCKET: a Unix socket, each line received is an event
  std::string title;        ///< the report's title (default: the command line)
  std::vector<event_mark> events;
  std::uint64_t seed = 0;                       ///< {random:..} parameters; 0: from the clock
  bool quiet = false;                           ///< no progress lines
  std::optional<nanoseconds> progress_interval; ///< default: 1 s on a terminal, 5 s otherwise
  bool help = false;

  /// The method requests are sent with.
  std::string effective_method() const { return !method.empty() ? method : body_file.empty() ? "GET" : "POST"; }
};

inline constexpr std::string_view usage = R"(usage: loadgen [options] URL [URL...]

Sends HTTP/1.1 requests to URL (http://host[:port]/path, several in turn), bounded in count
and time, and reports throughput, latency percentiles and errors.

  -n, --requests N         total requests (default: none, run for --duration)
  -c, --concurrence N      requests in parallel, one connection each (default 10; also --concurrency)
  -d, --duration T         stop starting requests after T (default 10s when -n is not given)
  -r, --rate R             open model: R requests/s on a fixed schedule; latency is measured from
                           each request's scheduled time (no coordinated omission)
      --timeout T          stop the whole run after T, in-flight requests counted as unfinished
                           (default 10m)
      --request-timeout T  one request's limit, write to last byte (default 10s): a timeout error
      --connect-timeout T  (default 2s)
  -f, --file FILE          JSON request bodies: one object, or an array sent in turn; implies
                           POST and Content-Type: application/json
  -m, --method M           GET, POST, PUT, ... (default GET, or POST with -f)
  -H, --header 'N: V'      an extra header (repeatable)
  -u, --user USER:PASS     HTTP basic authentication
      --urls FILE          more URLs, one per line ('#' starts a comment)
      --json FILE          write the summary as JSON
      --report FILE.html   write a self-contained HTML report (charts over time, histogram)
      --event T=LABEL      a mark on the report's charts at T after the start (repeatable)
      --control SOCKET     listen on a Unix socket: each line received marks an event now
      --title TEXT         the report's title
      --seed N             seed for {random:A..B} (default: from the clock)
      --progress T         a progress line every T (default 1s on a terminal, redrawn in place;
                           5s otherwise, one line each)
  -q, --quiet              no progress lines
  -h, --help               this text

Durations: 250ms, 10s, 3m, 1h, 1m30s (a bare number is seconds).
URL parameters, drawn per request: {random:A..B}, {seq:A..B}; {{ and }} are literal braces.
Exit status: 0 when every request got a 2xx/3xx answer, 1 when some failed, 2 on a bad command
line or input file.
)";

/// Parses "250ms", "10s", "3m", "1h", "1m30s", "1.5s" or a bare number of seconds.
inline bulwark::result<nanoseconds> parse_duration(std::string_view text) {
  auto bad = [&] {
    return bulwark::error(bulwark::errc::invalid_argument,
                          "bad duration '" + std::string(text) + "' (examples: 250ms, 10s, 3m, 1m30s)");
  };
  if (text.empty()) return bad();
  double total_ns = 0;
  std::string_view rest = text;
  while (!rest.empty()) {
    double value = 0;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), value);
    if (ec != std::errc() || value < 0 || !std::isfinite(value)) return bad();
    rest.remove_prefix(static_cast<std::size_t>(p - rest.data()));
    std::size_t unit_length = 0;
    while (unit_length < rest.size() && rest[unit_length] >= 'a' && rest[unit_length] <= 'z') ++unit_length;
    const std::string_view unit = rest.substr(0, unit_length);
    rest.remove_prefix(unit_length);
    double scale = 0;
    if (unit.empty()) {
      if (!rest.empty() || text.find_first_of("abcdefghijklmnopqrstuvwxyz") != std::string_view::npos) return bad();
      scale = 1e9;
    } else if (unit == "ns") {
      scale = 1;
    } else if (unit == "us") {
      scale = 1e3;
    } else if (unit == "ms") {
      scale = 1e6;
    } else if (unit == "s") {
      scale = 1e9;
    } else if (unit == "m") {
      scale = 60e9;
    } else if (unit == "h") {
      scale = 3600e9;
    } else {
      return bad();
    }
    total_ns += value * scale;
  }
  if (total_ns > 1e18) return bad();
  return nanoseconds(static_cast<std::int64_t>(std::llround(total_ns)));
}

/// The request bodies of -f: `json_text` holds one JSON value (sent as it is) or a non-empty
/// array of them (sent in turn). Each body is the compact serialization.
inline bulwark::result<std::vector<std::string>> parse_bodies(std::string_view json_text, std::string_view name) {
  auto doc = nlohmann::json::parse(json_text, nullptr, false);
  if (doc.is_discarded())
    return bulwark::error(bulwark::errc::invalid_argument, std::string(name) + ": not valid JSON");
  std::vector<std::string> bodies;
  if (doc.is_array()) {
    if (doc.empty())
      return bulwark::error(bulwark::errc::invalid_argument,
                            std::string(name) + ": an empty array (no bodies to send)");
    bodies.reserve(doc.size());
    for (const auto& item : doc) bodies.push_back(item.dump());
  } else {
    bodies.push_back(doc.dump());
  }
  return bodies;
}

namespace detail {

inline bulwark::error invalid(std::string text) {
  return bulwark::error(bulwark::errc::invalid_argument, std::move(text));
}

inline bulwark::result<std::uint64_t> parse_count(std::string_view flag, std::string_view v, std::uint64_t low,
                                                  std::uint64_t high) {
  std::uint64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size() || v.empty() || n < low || n > high)
    return invalid(std::string(flag) + " wants a whole number in " + std::to_string(low) + ".." + std::to_string(high) +
                   ", not '" + std::string(v) + "'");
  return n;
}

inline bool valid_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

} // namespace detail

/// Parses the arguments after the program name. The files of -f and --urls are not read here
/// (parse_bodies and parse_url_lines take their text).
inline bulwark::result<options> parse_command_line(std::span<const std::string_view> args) {
  using detail::invalid;
  options o;
  std::vector<std::string> url_texts;
  std::optional<double> rate;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg.empty() || arg[0] != '-' || arg == "-") {
      url_texts.emplace_back(arg);
      continue;
    }
    if (arg == "--") {
      for (++i; i < args.size(); ++i) url_texts.emplace_back(args[i]);
      break;
    }
    std::string_view flag = arg, inline_value;
    bool has_inline = false;
    if (arg.starts_with("--")) {
      if (auto eq = arg.find('='); eq != std::string_view::npos) {
        flag = arg.substr(0, eq);
        inline_value = arg.substr(eq + 1);
        has_inline = true;
      }
    } else if (arg.size() > 2) { // getopt's glued short form: -c64, -d10s
      flag = arg.substr(0, 2);
      inline_value = arg.substr(2);
      has_inline = true;
    }
    auto value = [&]() -> bulwark::result<std::string_view> {
      if (has_inline) return inline_value;
      if (i + 1 >= args.size()) return invalid("option " + std::string(flag) + " needs a value");
      return args[++i];
    };
    auto flag_is = [&](std::string_view a, std::string_view b = {}, std::string_view c = {}) {
      return flag == a || (!b.empty() && flag == b) || (!c.empty() && flag == c);
    };
    if (has_inline && flag_is("-h", "--help", "-q")) {
      return invalid("option " + std::string(arg) + " takes no value");
    } else if (flag_is("-h", "--help")) {
      o.help = true;
    } else if (flag_is("-q", "--quiet")) {
      o.quiet = true;
    } else if (flag_is("-n", "--requests")) {
      BOOST_OUTCOME_TRY(v, value());
      BOOST_OUTCOME_TRY(n, detail::parse_count(flag, v, 1, std::uint64_t{1} << 40));
      o.requests = n;
    } else if (flag_is("-c", "--concurrence", "--concurrency")) {
      BOOST_OUTCOME_TRY(v, value());
      BOOST_OUTCOME_TRY(n, detail::parse_count(flag, v, 1, max_concurrency));
      o.concurrency = static_cast<std::size_t>(n);
    } else if (flag_is("-d", "--duration")) {
      BOOST_OUTCOME_TRY(v, value());
      BOOST_OUTCOME_TRY(d, parse_duration(v));
      if (d.count() <= 0) return invalid("--duration must be more than 0");
      o.duration = d;
    } else if (flag_is("-r", "--rate")) {
      BOOST_OUTCOME_TRY(v, value());
      double r = 0;
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), r);
      if (ec != std::errc() || p != v.data() + v.size() || !(r > 0) || r > 1e7)
        return invalid("--rate wants requests per second, more than 0 and at most 1e7, not '" + std::string(v) + "'");
      rate = r;
    } else if (flag_is("--progress")) {
      BOOST_OUTCOME_TRY(v, value());
      BOOST_OUTCOME_TRY(d, parse_duration(v));
      if (d < std::chrono::milliseconds(100)) return invalid("--progress must be at least 100ms");
      o.progress_interval = d;
    } else if (flag_is("--timeout", "--request-timeout", "--connect-timeout")) {
      BOOST_OUTCOME_TRY(v, value());
      BOOST_OUTCOME_TRY(d, parse_duration(v));
      if (d.count() <= 0) return invalid(std::string(flag) + " must be more than 0");
      (flag == "--timeout" ? o.timeout : flag == "--request-timeout" ? o.request_timeout : o.connect_timeout) = d;
    } else if (flag_is("-f", "--file")) {
      BOOST_OUTCOME_TRY(v, value());
      o.body_file = std::string(v);
    } else if (flag_is("-m", "--method")) {
      BOOST_OUTCOME_TRY(v, value());
      if (!detail::valid_token(v)) return invalid("--method: '" + std::string(v) + "' is not a method name");
      o.method = std::string(v);
    } else if (flag_is("-H", "--header")) {
      BOOST_OUTCOME_TRY(v, value());
      const auto colon = v.find(':');
      if (colon == std::string_view::npos || !detail::valid_token(v.substr(0, colon)))
        return invalid("--header wants 'Name: value', not '" + std::string(v) + "'");
      std::string_view field = v.substr(colon + 1);
      while (!field.empty() && (field.front() == ' ' || field.front() == '\t')) field.remove_prefix(1);
      if (field.find_first_of("\r\n") != std::string_view::npos)
        return invalid("--header: a value cannot hold a line break");
      o.headers.emplace_back(std::string(v.substr(0, colon)), std::string(field));
    } else if (flag_is("-u", "--user")) {
      BOOST_OUTCOME_TRY(v, value());
      if (v.find(':') == std::string_view::npos) return invalid("--user wants USER:PASSWORD");
      o.basic_auth = std::string(v);
    } else if (flag_is("--urls")) {
      BOOST_OUTCOME_TRY(v, value());
      o.url_files.emplace_back(v);
    } else if (flag_is("--json", "--report", "--control")) {
      BOOST_OUTCOME_TRY(v, value());
      if (v.empty()) return invalid(std::string(flag) + " needs a file name");
      (flag == "--json" ? o.json_path : flag == "--report" ? o.report_path : o.control_path) = std::string(v);
    } else if (flag_is("--title")) {
      BOOST_OUTCOME_TRY(v, value());
      o.title = std::string(v);
    } else if (flag_is("--event")) {
      BOOST_OUTCOME_TRY(v, value());
      const auto eq = v.find('=');
      if (eq == std::string_view::npos || eq + 1 == v.size())
        return invalid("--event wants T=LABEL (like 30s=database stopped), not '" + std::string(v) + "'");
      BOOST_OUTCOME_TRY(at, parse_duration(v.substr(0, eq)));
      if (o.events.size() >= max_events) return invalid("at most " + std::to_string(max_events) + " --event marks");
      o.events.push_back({at, std::string(v.substr(eq + 1, max_event_label))});
    } else if (flag_is("--seed")) {
      BOOST_OUTCOME_TRY(v, value());
      BOOST_OUTCOME_TRY(n, detail::parse_count(flag, v, 0, ~std::uint64_t{0}));
      o.seed = n;
    } else {
      return invalid("unknown option '" + std::string(arg) + "' (loadgen --help lists them)");
    }
  }
  if (o.help) return o;
  for (auto& text : url_texts) {
    BOOST_OUTCOME_TRY(u, parse_url(text));
    o.urls.push_back(std::move(u));
  }
  if (o.urls.empty() && o.url_files.empty()) return invalid("no URL given (loadgen --help)");
  o.rate = rate;
  if (!o.requests && !o.duration) o.duration = std::chrono::seconds(10);
  if (o.duration && *o.duration >= o.timeout)
    return invalid("--duration must be shorter than --timeout (the whole run's limit, default 10m)");
  return o;
}

/// Reads the URL list of --urls: one URL per line, blank lines and '#' comments skipped.
inline bulwark::result<std::vector<url>> parse_url_lines(std::string_view text, std::string_view name) {
  std::vector<url> urls;
  std::size_t line_number = 0;
  while (!text.empty()) {
    ++line_number;
    const auto end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty()) continue;
    auto u = parse_url(line);
    if (!u)
      return bulwark::error(bulwark::errc::invalid_argument, std::string(name) + ":" + std::to_string(line_number) +
                                                                 ": " + std::string(u.error().detail()));
    urls.push_back(std::move(u).value());
  }
  if (urls.empty()) return bulwark::error(bulwark::errc::invalid_argument, std::string(name) + ": no URLs in it");
  return urls;
}

} // namespace loadgen
