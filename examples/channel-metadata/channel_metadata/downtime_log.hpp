#pragma once
// CRS's `GET /get-downtime-logs` body: [{"id": 1, "downtimeTimestamp": "2024-09-17 12:00:00"}, ...],
// UTC, newest last.

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace channel_metadata {

/// One database outage as the log shows it: its id and when its first failure was seen.
/// (The services map issue 11's outage_window onto this.)
struct downtime_entry {
  std::int64_t id = 0;
  std::chrono::system_clock::time_point first_failure;
  bool operator==(const downtime_entry&) const = default;
};

/// "YYYY-MM-DD HH:MM:SS" in UTC, seconds truncated toward the past; independent of the process's
/// time zone (no localtime/gmtime: civil date from the day count, H. Hinnant's algorithm).
inline std::string format_utc(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto secs = floor<seconds>(t);
  const auto day = floor<days>(secs);
  const auto of_day = secs - day;
  const year_month_day ymd{day};
  const hh_mm_ss hms{of_day};
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u %02d:%02d:%02d", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()));
  return buf;
}

/// The downtime-log JSON array, oldest first (newest last), ties in id order.
/// Cost: a sort of the entries.
inline nlohmann::ordered_json downtime_log_json(std::vector<downtime_entry> entries) {
  std::sort(entries.begin(), entries.end(), [](const downtime_entry& a, const downtime_entry& b) {
    return a.first_failure != b.first_failure ? a.first_failure < b.first_failure : a.id < b.id;
  });
  auto out = nlohmann::ordered_json::array();
  for (const auto& e : entries) out.push_back({{"id", e.id}, {"downtimeTimestamp", format_utc(e.first_failure)}});
  return out;
}

} // namespace channel_metadata
