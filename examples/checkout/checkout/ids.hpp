#pragma once
// New ids for create calls: 32 hex digits from a per-thread generator seeded once from the
// system's entropy (the course template uses uuid4; the same space, and no coordination
// between replicas). batch_init's ids are "0".."n-1" and cannot collide with these.

#include <cstdint>
#include <random>
#include <string>

namespace checkout {

inline std::string new_id() {
  thread_local std::mt19937_64 rng{[] {
    std::random_device entropy;
    return (std::uint64_t{entropy()} << 32) ^ entropy();
  }()};
  static constexpr char digits[] = "0123456789abcdef";
  std::string id(32, '0');
  for (int half = 0; half < 2; ++half) {
    std::uint64_t bits = rng();
    for (int i = 0; i < 16; ++i, bits >>= 4) id[static_cast<std::size_t>(half * 16 + i)] = digits[bits & 15];
  }
  return id;
}

} // namespace checkout
