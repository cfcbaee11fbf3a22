#include <bulwark/flows/snapshot.hpp>

#include "support/run.hpp"

#include <asio/io_context.hpp>
#include <asio/thread_pool.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/resource.h>

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using bulwark::errc;
using bulwark::flows::last_known_good;
using bulwark::flows::snapshot_entry;
using bulwark::flows::snapshot_writer;

namespace {

class snapshot : public ::testing::Test {
protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / bulwark::test::unique_name("bulwark-snapshot");
    fs::create_directories(dir);
    path = dir / "lkg.snapshot";
  }
  void TearDown() override { fs::remove_all(dir); }

  std::string read_bytes(const fs::path& p) const {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  void write_bytes(const fs::path& p, std::string_view bytes) const {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  // Files in dir other than the snapshot itself (a leftover temporary file would be one).
  std::vector<std::string> strays() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path() != path) out.push_back(e.path().filename().string());
    return out;
  }

  fs::path dir;
  fs::path path;
};

std::chrono::system_clock::time_point at_ns(std::int64_t ns) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(ns)));
}

std::vector<snapshot_entry> sample_entries() {
  std::string binary;
  for (int i = 0; i < 256; ++i) binary.push_back(static_cast<char>(i));
  return {
      {"channel/1", {"{\"name\":\"one\"}", 7, at_ns(1'700'000'000'123'456'789)}},
      {std::string("key\0with\xffnul", 13), {binary, std::numeric_limits<bulwark::version_t>::max(), at_ns(-5)}},
      {"empty-value", {"", 1, at_ns(0)}},
      {"large", {std::string(70'000, 'x'), 42, at_ns(1)}},
  };
}

// The byte at `at` of a snapshot changed, and the CRC made right again, so that the decoder's
// checks behind the checksum are reached.
std::string patched(std::string bytes, std::size_t at, std::string_view with) {
  bytes.replace(at, with.size(), with);
  std::string crc;
  bulwark::flows::detail::put_u32(crc, bulwark::detail::crc32(std::string_view(bytes).substr(16)));
  bytes.replace(12, 4, crc);
  return bytes;
}

std::string le64(std::uint64_t v) {
  std::string s;
  bulwark::flows::detail::put_u64(s, v);
  return s;
}

void expect_invalid(const bulwark::result<std::vector<snapshot_entry>>& r, std::string_view what,
                    std::string_view source) {
  ASSERT_FALSE(r) << "decoded " << r.value().size() << " entries, expected: " << what;
  EXPECT_EQ(r.error(), errc::invalid_argument) << r.error().message();
  EXPECT_NE(r.error().message().find(what), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find(source), std::string::npos) << "names the file: " << r.error().message();
}

} // namespace

TEST_F(snapshot, round_trips_binary_keys_and_values_versions_and_times) {
  const auto entries = sample_entries();
  ASSERT_TRUE(last_known_good::save(path, entries)) << "save";
  const auto loaded = last_known_good::load(path);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded.value(), entries);
  EXPECT_TRUE(strays().empty()) << "no temporary file left: " << strays().front();
}

TEST_F(snapshot, empty_snapshot_round_trips_and_a_missing_file_is_an_empty_snapshot) {
  const auto missing = last_known_good::load(dir / "never-saved");
  ASSERT_TRUE(missing) << missing.error().message();
  EXPECT_TRUE(missing.value().empty());

  ASSERT_TRUE(last_known_good::save(path, {}));
  EXPECT_EQ(read_bytes(path).size(), last_known_good::header_bytes);
  const auto loaded = last_known_good::load(path);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_TRUE(loaded.value().empty());
}

TEST_F(snapshot, a_save_replaces_the_previous_snapshot_whole) {
  ASSERT_TRUE(last_known_good::save(path, sample_entries()));
  const std::vector<snapshot_entry> newer{{"only", {"v", 3, at_ns(9)}}};
  ASSERT_TRUE(last_known_good::save(path, newer));
  EXPECT_EQ(last_known_good::load(path).value(), newer);
}

// The layout docs/last_known_good.md and the header comment describe, byte for byte: a change
// to it is a new format version, not an accident.
TEST_F(snapshot, file_format_1_is_byte_for_byte_as_documented) {
  const std::vector<snapshot_entry> one{{"k", {"val", 0x0102030405060708ull, at_ns(0x1122334455667788)}}};
  const auto bytes = last_known_good::encode(one).value();
  std::string body;
  body += std::string("\x01\x00\x00\x00", 4) + "k";
  body += std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8);
  body += std::string("\x88\x77\x66\x55\x44\x33\x22\x11", 8);
  body += std::string("\x03\x00\x00\x00", 4) + "val";
  std::string covered = le64(1) + le64(body.size()) + body;
  std::string expected = std::string("\x89"
                                     "BWLKG\r\n",
                                     8) +
                         std::string("\x01\x00\x00\x00", 4);
  bulwark::flows::detail::put_u32(expected, bulwark::detail::crc32(covered));
  expected += covered;
  EXPECT_EQ(bytes, expected);
  // zlib's CRC-32 of the covered bytes, computed independently of detail::crc32.
  EXPECT_EQ(bulwark::detail::crc32("The quick brown fox jumps over the lazy dog"), 0x414FA339u);
}

TEST_F(snapshot, a_failed_save_leaves_the_previous_file_and_no_temporary_file) {
  const auto old_entries = sample_entries();
  ASSERT_TRUE(last_known_good::save(path, old_entries));
  const auto old_bytes = read_bytes(path);

  // The kernel refuses writes past RLIMIT_FSIZE with EFBIG (once SIGXFSZ is ignored): a real
  // write failure half way through the temporary file.
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto* previous_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::vector<snapshot_entry> big{{"big", {std::string(100'000, 'b'), 9, at_ns(1)}}};
  const auto r = last_known_good::save(path, big);
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, previous_handler);

  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::unavailable);
  EXPECT_NE(r.error().message().find("write"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("File too large"), std::string::npos) << "the OS text: " << r.error().message();
  EXPECT_NE(r.error().message().find(path.string()), std::string::npos) << r.error().message();
  EXPECT_EQ(read_bytes(path), old_bytes);
  EXPECT_EQ(last_known_good::load(path).value(), old_entries);
  EXPECT_TRUE(strays().empty()) << "the temporary file was removed: " << strays().front();
}

TEST_F(snapshot, a_save_into_a_missing_directory_is_unavailable_with_the_os_text) {
  const auto r = last_known_good::save(dir / "no-such-dir" / "lkg", sample_entries());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::unavailable);
  EXPECT_NE(r.error().message().find("No such file or directory"), std::string::npos) << r.error().message();
  EXPECT_FALSE(fs::exists(dir / "no-such-dir"));
}

TEST_F(snapshot, a_leftover_temporary_file_from_a_crash_is_never_read) {
  ASSERT_TRUE(last_known_good::save(path, sample_entries()));
  // What a crash between write and rename leaves: a partial temporary file beside the snapshot.
  write_bytes(fs::path(path.string() + ".999.0.tmp"), read_bytes(path).substr(0, 40));
  EXPECT_EQ(last_known_good::load(path).value(), sample_entries());
}

TEST_F(snapshot, every_kind_of_corruption_is_an_invalid_argument_naming_file_and_problem) {
  const auto good = last_known_good::encode(sample_entries()).value();
  const std::string src = path.string();
  auto load_bytes = [&](std::string_view bytes) {
    write_bytes(path, bytes);
    return last_known_good::load(path);
  };
  expect_invalid(load_bytes(""), "empty file", src);
  expect_invalid(load_bytes("{\"channel/1\": \"a JSON file, say\"}"), "foreign file", src);
  expect_invalid(load_bytes("BWLKG"), "foreign file", src);
  expect_invalid(load_bytes(good.substr(0, 5)), "truncated in the header", src);
  expect_invalid(load_bytes(good.substr(0, 20)), "truncated in the header (20 of 32 bytes)", src);
  expect_invalid(load_bytes(patched(good, 8, std::string("\x02\x00\x00\x00", 4))),
                 "format version 2 is newer than this build reads (1)", src);
  expect_invalid(load_bytes(patched(good, 8, std::string("\x00\x00\x00\x00", 4))), "format version 0", src);
  expect_invalid(load_bytes(good.substr(0, good.size() - 1)), "truncated: the header announces", src);
  expect_invalid(load_bytes(good + "x"), "1 bytes after the end of the snapshot", src);
  {
    auto flipped = good;
    flipped[good.size() - 10] ^= 0x01; // one bit of the last value
    expect_invalid(load_bytes(flipped), "checksum mismatch", src);
    auto header_flipped = good;
    header_flipped[16] ^= 0x01; // the entry count is covered too
    expect_invalid(load_bytes(header_flipped), "checksum mismatch", src);
  }
  // Behind a correct checksum: lengths that do not add up (a writer bug, or a crafted file).
  expect_invalid(load_bytes(patched(good, 16, le64(std::uint64_t(1) << 60))), "cannot fit in", src);
  expect_invalid(load_bytes(patched(good, 16, le64(3))), "bytes after the last of 3 entries", src);
  expect_invalid(load_bytes(patched(good, 16, le64(5))), "entry 4: truncated before the key length", src);
  expect_invalid(load_bytes(patched(good, 32, std::string("\xff\xff\xff\x7f", 4))),
                 "entry 0: key length runs past the end", src);
  // The first entry's value length (after its 9-byte key, version and stored_at).
  expect_invalid(load_bytes(patched(good, 32 + 4 + 9 + 16, std::string("\xff\xff\xff\xff", 4))),
                 "entry 0: value length runs past the end", src);
}

TEST_F(snapshot, truncated_at_every_byte_offset_is_an_error_not_a_crash) {
  const std::vector<snapshot_entry> small{{"a", {"1", 1, at_ns(1)}}, {"bb", {"", 2, at_ns(2)}}, {"", {"ccc", 3, {}}}};
  ASSERT_TRUE(last_known_good::save(path, small));
  const auto whole = read_bytes(path);
  ASSERT_EQ(last_known_good::load(path).value(), small);
  for (std::size_t n = 0; n < whole.size(); ++n) {
    fs::resize_file(path, n);
    const auto r = last_known_good::load(path);
    ASSERT_FALSE(r) << "a file cut at " << n << " of " << whole.size() << " bytes loaded";
    EXPECT_EQ(r.error(), errc::invalid_argument) << n << ": " << r.error().message();
    write_bytes(path, whole);
  }
}

TEST_F(snapshot, load_refuses_a_file_over_its_limit_before_reading_it) {
  ASSERT_TRUE(last_known_good::save(path, sample_entries()));
  const auto r = last_known_good::load(path, 1000);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::invalid_argument);
  EXPECT_NE(r.error().message().find("exceeds the limit of 1000"), std::string::npos) << r.error().message();
}

TEST_F(snapshot, load_of_a_directory_is_unavailable_not_a_snapshot) {
  const auto r = last_known_good::load(dir);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::unavailable);
  EXPECT_NE(r.error().message().find("Is a directory"), std::string::npos) << r.error().message();
}

// ---- snapshot_writer ----

namespace {

struct provider_state {
  int calls = 0;
  bool throw_next = false;
  std::vector<snapshot_entry> operator()() {
    ++calls;
    if (throw_next) {
      throw_next = false;
      throw std::runtime_error("provider broke");
    }
    return {{"generation", {std::to_string(calls), static_cast<bulwark::version_t>(calls), at_ns(calls)}}};
  }
};

std::string generation(const fs::path& p) {
  auto r = last_known_good::load(p);
  if (!r || r.value().empty()) return "none";
  return r.value().front().entry.value;
}

} // namespace

TEST_F(snapshot, writer_saves_every_period_on_the_clock_and_once_more_on_stop) {
  asio::io_context ctx;
  const auto clk = bulwark::clock::manual();
  provider_state p;
  snapshot_writer writer(ctx.get_executor(), std::ref(p), {.path = path, .period = 10s, .clock = clk});
  writer.start();
  ctx.poll();
  EXPECT_EQ(generation(path), "none");

  clk.advance(10s - 1ms);
  ctx.poll();
  EXPECT_EQ(generation(path), "none") << "one millisecond early";
  clk.advance(1ms);
  ctx.poll();
  EXPECT_EQ(generation(path), "1");
  clk.advance(10s);
  ctx.poll();
  EXPECT_EQ(generation(path), "2");
  EXPECT_EQ(writer.saves(), 2u);
  EXPECT_EQ(writer.age(), 0s);
  clk.advance(3s);
  EXPECT_EQ(writer.age(), 3s);

  const auto stopped = bulwark::test::run(ctx, writer.stop());
  ASSERT_TRUE(stopped) << stopped.error().message();
  EXPECT_EQ(generation(path), "3") << "the final save on stop";
  EXPECT_EQ(writer.saves(), 3u);

  clk.advance(60s);
  ctx.poll();
  EXPECT_EQ(p.calls, 3) << "no save after stop";
  EXPECT_TRUE(bulwark::test::run(ctx, writer.stop())) << "a second stop";
  EXPECT_EQ(p.calls, 3) << "a second stop saves nothing";
}

// Regression: now + a period of milliseconds::max() overflowed the clock's nanoseconds into the
// past, so the writer saved at once and again on every turn instead of only on stop.
TEST_F(snapshot, writer_with_a_period_of_milliseconds_max_saves_only_on_stop) {
  asio::io_context ctx;
  const auto clk = bulwark::clock::manual();
  provider_state p;
  snapshot_writer writer(ctx.get_executor(), std::ref(p),
                         {.path = path, .period = std::chrono::milliseconds::max(), .clock = clk});
  writer.start();
  for (int i = 0; i < 100 && ctx.poll_one() > 0; ++i) {
  }
  clk.advance(std::chrono::hours(24 * 365));
  for (int i = 0; i < 100 && ctx.poll_one() > 0; ++i) {
  }
  EXPECT_EQ(p.calls, 0) << "saved before stop: the next save's time wrapped into the past";
  const auto stopped = bulwark::test::run(ctx, writer.stop());
  ASSERT_TRUE(stopped) << stopped.error().message();
  EXPECT_EQ(p.calls, 1) << "the final save on stop";
}

TEST_F(snapshot, writer_reports_failures_then_recovers_and_exports_its_age) {
  asio::io_context ctx;
  const auto clk = bulwark::clock::manual();
  auto reg = std::make_shared<bulwark::metrics::registry>();
  std::vector<bulwark::error> failures;
  provider_state p;
  const auto nested = dir / "later" / "lkg";
  snapshot_writer writer(ctx.get_executor(), std::ref(p),
                         {.path = nested,
                          .period = 10s,
                          .clock = clk,
                          .on_failure = [&](const bulwark::error& e) { failures.push_back(e); },
                          .metrics = reg,
                          .name = "channels"});
  writer.start();
  clk.advance(10s);
  ctx.poll();
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0], errc::unavailable);
  EXPECT_EQ(writer.failures(), 1u);
  clk.advance(10s);
  p.throw_next = true;
  ctx.poll();
  ASSERT_EQ(failures.size(), 2u);
  EXPECT_NE(failures[1].message().find("provider threw: provider broke"), std::string::npos) << failures[1].message();
  auto text = reg->expose();
  EXPECT_NE(text.find("bulwark_snapshot_saves_total{snapshot=\"channels\",result=\"error\"} 2"), std::string::npos)
      << text;
  EXPECT_NE(text.find("bulwark_snapshot_age_seconds{snapshot=\"channels\"} 20"), std::string::npos)
      << "age since the writer was made, as no save succeeded yet\n"
      << text;

  fs::create_directories(nested.parent_path());
  clk.advance(10s);
  ctx.poll();
  EXPECT_EQ(generation(nested), "3");
  EXPECT_EQ(writer.saves(), 1u);
  text = reg->expose();
  EXPECT_NE(text.find("bulwark_snapshot_saves_total{snapshot=\"channels\",result=\"ok\"} 1"), std::string::npos)
      << text;
  EXPECT_NE(text.find("bulwark_snapshot_age_seconds{snapshot=\"channels\"} 0"), std::string::npos) << text;
  EXPECT_NE(text.find("bulwark_snapshot_entries{snapshot=\"channels\"} 1"), std::string::npos) << text;
  EXPECT_EQ(text.find("bulwark_snapshot_last_success_timestamp_seconds{snapshot=\"channels\"} 0\n"), std::string::npos)
      << "a wall-clock time was set\n"
      << text;
  EXPECT_TRUE(bulwark::test::run(ctx, writer.stop()));
}

TEST_F(snapshot, writer_stop_without_start_saves_once) {
  asio::io_context ctx;
  provider_state p;
  snapshot_writer writer(ctx.get_executor(), std::ref(p), {.path = path, .clock = bulwark::clock::manual()});
  ASSERT_TRUE(bulwark::test::run(ctx, writer.stop()));
  EXPECT_EQ(generation(path), "1");
  writer.start(); // after stop: nothing runs
  ctx.poll();
  EXPECT_EQ(p.calls, 1);
}

TEST_F(snapshot, writer_final_save_failure_is_returned_by_stop) {
  asio::io_context ctx;
  provider_state p;
  snapshot_writer writer(ctx.get_executor(), std::ref(p),
                         {.path = dir / "missing" / "lkg", .clock = bulwark::clock::manual()});
  writer.start();
  const auto r = bulwark::test::run(ctx, writer.stop());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), errc::unavailable);
}

TEST_F(snapshot, writer_saves_on_a_blocking_executor_and_returns_to_its_strand) {
  asio::io_context ctx;
  asio::thread_pool pool(1);
  const auto clk = bulwark::clock::manual();
  provider_state p;
  snapshot_writer writer(ctx.get_executor(), std::ref(p),
                         {.path = path, .period = 1s, .clock = clk, .blocking_executor = pool.get_executor()});
  writer.start();
  ctx.poll();
  clk.advance(1s);
  ASSERT_TRUE(bulwark::test::run(ctx, bulwark::test::eventually([&] { return writer.saves() == 1; }, 10s)));
  EXPECT_EQ(generation(path), "1");
  // Stop while the loop waits for its next period: it wakes, and the final save runs on the pool.
  ASSERT_TRUE(bulwark::test::run(ctx, writer.stop()));
  EXPECT_EQ(generation(path), "2");
  EXPECT_EQ(p.calls, 2);
  pool.join();
}
