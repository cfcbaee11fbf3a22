#pragma once
// Content negotiation (RFC 9110 §12.5.1): which of the media types a route can answer with the
// request's Accept header prefers. One route can then serve a page to a browser and JSON to
// everything else.

#include <bulwark/http/message.hpp>
#include <bulwark/http/parser.hpp> // detail::trim_ows

#include <cstdlib>
#include <initializer_list>
#include <string>
#include <string_view>

namespace bulwark::http {

namespace detail {

// The quality Accept gives `type` ("text/html"): that of the most specific matching range
// (type/subtype over type/* over */*), 0 when none matches; 1 with no Accept at all.
inline double quality_of(std::string_view accept, std::string_view type) {
  const auto slash = type.find('/');
  int best_specificity = -1;
  double best = 0;
  while (!accept.empty()) {
    const auto comma = accept.find(',');
    std::string_view range = accept.substr(0, comma);
    accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
    double q = 1;
    const auto semi = range.find(';');
    if (semi != std::string_view::npos) {
      std::string_view params = range.substr(semi + 1);
      range = range.substr(0, semi);
      while (!params.empty()) {
        const auto next = params.find(';');
        const std::string_view p = trim_ows(params.substr(0, next));
        params = next == std::string_view::npos ? std::string_view() : params.substr(next + 1);
        if (p.size() > 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=')
          q = std::strtod(std::string(p.substr(2)).c_str(), nullptr);
      }
    }
    range = trim_ows(range);
    int specificity = -1;
    if (range == "*/*")
      specificity = 0;
    else if (range.size() == slash + 2 && range.ends_with("/*") &&
             http::iequals(range.substr(0, slash), type.substr(0, slash)))
      specificity = 1;
    else if (http::iequals(range, type))
      specificity = 2;
    if (specificity > best_specificity) {
      best_specificity = specificity;
      best = q;
    }
  }
  return best_specificity < 0 ? 0 : best;
}

} // namespace detail

/// The first of `offered` with the highest quality in the request's Accept header (no Accept:
/// the first offered), or an empty view when Accept refuses them all (the caller answers 406).
/// Ties go to the earlier one: offer the default first.
inline std::string_view preferred_type(const request& req, std::initializer_list<std::string_view> offered) {
  const auto accept = req.headers.get("Accept");
  if (!accept || detail::trim_ows(*accept).empty()) return offered.size() ? *offered.begin() : std::string_view();
  std::string_view chosen;
  double best = 0;
  for (auto type : offered) {
    const double q = detail::quality_of(*accept, type);
    if (q > best) {
      best = q;
      chosen = type;
    }
  }
  return chosen;
}

} // namespace bulwark::http
