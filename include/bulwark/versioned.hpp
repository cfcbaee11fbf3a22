#pragma once
// The version vocabulary that the repository and cache concepts share: a version is a number
// the repository gives a key's value, rising with every write of that key (even across
// erase); a cache carries it so that an older write never replaces a newer one.

#include <cstdint>
#include <string>

namespace bulwark {

using version_t = std::uint64_t;

/// The expected version meaning "the key must not exist yet"; no stored value has it.
inline constexpr version_t no_version = 0;

/// A value with the version the repository gave it.
struct versioned {
  std::string value;
  version_t version = no_version;
  friend bool operator==(const versioned&, const versioned&) = default;
};

} // namespace bulwark
