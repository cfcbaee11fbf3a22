// loadgen's command line: the course's form as written, every option, and clear errors.
#include <loadgen/command_line.hpp>
#include <loadgen/runner.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;
using loadgen::parse_command_line;
using loadgen::parse_duration;

namespace {

bulwark::result<loadgen::options> parse(std::vector<std::string_view> args) { return parse_command_line(args); }

std::string error_of(std::vector<std::string_view> args) {
  auto o = parse(args);
  EXPECT_FALSE(o);
  if (o) return {};
  EXPECT_EQ(o.error(), bulwark::errc::invalid_argument);
  return std::string(o.error().detail());
}

} // namespace

TEST(loadgen_command_line, the_course_command_line_works_as_written) {
  auto o = parse(
      {"-f", "data.json", "--concurrence", "10", "-n", "10000", "--timeout", "3m", "http://127.0.0.1:8080/input"});
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o.value().body_file, "data.json");
  EXPECT_EQ(o.value().concurrency, 10u);
  EXPECT_EQ(o.value().requests, 10000u);
  EXPECT_EQ(o.value().timeout, 3min);
  EXPECT_EQ(o.value().effective_method(), "POST"); // -f implies POST
  EXPECT_FALSE(o.value().duration);                // bounded by -n, not by a default duration
  ASSERT_EQ(o.value().urls.size(), 1u);
  EXPECT_EQ(o.value().urls[0].port, 8080);
}

TEST(loadgen_command_line, short_options_take_a_glued_value_as_getopt_does) {
  auto o = parse({"-c64", "-d10s", "-n100", "-HX-Trace: 1", "http://h/"});
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o.value().concurrency, 64u);
  EXPECT_EQ(o.value().duration, 10s);
  EXPECT_EQ(o.value().requests, 100u);
  EXPECT_NE(error_of({"-q1", "http://h/"}).find("-q1 takes no value"), std::string::npos);
  EXPECT_NE(error_of({"-x4", "http://h/"}).find("unknown option '-x4'"), std::string::npos);
}

TEST(loadgen_command_line, every_option) {
  auto o = parse({"--rate=250.5",
                  "-d",
                  "1m30s",
                  "-m",
                  "PUT",
                  "-H",
                  "X-Trace:  abc",
                  "--header",
                  "Accept: */*",
                  "-u",
                  "ann:s3cret",
                  "--json",
                  "out.json",
                  "--report",
                  "r.html",
                  "--event",
                  "30s=database stopped",
                  "--control",
                  "/tmp/c.sock",
                  "--request-timeout",
                  "250ms",
                  "--connect-timeout",
                  "1s",
                  "--seed",
                  "42",
                  "-q",
                  "--urls",
                  "list.txt",
                  "--title",
                  "run 1",
                  "--progress",
                  "2s",
                  "-c",
                  "64",
                  "http://a:1/x",
                  "http://b:2/{seq:1..3}"});
  ASSERT_TRUE(o) << o.error().message();
  const auto& v = o.value();
  EXPECT_DOUBLE_EQ(*v.rate, 250.5);
  EXPECT_EQ(v.duration, 90s);
  EXPECT_EQ(v.effective_method(), "PUT");
  ASSERT_EQ(v.headers.size(), 2u);
  EXPECT_EQ(v.headers[0], (std::pair<std::string, std::string>{"X-Trace", "abc"}));
  EXPECT_EQ(v.basic_auth, "ann:s3cret");
  EXPECT_EQ(v.json_path, "out.json");
  EXPECT_EQ(v.report_path, "r.html");
  ASSERT_EQ(v.events.size(), 1u);
  EXPECT_EQ(v.events[0].at, 30s);
  EXPECT_EQ(v.events[0].label, "database stopped");
  EXPECT_EQ(v.control_path, "/tmp/c.sock");
  EXPECT_EQ(v.request_timeout, 250ms);
  EXPECT_EQ(v.connect_timeout, 1s);
  EXPECT_EQ(v.seed, 42u);
  EXPECT_TRUE(v.quiet);
  EXPECT_EQ(v.url_files, std::vector<std::string>{"list.txt"});
  EXPECT_EQ(v.title, "run 1");
  EXPECT_EQ(v.progress_interval, 2s);
  EXPECT_EQ(v.concurrency, 64u);
  EXPECT_EQ(v.urls.size(), 2u);
  EXPECT_EQ(v.timeout, 10min); // the default bound
}

TEST(loadgen_command_line, a_run_is_always_bounded) {
  auto o = parse({"http://h/"});
  ASSERT_TRUE(o);
  EXPECT_EQ(o.value().duration, 10s); // neither -n nor -d: 10 s
  EXPECT_EQ(o.value().effective_method(), "GET");
  EXPECT_NE(error_of({"-d", "20m", "http://h/"}).find("shorter than --timeout"), std::string::npos);
  EXPECT_NE(error_of({"-n", "0", "http://h/"}).find("-n wants a whole number"), std::string::npos);
  EXPECT_NE(error_of({"-c", "100000", "http://h/"}).find("1..10000"), std::string::npos);
}

TEST(loadgen_command_line, mistakes_get_clear_errors) {
  EXPECT_NE(error_of({}).find("no URL given"), std::string::npos);
  EXPECT_NE(error_of({"--concurence", "3", "http://h/"}).find("unknown option '--concurence'"), std::string::npos);
  EXPECT_NE(error_of({"http://h/", "-n"}).find("-n needs a value"), std::string::npos);
  EXPECT_NE(error_of({"-n", "ten", "http://h/"}).find("not 'ten'"), std::string::npos);
  EXPECT_NE(error_of({"--timeout", "3 minutes", "http://h/"}).find("bad duration '3 minutes'"), std::string::npos);
  EXPECT_NE(error_of({"--rate", "0", "http://h/"}).find("--rate wants"), std::string::npos);
  EXPECT_NE(error_of({"--rate", "fast", "http://h/"}).find("--rate wants"), std::string::npos);
  EXPECT_NE(error_of({"-H", "NoColon", "http://h/"}).find("'Name: value'"), std::string::npos);
  EXPECT_NE(error_of({"-H", "Bad Name: v", "http://h/"}).find("'Name: value'"), std::string::npos);
  EXPECT_NE(error_of({"-u", "annonly", "http://h/"}).find("USER:PASSWORD"), std::string::npos);
  EXPECT_NE(error_of({"-m", "GE T", "http://h/"}).find("not a method"), std::string::npos);
  EXPECT_NE(error_of({"--event", "later", "http://h/"}).find("T=LABEL"), std::string::npos);
  EXPECT_NE(error_of({"--event", "soon=x", "http://h/"}).find("bad duration"), std::string::npos);
  EXPECT_NE(error_of({"https://h/"}).find("https"), std::string::npos);
  EXPECT_NE(error_of({"--json=", "http://h/"}).find("needs a file name"), std::string::npos);
}

TEST(loadgen_command_line, help_needs_nothing_else) {
  auto o = parse({"--help"});
  ASSERT_TRUE(o);
  EXPECT_TRUE(o.value().help);
  EXPECT_NE(loadgen::usage.find("--concurrence"), std::string_view::npos);
}

TEST(loadgen_command_line, durations) {
  EXPECT_EQ(parse_duration("3m").value(), 3min);
  EXPECT_EQ(parse_duration("250ms").value(), 250ms);
  EXPECT_EQ(parse_duration("1m30s").value(), 90s);
  EXPECT_EQ(parse_duration("1.5s").value(), 1500ms);
  EXPECT_EQ(parse_duration("2h").value(), 2h);
  EXPECT_EQ(parse_duration("10").value(), 10s);
  EXPECT_EQ(parse_duration("20us").value(), 20us);
  for (const char* bad : {"", "m", "3x", "-1s", "3 m", "1s2", "10ms5"}) EXPECT_FALSE(parse_duration(bad)) << bad;
}

TEST(loadgen_command_line, bodies_from_one_object_or_an_array) {
  auto one =
      loadgen::parse_bodies(R"({"team1": "Guatemala", "team2": "Argentina", "score": "2-5", "phase": 1})", "d.json");
  ASSERT_TRUE(one);
  ASSERT_EQ(one.value().size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(one.value()[0])["score"], "2-5");
  auto many = loadgen::parse_bodies(R"([{"a": 1}, {"a": 2}, {"a": 3}])", "d.json");
  ASSERT_TRUE(many);
  EXPECT_EQ(many.value(), (std::vector<std::string>{R"({"a":1})", R"({"a":2})", R"({"a":3})"}));
  auto broken = loadgen::parse_bodies("{\"a\": ", "d.json");
  ASSERT_FALSE(broken);
  EXPECT_EQ(broken.error().detail(), "d.json: not valid JSON");
  auto empty = loadgen::parse_bodies("[]", "d.json");
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().detail().find("empty array"), std::string_view::npos);
}

TEST(loadgen_command_line, url_lists) {
  auto urls = loadgen::parse_url_lines("# targets\nhttp://a:1/x\n\n  http://b:2/{random:1..9}  # hot\r\n", "list.txt");
  ASSERT_TRUE(urls) << urls.error().message();
  ASSERT_EQ(urls.value().size(), 2u);
  EXPECT_EQ(urls.value()[1].host, "b");
  auto bad = loadgen::parse_url_lines("http://a:1/\nhttps://b/\n", "list.txt");
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().detail().starts_with("list.txt:2: bad URL 'https://b/'")) << bad.error().detail();
  EXPECT_FALSE(loadgen::parse_url_lines("# nothing\n", "list.txt"));
}

TEST(loadgen_command_line, basic_auth_header_and_error_kinds) {
  EXPECT_EQ(loadgen::basic_authorization("Aladdin:open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
  EXPECT_EQ(loadgen::basic_authorization("a:b"), "Basic YTpi");
  EXPECT_EQ(loadgen::basic_authorization("ab:c"), "Basic YWI6Yw==");
  using bulwark::http::client_errc;
  auto failed = [](client_errc e) {
    return bulwark::result<bulwark::http::response>(bulwark::error(make_error_code(e)));
  };
  EXPECT_EQ(loadgen::classify(failed(client_errc::timed_out)), loadgen::outcome::timeout);
  EXPECT_EQ(loadgen::classify(failed(client_errc::connect_failed)), loadgen::outcome::refused);
  EXPECT_EQ(loadgen::classify(failed(client_errc::closed_without_response)), loadgen::outcome::reset);
  EXPECT_EQ(loadgen::classify(failed(client_errc::truncated_response)), loadgen::outcome::reset);
  EXPECT_EQ(loadgen::classify(failed(client_errc::malformed_response)), loadgen::outcome::protocol);
  EXPECT_EQ(loadgen::classify(bulwark::http::response(503)), loadgen::outcome::status_5xx);
}
