// loadgen's URLs and their path parameters ({random:A..B}, {seq:A..B}).
#include <loadgen/url_template.hpp>

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>

using loadgen::parse_url;
using loadgen::target_template;

namespace {

std::string expand(target_template& t, std::mt19937_64& random) {
  std::string out;
  t.expand(out, random);
  return out;
}

std::string error_of(std::string_view url) {
  auto u = parse_url(url);
  EXPECT_FALSE(u) << url;
  if (u) return {};
  EXPECT_EQ(u.error(), bulwark::errc::invalid_argument);
  return std::string(u.error().detail());
}

} // namespace

TEST(loadgen_url, host_port_and_target) {
  auto u = parse_url("http://127.0.0.1:8080/orders/checkout?x=1");
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_EQ(u.value().host, "127.0.0.1");
  EXPECT_EQ(u.value().port, 8080);
  EXPECT_TRUE(u.value().target.fixed());
  std::mt19937_64 random(1);
  EXPECT_EQ(expand(u.value().target, random), "/orders/checkout?x=1");

  auto bare = parse_url("example.com");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare.value().port, 80);
  EXPECT_EQ(expand(bare.value().target, random), "/");
  auto query_only = parse_url("http://h:1?q=2");
  ASSERT_TRUE(query_only);
  EXPECT_EQ(expand(query_only.value().target, random), "/?q=2");
  auto v6 = parse_url("http://[::1]:9000/x");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6.value().host, "::1");
  EXPECT_EQ(v6.value().port, 9000);
}

TEST(loadgen_url, malformed_urls_say_what_is_wrong) {
  EXPECT_NE(error_of("https://h/").find("https is not supported"), std::string::npos);
  EXPECT_NE(error_of("ftp://h/").find("only http://"), std::string::npos);
  EXPECT_NE(error_of("http://:80/").find("no host"), std::string::npos);
  EXPECT_NE(error_of("http://h:0/").find("1..65535"), std::string::npos);
  EXPECT_NE(error_of("http://h:99999/").find("1..65535"), std::string::npos);
  EXPECT_NE(error_of("http://h:/").find("empty port"), std::string::npos);
  EXPECT_NE(error_of("http://u:p@h/").find("--user"), std::string::npos);
  EXPECT_NE(error_of("http://[::1/").find("unclosed '['"), std::string::npos);
}

TEST(loadgen_url, random_parameters_stay_in_range_and_vary) {
  auto u = parse_url("http://h/orders/checkout/{random:0..99999}");
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_FALSE(u.value().target.fixed());
  std::mt19937_64 random(3);
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const auto t = expand(u.value().target, random);
    ASSERT_TRUE(t.starts_with("/orders/checkout/")) << t;
    const long v = std::stol(t.substr(17));
    ASSERT_GE(v, 0);
    ASSERT_LE(v, 99999);
    seen.insert(t);
  }
  EXPECT_GT(seen.size(), 990u);
  // The same seed gives the same sequence (--seed makes a run repeatable).
  std::mt19937_64 a(9), b(9);
  auto t1 = parse_url("http://h/{random:1..1000000}/{random:-5..5}").value().target;
  auto t2 = t1;
  for (int i = 0; i < 10; ++i) EXPECT_EQ(expand(t1, a), expand(t2, b));
}

TEST(loadgen_url, sequence_parameters_cycle_and_braces_escape) {
  auto t = target_template::parse("/a/{seq:3..5}/b{{x}}").value();
  std::mt19937_64 random(1);
  EXPECT_EQ(expand(t, random), "/a/3/b{x}");
  EXPECT_EQ(expand(t, random), "/a/4/b{x}");
  EXPECT_EQ(expand(t, random), "/a/5/b{x}");
  EXPECT_EQ(expand(t, random), "/a/3/b{x}");
  auto single = target_template::parse("/{random:7..7}").value();
  EXPECT_EQ(expand(single, random), "/7");
}

TEST(loadgen_url, malformed_templates_name_the_parameter) {
  auto why = [](std::string_view text) {
    auto t = target_template::parse(text);
    EXPECT_FALSE(t) << text;
    return t ? std::string() : std::string(t.error().detail());
  };
  EXPECT_NE(why("/x/{random}").find("needs a range"), std::string::npos);
  EXPECT_NE(why("/x/{rand:1..2}").find("unknown parameter '{rand:1..2}'"), std::string::npos);
  EXPECT_NE(why("/x/{random:9..1}").find("empty"), std::string::npos);
  EXPECT_NE(why("/x/{random:a..b}").find("two integers"), std::string::npos);
  EXPECT_NE(why("/x/{random:1..2").find("unclosed"), std::string::npos);
  EXPECT_NE(why("/x/}").find("unmatched"), std::string::npos);
  EXPECT_NE(error_of("http://h/{seq}").find("bad URL template"), std::string::npos);
}
