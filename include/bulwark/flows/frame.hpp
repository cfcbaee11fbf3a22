#pragma once
// INTERIM (part P, branch replayer): the smallest implementation of part F's flows/frame.hpp
// API as the preamble specifies it, so the retry replayer compiles and is tested before part
// F's file lands. At merge, part F's flows/frame.hpp replaces this file whole.

#include <bulwark/event_bus.hpp>
#include <bulwark/result.hpp>
#include <bulwark/versioned.hpp>

#include <charconv>
#include <chrono>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

namespace bulwark::flows {

/// A hybrid-logical-clock value: (ms since 2024-01-01 << 23) | (logical << 12) | node.
struct order_stamp {
  std::uint64_t value = 0;
  friend auto operator<=>(const order_stamp&, const order_stamp&) = default;
  std::chrono::system_clock::time_point wall() const {
    return std::chrono::system_clock::time_point(std::chrono::milliseconds(1704067200000LL) +
                                                 std::chrono::milliseconds(value >> 23));
  }
  std::uint16_t node() const { return static_cast<std::uint16_t>(value & 0xfffu); }
};

enum class write_state : std::uint8_t { durable = 0, pending = 1 };

struct frame {
  write_state state = write_state::durable;
  order_stamp stamp{};
  std::string request_id;
  std::string value;
};

namespace detail {
inline constexpr std::string_view frame_magic = "BWF";
inline constexpr char frame_version = 1;
} // namespace detail

inline std::string encode(const frame& f) {
  std::string out(detail::frame_magic);
  out += detail::frame_version;
  out += static_cast<char>(f.state);
  for (int i = 7; i >= 0; --i) out += static_cast<char>((f.stamp.value >> (8 * i)) & 0xffu);
  out += static_cast<char>(f.request_id.size());
  out += f.request_id;
  out += f.value;
  return out;
}

inline result<frame> decode(std::string_view bytes) {
  if (bytes.substr(0, 3) != detail::frame_magic) return error(errc::invalid_argument, "not a bulwark frame");
  if (bytes.size() < 14) return error(errc::invalid_argument, "truncated frame");
  if (bytes[3] != detail::frame_version) return error(errc::invalid_argument, "unknown frame version");
  frame f;
  const auto state = static_cast<unsigned char>(bytes[4]);
  if (state > 1) return error(errc::invalid_argument, "unknown frame state");
  f.state = static_cast<write_state>(state);
  for (int i = 0; i < 8; ++i) f.stamp.value = (f.stamp.value << 8) | static_cast<unsigned char>(bytes[5 + i]);
  const std::size_t id_size = static_cast<unsigned char>(bytes[13]);
  if (id_size > 64 || bytes.size() < 14 + id_size) return error(errc::invalid_argument, "bad frame request id");
  f.request_id = std::string(bytes.substr(14, id_size));
  f.value = std::string(bytes.substr(14 + id_size));
  return f;
}

inline constexpr std::string_view request_id_header = "bulwark-request-id";
inline constexpr std::string_view known_version_header = "bulwark-known-version";

struct retry_request {
  std::string key;
  frame f;
  version_t known_version = no_version;
};

inline message retry_message(std::string key, frame f, version_t known_version) {
  f.state = write_state::pending;
  message m{std::move(key), encode(f), {}};
  m.headers.push_back({std::string(request_id_header), f.request_id});
  m.headers.push_back({std::string(known_version_header), std::to_string(known_version)});
  return m;
}

inline result<retry_request> parse_retry_message(const envelope& e) {
  BOOST_OUTCOME_TRY(f, decode(e.value));
  retry_request r{std::string(e.key), std::move(f), no_version};
  if (auto known = e.find_header(known_version_header)) {
    auto [end, ec] = std::from_chars(known->data(), known->data() + known->size(), r.known_version);
    if (ec != std::errc() || end != known->data() + known->size())
      return error(errc::invalid_argument, "bad known-version header");
  }
  return r;
}

} // namespace bulwark::flows
