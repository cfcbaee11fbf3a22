#pragma once
// The ledger concept: named balances (stock per item, credit per user) that never go below zero,
// changed by operations that carry an id, so that a saga participant applies each command once
// and undoes it once, whatever the bus redelivers.
//
// Requirements, for a model L, an lvalue l of L, op_id and key of type std::string_view,
// adjustments of type std::span<const adjustment>, balances of type std::span<const balance>,
// value of type amount:
//
// | expression            | type                        | semantics, errors
// |-----------------------|-----------------------------|--------------------------------------
// | l.apply(op_id,        | task<apply_outcome>         | adds every delta to its key's balance,
// |         adjustments)  |                             | all or none, atomically across keys.
// |                       |                             | A key never seen counts as 0. When a
// |                       |                             | balance would go below 0 nothing
// |                       |                             | changes: ledger_errc::insufficient
// |                       |                             | (condition errc::declined), the
// |                       |                             | detail names the key; above
// |                       |                             | max_amount: ledger_errc::over_limit
// |                       |                             | (errc::too_large). Either way the id
// |                       |                             | is recorded with its result.
// |                       |                             | An op_id seen before changes nothing
// |                       |                             | and returns the first result:
// |                       |                             | already_applied, or the same refusal.
// |                       |                             | An op_id reverted (or tombstoned by a
// |                       |                             | revert that came first): refused with
// |                       |                             | ledger_errc::reverted (errc::declined).
// | l.revert(op_id)       | task<revert_outcome>        | undoes an applied operation once:
// |                       |                             | undone; later calls already_undone.
// |                       |                             | A refused operation: nothing_applied.
// |                       |                             | An unknown id: tombstoned (a record is
// |                       |                             | left, so a late apply is refused).
// |                       |                             | When undoing would take a balance
// |                       |                             | below 0 (an applied credit since
// |                       |                             | spent) nothing changes and the
// |                       |                             | operation stays applied: insufficient.
// | l.get(key)            | task<std::optional<amount>> | the balance, nullopt for a key never
// |                       |                             | set, added to or applied to
// | l.set(key, value)     | task<void>                  | administration: the balance becomes
// |                       |                             | value (0..max_amount, else
// |                       |                             | errc::invalid_argument). No op id.
// | l.add(key, value)     | task<amount>                | administration: adds value (either
// |                       |                             | sign), returns the new balance;
// |                       |                             | insufficient / over_limit as apply
// | l.set_many(balances)  | task<void>                  | set() for many keys at once (batch
// |                       |                             | initialisation: a few round trips for
// |                       |                             | thousands of keys). Atomic per key,
// |                       |                             | not across keys. Duplicate keys: the
// |                       |                             | last one wins.
//
// Input rules (detail/ledger_rules.hpp, shared by every model, texts included): an op id and a
// key are 1..the model's limit bytes (any bytes), else errc::invalid_argument; an apply has 1 to
// max_adjustments adjustments (none: invalid_argument; more: errc::too_large), no key twice
// (invalid_argument), every |delta| <= max_amount (invalid_argument). Amounts are integers in
// [0, max_amount] = [0, 2^53 - 1], the range every backend holds exactly (Redis scripts compute
// in Lua doubles).
//
// Retention. A model keeps each operation record (applied, refused, reverted, tombstone) for
// `retention` after its last change (a model option, default 24 h), then forgets it: a
// duplicate apply or a revert arriving later than that is treated as a new id. Choose the
// retention longer than the longest redelivery a bus can make (the saga's outcome retention).
// Forgotten records are purged, so their number stays bounded by the rate of operations times
// the retention:
//   memory::ledger  an expiry queue, purged on every call from an injected wall clock; and a
//                   hard bound (max_records): past it, after purging, new ids are refused with
//                   errc::rejected rather than forgetting live records early.
//   redis::ledger   each record is a hash with PEXPIRE = retention (the server's clock).
//   mysql::ledger   each row has expires_at from an injected wall clock; an expired row counts as
//                   absent at once, and purge_expired() deletes them in bounded batches (run
//                   by apply/revert every purge_interval, or by the application).
//
// Where the guarantees hold:
//   memory::ledger  one process; atomic under one mutex; nothing survives a restart.
//   redis::ledger   one Lua script per call (one round trip, no compare-and-set retries on a
//                   hot key): atomic and isolated on one server, and on a Redis Cluster when
//                   every key of the apply is in one slot (a {hash tag} in key_prefix puts the
//                   whole ledger in one). Without a tag a cluster ledger splits an apply across
//                   slots into per-slot parts: each part atomic and idempotent on (op id, slot),
//                   the whole all-or-nothing eventually (a refused part undoes the others) but
//                   not isolated: a reader may see one part before another, and a crash between
//                   parts leaves them so until a call with that op id (retry or revert) finishes
//                   it (docs/ledger.md, "Redis Cluster"). Durability is the server's
//                   (AOF/replication): a failover can lose the last writes.
//   mysql::ledger   one InnoDB transaction per call (READ COMMITTED, balance rows locked in key
//                   order, then the op row): atomic, isolated and durable, across processes.
//
// Models (each ends with a static_assert that it satisfies this concept):
//   memory::ledger  include/bulwark/memory/ledger.hpp           the embedded default
//   redis::ledger   backends/redis/.../redis/ledger.hpp         a string per balance, a hash per op
//   mysql::ledger   backends/mysql/.../mysql/ledger.hpp         a balances table and an ops table
// Conformance suite: tests/conformance/ledger_suite.hpp, run by every model
// (tests/conformance/memory.cpp, tests/redis/conformance.cpp, tests/mysql/conformance.cpp).
// Archetype (the smallest model) and a near miss: tests/unit/core/concepts.cpp.
//
// Threads and executors. A task resumes its caller on the caller's executor. What may be shared:
//   memory::ledger  any number of threads and coroutines at once (one mutex); its tasks never
//                   suspend, so they complete inline on the caller's thread.
//   redis::ledger   one executor: the redis::client's; call it only from coroutines on it.
//   mysql::ledger   one executor: its mysql::pool's.
//
// Deadlines and abandonment (as for the repository, see repository.hpp): each operation copies
// its arguments before its first suspension. errc::timeout on apply or revert means the outcome
// is unknown: ask again with the same op id, which is what the id is for.

#include <bulwark/error.hpp>
#include <bulwark/result.hpp>

#include <array>
#include <concepts>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

namespace bulwark {

/// A balance or a change of one: an integer number of units (items, cents).
using amount = std::int64_t;

/// The largest balance and the largest |delta|: 2^53 - 1, exact in every backend.
inline constexpr amount max_amount = (amount{1} << 53) - 1;

/// One change of an apply: `delta` (either sign) added to the balance at `key`.
struct adjustment {
  std::string key;
  amount delta = 0;
  friend bool operator==(const adjustment&, const adjustment&) = default;
};

/// A key and its balance: the input of set_many.
struct balance {
  std::string key;
  amount value = 0;
  friend bool operator==(const balance&, const balance&) = default;
};

/// What an apply that was not refused did.
enum class apply_outcome : std::uint8_t {
  applied,         ///< this call applied the adjustments
  already_applied, ///< an earlier call with the same op id did; nothing changed now
};

/// What a revert did.
enum class revert_outcome : std::uint8_t {
  undone,          ///< this call undid the applied operation
  already_undone,  ///< an earlier revert did; nothing changed now
  nothing_applied, ///< the operation was refused when applied: nothing to undo
  tombstoned,      ///< the id was unknown: a tombstone now refuses a late apply of it
};

/// The ledger's own codes (category "ledger"), each compared against through its condition.
/// Stable: never renumbered, only appended; docs/errors.md lists the same rows (a test checks).
enum class ledger_errc : int {
  insufficient = 1, ///< a balance would go below zero (declined)
  reverted = 2,     ///< the operation id was reverted or tombstoned: a late apply (declined)
  over_limit = 3,   ///< a balance would go above max_amount (too_large)
};

inline constexpr std::array<error_row, 3> ledger_errc_rows{{
    {1, "insufficient", "balance would go below zero", errc::declined},
    {2, "reverted", "operation was reverted", errc::declined},
    {3, "over_limit", "balance would exceed the largest amount", errc::too_large},
}};

/// The category of ledger_errc codes ("ledger").
inline const std::error_category& ledger_category() noexcept {
  static const table_category instance("ledger", ledger_errc_rows);
  return instance;
}

inline std::error_code make_error_code(ledger_errc e) noexcept { return {static_cast<int>(e), ledger_category()}; }

template <class L>
concept ledger = requires(L& l, std::string_view id, std::span<const adjustment> adjustments,
                          std::span<const balance> balances, amount value) {
  { l.apply(id, adjustments) } -> std::same_as<task<apply_outcome>>;
  { l.revert(id) } -> std::same_as<task<revert_outcome>>;
  { l.get(id) } -> std::same_as<task<std::optional<amount>>>;
  { l.set(id, value) } -> std::same_as<task<void>>;
  { l.add(id, value) } -> std::same_as<task<amount>>;
  { l.set_many(balances) } -> std::same_as<task<void>>;
};

} // namespace bulwark

template <> struct std::is_error_code_enum<bulwark::ledger_errc> : std::true_type {};
