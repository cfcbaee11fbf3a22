#pragma once
// The repository concept: the source of truth, a versioned key-value store.
//
// Backends deal in bytes (std::string, binary-safe); typed<T, Codec> sits above them.
//
// Requirements, for a model R, an lvalue r of R, key and prefix and after of type
// std::string_view, value of type std::string, expected of type std::optional<version_t>,
// limit of type std::size_t:
//
// | expression                      | type                          | semantics, errors
// |---------------------------------|-------------------------------|-------------------------------
// | r.get(key)                      | task<std::optional<versioned>>| the current value and version,
// |                                 |                               | or nullopt when absent
// | r.put(key, value, expected)     | task<version_t>               | stores value and returns the new
// |                                 |                               | version (> every earlier version
// |                                 |                               | of key, even across erase).
// |                                 |                               | expected: nullopt = unconditional;
// |                                 |                               | no_version (0) = key must be
// |                                 |                               | absent; n = current must be n.
// |                                 |                               | Mismatch: errc::conflict.
// | r.erase(key)                    | task<bool>                    | removes key; true when it existed
// | r.scan(prefix, after, limit)    | task<scan_page>               | up to limit entries whose key
// |                                 |                               | starts with prefix and is > after,
// |                                 |                               | in ascending byte order;
// |                                 |                               | page.next is the `after` for the
// |                                 |                               | next page, nullopt on the last
//
// Every operation may also fail with errc::unavailable, errc::timeout, errc::cancelled;
// errc::invalid_argument for a key the backend cannot store (empty, or over its key limit) or a
// scan limit of 0, errc::too_large for a value over its limit. The key, value and scan rules and
// their texts are detail/key_rules.hpp's, shared by every model.
//
// Models (each ends with a static_assert that it satisfies this concept):
//   memory::repository  include/bulwark/memory/repository.hpp   the embedded default
//   redis::repository   backends/redis/.../redis/repository.hpp a hash per key + a sorted index
//   mysql::repository   backends/mysql/.../mysql/repository.hpp one table per collection
// Conformance suite: tests/conformance/repository_suite.hpp, run by every model
// (tests/conformance/memory.cpp, tests/redis/conformance.cpp, tests/mysql/conformance.cpp).
// Archetype (the smallest model) and a near miss: tests/unit/core/concepts.cpp.
//
// Threads and executors. A task resumes its caller on the caller's executor. What may be shared:
//   memory::repository  any number of threads and coroutines at once (a shared_mutex); its
//                       tasks never suspend, so they complete inline on the caller's thread.
//   redis::repository   one executor: the redis::client's (a single-threaded io_context or a
//                       strand); call it only from coroutines on that executor. One client per
//                       thread to use several.
//   mysql::repository   one executor: its mysql::pool's (one io_context thread or a strand);
//                       the pool takes no locks.
//
// Deadlines and abandonment: with_timeout / with_deadline (resilience/timeout.hpp) resume the
// caller at the deadline and leave an unfinished operation running, cancelled (terminal) but
// unobserved. So each operation owns its arguments after its first step (the part before its
// first suspension, while the caller still waits): a key read after a suspension is copied
// first. A late completion is dropped, but its effect may still land: errc::timeout on a put or
// erase means the outcome is unknown. The model object must outlive its operations, abandoned
// ones included.
//   memory::repository  finishes every operation without suspending: nothing is abandoned.
//   redis::repository   put/erase copy the key first (the script is sent again after NOSCRIPT);
//                       get/scan read their arguments before suspending; a cancelled command
//                       completes at once (redis::redis_errc::cancelled), its reply is dropped.
//   mysql::repository   copies key / prefix / after first; honours cancellation while waiting
//                       for a connection or the server (the connection is then discarded).
//
// Optional refinement, synchronous_repository: a model whose operations never wait (no I/O, no
// suspension; bounded CPU work under its own locks) may also offer them as plain calls:
//
// | expression                    | type                            | semantics
// |-------------------------------|---------------------------------|-----------------------------
// | r.get_now(key)                | result<std::optional<versioned>>| what co_await r.get(key)
// |                               |                                 | returns
// | r.put_now(key, value,         | result<version_t>               | what co_await r.put(key,
// |           expected)           |                                 | value, expected) returns
//
// A generic caller may use them when present: flows::write_through calls them through its
// circuit breaker (admitted and recorded as any call) without with_timeout's coroutine thread,
// since a call that never waits completes before any deadline could be acted on (with_timeout
// too returns the result of an operation that finishes without suspending, whatever its bound).
// Models: memory::repository. Checked in tests/unit/core/concepts.cpp (the archetype is a
// repository but not a synchronous one).
//
// Optional refinement of that, copying_repository: a synchronous model that can take the value
// as a view and copy it into the buffer it already holds for the key:
//
// | expression                    | type                            | semantics
// |-------------------------------|---------------------------------|-----------------------------
// | r.put_copy_now(key, view,     | result<version_t>               | what r.put_now(key,
// |                expected)      |                                 | std::string(view), expected)
// |                               |                                 | returns
//
// For a caller that keeps the bytes in a buffer of its own and reuses it: a rewrite of a key
// allocates nothing (flows::write_through's durable write, which encodes each frame into one
// reused buffer). Models: memory::repository.
//
// Optional refinement, purgeable_repository: a model that can remove a key range for good,
// for data written once and expired by age (logs, decisions), where erase's tombstones would
// keep a row per key forever:
//
// | expression                    | type                | semantics
// |-------------------------------|---------------------|------------------------------------
// | r.purge(prefix, after, limit) | task<std::size_t>   | removes up to limit keys that start
// |                               |                     | with prefix and are > after, lowest
// |                               |                     | first, live or tombstone, with no
// |                               |                     | tombstone left; returns how many
//
// A key written again after a purge may start its versions over (mysql::repository) or above
// the highest purged (memory::repository): purge only what is never written again. Models:
// memory::repository, mysql::repository.
//
// Optional refinement, atomic_batch_repository: a model that writes several keys all or nothing
// in one call (where a put each would be a round trip each), for a caller whose keys go
// together (a record and its index entries):
//
// | expression                    | type                        | semantics
// |-------------------------------|-----------------------------|----------------------------------
// | r.put_all(puts, erases)       | task<std::vector<version_t>>| puts: std::vector<batch_put>,
// |                               |                             | erases: std::vector<std::string>.
// |                               |                             | Every put's expected version holds
// |                               |                             | and every put and erase is done,
// |                               |                             | or none: errc::conflict (the detail
// |                               |                             | names the key). The puts' new
// |                               |                             | versions, in order. A key given
// |                               |                             | twice: errc::invalid_argument.
//
// Errors also as put's (an error other than conflict leaves the outcome unknown, all or
// nothing still). Models: redis::repository (one script call; tests/redis/client.cpp).

#include <bulwark/result.hpp>
#include <bulwark/versioned.hpp>

#include <concepts>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark {

/// One entry of a scan.
struct entry {
  std::string key;
  std::string value;
  version_t version = no_version;
  friend bool operator==(const entry&, const entry&) = default;
};

/// One page of a scan; `next` is the key to pass as `after` for the following page.
struct scan_page {
  std::vector<entry> entries;
  std::optional<std::string> next;
};

template <class R>
concept repository = requires(R& r, std::string_view key, std::string value, std::optional<version_t> expected,
                              std::size_t limit) {
  { r.get(key) } -> std::same_as<task<std::optional<versioned>>>;
  { r.put(key, std::move(value), expected) } -> std::same_as<task<version_t>>;
  { r.erase(key) } -> std::same_as<task<bool>>;
  { r.scan(key, key, limit) } -> std::same_as<task<scan_page>>;
};

/// A repository whose get and put never wait, offered as plain calls too (see above).
template <class R>
concept synchronous_repository = repository<R> &&
    requires(R& r, std::string_view key, std::string value, std::optional<version_t> expected) {
  { r.get_now(key) } -> std::same_as<result<std::optional<versioned>>>;
  { r.put_now(key, std::move(value), expected) } -> std::same_as<result<version_t>>;
};

/// A synchronous repository that copies a viewed value into its own buffer (see above).
template <class R>
concept copying_repository = synchronous_repository<R> &&
    requires(R& r, std::string_view key, std::string_view value, std::optional<version_t> expected) {
  { r.put_copy_now(key, value, expected) } -> std::same_as<result<version_t>>;
};

/// One put of a batch: the arguments of put().
struct batch_put {
  std::string key;
  std::string value;
  std::optional<version_t> expected;
};

/// A repository that writes several keys all or nothing in one call (see above).
template <class R>
concept atomic_batch_repository = repository<R> &&
    requires(R& r, std::vector<batch_put> puts, std::vector<std::string> erases) {
  { r.put_all(std::move(puts), std::move(erases)) } -> std::same_as<task<std::vector<version_t>>>;
};

/// A repository that removes key ranges for good (see above).
template <class R>
concept purgeable_repository = repository<R> && requires(R& r, std::string_view key, std::size_t limit) {
  { r.purge(key, key, limit) } -> std::same_as<task<std::size_t>>;
};

} // namespace bulwark
