#pragma once
// HTTP Basic with the contract's 401 answers. The credential check is bulwark's basic_auth
// (constant-time comparison); this only decides which routes it guards and replaces its 401
// body ({"error":"unauthorized",...}) with the text or JSON shape the contract fixes.

#include <channel_metadata/errors.hpp>

#include <bulwark/http/middleware.hpp>
#include <bulwark/http/router.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace channel_metadata {

/// Which answer a request without valid credentials gets; nullopt: the route is public.
using auth_guard = std::function<std::optional<unauthorized_shape>(const bulwark::http::request&)>;

/// CMS: every `/api/...` route is guarded and refused with the text 401.
inline std::optional<unauthorized_shape> cms_guard(const bulwark::http::request& req) {
  if (req.path().starts_with("/api/")) return unauthorized_shape::text;
  return std::nullopt;
}

/// CRS: `/trigger-cache-retry` refuses with the JSON 401, `/get-downtime-logs` with the text one;
/// the /private routes are public.
inline std::optional<unauthorized_shape> crs_guard(const bulwark::http::request& req) {
  if (req.path() == "/trigger-cache-retry") return unauthorized_shape::json;
  if (req.path() == "/get-downtime-logs") return unauthorized_shape::text;
  return std::nullopt;
}

/// Middleware: HTTP Basic against `users` (name -> password) on the routes `guard` names,
/// answering a refusal with the contract's 401 (and WWW-Authenticate: Basic realm="<realm>").
/// Cost: one base64 decode and a constant-time comparison per user on guarded routes.
inline bulwark::http::middleware contract_basic_auth(std::map<std::string, std::string> users, std::string realm,
                                                     auth_guard guard) {
  auto check = std::make_shared<const bulwark::http::middleware>(bulwark::http::basic_auth(std::move(users), realm));
  return [check, realm = std::move(realm),
          guard = std::move(guard)](bulwark::http::request& req,
                                    const bulwark::http::handler& next) -> bulwark::task<bulwark::http::response> {
    const auto shape = guard(req);
    if (!shape) co_return co_await next(req);
    // basic_auth either calls next (credentials accepted) or answers itself: only the latter
    // is its refusal, so a 401 the handler itself returned passes through untouched.
    bool admitted = false;
    const bulwark::http::handler through = [&](bulwark::http::request& r) -> bulwark::task<bulwark::http::response> {
      admitted = true;
      co_return co_await next(r);
    };
    auto answer = co_await (*check)(req, through);
    if (!admitted) co_return unauthorized(*shape, realm);
    co_return answer;
  };
}

} // namespace channel_metadata
