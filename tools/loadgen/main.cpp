// loadgen: an HTTP load generator on bulwark::http::client (tools/loadgen/README.md).
//
//   loadgen -f data.json --concurrence 10 -n 10000 --timeout 3m http://127.0.0.1:8080/input
//   loadgen --rate 2000 --duration 1m --report run.html 'http://127.0.0.1:8080/orders/{random:0..99999}'
//
// main() only wires: the command line (loadgen/command_line.hpp) -> the files it names -> the
// runner (loadgen/runner.hpp) -> the summary, JSON and HTML (loadgen/report.hpp).

#include <loadgen/command_line.hpp>
#include <loadgen/recorder.hpp>
#include <loadgen/report.hpp>
#include <loadgen/runner.hpp>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

namespace {

constexpr int exit_bad_usage = 2;

bulwark::result<std::string> read_file(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return bulwark::error(bulwark::errc::invalid_argument, std::string(what) + " " + path + ": cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

bulwark::result<void> write_file(const std::string& path, std::string_view what, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return bulwark::error(bulwark::errc::unavailable, std::string(what) + " " + path + ": cannot be written");
  return bulwark::ok();
}

std::string command_line(int argc, char** argv) {
  std::string out = "loadgen";
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool quote = a.find_first_of(" '\"{}*?$&|;<>") != std::string_view::npos || a.empty();
    out += ' ';
    if (!quote) {
      out += a;
      continue;
    }
    out += '\'';
    for (char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += '\'';
  }
  return out;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int fail_usage(const bulwark::error& e) {
  std::cerr << "loadgen: " << e.detail() << '\n';
  return exit_bad_usage;
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  auto parsed = loadgen::parse_command_line(args);
  if (!parsed) return fail_usage(parsed.error());
  loadgen::options options = std::move(parsed).value();
  if (options.help) {
    std::cout << loadgen::usage;
    return 0;
  }
  for (const auto& path : options.url_files) {
    auto text = read_file(path, "--urls");
    if (!text) return fail_usage(text.error());
    auto urls = loadgen::parse_url_lines(text.value(), path);
    if (!urls) return fail_usage(urls.error());
    for (auto& u : urls.value()) options.urls.push_back(std::move(u));
  }
  std::vector<std::string> bodies;
  if (!options.body_file.empty()) {
    auto text = read_file(options.body_file, "-f");
    if (!text) return fail_usage(text.error());
    auto parsed_bodies = loadgen::parse_bodies(text.value(), options.body_file);
    if (!parsed_bodies) return fail_usage(parsed_bodies.error());
    bodies = std::move(parsed_bodies).value();
  }

  loadgen::run_description description;
  description.command = command_line(argc, argv);
  description.title = options.title.empty() ? description.command : options.title;
  description.started_at = utc_now();
  description.method = options.effective_method();
  for (const auto& u : options.urls) description.urls.push_back(u.text);
  description.concurrency = options.concurrency;
  description.rate = options.rate;

  loadgen::recorder recorder;
  const bool terminal = ::isatty(STDERR_FILENO) == 1;
  loadgen::runner runner(options, std::move(bodies), recorder, options.quiet ? nullptr : stderr, terminal);
  if (auto opened = runner.open_control(); !opened) return fail_usage(opened.error());
  description.cut_short = runner.run();

  std::cout << loadgen::summary_text(description, recorder) << std::flush;
  int status = recorder.errors() == 0 && recorder.unfinished() == 0 && !description.cut_short ? 0 : 1;
  if (!options.json_path.empty()) {
    if (auto w = write_file(options.json_path, "--json", loadgen::summary_json(description, recorder).dump(2) + "\n");
        !w) {
      std::cerr << "loadgen: " << w.error().detail() << '\n';
      status = 1;
    }
  }
  if (!options.report_path.empty()) {
    if (auto w = write_file(options.report_path, "--report", loadgen::html_report(description, recorder)); !w) {
      std::cerr << "loadgen: " << w.error().detail() << '\n';
      status = 1;
    }
  }
  return status;
}
