#pragma once
// The cache concept: a fast, possibly shared copy of repository values, keyed like the
// repository and carrying the repository's version so that an older write never replaces a
// newer one.
//
// Requirements, for a model C, an lvalue c of C, key of type std::string_view, value of type
// versioned, ttl of type std::chrono::milliseconds:
//
// | expression          | type                       | semantics, errors
// |---------------------|----------------------------|------------------------------------------
// | c.get(key)          | task<std::optional<cached>>| the entry, or nullopt on a miss or once its
// |                     |                            | ttl has passed since stored_at
// | c.put(key, value,   | task<bool>                 | stores value stamped with stored_at = now;
// |       ttl)          |                            | false (and nothing stored) when the entry
// |                     |                            | present has a higher version. ttl 0: no
// |                     |                            | expiry (the model's bounds still apply)
// | c.erase(key)        | task<bool>                 | removes key; true when it was present
//
// Failures: errc::unavailable, errc::timeout, errc::cancelled, errc::invalid_argument,
// errc::too_large. A cache failure is never fatal to a read the repository can answer: the
// flows treat every cache error as a miss. Model: memory::cache.
//
// Deadlines and abandonment (as for the repository, see repository.hpp): an operation abandoned
// at its deadline runs on unobserved, so it owns its arguments after its first step; a late put
// may still be stored (never over a higher version).
//   memory::cache     finishes every operation without suspending.
//   redis::cache      reads the key and value before its first suspension (a put is packed,
//                     then joins a batch); a cancelled caller resumes at once, its write may land.
//   hazelcast::cache  builds the entry's path before its first suspension; honours cancellation
//                     while waiting for the key lock or a member (the HTTP exchange is closed).

#include <bulwark/repository.hpp>
#include <bulwark/result.hpp>

#include <chrono>
#include <concepts>
#include <optional>
#include <string_view>

namespace bulwark {

/// A cache entry: the repository's value and version, and when the cache stored it
/// (wall-clock time, so that it means the same in every process sharing the cache).
struct cached {
  std::string value;
  version_t version = no_version;
  std::chrono::system_clock::time_point stored_at{};
  friend bool operator==(const cached&, const cached&) = default;
};

template <class C>
concept cache = requires(C& c, std::string_view key, versioned value, std::chrono::milliseconds ttl) {
  { c.get(key) } -> std::same_as<task<std::optional<cached>>>;
  { c.put(key, std::move(value), ttl) } -> std::same_as<task<bool>>;
  { c.erase(key) } -> std::same_as<task<bool>>;
};

} // namespace bulwark
