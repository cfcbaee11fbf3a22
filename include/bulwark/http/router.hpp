#pragma once
// The router: method + path pattern -> handler, with middleware around every request.
//
// Patterns are literal segments and parameters: "/api/channel-metadata/{countryCode}" matches
// one non-empty segment into param("countryCode"); a final "{rest...}" matches the remaining
// path (possibly several segments). Parameter values are percent-decoded. Literal routes do not
// win over parameter routes by themselves: routes are tried in the order they were added.
//
// No route for the path -> 404; a route for the path but not the method -> 405 with an Allow
// header. HEAD is answered by the GET route when no HEAD route exists (the server sends the
// headers without the body).
//
// Middleware runs after matching (so it sees request::route, for metrics and logs) and around
// the handler, the 404 and the 405 alike; the first one added is the outermost.

#include <bulwark/http/handler.hpp>
#include <bulwark/http/message.hpp>
#include <bulwark/http/responses.hpp>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::http {

/// A layer around request handling: call `next(req)` to continue, or answer directly.
using middleware = std::function<task<response>(request&, const handler& next)>;

class router {
public:
  router() { build_chain(); }
  router(const router&) = delete;
  router& operator=(const router&) = delete;

  /// Adds a route. `pattern` starts with '/'.
  router& add(std::string method, std::string pattern, handler h) {
    route r;
    r.method = std::move(method);
    r.pattern = pattern;
    std::string_view p = pattern;
    if (!p.empty() && p.front() == '/') p.remove_prefix(1);
    while (true) {
      auto slash = p.find('/');
      std::string_view seg = p.substr(0, slash);
      segment s;
      if (seg.size() >= 2 && seg.front() == '{' && seg.back() == '}') {
        s.param = true;
        s.text = seg.substr(1, seg.size() - 2);
        if (s.text.size() > 3 && s.text.ends_with("...")) {
          s.text.resize(s.text.size() - 3);
          s.rest = true;
        }
      } else {
        s.text = seg;
      }
      r.segments.push_back(std::move(s));
      if (slash == std::string_view::npos) break;
      p.remove_prefix(slash + 1);
    }
    r.h = std::move(h);
    routes_.push_back(std::move(r));
    return *this;
  }
  router& get(std::string pattern, handler h) { return add("GET", std::move(pattern), std::move(h)); }
  router& post(std::string pattern, handler h) { return add("POST", std::move(pattern), std::move(h)); }
  router& put(std::string pattern, handler h) { return add("PUT", std::move(pattern), std::move(h)); }
  router& del(std::string pattern, handler h) { return add("DELETE", std::move(pattern), std::move(h)); }

  /// Adds a middleware; the first added runs first. Add all before serving (not thread-safe).
  router& use(middleware m) {
    middleware_.push_back(std::move(m));
    build_chain();
    return *this;
  }

  /// Routes one request (matching, then the middleware chain, then the handler).
  task<response> operator()(request& req) {
    match(req);
    return chain_(req);
  }

  /// A handler for the server that routes through this router (which must outlive the server).
  http::handler as_handler() {
    return [this](request& req) { return (*this)(req); };
  }

private:
  struct segment {
    std::string text;
    bool param = false;
    bool rest = false;
  };
  struct route {
    std::string method, pattern;
    std::vector<segment> segments;
    handler h;
  };

  static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  static std::string percent_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '%' && i + 2 < s.size() + 0 && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
        out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
        i += 2;
      } else {
        out.push_back(s[i]);
      }
    }
    return out;
  }

  // Whether `path` matches `r`, capturing parameters into `params`.
  static bool path_matches(const route& r, std::string_view path,
                           std::vector<std::pair<std::string, std::string>>* params) {
    if (path.empty() || path.front() != '/') return false;
    path.remove_prefix(1);
    for (std::size_t i = 0; i < r.segments.size(); ++i) {
      const auto& s = r.segments[i];
      if (s.rest) {
        if (path.empty()) return false;
        if (params) params->emplace_back(s.text, percent_decode(path));
        return true;
      }
      if (path.data() == nullptr) return false; // ran out of segments
      auto slash = path.find('/');
      std::string_view seg = path.substr(0, slash);
      if (s.param) {
        if (seg.empty()) return false;
        if (params) params->emplace_back(s.text, percent_decode(seg));
      } else if (seg != s.text) {
        return false;
      }
      if (slash == std::string_view::npos) {
        path = std::string_view(); // data() == nullptr marks "no more segments"
      } else {
        path.remove_prefix(slash + 1);
      }
    }
    return path.data() == nullptr;
  }

  void match(request& req) const {
    const auto path = req.path();
    int fallback = -1;
    for (std::size_t i = 0; i < routes_.size(); ++i) {
      const auto& r = routes_[i];
      const bool same = r.method == req.method;
      const bool head_via_get = req.method == "HEAD" && r.method == "GET";
      if (!same && !head_via_get) continue;
      if (!path_matches(r, path, nullptr)) continue;
      if (same) {
        fallback = static_cast<int>(i);
        break;
      }
      if (fallback < 0) fallback = static_cast<int>(i);
    }
    req.params.clear();
    if (fallback >= 0) {
      const auto& r = routes_[static_cast<std::size_t>(fallback)];
      path_matches(r, path, &req.params);
      req.route = r.pattern;
      req.route_id = fallback;
    } else {
      req.route.clear();
      req.route_id = -1;
    }
  }

  task<response> dispatch(request& req) {
    if (req.route_id >= 0) co_return co_await routes_[static_cast<std::size_t>(req.route_id)].h(req);
    // Which methods would have matched this path?
    std::string allow;
    const auto path = req.path();
    auto add_method = [&](std::string_view m) {
      for (std::string_view rest = allow; !rest.empty();) {
        auto comma = rest.find(", ");
        if (rest.substr(0, comma) == m) return;
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 2);
      }
      if (!allow.empty()) allow += ", ";
      allow += m;
    };
    for (const auto& r : routes_) {
      if (!path_matches(r, path, nullptr)) continue;
      add_method(r.method);
      if (r.method == "GET") add_method("HEAD");
    }
    if (allow.empty()) co_return error_response(404, "not_found", "no route for " + std::string(path));
    auto resp = error_response(405, "method_not_allowed", "method " + req.method + " not allowed");
    resp.headers.set("Allow", std::move(allow));
    co_return resp;
  }

  void build_chain() {
    handler next = [this](request& req) { return dispatch(req); };
    for (auto it = middleware_.rbegin(); it != middleware_.rend(); ++it) {
      next = [m = *it, inner = std::move(next)](request& req) { return m(req, inner); };
    }
    chain_ = std::move(next);
  }

  std::vector<route> routes_;
  std::vector<middleware> middleware_;
  handler chain_;
};

} // namespace bulwark::http
