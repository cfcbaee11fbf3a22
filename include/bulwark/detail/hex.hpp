#pragma once
// Lowercase hex digits of 64-bit words, eight digits at a time in one register (no table, no
// loop per digit): write_through formats a 128-bit request id on every write that brings none,
// and a digit at a time cost ~210 instructions of a ~4,000-instruction write; this costs ~40.

#include <bit>
#include <cstdint>
#include <cstring>

namespace bulwark::detail {

/// Writes the 8 lowercase hex digits of `v`, most significant first, to out[0..7].
inline void hex8(std::uint32_t v, char* out) noexcept {
  std::uint64_t x = v;
  // One nibble per byte, the least significant nibble in the lowest byte.
  x = (x | (x << 16)) & 0x0000ffff0000ffffu;
  x = (x | (x << 8)) & 0x00ff00ff00ff00ffu;
  x = (x | (x << 4)) & 0x0f0f0f0f0f0f0f0fu;
  // Each byte to its digit: '0' + n, plus 'a' - '0' - 10 where n >= 10 (n + 6 carries into bit 4).
  // No byte overflows into the next: n + 6 <= 21, '0' + n + 0x27 <= 'f'.
  const std::uint64_t letters = ((x + 0x0606060606060606u) >> 4) & 0x0101010101010101u;
  x += 0x3030303030303030u + letters * 0x27;
  // The most significant digit (the highest byte) goes first in memory.
  if constexpr (std::endian::native == std::endian::little) x = __builtin_bswap64(x);
  std::memcpy(out, &x, 8);
}

/// Writes the 16 lowercase hex digits of `x`, most significant first, to out[0..15].
inline void hex16(std::uint64_t x, char* out) noexcept {
  hex8(static_cast<std::uint32_t>(x >> 32), out);
  hex8(static_cast<std::uint32_t>(x), out + 8);
}

} // namespace bulwark::detail
