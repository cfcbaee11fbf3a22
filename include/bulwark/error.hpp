#pragma once
// The error model: bulwark::errc, its category, and bulwark::error (a code plus an optional
// human-readable detail).
//
// errc is an error *condition* enum, like std::errc: a backend keeps its native codes in its
// own category and maps them onto these conditions in default_error_condition(), so
//     ec == bulwark::errc::unavailable
// holds for a refused MySQL connection, a Redis reset and a Kafka transport error alike.
// bulwark::make_error_code(errc) makes a code in bulwark's own category for failures that
// have no native code (the in-memory models, the flows).
//
// Stable codes (never renumbered, only appended): errc_rows below is the one table of them
// (value, name, message); docs/errors.md shows the same rows and a test checks that it does.
//   1 not_found  2 conflict  3 unavailable  4 timeout  5 circuit_open  6 invalid_argument
//   7 rejected  8 too_large  9 protocol_error  10 cancelled  11 duplicate  12 declined
//
// `rejected` and `declined` are both refusals, told apart by who refuses and whether asking
// again can help. `rejected`: the work was refused before it was judged on its merits (a full
// queue or bulkhead, a component stopping, credentials refused); the same request may succeed
// later. `declined`: the request was understood and judged, and the domain's rules say no (not
// enough stock or credit, a precondition of the business that does not hold); asking again
// unchanged gets the same answer until the state changes. The word is the domain's own, as a
// card payment is declined. `conflict` stays the compare-and-set loss of a version.
//
// Every category (this one and each backend's) follows one pattern: an enum `<source>_errc` (or
// a library's own native numbers), a constexpr table of error_row from which the category's
// message() and default_error_condition() come, a category named after its source and returned
// by `<source>_category()` (this one: category()), and make_error_code().

#include <array>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace bulwark {

enum class errc : int {
  not_found = 1,
  conflict = 2,
  unavailable = 3,
  timeout = 4,
  circuit_open = 5,
  invalid_argument = 6,
  rejected = 7,
  too_large = 8,
  protocol_error = 9,
  cancelled = 10,
  duplicate = 11,
  declined = 12,
};

/// One code of a category: the single source of its message, of the bulwark condition it maps
/// onto and of its row in docs/errors.md (a test per category walks every row against the docs).
struct error_row {
  int value;
  /// The stable identifier ("not_found", "connection_closed", "ER_DUP_ENTRY").
  std::string_view name;
  /// The category's message; empty where the native library's own text is used (Kafka).
  std::string_view message;
  /// The condition the code compares equal to; errc{} when it maps onto none.
  errc condition;
};

/// The row of `value` in `rows`, or nullptr.
constexpr const error_row* find_row(std::span<const error_row> rows, int value) noexcept {
  for (const auto& row : rows) {
    if (row.value == value) return &row;
  }
  return nullptr;
}

/// bulwark's own codes, which are also the conditions every backend's codes map onto.
inline constexpr std::array<error_row, 12> errc_rows{{
    {1, "not_found", "not found", errc::not_found},
    {2, "conflict", "version conflict", errc::conflict},
    {3, "unavailable", "backend unavailable", errc::unavailable},
    {4, "timeout", "timed out", errc::timeout},
    {5, "circuit_open", "circuit open", errc::circuit_open},
    {6, "invalid_argument", "invalid argument", errc::invalid_argument},
    {7, "rejected", "rejected", errc::rejected},
    {8, "too_large", "too large", errc::too_large},
    {9, "protocol_error", "protocol error", errc::protocol_error},
    {10, "cancelled", "cancelled", errc::cancelled},
    {11, "duplicate", "duplicate", errc::duplicate},
    {12, "declined", "declined by the rules", errc::declined},
}};

/// The stable, machine-readable name of a code ("not_found", ...), or "unknown".
constexpr std::string_view to_string(errc e) noexcept {
  const auto* row = find_row(errc_rows, static_cast<int>(e));
  return row ? row->name : std::string_view("unknown");
}

inline std::error_condition make_error_condition(errc e) noexcept;

/// A category whose messages and conditions come from its table of error_row: every bulwark
/// category is one, and an application's own category can be too (docs/errors.md).
/// `native_message` gives the text of a code without a row or with an empty message (a
/// library's own text, e.g. librdkafka's). A code without a row maps onto no condition.
class table_category : public std::error_category {
public:
  using native_message_fn = std::string (*)(int);
  table_category(const char* name, std::span<const error_row> rows, native_message_fn native_message = nullptr) noexcept
      : name_(name), rows_(rows), native_message_(native_message) {}

  const char* name() const noexcept override { return name_; }
  std::string message(int value) const override {
    const auto* row = find_row(rows_, value);
    if (row && !row->message.empty()) return std::string(row->message);
    if (native_message_) return native_message_(value);
    return "unknown " + std::string(name_) + " error " + std::to_string(value);
  }
  std::error_condition default_error_condition(int value) const noexcept override {
    const auto* row = find_row(rows_, value);
    if (row && row->condition != errc{}) return make_error_condition(row->condition);
    return {value, *this};
  }
  std::span<const error_row> rows() const noexcept { return rows_; }

private:
  const char* name_;
  std::span<const error_row> rows_;
  native_message_fn native_message_;
};

/// The category of bulwark's own codes and of the conditions backends map onto ("bulwark").
inline const std::error_category& category() noexcept {
  static const table_category instance("bulwark", errc_rows);
  return instance;
}

inline std::error_condition make_error_condition(errc e) noexcept { return {static_cast<int>(e), category()}; }

/// A code in bulwark's category; compares equal to the condition of the same name.
inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), category()}; }

/// The bulwark condition a code maps onto, if any: errc{} (0) when it maps onto none.
inline errc condition_of(const std::error_code& ec) noexcept {
  const auto cond = ec.default_error_condition();
  if (cond.category() == category())
    return find_row(errc_rows, cond.value()) ? static_cast<errc>(cond.value()) : errc{};
  for (const auto& row : errc_rows) {
    if (ec == make_error_condition(row.condition)) return row.condition;
  }
  return errc{};
}

/// An error as the public API returns it: a code (bulwark's or a backend's native one) and an
/// optional detail message, e.g. the JSON parser's text for a decode error or the server's
/// message for a MySQL error. Copying shares the message; the empty state costs no allocation.
class error {
public:
  error() = default;
  error(std::error_code code) noexcept : code_(code) {} // NOLINT(google-explicit-constructor)
  error(errc e) noexcept : code_(make_error_code(e)) {} // NOLINT(google-explicit-constructor)
  error(std::error_code code, std::string detail)
      : code_(code), detail_(detail.empty() ? nullptr : std::make_shared<const std::string>(std::move(detail))) {}
  error(errc e, std::string detail) : error(make_error_code(e), std::move(detail)) {}

  const std::error_code& code() const noexcept { return code_; }
  /// The detail text, or empty.
  std::string_view detail() const noexcept { return detail_ ? std::string_view(*detail_) : std::string_view(); }
  /// The bulwark condition this error maps onto (errc{} when none).
  errc condition() const noexcept { return condition_of(code_); }
  /// "<category message>: <detail>", for logs and error bodies.
  std::string message() const {
    auto text = code_.message();
    if (detail_) {
      text += ": ";
      text += *detail_;
    }
    return text;
  }

  friend bool operator==(const error& a, const error& b) noexcept { return a.code_ == b.code_; }
  friend bool operator==(const error& a, errc e) noexcept { return a.code_ == make_error_condition(e); }
  friend bool operator==(const error& a, const std::error_code& b) noexcept { return a.code_ == b; }
  friend std::ostream& operator<<(std::ostream& os, const error& e) {
    return os << e.code_.category().name() << ':' << e.code_.value() << " (" << e.message() << ')';
  }

private:
  std::error_code code_;
  std::shared_ptr<const std::string> detail_;
};

/// Outcome's customisation point: lets result<T> treat bulwark::error like an error_code.
inline std::error_code make_error_code(const error& e) noexcept { return e.code(); }

} // namespace bulwark

template <> struct std::is_error_condition_enum<bulwark::errc> : std::true_type {};
