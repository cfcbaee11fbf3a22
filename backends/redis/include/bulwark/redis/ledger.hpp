#pragma once
// bulwark::redis::ledger: the ledger concept on Redis.
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
// revert reads the balance keys from the op record, so it touches keys it did not declare (as
// repository's scan does): a standalone server, or a cluster where all of P's keys share one
// hash slot (a {hash tag} in the prefix). Splitting one apply across slots is not done yet.

#include <bulwark/detail/ledger_rules.hpp>
#include <bulwark/ledger.hpp>
#include <bulwark/redis/client.hpp>
#include <bulwark/redis/script.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::redis {

struct ledger_options {
  /// The namespace: prepended to every Redis key this ledger uses. On a cluster, put a
  /// {hash tag} in it so that every key of the ledger lives in one slot.
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
// delta 1..n. Returns {'A'} applied, {state} for an id seen before, {'n', i, balance} when
// balance i + delta i leaves [0, max] (the id is then recorded as refused).
inline const script& ledger_apply_script() {
  static const script s(R"lua(
local s = redis.call('HGET', KEYS[1], 's')
if s then return {s} end
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
// a balance out of [0, max] (nothing changes).
inline const script& ledger_revert_script() {
  static const script s(R"lua(
local s = redis.call('HGET', KEYS[1], 's')
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
} // namespace detail

class ledger {
public:
  /// A ledger in namespace options.key_prefix on `client`'s server.
  explicit ledger(client c, ledger_options options = {})
      : client_(std::move(c)), options_(std::move(options)), balance_prefix_(options_.key_prefix + "b:"),
        op_prefix_(options_.key_prefix + "o:"), retention_ms_(std::to_string(options_.retention.count())),
        max_text_(std::to_string(max_amount)) {}

  /// See bulwark::ledger. One script, one round trip. Errors also: the client's.
  task<apply_outcome> apply(std::string_view op_id_view, std::span<const adjustment> adjustments) {
    // Owned before the first suspension: the argv is sent again after NOSCRIPT, and a call
    // abandoned at its deadline runs on after its caller's arguments are gone.
    const std::string op_id(op_id_view);
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_op_id(op_id, options_.max_op_id_bytes));
    BOOST_OUTCOME_CO_TRY(
        sorted, bulwark::detail::checked_adjustments(adjustments, options_.max_key_bytes, options_.max_adjustments));
    const std::size_t n = sorted.size();
    std::vector<std::string> owned; // keys and deltas, then the argv views into them
    owned.reserve(2 * n + 2);
    owned.push_back(op_prefix_ + op_id);
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
    if (rep.type != reply::kind::array || rep.elements.empty()) co_return unexpected("apply script");
    const auto state = rep.elements[0].text().value_or("");
    if (state == "A") co_return apply_outcome::applied;
    if (state == "a") co_return apply_outcome::already_applied;
    if (state == "d") co_return bulwark::detail::refused_before(op_id, ledger_errc::insufficient);
    if (state == "o") co_return bulwark::detail::refused_before(op_id, ledger_errc::over_limit);
    if (state == "r" || state == "t") co_return bulwark::detail::reverted_before(op_id);
    if (state != "n" || rep.elements.size() != 3) co_return unexpected("apply script");
    const auto index = rep.elements[1].as_integer();
    const auto seen = detail::parse_amount(rep.elements[2].text().value_or(""));
    if (!index || *index < 1 || static_cast<std::size_t>(*index) > n || !seen) co_return unexpected("apply script");
    const auto& a = sorted[static_cast<std::size_t>(*index - 1)];
    auto refusal = bulwark::detail::next_balance(a.key, *seen, a.delta);
    if (refusal) co_return unexpected("apply script"); // the script refused a change that fits
    co_return refusal.error();
  }

  /// See bulwark::ledger. One script, one round trip.
  task<revert_outcome> revert(std::string_view op_id_view) {
    const std::string op_id(op_id_view); // owned, as in apply
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_op_id(op_id, options_.max_op_id_bytes));
    const std::string op_key = op_prefix_ + op_id;
    std::array<std::string_view, 7> argv{
        "EVALSHA", detail::ledger_revert_script().sha(), "1", op_key, retention_ms_, max_text_, balance_prefix_};
    BOOST_OUTCOME_CO_TRY(rep, co_await run(detail::ledger_revert_script(), argv));
    if (rep.type != reply::kind::array || rep.elements.empty()) co_return unexpected("revert script");
    const auto state = rep.elements[0].text().value_or("");
    if (state == "R") co_return revert_outcome::undone;
    if (state == "T" || state == "t") co_return revert_outcome::tombstoned;
    if (state == "r") co_return revert_outcome::already_undone;
    if (state == "d" || state == "o") co_return revert_outcome::nothing_applied;
    if (state != "n" || rep.elements.size() != 4) co_return unexpected("revert script");
    const auto seen = detail::parse_amount(rep.elements[2].text().value_or(""));
    const auto delta = detail::parse_amount(rep.elements[3].text().value_or(""));
    if (!seen || !delta) co_return unexpected("revert script");
    auto refusal = bulwark::detail::next_balance(rep.elements[1].str, *seen, -*delta);
    if (refusal) co_return unexpected("revert script");
    co_return refusal.error();
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
  /// round trips). Checks every entry before sending any; atomic per MSET, not across them.
  task<void> set_many(std::span<const balance> balances) {
    for (const auto& b : balances) {
      BOOST_OUTCOME_CO_TRY(bulwark::detail::check_key(b.key, options_.max_key_bytes));
      BOOST_OUTCOME_CO_TRY(bulwark::detail::check_balance(b.value));
    }
    std::vector<std::string> owned;
    owned.reserve(2 * balances.size());
    for (const auto& b : balances) {
      owned.push_back(balance_prefix_ + b.key);
      owned.push_back(std::to_string(b.value));
    }
    const std::size_t batch = std::max<std::size_t>(1, options_.set_many_batch);
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

private:
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
  std::string retention_ms_;
  std::string max_text_;
};

} // namespace bulwark::redis

static_assert(bulwark::ledger<bulwark::redis::ledger>, "redis::ledger must model bulwark::ledger");
