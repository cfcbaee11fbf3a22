#pragma once
// The validator: decides every command against its own state, which it writes before it
// publishes the decision, so a create followed at once by an update (or an asset created and
// linked at once) is accepted although no snapshot exists yet.
//
// State, in a repository (memory, or Redis in real mode):
//   agg:<id>       {"type":"Entry","version":3,"exists":true,"links":{"heroImage":"<id>"},"linkedBy":0}
//   decision:<cid> {"topic":"events"|"rejections","key":...,"value":...,"state":{"<id>":record,...}}
// A decision is written first, with the records as they are after it; the records follow. A
// command delivered again (a crash before its offset was committed) finds its decision,
// writes those records again (idempotent: absolute values, and commands are decided one at a
// time in log order, see README "Ordering") and publishes the same message again: same event id,
// which the persister and the materializer recognise.

#include <event_log/model.hpp>

#include <bulwark/repository.hpp>

#include <map>
#include <set>
#include <string>

namespace event_log {

/// What to publish for one command.
struct decision {
  std::string_view topic; ///< topic::events or topic::rejections
  std::string key;        ///< the aggregate id
  std::string value;      ///< the event or the rejection, JSON
  bool accepted = false;
  bool replayed = false; ///< decided before (a redelivery): the same message again
};

namespace text {
inline std::string exists(std::string_view type, std::string_view id) {
  return std::string(type) + " \"" + std::string(id) + "\" already exists";
}
inline std::string missing_entity(std::string_view type, std::string_view id) {
  return std::string(type) + " \"" + std::string(id) + "\" does not exist";
}
inline std::string other_type(std::string_view id, std::string_view type) {
  return "Id \"" + std::string(id) + "\" belongs to a " + std::string(type);
}
inline std::string dangling_link(std::string_view field, std::string_view type, std::string_view id) {
  return "Field \"" + std::string(field) + "\" names " + std::string(type) + " \"" + std::string(id) +
         "\", which does not exist";
}
inline std::string still_linked(std::string_view type, std::string_view id, std::int64_t links) {
  return std::string(type) + " \"" + std::string(id) + "\" is still linked from " + std::to_string(links) +
         (links == 1 ? " place" : " places");
}
inline std::string malformed_command(std::string_view why) { return "Malformed command: " + std::string(why); }
} // namespace text

template <class Repository>
requires bulwark::repository<Repository>
class validator {
public:
  validator(const settings& s, Repository& state) : settings_(s), state_(state) {}

  /// Decides one command (the JSON text of a `commands` message). Errors only from the state
  /// repository (the bus retries the message); a bad command is a rejection, not an error.
  bulwark::task<decision> decide(std::string_view command_text) {
    auto cmd = json::parse(command_text, nullptr, false);
    auto shape = check_shape(cmd);
    if (!shape.empty()) co_return reject(cmd, shape, {});
    const std::string cid = cmd["meta"]["commandId"].template get<std::string>();
    const std::string decision_key = "decision:" + cid;
    auto earlier = co_await state_.get(decision_key);
    if (!earlier) co_return earlier.error();
    if (earlier.value()) co_return co_await replay(earlier.value()->value);

    auto [act, type] = *parse_command_type(settings_, cmd["type"].template get<std::string>());
    const std::string id = cmd["params"]["id"].template get<std::string>();
    std::map<std::string, json> records; // id -> record as after this command
    auto rec = co_await load(id);
    if (!rec) co_return rec.error();
    json self = std::move(rec).value();
    const bool known = !self.is_null();
    if (known && self["type"] != type->name)
      co_return reject(cmd, text::other_type(id, self["type"].template get<std::string>()), {});
    const bool exists = known && self["exists"].template get<bool>();
    if (act == action::create && exists) co_return reject(cmd, text::exists(type->name, id), {});
    if (act != action::create && !exists) co_return reject(cmd, text::missing_entity(type->name, id), {});
    if (act == action::remove && self["linkedBy"].template get<std::int64_t>() > 0)
      co_return reject(cmd, text::still_linked(type->name, id, self["linkedBy"].template get<std::int64_t>()), {});

    // Links: every link field present must name an existing entity of its type.
    json new_links = json::object();
    if (act != action::remove) {
      for (const auto& f : type->fields) {
        if (f.link_type.empty()) continue;
        auto v = cmd["body"].find(f.id);
        if (v == cmd["body"].end() || !v->is_string()) continue;
        const std::string target = v->get<std::string>();
        auto t = co_await load_into(records, target, id, self);
        if (!t) co_return t.error();
        const json& tr = *t.value();
        if (tr.is_null() || !tr["exists"].template get<bool>() || tr["type"] != f.link_type)
          co_return reject(cmd, text::dangling_link(f.id, f.link_type, target), {});
        new_links[f.id] = target;
      }
    }
    // The link counts move: -1 for every old link, +1 for every new one.
    std::map<std::string, std::int64_t> delta;
    if (known)
      for (const auto& [field, target] : self["links"].items()) --delta[target.template get<std::string>()];
    for (const auto& [field, target] : new_links.items()) ++delta[target.template get<std::string>()];
    for (const auto& [target, d] : delta) {
      if (d == 0) continue;
      auto t = co_await load_into(records, target, id, self);
      if (!t) co_return t.error();
      json& tr = *t.value();
      if (tr.is_null()) continue; // an old link whose target is gone cannot happen; nothing to count
      tr["linkedBy"] = tr["linkedBy"].template get<std::int64_t>() + d;
    }
    const std::int64_t version = known ? self["version"].template get<std::int64_t>() + 1 : 1;
    self = json{{"type", type->name},
                {"version", version},
                {"exists", act != action::remove},
                {"links", std::move(new_links)},
                {"linkedBy", known ? self["linkedBy"] : json(0)}};
    records[id] = self;

    json event{{"type", event_type(act, *type)},
               {"eventId", cid},
               {"id", id},
               {"contentType", type->name},
               {"version", version},
               {"body", act == action::remove ? json::object() : cmd["body"]},
               {"meta", cmd["meta"]}};
    decision d{topic::events, id, event.dump(), true, false};
    json stored{{"topic", d.topic}, {"key", d.key}, {"value", d.value}, {"state", json::object()}};
    for (auto& [rid, r] : records) stored["state"][rid] = r;
    auto wrote = co_await state_.put(decision_key, stored.dump(), std::nullopt);
    if (!wrote) co_return wrote.error();
    BOOST_OUTCOME_CO_TRY(co_await write_records(stored["state"]));
    co_return d;
  }

private:
  /// Why a command cannot be decided at all (empty: it can).
  std::string check_shape(const json& cmd) const {
    if (cmd.is_discarded() || !cmd.is_object()) return text::malformed_command("not a JSON object");
    if (!cmd.contains("type") || !cmd["type"].is_string() ||
        !parse_command_type(settings_, cmd["type"].template get<std::string>()))
      return text::malformed_command("unknown type");
    if (!cmd.contains("params") || !cmd["params"].is_object() || !cmd["params"].contains("id") ||
        !cmd["params"]["id"].is_string() || !is_uuid(cmd["params"]["id"].template get<std::string>()))
      return text::malformed_command("params.id must be a UUID");
    if (!cmd.contains("meta") || !cmd["meta"].is_object() || !cmd["meta"].contains("commandId") ||
        !cmd["meta"]["commandId"].is_string())
      return text::malformed_command("meta.commandId missing");
    if (!cmd.contains("body") || !cmd["body"].is_object()) return text::malformed_command("body must be an object");
    return {};
  }

  /// A rejection: no state changes (so nothing to store; a redelivered rejected command is
  /// decided again against the same state and rejected again with the same reason, unless a
  /// later command changed that state, which cannot happen before this one is committed).
  decision reject(const json& cmd, std::string reason, std::string_view) const {
    json r{{"reason", std::move(reason)}};
    auto str = [&](const char* a, const char* b) -> json {
      if (cmd.is_object() && cmd.contains(a) && cmd[a].is_object() && cmd[a].contains(b)) return cmd[a][b];
      return "";
    };
    r["commandId"] = str("meta", "commandId");
    r["id"] = str("params", "id");
    r["type"] = cmd.is_object() && cmd.contains("type") ? cmd["type"] : json("");
    r["meta"] = cmd.is_object() && cmd.contains("meta") ? cmd["meta"] : json::object();
    const std::string key = r["id"].is_string() ? r["id"].template get<std::string>() : "";
    return decision{topic::rejections, key, r.dump(), false, false};
  }

  bulwark::task<json> load(const std::string& id) {
    const std::string record_key = "agg:" + id;
    auto got = co_await state_.get(record_key);
    if (!got) co_return got.error();
    if (!got.value()) co_return json();
    co_return json::parse(got.value()->value);
  }

  /// The record of `id` in `records` (loaded on first use); the command's own record is `self`.
  bulwark::task<json*> load_into(std::map<std::string, json>& records, const std::string& id,
                                 const std::string& self_id, json& self) {
    if (id == self_id) co_return &self;
    if (auto it = records.find(id); it != records.end()) co_return &it->second;
    auto got = co_await load(id);
    if (!got) co_return got.error();
    auto [it, inserted] = records.emplace(id, std::move(got).value());
    co_return &it->second;
  }

  bulwark::task<void> write_records(const json& state) {
    for (const auto& [rid, r] : state.items()) {
      if (r.is_null()) continue;
      const std::string record_key = "agg:" + rid;
      auto put = co_await state_.put(record_key, r.dump(), std::nullopt);
      if (!put) co_return put.error();
    }
    co_return bulwark::ok();
  }

  bulwark::task<decision> replay(const std::string& stored_text) {
    auto stored = json::parse(stored_text);
    BOOST_OUTCOME_CO_TRY(co_await write_records(stored["state"]));
    co_return decision{topic::events, stored["key"].template get<std::string>(),
                       stored["value"].template get<std::string>(), true, true};
  }

  const settings& settings_;
  Repository& state_;
};

} // namespace event_log
