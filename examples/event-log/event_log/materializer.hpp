#pragma once
// The materializer's snapshots and the command status, in one repository (memory, or Redis in
// real mode) that the query API reads:
//
//   snap:<base>:<id>  {"id","contentType","version","deleted","fields":{...}}; a delete leaves a
//                     tombstone, so a redelivered older event is still recognised as old
//   status:<cid>      {"status":"accepted"|"applied"|"rejected", "id", "version" | "reason"}
//
// apply() is idempotent on the aggregate's version: an event at or below the snapshot's version
// is a duplicate. One above the next (the snapshot was lost, or rebuilt from an older log) is
// filled in from the event store first. Every write is a compare-and-set on the snapshot's
// repository version, so a live apply and a rebuild never overwrite each other's newer state.

#include <event_log/event_store.hpp>
#include <event_log/model.hpp>

#include <bulwark/repository.hpp>

#include <map>
#include <string>
#include <vector>

namespace event_log {

enum class apply_outcome { applied, duplicate };

/// The snapshot after `events` (in version order, the first one a create or following `from`).
inline json fold(json from, const std::vector<json>& events) {
  for (const auto& e : events) {
    const std::string type = e["type"].template get<std::string>();
    from = json{{"id", e["id"]},
                {"contentType", e["contentType"]},
                {"version", e["version"]},
                {"deleted", type.ends_with("Deleted")},
                {"fields", type.ends_with("Deleted") ? json::object() : e["body"]}};
  }
  return from;
}

/// Every snapshot (key -> JSON) of `snapshots`, for comparing the live state with a rebuild.
template <class Repository> bulwark::task<std::map<std::string, json>> all_snapshots(Repository& snapshots) {
  std::map<std::string, json> out;
  std::string after;
  while (true) {
    auto page = co_await snapshots.scan("snap:", after, 256);
    if (!page) co_return page.error();
    for (auto& e : page.value().entries) out.emplace(e.key, json::parse(e.value));
    if (!page.value().next) break;
    after = *page.value().next;
  }
  co_return out;
}

template <class Repository, class Store>
requires bulwark::repository<Repository>
class materializer {
public:
  materializer(const settings& s, Repository& snapshots, event_store<Store>& store)
      : settings_(s), snapshots_(snapshots), store_(store) {}

  static std::string snapshot_key(std::string_view base, std::string_view id) {
    return "snap:" + std::string(base) + ":" + std::string(id);
  }

  /// Folds one event into its snapshot and marks its command applied.
  bulwark::task<apply_outcome> apply(const json& event) {
    const auto* type = settings_.by_name(event["contentType"].template get<std::string>());
    if (!type) co_return bulwark::error(bulwark::errc::invalid_argument, "materializer: unknown content type");
    const std::string id = event["id"].template get<std::string>();
    const std::int64_t version = event["version"].template get<std::int64_t>();
    const std::string key = snapshot_key(type->base, id);
    apply_outcome outcome = apply_outcome::duplicate;
    for (int attempt = 0; attempt < 8; ++attempt) {
      auto current = co_await snapshots_.get(key);
      if (!current) co_return current.error();
      json snap = current.value() ? json::parse(current.value()->value) : json();
      const std::int64_t at = snap.is_null() ? 0 : snap["version"].template get<std::int64_t>();
      if (version <= at) break;
      std::vector<json> events;
      if (version > at + 1) { // fill the gap from the log
        auto missing = co_await store_.read(id, at + 1);
        if (!missing) co_return missing.error();
        for (auto& e : missing.value())
          if (e["version"].template get<std::int64_t>() < version) events.push_back(std::move(e));
        if (static_cast<std::int64_t>(events.size()) != version - at - 1)
          co_return bulwark::error(bulwark::errc::unavailable, "materializer: " + id + " waits for the event store");
      }
      events.push_back(event);
      const auto expected = current.value() ? current.value()->version : bulwark::no_version;
      auto put = co_await snapshots_.put(key, fold(std::move(snap), events).dump(), expected);
      if (put) {
        outcome = apply_outcome::applied;
        break;
      }
      if (put.error() != bulwark::errc::conflict) co_return put.error();
    }
    const std::string cid = event["eventId"].template get<std::string>();
    std::string status = json{{"status", "applied"}, {"id", id}, {"version", version}}.dump();
    const std::string status_key = "status:" + cid;
    auto marked = co_await snapshots_.put(status_key, std::move(status), std::nullopt);
    if (!marked) co_return marked.error();
    co_return outcome;
  }

  /// Marks a rejected command.
  bulwark::task<void> reject(const json& rejection) {
    std::string key = "status:" + rejection["commandId"].template get<std::string>();
    std::string status = json{{"status", "rejected"}, {"id", rejection["id"]}, {"reason", rejection["reason"]}}.dump();
    auto marked = co_await snapshots_.put(key, std::move(status), std::nullopt);
    if (!marked) co_return marked.error();
    co_return bulwark::ok();
  }

  struct rebuild_report {
    std::size_t streams = 0;
    std::size_t written = 0; ///< snapshots that were missing or differed
  };

  /// Folds every stream of the event store into its snapshot: writes it unless the live
  /// snapshot is already newer (the live materializer went on meanwhile) or equal.
  bulwark::task<rebuild_report> rebuild() {
    rebuild_report report;
    auto each = [this, &report](std::string id) -> bulwark::task<void> {
      ++report.streams;
      auto events = co_await store_.read(id);
      if (!events) co_return events.error();
      if (events.value().empty()) co_return bulwark::ok();
      const auto* type = settings_.by_name(events.value().front()["contentType"].template get<std::string>());
      if (!type) co_return bulwark::ok();
      const json folded = fold(json(), events.value());
      const std::string key = snapshot_key(type->base, id);
      for (int attempt = 0; attempt < 8; ++attempt) {
        auto current = co_await snapshots_.get(key);
        if (!current) co_return current.error();
        if (current.value()) {
          const json live = json::parse(current.value()->value);
          if (live["version"].template get<std::int64_t>() > folded["version"].template get<std::int64_t>() ||
              live == folded)
            co_return bulwark::ok();
        }
        const auto expected = current.value() ? current.value()->version : bulwark::no_version;
        auto put = co_await snapshots_.put(key, folded.dump(), expected);
        if (put) {
          ++report.written;
          co_return bulwark::ok();
        }
        if (put.error() != bulwark::errc::conflict) co_return put.error();
      }
      co_return bulwark::error(bulwark::errc::conflict, "rebuild: " + key + " kept changing");
    };
    BOOST_OUTCOME_CO_TRY(co_await store_.for_each_stream(each));
    co_return report;
  }

  struct verify_report {
    std::size_t streams = 0;
    std::size_t differ = 0; ///< snapshots unlike the fold of their stream, or without one
  };

  /// Compares every snapshot with the fold of its stream in the event store (run it when the
  /// pipeline is idle: a live snapshot ahead of the store counts as differing).
  bulwark::task<verify_report> verify() {
    auto live_read = co_await all_snapshots(snapshots_);
    if (!live_read) co_return live_read.error();
    auto live = std::move(live_read).value();
    verify_report report;
    auto check = [&](std::string id) -> bulwark::task<void> {
      ++report.streams;
      auto events = co_await store_.read(id);
      if (!events) co_return events.error();
      if (events.value().empty()) co_return bulwark::ok();
      const auto* type = settings_.by_name(events.value().front()["contentType"].template get<std::string>());
      if (!type) co_return bulwark::ok();
      auto it = live.find(snapshot_key(type->base, id));
      if (it == live.end() || it->second != fold(json(), events.value())) ++report.differ;
      if (it != live.end()) live.erase(it);
      co_return bulwark::ok();
    };
    BOOST_OUTCOME_CO_TRY(co_await store_.for_each_stream(check));
    report.differ += live.size();
    co_return report;
  }

private:
  const settings& settings_;
  Repository& snapshots_;
  event_store<Store>& store_;
};

} // namespace event_log
