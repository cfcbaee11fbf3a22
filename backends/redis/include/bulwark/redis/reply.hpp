#pragma once
// A Redis reply, copied out of hiredis's reply object (which hiredis frees after the callback).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::redis {

// GCC 12 at -O2/-O3 reports a false -Wmaybe-uninitialized in reply's implicit move constructor
// when Outcome moves a result<reply> holding an error (the value branch is never taken).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
/// One RESP2 reply. An error reply at the top level never reaches callers as a reply: it
/// becomes a bulwark::error in the redis category; inside an array it stays kind::error.
struct reply {
  enum class kind : std::uint8_t { nil, string, integer, array, status, error };

  kind type = kind::nil;
  long long integer = 0;
  std::string str;             ///< string, status and error replies
  std::vector<reply> elements; ///< array replies

  bool is_nil() const noexcept { return type == kind::nil; }
  /// The bytes of a string or status reply, nullopt otherwise.
  std::optional<std::string_view> text() const noexcept {
    if (type == kind::string || type == kind::status) return std::string_view(str);
    return std::nullopt;
  }
  /// The value of an integer reply, nullopt otherwise.
  std::optional<long long> as_integer() const noexcept {
    if (type == kind::integer) return integer;
    return std::nullopt;
  }
};
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

} // namespace bulwark::redis
