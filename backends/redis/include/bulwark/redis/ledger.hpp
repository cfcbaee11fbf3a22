#pragma once
// bulwark::redis::ledger: the ledger concept on Redis, on one server or a Redis Cluster.
//
// Key layout, for key_prefix P (one ledger per prefix):
//   P b:<key>    a string: the balance, in decimal
//   P o:<op id>  a hash: s (state: a applied, d refused below zero, o refused over the limit,
//                r reverted, t tombstone), n and k1..kn, d1..dn (the balance keys and deltas,
//                kept while applied: what revert undoes); PEXPIRE = retention, renewed on
//                every change of the record
// apply and revert are one Lua script each (EVALSHA, EVAL on NOSCRIPT): one round trip,
// atomic on the server, no compare-and-set retries however hot a key is. The scripts only
// decide whether every new balance lies in [0, max_amount]; on a refusal they return the index
// and the balance they saw, and the refusal is built here with detail/ledger_rules.hpp, as the
// other models build it. Lua numbers are doubles: max_amount (2^53 - 1) keeps them exact.
//
// On a Redis Cluster (a client made with cluster_options) the layout depends on the prefix:
//   a {hash tag} in P   every key of the ledger is in one slot: the layout and the calls above,
//                       unchanged (one shard, one hot slot).
//   no '{' in P         balances spread over every slot ("split" layout). An apply groups its
//                       adjustments by slot into parts; each op id has a home slot H (the slot
//                       of the op id itself, so an op id and its keys that share a {tag} share
//                       it) and its records are named with a tag of their slot
//                       (detail/slot_tag.hpp):
//     P o:{tag H}:<op id>  the home record: a one-part apply whose slot is H uses it exactly
//                          as above (one script); otherwise it holds g, the operation's state
//                          (p pending, A applied, D/O refusing: undoing its parts, d/o refused,
//                          R reverting, r reverted, t tombstone), and m, K1..Km, D1..Dm, the
//                          plan (every balance key and delta of the first apply)
//     P p:{tag s}:<op id>  a part: the record above for the adjustments in slot s, applied and
//                          undone by the same scripts, so each part is atomic and idempotent on
//                          (op id, slot)
//   A split apply: record the plan at home (or find the state a first call left), apply the
//   parts (the ones with a debit first, in parallel, then the credit-only ones), and on a
//   refusal mark the home refusing, undo every part (a part not applied gets a tombstone) and
//   mark it refused. revert: mark the home reverting (a pending apply included), undo every
//   part (credits first), mark it reverted (or tombstoned, when no part had landed). A call that
//   finds a pending or refusing operation (a crashed or concurrent call) finishes it from the
//   stored plan, so a retry converges. A refused apply whose applied parts cannot all be undone
//   yet answers errc::conflict (or the transport error), never declined, so that a saga retries
//   or compensates it. docs/ledger.md, "Redis Cluster", says what holds where.
// revert reads the balance keys from the op record, so it touches keys it did not declare (as
// repository's scan does): each record lives in the slot of the balances it lists.

#include <bulwark/detail/ledger_rules.hpp>
#include <bulwark/ledger.hpp>
#include <bulwark/redis/client.hpp>
#include <bulwark/redis/detail/slot_tag.hpp>
#include <bulwark/redis/script.hpp>

#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::redis {

struct ledger_options {
  /// The namespace: prepended to every Redis key this ledger uses. On a cluster, a {hash tag}
  /// in it keeps every key of the ledger in one slot (one call per apply, one shard); without
  /// one the balances spread over every slot and an apply across slots is split by slot. A
  /// '{' without a whole tag is refused there (invalid_argument), since it would move the
  /// records out of their slots.
  std::string key_prefix = "bulwark:ledger:";
  /// How long an operation record is kept after its last change (the key's PEXPIRE).
  std::chrono::milliseconds retention = std::chrono::hours(24);
  std::size_t max_key_bytes = 1024;   ///< longer keys: errc::invalid_argument
  std::size_t max_op_id_bytes = 1024; ///< longer op ids: errc::invalid_argument
  std::size_t max_adjustments = 256;  ///< more per apply: errc::too_large
  /// Balances per MSET command of set_many.
  std::size_t set_many_batch = 1000;
};

namespace detail {
// KEYS: op record, balance 1..n (ascending key order). ARGV: retention ms, max amount,
// delta 1..n. Returns {'A'} applied, {state} for an id seen before, {'g'} when the record is
// the home of a split operation (its g field), {'n', i, balance} when balance i + delta i
// leaves [0, max] (the id is then recorded as refused).
inline const script& ledger_apply_script() {
  static const script s(R"lua(
local f = redis.call('HMGET', KEYS[1], 's', 'g')
if f[1] then return {f[1]} end
if f[2] then return {'g'} end
local n = #KEYS - 1
local max = tonumber(ARGV[2])
local after = {}
for i = 1, n do
  local cur = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  local v = cur + tonumber(ARGV[i + 2])
  if v < 0 or v > max then
    redis.call('HSET', KEYS[1], 's', v < 0 and 'd' or 'o')
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    return {'n', i, string.format('%d', cur)}
  end
  after[i] = v
end
local rec = {'s', 'a', 'n', n}
for i = 1, n do
  redis.call('SET', KEYS[i + 1], string.format('%d', after[i]))
  rec[#rec + 1] = 'k' .. i
  rec[#rec + 1] = KEYS[i + 1]
  rec[#rec + 1] = 'd' .. i
  rec[#rec + 1] = ARGV[i + 2]
end
redis.call('HSET', KEYS[1], unpack(rec))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {'A'}
)lua");
  return s;
}

// KEYS: op record. ARGV: retention ms, max amount, balance key prefix. Returns {'R'} undone,
// {'T'} a new tombstone, {state} otherwise, {'n', key, balance, delta} when undoing would take
// a balance out of [0, max] (nothing changes), {'g', state, K1, D1, ...} for the home of a
// split operation (the caller drives it).
inline const script& ledger_revert_script() {
  static const script s(R"lua(
local f = redis.call('HMGET', KEYS[1], 's', 'g')
if f[2] then
  local out = {'g', f[2]}
  for i = 1, tonumber(redis.call('HGET', KEYS[1], 'm')) do
    local p = redis.call('HMGET', KEYS[1], 'K' .. i, 'D' .. i)
    out[#out + 1] = p[1]
    out[#out + 1] = p[2]
  end
  return out
end
local s = f[1]
if not s then
  redis.call('HSET', KEYS[1], 's', 't')
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return {'T'}
end
if s ~= 'a' then return {s} end
local n = tonumber(redis.call('HGET', KEYS[1], 'n'))
local max = tonumber(ARGV[2])
local keys, after = {}, {}
for i = 1, n do
  local f = redis.call('HMGET', KEYS[1], 'k' .. i, 'd' .. i)
  local cur = tonumber(redis.call('GET', f[1]) or '0')
  local v = cur - tonumber(f[2])
  if v < 0 or v > max then
    return {'n', string.sub(f[1], #ARGV[3] + 1), string.format('%d', cur), f[2]}
  end
  keys[i] = f[1]
  after[i] = v
end
for i = 1, n do redis.call('SET', keys[i], string.format('%d', after[i])) end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 's', 'r')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {'R'}
)lua");
  return s;
}

// A split apply's first step, on its home record. KEYS: home. ARGV: retention ms, then balance
// key and delta of every adjustment. Returns {'P'} when it recorded the plan (state p: this
// call is the first), {state} when a one-part record holds the id, {'g', state, K1, D1, ...}
// when a split operation holds it (its first plan).
inline const script& ledger_begin_script() {
  static const script s(R"lua(
local f = redis.call('HMGET', KEYS[1], 's', 'g')
if f[2] then
  local out = {'g', f[2]}
  for i = 1, tonumber(redis.call('HGET', KEYS[1], 'm')) do
    local p = redis.call('HMGET', KEYS[1], 'K' .. i, 'D' .. i)
    out[#out + 1] = p[1]
    out[#out + 1] = p[2]
  end
  return out
end
if f[1] then return {f[1]} end
local m = (#ARGV - 1) / 2
local rec = {'g', 'p', 'm', m}
for i = 1, m do
  rec[#rec + 1] = 'K' .. i
  rec[#rec + 1] = ARGV[2 * i]
  rec[#rec + 1] = 'D' .. i
  rec[#rec + 1] = ARGV[2 * i + 1]
end
redis.call('HSET', KEYS[1], unpack(rec))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return {'P'}
)lua");
  return s;
}

// Compare-and-set of a split operation's state. KEYS: home. ARGV: retention ms, the states it
// may move from (a string of letters), the new state. Returns {'1', old} when it moved it,
// {'0', current} ('' when the record is gone) when not.
inline const script& ledger_state_script() {
  static const script s(R"lua(
local g = redis.call('HGET', KEYS[1], 'g')
if g and string.find(ARGV[2], g, 1, true) then
  redis.call('HSET', KEYS[1], 'g', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return {'1', g}
end
return {'0', g or ''}
)lua");
  return s;
}

// KEYS: balance. ARGV: delta, max amount. Returns {1, new} or {0, balance} when refused.
inline const script& ledger_add_script() {
  static const script s(R"lua(
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local v = cur + tonumber(ARGV[1])
if v < 0 or v > tonumber(ARGV[2]) then return {0, string.format('%d', cur)} end
redis.call('SET', KEYS[1], string.format('%d', v))
return {1, string.format('%d', v)}
)lua");
  return s;
}

inline std::optional<amount> parse_amount(std::string_view s) {
  amount v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

/// True when `prefix` carries a whole hash tag: a '{', then a '}' after at least one byte.
inline bool has_hash_tag(std::string_view prefix) noexcept {
  const auto open = prefix.find('{');
  if (open == std::string_view::npos) return false;
  const auto close = prefix.find('}', open + 1);
  return close != std::string_view::npos && close != open + 1;
}

/// Sends every command at once (on a cluster each to its slot's master, so commands to
/// different nodes travel in parallel) and completes when all have answered: one reply per
/// command, in order. A caller cancelled while waiting gets redis_errc::cancelled for the
/// commands still out (their outcome is unknown; they complete unobserved).
inline asio::awaitable<std::vector<result<reply>>> execute_all(client& c,
                                                               const std::vector<std::vector<std::string>>& commands) {
  struct join {
    explicit join(const asio::any_io_executor& ex, std::size_t n) : left(n), wake(ex) { replies.resize(n); }
    std::vector<std::optional<result<reply>>> replies;
    std::size_t left;
    asio::steady_timer wake;
  };
  auto state = std::make_shared<join>(c.get_executor(), commands.size());
  std::vector<std::string_view> argv;
  for (std::size_t i = 0; i < commands.size(); ++i) {
    argv.assign(commands[i].begin(), commands[i].end());
    // The client copies the arguments when the call starts, here.
    c.async_execute(std::span<const std::string_view>(argv), [state, i](result<reply> r) {
      state->replies[i].emplace(std::move(r));
      if (--state->left == 0) state->wake.cancel();
    });
  }
  if (state->left > 0) {
    state->wake.expires_at(asio::steady_timer::time_point::max());
    std::error_code ignored;
    co_await state->wake.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  std::vector<result<reply>> out;
  out.reserve(commands.size());
  for (auto& r : state->replies) {
    if (r)
      out.push_back(std::move(*r));
    else
      out.push_back(bulwark::error(make_error_code(redis_errc::cancelled), "the caller stopped waiting"));
  }
  co_return out;
}

/// execute_all for EVALSHA command lines of `s`, sending EVAL again for those the server did
/// not know (NOSCRIPT).
inline asio::awaitable<std::vector<result<reply>>> run_all(client& c, const script& s,
                                                           std::vector<std::vector<std::string>> commands) {
  auto replies = co_await execute_all(c, commands);
  std::vector<std::vector<std::string>> again;
  std::vector<std::size_t> where;
  for (std::size_t i = 0; i < replies.size(); ++i) {
    if (!script::not_loaded(replies[i])) continue;
    commands[i][0] = "EVAL";
    commands[i][1] = s.text();
    again.push_back(std::move(commands[i]));
    where.push_back(i);
  }
  if (again.empty()) co_return replies;
  auto second = co_await execute_all(c, again);
  for (std::size_t k = 0; k < where.size(); ++k) replies[where[k]] = std::move(second[k]);
  co_return replies;
}
} // namespace detail

class ledger {
public:
  /// A ledger in namespace options.key_prefix on `client`'s server or cluster (see the top of
  /// this header for the layout a cluster gets).
  explicit ledger(client c, ledger_options options = {})
      : client_(std::move(c)), options_(std::move(options)), balance_prefix_(options_.key_prefix + "b:"),
        op_prefix_(options_.key_prefix + "o:"), part_prefix_(options_.key_prefix + "p:"),
        retention_ms_(std::to_string(options_.retention.count())), max_text_(std::to_string(max_amount)) {
    if (!client_.is_cluster() || detail::has_hash_tag(options_.key_prefix)) return;
    if (options_.key_prefix.find('{') != std::string::npos) {
      layout_error_ = bulwark::error(errc::invalid_argument,
                                     "key_prefix '" + options_.key_prefix +
                                         "' has a '{' without a hash tag: on a Redis Cluster use a whole {tag} (one "
                                         "slot) or no '{' (balances spread over slots)");
      return;
    }
    split_ = true;
  }

  /// See bulwark::ledger. One script, one round trip; on a cluster without a {tag} in the prefix,
  /// an apply whose keys are not all in its op id's slot is split by slot (see the top of this
  /// header): two round trips when nothing is refused (the plan, then the parts in parallel, or
  /// three when it mixes debits and credit-only slots). Errors also: the client's.
  task<apply_outcome> apply(std::string_view op_id_view, std::span<const adjustment> adjustments) {
    // Owned before the first suspension: the argv is sent again after NOSCRIPT, and a call
    // abandoned at its deadline runs on after its caller's arguments are gone.
    const std::string op_id(op_id_view);
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_op_id(op_id, options_.max_op_id_bytes));
    BOOST_OUTCOME_CO_TRY(
        sorted, bulwark::detail::checked_adjustments(adjustments, options_.max_key_bytes, options_.max_adjustments));
    if (layout_error_) co_return *layout_error_;
    if (split_ && !in_home_slot(op_id, sorted)) co_return co_await apply_split(op_id, std::move(sorted));
    const std::size_t n = sorted.size();
    std::vector<std::string> owned; // keys and deltas, then the argv views into them
    owned.reserve(2 * n + 2);
    owned.push_back(split_ ? home_key(op_id) : op_prefix_ + op_id);
    owned.push_back(std::to_string(n + 1));
    for (const auto& a : sorted) owned.push_back(balance_prefix_ + a.key);
    for (const auto& a : sorted) owned.push_back(std::to_string(a.delta));
    std::vector<std::string_view> argv;
    argv.reserve(2 * n + 6);
    argv.insert(argv.end(), {"EVALSHA", detail::ledger_apply_script().sha(), owned[1], owned[0]});
    for (std::size_t i = 0; i < n; ++i) argv.push_back(owned[2 + i]);
    argv.push_back(retention_ms_);
    argv.push_back(max_text_);
    for (std::size_t i = 0; i < n; ++i) argv.push_back(owned[2 + n + i]);
    // EVALSHA awaited here rather than through run(): one coroutine frame less per apply (the
    // hot path; bench_saga_ledger's client CPU per apply), EVAL only after NOSCRIPT.
    auto sent = co_await client_.async_execute(std::span<const std::string_view>(argv));
    if (script::not_loaded(sent)) {
      argv[0] = "EVAL";
      argv[1] = detail::ledger_apply_script().text();
      sent = co_await client_.async_execute(std::span<const std::string_view>(argv));
    }
    BOOST_OUTCOME_CO_TRY(rep, std::move(sent));
    BOOST_OUTCOME_CO_TRY(part, read_apply(rep, sorted));
    // The home of a split operation with this id (an earlier apply with other keys): that one.
    if (part.state == 'g') co_return co_await apply_split(op_id, std::move(sorted));
    co_return record_outcome(op_id, part);
  }

  /// See bulwark::ledger. One script, one round trip (a split operation: the home record, its
  /// parts in parallel, the home again).
  task<revert_outcome> revert(std::string_view op_id_view) {
    const std::string op_id(op_id_view); // owned, as in apply
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_op_id(op_id, options_.max_op_id_bytes));
    if (layout_error_) co_return *layout_error_;
    const std::string op_key = split_ ? home_key(op_id) : op_prefix_ + op_id;
    std::array<std::string_view, 7> argv{
        "EVALSHA", detail::ledger_revert_script().sha(), "1", op_key, retention_ms_, max_text_, balance_prefix_};
    BOOST_OUTCOME_CO_TRY(rep, co_await run(detail::ledger_revert_script(), argv));
    if (rep.type != reply::kind::array || rep.elements.empty()) co_return unexpected("revert script");
    if (rep.elements[0].text().value_or("") == "g") {
      BOOST_OUTCOME_CO_TRY(found, read_plan(rep));
      co_return co_await revert_split(op_id, found.first, std::move(found.second));
    }
    BOOST_OUTCOME_CO_TRY(undo, read_revert(rep));
    if (undo.refusal) co_return *undo.refusal;
    switch (undo.state) {
    case 'R': co_return revert_outcome::undone;
    case 'T':
    case 't': co_return revert_outcome::tombstoned;
    case 'r': co_return revert_outcome::already_undone;
    case 'd':
    case 'o': co_return revert_outcome::nothing_applied;
    default: co_return unexpected("revert script");
    }
  }

  /// The balance at key, nullopt when never set. One GET.
  task<std::optional<amount>> get(std::string_view key) {
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_key(key, options_.max_key_bytes));
    const auto balance_key = balance_prefix_ + std::string(key);
    BOOST_OUTCOME_CO_TRY(rep, co_await client_.execute("GET", balance_key));
    if (rep.is_nil()) co_return std::optional<amount>();
    const auto value = detail::parse_amount(rep.text().value_or(""));
    if (!value) co_return unexpected("GET of a balance");
    co_return std::optional<amount>(*value);
  }

  /// Administration: the balance at key becomes value. One SET.
  task<void> set(std::string_view key, amount value) {
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_key(key, options_.max_key_bytes));
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_balance(value));
    const auto balance_key = balance_prefix_ + std::string(key);
    const auto text = std::to_string(value);
    BOOST_OUTCOME_CO_TRY(co_await client_.execute("SET", balance_key, text));
    co_return ok();
  }

  /// Administration: adds value to the balance at key; the new balance. One script.
  task<amount> add(std::string_view key_view, amount value) {
    const std::string key(key_view);
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_key(key, options_.max_key_bytes));
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_delta(value));
    const auto balance_key = balance_prefix_ + key;
    const auto text = std::to_string(value);
    std::array<std::string_view, 6> argv{"EVALSHA", detail::ledger_add_script().sha(), "1", balance_key, text,
                                         max_text_};
    BOOST_OUTCOME_CO_TRY(rep, co_await run(detail::ledger_add_script(), argv));
    if (rep.type != reply::kind::array || rep.elements.size() != 2) co_return unexpected("add script");
    const auto done = rep.elements[0].as_integer();
    const auto number = detail::parse_amount(rep.elements[1].text().value_or(""));
    if (!done || !number) co_return unexpected("add script");
    if (*done == 1) co_return *number;
    auto refusal = bulwark::detail::next_balance(key, *number, value);
    if (refusal) co_return unexpected("add script");
    co_return refusal.error();
  }

  /// Administration: sets many balances: one MSET per set_many_batch keys (10,000 keys: 10
  /// round trips); with the split layout one MSET per slot and batch, all sent at once.
  /// Checks every entry before sending any; atomic per MSET, not across them.
  task<void> set_many(std::span<const balance> balances) {
    for (const auto& b : balances) {
      BOOST_OUTCOME_CO_TRY(bulwark::detail::check_key(b.key, options_.max_key_bytes));
      BOOST_OUTCOME_CO_TRY(bulwark::detail::check_balance(b.value));
    }
    const std::size_t batch = std::max<std::size_t>(1, options_.set_many_batch);
    if (split_) {
      // An MSET's keys must share a slot: one command per slot (and batch), in parallel.
      std::vector<std::pair<std::uint16_t, std::size_t>> order; // (slot, index), stable
      order.reserve(balances.size());
      for (std::size_t i = 0; i < balances.size(); ++i)
        order.emplace_back(detail::key_slot(balance_prefix_ + balances[i].key), i);
      std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      std::vector<std::vector<std::string>> commands;
      for (std::size_t i = 0; i < order.size(); ++i) {
        if (i == 0 || order[i].first != order[i - 1].first || commands.back().size() >= 1 + 2 * batch)
          commands.push_back({"MSET"});
        const auto& b = balances[order[i].second];
        commands.back().push_back(balance_prefix_ + b.key);
        commands.back().push_back(std::to_string(b.value));
      }
      auto replies = co_await detail::execute_all(client_, commands);
      for (auto& r : replies)
        if (!r) co_return r.error();
      co_return ok();
    }
    std::vector<std::string> owned;
    owned.reserve(2 * balances.size());
    for (const auto& b : balances) {
      owned.push_back(balance_prefix_ + b.key);
      owned.push_back(std::to_string(b.value));
    }
    std::vector<std::vector<std::string_view>> commands;
    for (std::size_t start = 0; start < balances.size(); start += batch) {
      auto& argv = commands.emplace_back();
      argv.push_back("MSET");
      for (std::size_t i = start; i < std::min(balances.size(), start + batch); ++i) {
        argv.push_back(owned[2 * i]);
        argv.push_back(owned[2 * i + 1]);
      }
    }
    for (const auto& argv : commands) {
      BOOST_OUTCOME_CO_TRY(co_await client_.async_execute(std::span<const std::string_view>(argv)));
    }
    co_return ok();
  }

  const ledger_options& options() const noexcept { return options_; }
  client& connection() noexcept { return client_; }
  /// True when this ledger spreads its balances over a cluster's slots and splits an apply
  /// across slots (a cluster client and no {tag} in the prefix).
  bool splits_by_slot() const noexcept { return split_; }
  /// The Redis key of the record that answers for `op_id` (its home record when split): for
  /// tests and inspection with redis-cli.
  std::string record_key(std::string_view op_id) const {
    return split_ ? home_key(op_id) : op_prefix_ + std::string(op_id);
  }
  /// The Redis key of a split operation's part in `slot`.
  std::string part_key(std::string_view op_id, std::uint16_t slot) const {
    std::string k = part_prefix_;
    k.append("{").append(detail::slot_tag(slot)).append("}:").append(op_id);
    return k;
  }
  /// The cluster slot of the balance at `key`.
  std::uint16_t slot_of(std::string_view key) const { return detail::key_slot(balance_prefix_ + std::string(key)); }

private:
  /// What a record said to the apply script: its state letter ('A' applied now, a d o r t as
  /// stored, 'g' a split operation's home) and, for a refusal now ('n'), the refusal.
  struct record_reply {
    char state = 0;
    std::optional<bulwark::error> refusal;
  };
  /// One part of a split operation: the adjustments whose balances are in one slot.
  struct part {
    std::uint16_t slot = 0;
    std::vector<adjustment> adjustments; // ascending keys
    bool debits = false;                 // a negative delta: applied first, undone last
    bool credits = false;                // a positive delta: undone first
  };
  /// What undoing every part of a split operation found.
  struct undo_summary {
    bool landed = false; // some part had been applied (undone now or before)
    char refused = 0;    // 'd' or 'o' when some part had been refused
  };
  struct state_change {
    bool moved = false;
    char state = 0; // the state it moved from, or the one it found ('\0': the record is gone)
  };

  std::string home_key(std::string_view op_id) const {
    std::string k = op_prefix_;
    k.append("{").append(detail::slot_tag(detail::key_slot(op_id))).append("}:").append(op_id);
    return k;
  }

  bool in_home_slot(std::string_view op_id, const std::vector<adjustment>& sorted) const {
    const auto home = detail::key_slot(op_id);
    return std::all_of(sorted.begin(), sorted.end(), [&](const adjustment& a) { return slot_of(a.key) == home; });
  }

  std::vector<part> parts_of(const std::vector<adjustment>& sorted) const {
    std::vector<part> parts;
    for (const auto& a : sorted) {
      const auto slot = slot_of(a.key);
      auto it = std::find_if(parts.begin(), parts.end(), [&](const part& p) { return p.slot == slot; });
      if (it == parts.end()) it = parts.insert(parts.end(), part{slot, {}, false, false});
      it->adjustments.push_back(a);
      it->debits = it->debits || a.delta < 0;
      it->credits = it->credits || a.delta > 0;
    }
    return parts;
  }

  result<record_reply> read_apply(const reply& rep, std::span<const adjustment> adjustments) const {
    if (rep.type != reply::kind::array || rep.elements.empty()) return unexpected("apply script");
    const auto state = rep.elements[0].text().value_or("");
    if (state.size() != 1) return unexpected("apply script");
    if (state != "n") return record_reply{state[0], std::nullopt};
    if (rep.elements.size() != 3) return unexpected("apply script");
    const auto index = rep.elements[1].as_integer();
    const auto seen = detail::parse_amount(rep.elements[2].text().value_or(""));
    if (!index || *index < 1 || static_cast<std::size_t>(*index) > adjustments.size() || !seen)
      return unexpected("apply script");
    const auto& a = adjustments[static_cast<std::size_t>(*index - 1)];
    auto refusal = bulwark::detail::next_balance(a.key, *seen, a.delta);
    if (refusal) return unexpected("apply script"); // the script refused a change that fits
    return record_reply{'n', refusal.error()};
  }

  result<record_reply> read_revert(const reply& rep) const {
    if (rep.type != reply::kind::array || rep.elements.empty()) return unexpected("revert script");
    const auto state = rep.elements[0].text().value_or("");
    if (state.size() != 1) return unexpected("revert script");
    if (state != "n") return record_reply{state[0], std::nullopt};
    if (rep.elements.size() != 4) return unexpected("revert script");
    const auto seen = detail::parse_amount(rep.elements[2].text().value_or(""));
    const auto delta = detail::parse_amount(rep.elements[3].text().value_or(""));
    if (!seen || !delta) return unexpected("revert script");
    auto refusal = bulwark::detail::next_balance(rep.elements[1].str, *seen, -*delta);
    if (refusal) return unexpected("revert script");
    return record_reply{'n', refusal.error()};
  }

  /// {'g', state, K1, D1, ...}: the state and the plan (keys without the balance prefix).
  result<std::pair<char, std::vector<adjustment>>> read_plan(const reply& rep) const {
    if (rep.elements.size() < 2 || rep.elements.size() % 2 != 0) return unexpected("split operation record");
    const auto state = rep.elements[1].text().value_or("");
    if (state.size() != 1) return unexpected("split operation record");
    std::vector<adjustment> plan;
    for (std::size_t i = 2; i + 1 < rep.elements.size(); i += 2) {
      const auto key = rep.elements[i].text().value_or("");
      const auto delta = detail::parse_amount(rep.elements[i + 1].text().value_or(""));
      if (!key.starts_with(balance_prefix_) || !delta) return unexpected("split operation record");
      plan.push_back(adjustment{std::string(key.substr(balance_prefix_.size())), *delta});
    }
    if (plan.empty()) return unexpected("split operation record");
    return std::pair{state[0], std::move(plan)};
  }

  /// The answer of an apply that met a record in `r`'s state.
  result<apply_outcome> record_outcome(const std::string& op_id, const record_reply& r) const {
    switch (r.state) {
    case 'A': return apply_outcome::applied;
    case 'a': return apply_outcome::already_applied;
    case 'd': return bulwark::detail::refused_before(op_id, ledger_errc::insufficient);
    case 'o': return bulwark::detail::refused_before(op_id, ledger_errc::over_limit);
    case 'r':
    case 't': return bulwark::detail::reverted_before(op_id);
    case 'n': return *r.refusal;
    default: return unexpected("apply script");
    }
  }

  std::vector<std::string> apply_command(const std::string& op_id, const part& p) const {
    const std::size_t n = p.adjustments.size();
    std::vector<std::string> argv;
    argv.reserve(2 * n + 6);
    argv.insert(argv.end(),
                {"EVALSHA", detail::ledger_apply_script().sha(), std::to_string(n + 1), part_key(op_id, p.slot)});
    for (const auto& a : p.adjustments) argv.push_back(balance_prefix_ + a.key);
    argv.push_back(retention_ms_);
    argv.push_back(max_text_);
    for (const auto& a : p.adjustments) argv.push_back(std::to_string(a.delta));
    return argv;
  }

  std::vector<std::string> revert_command(const std::string& op_id, const part& p) const {
    return {
        "EVALSHA",      detail::ledger_revert_script().sha(), "1", part_key(op_id, p.slot), retention_ms_, max_text_,
        balance_prefix_};
  }

  /// Moves a split operation's state from one of `from` to `to`.
  task<state_change> change_state(const std::string& op_id, std::string_view from, char to) {
    const auto home = home_key(op_id);
    const std::string target(1, to);
    std::array<std::string_view, 7> argv{"EVALSHA", detail::ledger_state_script().sha(), "1", home, retention_ms_, from,
                                         target};
    BOOST_OUTCOME_CO_TRY(rep, co_await run(detail::ledger_state_script(), argv));
    if (rep.type != reply::kind::array || rep.elements.size() != 2) co_return unexpected("state script");
    const auto moved = rep.elements[0].text().value_or("");
    const auto state = rep.elements[1].text().value_or("");
    if (state.size() > 1) co_return unexpected("state script");
    co_return state_change{moved == "1", state.empty() ? '\0' : state[0]};
  }

  /// A split apply: record the plan at home (or learn the first one), then drive it.
  task<apply_outcome> apply_split(std::string op_id, std::vector<adjustment> sorted) {
    std::vector<std::string> owned{"EVALSHA", detail::ledger_begin_script().sha(), "1", home_key(op_id), retention_ms_};
    for (const auto& a : sorted) {
      owned.push_back(balance_prefix_ + a.key);
      owned.push_back(std::to_string(a.delta));
    }
    std::vector<std::string_view> argv(owned.begin(), owned.end());
    BOOST_OUTCOME_CO_TRY(rep, co_await run(detail::ledger_begin_script(), argv));
    if (rep.type != reply::kind::array || rep.elements.empty()) co_return unexpected("begin script");
    const auto state = rep.elements[0].text().value_or("");
    if (state == "P") co_return co_await drive(op_id, std::move(sorted), true);
    if (state != "g") co_return record_outcome(op_id, record_reply{state.size() == 1 ? state[0] : '?', std::nullopt});
    BOOST_OUTCOME_CO_TRY(found, read_plan(rep));
    auto& [g, plan] = found;
    switch (g) {
    case 'p': co_return co_await drive(op_id, std::move(plan), false); // pending: help it finish
    case 'A': co_return apply_outcome::already_applied;
    case 'd':
    case 'o': co_return record_outcome(op_id, record_reply{g, std::nullopt});
    case 'D':
    case 'O': {
      const auto parts = parts_of(plan);
      auto finished = co_await finish_refusal(op_id, parts, g);
      if (!finished) co_return undo_pending(op_id, finished.error());
      co_return record_outcome(op_id, record_reply{g == 'D' ? 'd' : 'o', std::nullopt});
    }
    case 'R':
    case 'r':
    case 't': co_return bulwark::detail::reverted_before(op_id);
    default: co_return unexpected("split operation record");
    }
  }

  /// Applies the parts of a pending split operation: those with a debit first (a refusal comes
  /// from them), then the credit-only ones, each phase in parallel. `first`: this call recorded
  /// the plan (it answers applied; a call that helps answers already_applied).
  task<apply_outcome> drive(std::string op_id, std::vector<adjustment> plan, bool first) {
    const auto parts = parts_of(plan);
    bool landed = false, overtaken = false;
    std::optional<bulwark::error> refusal, failure;
    char refused = 0;
    for (const bool debit_phase : {true, false}) {
      std::vector<const part*> phase;
      for (const auto& p : parts)
        if (p.debits == debit_phase) phase.push_back(&p);
      if (phase.empty()) continue;
      std::vector<std::vector<std::string>> commands;
      for (const auto* p : phase) commands.push_back(apply_command(op_id, *p));
      auto replies = co_await detail::run_all(client_, detail::ledger_apply_script(), std::move(commands));
      for (std::size_t i = 0; i < phase.size(); ++i) {
        if (!replies[i]) {
          if (!failure) failure = replies[i].error();
          continue;
        }
        BOOST_OUTCOME_CO_TRY(r, read_apply(replies[i].value(), phase[i]->adjustments));
        switch (r.state) {
        case 'A':
        case 'a': landed = true; break;
        case 'r': landed = overtaken = true; break; // applied, then undone by a revert
        case 't': overtaken = true; break;          // a revert came first in this slot
        case 'n':
        case 'd':
        case 'o':
          refused = r.state == 'o' || (r.refusal && *r.refusal == ledger_errc::over_limit) ? 'O' : 'D';
          if (!refusal) refusal = r.state == 'n' ? *r.refusal : record_outcome(op_id, r).error();
          break;
        default: co_return unexpected("apply script");
        }
      }
      if (refusal || failure || overtaken) break;
    }
    if (refusal) {
      // Refused: the state says so first (so a crash leaves it to be finished), then every part
      // is undone or tombstoned, then the state is final. A revert that overtook does it instead.
      BOOST_OUTCOME_CO_TRY(change, co_await change_state(op_id, "p", refused));
      if (change.moved || change.state == refused) {
        auto finished = co_await finish_refusal(op_id, parts, refused);
        if (!finished) co_return undo_pending(op_id, finished.error());
      }
      co_return *refusal;
    }
    if (failure) co_return *failure; // the outcome of some part is unknown: ask again
    if (overtaken) {
      if (first && landed) co_return apply_outcome::applied; // then undone by the revert
      co_return bulwark::detail::reverted_before(op_id);
    }
    mark_applied(op_id);
    co_return first ? apply_outcome::applied : apply_outcome::already_applied;
  }

  /// The answer of an apply refused in some slot whose applied parts could not all be undone
  /// yet: not `declined` (a saga takes that for "nothing applied" and would not compensate) but
  /// the undo's own error, or errc::conflict when the undo was refused (a part's credit spent
  /// since): the caller asks again or reverts, and that call finishes the undo.
  static bulwark::error undo_pending(const std::string& op_id, const bulwark::error& e) {
    if (e != errc::declined) return e;
    return bulwark::error(errc::conflict, "operation '" + op_id +
                                              "' was refused, and undoing its applied parts was refused: " +
                                              std::string(e.detail()) + " (ask again or revert it)");
  }

  /// p -> A, not awaited: only later calls read it (a pending operation whose parts all landed
  /// reads the same to them, one round trip dearer).
  void mark_applied(const std::string& op_id) {
    struct call {
      std::vector<std::string> owned;
      std::vector<std::string_view> argv;
    };
    auto c = std::make_shared<call>();
    c->owned = {"EVALSHA", detail::ledger_state_script().sha(), "1", home_key(op_id), retention_ms_, "p", "A"};
    c->argv.assign(c->owned.begin(), c->owned.end());
    client_.async_execute(std::span<const std::string_view>(c->argv), [c, redis = client_](result<reply> r) mutable {
      if (!script::not_loaded(r)) return;
      c->argv[0] = "EVAL";
      c->argv[1] = detail::ledger_state_script().text();
      redis.async_execute(std::span<const std::string_view>(c->argv), [c](result<reply>) {});
    });
  }

  /// Undoes every part (credits first: their undo is what a spent credit can refuse; a part not
  /// applied gets a tombstone). Errors: a part's transport error, or insufficient when a part
  /// cannot be undone (the parts undone so far stay undone; the state is unchanged).
  task<undo_summary> undo_parts(const std::string& op_id, const std::vector<part>& parts) {
    undo_summary summary;
    for (const bool credit_phase : {true, false}) {
      std::vector<const part*> phase;
      for (const auto& p : parts)
        if (p.credits == credit_phase) phase.push_back(&p);
      if (phase.empty()) continue;
      std::vector<std::vector<std::string>> commands;
      for (const auto* p : phase) commands.push_back(revert_command(op_id, *p));
      auto replies = co_await detail::run_all(client_, detail::ledger_revert_script(), std::move(commands));
      std::optional<bulwark::error> failure;
      for (auto& rep : replies) {
        if (!rep) {
          if (!failure) failure = rep.error();
          continue;
        }
        BOOST_OUTCOME_CO_TRY(r, read_revert(rep.value()));
        switch (r.state) {
        case 'R':
        case 'r': summary.landed = true; break;
        case 'T':
        case 't': break;
        case 'd':
        case 'o': summary.refused = r.state; break;
        case 'n':
          if (!failure) failure = *r.refusal;
          break;
        default: co_return unexpected("revert script");
        }
      }
      if (failure) co_return *failure;
    }
    co_return summary;
  }

  /// A refused split operation (state D or O): undo its parts, then mark it refused.
  task<void> finish_refusal(const std::string& op_id, const std::vector<part>& parts, char refusing) {
    BOOST_OUTCOME_CO_TRY(co_await undo_parts(op_id, parts));
    const std::string from(1, refusing);
    BOOST_OUTCOME_CO_TRY(co_await change_state(op_id, from, refusing == 'D' ? 'd' : 'o'));
    co_return ok();
  }

  /// A revert that found a split operation in state `g`: move it to R (a pending one included,
  /// whose later parts then meet tombstones), undo every part, then mark it r, or t when no part
  /// had landed. The call that makes the last move answers undone; the others already_undone.
  task<revert_outcome> revert_split(std::string op_id, char g, std::vector<adjustment> plan) {
    const auto parts = parts_of(plan);
    for (int step = 0; g != 'R'; ++step) {
      if (step == 4) co_return unexpected("split operation record"); // states only move forward
      switch (g) {
      case 'r': co_return revert_outcome::already_undone;
      case 't': co_return revert_outcome::tombstoned;
      case 'd':
      case 'o': co_return revert_outcome::nothing_applied;
      case 'D':
      case 'O': {
        BOOST_OUTCOME_CO_TRY(co_await finish_refusal(op_id, parts, g));
        co_return revert_outcome::nothing_applied;
      }
      case 'p':
      case 'A': {
        BOOST_OUTCOME_CO_TRY(change, co_await change_state(op_id, "pA", 'R'));
        g = change.moved ? 'R' : change.state;
        break;
      }
      case '\0': co_return revert_outcome::already_undone; // forgotten after the retention meanwhile
      default: co_return unexpected("split operation record");
      }
    }
    BOOST_OUTCOME_CO_TRY(summary, co_await undo_parts(op_id, parts));
    const char final_state = summary.refused ? summary.refused : summary.landed ? 'r' : 't';
    BOOST_OUTCOME_CO_TRY(change, co_await change_state(op_id, "R", final_state));
    const char outcome = change.moved ? final_state : change.state;
    if (outcome == 'd' || outcome == 'o') co_return revert_outcome::nothing_applied;
    if (outcome == 't') co_return revert_outcome::tombstoned;
    if (change.moved) co_return revert_outcome::undone;
    co_return revert_outcome::already_undone;
  }

  /// EVALSHA `argv` (argv[0..1] are EVALSHA and the sha), EVAL on NOSCRIPT.
  template <class Argv> task<reply> run(const script& s, Argv& argv) {
    auto r = co_await client_.async_execute(std::span<const std::string_view>(argv.data(), argv.size()));
    if (!script::not_loaded(r)) co_return r;
    argv[0] = "EVAL";
    argv[1] = s.text();
    co_return co_await client_.async_execute(std::span<const std::string_view>(argv.data(), argv.size()));
  }

  static bulwark::error unexpected(const char* what) {
    return {make_error_code(redis_errc::unexpected_reply), std::string(what) + ": unexpected reply"};
  }

  client client_;
  ledger_options options_;
  std::string balance_prefix_;
  std::string op_prefix_;
  std::string part_prefix_;
  std::string retention_ms_;
  std::string max_text_;
  bool split_ = false;
  std::optional<bulwark::error> layout_error_;
};

} // namespace bulwark::redis

static_assert(bulwark::ledger<bulwark::redis::ledger>, "redis::ledger must model bulwark::ledger");
