#pragma once
// Native error codes of the Hazelcast backend (category "bulwark.hazelcast"), each mapping onto
// a bulwark::errc condition so that `e == bulwark::errc::unavailable` holds.
//
// Stable codes:
//   value  name                  condition       when
//   1      all_members_down      unavailable     no member answered within the operation timeout
//   2      rest_group_disabled   protocol_error  a member that reports itself ready closed the
//                                                connection without answering a REST data request:
//                                                its REST DATA endpoint group is disabled (or the
//                                                path is unknown to it)
//   3      unexpected_status     protocol_error  a status the REST API does not document here (400, 500, ...)
//   4      bad_envelope          protocol_error  the stored value is not a bulwark cache envelope
//   5      bad_key               invalid_argument empty, too long, or not valid UTF-8 (the member
//                                                decodes keys as UTF-8 strings)
//   6      stopped               cancelled       the component was stopped

#include <bulwark/error.hpp>

#include <string>
#include <system_error>

namespace bulwark::hazelcast {

enum class hazelcast_errc {
  all_members_down = 1,
  rest_group_disabled = 2,
  unexpected_status = 3,
  bad_envelope = 4,
  bad_key = 5,
  stopped = 6,
};

namespace detail {
class hazelcast_category final : public std::error_category {
public:
  const char* name() const noexcept override { return "bulwark.hazelcast"; }
  std::string message(int v) const override {
    switch (static_cast<hazelcast_errc>(v)) {
    case hazelcast_errc::all_members_down: return "no Hazelcast member available";
    case hazelcast_errc::rest_group_disabled:
      return "Hazelcast member closed the connection without answering (REST DATA endpoint group disabled?)";
    case hazelcast_errc::unexpected_status: return "unexpected status from the Hazelcast REST API";
    case hazelcast_errc::bad_envelope: return "stored value is not a bulwark cache envelope";
    case hazelcast_errc::bad_key: return "key not storable through the Hazelcast REST API";
    case hazelcast_errc::stopped: return "Hazelcast component stopped";
    }
    return "unknown hazelcast error";
  }
  std::error_condition default_error_condition(int v) const noexcept override {
    switch (static_cast<hazelcast_errc>(v)) {
    case hazelcast_errc::all_members_down: return make_error_condition(errc::unavailable);
    case hazelcast_errc::rest_group_disabled:
    case hazelcast_errc::unexpected_status:
    case hazelcast_errc::bad_envelope: return make_error_condition(errc::protocol_error);
    case hazelcast_errc::bad_key: return make_error_condition(errc::invalid_argument);
    case hazelcast_errc::stopped: return make_error_condition(errc::cancelled);
    }
    return {v, *this};
  }
};
} // namespace detail

/// The category of hazelcast_errc codes.
inline const std::error_category& hazelcast_category() noexcept {
  static const detail::hazelcast_category instance;
  return instance;
}

inline std::error_code make_error_code(hazelcast_errc e) noexcept {
  return {static_cast<int>(e), hazelcast_category()};
}

} // namespace bulwark::hazelcast

template <> struct std::is_error_code_enum<bulwark::hazelcast::hazelcast_errc> : std::true_type {};
