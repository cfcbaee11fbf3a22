#pragma once
// The order stamp and the stored frame: what lets several replicas agree which write of a key is
// the newest, while the database that would otherwise number the writes is down.
//
// order_stamp: a 64-bit hybrid-logical-clock value, totally ordered, and usable directly as the
// cache concept's version_t (it rises with newer data):
//
//     bits 63..23  milliseconds since 2024-01-01T00:00:00Z (41 bits: until 2093)
//     bits 22..12  logical counter (11 bits): orders writes within one millisecond
//     bits 11..0   node id (12 bits): the writing replica; ties between replicas break on it
//
// hybrid_clock issues them: strictly increasing per instance (thread-safe), never behind the
// coarse wall clock (the last kernel tick: at most 1-4 ms behind the precise one), and past every stamp it has
// observe()d from another replica. Logical overflow within one millisecond carries into the millisecond field (the
// stamp runs slightly ahead of the wall clock until the wall clock catches up), so `now()` never fails.
//
// frame: the small envelope write_through keeps around the application's bytes, in the
// repository, in the cache and in the retry message alike. Layout (format version 1):
//
//     offset  size  field
//     0       4     magic "bwfr" (0x62 0x77 0x66 0x72)
//     4       1     format version (1)
//     5       1     state: 0 durable, 1 pending
//     6       8     order stamp, big-endian
//     14      1     request id length n (<= 64)
//     15      n     request id
//     15+n    rest  the application's value (binary-safe, may be empty)
//
// The encoding is canonical: decode(b) succeeding implies encode(decode(b)) == b (the fuzz target
// tests/fuzz/frame_decode_fuzz.cpp checks it). Bytes that do not start with the magic are "not a
// frame" (a value some other writer stored): decode reports errc::invalid_argument and
// is_frame() tells that case apart from a damaged frame.

#include <bulwark/clock.hpp>
#include <bulwark/coarse_clock.hpp>
#include <bulwark/event_bus.hpp>
#include <bulwark/result.hpp>
#include <bulwark/versioned.hpp>

#include <algorithm>
#include <atomic>
#include <bit>
#include <charconv>
#include <chrono>
#include <compare>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace bulwark::flows {

/// A hybrid-logical-clock value: (ms since 2024-01-01 << 23) | (logical << 12) | node.
struct order_stamp {
  std::uint64_t value = 0;

  static constexpr unsigned node_bits = 12;
  static constexpr unsigned logical_bits = 11;
  static constexpr unsigned ms_shift = node_bits + logical_bits; // 23
  static constexpr std::uint64_t node_mask = (std::uint64_t{1} << node_bits) - 1;
  static constexpr std::uint64_t logical_mask = (std::uint64_t{1} << logical_bits) - 1;
  static constexpr std::uint64_t max_ms = (std::uint64_t{1} << (64 - ms_shift)) - 1;
  static constexpr std::uint16_t max_node = static_cast<std::uint16_t>(node_mask);
  /// 2024-01-01T00:00:00Z in seconds since the Unix epoch.
  static constexpr std::chrono::seconds epoch{1704067200};

  /// The stamp of (ms since 2024-01-01, logical, node); each field is masked to its width.
  static constexpr order_stamp make(std::uint64_t ms, std::uint64_t logical, std::uint16_t node) noexcept {
    return order_stamp{((ms & max_ms) << ms_shift) | ((logical & logical_mask) << node_bits) | (node & node_mask)};
  }

  auto operator<=>(const order_stamp&) const = default;

  /// Milliseconds since 2024-01-01T00:00:00Z.
  constexpr std::uint64_t ms() const noexcept { return value >> ms_shift; }
  constexpr std::uint16_t logical() const noexcept {
    return static_cast<std::uint16_t>((value >> node_bits) & logical_mask);
  }
  /// The node id of the replica that issued the stamp.
  constexpr std::uint16_t node() const noexcept { return static_cast<std::uint16_t>(value & node_mask); }
  /// The wall-clock time the stamp stands for (its millisecond field).
  std::chrono::system_clock::time_point wall() const noexcept {
    return std::chrono::system_clock::time_point(epoch) + std::chrono::milliseconds(ms());
  }
};

/// Issues order stamps for one replica (node id 0..4095; give each replica its own). Its physical
/// time is the coarse wall clock (coarse_system_clock); with a manual bulwark::clock it is `wall_origin` plus the time
/// the manual clock moved since construction, so tests are deterministic. Thread-safe, lock-free.
class hybrid_clock {
public:
  /// Throws std::invalid_argument for a node id over 4095 (a configuration error).
  explicit hybrid_clock(std::uint16_t node, bulwark::clock clk = {},
                        std::chrono::system_clock::time_point wall_origin = std::chrono::system_clock::now())
      : node_(node), clock_(std::move(clk)), wall_origin_(wall_origin), steady_origin_(clock_.now()) {
    if (node > order_stamp::max_node)
      throw std::invalid_argument("hybrid_clock: node id " + std::to_string(node) + " is over 4095");
  }

  hybrid_clock(const hybrid_clock&) = delete;
  hybrid_clock& operator=(const hybrid_clock&) = delete;

  /// A stamp greater than every stamp this instance issued or observed, and not behind the
  /// physical clock. Cost: a coarse clock read and a compare-and-swap.
  order_stamp now() noexcept { return issue(physical_ms()); }

  /// now() with the wall time read by the caller (coarse_system_clock::now(), so that one read
  /// serves the stamp and the caller's own timestamp). On a manual clock `wall` is ignored: the
  /// stamp follows the manual clock, as now()'s does.
  order_stamp now(std::chrono::system_clock::time_point wall) noexcept {
    return issue(clock_.is_manual() ? physical_ms() : ms_of(wall));
  }

  /// Moves this clock past `seen` (a stamp from another replica or from storage), so the next
  /// now() is greater than it. Cost: a compare-and-swap.
  void observe(order_stamp seen) noexcept {
    const std::uint64_t base = seen.value & ~order_stamp::node_mask;
    std::uint64_t last = last_.load(std::memory_order_relaxed);
    while (base > last && !last_.compare_exchange_weak(last, base, std::memory_order_relaxed)) {
    }
  }

  std::uint16_t node() const noexcept { return node_; }

  /// The physical time in milliseconds since 2024-01-01 (0 before it). On the real clock it is
  /// the coarse wall clock (coarse_system_clock: the last kernel tick, 1-4 ms behind at most, for
  /// ~20 instructions and no precise clock read on every write): ordering needs a total order that
  /// follows causality and stays near the wall, which a tick's lag keeps; replicas' wall clocks
  /// differ by more than that anyway.
  std::uint64_t physical_ms() const noexcept {
    using namespace std::chrono;
    return ms_of(clock_.is_manual()
                     ? wall_origin_ + duration_cast<system_clock::duration>(clock_.now() - steady_origin_)
                     : coarse_system_clock::now());
  }

private:
  // A stamp past every one issued or observed, and not behind `physical` (ms since 2024-01-01).
  order_stamp issue(std::uint64_t physical_ms) noexcept {
    const std::uint64_t physical = physical_ms << order_stamp::ms_shift;
    std::uint64_t last = last_.load(std::memory_order_relaxed);
    for (;;) {
      // Logical overflow carries into the millisecond field on its own: that is the "borrow".
      const std::uint64_t next = (physical > last ? physical : last + (std::uint64_t{1} << order_stamp::node_bits));
      if (last_.compare_exchange_weak(last, next, std::memory_order_relaxed)) return order_stamp{next | node_};
    }
  }

  // `wall` in milliseconds since 2024-01-01 (0 before it).
  static std::uint64_t ms_of(std::chrono::system_clock::time_point wall) noexcept {
    using namespace std::chrono;
    const auto ms = duration_cast<milliseconds>(wall.time_since_epoch() - order_stamp::epoch).count();
    return ms <= 0 ? 0 : std::min<std::uint64_t>(static_cast<std::uint64_t>(ms), order_stamp::max_ms);
  }

  std::uint16_t node_;
  bulwark::clock clock_;
  std::chrono::system_clock::time_point wall_origin_;
  bulwark::clock::time_point steady_origin_;
  std::atomic<std::uint64_t> last_{0}; // the last stamp issued or observed, node bits clear
};

/// Whether a write has reached the repository (durable) or is only accepted (pending: on the
/// retry topic and in the cache).
enum class write_state : std::uint8_t { durable = 0, pending = 1 };

/// The bytes write_through stores: the application's value with its state, order and request id.
struct frame {
  write_state state = write_state::durable;
  order_stamp stamp{};
  std::string request_id; ///< at most max_request_id bytes
  std::string value;
  friend bool operator==(const frame&, const frame&) = default;
};

inline constexpr std::size_t max_request_id = 64;
inline constexpr std::string_view frame_magic = "bwfr";
inline constexpr std::uint8_t frame_format_version = 1;
inline constexpr std::size_t frame_header_bytes = 15; // magic, version, state, stamp, id length

/// Whether `bytes` start with the frame magic (a frame, possibly damaged) rather than being a
/// value some other writer stored.
inline bool is_frame(std::string_view bytes) noexcept { return bytes.substr(0, frame_magic.size()) == frame_magic; }

/// errc::invalid_argument when `id` is longer than max_request_id bytes.
inline result<void> check_request_id(std::string_view id) {
  if (id.size() > max_request_id)
    return error(errc::invalid_argument, "request id of " + std::to_string(id.size()) + " bytes is over the limit of " +
                                             std::to_string(max_request_id));
  return ok();
}

/// Writes the bytes of the frame (state, stamp, request_id, value), from its parts, into `out`
/// (replacing what it held; no frame object to build). A buffer reused across calls allocates
/// only when a frame outgrows its capacity. Precondition: request_id is at most max_request_id
/// bytes (check it with check_request_id); a longer one throws std::invalid_argument.
inline void encode_into(std::string& out, write_state state, order_stamp stamp, std::string_view request_id,
                        std::string_view value) {
  if (request_id.size() > max_request_id)
    throw std::invalid_argument("flows::encode: request id over " + std::to_string(max_request_id) + " bytes");
  // Sized once and filled in place: three copies, none of append's checks.
  out.resize(frame_header_bytes + request_id.size() + value.size());
  char* p = out.data();
  std::copy(frame_magic.begin(), frame_magic.end(), p);
  p[4] = static_cast<char>(frame_format_version);
  p[5] = static_cast<char>(state);
  std::uint64_t big_endian = stamp.value;
  if constexpr (std::endian::native == std::endian::little) big_endian = __builtin_bswap64(big_endian);
  std::memcpy(p + 6, &big_endian, sizeof big_endian);
  p[14] = static_cast<char>(request_id.size());
  std::copy(request_id.begin(), request_id.end(), p + frame_header_bytes);
  std::copy(value.begin(), value.end(), p + frame_header_bytes + request_id.size());
}

/// The bytes of the frame, as a new string. Same precondition as encode_into. Cost: one
/// allocation, one copy of each part.
inline std::string encode(write_state state, order_stamp stamp, std::string_view request_id, std::string_view value) {
  std::string out;
  encode_into(out, state, stamp, request_id, value);
  return out;
}

/// The frame's bytes. Same precondition and cost as the overload above.
inline std::string encode(const frame& f) { return encode(f.state, f.stamp, f.request_id, f.value); }

/// A frame's header fields, and where its request id and value lie in the bytes.
struct frame_header {
  write_state state = write_state::durable;
  order_stamp stamp{};
  std::size_t request_id_size = 0;
  /// Offset of the value: frame_header_bytes + request_id_size.
  std::size_t value_offset = frame_header_bytes;
};

/// The header of the frame in `bytes`, checked as decode() checks it (the same errors), without
/// copying anything: for readers that need the state and the stamp, and take the value in place.
inline result<frame_header> decode_header(std::string_view bytes) {
  if (!is_frame(bytes)) return error(errc::invalid_argument, "not a bulwark frame: the magic \"bwfr\" is missing");
  if (bytes.size() < frame_header_bytes)
    return error(errc::invalid_argument, "truncated frame: " + std::to_string(bytes.size()) +
                                             " bytes, the header needs " + std::to_string(frame_header_bytes));
  const auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(bytes[i]); };
  if (byte(4) != frame_format_version)
    return error(errc::invalid_argument, "frame format version " + std::to_string(byte(4)) +
                                             " is not the version this build reads (" +
                                             std::to_string(frame_format_version) + ")");
  if (byte(5) > 1) return error(errc::invalid_argument, "frame state " + std::to_string(byte(5)) + " is unknown");
  frame_header h;
  h.state = static_cast<write_state>(byte(5));
  for (std::size_t i = 6; i < 14; ++i) h.stamp.value = (h.stamp.value << 8) | byte(i);
  h.request_id_size = byte(14);
  if (h.request_id_size > max_request_id)
    return error(errc::invalid_argument, "frame request id length " + std::to_string(h.request_id_size) + " is over " +
                                             std::to_string(max_request_id));
  if (bytes.size() < frame_header_bytes + h.request_id_size)
    return error(errc::invalid_argument, "truncated frame: the request id needs " + std::to_string(h.request_id_size) +
                                             " bytes, " + std::to_string(bytes.size() - frame_header_bytes) +
                                             " remain");
  h.value_offset = frame_header_bytes + h.request_id_size;
  return h;
}

/// The frame in `bytes`. errc::invalid_argument, with what is wrong, for bytes that are not a
/// frame (no magic: a foreign value, see is_frame), are truncated, have another format version,
/// an unknown state or an over-long request id. Cost: one copy of the value.
inline result<frame> decode(std::string_view bytes) {
  auto header = decode_header(bytes);
  if (!header) return header.error();
  const frame_header& h = header.value();
  frame f;
  f.state = h.state;
  f.stamp = h.stamp;
  f.request_id.assign(bytes.substr(frame_header_bytes, h.request_id_size));
  f.value.assign(bytes.substr(h.value_offset));
  return f;
}

/// Headers of a retry message.
inline constexpr std::string_view retry_request_id_header = "bulwark-request-id";
inline constexpr std::string_view retry_known_version_header = "bulwark-known-version";

/// A write accepted while the repository could not take it, as the retry topic carries it.
struct retry_request {
  std::string key;
  frame f;                              ///< state pending
  version_t known_version = no_version; ///< the repository version last seen for key (0: none)
};

/// The retry message for `f` under `key`: the frame (state set to pending) as the value, the
/// request id and the known repository version (decimal) as headers. Same precondition as encode.
inline message retry_message(std::string key, frame f, version_t known_version) {
  f.state = write_state::pending;
  message m{std::move(key), encode(f), {}};
  m.headers.push_back({std::string(retry_request_id_header), f.request_id});
  m.headers.push_back({std::string(retry_known_version_header), std::to_string(known_version)});
  return m;
}

/// The retry request in `e`. errc::invalid_argument (a poison message) for an empty key, a value
/// that is not a pending frame, a missing or non-decimal known-version header, or a request-id
/// header that differs from the frame's.
inline result<retry_request> parse_retry_message(const envelope& e) {
  if (e.key.empty()) return error(errc::invalid_argument, "retry message without a key");
  auto f = decode(e.value);
  if (!f) return error(errc::invalid_argument, "retry message value: " + std::string(f.error().detail()));
  if (f.value().state != write_state::pending)
    return error(errc::invalid_argument, "retry message holds a durable frame, not a pending one");
  const auto id = e.find_header(retry_request_id_header);
  if (!id || *id != f.value().request_id)
    return error(errc::invalid_argument,
                 "retry message header bulwark-request-id is missing or differs from the frame's");
  const auto known = e.find_header(retry_known_version_header);
  if (!known) return error(errc::invalid_argument, "retry message without the bulwark-known-version header");
  version_t v = 0;
  const auto [end, ec] = std::from_chars(known->data(), known->data() + known->size(), v);
  if (known->empty() || ec != std::errc() || end != known->data() + known->size())
    return error(errc::invalid_argument, "retry message header bulwark-known-version is not a decimal version: \"" +
                                             std::string(*known) + "\"");
  return retry_request{std::string(e.key), std::move(f).value(), v};
}

} // namespace bulwark::flows
