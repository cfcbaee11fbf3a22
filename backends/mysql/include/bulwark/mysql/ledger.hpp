#pragma once
// mysql::ledger: bulwark::ledger on two InnoDB tables, for ledger name N:
//
//   N_balances (k VARBINARY(255) PRIMARY KEY, v BIGINT NOT NULL,
//               CHECK (v BETWEEN 0 AND 2^53 - 1))              the balances
//   N_ops      (op_id VARBINARY(255) PRIMARY KEY, state CHAR(1), body BLOB,
//               expires_at BIGINT, KEY (expires_at))            one row per operation id
//
// state: a applied, d refused below zero, o refused over the limit, r reverted, t tombstone;
// body: the adjustments while applied (what revert undoes), encoded here (length-prefixed keys,
// 64-bit deltas); expires_at: milliseconds of the injected wall clock at which the row is
// forgotten (retention after its last change).
//
// One transaction per call, READ COMMITTED (so locking reads of absent keys take no gap locks,
// which would deadlock concurrent first credits of one key):
//   apply   SELECT the balance rows FOR UPDATE (one statement, ascending key order), judge with
//           detail/ledger_rules.hpp, INSERT the op row (a duplicate id fails on the primary key,
//           after the first transaction committed: then ROLLBACK and answer from its row), add
//           the new balances in one multi-row upsert (two when some keys had no row), COMMIT.
//           Six round trips on success; a hot key is locked from the SELECT to the COMMIT.
//   revert  read the op row, then lock the same balance rows FOR UPDATE and then the op row
//           (the order apply locks them in, so an apply and a revert of one id do not deadlock),
//           re-check its state, subtract, mark it reverted, COMMIT.
// The CHECK constraint is a backstop: no committed balance is ever outside [0, max_amount].
// A deadlock the server reports anyway (ER_LOCK_DEADLOCK) rolls the whole transaction back;
// the call runs again, up to 3 times. Any other failure inside a transaction discards the
// connection, so the server rolls it back.
// Expired op rows count as absent at once; purge_expired() deletes them in batches (apply and
// revert run one batch every purge_interval).

#include <bulwark/coarse_clock.hpp>
#include <bulwark/detail/ledger_rules.hpp>
#include <bulwark/ledger.hpp>
#include <bulwark/mysql/connection.hpp>
#include <bulwark/mysql/error.hpp>
#include <bulwark/mysql/pool.hpp>
#include <bulwark/mysql/repository.hpp>

#include <mysql.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bulwark::mysql {

struct ledger_options {
  /// How long an operation row is kept after its last change.
  std::chrono::milliseconds retention = std::chrono::hours(24);
  /// How often apply/revert delete one batch of expired operation rows.
  std::chrono::milliseconds purge_interval = std::chrono::minutes(1);
  /// Rows per purge batch (DELETE ... LIMIT).
  std::size_t purge_batch = 1000;
  std::size_t max_adjustments = 256; ///< more per apply: errc::too_large
  std::size_t set_many_batch = 500;  ///< rows per INSERT of set_many
};

namespace detail {
/// The adjustments of an applied operation as stored in its row.
inline std::string encode_adjustments(std::span<const adjustment> adjustments) {
  std::string out;
  for (const auto& a : adjustments) {
    const auto n = static_cast<std::uint32_t>(a.key.size());
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    out += a.key;
    const auto d = static_cast<std::uint64_t>(a.delta);
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((d >> (8 * i)) & 0xff));
  }
  return out;
}

inline result<std::vector<adjustment>> decode_adjustments(std::string_view in) {
  std::vector<adjustment> out;
  auto take = [&in](std::size_t bytes) -> std::optional<std::uint64_t> {
    if (in.size() < bytes) return std::nullopt;
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < bytes; ++i) v |= std::uint64_t{static_cast<unsigned char>(in[i])} << (8 * i);
    in.remove_prefix(bytes);
    return v;
  };
  while (!in.empty()) {
    const auto n = take(4);
    if (!n || in.size() < *n) return bulwark::error(errc::protocol_error, "ledger operation row: bad body");
    adjustment a;
    a.key = std::string(in.substr(0, *n));
    in.remove_prefix(*n);
    const auto d = take(8);
    if (!d) return bulwark::error(errc::protocol_error, "ledger operation row: bad body");
    a.delta = static_cast<amount>(*d);
    out.push_back(std::move(a));
  }
  return out;
}

inline MYSQL_BIND i64(long long& v) noexcept {
  MYSQL_BIND b;
  std::memset(&b, 0, sizeof b);
  b.buffer_type = MYSQL_TYPE_LONGLONG;
  b.buffer = &v;
  return b;
}

inline bool is_code(const bulwark::error& e, unsigned int native) { return e.code() == make_error_code(native); }
} // namespace detail

template <class Clock = coarse_system_clock> class basic_ledger {
public:
  /// Validates `name` ([A-Za-z0-9_]{1,55}), creates its two tables when missing, returns the
  /// ledger. The pool must outlive it; use it from the pool's executor.
  static task<basic_ledger> open(pool& p, std::string_view name, ledger_options options = {}, Clock clock = Clock{}) {
    if (name.size() > 55 || !detail::valid_table_name(name))
      co_return bulwark::error(errc::invalid_argument, "mysql ledger name must match [A-Za-z0-9_]{1,55}");
    basic_ledger l(p, std::string(name), options, std::move(clock));
    BOOST_OUTCOME_CO_TRY(lease, co_await p.acquire());
    const std::string balances_ddl = "CREATE TABLE IF NOT EXISTS " + l.sql_->balances +
                                     " (k VARBINARY(255) NOT NULL PRIMARY KEY, v BIGINT NOT NULL,"
                                     " CONSTRAINT balance_range CHECK (v BETWEEN 0 AND " +
                                     std::to_string(max_amount) + ")) ENGINE=InnoDB";
    const std::string ops_ddl = "CREATE TABLE IF NOT EXISTS " + l.sql_->ops +
                                " (op_id VARBINARY(255) NOT NULL PRIMARY KEY, state CHAR(1) NOT NULL,"
                                " body BLOB NOT NULL, expires_at BIGINT NOT NULL, KEY (expires_at)) ENGINE=InnoDB";
    BOOST_OUTCOME_CO_TRY(co_await lease->run_ddl(balances_ddl));
    BOOST_OUTCOME_CO_TRY(co_await lease->run_ddl(ops_ddl));
    co_return l;
  }

  /// See bulwark::ledger. One transaction (see the header comment).
  task<apply_outcome> apply(std::string_view op_id_view, std::span<const adjustment> adjustments) {
    const std::string op_id(op_id_view); // owned: bound after suspensions
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_op_id(op_id, max_key_size));
    BOOST_OUTCOME_CO_TRY(sorted,
                         bulwark::detail::checked_adjustments(adjustments, max_key_size, options_.max_adjustments));
    for (int attempt = 1;; ++attempt) {
      auto r = co_await apply_once(op_id, sorted);
      if (r || attempt == max_attempts || !retry(r.error())) {
        co_await maybe_purge();
        co_return r;
      }
    }
  }

  /// See bulwark::ledger. One transaction.
  task<revert_outcome> revert(std::string_view op_id_view) {
    const std::string op_id(op_id_view);
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_op_id(op_id, max_key_size));
    for (int attempt = 1;; ++attempt) {
      auto r = co_await revert_once(op_id);
      if (r || attempt == max_attempts || !retry(r.error())) {
        co_await maybe_purge();
        co_return r;
      }
    }
  }

  /// The balance at key, nullopt when never set. One round trip.
  task<std::optional<amount>> get(std::string_view key_view) {
    const std::string key(key_view);
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_key(key, max_key_size));
    BOOST_OUTCOME_CO_TRY(l, co_await pool_->acquire());
    std::vector<unsigned long> lengths(1);
    std::vector<MYSQL_BIND> in{detail::binder::bytes(key, lengths[0])};
    BOOST_OUTCOME_CO_TRY(stmt, co_await run(*l, sql_->get, in));
    long long value = 0;
    MYSQL_BIND out[1] = {detail::i64(value)};
    std::optional<amount> found;
    BOOST_OUTCOME_CO_TRY(co_await detail::fetch_rows(*l, stmt, out, [&]() -> result<void> {
      found = value;
      return ok();
    }));
    co_return found;
  }

  /// Administration: the balance at key becomes value. One statement.
  task<void> set(std::string_view key, amount value) {
    const balance one{std::string(key), value};
    co_return co_await set_many(std::span<const balance>(&one, 1));
  }

  /// Administration: adds value to the balance at key, returns the new balance. One
  /// transaction (lock, judge, write).
  task<amount> add(std::string_view key_view, amount value) {
    const std::string key(key_view);
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_key(key, max_key_size));
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_delta(value));
    BOOST_OUTCOME_CO_TRY(l, co_await begin());
    const std::vector<adjustment> one{{key, value}};
    auto r = co_await add_locked(l, one);
    if (!r) co_return fail_in_transaction(l, r.error());
    co_return r;
  }

  /// Administration: sets many balances: multi-row upserts of set_many_batch rows, each its
  /// own statement (atomic per batch, not across batches). Checks every entry first.
  task<void> set_many(std::span<const balance> balances_view) {
    const std::vector<balance> balances(balances_view.begin(), balances_view.end());
    for (const auto& b : balances) {
      BOOST_OUTCOME_CO_TRY(bulwark::detail::check_key(b.key, max_key_size));
      BOOST_OUTCOME_CO_TRY(bulwark::detail::check_balance(b.value));
    }
    if (balances.empty()) co_return ok();
    BOOST_OUTCOME_CO_TRY(l, co_await pool_->acquire());
    const std::size_t batch = std::max<std::size_t>(1, options_.set_many_batch);
    for (std::size_t start = 0; start < balances.size(); start += batch) {
      const std::size_t n = std::min(batch, balances.size() - start);
      std::vector<unsigned long> lengths(n);
      std::vector<long long> values(n);
      std::vector<MYSQL_BIND> in;
      in.reserve(2 * n);
      for (std::size_t i = 0; i < n; ++i) {
        values[i] = balances[start + i].value;
        in.push_back(detail::binder::bytes(balances[start + i].key, lengths[i]));
        in.push_back(detail::i64(values[i]));
      }
      const auto sql = upsert_sql(n, "VALUES(v)");
      BOOST_OUTCOME_CO_TRY(co_await run(*l, sql, in));
    }
    co_return ok();
  }

  /// Deletes up to purge_batch expired operation rows; how many it deleted.
  task<std::size_t> purge_expired() {
    BOOST_OUTCOME_CO_TRY(l, co_await pool_->acquire());
    long long now = now_ms();
    unsigned long long limit = options_.purge_batch;
    std::vector<MYSQL_BIND> in{detail::i64(now), detail::binder::u64(limit)};
    BOOST_OUTCOME_CO_TRY(stmt, co_await run(*l, sql_->purge, in));
    co_return static_cast<std::size_t>(mysql_stmt_affected_rows(stmt));
  }

  /// The two tables: "<name>_balances", "<name>_ops".
  const std::string& balances_table() const noexcept { return sql_->balances_name; }
  const std::string& ops_table() const noexcept { return sql_->ops_name; }

private:
  static constexpr int max_attempts = 3;

  struct statements {
    std::string balances_name, ops_name, balances, ops;
    std::string get, insert_op, read_op, read_op_locked, expire_op, tombstone_over_expired, mark_reverted, purge;
  };
  struct shared_state {
    std::chrono::system_clock::time_point next_purge{};
  };

  basic_ledger(pool& p, std::string name, ledger_options options, Clock clock)
      : pool_(&p), sql_(make_statements(name)), options_(options), clock_(std::move(clock)),
        state_(std::make_shared<shared_state>()) {}

  static std::shared_ptr<const statements> make_statements(const std::string& name) {
    auto s = std::make_shared<statements>();
    s->balances_name = name + "_balances";
    s->ops_name = name + "_ops";
    s->balances = "`" + s->balances_name + "`";
    s->ops = "`" + s->ops_name + "`";
    s->get = "SELECT v FROM " + s->balances + " WHERE k = ?";
    s->insert_op = "INSERT INTO " + s->ops + " (op_id, state, body, expires_at) VALUES (?, ?, ?, ?)";
    s->read_op = "SELECT state, body, expires_at FROM " + s->ops + " WHERE op_id = ?";
    s->read_op_locked = "SELECT state, body, expires_at FROM " + s->ops + " WHERE op_id = ? FOR UPDATE";
    s->expire_op = "DELETE FROM " + s->ops + " WHERE op_id = ? AND expires_at <= ?";
    s->tombstone_over_expired =
        "UPDATE " + s->ops + " SET state = 't', body = '', expires_at = ? WHERE op_id = ? AND expires_at <= ?";
    s->mark_reverted = "UPDATE " + s->ops + " SET state = 'r', body = '', expires_at = ? WHERE op_id = ?";
    s->purge = "DELETE FROM " + s->ops + " WHERE expires_at <= ? LIMIT ?";
    return s;
  }

  long long now_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now().time_since_epoch()).count();
  }
  long long expiry_ms() const { return now_ms() + options_.retention.count(); }

  static bool retry(const bulwark::error& e) { return detail::is_code(e, 1213) || e == errc::conflict; }

  std::string lock_sql(std::size_t n) const {
    std::string sql = "SELECT k, v FROM " + sql_->balances + " WHERE k IN (";
    for (std::size_t i = 0; i < n; ++i) sql += i ? ",?" : "?";
    return sql + ") ORDER BY k FOR UPDATE";
  }
  // `update` is what a duplicate row gets: "VALUES(v)" (set) or "v + VALUES(v)" (add).
  std::string upsert_sql(std::size_t n, const char* update) const {
    std::string sql = "INSERT INTO " + sql_->balances + " (k, v) VALUES ";
    for (std::size_t i = 0; i < n; ++i) sql += i ? ",(?,?)" : "(?,?)";
    return sql + " ON DUPLICATE KEY UPDATE v = " + update;
  }

  /// Prepares `sql`, binds `in` and executes it.
  static task<MYSQL_STMT*> run(connection& c, const std::string& sql, std::vector<MYSQL_BIND>& in) {
    BOOST_OUTCOME_CO_TRY(stmt, co_await c.prepare(sql));
    if (!in.empty() && mysql_stmt_bind_param(stmt, in.data())) co_return last_error(stmt);
    BOOST_OUTCOME_CO_TRY(co_await c.execute(stmt));
    co_return stmt;
  }

  /// A lease inside a fresh READ COMMITTED transaction.
  task<lease> begin() {
    BOOST_OUTCOME_CO_TRY(l, co_await pool_->acquire());
    BOOST_OUTCOME_CO_TRY(co_await l->run_ddl("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"));
    BOOST_OUTCOME_CO_TRY(co_await l->run_ddl("START TRANSACTION"));
    co_return std::move(l);
  }

  /// A failure inside a transaction: the connection is discarded, so the server rolls back.
  static bulwark::error fail_in_transaction(lease& l, bulwark::error e) {
    l->mark_broken();
    return e;
  }

  /// Locks the balance rows of `keys` (ascending) and returns their balances.
  task<std::map<std::string, amount, std::less<>>> lock_balances(connection& c, const std::vector<adjustment>& keys) {
    std::vector<unsigned long> lengths(keys.size());
    std::vector<MYSQL_BIND> in;
    in.reserve(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) in.push_back(detail::binder::bytes(keys[i].key, lengths[i]));
    const auto sql = lock_sql(keys.size());
    BOOST_OUTCOME_CO_TRY(stmt, co_await run(c, sql, in));
    unsigned long key_length = 0;
    my_bool key_null = 0;
    long long value = 0;
    MYSQL_BIND out[2] = {detail::binder::sized(key_length, key_null), detail::i64(value)};
    std::map<std::string, amount, std::less<>> found;
    BOOST_OUTCOME_CO_TRY(co_await detail::fetch_rows(c, stmt, out, [&]() -> result<void> {
      std::string k;
      BOOST_OUTCOME_TRY(bulwark::mysql::detail::fetch_bytes(stmt, 0, key_length, k));
      found.emplace(std::move(k), value);
      return ok();
    }));
    co_return found;
  }

  /// Writes judged adjustments (negated for a revert): rows that were locked get their new
  /// balance, keys that had no row get theirs added (a first credit that another transaction may
  /// be making too). One multi-row upsert for each kind present. Not `v = v + delta` for locked
  /// rows: MariaDB checks the CHECK constraint on the candidate row of an upsert, and a negative
  /// delta is not a valid balance.
  task<void> write_balances(connection& c, const std::map<std::string, amount, std::less<>>& current,
                            const std::vector<adjustment>& adjustments, bool negate) {
    for (int pass = 0; pass < 2; ++pass) {
      const bool locked = pass == 0;
      std::vector<const adjustment*> rows;
      for (const auto& a : adjustments) {
        if (current.contains(a.key) == locked) rows.push_back(&a);
      }
      if (rows.empty()) continue;
      const std::size_t n = rows.size();
      std::vector<unsigned long> lengths(n);
      std::vector<long long> values(n);
      std::vector<MYSQL_BIND> in;
      in.reserve(2 * n);
      for (std::size_t i = 0; i < n; ++i) {
        const amount delta = negate ? -rows[i]->delta : rows[i]->delta;
        values[i] = locked ? current.find(rows[i]->key)->second + delta : delta;
        in.push_back(detail::binder::bytes(rows[i]->key, lengths[i]));
        in.push_back(detail::i64(values[i]));
      }
      const auto sql = upsert_sql(n, locked ? "VALUES(v)" : "v + VALUES(v)");
      BOOST_OUTCOME_CO_TRY(co_await run(c, sql, in));
    }
    co_return ok();
  }

  /// Judges `adjustments` (negated for a revert) against the locked balances.
  static result<void> judge(const std::map<std::string, amount, std::less<>>& current,
                            const std::vector<adjustment>& adjustments, bool negate) {
    for (const auto& a : adjustments) {
      auto it = current.find(a.key);
      BOOST_OUTCOME_TRY(
          bulwark::detail::next_balance(a.key, it == current.end() ? 0 : it->second, negate ? -a.delta : a.delta));
    }
    return ok();
  }

  task<amount> add_locked(lease& l, const std::vector<adjustment>& one) {
    BOOST_OUTCOME_CO_TRY(current, co_await lock_balances(*l, one));
    auto it = current.find(one[0].key);
    const amount before = it == current.end() ? 0 : it->second;
    auto next = bulwark::detail::next_balance(one[0].key, before, one[0].delta);
    if (!next) {
      BOOST_OUTCOME_CO_TRY(co_await l->run_ddl("ROLLBACK"));
      co_return next.error();
    }
    BOOST_OUTCOME_CO_TRY(co_await write_balances(*l, current, one, false));
    BOOST_OUTCOME_CO_TRY(co_await l->run_ddl("COMMIT"));
    co_return next.value();
  }

  struct op_row {
    char state = 0;
    std::string body;
    long long expires_at = 0;
  };

  /// The op row, read (locking or not) on `c`; nullopt when absent.
  task<std::optional<op_row>> read_op(connection& c, const std::string& op_id, bool locked) {
    std::vector<unsigned long> lengths(1);
    std::vector<MYSQL_BIND> in{detail::binder::bytes(op_id, lengths[0])};
    BOOST_OUTCOME_CO_TRY(stmt, co_await run(c, locked ? sql_->read_op_locked : sql_->read_op, in));
    unsigned long state_length = 0, body_length = 0;
    my_bool state_null = 0, body_null = 0;
    long long expires = 0;
    MYSQL_BIND out[3] = {detail::binder::sized(state_length, state_null), detail::binder::sized(body_length, body_null),
                         detail::i64(expires)};
    std::optional<op_row> found;
    BOOST_OUTCOME_CO_TRY(co_await detail::fetch_rows(c, stmt, out, [&]() -> result<void> {
      op_row row;
      std::string state;
      BOOST_OUTCOME_TRY(bulwark::mysql::detail::fetch_bytes(stmt, 0, state_length, state));
      BOOST_OUTCOME_TRY(bulwark::mysql::detail::fetch_bytes(stmt, 1, body_length, row.body));
      row.state = state.empty() ? '?' : state[0];
      row.expires_at = expires;
      found = std::move(row);
      return ok();
    }));
    co_return found;
  }

  task<void> insert_op(connection& c, const std::string& op_id, char state, std::string_view body) {
    std::vector<unsigned long> lengths(3);
    const std::string state_text(1, state);
    long long expires = expiry_ms();
    std::vector<MYSQL_BIND> in{detail::binder::bytes(op_id, lengths[0]), detail::binder::bytes(state_text, lengths[1]),
                               detail::binder::bytes(body, lengths[2]), detail::i64(expires)};
    BOOST_OUTCOME_CO_TRY(co_await run(c, sql_->insert_op, in));
    co_return ok();
  }

  result<apply_outcome> answer_repeated(const std::string& op_id, char state) const {
    switch (state) {
    case 'a': return apply_outcome::already_applied;
    case 'd': return bulwark::detail::refused_before(op_id, ledger_errc::insufficient);
    case 'o': return bulwark::detail::refused_before(op_id, ledger_errc::over_limit);
    case 'r':
    case 't': return bulwark::detail::reverted_before(op_id);
    default: return bulwark::error(errc::protocol_error, "ledger operation row: unknown state");
    }
  }

  task<apply_outcome> apply_once(const std::string& op_id, const std::vector<adjustment>& sorted) {
    BOOST_OUTCOME_CO_TRY(l, co_await begin());
    auto current = co_await lock_balances(*l, sorted);
    if (!current) co_return fail_in_transaction(l, current.error());
    const auto verdict = judge(current.value(), sorted, false);
    const char state = verdict ? 'a' : verdict.error() == ledger_errc::over_limit ? 'o' : 'd';
    // Named: GCC 12 destroys a temporary of a co_await full-expression twice (a conditional's).
    const std::string body = verdict ? detail::encode_adjustments(sorted) : std::string();
    auto inserted = co_await insert_op(*l, op_id, state, body);
    if (!inserted) {
      if (!detail::is_code(inserted.error(), 1062)) co_return fail_in_transaction(l, inserted.error());
      // Seen before (its transaction has committed: the insert waited for its row lock).
      BOOST_OUTCOME_CO_TRY(co_await l->run_ddl("ROLLBACK"));
      BOOST_OUTCOME_CO_TRY(row, co_await read_op(*l, op_id, false));
      if (row && row->expires_at > now_ms()) co_return answer_repeated(op_id, row->state);
      // Expired (not yet purged) or purged meanwhile: forget it and run again.
      long long now = now_ms();
      std::vector<unsigned long> lengths(1);
      std::vector<MYSQL_BIND> in{detail::binder::bytes(op_id, lengths[0]), detail::i64(now)};
      BOOST_OUTCOME_CO_TRY(co_await run(*l, sql_->expire_op, in));
      co_return bulwark::error(errc::conflict, "operation row expired while applying: run again");
    }
    if (verdict) {
      auto added = co_await write_balances(*l, current.value(), sorted, false);
      if (!added) co_return fail_in_transaction(l, added.error());
    }
    auto committed = co_await l->run_ddl("COMMIT");
    if (!committed) co_return fail_in_transaction(l, committed.error());
    if (!verdict) co_return verdict.error();
    co_return apply_outcome::applied;
  }

  task<revert_outcome> revert_once(const std::string& op_id) {
    BOOST_OUTCOME_CO_TRY(l, co_await begin());
    auto row = co_await read_op(*l, op_id, false);
    if (!row) co_return fail_in_transaction(l, row.error());
    const long long now = now_ms();
    if (!row.value() || row.value()->expires_at <= now) {
      // Unknown (or forgotten): leave a tombstone.
      if (!row.value()) {
        auto inserted = co_await insert_op(*l, op_id, 't', "");
        if (!inserted) {
          if (!detail::is_code(inserted.error(), 1062)) co_return fail_in_transaction(l, inserted.error());
          BOOST_OUTCOME_CO_TRY(co_await l->run_ddl("ROLLBACK"));
          co_return bulwark::error(errc::conflict, "operation recorded while reverting: run again");
        }
      } else {
        long long expires = expiry_ms(), at = now;
        std::vector<unsigned long> lengths(1);
        std::vector<MYSQL_BIND> in{detail::i64(expires), detail::binder::bytes(op_id, lengths[0]), detail::i64(at)};
        auto updated = co_await run(*l, sql_->tombstone_over_expired, in);
        if (!updated) co_return fail_in_transaction(l, updated.error());
        if (mysql_stmt_affected_rows(updated.value()) == 0) {
          BOOST_OUTCOME_CO_TRY(co_await l->run_ddl("ROLLBACK"));
          co_return bulwark::error(errc::conflict, "operation changed while reverting: run again");
        }
      }
      auto committed = co_await l->run_ddl("COMMIT");
      if (!committed) co_return fail_in_transaction(l, committed.error());
      co_return revert_outcome::tombstoned;
    }
    const char state = row.value()->state;
    if (state != 'a') {
      BOOST_OUTCOME_CO_TRY(co_await l->run_ddl("ROLLBACK"));
      switch (state) {
      case 't': co_return revert_outcome::tombstoned;
      case 'r': co_return revert_outcome::already_undone;
      case 'd':
      case 'o': co_return revert_outcome::nothing_applied;
      default: co_return bulwark::error(errc::protocol_error, "ledger operation row: unknown state");
      }
    }
    auto adjustments = detail::decode_adjustments(row.value()->body);
    if (!adjustments) co_return fail_in_transaction(l, adjustments.error());
    // Balances first, then the op row: the order apply locks them in.
    auto current = co_await lock_balances(*l, adjustments.value());
    if (!current) co_return fail_in_transaction(l, current.error());
    auto locked = co_await read_op(*l, op_id, true);
    if (!locked) co_return fail_in_transaction(l, locked.error());
    if (!locked.value() || locked.value()->state != 'a') {
      BOOST_OUTCOME_CO_TRY(co_await l->run_ddl("ROLLBACK"));
      co_return bulwark::error(errc::conflict, "operation changed while reverting: run again");
    }
    if (auto verdict = judge(current.value(), adjustments.value(), true); !verdict) {
      BOOST_OUTCOME_CO_TRY(co_await l->run_ddl("ROLLBACK"));
      co_return verdict.error();
    }
    auto subtracted = co_await write_balances(*l, current.value(), adjustments.value(), true);
    if (!subtracted) co_return fail_in_transaction(l, subtracted.error());
    long long expires = expiry_ms();
    std::vector<unsigned long> lengths(1);
    std::vector<MYSQL_BIND> in{detail::i64(expires), detail::binder::bytes(op_id, lengths[0])};
    auto marked = co_await run(*l, sql_->mark_reverted, in);
    if (!marked) co_return fail_in_transaction(l, marked.error());
    auto committed = co_await l->run_ddl("COMMIT");
    if (!committed) co_return fail_in_transaction(l, committed.error());
    co_return revert_outcome::undone;
  }

  /// One purge batch when purge_interval has passed since the last; its failure is not the
  /// caller's (the next call tries again).
  asio::awaitable<void> maybe_purge() {
    const auto now = clock_.now();
    if (now < state_->next_purge) co_return;
    state_->next_purge = now + options_.purge_interval;
    auto purged = co_await purge_expired();
    (void)purged;
  }

  pool* pool_;
  std::shared_ptr<const statements> sql_;
  ledger_options options_;
  Clock clock_;
  std::shared_ptr<shared_state> state_;
};

/// The ledger on the coarse wall clock.
using ledger = basic_ledger<>;

} // namespace bulwark::mysql

static_assert(bulwark::ledger<bulwark::mysql::ledger>, "mysql::ledger must model bulwark::ledger");
