#pragma once
// hash_key and same_key: the hash and the comparison of a key for the in-process maps on the
// hot paths (memory::cache's shards and index, flows::write_through's entries). hash_key is
// inline, eight bytes at a time (a multiply and a shift per word, the last word read so that it
// ends at the key's end, and a finalizer): ~20 instructions for a 16-byte key against ~60 for
// std::hash's call into libstdc++. Not for untrusted keys from an adversary who could aim at one
// bucket: neither is std::hash (a fixed seed).

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace bulwark::detail {

inline std::size_t hash_key(std::string_view key) noexcept {
  const auto word = [](const char* p) {
    std::uint64_t w;
    std::memcpy(&w, p, sizeof w);
    return w;
  };
  const auto mix = [](std::uint64_t x) {
    x *= 0xbf58476d1ce4e5b9u;
    return x ^ (x >> 29);
  };
  // splitmix64's finalizer: every input bit reaches the low bits, which a power-of-two table
  // indexes by (a multiply alone carries a change only upwards: keys that differ in their last
  // bytes, "channel:17" and "channel:18", would share their low bits).
  const auto finish = [](std::uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
  };
  const char* p = key.data();
  std::size_t n = key.size();
  std::uint64_t h = 0x9e3779b97f4a7c15u ^ n;
  if (n >= 8) {
    for (; n > 8; p += 8, n -= 8) h = mix(h ^ word(p));
    return finish(h ^ word(p + n - 8)); // the last 8 bytes (overlapping the previous word)
  }
  std::uint64_t tail = 0;
  for (std::size_t i = 0; i < n; ++i) tail = (tail << 8) | static_cast<unsigned char>(p[i]);
  return finish(h ^ tail);
}

/// a == b for the keys of those maps, inline: a key of 4 to 16 bytes (the usual "channel:17")
/// is compared as two overlapping words per side, with no call to memcmp (~15 instructions
/// against ~35 with its call and size dispatch; a lookup compares the key of the entry it found).
inline bool same_key(std::string_view a, std::string_view b) noexcept {
  const std::size_t n = a.size();
  if (n != b.size()) return false;
  const char* p = a.data();
  const char* q = b.data();
  const auto load = [](const char* at, auto word) {
    std::memcpy(&word, at, sizeof word);
    return word;
  };
  if (n >= 8 && n <= 16)
    return ((load(p, std::uint64_t{}) ^ load(q, std::uint64_t{})) |
            (load(p + n - 8, std::uint64_t{}) ^ load(q + n - 8, std::uint64_t{}))) == 0;
  if (n >= 4 && n < 8)
    return ((load(p, std::uint32_t{}) ^ load(q, std::uint32_t{})) |
            (load(p + n - 4, std::uint32_t{}) ^ load(q + n - 4, std::uint32_t{}))) == 0;
  return n == 0 || std::memcmp(p, q, n) == 0;
}

} // namespace bulwark::detail
