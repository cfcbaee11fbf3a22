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
// |                     |                            | present has a higher version. An equal
// |                     |                            | version refreshes: value, stored_at and
// |                     |                            | ttl are replaced and put returns true.
// |                     |                            | ttl 0: no expiry (the model's bounds
// |                     |                            | still apply); an expired entry counts as
// |                     |                            | absent, whatever its version
// | c.erase(key)        | task<bool>                 | removes key; true when it was present
//
// Failures: errc::unavailable, errc::timeout, errc::cancelled, errc::invalid_argument (a key
// the model cannot store, a negative ttl), errc::too_large. The key, value and ttl rules and
// their texts are detail/key_rules.hpp's, shared by every model. A cache failure is never fatal
// to a read the repository can answer: a caller treats every cache error as a miss.
//
// Models (each ends with a static_assert that it satisfies this concept):
//   memory::cache     include/bulwark/memory/cache.hpp           the embedded default (LRU, sharded)
//   redis::cache      backends/redis/.../redis/cache.hpp         one string per key, a version script
//   hazelcast::cache  backends/hazelcast/.../hazelcast/cache.hpp an envelope per key, REST
// Conformance suite: tests/conformance/cache_suite.hpp, run by every model
// (tests/conformance/memory.cpp, tests/redis/conformance.cpp, tests/hazelcast/conformance.cpp).
// Archetype (the smallest model) and a near miss: tests/unit/core/concepts.cpp.
//
// Threads and executors. A task resumes its caller on the caller's executor. What may be shared:
//   memory::cache     any number of threads and coroutines at once (a lock per shard); its
//                     tasks never suspend, so they complete inline on the caller's thread.
//   redis::cache      one executor: the redis::client's (a single-threaded io_context or a
//                     strand); call it only from coroutines on that executor.
//   hazelcast::cache  one executor: its member_list's (like http::client); call it only from
//                     coroutines on that executor.
//
// Deadlines and abandonment (as for the repository, see repository.hpp): an operation abandoned
// at its deadline runs on unobserved, so it owns its arguments after its first step; a late put
// may still be stored (never over a higher version).
//   memory::cache     finishes every operation without suspending.
//   redis::cache      reads the key and value before its first suspension (a put is packed,
//                     then joins a batch); a cancelled caller resumes at once, its write may land.
//   hazelcast::cache  builds the entry's path before its first suspension; honours cancellation
//                     while waiting for the key lock or a member (the HTTP exchange is closed).
//
// Optional refinement, synchronous_cache: a model whose operations never wait (no I/O, no
// suspension; bounded CPU work under its own locks) may also offer them as plain calls:
//
// | expression              | type                         | semantics
// |-------------------------|------------------------------|-----------------------------------
// | c.get_now(key)          | result<std::optional<cached>>| what co_await c.get(key) returns
// | c.put_now(key, value,   | result<bool>                 | what co_await c.put(key, value, ttl)
// |           ttl)          |                              | returns
//
// A generic caller may use them when present (flows::write_through does, on every hit and write):
// they save the task's coroutine frame, and a deadline cannot be missed by a call that never
// waits. Models: memory::cache. Checked in tests/unit/core/concepts.cpp (the archetype is a cache
// but not a synchronous one).
//
// Optional refinement of that, copying_cache: a synchronous model that can take the value as a
// view and copy it into the buffer it already holds for the key:
//
// | expression                     | type         | semantics
// |--------------------------------|--------------|-------------------------------------------
// | c.put_copy_now(key, view,      | result<bool> | what c.put_now(key, versioned{std::string(
// |                version, ttl)   |              | view), version}, ttl) returns
//
// A rewrite of a key then allocates nothing (flows::write_through's durable write). Models:
// memory::cache.

#include <bulwark/result.hpp>
#include <bulwark/versioned.hpp>

#include <chrono>
#include <concepts>
#include <optional>
#include <string>
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

/// A cache whose get and put never wait, offered as plain calls too (see above).
template <class C>
concept synchronous_cache = cache<C> &&
    requires(C& c, std::string_view key, versioned value, std::chrono::milliseconds ttl) {
  { c.get_now(key) } -> std::same_as<result<std::optional<cached>>>;
  { c.put_now(key, std::move(value), ttl) } -> std::same_as<result<bool>>;
};

/// A synchronous cache that copies a viewed value into its own buffer (see above).
template <class C>
concept copying_cache = synchronous_cache<C> &&
    requires(C& c, std::string_view key, std::string_view value, version_t version, std::chrono::milliseconds ttl) {
  { c.put_copy_now(key, value, version, ttl) } -> std::same_as<result<bool>>;
};

} // namespace bulwark
