#pragma once
// Test helper: numbered keys ("k0", "k1", ...).

#include <string>
#include <string_view>

namespace bulwark::test {

/// The i-th key under a prefix: numbered_key("k", 7) == "k7".
/// Not `"k" + std::to_string(i)`: at -O3 (the Release build) GCC 12 reports -Wstringop-overflow
/// in the insert at the front that operator+(const char*, std::string&&) makes, with a bound it
/// derives as over 2^63 for a two-byte string. A false positive: the loop
/// `for (int i = 0; i < 3; ++i) v.push_back("k" + std::to_string(i));` alone reproduces it and
/// -O2 does not. Appending to the prefix builds the same string without that path.
inline std::string numbered_key(std::string_view prefix, int i) {
  return std::string(prefix).append(std::to_string(i));
}

} // namespace bulwark::test
