#pragma once
// memory::ledger: the in-memory model of bulwark::ledger (the embedded default).
// Thread-safe: one mutex around balances and operation records; every call is a few map
// operations under it, so a hot key costs a lock hand-over, never a retry.
// Operation records expire `retention` after their last change, read from an injected wall
// clock (by default the coarse one); every call purges the expired ones first, walking a list
// of the records in the order of their last change (linked through the records themselves, so
// a change costs no allocation), and max_records bounds them (new ids are refused past it,
// after purging).

#include <bulwark/coarse_clock.hpp>
#include <bulwark/detail/ledger_rules.hpp>
#include <bulwark/ledger.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bulwark::memory {

template <class Clock = coarse_system_clock> class basic_ledger {
public:
  struct options {
    /// How long an operation record (applied, refused, reverted, tombstone) is kept after its
    /// last change.
    std::chrono::system_clock::duration retention = std::chrono::hours(24);
    /// The most records kept; past it (after purging) a new id is refused with errc::rejected.
    std::size_t max_records = 1'000'000;
    std::size_t max_key_bytes = 255;   ///< longer keys: errc::invalid_argument
    std::size_t max_op_id_bytes = 255; ///< longer op ids: errc::invalid_argument
    std::size_t max_adjustments = 256; ///< more per apply: errc::too_large
  };

  basic_ledger() : basic_ledger(options{}) {}
  explicit basic_ledger(options opts, Clock clock = Clock{}) : opts_(opts), clock_(std::move(clock)) {}

  /// See bulwark::ledger: all adjustments or none; an op id seen before gives its first result.
  task<apply_outcome> apply(std::string_view op_id, std::span<const adjustment> adjustments) {
    co_return apply_now(op_id, adjustments);
  }
  /// See bulwark::ledger: undoes an applied operation once; a tombstone for an unknown id.
  task<revert_outcome> revert(std::string_view op_id) { co_return revert_now(op_id); }
  /// The balance at key, nullopt when never set.
  task<std::optional<amount>> get(std::string_view key) { co_return get_now(key); }
  /// Administration: sets the balance at key.
  task<void> set(std::string_view key, amount value) { co_return set_now(key, value); }
  /// Administration: adds value to the balance at key; the new balance.
  task<amount> add(std::string_view key, amount value) { co_return add_now(key, value); }
  /// Administration: sets many balances under one lock.
  task<void> set_many(std::span<const balance> balances) { co_return set_many_now(balances); }

  // The same operations, synchronous: the memory model never waits.
  result<apply_outcome> apply_now(std::string_view op_id, std::span<const adjustment> adjustments) {
    BOOST_OUTCOME_TRY(detail::check_op_id(op_id, opts_.max_op_id_bytes));
    BOOST_OUTCOME_TRY(sorted, detail::checked_adjustments(adjustments, opts_.max_key_bytes, opts_.max_adjustments));
    const auto now = clock_.now();
    std::lock_guard lock(mutex_);
    purge(now);
    if (auto it = records_.find(op_id); it != records_.end()) return repeated_apply(op_id, it->second);
    if (records_.size() >= opts_.max_records) return detail::records_full(opts_.max_records);
    // Check every key first, then write: all or none. Each balance is found once; a few
    // adjustments (the usual apply) keep their pending changes on the stack.
    struct change {
      amount* at = nullptr; // the balance, nullptr when new (a pointer: an emplace may rehash)
      amount next = 0;
    };
    std::array<change, 8> few;
    std::vector<change> many;
    if (sorted.size() > few.size()) many.resize(sorted.size());
    const std::span<change> changes = many.empty() ? std::span<change>(few.data(), sorted.size()) : std::span(many);
    for (std::size_t i = 0; i < sorted.size(); ++i) {
      auto found = balances_.find(sorted[i].key);
      const amount current = found == balances_.end() ? 0 : found->second;
      auto n = detail::next_balance(sorted[i].key, current, sorted[i].delta);
      if (!n) {
        const auto code = n.error() == ledger_errc::over_limit ? state::refused_over_limit : state::refused;
        remember(std::string(op_id), record{code, {}, {}, nullptr, nullptr}, now);
        return n.error();
      }
      changes[i] = change{found == balances_.end() ? nullptr : &found->second, n.value()};
    }
    for (std::size_t i = 0; i < sorted.size(); ++i) {
      if (changes[i].at == nullptr)
        balances_.emplace(sorted[i].key, changes[i].next);
      else
        *changes[i].at = changes[i].next;
    }
    remember(std::string(op_id), record{state::applied, std::move(sorted), {}, nullptr, nullptr}, now);
    return apply_outcome::applied;
  }

  result<revert_outcome> revert_now(std::string_view op_id) {
    BOOST_OUTCOME_TRY(detail::check_op_id(op_id, opts_.max_op_id_bytes));
    const auto now = clock_.now();
    std::lock_guard lock(mutex_);
    purge(now);
    auto it = records_.find(op_id);
    if (it == records_.end()) {
      if (records_.size() >= opts_.max_records) return detail::records_full(opts_.max_records);
      remember(std::string(op_id), record{state::tombstone, {}, {}, nullptr, nullptr}, now);
      return revert_outcome::tombstoned;
    }
    auto& rec = it->second;
    switch (rec.what) {
    case state::tombstone: return revert_outcome::tombstoned;
    case state::reverted: return revert_outcome::already_undone;
    case state::refused:
    case state::refused_over_limit: return revert_outcome::nothing_applied;
    case state::applied: break;
    }
    std::vector<amount> next(rec.adjustments.size());
    for (std::size_t i = 0; i < rec.adjustments.size(); ++i) {
      const auto& a = rec.adjustments[i];
      auto found = balances_.find(a.key);
      BOOST_OUTCOME_TRY(n, detail::next_balance(a.key, found == balances_.end() ? 0 : found->second, -a.delta));
      next[i] = n;
    }
    for (std::size_t i = 0; i < rec.adjustments.size(); ++i) balances_[rec.adjustments[i].key] = next[i];
    rec.what = state::reverted;
    rec.adjustments = {};
    touch(*it, now);
    return revert_outcome::undone;
  }

  result<std::optional<amount>> get_now(std::string_view key) const {
    BOOST_OUTCOME_TRY(detail::check_key(key, opts_.max_key_bytes));
    std::lock_guard lock(mutex_);
    auto found = balances_.find(key);
    if (found == balances_.end()) return std::optional<amount>{};
    return std::optional<amount>{found->second};
  }

  result<void> set_now(std::string_view key, amount value) {
    BOOST_OUTCOME_TRY(detail::check_key(key, opts_.max_key_bytes));
    BOOST_OUTCOME_TRY(detail::check_balance(value));
    std::lock_guard lock(mutex_);
    store(key, value);
    return ok();
  }

  result<amount> add_now(std::string_view key, amount value) {
    BOOST_OUTCOME_TRY(detail::check_key(key, opts_.max_key_bytes));
    BOOST_OUTCOME_TRY(detail::check_delta(value));
    std::lock_guard lock(mutex_);
    auto found = balances_.find(key);
    BOOST_OUTCOME_TRY(next, detail::next_balance(key, found == balances_.end() ? 0 : found->second, value));
    store(key, next);
    return next;
  }

  result<void> set_many_now(std::span<const balance> balances) {
    for (const auto& b : balances) {
      BOOST_OUTCOME_TRY(detail::check_key(b.key, opts_.max_key_bytes));
      BOOST_OUTCOME_TRY(detail::check_balance(b.value));
    }
    std::lock_guard lock(mutex_);
    for (const auto& b : balances) store(b.key, b.value);
    return ok();
  }

  /// The operation records kept now (applied, refused, reverted, tombstones), after purging
  /// the expired ones.
  std::size_t records() {
    std::lock_guard lock(mutex_);
    purge(clock_.now());
    return records_.size();
  }

private:
  enum class state : std::uint8_t { applied, refused, refused_over_limit, reverted, tombstone };
  using time_point = std::chrono::system_clock::time_point;
  struct record;
  using entry = std::pair<const std::string, record>; // the record map's element
  struct record {
    state what;
    std::vector<adjustment> adjustments; // kept while applied: what revert undoes
    time_point expires_at;
    // The expiry list, oldest change first: elements of an unordered_map stay where they are
    // until erased (a rehash moves none), so they can point at each other.
    entry* older = nullptr;
    entry* newer = nullptr;
  };
  // Op ids and balance keys are only ever looked up, never walked in order: hash maps, found by
  // string_view (a tree of 100k balances cost a walk of ~17 key comparisons per adjustment).
  // The hash is deliberately not noexcept: libstdc++ then keeps each node's hash code and
  // compares codes before keys in a bucket chain.
  struct key_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view id) const { return std::hash<std::string_view>{}(id); }
  };
  using record_map = std::unordered_map<std::string, record, key_hash, std::equal_to<>>;
  using balance_map = std::unordered_map<std::string, amount, key_hash, std::equal_to<>>;

  result<apply_outcome> repeated_apply(std::string_view op_id, const record& rec) const {
    switch (rec.what) {
    case state::applied: return apply_outcome::already_applied;
    case state::refused: return detail::refused_before(op_id, ledger_errc::insufficient);
    case state::refused_over_limit: return detail::refused_before(op_id, ledger_errc::over_limit);
    case state::reverted:
    case state::tombstone: break;
    }
    return detail::reverted_before(op_id);
  }

  void store(std::string_view key, amount value) {
    auto found = balances_.find(key);
    if (found == balances_.end())
      balances_.emplace(std::string(key), value);
    else
      found->second = value;
  }

  void remember(std::string op_id, record rec, time_point now) {
    auto it = records_.emplace(std::move(op_id), std::move(rec)).first;
    touch(*it, now);
  }

  // A change moves the record to the newest end of the expiry list. Expiries are set in clock
  // order, so the oldest end is always the next to expire.
  void touch(entry& e, time_point now) {
    e.second.expires_at = now + opts_.retention;
    if (newest_ == &e) return;
    unlink(e);
    e.second.older = newest_;
    if (newest_ != nullptr) newest_->second.newer = &e;
    newest_ = &e;
    if (oldest_ == nullptr) oldest_ = &e;
  }

  void unlink(entry& e) {
    auto& r = e.second;
    if (r.older != nullptr) r.older->second.newer = r.newer;
    if (r.newer != nullptr) r.newer->second.older = r.older;
    if (oldest_ == &e) oldest_ = r.newer;
    if (newest_ == &e) newest_ = r.older;
    r.older = r.newer = nullptr;
  }

  void purge(time_point now) {
    while (oldest_ != nullptr && oldest_->second.expires_at <= now) {
      entry& e = *oldest_;
      unlink(e);
      records_.erase(records_.find(std::string_view(e.first)));
    }
  }

  options opts_;
  Clock clock_;
  mutable std::mutex mutex_;
  balance_map balances_;
  record_map records_;
  entry* oldest_ = nullptr; // the expiry list's ends
  entry* newest_ = nullptr;
};

/// The ledger on the coarse wall clock.
using ledger = basic_ledger<>;

static_assert(bulwark::ledger<ledger>, "memory::ledger must model bulwark::ledger");

} // namespace bulwark::memory
