#pragma once
// The envelope a hazelcast::cache entry is stored in: the REST API stores a body and its
// Content-Type and nothing else, so the version, the time of the write and the ttl travel with
// the value. Binary-safe (the value may hold any byte, NUL included), fixed 28-byte header:
//
//   offset  size  field
//   0       4     magic "BWC1" (bulwark cache, format 1)
//   4       8     version            unsigned, big-endian
//   12      8     stored_at          signed, big-endian, milliseconds since the Unix epoch (UTC)
//   20      8     ttl                unsigned, big-endian, milliseconds; 0 = no expiry
//   28      n     value              the bytes as given
//
// Content-Type: application/vnd.bulwark.cache-entry.v1 (envelope_content_type). Readers reject
// any other content type or magic with hazelcast_errc::bad_envelope, so a value written by
// another client into the same map is reported, never misread.

#include <bulwark/cache.hpp>
#include <bulwark/hazelcast/error.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace bulwark::hazelcast {

inline constexpr std::string_view envelope_content_type = "application/vnd.bulwark.cache-entry.v1";
inline constexpr std::string_view envelope_magic = "BWC1";
inline constexpr std::size_t envelope_header_size = 28;

/// A decoded envelope: the cache entry and the ttl it was written with.
struct envelope {
  cached entry;
  std::chrono::milliseconds ttl{0};

  /// True once ttl has passed since stored_at (never for ttl 0).
  bool expired_at(std::chrono::system_clock::time_point now) const noexcept {
    return ttl.count() > 0 && now >= entry.stored_at + ttl;
  }
};

namespace detail {
inline void put_u64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}
inline std::uint64_t get_u64(std::string_view in) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[static_cast<std::size_t>(i)]);
  return v;
}
} // namespace detail

/// Encodes value, version, stored_at (truncated to milliseconds) and ttl. Cost: one copy of the value.
inline std::string encode_envelope(std::string_view value, version_t version,
                                   std::chrono::system_clock::time_point stored_at, std::chrono::milliseconds ttl) {
  std::string out;
  out.reserve(envelope_header_size + value.size());
  out.append(envelope_magic);
  detail::put_u64(out, version);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(stored_at.time_since_epoch()).count();
  detail::put_u64(out, static_cast<std::uint64_t>(ms));
  detail::put_u64(out, static_cast<std::uint64_t>(ttl.count() < 0 ? 0 : ttl.count()));
  out.append(value);
  return out;
}

/// Decodes a body stored with `content_type`. Errors: hazelcast_errc::bad_envelope (wrong content
/// type, short body, wrong magic).
inline result<envelope> decode_envelope(std::string_view body, std::string_view content_type) {
  // Parameters (";charset=...") are tolerated: only the media type is compared.
  const auto media = content_type.substr(0, content_type.find(';'));
  if (media != envelope_content_type)
    return error(make_error_code(hazelcast_errc::bad_envelope), "content type '" + std::string(content_type) + "'");
  if (body.size() < envelope_header_size || body.substr(0, 4) != envelope_magic)
    return error(make_error_code(hazelcast_errc::bad_envelope), "missing header");
  envelope e;
  e.entry.version = detail::get_u64(body.substr(4));
  const auto ms = static_cast<std::int64_t>(detail::get_u64(body.substr(12)));
  e.entry.stored_at = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::milliseconds(ms)));
  const auto ttl = detail::get_u64(body.substr(20));
  if (ttl > static_cast<std::uint64_t>(std::chrono::milliseconds::max().count()))
    return error(make_error_code(hazelcast_errc::bad_envelope), "ttl out of range");
  e.ttl = std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(ttl));
  e.entry.value.assign(body.substr(envelope_header_size));
  return e;
}

} // namespace bulwark::hazelcast
