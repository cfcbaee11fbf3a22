#pragma once
// The URLs loadgen sends to: "http://host[:port]/path?query", where the path and query may hold
// parameters expanded afresh for every request:
//   {random:A..B}   a uniformly drawn integer in [A, B]
//   {seq:A..B}      A, A+1, ... B, then A again (one counter per parameter)
// and "{{" / "}}" for literal braces. Everything else is sent as written.
//
// parse_url checks a URL once (scheme, host, port, template syntax) with an error that says
// what is wrong; expand() then only appends, so a template costs nothing when it has no
// parameters.

#include <bulwark/error.hpp>
#include <bulwark/result.hpp>

#include <charconv>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace loadgen {

/// A request target with parameters ("/orders/checkout/{random:0..99999}"), parsed once.
class target_template {
public:
  enum class kind { literal, random, sequence };
  struct piece {
    kind what = kind::literal;
    std::string text;      ///< literal text
    std::int64_t low = 0;  ///< parameter range, inclusive
    std::int64_t high = 0; ///< parameter range, inclusive
  };

  /// Parses `text`; errc::invalid_argument naming the bad parameter when malformed.
  static bulwark::result<target_template> parse(std::string_view text) {
    target_template t;
    std::string literal;
    for (std::size_t i = 0; i < text.size();) {
      const char c = text[i];
      if (c == '}') {
        if (i + 1 < text.size() && text[i + 1] == '}') {
          literal.push_back('}');
          i += 2;
          continue;
        }
        return bad(text, "an unmatched '}' (write '}}' for a literal brace)");
      }
      if (c != '{') {
        literal.push_back(c);
        ++i;
        continue;
      }
      if (i + 1 < text.size() && text[i + 1] == '{') {
        literal.push_back('{');
        i += 2;
        continue;
      }
      const auto close = text.find('}', i);
      if (close == std::string_view::npos) return bad(text, "an unclosed '{'");
      auto parameter = parse_parameter(text.substr(i + 1, close - i - 1));
      if (!parameter) return bad(text, std::string(parameter.error().detail()));
      if (!literal.empty()) t.pieces_.push_back({kind::literal, std::move(literal)});
      literal.clear();
      t.pieces_.push_back(std::move(parameter).value());
      i = close + 1;
    }
    if (!literal.empty()) t.pieces_.push_back({kind::literal, std::move(literal)});
    t.counters_.assign(t.pieces_.size(), 0);
    return t;
  }

  /// Appends one expansion to `out`, drawing random parameters from `random`.
  template <class Random> void expand(std::string& out, Random& random) {
    for (std::size_t i = 0; i < pieces_.size(); ++i) {
      const piece& p = pieces_[i];
      switch (p.what) {
      case kind::literal: out.append(p.text); break;
      case kind::random: {
        std::uniform_int_distribution<std::int64_t> pick(p.low, p.high);
        append_int(out, pick(random));
        break;
      }
      case kind::sequence: {
        const auto span = static_cast<std::uint64_t>(p.high - p.low) + 1; // 0 when the range is all of int64
        const std::uint64_t n = counters_[i]++;
        append_int(out, p.low + static_cast<std::int64_t>(span == 0 ? n : n % span));
        break;
      }
      }
    }
  }

  /// Whether every expansion is the same text (no parameters).
  bool fixed() const noexcept {
    for (const auto& p : pieces_)
      if (p.what != kind::literal) return false;
    return true;
  }
  const std::vector<piece>& pieces() const noexcept { return pieces_; }

private:
  static bulwark::error bad(std::string_view text, const std::string& why) {
    return bulwark::error(bulwark::errc::invalid_argument, "bad URL template '" + std::string(text) + "': " + why);
  }

  static bool parse_int(std::string_view s, std::int64_t& v) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && p == s.data() + s.size() && !s.empty();
  }

  // "random:0..99999" or "seq:1..10".
  static bulwark::result<piece> parse_parameter(std::string_view body) {
    const auto colon = body.find(':');
    const std::string_view name = body.substr(0, colon);
    piece p;
    if (name == "random") {
      p.what = kind::random;
    } else if (name == "seq") {
      p.what = kind::sequence;
    } else {
      return bulwark::error(bulwark::errc::invalid_argument,
                            "unknown parameter '{" + std::string(body) + "}' (known: {random:A..B}, {seq:A..B})");
    }
    if (colon == std::string_view::npos)
      return bulwark::error(bulwark::errc::invalid_argument,
                            "'{" + std::string(name) + "}' needs a range, like {" + std::string(name) + ":0..99}");
    const std::string_view range = body.substr(colon + 1);
    const auto dots = range.find("..");
    if (dots == std::string_view::npos || !parse_int(range.substr(0, dots), p.low) ||
        !parse_int(range.substr(dots + 2), p.high))
      return bulwark::error(bulwark::errc::invalid_argument,
                            "'{" + std::string(body) + "}': the range must be two integers, A..B");
    if (p.low > p.high)
      return bulwark::error(bulwark::errc::invalid_argument,
                            "'{" + std::string(body) + "}': the range is empty (A > B)");
    return p;
  }

  static void append_int(std::string& out, std::int64_t v) {
    char buf[24];
    auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, p);
  }

  std::vector<piece> pieces_;
  std::vector<std::uint64_t> counters_;
};

/// A parsed URL: where to connect, and the target to send (possibly a template).
struct url {
  std::string text; ///< as given
  std::string host;
  std::uint16_t port = 80;
  target_template target;
};

/// Parses "http://host[:port][/path][?query]" (also "[v6]:port"); errc::invalid_argument with
/// the reason otherwise. "https://" is refused (the client speaks plain HTTP/1.1).
inline bulwark::result<url> parse_url(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return bulwark::error(bulwark::errc::invalid_argument, "bad URL '" + std::string(text) + "': " + why);
  };
  constexpr std::string_view scheme = "http://";
  std::string_view rest = text;
  if (rest.starts_with("https://")) return bad("https is not supported (plain HTTP/1.1 only)");
  if (rest.starts_with(scheme)) {
    rest.remove_prefix(scheme.size());
  } else if (rest.find("://") != std::string_view::npos) {
    return bad("only http:// URLs are supported");
  }
  const auto slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  std::string target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (target.front() == '?') target.insert(target.begin(), '/');
  if (authority.find('@') != std::string_view::npos) return bad("put credentials in --user, not in the URL");
  url u;
  u.text = std::string(text);
  std::string_view port;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("an unclosed '[' in the host");
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("expected ':port' after ']'");
      port = after.substr(1);
      if (port.empty()) return bad("an empty port");
    }
  } else {
    const auto colon = authority.find(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return bad("an empty port");
    }
  }
  if (u.host.empty()) return bad("no host");
  if (!port.empty()) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (ec != std::errc() || p != port.data() + port.size() || v == 0 || v > 65535)
      return bad("the port must be 1..65535");
    u.port = static_cast<std::uint16_t>(v);
  }
  auto parsed = target_template::parse(target);
  if (!parsed) return parsed.error();
  u.target = std::move(parsed).value();
  return u;
}

} // namespace loadgen
