#pragma once
// The settings file (the reference's shape): content types with their fields, and the two ports.
//
//   {"contentTypes":[{"name":"Entry","base":"entries","fields":[{"id":"title","type":"string",
//     "required":true},{"id":"heroImage","type":"string","linkType":"Asset"}, ...]}, ...],
//    "ports":{"commandApi":4000,"queryApi":4001}}
//
// Nothing in the pipeline names a content type: routes, command and event names, link rules all
// come from here, so another file with other types needs no code change.

#include <bulwark/error.hpp>
#include <bulwark/result.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace event_log {

/// A field's JSON type as the reference names it (JavaScript's typeof): string, number, boolean,
/// object.
struct field {
  std::string id;
  std::string type;
  bool required = false;
  /// The content type (its name) an id in this field must name; empty: not a link.
  std::string link_type;
};

struct content_type {
  std::string name; ///< "Entry": commands createEntry..., events entryCreated...
  std::string base; ///< "entries": the routes /entries and /entries/{id}
  std::vector<field> fields;
};

struct settings {
  std::vector<content_type> types;
  std::uint16_t command_port = 4000;
  std::uint16_t query_port = 4001;

  const content_type* by_base(std::string_view base) const {
    for (const auto& t : types)
      if (t.base == base) return &t;
    return nullptr;
  }
  const content_type* by_name(std::string_view name) const {
    for (const auto& t : types)
      if (t.name == name) return &t;
    return nullptr;
  }
};

namespace detail {

inline bool known_field_type(std::string_view t) {
  return t == "string" || t == "number" || t == "boolean" || t == "object";
}

inline bool is_route_segment(std::string_view s) {
  if (s.empty() || s == "commands") return false; // /commands/{id} is the query API's
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return false;
  return true;
}

} // namespace detail

/// The reference's settings, the default when no file is given (the same as settings.json beside
/// this directory; a test checks that the two agree).
inline constexpr std::string_view default_settings_json =
    R"json({"contentTypes":[{"name":"Entry","base":"entries","fields":[{"id":"title","type":"string","required":true},{"id":"heroImage","type":"string","linkType":"Asset","required":false},{"id":"description","type":"string","required":false}]},{"name":"Asset","base":"assets","fields":[{"id":"title","type":"string","required":true},{"id":"src","type":"string","required":true},{"id":"description","type":"string","required":false},{"id":"width","type":"number","required":true},{"id":"height","type":"number","required":false}]}], "ports":{"commandApi":4000,"queryApi":4001}})json";

/// Parses a settings document. Errors (errc::invalid_argument, with the reason): not JSON, no
/// content types, a type without name or base, two types with one name or base, a field type
/// other than string/number/boolean/object, a linkType naming no type.
inline bulwark::result<settings> parse_settings(std::string_view text) {
  using bulwark::errc;
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bulwark::error(errc::invalid_argument, "settings: not a JSON object");
  settings s;
  auto types = j.find("contentTypes");
  if (types == j.end() || !types->is_array() || types->empty())
    return bulwark::error(errc::invalid_argument, "settings: contentTypes must be a non-empty array");
  for (const auto& t : *types) {
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string() || !t.contains("base") ||
        !t["base"].is_string())
      return bulwark::error(errc::invalid_argument, "settings: every content type needs a name and a base");
    content_type ct{t["name"].get<std::string>(), t["base"].get<std::string>(), {}};
    if (ct.name.empty() || !detail::is_route_segment(ct.base))
      return bulwark::error(errc::invalid_argument, "settings: bad name or base in content type \"" + ct.name + "\"");
    if (s.by_name(ct.name) || s.by_base(ct.base))
      return bulwark::error(errc::invalid_argument, "settings: content type \"" + ct.name + "\" defined twice");
    if (t.contains("fields")) {
      if (!t["fields"].is_array())
        return bulwark::error(errc::invalid_argument, "settings: fields of \"" + ct.name + "\" must be an array");
      for (const auto& f : t["fields"]) {
        if (!f.is_object() || !f.contains("id") || !f["id"].is_string() || !f.contains("type") ||
            !f["type"].is_string() || !detail::known_field_type(f["type"].get<std::string>()))
          return bulwark::error(errc::invalid_argument,
                                "settings: a field of \"" + ct.name +
                                    "\" needs an id and a type (string, number, boolean or object)");
        field fd{f["id"].get<std::string>(), f["type"].get<std::string>(),
                 f.contains("required") && f["required"].is_boolean() && f["required"].get<bool>(), ""};
        if (f.contains("linkType")) {
          if (!f["linkType"].is_string() || fd.type != "string")
            return bulwark::error(errc::invalid_argument,
                                  "settings: linkType of \"" + fd.id + "\" needs a string field");
          fd.link_type = f["linkType"].get<std::string>();
        }
        ct.fields.push_back(std::move(fd));
      }
    }
    s.types.push_back(std::move(ct));
  }
  for (const auto& t : s.types)
    for (const auto& f : t.fields)
      if (!f.link_type.empty() && !s.by_name(f.link_type))
        return bulwark::error(errc::invalid_argument,
                              "settings: field \"" + f.id + "\" links to unknown type \"" + f.link_type + "\"");
  if (auto ports = j.find("ports"); ports != j.end() && ports->is_object()) {
    auto port = [&](const char* name, std::uint16_t& out) {
      if (auto p = ports->find(name); p != ports->end() && p->is_number_unsigned() && p->get<unsigned>() < 65536)
        out = static_cast<std::uint16_t>(p->get<unsigned>());
    };
    port("commandApi", s.command_port);
    port("queryApi", s.query_port);
  }
  return s;
}

/// parse_settings() of a file's content; errc::invalid_argument when it cannot be read.
inline bulwark::result<settings> load_settings(const std::string& path) {
  std::ifstream in(path);
  if (!in) return bulwark::error(bulwark::errc::invalid_argument, "settings: cannot read " + path);
  std::stringstream buf;
  buf << in.rdbuf();
  return parse_settings(buf.str());
}

} // namespace event_log
