#pragma once
// REST paths for map entries: /hazelcast/rest/maps/{map}/{key} with the key percent-encoded.
//
// The member URL-decodes the key segment (java.net.URLDecoder, UTF-8) into a Java String: '+'
// becomes a space, "%2F" and a raw '/' name the same key, and bytes that are not valid UTF-8
// collapse into U+FFFD (so "\xff" and "\xfe" would be one key). Hence every byte outside the
// RFC 3986 unreserved set is percent-encoded, and keys must be valid UTF-8.

#include <bulwark/detail/key_rules.hpp>
#include <bulwark/hazelcast/error.hpp>
#include <bulwark/result.hpp>

#include <string>
#include <string_view>

namespace bulwark::hazelcast {

/// Percent-encodes every byte except ALPHA / DIGIT / "-" / "." / "_" / "~".
inline std::string percent_encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                            c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xf]);
    }
  }
  return out;
}

/// True when s is well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF).
constexpr bool valid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    unsigned cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    for (std::size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) return false;
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

/// True for a map name the adapter accepts: 1-255 of [A-Za-z0-9._-] (nothing to encode or decode).
constexpr bool valid_map_name(std::string_view map) noexcept {
  if (map.empty() || map.size() > 255) return false;
  for (const char c : map) {
    const bool ok =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

/// The REST path of `key` in `map`. Errors: hazelcast_errc::bad_key (empty, longer than
/// max_key_bytes, not UTF-8).
inline result<std::string> entry_path(std::string_view map, std::string_view key, std::size_t max_key_bytes) {
  BOOST_OUTCOME_TRY(bulwark::detail::check_key(key, max_key_bytes, make_error_code(hazelcast_errc::bad_key)));
  if (!valid_utf8(key)) return error(make_error_code(hazelcast_errc::bad_key), "key is not valid UTF-8");
  std::string path = "/hazelcast/rest/maps/";
  path += map;
  path += '/';
  path += percent_encode(key);
  return path;
}

} // namespace bulwark::hazelcast
