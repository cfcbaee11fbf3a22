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
#include <memory>
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

/// What the persister and the materializer read of an event, found in its text without
/// building a tree (their cost per event was mostly nlohmann_json building and freeing one):
/// views into the text as received, the body its JSON text as written.
struct event_fields {
  std::string_view text; ///< the whole event
  std::string_view id, event_id, type, content_type, body, meta;
  std::int64_t version = 0;
  /// The text rewritten without escapes, when the received one had some where a field is read
  /// (the views point into it then; nlohmann_json writes escapes only where JSON needs them).
  std::unique_ptr<std::string> rewritten;
};

/// The fields of the event `text`; errc::invalid_argument when it is not a JSON object with a
/// string id, eventId, type and contentType, an integer version and an object body.
inline bulwark::result<event_fields> read_event(std::string_view text, bool rewritten_already = false) {
  auto bad = [](std::string why) { return bulwark::error(bulwark::errc::invalid_argument, "event: " + why); };
  auto members = object_members(text);
  if (!members) return bad("not a JSON object");
  event_fields f;
  f.text = text;
  bool escaped = false;
  auto str = [&](std::string_view key, std::string_view& into) {
    auto v = member(*members, key);
    auto plain = v ? plain_string(*v) : std::nullopt;
    if (plain)
      into = *plain;
    else if (v && v->starts_with('"'))
      escaped = true;
    return plain.has_value();
  };
  const bool strings =
      str("id", f.id) & str("eventId", f.event_id) & str("type", f.type) & str("contentType", f.content_type);
  if (!strings && escaped && !rewritten_already) { // once more, on the text as nlohmann_json writes it
    auto parsed = json::parse(text, nullptr, false);
    if (parsed.is_discarded()) return bad("not a JSON object");
    auto owned = std::make_unique<std::string>(parsed.dump());
    auto again = read_event(*owned, true); // views into *owned, which the result keeps
    if (!again) return again.error();
    again.value().rewritten = std::move(owned);
    return again;
  }
  if (!strings) return bad("id, eventId, type and contentType must be strings");
  auto version = member(*members, "version");
  auto n = version ? plain_integer(*version) : std::nullopt;
  if (!n) return bad("version must be an integer");
  f.version = *n;
  auto body = member(*members, "body");
  if (!body || !body->starts_with('{')) return bad("body must be an object");
  f.body = *body;
  f.meta = member(*members, "meta").value_or(std::string_view());
  return f;
}

/// Events given as JSON values (the tests'), as texts and the fields read from them: the views
/// point into `texts`, whose strings stay where they are when the struct moves.
struct read_batch {
  std::vector<std::string> texts;
  std::vector<event_fields> fields;
};
inline bulwark::result<read_batch> read_events(std::span<const json> events) {
  read_batch out;
  out.texts.reserve(events.size());
  for (const auto& e : events) out.texts.push_back(e.dump());
  out.fields.reserve(events.size());
  for (const auto& t : out.texts) {
    auto f = read_event(t);
    if (!f) return f.error();
    out.fields.push_back(std::move(f).value());
  }
  return out;
}

/// meta.acceptedAt of an event, if it is an integer.
inline std::optional<std::int64_t> accepted_at(const event_fields& e) {
  if (!e.meta.starts_with('{')) return std::nullopt;
  auto members = object_members(e.meta);
  if (!members) return std::nullopt;
  auto at = member(*members, "acceptedAt");
  return at ? plain_integer(*at) : std::nullopt;
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
      std::string head_value = head_text(version);
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
  /// append()'s (the first one). Each event is stored as its text was received (nothing is
  /// parsed into a tree or serialized again). Cost: three round trips on Redis for the whole
  /// batch.
  bulwark::task<std::vector<append_outcome>> append_batch(std::span<const event_fields> events) {
    std::vector<append_outcome> out(events.size(), append_outcome::appended);
    struct stream_run {
      std::string_view id;
      std::vector<std::size_t> events; // indexes into `events`
      std::int64_t head = 0;
      std::optional<bulwark::version_t> expected;
      bool one_by_one = false;
    };
    std::vector<stream_run> runs;
    std::unordered_map<std::string_view, std::size_t> run_of;
    for (std::size_t i = 0; i < events.size(); ++i) {
      auto [it, fresh] = run_of.emplace(events[i].id, runs.size());
      if (fresh) runs.push_back(stream_run{events[i].id, {}, 0, bulwark::no_version, false});
      runs[it->second].events.push_back(i);
    }
    std::vector<std::string> keys;
    keys.reserve(runs.size());
    for (const auto& r : runs) keys.push_back(std::string("head:").append(r.id));
    {
      auto heads = co_await get_each(repo_, keys);
      for (std::size_t r = 0; r < runs.size(); ++r) {
        if (!heads[r]) co_return heads[r].error();
        if (const auto& head = heads[r].value()) {
          runs[r].head = integer_member(head->value, "version");
          runs[r].expected = head->version;
        }
      }
    }
    // The stream entries: only runs that continue their stream exactly.
    std::vector<write> entries;
    std::vector<std::size_t> entry_run;
    for (std::size_t r = 0; r < runs.size(); ++r) {
      std::int64_t next = runs[r].head + 1;
      for (auto i : runs[r].events) runs[r].one_by_one = runs[r].one_by_one || events[i].version != next++;
      if (runs[r].one_by_one) continue;
      for (auto i : runs[r].events) {
        entries.push_back(
            write{stream_key(runs[r].id, events[i].version), std::string(events[i].text), bulwark::no_version});
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
      heads.push_back(write{keys[r], head_text(version), runs[r].expected});
      head_run.push_back(r);
    }
    BOOST_OUTCOME_CO_TRY(co_await put_runs(std::move(heads), head_run, runs));
    for (auto& r : runs)
      if (r.one_by_one)
        for (auto i : r.events) {
          auto appended = co_await append(json::parse(events[i].text));
          if (!appended) co_return appended.error();
          out[i] = appended.value();
        }
    co_return out;
  }

  /// append_batch() of events given as JSON values (the tests').
  bulwark::task<std::vector<append_outcome>> append_batch(std::span<const json> events) {
    auto read = read_events(events);
    if (!read) co_return read.error();
    co_return co_await append_batch(std::span<const event_fields>(read.value().fields));
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
  /// head:<id>'s value.
  static std::string head_text(std::int64_t version) { return R"({"version":)" + std::to_string(version) + "}"; }

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
