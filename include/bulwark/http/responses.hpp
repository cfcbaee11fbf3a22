#pragma once
// Response helpers: JSON and text bodies, and the mapping from bulwark errors to statuses.

#include <bulwark/error.hpp>
#include <bulwark/http/message.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace bulwark::http {

/// A response with a JSON body (Content-Type: application/json). A string that is not valid
/// UTF-8 (an error message quoting a backend's bytes) has each bad byte replaced by U+FFFD
/// rather than failing the answer.
inline response json(int status, const nlohmann::json& body) {
  return response(status, "application/json", body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}
/// A 200 response with a JSON body.
inline response json(const nlohmann::json& body) { return json(200, body); }
/// A response with a UTF-8 plain text body.
inline response text(int status, std::string body) {
  return response(status, "text/plain; charset=utf-8", std::move(body));
}

/// The status a handler error is answered with; the one place that maps codes to statuses
/// (docs/errors.md lists it).
///   not_found 404; conflict and duplicate 409; declined 422 (understood, refused by the rules);
///   invalid_argument 400; too_large 413; timeout 504; protocol_error 502 (a backend broke its
///   protocol); unavailable, circuit_open, rejected and cancelled 503 (try again later: overload,
///   stopping, a dependency down); anything else 500.
/// `rejected` is 503, not 403: the requests it covers (a full bulkhead or queue, a component
/// stopping, a backend refusing the *service's* credentials) are no fault of the caller's
/// credentials. The auth middleware answers 401/403 about the caller's own credentials itself.
constexpr int status_for(errc e) noexcept {
  switch (e) {
  case errc::not_found: return 404;
  case errc::conflict:
  case errc::duplicate: return 409;
  case errc::declined: return 422;
  case errc::invalid_argument: return 400;
  case errc::too_large: return 413;
  case errc::timeout: return 504;
  case errc::unavailable:
  case errc::circuit_open:
  case errc::rejected:
  case errc::cancelled: return 503;
  case errc::protocol_error: return 502;
  }
  return 500;
}

/// The Retry-After (seconds) sent with every 503 that error_response() builds: each of them is
/// temporary, and a short fixed hint keeps well-behaved clients from retrying in a tight loop.
inline constexpr std::string_view retry_after_seconds = "1";

/// The JSON body every error answer carries: {"error": "<code name>", "message": "..."}.
inline response error_response(int status, std::string_view code, std::string_view message) {
  return json(status, nlohmann::json{{"error", code}, {"message", message}});
}

/// The answer for a handler's error: status from status_for(), body naming the code, and
/// Retry-After on a 503.
inline response error_response(const error& e) {
  const errc cond = e.condition();
  const std::string_view name = cond == errc{} ? std::string_view("internal") : to_string(cond);
  auto resp = error_response(status_for(cond), name, e.message());
  if (resp.status == 503) resp.headers.set("Retry-After", std::string(retry_after_seconds));
  return resp;
}

} // namespace bulwark::http
