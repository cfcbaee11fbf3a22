#pragma once
// The key, value and ttl rules of the repository and cache concepts (repository.hpp,
// cache.hpp), written once for every model: the memory models, redis, mysql and hazelcast call
// these and supply only their limits (and, for hazelcast, its own code for a bad key).
// prefix_successor is the upper bound of a prefix scan, shared by the redis and mysql
// repositories.

#include <bulwark/error.hpp>
#include <bulwark/result.hpp>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace bulwark::detail {

/// A key is 1 to max_bytes bytes. Errors: `code` (errc::invalid_argument unless a backend has a
/// finer native code that maps onto it) with detail "empty key" or "key of N bytes exceeds M".
inline result<void> check_key(std::string_view key, std::size_t max_bytes, std::error_code code) {
  if (key.empty()) return error(code, "empty key");
  if (key.size() > max_bytes)
    return error(code, "key of " + std::to_string(key.size()) + " bytes exceeds " + std::to_string(max_bytes));
  return ok();
}

/// check_key with errc::invalid_argument. The code is made only for a bad key: a default
/// argument would be built on every call (a function-local static's guard, ~25 instructions on
/// every put of the memory models).
inline result<void> check_key(std::string_view key, std::size_t max_bytes) {
  if (!key.empty() && key.size() <= max_bytes) [[likely]]
    return ok();
  return check_key(key, max_bytes, make_error_code(errc::invalid_argument));
}

/// A value is at most max_bytes bytes. Errors: errc::too_large, "value of N bytes exceeds M".
inline result<void> check_value_size(std::size_t size, std::size_t max_bytes) {
  if (size <= max_bytes) [[likely]]
    return ok();
  return error(errc::too_large, "value of " + std::to_string(size) + " bytes exceeds " + std::to_string(max_bytes));
}

/// A cache ttl is 0 (no expiry) or positive. Errors: errc::invalid_argument, "negative ttl".
inline result<void> check_ttl(std::chrono::milliseconds ttl) {
  if (ttl.count() < 0) return error(errc::invalid_argument, "negative ttl");
  return ok();
}

/// A scan page holds at least one entry. Errors: errc::invalid_argument, "scan limit must be
/// positive".
inline result<void> check_scan_limit(std::size_t limit) {
  if (limit == 0) return error(errc::invalid_argument, "scan limit must be positive");
  return ok();
}

/// The smallest string greater than every string starting with `prefix`, or nullopt when there
/// is none (empty, or all 0xff): a prefix scan reads keys in [prefix, successor).
inline std::optional<std::string> prefix_successor(std::string_view prefix) {
  std::string s(prefix);
  while (!s.empty() && static_cast<unsigned char>(s.back()) == 0xff) s.pop_back();
  if (s.empty()) return std::nullopt;
  s.back() = static_cast<char>(static_cast<unsigned char>(s.back()) + 1);
  return s;
}

} // namespace bulwark::detail
