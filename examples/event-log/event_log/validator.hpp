#pragma once
// The validator: decides every command against its own state, which it writes before it
// publishes the decision, so a create followed at once by an update (or an asset created and
// linked at once) is accepted although no snapshot exists yet.
//
// State, in a repository (memory, or Redis in real mode):
//   agg:<id>       {"type":"Entry","version":3,"exists":true,"links":{"heroImage":"<id>"},"linkedBy":0}
//   decision:<cid> {"key":...,"message":{the event or rejection},"state":{"<id>":record,...},
//                   "topic":"events"|"rejections"}
// Commands come in batches (consecutive messages of the one `commands` partition). A batch is
// decided in log order, each command against the records as the commands before it left them;
// then every new decision (accepted or rejected) is written, with the records as they are after
// it; only then the records the batch changed, each once; then the batch's messages are
// published. A command delivered again (a crash before its offset was committed, or a failed
// batch delivered one message at a time) finds its decision and gives the same message again:
// same event id, which the persister and the materializer recognise. Its records come back as
// they were after it (absolute values; the commands after it are delivered again after it, in
// log order, see README "Ordering"), so a command after it that was never decided is decided
// against the same state as the first time. Rejections are stored too: a later command of the
// same batch may have changed the state they were decided against before the redelivery.

#include <event_log/model.hpp>
#include <event_log/together.hpp>

#include <bulwark/repository.hpp>

#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

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

/// What the validator reads of a command, found in its text without building a tree (views
/// into the text; body and meta are their JSON texts).
struct command_fields {
  action act = action::create;
  const content_type* type = nullptr;
  std::string_view command_type, id, command_id, body, meta;
  std::vector<std::pair<const field*, std::string_view>> links; ///< link fields set to a string
  std::unique_ptr<std::string> rewritten; ///< the text as nlohmann_json writes it, when read from that
};

/// The fields of a well-formed command of `s` (check_shape's rules) whose strings are written
/// without escapes; nullopt otherwise (the validator then parses it: a shape error, or a
/// command to read again as nlohmann_json writes it).
inline std::optional<command_fields> read_command(const settings& s, std::string_view text) {
  auto top = object_members(text);
  if (!top) return std::nullopt;
  auto object = [&](std::string_view key) -> std::optional<std::vector<raw_member>> {
    auto v = member(*top, key);
    if (!v || !v->starts_with('{')) return std::nullopt;
    return object_members(*v);
  };
  auto str = [](const std::vector<raw_member>& in, std::string_view key) -> std::optional<std::string_view> {
    auto v = member(in, key);
    return v ? plain_string(*v) : std::nullopt;
  };
  auto params = object("params");
  auto meta = object("meta");
  auto body = object("body");
  if (!params || !meta || !body) return std::nullopt;
  auto type = str(*top, "type");
  auto id = str(*params, "id");
  auto command_id = str(*meta, "commandId");
  if (!type || !id || !command_id || !is_uuid(*id)) return std::nullopt;
  auto parsed_type = parse_command_type(s, *type);
  if (!parsed_type) return std::nullopt;
  command_fields c;
  std::tie(c.act, c.type) = *parsed_type;
  c.command_type = *type;
  c.id = *id;
  c.command_id = *command_id;
  c.body = *member(*top, "body");
  c.meta = *member(*top, "meta");
  if (c.act != action::remove)
    for (const auto& f : c.type->fields) {
      if (f.link_type.empty()) continue;
      auto v = member(*body, f.id);
      if (!v || !v->starts_with('"')) continue; // not a string: not a link (the command API checked the type)
      auto target = plain_string(*v);
      if (!target) return std::nullopt;
      c.links.emplace_back(&f, *target);
    }
  return c;
}

/// A batch's decisions and what storing them writes, nothing written yet
/// (validator::decide_unstored, then validator::store).
struct decided_batch {
  std::vector<decision> decisions; ///< one per command, in order
  /// decision:<cid> -> the stored decision, for each command decided (not replayed) here.
  std::vector<std::pair<std::string, std::string>> stored;
  /// agg:<id> -> the record as the batch left it, each changed record once.
  std::vector<std::pair<std::string, std::string>> records;
};

template <class Repository>
requires bulwark::repository<Repository>
class validator {
public:
  validator(const settings& s, Repository& state) : settings_(s), state_(state) {}

  /// Decides one command (the JSON text of a `commands` message): decide_batch() of one.
  bulwark::task<decision> decide(std::string_view command_text) {
    const std::array<std::string_view, 1> one{command_text};
    auto decided = co_await decide_batch(one);
    if (!decided) co_return decided.error();
    co_return std::move(decided.value().front());
  }

  /// Decides `commands` (JSON texts of `commands` messages, in log order), each against the
  /// state as the ones before it left it, so a create and an update of one id, or an asset
  /// created and linked, may share a batch. Then writes the batch's new decisions, all at once,
  /// and only then the records they changed, all at once, each once as the batch left it: a
  /// batch cut short between the two is delivered again and finds its decisions. One decision
  /// per command, in order. Errors only from the state repository (the bus delivers the batch
  /// again, one command at a time); a bad command is a rejection, not an error. Cost: two or
  /// three reads and two writes of the store for the whole batch (a round trip each on Redis).
  bulwark::task<std::vector<decision>> decide_batch(std::span<const std::string_view> commands) {
    auto decided = co_await decide_unstored(commands);
    if (!decided) co_return decided.error();
    BOOST_OUTCOME_CO_TRY(co_await store(std::move(decided.value().stored), std::move(decided.value().records)));
    co_return std::move(decided.value().decisions);
  }

  /// decide_batch() without its writes: the decisions, and what store() writes (it must be
  /// done before the next batch is decided). Meanwhile the caller may publish the decisions'
  /// messages (the pipeline does both at once). A decision depends only on the commands and
  /// the stored state, so a batch delivered again after a crash decides the same whatever was
  /// done: nothing stored, the same messages again (the persister and the materializer drop a
  /// repeated event by its id and version); its decisions stored, they are replayed and the
  /// records restored from them; store() writes the records only after every decision.
  bulwark::task<decided_batch> decide_unstored(std::span<const std::string_view> commands) {
    // Each command read from its text (no tree); one that cannot be is parsed: a shape error is
    // decided by its text alone, anything else (escapes) is read again as nlohmann_json writes it.
    std::vector<std::variant<command_fields, decision>> cmds; // the fields, or a malformed one's rejection
    cmds.reserve(commands.size());
    std::vector<std::string> ids, cids;
    for (auto text : commands) {
      auto fields = read_command(settings_, text);
      if (!fields) {
        const json cmd = json::parse(text, nullptr, false);
        if (auto shape = check_shape(cmd); !shape.empty()) {
          cmds.emplace_back(rejection(cmd, std::move(shape)));
          continue;
        }
        auto owned = std::make_unique<std::string>(cmd.dump());
        fields = read_command(settings_, *owned);
        if (!fields) { // check_shape and read_command disagree: cannot be, refused all the same
          cmds.emplace_back(rejection(cmd, text::malformed_command("unreadable")));
          continue;
        }
        fields->rewritten = std::move(owned);
      }
      cids.emplace_back(fields->command_id);
      ids.emplace_back(fields->id);
      for (const auto& [f, target] : fields->links) ids.emplace_back(target);
      cmds.emplace_back(std::move(*fields));
    }
    working_set ws;
    BOOST_OUTCOME_CO_TRY(co_await fetch(ws, std::move(ids), std::move(cids)));
    // The records these link to: a command that drops a link moves its target's count.
    std::vector<std::string> linked;
    for (const auto& [id, r] : ws.records)
      if (!r.is_null())
        for (const auto& [f, target] : r["links"].items())
          if (!ws.records.contains(target.template get<std::string>()))
            linked.push_back(target.template get<std::string>());
    BOOST_OUTCOME_CO_TRY(co_await fetch(ws, std::move(linked), {}));

    std::vector<decision> out;
    out.reserve(cmds.size());
    std::vector<std::pair<std::string, std::string>> decided; // decision key -> stored decision
    for (auto& c : cmds) {
      if (auto* malformed = std::get_if<decision>(&c)) { // nothing to store: decided by the text alone
        out.push_back(std::move(*malformed));
        continue;
      }
      const auto& cmd = std::get<command_fields>(c);
      const std::string cid(cmd.command_id);
      if (auto earlier = ws.decisions.find(cid); earlier != ws.decisions.end() && earlier->second) {
        // The records of a decision made in this batch are already in ws, and later commands may
        // have moved them on: only a decision from an earlier delivery brings its records back.
        out.push_back(replay(ws, *earlier->second, !ws.decided_here.contains(cid)));
        continue;
      }
      std::vector<std::string> missing;
      std::optional<stored_decision> d;
      while (!(d = decide_one(cmd, ws, missing))) { // a record it needs was not fetched yet
        BOOST_OUTCOME_CO_TRY(co_await fetch(ws, std::move(missing), {}));
        missing.clear();
      }
      ws.decisions[cid] = d->stored;
      ws.decided_here.insert(cid);
      decided.emplace_back("decision:" + cid, std::move(d->stored));
      out.push_back(std::move(d->made));
    }

    decided_batch batch{std::move(out), std::move(decided), {}};
    batch.records.reserve(ws.changed.size());
    for (const auto& id : ws.changed) batch.records.emplace_back("agg:" + id, ws.records.at(id).dump());
    co_return batch;
  }

  /// Writes a batch's decisions, all at once, and then its records, all at once
  /// (decided_batch::stored and ::records of decide_unstored()).
  bulwark::task<void> store(std::vector<std::pair<std::string, std::string>> stored,
                            std::vector<std::pair<std::string, std::string>> records) {
    BOOST_OUTCOME_CO_TRY(co_await put_all(state_, std::move(stored)));
    co_return co_await put_all(state_, std::move(records));
  }

private:
  /// What one batch read and changed: the records as the batch's decisions so far left them
  /// (null: no such id), and the earlier decisions of its commands.
  struct working_set {
    std::unordered_map<std::string, json> records;
    std::set<std::string> changed;
    std::unordered_map<std::string, std::optional<std::string>> decisions; // command id -> stored
    std::set<std::string> decided_here; ///< command ids decided (not replayed) by this batch
  };

  struct stored_decision {
    decision made;
    std::string stored; ///< decision:<cid>'s value
  };

  /// Why a command cannot be decided at all (empty: it can).
  std::string check_shape(const json& cmd) const {
    if (cmd.is_discarded() || !cmd.is_object()) return text::malformed_command("not a JSON object");
    if (!cmd.contains("type") || !cmd["type"].is_string() ||
        !parse_command_type(settings_, cmd["type"].template get_ref<const std::string&>()))
      return text::malformed_command("unknown type");
    if (!cmd.contains("params") || !cmd["params"].is_object() || !cmd["params"].contains("id") ||
        !cmd["params"]["id"].is_string() || !is_uuid(cmd["params"]["id"].template get_ref<const std::string&>()))
      return text::malformed_command("params.id must be a UUID");
    if (!cmd.contains("meta") || !cmd["meta"].is_object() || !cmd["meta"].contains("commandId") ||
        !cmd["meta"]["commandId"].is_string())
      return text::malformed_command("meta.commandId missing");
    if (!cmd.contains("body") || !cmd["body"].is_object()) return text::malformed_command("body must be an object");
    return {};
  }

  /// Decides `cmd` against `ws` and applies the decision to it; nullopt, with `missing` filled,
  /// when a record it reads is not in `ws` yet.
  std::optional<stored_decision> decide_one(const command_fields& cmd, working_set& ws,
                                            std::vector<std::string>& missing) {
    const auto* type = cmd.type;
    const std::string id(cmd.id);
    auto need = [&](std::string_view rid) {
      if (!ws.records.contains(std::string(rid))) missing.emplace_back(rid);
    };
    need(id);
    for (const auto& [f, target] : cmd.links) need(target);
    if (missing.empty() && !ws.records.at(id).is_null())
      for (const auto& [f, target] : ws.records.at(id)["links"].items())
        need(target.template get_ref<const std::string&>());
    if (!missing.empty()) return std::nullopt;

    json self = ws.records.at(id);
    const bool known = !self.is_null();
    if (known && self["type"] != type->name)
      return stored_rejection(cmd, text::other_type(id, self["type"].template get<std::string>()));
    const bool exists = known && self["exists"].template get<bool>();
    if (cmd.act == action::create && exists) return stored_rejection(cmd, text::exists(type->name, id));
    if (cmd.act != action::create && !exists) return stored_rejection(cmd, text::missing_entity(type->name, id));
    if (cmd.act == action::remove && self["linkedBy"].template get<std::int64_t>() > 0)
      return stored_rejection(cmd, text::still_linked(type->name, id, self["linkedBy"].template get<std::int64_t>()));

    // Links: every link field present must name an existing entity of its type.
    json new_links = json::object();
    for (const auto& [f, target_view] : cmd.links) {
      const std::string target(target_view);
      const json& tr = target == id ? self : ws.records.at(target);
      if (tr.is_null() || !tr["exists"].template get<bool>() || tr["type"] != f->link_type)
        return stored_rejection(cmd, text::dangling_link(f->id, f->link_type, target));
      new_links[f->id] = target;
    }

    // The link counts move: -1 for every old link, +1 for every new one.
    std::map<std::string, std::int64_t> delta;
    if (known)
      for (const auto& [field, target] : self["links"].items()) --delta[target.template get<std::string>()];
    for (const auto& [field, target] : new_links.items()) ++delta[target.template get<std::string>()];
    json state = json::object();
    for (const auto& [target, d] : delta) {
      if (d == 0) continue;
      json& tr = target == id ? self : ws.records.at(target);
      if (tr.is_null()) continue; // an old link whose target is gone cannot happen; nothing to count
      tr["linkedBy"] = tr["linkedBy"].template get<std::int64_t>() + d;
      if (target != id) {
        state[target] = tr;
        ws.changed.insert(target);
      }
    }
    const std::int64_t version = known ? self["version"].template get<std::int64_t>() + 1 : 1;
    self = json{{"type", type->name},
                {"version", version},
                {"exists", cmd.act != action::remove},
                {"links", std::move(new_links)},
                {"linkedBy", known ? self["linkedBy"] : json(0)}};
    state[id] = self;
    ws.records[id] = std::move(self);
    ws.changed.insert(id);

    // The event, spliced from the command's text: its body and meta as written, no tree built.
    std::string event;
    event.reserve(cmd.body.size() + cmd.meta.size() + 200);
    event.append(R"({"body":)").append(cmd.act == action::remove ? std::string_view("{}") : cmd.body);
    event.append(R"(,"contentType":)").append(json(type->name).dump());
    event.append(R"(,"eventId":")").append(cmd.command_id).append(R"(","id":")").append(id);
    event.append(R"(","meta":)").append(cmd.meta).append(R"(,"type":)").append(json(event_type(cmd.act, *type)).dump());
    event.append(R"(,"version":)").append(std::to_string(version)).append("}");
    decision d{topic::events, id, std::move(event), true, false};
    std::string stored = stored_text(d, state);
    return stored_decision{std::move(d), std::move(stored)};
  }

  /// decision:<cid>'s value. The message goes in as a JSON value, not as a string: no escaping,
  /// and no second serialization of the event (parsed and dumped again it is the same text).
  static std::string stored_text(const decision& d, const json& state) {
    std::string out = R"({"key":)";
    out += json(d.key).dump();
    out += R"(,"message":)";
    out += d.value;
    out += R"(,"state":)";
    out += state.dump();
    out += R"(,"topic":")";
    out += d.topic;
    out += R"("})";
    return out;
  }

  /// A rejection, which changes no record. It is stored all the same: a later command of its
  /// batch may change the state it was decided against, and a redelivery must not decide it
  /// again against that.
  stored_decision stored_rejection(const command_fields& c, std::string reason) const {
    const json cmd{{"type", c.command_type}, {"params", {{"id", c.id}}}, {"meta", json::parse(c.meta)}};
    decision d = rejection(cmd, std::move(reason));
    std::string stored = stored_text(d, json::object());
    return stored_decision{std::move(d), std::move(stored)};
  }

  decision rejection(const json& cmd, std::string reason) const {
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

  /// An earlier decision again: its message, and with `restore` its records into `ws` (as they
  /// were after it: commands are decided in log order, so the ones after it follow).
  decision replay(working_set& ws, const std::string& stored_text, bool restore) {
    auto stored = json::parse(stored_text);
    if (restore)
      for (auto& [rid, r] : stored["state"].items()) {
        if (r.is_null()) continue;
        ws.records[rid] = std::move(r);
        ws.changed.insert(rid);
      }
    const bool accepted = stored.value("topic", std::string(topic::events)) == topic::events;
    // "value": the message as a string, as decisions were stored before "message".
    return decision{accepted ? topic::events : topic::rejections, stored["key"].template get<std::string>(),
                    stored.contains("message") ? stored["message"].dump() : stored["value"].template get<std::string>(),
                    accepted, true};
  }

  /// Reads the records of `ids` and the decisions of `cids` that `ws` lacks, all at once.
  bulwark::task<void> fetch(working_set& ws, std::vector<std::string> ids, std::vector<std::string> cids) {
    std::vector<std::string> keys;
    std::vector<std::string> wanted_ids;
    std::unordered_set<std::string_view> wanted; // views of `ids`, which stay put
    for (auto& id : ids)
      if (!ws.records.contains(id) && wanted.insert(id).second) wanted_ids.push_back(id);
    for (const auto& id : wanted_ids) keys.push_back("agg:" + id);
    for (const auto& cid : cids) keys.push_back("decision:" + cid);
    if (keys.empty()) co_return bulwark::ok();
    auto got = co_await get_each(state_, std::move(keys));
    for (std::size_t i = 0; i < got.size(); ++i) {
      if (!got[i]) co_return got[i].error();
      auto& found = got[i].value();
      if (i < wanted_ids.size())
        ws.records[wanted_ids[i]] = found ? json::parse(found->value) : json();
      else
        ws.decisions[cids[i - wanted_ids.size()]] =
            found ? std::optional<std::string>(std::move(found->value)) : std::nullopt;
    }
    co_return bulwark::ok();
  }

  const settings& settings_;
  Repository& state_;
};
} // namespace event_log
