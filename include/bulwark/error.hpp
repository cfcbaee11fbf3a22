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
// Stable codes (never renumbered; documented in docs/errors.md):
//   value  name              meaning
//   1      not_found         the key, topic or route does not exist
//   2      conflict          compare-and-set lost: the expected version is not the current one
//   3      unavailable       the backend cannot be reached or refused the connection
//   4      timeout           the operation did not complete within its deadline
//   5      circuit_open      a circuit breaker refused the call without trying
//   6      invalid_argument  the input is malformed (bad key, undecodable value, bad request)
//   7      rejected          the backend or a bulkhead refused the work (full, stopping, auth)
//   8      too_large         the input exceeds a configured size limit
//   9      protocol_error    the peer answered something that breaks the protocol
//   10     cancelled         the operation was cancelled or its component stopped
//   11     duplicate         the work was already done (idempotency key seen before)

#include <memory>
#include <ostream>
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
};

/// The stable, machine-readable name of a code ("not_found", ...), or "unknown".
constexpr std::string_view to_string(errc e) noexcept {
  switch (e) {
  case errc::not_found: return "not_found";
  case errc::conflict: return "conflict";
  case errc::unavailable: return "unavailable";
  case errc::timeout: return "timeout";
  case errc::circuit_open: return "circuit_open";
  case errc::invalid_argument: return "invalid_argument";
  case errc::rejected: return "rejected";
  case errc::too_large: return "too_large";
  case errc::protocol_error: return "protocol_error";
  case errc::cancelled: return "cancelled";
  case errc::duplicate: return "duplicate";
  }
  return "unknown";
}

namespace detail {
class errc_category final : public std::error_category {
public:
  const char* name() const noexcept override { return "bulwark"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
    case errc::not_found: return "not found";
    case errc::conflict: return "version conflict";
    case errc::unavailable: return "backend unavailable";
    case errc::timeout: return "timed out";
    case errc::circuit_open: return "circuit open";
    case errc::invalid_argument: return "invalid argument";
    case errc::rejected: return "rejected";
    case errc::too_large: return "too large";
    case errc::protocol_error: return "protocol error";
    case errc::cancelled: return "cancelled";
    case errc::duplicate: return "duplicate";
    }
    return "unknown bulwark error";
  }
};
} // namespace detail

/// The category of bulwark's own codes and of the conditions backends map onto.
inline const std::error_category& category() noexcept {
  static const detail::errc_category instance;
  return instance;
}

inline std::error_condition make_error_condition(errc e) noexcept { return {static_cast<int>(e), category()}; }

/// A code in bulwark's category; compares equal to the condition of the same name.
inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), category()}; }

/// The bulwark condition a code maps onto, if any: errc{} (0) when it maps onto none.
inline errc condition_of(const std::error_code& ec) noexcept {
  const auto cond = ec.default_error_condition();
  if (cond.category() == category()) return static_cast<errc>(cond.value());
  for (int v = 1; v <= static_cast<int>(errc::duplicate); ++v) {
    if (ec == make_error_condition(static_cast<errc>(v))) return static_cast<errc>(v);
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
