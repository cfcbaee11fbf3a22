#pragma once
// The domain: a fan's prediction of a match, the rules an input must pass, the id every
// accepted prediction gets, and the key it is logged under. Plain code, tested without servers
// (tests/examples/predictions.cpp).

#include <bulwark/result.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace predictions {

/// The tournament's phases as the input numbers them.
enum class phase : int { group_stage = 1, round_of_16 = 2, quarter_finals = 3, finals = 4 };

inline constexpr std::size_t max_team_bytes = 64; ///< a longer team name is refused
inline constexpr int max_goals = 99;              ///< a score's each side: 0..99

struct prediction {
  std::string team1;
  std::string team2;
  int goals1 = 0;
  int goals2 = 0;
  int phase = 1;

  std::string score() const { return std::to_string(goals1) + "-" + std::to_string(goals2); }
  friend bool operator==(const prediction&, const prediction&) = default;
};

/// One reason an input was refused: the field and what is wrong with it (stable codes).
struct violation {
  std::string field;
  std::string
      code; ///< missing, blank, not_a_string, too_long, same_team, bad_score, bad_phase, unknown_field, not_an_object
  std::string message;
};

/// Either the prediction or every reason it was refused.
struct validated {
  std::optional<prediction> value;
  std::vector<violation> violations;
};

namespace detail {

inline bool blank(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return false;
  return true;
}

inline std::string_view trimmed(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "N-M" with N, M in 0..max_goals, digits only (no sign, no spaces, at most two digits each).
inline bool parse_score(std::string_view s, int& a, int& b) {
  const auto dash = s.find('-');
  if (dash == std::string_view::npos) return false;
  auto number = [](std::string_view d, int& out) {
    if (d.empty() || d.size() > 2) return false;
    out = 0;
    for (char c : d) {
      if (c < '0' || c > '9') return false;
      out = out * 10 + (c - '0');
    }
    return out <= max_goals;
  };
  return number(s.substr(0, dash), a) && number(s.substr(dash + 1), b);
}

inline std::string team_rule(const nlohmann::json& body, const char* field, std::vector<violation>& out) {
  const auto it = body.find(field);
  if (it == body.end()) {
    out.push_back({field, "missing", std::string(field) + " is required"});
    return {};
  }
  if (!it->is_string()) {
    out.push_back({field, "not_a_string", std::string(field) + " must be a string"});
    return {};
  }
  const auto& s = it->get_ref<const std::string&>();
  if (blank(s)) {
    out.push_back({field, "blank", std::string(field) + " must not be blank"});
    return {};
  }
  if (s.size() > max_team_bytes) {
    out.push_back({field, "too_long", std::string(field) + " is longer than 64 bytes"});
    return {};
  }
  return std::string(trimmed(s));
}

} // namespace detail

/// Checks an input body against every rule and reports all the violations at once: team1 and
/// team2 present, strings, not blank, at most 64 bytes, not the same team (case-insensitive);
/// score a string "N-M" with N, M in 0..99; phase an integer in 1..4; no other fields; the body
/// a JSON object.
inline validated validate(std::string_view body) {
  validated r;
  const auto parsed = nlohmann::json::parse(body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    r.violations.push_back({"", "not_an_object", "the body must be a JSON object"});
    return r;
  }
  for (const auto& [name, value] : parsed.items()) {
    (void)value;
    if (name != "team1" && name != "team2" && name != "score" && name != "phase")
      r.violations.push_back({name, "unknown_field", "unknown field " + name});
  }
  prediction p;
  p.team1 = detail::team_rule(parsed, "team1", r.violations);
  p.team2 = detail::team_rule(parsed, "team2", r.violations);
  if (!p.team1.empty() && !p.team2.empty()) {
    auto lower = [](std::string s) {
      for (auto& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      return s;
    };
    if (lower(p.team1) == lower(p.team2))
      r.violations.push_back({"team2", "same_team", "team1 and team2 are the same team"});
  }
  if (const auto it = parsed.find("score"); it == parsed.end())
    r.violations.push_back({"score", "missing", "score is required"});
  else if (!it->is_string() || !detail::parse_score(it->get_ref<const std::string&>(), p.goals1, p.goals2))
    r.violations.push_back({"score", "bad_score", "score must be \"N-M\" with N and M in 0..99"});
  if (const auto it = parsed.find("phase"); it == parsed.end())
    r.violations.push_back({"phase", "missing", "phase is required"});
  else if (!it->is_number_integer() || it->get<long long>() < 1 || it->get<long long>() > 4)
    r.violations.push_back({"phase", "bad_phase", "phase must be an integer in 1..4"});
  else
    p.phase = it->get<int>();
  if (r.violations.empty()) r.value = std::move(p);
  return r;
}

/// The 400 body: {"error":"invalid_argument","message":...,"violations":[{field,code,message}]}.
inline nlohmann::json violations_json(const std::vector<violation>& v) {
  nlohmann::json list = nlohmann::json::array();
  std::string message;
  for (const auto& x : v) {
    list.push_back({{"field", x.field}, {"code", x.code}, {"message", x.message}});
    message += (message.empty() ? "" : "; ") + x.message;
  }
  return {{"error", "invalid_argument"}, {"message", message}, {"violations", list}};
}

/// What is published and logged: the prediction, its id and when it was accepted.
struct accepted {
  std::string id;
  std::int64_t received_at_ms = 0; ///< Unix time in ms at the API
  prediction value;
};

inline nlohmann::json to_json(const accepted& a) {
  return {{"id", a.id},
          {"receivedAt", a.received_at_ms},
          {"team1", a.value.team1},
          {"team2", a.value.team2},
          {"score", a.value.score()},
          {"phase", a.value.phase}};
}

/// Reads a published prediction back. Errors: errc::invalid_argument (not ours: dead-lettered).
inline bulwark::result<accepted> accepted_from_json(std::string_view text) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bulwark::error(bulwark::errc::invalid_argument, "not a JSON object");
  accepted a;
  try {
    a.id = j.at("id").get<std::string>();
    a.received_at_ms = j.at("receivedAt").get<std::int64_t>();
    a.value.team1 = j.at("team1").get<std::string>();
    a.value.team2 = j.at("team2").get<std::string>();
    a.value.phase = j.at("phase").get<int>();
    if (!detail::parse_score(j.at("score").get<std::string>(), a.value.goals1, a.value.goals2))
      return bulwark::error(bulwark::errc::invalid_argument, "bad score");
  } catch (const nlohmann::json::exception& e) {
    return bulwark::error(bulwark::errc::invalid_argument, e.what());
  }
  if (a.id.empty()) return bulwark::error(bulwark::errc::invalid_argument, "empty id");
  return a;
}

/// Message ids: 12 hex digits of Unix milliseconds, 8 of a random process tag, 8 of a counter
/// (28 characters). Unique across replicas and restarts (the tag), and ordered by time, so
/// the log key below lists the newest first.
class id_source {
public:
  id_source() : tag_(static_cast<std::uint32_t>(std::random_device{}())) {}
  explicit id_source(std::uint32_t tag) : tag_(tag) {}

  std::string next(std::int64_t now_ms) {
    std::string id(28, '0');
    put_hex(id, 0, 12, static_cast<std::uint64_t>(now_ms));
    put_hex(id, 12, 8, tag_);
    put_hex(id, 20, 8, counter_.fetch_add(1, std::memory_order_relaxed));
    return id;
  }

private:
  static void put_hex(std::string& s, std::size_t at, std::size_t digits, std::uint64_t v) {
    constexpr std::string_view hex = "0123456789abcdef";
    for (std::size_t i = digits; i-- > 0; v >>= 4) s[at + i] = hex[v & 0xf];
  }
  std::uint32_t tag_;
  std::atomic<std::uint32_t> counter_{0};
};

inline constexpr std::string_view log_prefix = "log/";

/// The logs store's key of `id`: each hex digit complemented, so that byte order (a
/// repository's scan order) is newest first.
inline std::string log_key(std::string_view id) {
  std::string key(log_prefix);
  for (char c : id) {
    const int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    key += v < 0 ? c : "fedcba9876543210"[v];
  }
  return key;
}

/// The log key after which every log accepted before `cutoff_ms` sorts, and no other: the key
/// of that millisecond's smallest id (complemented, the largest key of the millisecond). A scan
/// after it lists the oldest logs only.
inline std::string logs_before_key(std::int64_t cutoff_ms) {
  std::string id(28, '0');
  auto v = static_cast<std::uint64_t>(cutoff_ms < 0 ? 0 : cutoff_ms);
  for (std::size_t i = 12; i-- > 0; v >>= 4) id[i] = "0123456789abcdef"[v & 0xf];
  return log_key(id);
}

inline std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

} // namespace predictions
