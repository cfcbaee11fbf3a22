#pragma once
// The Hazelcast backend's native codes (hazelcast_errc, category "hazelcast") and the bulwark
// conditions they map onto, so that `e == bulwark::errc::unavailable` holds. The one table of
// them is hazelcast_errc_rows (value, name, message, condition); docs/errors.md shows the same
// rows and a test checks that it does. Never renumbered, only appended.
//
// When each is produced:
//   all_members_down     no member answered within the operation timeout
//   rest_group_disabled  a member that reports itself ready closed the connection without
//                        answering a REST data request: its REST DATA endpoint group is
//                        disabled (or the path is unknown to it)
//   unexpected_status    a status the REST API does not document here (400, 500, ...)
//   bad_envelope         the stored value is not a bulwark cache envelope
//   bad_key              empty, too long, or not valid UTF-8 (the member decodes keys as UTF-8)
//   stopped              the component was stopped

#include <bulwark/error.hpp>

#include <array>
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

inline constexpr std::array<error_row, 6> hazelcast_errc_rows{{
    {1, "all_members_down", "no Hazelcast member available", errc::unavailable},
    {2, "rest_group_disabled",
     "Hazelcast member closed the connection without answering (REST DATA endpoint group disabled?)",
     errc::protocol_error},
    {3, "unexpected_status", "unexpected status from the Hazelcast REST API", errc::protocol_error},
    {4, "bad_envelope", "stored value is not a bulwark cache envelope", errc::protocol_error},
    {5, "bad_key", "key not storable through the Hazelcast REST API", errc::invalid_argument},
    {6, "stopped", "Hazelcast component stopped", errc::cancelled},
}};

/// The category of hazelcast_errc codes ("hazelcast").
inline const std::error_category& hazelcast_category() noexcept {
  static const bulwark::table_category instance("hazelcast", hazelcast_errc_rows);
  return instance;
}

inline std::error_code make_error_code(hazelcast_errc e) noexcept {
  return {static_cast<int>(e), hazelcast_category()};
}

} // namespace bulwark::hazelcast

template <> struct std::is_error_code_enum<bulwark::hazelcast::hazelcast_errc> : std::true_type {};
