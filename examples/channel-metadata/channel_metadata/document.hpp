#pragma once
// The channel metadata document: strict parsing and validation of a request body against the
// contract, and the canonical serialization that is stored and returned.
//
//   {"countryCode": "GB",
//    "metadata": [{"name": "AT One", "language": "English", "type": "News"}],
//    "product": "exampleProduct"}
//
// Checks run in this order, the first failure answering: body size (CMS-0004), the path's
// country code (CMS-0004), JSON syntax (CMS-0007 malformed), shape: unknown or repeated field,
// wrong type, too deep (CMS-0007 mismatch), missing or blank fields and empty metadata
// (CMS-0001, every failing field listed), the body's countryCode against the path's (CMS-0004).

#include <channel_metadata/errors.hpp>

#include <boost/outcome/basic_result.hpp>
#include <boost/outcome/policy/terminate.hpp>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace channel_metadata {

/// A value or the contract error to answer with.
template <class T> using cms_result =
    boost::outcome_v2::basic_result<T, cms_error, boost::outcome_v2::policy::terminate>;

struct channel {
  std::string name;
  std::string language;
  std::string type;
  bool operator==(const channel&) const = default;
};

struct document {
  std::string country_code; ///< two upper-case ASCII letters once parsed against a path
  std::vector<channel> metadata;
  std::string product;
  bool operator==(const document&) const = default;
};

struct parse_limits {
  /// Larger bodies are refused before parsing (CMS-0004). A document of 200 channels with
  /// 100-byte names stays well under it.
  std::size_t max_body_bytes = 64 * 1024;
};

namespace detail {

inline bool is_ascii_letter(char c) noexcept { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

/// Blank as Java's String.isBlank() sees ASCII text: empty or only whitespace.
inline bool is_blank(std::string_view s) noexcept {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\n' && c != '\v' && c != '\f' && c != '\r') return false;
  return true;
}

inline std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

/// Parses `body` as JSON: nullopt when it is not JSON. Sets `shape_error` for what JSON allows
/// but the document cannot have: a key repeated in one object (nlohmann would keep the last one
/// silently) or nesting deeper than the document's. Cost: one pass; memory bounded by the body
/// size limit checked before.
inline std::optional<nlohmann::json> parse_json(std::string_view body, bool& shape_error) {
  constexpr int max_depth = 3; // document -> metadata array -> channel object
  std::vector<std::set<std::string>> keys;
  using event = nlohmann::json::parse_event_t;
  auto callback = [&](int depth, event ev, nlohmann::json& parsed) {
    switch (ev) {
    case event::object_start:
    case event::array_start:
      if (depth >= max_depth) shape_error = true;
      if (ev == event::object_start) keys.emplace_back();
      break;
    case event::object_end: keys.pop_back(); break;
    case event::key:
      if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second) shape_error = true;
      break;
    default: break;
    }
    // Keep everything: whether the body parses at all decides between the two CMS-0007 texts.
    return true;
  };
  auto parsed = nlohmann::json::parse(body.begin(), body.end(), callback, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return std::nullopt;
  return parsed;
}

/// Reads string member `name` of `object` into `out`: a missing or null member or a blank
/// string is a validation failure (listed in `fails` under `path`), any other type a shape error.
inline bool read_text(const nlohmann::json& object, const char* name, const std::string& path, std::string& out,
                      std::vector<field_error>& fails) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) {
    fails.push_back({path, "must not be null"});
    return true;
  }
  if (!it->is_string()) return false;
  out = it->get<std::string>();
  if (is_blank(out)) fails.push_back({path, "must not be blank"});
  return true;
}

} // namespace detail

/// Checks a path's country code (two ASCII letters) and returns it upper-cased.
/// Errors: 400 CMS-0004. Cost: none beyond the copy.
inline cms_result<std::string> parse_country_code(std::string_view path_code) {
  if (path_code.size() != 2 || !detail::is_ascii_letter(path_code[0]) || !detail::is_ascii_letter(path_code[1]))
    return errors::bad_request("Invalid country code in the path: expected two letters (ISO 3166-1 alpha-2)");
  return detail::upper(path_code);
}

/// 400 CMS-0004 for a body over the limit (the contract has no code of its own for it).
inline std::optional<cms_error> check_body_size(std::string_view body, const parse_limits& limits) {
  if (body.size() <= limits.max_body_bytes) return std::nullopt;
  return errors::bad_request("Request body too large: " + std::to_string(body.size()) + " bytes, the limit is " +
                             std::to_string(limits.max_body_bytes));
}

/// Parses and validates a document body on its own (no path): what a stored value is checked
/// with. Errors: CMS-0004 (size), CMS-0007, CMS-0001 (see the header). Cost: one JSON parse.
inline cms_result<document> parse_document(std::string_view body, const parse_limits& limits = {}) {
  if (auto too_large = check_body_size(body, limits)) return *too_large;
  bool shape_error = false;
  auto parsed = detail::parse_json(body, shape_error);
  if (!parsed) return errors::malformed_json(); // whatever its shape: not JSON is the first thing to say
  if (shape_error || !parsed->is_object()) return errors::field_mismatch();
  const auto& j = *parsed;
  for (auto it = j.begin(); it != j.end(); ++it)
    if (it.key() != "countryCode" && it.key() != "metadata" && it.key() != "product") return errors::field_mismatch();

  document doc;
  std::vector<field_error> fails;
  if (!detail::read_text(j, "countryCode", "countryCode", doc.country_code, fails)) return errors::field_mismatch();
  const auto meta = j.find("metadata");
  if (meta == j.end() || meta->is_null()) {
    fails.push_back({"metadata", "must not be null"});
  } else if (!meta->is_array()) {
    return errors::field_mismatch();
  } else if (meta->empty()) {
    fails.push_back({"metadata", "must not be empty"});
  } else {
    for (std::size_t i = 0; i < meta->size(); ++i) {
      const auto& entry = (*meta)[i];
      const std::string at = "metadata[" + std::to_string(i) + "]";
      if (entry.is_null()) {
        fails.push_back({at, "must not be null"});
        continue;
      }
      if (!entry.is_object()) return errors::field_mismatch();
      for (auto it = entry.begin(); it != entry.end(); ++it)
        if (it.key() != "name" && it.key() != "language" && it.key() != "type") return errors::field_mismatch();
      channel c;
      if (!detail::read_text(entry, "name", at + ".name", c.name, fails) ||
          !detail::read_text(entry, "language", at + ".language", c.language, fails) ||
          !detail::read_text(entry, "type", at + ".type", c.type, fails))
        return errors::field_mismatch();
      doc.metadata.push_back(std::move(c));
    }
  }
  if (!detail::read_text(j, "product", "product", doc.product, fails)) return errors::field_mismatch();
  if (!fails.empty()) return errors::validation(std::move(fails));
  return doc;
}

/// Parses the body of `POST /api/channel-metadata/{path_code}`: the path's code must be two
/// ASCII letters and the body's countryCode, upper-cased, must equal it. The result's
/// country_code is the upper-cased path code (the key). Errors: CMS-0004, CMS-0007, CMS-0001.
inline cms_result<document> parse_request(std::string_view path_code, std::string_view body,
                                          const parse_limits& limits = {}) {
  if (auto too_large = check_body_size(body, limits)) return *too_large;
  auto key = parse_country_code(path_code);
  if (!key) return key.error();
  auto doc = parse_document(body, limits);
  if (!doc) return doc.error();
  if (detail::upper(doc.value().country_code) != key.value())
    return errors::bad_request("countryCode in the body (" + doc.value().country_code +
                               ") does not match the path's country code (" + key.value() + ")");
  doc.value().country_code = std::move(key).value();
  return doc;
}

/// The canonical form, stored and returned: members in the contract's order, no whitespace.
/// parse_document(serialize(d)) == d for every document parse_document returned.
inline std::string serialize(const document& d) {
  nlohmann::ordered_json meta = nlohmann::ordered_json::array();
  for (const auto& c : d.metadata) meta.push_back({{"name", c.name}, {"language", c.language}, {"type", c.type}});
  return nlohmann::ordered_json{{"countryCode", d.country_code}, {"metadata", std::move(meta)}, {"product", d.product}}
      .dump();
}

} // namespace channel_metadata
