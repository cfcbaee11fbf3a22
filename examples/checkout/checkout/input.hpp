#pragma once
// Path segments as the contract's integers and ids: parsed strictly, every refusal a clear text
// (the routes answer it with a 400). No request of this API has a body.

#include <bulwark/ledger.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace checkout {

/// The longest id accepted in a path: ids become repository and ledger keys (at most 255
/// bytes with their prefixes), and no id this service makes is longer than 32.
inline constexpr std::size_t max_id_bytes = 64;

/// The most records one batch_init call makes (each costs memory in every mode).
inline constexpr bulwark::amount max_batch = 5'000'000;

/// A decimal integer in [0, limit] (no sign, no spaces, at most 16 digits), else nullopt.
inline std::optional<bulwark::amount> parse_amount(std::string_view text, bulwark::amount limit = bulwark::max_amount) {
  if (text.empty() || text.size() > 16) return std::nullopt;
  bulwark::amount value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0'); // 16 digits < 2^63: no overflow before the limit check
  }
  if (value > limit) return std::nullopt;
  return value;
}

/// The text of a 400 for a path segment that is not an integer in [0, limit].
inline std::string not_an_amount(std::string_view what, std::string_view text,
                                 bulwark::amount limit = bulwark::max_amount) {
  return std::string(what) + " must be an integer from 0 to " + std::to_string(limit) + ", got '" + std::string(text) +
         "'";
}

/// An id taken from a path: 1..max_id_bytes printable ASCII bytes, no '/' or '#' (the order
/// service's saga ids are "<order id>#<attempt>").
inline bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > max_id_bytes) return false;
  for (const char c : id)
    if (c <= ' ' || c > '~' || c == '/' || c == '#') return false;
  return true;
}

} // namespace checkout
