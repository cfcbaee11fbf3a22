#pragma once
// The messages between the stages, their names, and the command API's checks of a body against
// a content type (plain code, tested in tests/examples/event_log.cpp).
//
// commands   (key: "all", one ordered log; see README "Ordering")
//   {"type":"createEntry","body":{...},"params":{"id":"<uuid>"},
//    "meta":{"user":"<X-User or 0>","commandId":"<uuid>","acceptedAt":<ms since epoch>}}
// events     (key: the aggregate id)
//   {"type":"entryCreated","eventId":"<= commandId>","id":"<uuid>","contentType":"Entry",
//    "version":<n>,"body":{...},"meta":{...the command's meta}}
// rejections (key: the aggregate id)
//   {"commandId":"<uuid>","type":"updateEntry","id":"<uuid>","reason":"...","meta":{...}}

#include <event_log/settings.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace event_log {

using json = nlohmann::json;

/// Topic names (a deployment may prefix them: config::topic_prefix).
namespace topic {
inline constexpr std::string_view commands = "commands";
inline constexpr std::string_view events = "events";
inline constexpr std::string_view rejections = "rejections";
} // namespace topic

/// The key every command is published with: one partition, so the validator sees one total order.
inline constexpr std::string_view command_key = "all";

enum class action { create, update, remove };

inline std::string_view verb(action a) {
  switch (a) {
  case action::create: return "create";
  case action::update: return "update";
  case action::remove: return "delete";
  }
  return "";
}
inline std::string_view past(action a) {
  switch (a) {
  case action::create: return "Created";
  case action::update: return "Updated";
  case action::remove: return "Deleted";
  }
  return "";
}

/// "createEntry", "deleteAsset".
inline std::string command_type(action a, const content_type& t) { return std::string(verb(a)) + t.name; }

/// "entryCreated", "assetDeleted": the type's name with a lower-case first letter.
inline std::string event_type(action a, const content_type& t) {
  std::string s = t.name;
  if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z') s[0] = static_cast<char>(s[0] - 'A' + 'a');
  return s + std::string(past(a));
}

/// The action and content type a command type names ("updateAsset"), or nullopt.
inline std::optional<std::pair<action, const content_type*>> parse_command_type(const settings& s,
                                                                                std::string_view type) {
  for (auto a : {action::create, action::update, action::remove}) {
    const auto v = verb(a);
    if (type.starts_with(v))
      if (const auto* t = s.by_name(type.substr(v.size()))) return std::make_pair(a, t);
  }
  return std::nullopt;
}

/// Texts the command API answers (the reference's, then ours).
namespace text {
inline constexpr std::string_view unsupported = "Unsupported method or URL pattern";
inline std::string missing(std::string_view id) { return "Required field \"" + std::string(id) + "\" is missing"; }
inline std::string wrong_type(std::string_view f, std::string_view t, std::string_view actual) {
  return "Field \"" + std::string(f) + "\" should be of type \"" + std::string(t) + "\" but is of type \"" +
         std::string(actual) + "\"";
}
inline constexpr std::string_view not_json = "Body is not valid JSON";
inline constexpr std::string_view not_object = "Body must be a JSON object";
inline std::string too_large(std::size_t limit) { return "Body is larger than " + std::to_string(limit) + " bytes"; }
inline std::string too_deep(std::size_t limit) {
  return "Body is nested deeper than " + std::to_string(limit) + " levels";
}
inline std::string unknown_field(std::string_view f) { return "Unknown field \"" + std::string(f) + "\""; }
inline std::string bad_id(std::string_view id) { return "Id \"" + std::string(id).substr(0, 64) + "\" is not a UUID"; }
} // namespace text

/// JavaScript's typeof of a JSON value, the words of the reference's type error.
inline std::string_view type_of(const json& v) {
  if (v.is_string()) return "string";
  if (v.is_number()) return "number";
  if (v.is_boolean()) return "boolean";
  return "object"; // null, arrays and objects, as typeof says
}

/// A lower-case 8-4-4-4-12 hexadecimal UUID (any version); upper-case digits are refused so that
/// one entity has one id.
inline bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

/// A random (version 4) UUID; one generator per thread.
inline std::string new_uuid() {
  thread_local std::mt19937_64 gen{
      std::random_device{}() ^ static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())};
  const std::uint64_t hi = (gen() & 0xffffffffffff0fffULL) | 0x4000ULL;
  const std::uint64_t lo = (gen() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  auto put = [&](std::uint64_t v, int from, int count) {
    for (int i = from; i > from - count; --i) out.push_back(digits[(v >> (4 * (i - 1))) & 0xf]);
  };
  put(hi, 16, 8);
  out.push_back('-');
  put(hi, 8, 4);
  out.push_back('-');
  put(hi, 4, 4);
  out.push_back('-');
  put(lo, 16, 4);
  out.push_back('-');
  put(lo, 12, 12);
  return out;
}

/// Milliseconds since the epoch (the acceptance stamp the visibility lag is measured from).
inline std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Limits on a command's body, checked before it is parsed.
struct body_limits {
  std::size_t max_bytes = 64 * 1024;
  std::size_t max_depth = 32;
};

/// The deepest nesting of arrays and objects in `text` (strings skipped), counted without
/// parsing, so a hostile body is refused before the parser builds it.
inline std::size_t nesting_depth(std::string_view text) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

/// The body of a create or update, checked against `t`: a JSON object within `limits`, every
/// required field present, every present field of its type, no field the type does not define.
/// The error (errc::invalid_argument) carries the text of the 400 as its detail.
inline bulwark::result<json> check_body(const content_type& t, std::string_view text, body_limits limits = {}) {
  auto refuse = [](std::string why) { return bulwark::error(bulwark::errc::invalid_argument, std::move(why)); };
  if (text.size() > limits.max_bytes) return refuse(text::too_large(limits.max_bytes));
  if (nesting_depth(text) > limits.max_depth) return refuse(text::too_deep(limits.max_depth));
  auto body = json::parse(text, nullptr, false);
  if (body.is_discarded()) return refuse(std::string(text::not_json));
  if (!body.is_object()) return refuse(std::string(text::not_object));
  for (const auto& f : t.fields) {
    auto it = body.find(f.id);
    if (it == body.end() || it->is_null()) {
      if (f.required) return refuse(text::missing(f.id));
      continue;
    }
    if (type_of(*it) != f.type || (f.type == "object" && !it->is_object()))
      return refuse(text::wrong_type(f.id, f.type, type_of(*it)));
  }
  for (const auto& [name, value] : body.items()) {
    bool known = false;
    for (const auto& f : t.fields) known = known || f.id == name;
    if (!known) return refuse(text::unknown_field(name));
  }
  return body;
}

/// The command message for an accepted request.
inline json make_command(action a, const content_type& t, const std::string& id, json body, std::string user,
                         const std::string& command_id) {
  return json{{"type", command_type(a, t)},
              {"body", std::move(body)},
              {"params", {{"id", id}}},
              {"meta", {{"user", std::move(user)}, {"commandId", command_id}, {"acceptedAt", now_ms()}}}};
}

} // namespace event_log
