// hazelcast::cache and member_list beyond the conformance suite (conformance.cpp): the envelope
// and path encodings, and the failover policy (fake members on bulwark::http::server next to
// real ones; a real member whose REST DATA group is disabled).
#include <bulwark/hazelcast.hpp>

#include "fixture.hpp"
#include "support/error_table.hpp"
#include "support/run.hpp"

#include <bulwark/http/server.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <unistd.h>

namespace hz = bulwark::hazelcast;
namespace http = bulwark::http;
using namespace std::chrono_literals;
using bulwark::errc;
using bulwark::versioned;

namespace {

// A member impostor: answers readiness and data requests with configurable statuses and counts them.
struct fake_member {
  std::atomic<int> ready_status{200};
  std::atomic<int> data_status{200};
  std::atomic<int> ready_hits{0};
  std::atomic<int> data_hits{0};
  http::server server{{.port = 0}, [this](http::request& req) -> bulwark::task<http::response> {
                        if (req.path() == "/hazelcast/health/ready") {
                          ++ready_hits;
                          co_return http::response(ready_status.load());
                        }
                        ++data_hits;
                        co_return http::response(data_status.load());
                      }};
  fake_member() { server.start().value(); }
  ~fake_member() { server.stop(1s); }
  http::endpoint address() const { return {"127.0.0.1", server.port()}; }
};

// A loopback port nothing listens on.
http::endpoint closed_port() {
  asio::io_context ctx;
  asio::ip::tcp::acceptor a(ctx, {asio::ip::make_address("127.0.0.1"), 0});
  return {"127.0.0.1", a.local_endpoint().port()};
}

} // namespace

// --- envelope and path: pure functions ------------------------------------------------------

TEST(hazelcast_envelope, round_trips_binary_value_version_stored_at_and_ttl) {
  const std::string value("\0\x01\xff'\"\r\n", 7);
  const auto at = std::chrono::system_clock::time_point(std::chrono::milliseconds(1'700'000'000'123));
  const auto body = hz::encode_envelope(value, 42, at, 1500ms);
  ASSERT_EQ(body.size(), hz::envelope_header_size + value.size());
  auto e = hz::decode_envelope(body, hz::envelope_content_type);
  ASSERT_TRUE(e.has_value()) << e.error();
  EXPECT_EQ(e.value().entry.value, value);
  EXPECT_EQ(e.value().entry.version, 42u);
  EXPECT_EQ(e.value().entry.stored_at, at);
  EXPECT_EQ(e.value().ttl, 1500ms);
  EXPECT_FALSE(e.value().expired_at(at + 1499ms));
  EXPECT_TRUE(e.value().expired_at(at + 1500ms));
  e.value().ttl = 0ms;
  EXPECT_FALSE(e.value().expired_at(at + std::chrono::hours(24 * 365))) << "ttl 0 never expires";
}

TEST(hazelcast_envelope, foreign_values_are_bad_envelope) {
  const auto body = hz::encode_envelope("v", 1, std::chrono::system_clock::now(), 0ms);
  auto wrong_type = hz::decode_envelope(body, "text/plain");
  ASSERT_FALSE(wrong_type.has_value());
  EXPECT_EQ(wrong_type.error().code(), hz::make_error_code(hz::hazelcast_errc::bad_envelope));
  EXPECT_EQ(wrong_type.error(), errc::protocol_error);
  EXPECT_FALSE(hz::decode_envelope("BWC1short", hz::envelope_content_type).has_value());
  EXPECT_FALSE(hz::decode_envelope("XXXX" + body.substr(4), hz::envelope_content_type).has_value());
  EXPECT_TRUE(hz::decode_envelope(body, std::string(hz::envelope_content_type) + "; charset=x").has_value());
}

TEST(hazelcast_path, keys_are_percent_encoded_and_must_be_utf8) {
  EXPECT_EQ(hz::entry_path("m", "a-b_c.d~E9", 100).value(), "/hazelcast/rest/maps/m/a-b_c.d~E9");
  EXPECT_EQ(hz::entry_path("m", std::string("a/b c+%?\0\xc3\xa9", 11), 100).value(),
            "/hazelcast/rest/maps/m/a%2Fb%20c%2B%25%3F%00%C3%A9");
  for (std::string_view bad : {std::string_view(""), std::string_view("\xff"), std::string_view("\xc3"),
                               std::string_view("\xc0\xaf"), std::string_view("\xed\xa0\x80")}) {
    auto p = hz::entry_path("m", bad, 100);
    ASSERT_FALSE(p.has_value()) << bad;
    EXPECT_EQ(p.error(), errc::invalid_argument);
  }
  EXPECT_FALSE(hz::entry_path("m", std::string(101, 'k'), 100).has_value());
  EXPECT_TRUE(hz::valid_utf8("\xf0\x9f\x98\x80 ok"));
  EXPECT_FALSE(hz::valid_map_name("a/b"));
  EXPECT_EQ(hz::parse_members("127.0.0.1:1, 127.0.0.1:2").value().size(), 2u);
  EXPECT_EQ(hz::parse_members("127.0.0.1:1,127.0.0.1").error(), errc::invalid_argument);
  EXPECT_EQ(hz::parse_members(" , ").error(), errc::invalid_argument);
}

// --- the cache against real members: what the conformance suite does not cover --------------

class hazelcast_cache_test : public ::testing::Test {
protected:
  void SetUp() override {
    BULWARK_REQUIRE_SERVER(list, "BULWARK_HAZELCAST_MEMBERS");
    members_ =
        hz::member_list::create(ctx_.get_executor(), hz::member_options{.members = hz::parse_members(list).value()})
            .value();
    cache_ = std::make_unique<hz::cache>(hz::cache::create(members_, {.map = hz::test::unique_map("adapter")}).value());
  }
  template <class T> T run(asio::awaitable<T> op) { return bulwark::test::run(ctx_, std::move(op), 30s); }

  asio::io_context ctx_;
  std::shared_ptr<hz::member_list> members_;
  std::unique_ptr<hz::cache> cache_;
};

TEST_F(hazelcast_cache_test, keys_that_need_encoding_stay_distinct) {
  // '+' and ' ' and "%2B" would be one key without full percent-encoding; so would "a/b" and "a%2Fb".
  const std::vector<std::string> keys = {
      "a+b", "a b", "a%2Bb", "a/b", "a%2Fb", "?x=1&y", std::string("n\0l", 3), "\xc3\xa9t\xc3\xa9"};
  for (std::size_t i = 0; i < keys.size(); ++i)
    ASSERT_TRUE(run(cache_->put(keys[i], versioned{std::to_string(i), i + 1}, 60s)).value()) << keys[i];
  for (std::size_t i = 0; i < keys.size(); ++i) {
    auto got = run(cache_->get(keys[i]));
    ASSERT_TRUE(got.has_value() && got.value().has_value()) << keys[i];
    EXPECT_EQ(got.value()->value, std::to_string(i)) << keys[i];
  }
  EXPECT_EQ(run(cache_->get("\xff")).error(), errc::invalid_argument);
}

TEST_F(hazelcast_cache_test, a_foreign_value_is_a_protocol_error_not_a_hit) {
  // Another client stored plain text under the key.
  http::client raw(ctx_.get_executor());
  const auto to = members_->options().members.front();
  const auto path = hz::entry_path(cache_->options().map, "foreign", 100).value();
  auto posted = run(raw.request(to, http::make_request("POST", path, "plain", "text/plain")));
  ASSERT_TRUE(posted.has_value()) << posted.error();
  ASSERT_EQ(posted.value().status, 200) << posted.value().body;
  auto got = run(cache_->get("foreign"));
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code(), hz::make_error_code(hz::hazelcast_errc::bad_envelope));
  EXPECT_EQ(got.error(), errc::protocol_error);
  // erase removes it but does not count it as an entry; then a put works.
  EXPECT_FALSE(run(cache_->erase("foreign")).value());
  EXPECT_TRUE(run(cache_->put("foreign", versioned{"mine", 1}, 60s)).value());
}

TEST_F(hazelcast_cache_test, limits_and_bad_arguments) {
  auto small =
      hz::cache::create(members_, {.map = cache_->options().map, .max_key_bytes = 8, .max_value_bytes = 4}).value();
  EXPECT_EQ(run(small.put("123456789", versioned{"x", 1}, 60s)).error(), errc::invalid_argument);
  EXPECT_EQ(run(small.put("k", versioned{"12345", 1}, 60s)).error(), errc::too_large);
  EXPECT_EQ(run(small.put("k", versioned{"x", 1}, -1ms)).error(), errc::invalid_argument);
  EXPECT_EQ(run(small.put("", versioned{"x", 1}, 60s)).error().code(),
            hz::make_error_code(hz::hazelcast_errc::bad_key));
}

// Construction fails one way across bulwark: a factory's result, never a throwing constructor.
TEST_F(hazelcast_cache_test, bad_options_fail_the_factories_not_a_constructor) {
  const auto bad_map = hz::cache::create(members_, {.map = "bad/name"});
  ASSERT_FALSE(bad_map.has_value());
  EXPECT_EQ(bad_map.error(), errc::invalid_argument);
  EXPECT_EQ(bad_map.error().detail(), "hazelcast::cache: bad map name bad/name");
  EXPECT_EQ(hz::cache::create(nullptr).error(), errc::invalid_argument);
  const auto no_members = hz::member_list::create(ctx_.get_executor(), hz::member_options{});
  ASSERT_FALSE(no_members.has_value());
  EXPECT_EQ(no_members.error(), errc::invalid_argument);
}

TEST_F(hazelcast_cache_test, a_large_binary_value_round_trips) {
  std::string value(1 << 20, '\0');
  for (std::size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>((i * 7919) & 0xff);
  ASSERT_TRUE(run(cache_->put("big", versioned{value, 1}, 60s)).value());
  EXPECT_EQ(run(cache_->get("big")).value()->value, value);
}

// --- the member list: failover, probes, the disabled-group symptom, all down -----------------

TEST(hazelcast_members, all_members_down_is_unavailable_within_the_timeout) {
  asio::io_context ctx;
  auto owned_members = hz::member_list::create(ctx.get_executor(),
                                               {.members = {closed_port(), closed_port()}, .operation_timeout = 800ms})
                           .value();
  auto& members = *owned_members;
  const auto start = std::chrono::steady_clock::now();
  auto r = bulwark::test::run(ctx, members.send(http::make_request("GET", "/hazelcast/rest/maps/m/k")), 10s);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), errc::unavailable) << r.error();
  EXPECT_EQ(r.error().code(), hz::make_error_code(hz::hazelcast_errc::all_members_down));
  EXPECT_GE(took, 700ms) << "it keeps probing until the timeout";
  EXPECT_LT(took, 1500ms);
  for (const auto& m : members.status()) EXPECT_FALSE(m.healthy);
}

TEST(hazelcast_members, a_hung_member_times_out_and_the_next_one_answers) {
  // A listener that accepts (kernel backlog) and never answers.
  asio::io_context ctx;
  asio::ip::tcp::acceptor silent(ctx, {asio::ip::make_address("127.0.0.1"), 0});
  fake_member good;
  auto owned_members =
      hz::member_list::create(ctx.get_executor(),
                              {.members = {{"127.0.0.1", silent.local_endpoint().port()}, good.address()},
                               .attempt_timeout = 300ms,
                               .operation_timeout = 3s})
          .value();
  auto& members = *owned_members;
  const auto start = std::chrono::steady_clock::now();
  auto r = bulwark::test::run(ctx, members.send(http::make_request("GET", "/hazelcast/rest/maps/m/k")), 10s);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r.value().status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_FALSE(members.status()[0].healthy);
  EXPECT_NE(members.status()[0].last_error.find("timed out"), std::string::npos) << members.status()[0].last_error;
}

TEST(hazelcast_members, a_failed_member_is_probed_before_it_is_used_again) {
  asio::io_context ctx;
  fake_member flaky, other;
  flaky.data_status = 503;
  flaky.ready_status = 503;
  auto owned_members = hz::member_list::create(ctx.get_executor(), {.members = {flaky.address(), other.address()},
                                                                    .operation_timeout = 600ms,
                                                                    .probe_interval = 50ms})
                           .value();
  auto& members = *owned_members;
  auto send = [&] {
    return bulwark::test::run(ctx, members.send(http::make_request("GET", "/hazelcast/rest/maps/m/k")));
  };
  ASSERT_EQ(send().value().status, 200);
  EXPECT_EQ(flaky.data_hits, 1) << "a 503 moves on to the next member";
  EXPECT_FALSE(members.status()[0].healthy);
  // Now the other member fails too: the flaky one is probed (still 503), never sent data.
  other.data_status = 503;
  other.ready_status = 503;
  auto r = send();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), errc::unavailable);
  EXPECT_EQ(flaky.data_hits, 1) << "no data request to a member whose probe failed";
  EXPECT_GE(flaky.ready_hits, 2);
  // It recovers: one successful probe, then the request.
  flaky.ready_status = 200;
  flaky.data_status = 200;
  const int probes_before = flaky.ready_hits;
  ASSERT_EQ(send().value().status, 200);
  EXPECT_EQ(flaky.data_hits, 2);
  EXPECT_GT(flaky.ready_hits, probes_before);
  EXPECT_TRUE(members.status()[0].healthy);
}

TEST(hazelcast_members, a_member_with_the_rest_data_group_disabled_is_a_protocol_error_not_a_hang) {
  BULWARK_REQUIRE_SERVER(member, "BULWARK_HAZELCAST_NO_DATA_MEMBER");
  asio::io_context ctx;
  auto members =
      hz::member_list::create(ctx.get_executor(),
                              hz::member_options{.members = hz::parse_members(member).value(), .operation_timeout = 5s})
          .value();
  auto c = hz::cache::create(members, {.map = hz::test::unique_map("nodata")}).value();
  for (int i = 0; i < 2; ++i) { // the second call finds the member already marked misconfigured
    const auto start = std::chrono::steady_clock::now();
    auto got = bulwark::test::run(ctx, c.get("k"), 10s);
    ASSERT_FALSE(got.has_value());
    EXPECT_EQ(got.error(), errc::protocol_error) << got.error();
    EXPECT_EQ(got.error().code(), hz::make_error_code(hz::hazelcast_errc::rest_group_disabled));
    EXPECT_NE(got.error().message().find("DATA endpoint group"), std::string::npos) << got.error();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 3s) << "answered, not timed out";
  }
  auto put = bulwark::test::run(ctx, c.put("k", versioned{"v", 1}, 60s), 10s);
  ASSERT_FALSE(put.has_value());
  EXPECT_EQ(put.error(), errc::protocol_error);
}

TEST(hazelcast_members, a_misconfigured_member_next_to_good_ones_is_skipped) {
  BULWARK_REQUIRE_SERVER(nodata, "BULWARK_HAZELCAST_NO_DATA_MEMBER");
  BULWARK_REQUIRE_SERVER(list, "BULWARK_HAZELCAST_MEMBERS");
  asio::io_context ctx;
  auto endpoints = hz::parse_members(nodata + "," + list).value();
  auto members = hz::member_list::create(ctx.get_executor(), hz::member_options{.members = endpoints}).value();
  auto c = hz::cache::create(members, {.map = hz::test::unique_map("mixed")}).value();
  ASSERT_TRUE(bulwark::test::run(ctx, c.put("k", versioned{"v", 1}, 60s), 10s).value());
  EXPECT_TRUE(members->status()[0].misconfigured);
  EXPECT_EQ(bulwark::test::run(ctx, c.get("k"), 10s).value()->value, "v");
}

TEST(hazelcast_members, stop_rejects_new_requests) {
  asio::io_context ctx;
  fake_member m;
  auto owned_members = hz::member_list::create(ctx.get_executor(), {.members = {m.address()}}).value();
  auto& members = *owned_members;
  ASSERT_TRUE(bulwark::test::run(ctx, members.send(http::make_request("GET", "/x"))).has_value());
  bulwark::test::run(ctx, members.stop()).value();
  auto r = bulwark::test::run(ctx, members.send(http::make_request("GET", "/x")));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), errc::cancelled);
}

TEST(hazelcast_errors, the_table_matches_the_category_and_docs_errors_md) {
  EXPECT_STREQ(hz::hazelcast_category().name(), "hazelcast");
  bulwark::test::expect_category_matches_table_and_docs(hz::hazelcast_category(), hz::hazelcast_errc_rows, 7);
}
