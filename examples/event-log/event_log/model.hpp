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

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

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

namespace detail {
/// 8-4-4-4-12 lower-case hexadecimal of the 128 bits hi:lo.
inline std::string uuid_text(std::uint64_t hi, std::uint64_t lo) {
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
inline std::mt19937_64& uuid_generator() {
  thread_local std::mt19937_64 gen{
      std::random_device{}() ^ static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())};
  return gen;
}
} // namespace detail

/// A random (version 4) UUID; one generator per thread.
inline std::string new_uuid() {
  auto& gen = detail::uuid_generator();
  const std::uint64_t hi = (gen() & 0xffffffffffff0fffULL) | 0x4000ULL;
  const std::uint64_t lo = (gen() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return detail::uuid_text(hi, lo);
}

/// A time-ordered (version 7, RFC 9562) UUID: its first 48 bits are the milliseconds since the
/// epoch at `ms`, the rest random. Command ids are these, so the keys named after them
/// (decision:<cid>, status:<cid>) sort by age and the old ones are dropped from the front.
inline std::string new_uuid_v7(std::int64_t ms) {
  auto& gen = detail::uuid_generator();
  const std::uint64_t hi = (static_cast<std::uint64_t>(ms) << 16) | 0x7000ULL | (gen() & 0x0fffULL);
  const std::uint64_t lo = (gen() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return detail::uuid_text(hi, lo);
}

/// The milliseconds a version 7 UUID was made at; nullopt for another version or not a UUID.
inline std::optional<std::int64_t> uuid_v7_ms(std::string_view id) {
  if (!is_uuid(id) || id[14] != '7') return std::nullopt;
  std::int64_t ms = 0;
  for (char c : id.substr(0, 13)) {
    if (c == '-') continue;
    ms = ms * 16 + (c <= '9' ? c - '0' : c - 'a' + 10);
  }
  return ms;
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

/// A request body's JSON text as the command carries it: without a leading UTF-8 byte order mark,
/// which nlohmann_json skips and which would not be JSON inside the command.
inline std::string_view body_text(std::string_view body) {
  if (body.starts_with("\xEF\xBB\xBF")) body.remove_prefix(3);
  return body;
}

/// The body of a create or update, checked against `t`: a JSON object within `limits`, every
/// required field present, every present field of its type, no field the type does not define.
/// The error (errc::invalid_argument) carries the text of the 400 as its detail.
inline bulwark::result<json> check_body(const content_type& t, std::string_view text, body_limits limits = {}) {
  auto refuse = [](std::string why) { return bulwark::error(bulwark::errc::invalid_argument, std::move(why)); };
  if (text.size() > limits.max_bytes) return refuse(text::too_large(limits.max_bytes));
  if (nesting_depth(text) > limits.max_depth) return refuse(text::too_deep(limits.max_depth));
  // nlohmann_json ends its input at a NUL byte (what follows is not read), where the stages'
  // scanner reads on: a NUL is never part of valid JSON text, so such a body is not JSON.
  if (text.find('\0') != std::string_view::npos) return refuse(std::string(text::not_json));
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

/// One top-level member of a JSON object's text: its key (as written, between the quotes) and its
/// value's text.
struct raw_member {
  std::string_view key;
  std::string_view value;
};

namespace detail {

/// A strict scanner of JSON text (RFC 8259: strings and their escapes, numbers, literals,
/// nesting), which builds nothing: it finds where values begin and end.
class json_scanner {
public:
  explicit json_scanner(std::string_view text) : s_(text) {}

  /// The members of the object `s_` holds, each value's text as written; false when it is not
  /// exactly one valid JSON object (nested deeper than `max_depth` counts as not).
  bool object_members(std::vector<raw_member>& out, std::size_t max_depth) {
    ws();
    if (!eat('{')) return false;
    ws();
    if (eat('}')) return ws(), i_ == s_.size();
    for (;;) {
      ws();
      const std::size_t k = i_;
      if (!string()) return false;
      const std::string_view key = s_.substr(k + 1, i_ - k - 2);
      ws();
      if (!eat(':')) return false;
      ws();
      const std::size_t v = i_;
      if (!value(max_depth)) return false;
      out.push_back(raw_member{key, s_.substr(v, i_ - v)});
      ws();
      if (eat(',')) continue;
      if (!eat('}')) return false;
      ws();
      return i_ == s_.size();
    }
  }

private:
  bool eat(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  // The rest of a UTF-8 sequence whose first byte `c` was read (RFC 3629: no overlong form, no
  // surrogate, at most U+10FFFF), as nlohmann_json checks it.
  bool utf8_rest(unsigned char c) {
    struct lead {
      unsigned char from, to; // the first byte's range
      int more;               // bytes after it
      unsigned char lo, hi;   // the second byte's range
    };
    static constexpr lead leads[] = {{0xc2, 0xdf, 1, 0x80, 0xbf}, {0xe0, 0xe0, 2, 0xa0, 0xbf},
                                     {0xe1, 0xec, 2, 0x80, 0xbf}, {0xed, 0xed, 2, 0x80, 0x9f},
                                     {0xee, 0xef, 2, 0x80, 0xbf}, {0xf0, 0xf0, 3, 0x90, 0xbf},
                                     {0xf1, 0xf3, 3, 0x80, 0xbf}, {0xf4, 0xf4, 3, 0x80, 0x8f}};
    const auto* l =
        std::find_if(std::begin(leads), std::end(leads), [c](const lead& x) { return c >= x.from && c <= x.to; });
    if (l == std::end(leads)) return false;
    int more = l->more;
    unsigned char lo = l->lo, hi = l->hi;
    for (int k = 0; k < more; ++k, lo = 0x80, hi = 0xbf) {
      if (i_ >= s_.size()) return false;
      const auto b = static_cast<unsigned char>(s_[i_++]);
      if (b < lo || b > hi) return false;
    }
    return true;
  }
  // The value of the next four hex digits, -1 when they are not.
  int hex4() {
    int v = 0;
    for (int k = 0; k < 4; ++k, ++i_) {
      if (i_ >= s_.size()) return -1;
      const char c = s_[i_];
      const int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
      if (d < 0) return -1;
      v = v * 16 + d;
    }
    return v;
  }
  bool string() {
    if (!eat('"')) return false;
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_++]);
      if (c == '"') return true;
      if (c < 0x20) return false;
      if (c >= 0x80) {
        if (!utf8_rest(c)) return false;
        continue;
      }
      if (c != '\\') continue;
      if (i_ >= s_.size()) return false;
      const char e = s_[i_++];
      if (e == 'u') {
        // As nlohmann_json: a high surrogate only followed by an escaped low one, never a low
        // one alone.
        const int unit = hex4();
        if (unit < 0 || (unit >= 0xdc00 && unit <= 0xdfff)) return false;
        if (unit >= 0xd800 && unit <= 0xdbff) {
          if (!eat('\\') || !eat('u')) return false;
          const int low = hex4();
          if (low < 0xdc00 || low > 0xdfff) return false;
        }
      } else if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
        return false;
      }
    }
    return false;
  }
  bool digits() {
    const std::size_t from = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    return i_ > from;
  }
  bool number() {
    const std::size_t from = i_;
    if (!number_syntax()) return false;
    // A number too large for a double is an error to nlohmann_json ("number overflow"), one too
    // small reads as 0. Only long numbers or ones with an exponent can be either: those are
    // read (strtod, as nlohmann_json does), the usual short ones are not.
    const std::string_view n = s_.substr(from, i_ - from);
    if (n.size() <= 300 && n.find_first_of("eE") == std::string_view::npos) return true;
    const std::string copy(n);
    return std::isfinite(std::strtod(copy.c_str(), nullptr));
  }
  bool number_syntax() {
    eat('-');
    if (eat('0')) {
      if (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') return false;
    } else if (!digits()) {
      return false;
    }
    if (eat('.') && !digits()) return false;
    if (eat('e') || eat('E')) {
      if (!eat('+')) eat('-');
      if (!digits()) return false;
    }
    return true;
  }
  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }
  bool value(std::size_t depth) {
    if (i_ >= s_.size()) return false;
    switch (s_[i_]) {
    case '"': return string();
    case 't': return literal("true");
    case 'f': return literal("false");
    case 'n': return literal("null");
    case '{':
    case '[': {
      if (depth == 0) return false;
      const char close = s_[i_] == '{' ? '}' : ']';
      ++i_;
      ws();
      if (eat(close)) return true;
      for (;;) {
        ws();
        if (close == '}') {
          if (!string()) return false;
          ws();
          if (!eat(':')) return false;
          ws();
        }
        if (!value(depth - 1)) return false;
        ws();
        if (eat(',')) continue;
        return eat(close);
      }
    }
    default: return number();
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

} // namespace detail

/// The top-level members of the JSON object `text`, values as written (nothing parsed into a
/// tree, nothing copied); nullopt when `text` is not exactly one valid JSON object within
/// `max_depth` levels. The stages read the few fields they need from a message this way.
inline std::optional<std::vector<raw_member>> object_members(std::string_view text, std::size_t max_depth = 64) {
  std::vector<raw_member> out;
  out.reserve(8);
  if (!detail::json_scanner(text).object_members(out, max_depth)) return std::nullopt;
  return out;
}

/// The value's text of the member `key` of `members` (the last one, as a parser keeps), if any.
inline std::optional<std::string_view> member(const std::vector<raw_member>& members, std::string_view key) {
  for (auto it = members.rbegin(); it != members.rend(); ++it)
    if (it->key == key) return it->value;
  return std::nullopt;
}

/// The string a JSON string's text holds, when it has no escape (the ids, names and types the
/// stages read have none); nullopt otherwise (the caller parses it).
inline std::optional<std::string_view> plain_string(std::string_view value) {
  if (value.size() < 2 || value.front() != '"' || value.back() != '"') return std::nullopt;
  value = value.substr(1, value.size() - 2);
  if (value.find('\\') != std::string_view::npos) return std::nullopt;
  return value;
}

/// The integer a JSON number's text holds, when it is one (no fraction or exponent).
inline std::optional<std::int64_t> plain_integer(std::string_view value) {
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || end != value.data() + value.size()) return std::nullopt;
  return n;
}

/// The integer member `key` of the JSON object `text` (a record's "version"), read without
/// building a tree; nlohmann_json's reading when it is written in another way (an exponent).
inline std::int64_t integer_member(std::string_view text, std::string_view key) {
  auto members = object_members(text);
  if (auto v = members ? member(*members, key) : std::nullopt)
    if (auto n = plain_integer(*v)) return *n;
  return json::parse(text)[std::string(key)].template get<std::int64_t>();
}

/// make_command(...).dump() written directly, `body` (a JSON object's text) as it is.
inline std::string command_text(action a, const content_type& t, std::string_view id, std::string_view body,
                                std::string_view user, std::string_view command_id) {
  std::string out;
  out.reserve(body.size() + 200);
  out.append(R"({"body":)").append(body).append(R"(,"meta":{"acceptedAt":)").append(std::to_string(now_ms()));
  out.append(R"(,"commandId":")")
      .append(command_id)
      .append(R"(","user":)")
      .append(json(user).dump(-1, ' ', false, json::error_handler_t::replace)); // a header is any bytes
  out.append(R"(},"params":{"id":")").append(id).append(R"("},"type":)").append(json(command_type(a, t)).dump());
  out.append("}");
  return out;
}

/// The command message for an accepted request.
inline json make_command(action a, const content_type& t, const std::string& id, const json& body,
                         const std::string& user, const std::string& command_id) {
  return json::parse(command_text(a, t, id, body.dump(), user, command_id));
}

} // namespace event_log
