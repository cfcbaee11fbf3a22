#pragma once
// Every text the contract (examples/channel-metadata/contract.md) fixes, each written once.
// Clients of the reference system match on these strings: change one only with the contract.
// The unit test checks each against the contract's text literally.

#include <string_view>

namespace channel_metadata::text {

// CMS error codes and their fixed messages.
inline constexpr std::string_view validation_code = "CMS-0001";
inline constexpr std::string_view timeout_code = "CMS-0002";
inline constexpr std::string_view timeout = "Timeout occurred";
inline constexpr std::string_view not_found_code = "CMS-0003";
inline constexpr std::string_view not_found = "Failed to find item";
inline constexpr std::string_view bad_request_code = "CMS-0004";
inline constexpr std::string_view json_code = "CMS-0007";
inline constexpr std::string_view malformed_json = "Malformed JSON request";
inline constexpr std::string_view field_mismatch = "JSON field mismatch or invalid data structure";
inline constexpr std::string_view unexpected_code = "CMS-0008";
/// Followed by the reason.
inline constexpr std::string_view unexpected_prefix = "An unexpected error occurred: ";

// CMS success texts.
inline constexpr std::string_view posted = "Data successfully posted";
inline constexpr std::string_view force_update_done = "Successfully updated the database with all cached metadata.";
/// Followed by the reason.
inline constexpr std::string_view force_update_failed_prefix = "Failed to update database: ";
inline constexpr std::string_view status_ok = "OK";
inline constexpr std::string_view cms_app_name = "Channel Metadata Store";

// CRS texts.
inline constexpr std::string_view trigger_code = "CRS-1000";
inline constexpr std::string_view trigger_accepted = "Triggering a DB-write retry for channel-metadata-store";
inline constexpr std::string_view downtime_failed_code = "CRS-0002";
inline constexpr std::string_view downtime_failed = "Failed to fetch downtime logs";
inline constexpr std::string_view crs_app_name = "cache-retry";

// Both services: missing or wrong credentials (the shape of the answer differs by route).
inline constexpr std::string_view unauthorized = "Invalid or missing credentials";

// Not fixed by the contract: its wording is ours ("a text saying the write is accepted and
// pending"; a 503 and its body are not specified beyond the status).
inline constexpr std::string_view accepted_pending =
    "Write accepted and pending: the database is unavailable, the document is cached and will be written when it "
    "recovers";
inline constexpr std::string_view not_kept_code = "CMS-0009";
inline constexpr std::string_view not_kept = "The write could not be kept anywhere and was not saved: ";

} // namespace channel_metadata::text
