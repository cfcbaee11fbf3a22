#pragma once
// The persister's event store: one stream per aggregate, in a repository (memory, or Redis in
// real mode).
//
//   stream:<id>:<version, 12 digits>  the event (JSON), written once (expected: absent)
//   head:<id>                          {"version":n}, moved by compare-and-set on its repository
//                                      version, so two persisters never both extend one stream
//
// append() is idempotent on the event id: an event whose version is already in the stream
// with the same eventId is a duplicate (a redelivery), one with another eventId a conflict.

#include <event_log/model.hpp>
#include <event_log/together.hpp>

#include <bulwark/repository.hpp>

#include <cstdio>
#include <functional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace event_log {

enum class append_outcome { appended, duplicate };

inline std::string stream_key(std::string_view id, std::int64_t version) {
  char digits[16];
  std::snprintf(digits, sizeof digits, "%012lld", static_cast<long long>(version));
  return "stream:" + std::string(id) + ":" + digits;
}

template <class Repository>
requires bulwark::repository<Repository>
class event_store {
public:
  explicit event_store(Repository& r) : repo_(r) {}

  /// Appends `event` ({"id","version","eventId",...}) to its stream. Errors: errc::conflict when
  /// its version holds another event; errc::unavailable when an earlier version is missing (the
  /// bus retries: events of one id arrive in order, so this only follows a lost write);
  /// the repository's errors.
  bulwark::task<append_outcome> append(const json& event) {
    const std::string id = event["id"].template get<std::string>();
    const std::int64_t version = event["version"].template get<std::int64_t>();
    const std::string event_id = event["eventId"].template get<std::string>();
    for (int attempt = 0; attempt < 8; ++attempt) {
      const std::string head_key = "head:" + id;
      auto head = co_await repo_.get(head_key);
      if (!head) co_return head.error();
      const std::int64_t at =
          head.value() ? json::parse(head.value()->value)["version"].template get<std::int64_t>() : 0;
      const std::optional<bulwark::version_t> expected = head.value() ? head.value()->version : bulwark::no_version;
      if (version <= at) {
        auto same = co_await holds(id, version, event_id);
        if (!same) co_return same.error();
        co_return append_outcome::duplicate;
      }
      if (version > at + 1)
        co_return bulwark::error(bulwark::errc::unavailable, "event store: " + id + " is at version " +
                                                                 std::to_string(at) + ", not " +
                                                                 std::to_string(version - 1));
      auto put = co_await repo_.put(stream_key(id, version), event.dump(), bulwark::no_version);
      if (!put && put.error() != bulwark::errc::conflict) co_return put.error();
      if (!put) { // written by an attempt that did not move the head: ours, or a conflict
        auto same = co_await holds(id, version, event_id);
        if (!same) co_return same.error();
      }
      std::string head_value = json{{"version", version}}.dump();
      auto moved = co_await repo_.put(head_key, std::move(head_value), expected);
      if (moved) co_return append_outcome::appended;
      if (moved.error() != bulwark::errc::conflict) co_return moved.error();
      // Another writer moved the head meanwhile: look again.
    }
    co_return bulwark::error(bulwark::errc::conflict, "event store: the head of " + id + " kept moving");
  }

  /// append() for each of `events`, in order (one id's events in version order, as a partition
  /// of `events` delivers them), with the store's work for all ids at once: the heads, then
  /// the new stream entries, then the heads again. An id whose run meets anything else (an
  /// event it holds already, a gap, a conflict, a head moved by another persister) goes
  /// through append() one event at a time. One outcome per event, in order; errors as
  /// append()'s (the first one). `texts`, when given, are the events as received, stored as
  /// they are (instead of serializing each event again). Cost: three round trips on Redis for
  /// the whole batch.
  bulwark::task<std::vector<append_outcome>> append_batch(std::span<const json> events,
                                                          std::span<const std::string_view> texts = {}) {
    std::vector<append_outcome> out(events.size(), append_outcome::appended);
    struct stream_run {
      std::string id;
      std::vector<std::size_t> events; // indexes into `events`
      std::int64_t head = 0;
      std::optional<bulwark::version_t> expected;
      bool one_by_one = false;
    };
    std::vector<stream_run> runs;
    std::unordered_map<std::string, std::size_t> run_of;
    for (std::size_t i = 0; i < events.size(); ++i) {
      const auto& id = events[i]["id"].template get_ref<const std::string&>();
      auto [it, fresh] = run_of.emplace(id, runs.size());
      if (fresh) runs.push_back(stream_run{id, {}, 0, bulwark::no_version, false});
      runs[it->second].events.push_back(i);
    }
    std::vector<std::string> keys;
    keys.reserve(runs.size());
    for (const auto& r : runs) keys.push_back("head:" + r.id);
    {
      auto heads = co_await get_each(repo_, keys);
      for (std::size_t r = 0; r < runs.size(); ++r) {
        if (!heads[r]) co_return heads[r].error();
        if (const auto& head = heads[r].value()) {
          runs[r].head = json::parse(head->value)["version"].template get<std::int64_t>();
          runs[r].expected = head->version;
        }
      }
    }
    // The stream entries: only runs that continue their stream exactly.
    std::vector<write> entries;
    std::vector<std::size_t> entry_run;
    for (std::size_t r = 0; r < runs.size(); ++r) {
      std::int64_t next = runs[r].head + 1;
      for (auto i : runs[r].events)
        runs[r].one_by_one = runs[r].one_by_one || events[i]["version"].template get<std::int64_t>() != next++;
      if (runs[r].one_by_one) continue;
      for (auto i : runs[r].events) {
        entries.push_back(write{stream_key(runs[r].id, events[i]["version"].template get<std::int64_t>()),
                                texts.empty() ? events[i].dump() : std::string(texts[i]), bulwark::no_version});
        entry_run.push_back(r);
      }
    }
    BOOST_OUTCOME_CO_TRY(co_await put_runs(std::move(entries), entry_run, runs));
    // The heads, by compare-and-set, where every entry of the run was written.
    std::vector<write> heads;
    std::vector<std::size_t> head_run;
    for (std::size_t r = 0; r < runs.size(); ++r) {
      if (runs[r].one_by_one) continue;
      const auto version = runs[r].head + static_cast<std::int64_t>(runs[r].events.size());
      heads.push_back(write{keys[r], json{{"version", version}}.dump(), runs[r].expected});
      head_run.push_back(r);
    }
    BOOST_OUTCOME_CO_TRY(co_await put_runs(std::move(heads), head_run, runs));
    for (auto& r : runs)
      if (r.one_by_one)
        for (auto i : r.events) {
          auto appended = co_await append(events[i]);
          if (!appended) co_return appended.error();
          out[i] = appended.value();
        }
    co_return out;
  }

  /// The events of `id` from version `from` on, in order.
  bulwark::task<std::vector<json>> read(std::string_view id, std::int64_t from = 1) {
    std::vector<json> out;
    const std::string prefix = "stream:" + std::string(id) + ":";
    std::string after = from > 1 ? stream_key(id, from - 1) : std::string();
    while (true) {
      auto page = co_await repo_.scan(prefix, after, 256);
      if (!page) co_return page.error();
      for (auto& e : page.value().entries) out.push_back(json::parse(e.value));
      if (!page.value().next) break;
      after = *page.value().next;
    }
    co_return out;
  }

  /// Calls `each(id)` for every stream, in id order.
  bulwark::task<void> for_each_stream(const std::function<bulwark::task<void>(std::string)>& each) {
    std::string after;
    while (true) {
      auto page = co_await repo_.scan("head:", after, 256);
      if (!page) co_return page.error();
      for (auto& e : page.value().entries) {
        BOOST_OUTCOME_CO_TRY(co_await each(e.key.substr(5)));
      }
      if (!page.value().next) break;
      after = *page.value().next;
    }
    co_return bulwark::ok();
  }

private:
  /// Puts every write at once (writes[k] belongs to runs[run[k]]); a conflict sends its run
  /// one event at a time.
  template <class Run>
  bulwark::task<void> put_runs(std::vector<write> writes, const std::vector<std::size_t>& run, std::vector<Run>& runs) {
    auto written = co_await put_each(repo_, std::move(writes));
    for (std::size_t k = 0; k < written.size(); ++k) {
      if (written[k]) continue;
      if (written[k].error() != bulwark::errc::conflict) co_return written[k].error();
      runs[run[k]].one_by_one = true;
    }
    co_return bulwark::ok();
  }

  /// ok when version `version` of `id` is the event `event_id`; errc::conflict when another.
  bulwark::task<void> holds(const std::string& id, std::int64_t version, const std::string& event_id) {
    auto stored = co_await repo_.get(stream_key(id, version));
    if (!stored) co_return stored.error();
    if (!stored.value())
      co_return bulwark::error(bulwark::errc::unavailable, "event store: " + stream_key(id, version) + " is missing");
    if (json::parse(stored.value()->value)["eventId"] != event_id)
      co_return bulwark::error(bulwark::errc::conflict,
                               "event store: " + stream_key(id, version) + " holds another event than " + event_id);
    co_return bulwark::ok();
  }

  Repository& repo_;
};

} // namespace event_log
