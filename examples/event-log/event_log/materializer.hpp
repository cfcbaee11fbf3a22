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
#include <event_log/together.hpp>

#include <bulwark/repository.hpp>

#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace event_log {

enum class apply_outcome { applied, duplicate };

/// The snapshot after event `e` (a document is replaced whole, so the last event decides it).
inline json snapshot_after(const json& e) {
  const bool deleted = e["type"].template get_ref<const std::string&>().ends_with("Deleted");
  return json{{"id", e["id"]},
              {"contentType", e["contentType"]},
              {"version", e["version"]},
              {"deleted", deleted},
              {"fields", deleted ? json::object() : e["body"]}};
}

/// The snapshot after `events` (in version order, the first one a create or following `from`).
inline json fold(json from, const std::vector<json>& events) {
  for (const auto& e : events) from = snapshot_after(e);
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
    auto [status_key, status] = applied_status(event);
    auto marked = co_await snapshots_.put(status_key, std::move(status), std::nullopt);
    if (!marked) co_return marked.error();
    co_return outcome;
  }

  /// apply() for each of `events`, in order (one id's events in version order, as a partition
  /// of `events` delivers them), with the store's work for all at once: the snapshots, then
  /// the new snapshots (compare-and-set), then the commands' status. An id whose run does not
  /// continue its snapshot exactly (a gap to fill from the event store) or meets a conflict (a
  /// rebuild wrote meanwhile) goes through apply() one event at a time. One outcome per event,
  /// in order. Errors: as apply()'s. Cost: three round trips on Redis for the whole batch.
  bulwark::task<std::vector<apply_outcome>> apply_batch(std::span<const event_fields> events) {
    std::vector<apply_outcome> out(events.size(), apply_outcome::duplicate);
    struct snapshot_run {
      std::string key;
      std::vector<std::size_t> events; // indexes into `events`
      std::vector<std::size_t> fresh;  // those above the snapshot's version
      bool one_by_one = false;
    };
    std::vector<snapshot_run> runs;
    std::unordered_map<std::string, std::size_t> run_of;
    for (std::size_t i = 0; i < events.size(); ++i) {
      const auto* type = settings_.by_name(events[i].content_type);
      if (!type) co_return bulwark::error(bulwark::errc::invalid_argument, "materializer: unknown content type");
      auto key = snapshot_key(type->base, events[i].id);
      auto [it, added] = run_of.emplace(key, runs.size());
      if (added) runs.push_back(snapshot_run{std::move(key), {}, {}, false});
      runs[it->second].events.push_back(i);
    }
    std::vector<std::optional<bulwark::version_t>> expected(runs.size(), bulwark::no_version);
    {
      std::vector<std::string> keys;
      keys.reserve(runs.size());
      for (const auto& r : runs) keys.push_back(r.key);
      auto current = co_await get_each(snapshots_, std::move(keys));
      for (std::size_t r = 0; r < runs.size(); ++r) {
        if (!current[r]) co_return current[r].error();
        std::int64_t at = 0;
        if (const auto& snap = current[r].value()) {
          at = integer_member(snap->value, "version");
          expected[r] = snap->version;
        }
        for (auto i : runs[r].events) {
          const auto version = events[i].version;
          if (version <= at) continue; // a duplicate
          runs[r].one_by_one = runs[r].one_by_one || version != at + 1;
          at = version;
          runs[r].fresh.push_back(i);
        }
      }
    }
    {
      std::vector<write> writes;
      std::vector<std::size_t> written_runs;
      for (std::size_t r = 0; r < runs.size(); ++r)
        if (!runs[r].one_by_one && !runs[r].fresh.empty()) {
          writes.push_back(write{runs[r].key, snapshot_text(events[runs[r].fresh.back()]), expected[r]});
          written_runs.push_back(r);
        }
      auto written = co_await put_each(snapshots_, std::move(writes));
      for (std::size_t k = 0; k < written.size(); ++k) {
        auto& r = runs[written_runs[k]];
        if (written[k]) {
          for (auto i : r.fresh) out[i] = apply_outcome::applied;
        } else if (written[k].error() == bulwark::errc::conflict) {
          r.one_by_one = true;
        } else {
          co_return written[k].error();
        }
      }
    }
    std::vector<std::pair<std::string, std::string>> statuses;
    statuses.reserve(events.size());
    for (const auto& r : runs) {
      if (r.one_by_one) continue;
      for (auto i : r.events)
        statuses.emplace_back(std::string("status:").append(events[i].event_id),
                              applied_status_text(events[i].id, events[i].version));
    }
    BOOST_OUTCOME_CO_TRY(co_await put_all(snapshots_, std::move(statuses)));
    for (const auto& r : runs)
      if (r.one_by_one)
        for (auto i : r.events) {
          auto applied = co_await apply(json::parse(events[i].text));
          if (!applied) co_return applied.error();
          out[i] = applied.value();
        }
    co_return out;
  }

  /// apply_batch() of events given as JSON values (the tests').
  bulwark::task<std::vector<apply_outcome>> apply_batch(std::span<const json> events) {
    auto read = read_events(events);
    if (!read) co_return read.error();
    co_return co_await apply_batch(std::span<const event_fields>(read.value().fields));
  }

  /// Marks a rejected command.
  bulwark::task<void> reject(const json& rejection) { return reject_batch(std::span<const json>(&rejection, 1)); }

  /// Marks every command of `rejections` rejected, all at once.
  bulwark::task<void> reject_batch(std::span<const json> rejections) {
    std::vector<std::pair<std::string, std::string>> statuses;
    statuses.reserve(rejections.size());
    for (const auto& r : rejections)
      statuses.emplace_back("status:" + r["commandId"].template get<std::string>(),
                            json{{"status", "rejected"}, {"id", r["id"]}, {"reason", r["reason"]}}.dump());
    return put_all(snapshots_, std::move(statuses));
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
  /// The status key and value of the command whose event is `event`, applied.
  static std::pair<std::string, std::string> applied_status(const json& event) {
    return {"status:" + event["eventId"].template get<std::string>(),
            json{{"status", "applied"}, {"id", event["id"]}, {"version", event["version"]}}.dump()};
  }

  /// status:<cid>'s value once applied, as applied_status() writes it (`id` has no escape).
  static std::string applied_status_text(std::string_view id, std::int64_t version) {
    std::string out = R"({"id":")";
    out.append(id).append(R"(","status":"applied","version":)").append(std::to_string(version)).append("}");
    return out;
  }

  /// The snapshot after `e`, as snapshot_after(e).dump() writes it: spliced from the event's
  /// text (its body as written; the strings have no escape).
  static std::string snapshot_text(const event_fields& e) {
    const bool deleted = e.type.ends_with("Deleted");
    std::string out;
    out.reserve(e.body.size() + e.id.size() + e.content_type.size() + 80);
    out.append(R"({"contentType":")").append(e.content_type).append(R"(","deleted":)");
    out.append(deleted ? "true" : "false").append(R"(,"fields":)").append(deleted ? std::string_view("{}") : e.body);
    out.append(R"(,"id":")").append(e.id).append(R"(","version":)").append(std::to_string(e.version)).append("}");
    return out;
  }

  const settings& settings_;
  Repository& snapshots_;
  event_store<Store>& store_;
};

} // namespace event_log
