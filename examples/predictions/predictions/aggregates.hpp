#pragma once
// Live aggregates: per match the count of each predicted score, per phase, and the total,
// counted once per message id however often the bus redelivers it.
//
// The shape every model answers (GET /live):
//   {"total": N, "phases": {"1": n, ..}, "matches": [{"team1", "team2", "total", "scores": {"2-1": n}}]}
// Models: memory_aggregates (here: one process, nothing survives a restart) and
// redis_aggregates (real_mode.hpp: one Lua script per batch, atomic on the server).
//
// Retention: an id is remembered for `retention` (24 h by default, longer than any redelivery
// of the bus), then forgotten; the counters themselves are the aggregates and are kept.

#include <predictions/prediction.hpp>

#include <bulwark/result.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <span>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace predictions {

/// The aggregates in the order the pages show them: matches by their total, then by name.
inline nlohmann::json live_json(std::int64_t total, const std::map<int, std::int64_t>& phases,
                                std::vector<nlohmann::json> matches) {
  nlohmann::json p = nlohmann::json::object();
  for (const auto& [ph, n] : phases) p[std::to_string(ph)] = n;
  std::stable_sort(matches.begin(), matches.end(), [](const nlohmann::json& a, const nlohmann::json& b) {
    if (a["total"] != b["total"]) return a["total"].get<std::int64_t>() > b["total"].get<std::int64_t>();
    return std::tie(a["team1"].get_ref<const std::string&>(), a["team2"].get_ref<const std::string&>()) <
           std::tie(b["team1"].get_ref<const std::string&>(), b["team2"].get_ref<const std::string&>());
  });
  return {{"total", total}, {"phases", p}, {"matches", std::move(matches)}};
}

class memory_aggregates {
public:
  explicit memory_aggregates(std::chrono::milliseconds retention = std::chrono::hours(24)) : retention_(retention) {}

  /// Counts each of `batch` unless its id was counted before (also earlier in the same batch):
  /// [i] true when batch[i] was counted now.
  bulwark::task<std::vector<bool>> record_batch(std::span<const accepted> batch) {
    const auto now = std::chrono::steady_clock::now();
    std::vector<bool> counted;
    counted.reserve(batch.size());
    for (const auto& a : batch) counted.push_back(record_now(a, now));
    co_return counted;
  }

  /// Counts `a` unless its id was counted before. true: counted now.

  bool record_now(const accepted& a, std::chrono::steady_clock::time_point now) {
    while (!order_.empty() && now - order_.front().first > retention_) {
      seen_.erase(order_.front().second);
      order_.pop_front();
    }
    if (!seen_.insert(a.id).second) return false;
    order_.emplace_back(now, a.id);
    ++total_;
    ++phases_[a.value.phase];
    auto& m = matches_[{a.value.team1, a.value.team2}];
    ++m.total;
    ++m.scores[a.value.score()];
    return true;
  }

  bulwark::task<nlohmann::json> snapshot() { co_return snapshot_now(); }

  nlohmann::json snapshot_now() const {
    std::vector<nlohmann::json> matches;
    matches.reserve(matches_.size());
    for (const auto& [teams, m] : matches_) {
      nlohmann::json scores = nlohmann::json::object();
      for (const auto& [s, n] : m.scores) scores[s] = n;
      matches.push_back({{"team1", teams.first}, {"team2", teams.second}, {"total", m.total}, {"scores", scores}});
    }
    return live_json(total_, phases_, std::move(matches));
  }

  /// Ids remembered right now (bounded by the rate times the retention).
  std::size_t remembered() const noexcept { return seen_.size(); }

private:
  struct match {
    std::int64_t total = 0;
    std::map<std::string, std::int64_t> scores;
  };
  std::chrono::milliseconds retention_;
  std::unordered_set<std::string> seen_;
  std::deque<std::pair<std::chrono::steady_clock::time_point, std::string>> order_;
  std::int64_t total_ = 0;
  std::map<int, std::int64_t> phases_;
  std::map<std::pair<std::string, std::string>, match> matches_;
};

} // namespace predictions
