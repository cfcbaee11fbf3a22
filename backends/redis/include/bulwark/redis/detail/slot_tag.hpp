#pragma once
// A hash tag for every Redis Cluster slot: `{` + slot_tag(s) + `}` in a key puts it in slot s.
// redis::ledger names its per-slot operation records with them (`P p:{tag}:<op id>`), so that a
// record lands in the slot of the balances it guards. The tags are 1 to 3 characters of
// [0-9A-Za-z] (readable in redis-cli), found once per process by trying strings in order: 16,384
// CRC16s of at most 3 bytes (about 0.3 ms, the first time a ledger needs one).

#include <bulwark/redis/detail/cluster.hpp>

#include <array>
#include <cstdint>
#include <string_view>

namespace bulwark::redis::detail {

/// The shortest tag (in the order tried) whose slot is `slot` (< 16384). Thread-safe.
inline std::string_view slot_tag(std::uint16_t slot) noexcept {
  struct table {
    std::array<std::array<char, 4>, slot_count> tags{}; // NUL-terminated
    table() {
      static constexpr std::string_view alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
      std::size_t left = slot_count;
      std::array<char, 4> candidate{};
      for (std::size_t length = 1; length <= 3 && left > 0; ++length) {
        std::size_t combinations = 1;
        for (std::size_t k = 0; k < length; ++k) combinations *= alphabet.size();
        for (std::size_t n = 0; n < combinations && left > 0; ++n) {
          std::size_t rest = n;
          for (std::size_t k = 0; k < length; ++k) {
            candidate[k] = alphabet[rest % alphabet.size()];
            rest /= alphabet.size();
          }
          candidate[length] = '\0';
          const auto slot = key_slot(std::string_view(candidate.data(), length));
          if (tags[slot][0] == '\0') {
            tags[slot] = candidate;
            --left;
          }
        }
      }
    }
  };
  static const table t;
  return std::string_view(t.tags[slot & (slot_count - 1)].data());
}

} // namespace bulwark::redis::detail
