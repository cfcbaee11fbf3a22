// The order stamp, the hybrid logical clock and the stored frame: stamps order writes across
// replicas, frames round-trip, and every malformed input is refused with a message.
#include <bulwark/coarse_clock.hpp>
#include <bulwark/flows/frame.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace flows = bulwark::flows;
using flows::order_stamp;

namespace {

// 2026-03-04T05:06:07.089Z, as a wall origin for manual hybrid clocks.
const auto origin = std::chrono::system_clock::time_point(std::chrono::seconds(1772600767)) + 89ms;
const std::uint64_t origin_ms = (1772600767ull - 1704067200ull) * 1000 + 89;

flows::frame sample() {
  return flows::frame{flows::write_state::pending, order_stamp::make(origin_ms, 5, 17), "req-0123456789abcdef",
                      std::string("value\0with\xffnul", 15)};
}

} // namespace

TEST(frame, stamp_fields_and_wall) {
  const auto s = order_stamp::make(origin_ms, 2047, 4095);
  EXPECT_EQ(s.ms(), origin_ms);
  EXPECT_EQ(s.logical(), 2047);
  EXPECT_EQ(s.node(), 4095);
  EXPECT_EQ(s.wall(), origin);
  EXPECT_EQ(s.value, (origin_ms << 23) | (2047u << 12) | 4095u);
  // The order is the millisecond first, then the logical counter, then the node.
  EXPECT_LT(order_stamp::make(origin_ms, 2047, 4095), order_stamp::make(origin_ms + 1, 0, 0));
  EXPECT_LT(order_stamp::make(origin_ms, 1, 4095), order_stamp::make(origin_ms, 2, 0));
  EXPECT_LT(order_stamp::make(origin_ms, 1, 3), order_stamp::make(origin_ms, 1, 4));
}

TEST(frame, clock_follows_the_manual_wall_and_carries_the_node) {
  auto steady = bulwark::clock::manual();
  flows::hybrid_clock hlc(42, steady, origin);
  const auto a = hlc.now();
  EXPECT_EQ(a.node(), 42);
  EXPECT_EQ(a.ms(), origin_ms);
  EXPECT_EQ(a.logical(), 0);
  EXPECT_EQ(a.wall(), origin);
  const auto b = hlc.now(); // same millisecond: the logical counter moves
  EXPECT_EQ(b.ms(), origin_ms);
  EXPECT_EQ(b.logical(), 1);
  steady.advance(250ms);
  const auto c = hlc.now(); // the wall moved: the counter restarts
  EXPECT_EQ(c.ms(), origin_ms + 250);
  EXPECT_EQ(c.logical(), 0);
  EXPECT_EQ(c.wall(), origin + 250ms);
}

TEST(frame, a_stamp_from_the_callers_wall_read_follows_it_and_still_rises) {
  flows::hybrid_clock hlc(7);
  const auto wall = origin + 5s;
  const auto a = hlc.now(wall);
  EXPECT_EQ(a.ms(), origin_ms + 5000);
  EXPECT_EQ(a.node(), 7);
  const auto b = hlc.now(origin); // an earlier read: the stamp still rises
  EXPECT_GT(b, a);
  // On a manual clock the wall read is ignored: the stamp follows the manual clock.
  auto steady = bulwark::clock::manual();
  flows::hybrid_clock manual(1, steady, origin);
  EXPECT_EQ(manual.now(origin + 1h).ms(), origin_ms);
}

TEST(frame, encode_into_a_reused_buffer_gives_the_same_bytes) {
  std::string buffer;
  flows::encode_into(buffer, flows::write_state::durable, {123456789}, "req-1", std::string(100, 'v'));
  EXPECT_EQ(buffer, flows::encode(flows::write_state::durable, {123456789}, "req-1", std::string(100, 'v')));
  flows::encode_into(buffer, flows::write_state::pending, {42}, "", "x"); // shorter: replaced, not appended
  EXPECT_EQ(buffer, flows::encode(flows::write_state::pending, {42}, "", "x"));
  auto decoded = flows::decode(buffer);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded.value().stamp.value, 42u);
  EXPECT_EQ(decoded.value().value, "x");
}

TEST(frame, real_clock_stamps_follow_the_coarse_wall_clock) {
  flows::hybrid_clock hlc(1);
  // The physical part is the coarse wall clock (the last kernel tick): not before it, and never
  // ahead of the precise clock read after it.
  const auto before = bulwark::coarse_system_clock::now();
  const auto s = hlc.now();
  const auto after = std::chrono::system_clock::now();
  EXPECT_GE(s.wall(), std::chrono::floor<std::chrono::milliseconds>(before));
  EXPECT_LE(s.wall(), after);
}

TEST(frame, logical_overflow_within_one_ms_borrows_the_next_ms) {
  flows::hybrid_clock hlc(7, bulwark::clock::manual(), origin);
  order_stamp last{};
  for (int i = 0; i < 2048; ++i) last = hlc.now();
  EXPECT_EQ(last.ms(), origin_ms);
  EXPECT_EQ(last.logical(), 2047);
  const auto next = hlc.now(); // the wall has not moved, the counter is full
  EXPECT_GT(next, last);
  EXPECT_EQ(next.ms(), origin_ms + 1);
  EXPECT_EQ(next.logical(), 0);
  EXPECT_EQ(next.node(), 7);
}

TEST(frame, observe_moves_past_a_remote_stamp) {
  flows::hybrid_clock hlc(1, bulwark::clock::manual(), origin);
  const auto remote = order_stamp::make(origin_ms + 5000, 9, 4000); // a replica whose wall runs ahead
  hlc.observe(remote);
  const auto s = hlc.now();
  EXPECT_GT(s, remote);
  EXPECT_EQ(s.ms(), origin_ms + 5000);
  EXPECT_EQ(s.logical(), 10);
  EXPECT_EQ(s.node(), 1);
  // An older stamp moves nothing back.
  hlc.observe(order_stamp::make(origin_ms, 0, 0));
  EXPECT_GT(hlc.now(), s);
}

TEST(frame, stamps_strictly_increase_across_two_threads) {
  flows::hybrid_clock hlc(3); // the real clock: both threads race on one millisecond
  constexpr int per_thread = 20000;
  std::vector<order_stamp> a, b;
  a.reserve(per_thread);
  b.reserve(per_thread);
  std::thread t1([&] {
    for (int i = 0; i < per_thread; ++i) a.push_back(hlc.now());
  });
  std::thread t2([&] {
    for (int i = 0; i < per_thread; ++i) b.push_back(hlc.now());
  });
  t1.join();
  t2.join();
  // Each thread saw its own stamps strictly rise, and no stamp was handed out twice.
  EXPECT_TRUE(std::adjacent_find(a.begin(), a.end(), std::greater_equal<>{}) == a.end());
  EXPECT_TRUE(std::adjacent_find(b.begin(), b.end(), std::greater_equal<>{}) == b.end());
  std::vector<order_stamp> all(a);
  all.insert(all.end(), b.begin(), b.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end()) << "two threads got the same stamp";
}

TEST(frame, node_id_over_4095_is_refused) {
  EXPECT_THROW(flows::hybrid_clock(4096), std::invalid_argument);
  EXPECT_NO_THROW(flows::hybrid_clock(4095));
}

TEST(frame, round_trip) {
  const auto f = sample();
  const auto bytes = flows::encode(f);
  EXPECT_TRUE(flows::is_frame(bytes));
  EXPECT_EQ(bytes.size(), flows::frame_header_bytes + f.request_id.size() + f.value.size());
  auto back = flows::decode(bytes);
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(back.value(), f);
  // An empty id and value, a durable state, the extreme stamp.
  const flows::frame empty{flows::write_state::durable, order_stamp{~0ull}, "", ""};
  auto e = flows::decode(flows::encode(empty));
  ASSERT_TRUE(e) << e.error();
  EXPECT_EQ(e.value(), empty);
  // The longest id.
  const flows::frame longest{flows::write_state::durable, order_stamp{1}, std::string(64, 'i'), "v"};
  EXPECT_EQ(flows::decode(flows::encode(longest)).value(), longest);
}

TEST(frame, decode_header_tells_state_stamp_and_where_the_value_starts) {
  const auto f = sample();
  const auto bytes = flows::encode(f);
  auto h = flows::decode_header(bytes);
  ASSERT_TRUE(h) << h.error();
  EXPECT_EQ(h.value().state, f.state);
  EXPECT_EQ(h.value().stamp, f.stamp);
  EXPECT_EQ(h.value().request_id_size, f.request_id.size());
  EXPECT_EQ(bytes.substr(flows::frame_header_bytes, h.value().request_id_size), f.request_id);
  EXPECT_EQ(bytes.substr(h.value().value_offset), f.value);
}

TEST(frame, encode_refuses_an_over_long_request_id) {
  EXPECT_THROW(flows::encode(flows::frame{flows::write_state::durable, {}, std::string(65, 'i'), ""}),
               std::invalid_argument);
  EXPECT_EQ(flows::check_request_id(std::string(65, 'i')).error(), bulwark::errc::invalid_argument);
  EXPECT_TRUE(flows::check_request_id(std::string(64, 'i')));
}

TEST(frame, every_malformed_input_is_invalid_argument_with_a_message) {
  const auto good = flows::encode(sample());
  auto with = [&](std::size_t at, char c) {
    auto b = good;
    b[at] = c;
    return b;
  };
  struct bad {
    std::string bytes;
    std::string says;
  };
  const std::vector<bad> cases = {
      {"", "magic"},
      {"plain value someone else wrote", "magic"},
      {"bwf", "magic"},
      {"bwfr", "truncated"},
      {good.substr(0, 14), "truncated"},
      {with(4, 2), "format version 2"},
      {with(4, 0), "format version 0"},
      {with(5, 2), "state 2"},
      {with(14, 65), "over 64"},
      {with(14, 64), "truncated"}, // claims 64 id bytes, fewer remain
      {good.substr(0, flows::frame_header_bytes + 3), "truncated"},
  };
  for (const auto& c : cases) {
    auto r = flows::decode(c.bytes);
    ASSERT_FALSE(r) << "accepted: " << c.bytes;
    EXPECT_EQ(r.error(), bulwark::errc::invalid_argument);
    EXPECT_NE(r.error().message().find(c.says), std::string::npos) << r.error().message();
    auto h = flows::decode_header(c.bytes); // the same checks, the same words
    ASSERT_FALSE(h) << "header accepted: " << c.bytes;
    EXPECT_EQ(h.error().message(), r.error().message());
  }
  EXPECT_FALSE(flows::is_frame("plain value"));
  EXPECT_TRUE(flows::is_frame("bwfr"));
}

TEST(frame, retry_message_round_trip) {
  auto f = sample();
  f.state = flows::write_state::durable; // the message always carries a pending frame
  const auto m = flows::retry_message("channel/7", f, 41);
  EXPECT_EQ(m.key, "channel/7");
  EXPECT_EQ(m.find_header("bulwark-request-id"), f.request_id);
  EXPECT_EQ(m.find_header("bulwark-known-version"), "41");
  const bulwark::envelope e{"retry", 0, 0, 1, m.key, m.value, m.headers};
  auto r = flows::parse_retry_message(e);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r.value().key, "channel/7");
  EXPECT_EQ(r.value().known_version, 41u);
  EXPECT_EQ(r.value().f.state, flows::write_state::pending);
  EXPECT_EQ(r.value().f.stamp, f.stamp);
  EXPECT_EQ(r.value().f.value, f.value);
  EXPECT_EQ(r.value().f.request_id, f.request_id);
}

TEST(frame, malformed_retry_messages_are_invalid_argument) {
  const auto good = flows::retry_message("k", sample(), 0);
  auto parse = [](const bulwark::message& m) {
    const bulwark::envelope e{"retry", 0, 0, 1, m.key, m.value, m.headers};
    return flows::parse_retry_message(e);
  };
  ASSERT_TRUE(parse(good));
  auto no_key = good;
  no_key.key.clear();
  auto foreign = good;
  foreign.value = "not a frame";
  auto durable = good;
  durable.value = flows::encode(flows::frame{flows::write_state::durable, {}, sample().request_id, "v"});
  auto other_id = good;
  other_id.headers[0].value = "another";
  auto no_version = good;
  no_version.headers.pop_back();
  auto bad_version = good;
  bad_version.headers[1].value = "12x";
  auto empty_version = good;
  empty_version.headers[1].value = "";
  for (const auto* m : {&no_key, &foreign, &durable, &other_id, &no_version, &bad_version, &empty_version}) {
    auto r = parse(*m);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error(), bulwark::errc::invalid_argument);
    EXPECT_FALSE(r.error().detail().empty());
  }
}
