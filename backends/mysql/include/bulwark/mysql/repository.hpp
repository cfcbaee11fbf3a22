#pragma once
// mysql::repository: bulwark::repository on one MySQL/MariaDB table per collection.
//
//   CREATE TABLE <collection> (k VARBINARY(255) NOT NULL PRIMARY KEY, v LONGBLOB NULL,
//                              version BIGINT UNSIGNED NOT NULL, updated_at TIMESTAMP(6) ...)
//
// - Prepared statements only; the table name is the one piece of SQL text that varies, and it
//   is checked against [A-Za-z0-9_]{1,64} before any statement is built.
// - Compare-and-set is one statement: `UPDATE ... SET version = LAST_INSERT_ID(version + 1)
//   ... WHERE k = ? AND version = ?`; the new version comes back as the statement's insert id,
//   so no second round trip and no transaction.
// - erase() keeps a tombstone (v = NULL, version kept), so the next put of that key continues
//   the sequence: versions stay monotonic across erase. Tombstones cost one row per erased key.
//   purge(prefix, after, limit) deletes a key range's rows for good (data never written again).
// - scan(prefix, after, limit) is a range scan on the primary key in byte order (VARBINARY
//   compares bytes): k >= prefix AND k < successor(prefix) AND k > after, LIMIT limit + 1 to
//   know whether another page follows.
// - Keys: 1..255 bytes, any bytes (NUL, quotes, UTF-8); longer or empty: errc::invalid_argument.
//   Values: up to max_value_size (default 16 MiB; the server's max_allowed_packet must allow
//   it): beyond, errc::too_large.

#include <bulwark/detail/key_rules.hpp>
#include <bulwark/mysql/connection.hpp>
#include <bulwark/mysql/error.hpp>
#include <bulwark/mysql/pool.hpp>
#include <bulwark/repository.hpp>
#include <bulwark/result.hpp>

#include <mysql.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bulwark::mysql {

/// The longest key a repository stores (the column is VARBINARY(255)).
inline constexpr std::size_t max_key_size = 255;

namespace detail {
inline bool valid_table_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

/// Parameter and result bindings that point into the caller's frame.
struct binder {
  static MYSQL_BIND bytes(std::string_view s, unsigned long& length) noexcept {
    static char empty = 0;
    MYSQL_BIND b;
    std::memset(&b, 0, sizeof b);
    b.buffer_type = MYSQL_TYPE_BLOB;
    b.buffer = s.empty() ? &empty : const_cast<char*>(s.data());
    length = static_cast<unsigned long>(s.size());
    b.buffer_length = length;
    b.length = &length;
    return b;
  }
  static MYSQL_BIND u64(unsigned long long& v) noexcept {
    MYSQL_BIND b;
    std::memset(&b, 0, sizeof b);
    b.buffer_type = MYSQL_TYPE_LONGLONG;
    b.buffer = &v;
    b.is_unsigned = 1;
    return b;
  }
  /// A zero-length result binding: the fetch reports the length, fetch_column copies.
  static MYSQL_BIND sized(unsigned long& length, my_bool& is_null) noexcept {
    MYSQL_BIND b;
    std::memset(&b, 0, sizeof b);
    b.buffer_type = MYSQL_TYPE_BLOB;
    b.length = &length;
    b.is_null = &is_null;
    return b;
  }
};

inline result<void> fetch_bytes(MYSQL_STMT* stmt, unsigned int column, unsigned long length, std::string& out) {
  out.resize(length);
  if (length == 0) return ok();
  MYSQL_BIND b;
  std::memset(&b, 0, sizeof b);
  b.buffer_type = MYSQL_TYPE_BLOB;
  b.buffer = out.data();
  b.buffer_length = length;
  unsigned long got = 0;
  b.length = &got;
  if (mysql_stmt_fetch_column(stmt, &b, column, 0) != 0) return last_error(stmt);
  return ok();
}
} // namespace detail

/// Creates the collection's table when it is missing (idempotent). Errors: invalid_argument
/// for a bad name, the pool's and the server's errors.
inline task<void> migrate(pool& p, std::string_view collection) {
  if (!detail::valid_table_name(collection)) {
    co_return bulwark::error(errc::invalid_argument, "mysql collection name must match [A-Za-z0-9_]{1,64}");
  }
  BOOST_OUTCOME_CO_TRY(l, co_await p.acquire());
  const std::string sql = "CREATE TABLE IF NOT EXISTS `" + std::string(collection) +
                          "` (k VARBINARY(255) NOT NULL PRIMARY KEY, v LONGBLOB NULL,"
                          " version BIGINT UNSIGNED NOT NULL,"
                          " updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB";
  co_return co_await l->run_ddl(sql);
}

namespace detail {

/// Binds the result buffers and calls on_row for every row until the result set ends.
/// A failure part way leaves the protocol mid-result: the connection is then discarded. The
/// repository and the ledger read their rows with it.
template <class OnRow> task<void> fetch_rows(connection& c, MYSQL_STMT* stmt, MYSQL_BIND* out, OnRow on_row) {
  if (mysql_stmt_bind_result(stmt, out)) {
    c.mark_broken();
    co_return last_error(stmt);
  }
  for (;;) {
    auto rc = co_await c.fetch(stmt);
    if (!rc) {
      c.mark_broken();
      co_return rc.error();
    }
    if (rc.value() == MYSQL_NO_DATA) co_return ok();
    if (auto r = on_row(); !r) {
      c.mark_broken();
      co_return r.error();
    }
  }
}

} // namespace detail

/// The repository concept on a MySQL table. Cheap to copy the handle around: it refers to the
/// pool, which must outlive it. Use from the pool's executor.
class repository {
public:
  /// Validates the collection name, creates its table when missing and returns the repository.
  static task<repository> open(pool& p, std::string_view collection, std::size_t max_value_size = 16u << 20) {
    BOOST_OUTCOME_CO_TRY(co_await migrate(p, collection));
    co_return repository(p, std::string(collection), max_value_size);
  }

  /// The table this repository stores into.
  const std::string& collection() const noexcept { return sql_->table; }

  /// The current value and version of key, or nullopt. One round trip.
  task<std::optional<versioned>> get(std::string_view key_view) {
    // Owned: the key is bound after the first suspension (acquire), and a call abandoned at its
    // deadline runs on after its caller's key is gone.
    const std::string key(key_view);
    BOOST_OUTCOME_CO_TRY(check_key(key));
    BOOST_OUTCOME_CO_TRY(l, co_await pool_->acquire());
    BOOST_OUTCOME_CO_TRY(stmt, co_await l->prepare(sql_->get));
    unsigned long key_length = 0;
    MYSQL_BIND in[1] = {detail::binder::bytes(key, key_length)};
    if (mysql_stmt_bind_param(stmt, in)) co_return last_error(stmt);
    BOOST_OUTCOME_CO_TRY(co_await l->execute(stmt));
    unsigned long value_length = 0;
    my_bool value_null = 0, version_null = 0;
    unsigned long long version = 0;
    MYSQL_BIND out[2] = {detail::binder::sized(value_length, value_null), detail::binder::u64(version)};
    out[1].is_null = &version_null;
    std::optional<versioned> found;
    BOOST_OUTCOME_CO_TRY(co_await detail::fetch_rows(*l, stmt, out, [&]() -> result<void> {
      versioned v;
      v.version = version;
      BOOST_OUTCOME_TRY(detail::fetch_bytes(stmt, 0, value_length, v.value));
      found = std::move(v);
      return ok();
    }));
    co_return found;
  }

  /// Stores value under key and returns its new version. expected: nullopt = unconditional,
  /// no_version = the key must be absent, n = the current version must be n; otherwise
  /// errc::conflict. One statement, one round trip.
  task<version_t> put(std::string_view key_view, std::string value, std::optional<version_t> expected) {
    const std::string key(key_view); // owned, as in get
    BOOST_OUTCOME_CO_TRY(check_key(key));
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_value_size(value.size(), max_value_size_));
    BOOST_OUTCOME_CO_TRY(l, co_await pool_->acquire());
    unsigned long key_length = 0, value_length = 0;
    unsigned long long want = expected.value_or(0);
    MYSQL_STMT* stmt = nullptr;
    if (!expected || *expected == no_version) {
      BOOST_OUTCOME_CO_TRY(prepared, co_await l->prepare(expected ? sql_->insert_absent : sql_->upsert));
      stmt = prepared;
      MYSQL_BIND in[2] = {detail::binder::bytes(key, key_length), detail::binder::bytes(value, value_length)};
      if (mysql_stmt_bind_param(stmt, in)) co_return last_error(stmt);
      BOOST_OUTCOME_CO_TRY(co_await l->execute(stmt));
    } else {
      BOOST_OUTCOME_CO_TRY(prepared, co_await l->prepare(sql_->compare_and_set));
      stmt = prepared;
      MYSQL_BIND in[3] = {detail::binder::bytes(value, value_length), detail::binder::bytes(key, key_length),
                          detail::binder::u64(want)};
      if (mysql_stmt_bind_param(stmt, in)) co_return last_error(stmt);
      BOOST_OUTCOME_CO_TRY(co_await l->execute(stmt));
    }
    // 1: inserted, 2: updated by ON DUPLICATE KEY, 0: the condition did not hold.
    if (mysql_stmt_affected_rows(stmt) == 0) {
      co_return bulwark::error(errc::conflict, expected && *expected == no_version
                                                   ? "key exists"
                                                   : "expected version " + std::to_string(want));
    }
    co_return static_cast<version_t>(mysql_stmt_insert_id(stmt));
  }

  /// The most items one statement of put_absent_many() writes.
  static constexpr std::size_t max_rows_per_statement = 256;

  /// Stores each (key, value) whose key is absent (or erased), as put(key, value, no_version)
  /// does, in one multi-row INSERT per max_rows_per_statement items: one round trip and one
  /// commit for all of them instead of one each. A key already present keeps its value and
  /// version without an error (where put answers conflict), and a key given twice is stored once
  /// with its first value: the same items written again change nothing, as an at-least-once
  /// consumer needs. Not part of the repository concept (a batch write of this adapter's).
  /// Errors: invalid_argument / too_large for a bad key or value (checked before anything is
  /// written), the pool's and the server's. Each statement is atomic; beyond
  /// max_rows_per_statement items a failure may leave the earlier statements applied. Statements
  /// exist for 1, 2, 4, .. 256 rows (a few prepared per connection, not one per count): a run of
  /// n items repeats its last item up to the next of those sizes, a no-op by the rule above.
  task<void> put_absent_many(std::vector<std::pair<std::string, std::string>> items) {
    for (const auto& [key, value] : items) {
      BOOST_OUTCOME_CO_TRY(check_key(key));
      BOOST_OUTCOME_CO_TRY(bulwark::detail::check_value_size(value.size(), max_value_size_));
    }
    if (items.empty()) co_return ok();
    BOOST_OUTCOME_CO_TRY(l, co_await pool_->acquire());
    std::vector<unsigned long> lengths;
    std::vector<MYSQL_BIND> in;
    for (std::size_t first = 0; first < items.size(); first += max_rows_per_statement) {
      const std::size_t n = std::min(max_rows_per_statement, items.size() - first);
      std::size_t shape = 0;
      while ((std::size_t{1} << shape) < n) ++shape;
      const std::size_t rows = std::size_t{1} << shape;
      BOOST_OUTCOME_CO_TRY(stmt, co_await l->prepare(sql_->insert_absent_rows[shape]));
      lengths.assign(2 * rows, 0);
      in.resize(2 * rows);
      for (std::size_t r = 0; r < rows; ++r) {
        const auto& [key, value] = items[first + std::min(r, n - 1)];
        in[2 * r] = detail::binder::bytes(key, lengths[2 * r]);
        in[2 * r + 1] = detail::binder::bytes(value, lengths[2 * r + 1]);
      }
      if (mysql_stmt_bind_param(stmt, in.data())) co_return last_error(stmt);
      BOOST_OUTCOME_CO_TRY(co_await l->execute(stmt));
    }
    co_return ok();
  }

  /// Removes key (keeping a tombstone so versions stay monotonic); true when it existed.
  task<bool> erase(std::string_view key_view) {
    const std::string key(key_view); // owned, as in get
    BOOST_OUTCOME_CO_TRY(check_key(key));
    BOOST_OUTCOME_CO_TRY(l, co_await pool_->acquire());
    BOOST_OUTCOME_CO_TRY(stmt, co_await l->prepare(sql_->erase));
    unsigned long key_length = 0;
    MYSQL_BIND in[1] = {detail::binder::bytes(key, key_length)};
    if (mysql_stmt_bind_param(stmt, in)) co_return last_error(stmt);
    BOOST_OUTCOME_CO_TRY(co_await l->execute(stmt));
    co_return mysql_stmt_affected_rows(stmt) > 0;
  }

  /// Up to limit entries with key starting with prefix and greater than after, ascending by
  /// bytes; page.next is set when more may follow. One round trip, an index range scan.
  task<scan_page> scan(std::string_view prefix_view, std::string_view after_view, std::size_t limit) {
    key_range range(prefix_view, after_view, static_cast<unsigned long long>(limit) + 1); // owned, as in get
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_scan_limit(limit));
    scan_page page;
    // No key is longer than 255 bytes, so a longer prefix matches nothing.
    if (range.prefix.size() > max_key_size) co_return page;
    BOOST_OUTCOME_CO_TRY(l, co_await pool_->acquire());
    BOOST_OUTCOME_CO_TRY(stmt, co_await l->prepare(range.upper ? sql_->scan_bounded : sql_->scan_open));
    BOOST_OUTCOME_CO_TRY(range.bind(stmt));
    BOOST_OUTCOME_CO_TRY(co_await l->execute(stmt));
    unsigned long key_length = 0, value_length = 0;
    my_bool key_null = 0, value_null = 0, version_null = 0;
    unsigned long long version = 0;
    MYSQL_BIND out[3] = {detail::binder::sized(key_length, key_null), detail::binder::sized(value_length, value_null),
                         detail::binder::u64(version)};
    out[2].is_null = &version_null;
    bool more = false;
    BOOST_OUTCOME_CO_TRY(co_await detail::fetch_rows(*l, stmt, out, [&]() -> result<void> {
      if (page.entries.size() == limit) {
        more = true;
        return ok();
      }
      entry e;
      e.version = version;
      BOOST_OUTCOME_TRY(detail::fetch_bytes(stmt, 0, key_length, e.key));
      BOOST_OUTCOME_TRY(detail::fetch_bytes(stmt, 1, value_length, e.value));
      page.entries.push_back(std::move(e));
      return ok();
    }));
    if (more) page.next = page.entries.back().key;
    co_return page;
  }

  /// Removes for good up to limit keys starting with prefix and greater than after, lowest
  /// first, rows with a value and tombstones alike (bulwark::purgeable_repository); how many.
  /// A key written again afterwards starts its versions over at 1. One round trip, an index
  /// range delete: `DELETE ... WHERE k >= prefix AND k > after AND k < successor(prefix)
  /// ORDER BY k LIMIT limit`.
  task<std::size_t> purge(std::string_view prefix_view, std::string_view after_view, std::size_t limit) {
    key_range range(prefix_view, after_view, limit); // owned, as in get
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_scan_limit(limit));
    if (range.prefix.size() > max_key_size) co_return std::size_t{0};
    BOOST_OUTCOME_CO_TRY(l, co_await pool_->acquire());
    BOOST_OUTCOME_CO_TRY(stmt, co_await l->prepare(range.upper ? sql_->purge_bounded : sql_->purge_open));
    BOOST_OUTCOME_CO_TRY(range.bind(stmt));
    BOOST_OUTCOME_CO_TRY(co_await l->execute(stmt));
    co_return static_cast<std::size_t>(mysql_stmt_affected_rows(stmt));
  }

private:
  // The parameters of a key-range statement (scan, purge): k >= prefix AND k > after
  // [AND k < upper] ... LIMIT rows. Owns its bytes; bind() points a statement at them, so the
  // range must outlive the statement's execution.
  struct key_range {
    std::string prefix, after;
    std::optional<std::string> upper;
    unsigned long long rows;
    unsigned long prefix_length = 0, after_length = 0, upper_length = 0;

    key_range(std::string_view p, std::string_view a, unsigned long long r)
        : prefix(p), after(a), upper(bulwark::detail::prefix_successor(prefix)), rows(r) {}

    result<void> bind(MYSQL_STMT* stmt) {
      MYSQL_BIND in[4] = {
          detail::binder::bytes(prefix, prefix_length), detail::binder::bytes(after, after_length), {}, {}};
      if (upper) {
        in[2] = detail::binder::bytes(*upper, upper_length);
        in[3] = detail::binder::u64(rows);
      } else {
        in[2] = detail::binder::u64(rows);
      }
      if (mysql_stmt_bind_param(stmt, in)) return last_error(stmt); // copies `in`
      return ok();
    }
  };

  struct statements {
    std::string table, get, upsert, insert_absent, compare_and_set, erase, scan_bounded, scan_open, purge_bounded,
        purge_open;
    /// put_absent_many's statements: [s] inserts 2^s rows (so [0] is insert_absent).
    std::array<std::string, 9> insert_absent_rows;
  };
  static_assert(std::size_t{1} << (std::tuple_size_v<decltype(statements::insert_absent_rows)> - 1) ==
                    max_rows_per_statement,
                "one statement per power of two up to max_rows_per_statement");

  repository(pool& p, std::string table, std::size_t max_value_size)
      : pool_(&p), sql_(make_statements(std::move(table))), max_value_size_(max_value_size) {}

  static std::shared_ptr<const statements> make_statements(std::string table) {
    auto sql_ = std::make_shared<statements>();
    const std::string t = "`" + table + "`";
    sql_->table = std::move(table);
    sql_->get = "SELECT v, version FROM " + t + " WHERE k = ? AND v IS NOT NULL";
    sql_->upsert = "INSERT INTO " + t +
                   " (k, v, version, updated_at) VALUES (?, ?, LAST_INSERT_ID(1), NOW(6))"
                   " ON DUPLICATE KEY UPDATE version = LAST_INSERT_ID(version + 1), v = VALUES(v),"
                   " updated_at = VALUES(updated_at)";
    // Over a tombstone (v IS NULL) the key counts as absent and its sequence continues.
    // A row already holding a value (also one inserted earlier by the same statement) keeps it.
    const std::string row = "(?, ?, LAST_INSERT_ID(1), NOW(6))";
    const std::string keep_present =
        " ON DUPLICATE KEY UPDATE version = IF(v IS NULL, LAST_INSERT_ID(version + 1), version),"
        " updated_at = IF(v IS NULL, VALUES(updated_at), updated_at),"
        " v = IF(v IS NULL, VALUES(v), v)";
    std::string rows = row;
    for (auto& sql : sql_->insert_absent_rows) {
      sql = "INSERT INTO " + t + " (k, v, version, updated_at) VALUES " + rows + keep_present;
      rows += "," + rows;
    }
    sql_->insert_absent = sql_->insert_absent_rows[0];
    sql_->compare_and_set = "UPDATE " + t +
                            " SET version = LAST_INSERT_ID(version + 1), v = ?, updated_at = NOW(6)"
                            " WHERE k = ? AND version = ? AND v IS NOT NULL";
    sql_->erase = "UPDATE " + t + " SET v = NULL, updated_at = NOW(6) WHERE k = ? AND v IS NOT NULL";
    sql_->scan_bounded =
        "SELECT k, v, version FROM " + t + " WHERE k >= ? AND k > ? AND k < ? AND v IS NOT NULL ORDER BY k LIMIT ?";
    sql_->scan_open = "SELECT k, v, version FROM " + t + " WHERE k >= ? AND k > ? AND v IS NOT NULL ORDER BY k LIMIT ?";
    sql_->purge_bounded = "DELETE FROM " + t + " WHERE k >= ? AND k > ? AND k < ? ORDER BY k LIMIT ?";
    sql_->purge_open = "DELETE FROM " + t + " WHERE k >= ? AND k > ? ORDER BY k LIMIT ?";
    return sql_;
  }

  static result<void> check_key(std::string_view key) { return bulwark::detail::check_key(key, max_key_size); }

  pool* pool_;
  std::shared_ptr<const statements> sql_;
  std::size_t max_value_size_;
};

} // namespace bulwark::mysql

static_assert(bulwark::repository<bulwark::mysql::repository>, "mysql::repository must model bulwark::repository");
static_assert(bulwark::purgeable_repository<bulwark::mysql::repository>,
              "mysql::repository must model bulwark::purgeable_repository");
