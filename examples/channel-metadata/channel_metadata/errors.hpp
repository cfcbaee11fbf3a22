#pragma once
// The channel-metadata services' error answers: cms_error (status, code, message, details), its
// JSON body and HTTP response, the constructors for each contract error, and the one mapping
// from bulwark errors to them.

#include <channel_metadata/texts.hpp>

#include <bulwark/error.hpp>
#include <bulwark/http/message.hpp>
#include <bulwark/http/responses.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace channel_metadata {

/// One field that failed validation: its path in the document ("metadata[0].name") and why.
struct field_error {
  std::string field;
  std::string message;
  bool operator==(const field_error&) const = default;
};

/// An error as a client sees it: HTTP status, contract code ("CMS-0001"), message, and for
/// validation errors the fields that failed.
struct cms_error {
  int status = 500;
  std::string code;
  std::string message;
  std::vector<field_error> details;

  /// {"errorCode": code, "message": message} plus "details": [{"field", "message"}] when any.
  nlohmann::ordered_json body() const {
    nlohmann::ordered_json j{{"errorCode", code}, {"message", message}};
    if (!details.empty()) {
      auto& d = j["details"] = nlohmann::ordered_json::array();
      for (const auto& f : details) d.push_back({{"field", f.field}, {"message", f.message}});
    }
    return j;
  }
  /// The HTTP answer: status, JSON body, and Retry-After on a 503 (the same hint bulwark's own
  /// error answers give).
  bulwark::http::response response() const {
    bulwark::http::response r(status, "application/json", body().dump());
    if (status == 503) r.headers.set("Retry-After", std::string(bulwark::http::retry_after_seconds));
    return r;
  }
};

namespace errors {

inline cms_error make(int status, std::string_view code, std::string message, std::vector<field_error> details = {}) {
  return cms_error{status, std::string(code), std::move(message), std::move(details)};
}

/// 400 CMS-0001: fields failed validation (blank, missing, empty metadata).
inline cms_error validation(std::vector<field_error> details) {
  std::string message = "Validation failed:";
  for (std::size_t i = 0; i < details.size(); ++i)
    message += (i ? "; " : " ") + details[i].field + " " + details[i].message;
  return make(400, text::validation_code, std::move(message), std::move(details));
}
/// 409 CMS-0002 `Timeout occurred`.
inline cms_error timeout() { return make(409, text::timeout_code, std::string(text::timeout)); }
/// 404 CMS-0003 `Failed to find item`.
inline cms_error not_found() { return make(404, text::not_found_code, std::string(text::not_found)); }
/// 400 CMS-0004: bad request data (the path's country code, a body/path mismatch, the size).
inline cms_error bad_request(std::string message) { return make(400, text::bad_request_code, std::move(message)); }
/// 400 CMS-0007 `Malformed JSON request`: the body is not JSON.
inline cms_error malformed_json() { return make(400, text::json_code, std::string(text::malformed_json)); }
/// 400 CMS-0007 `JSON field mismatch or invalid data structure`: unknown field or wrong type.
inline cms_error field_mismatch() { return make(400, text::json_code, std::string(text::field_mismatch)); }
/// 500 CMS-0008 `An unexpected error occurred: <reason>`.
inline cms_error unexpected(std::string_view reason) {
  return make(500, text::unexpected_code, std::string(text::unexpected_prefix) + std::string(reason));
}
/// 503: a write that could be kept neither in the database nor as a pending cached write.
inline cms_error not_kept(std::string_view reason) {
  return make(503, text::not_kept_code, std::string(text::not_kept) + std::string(reason));
}

} // namespace errors

/// What the failed operation was: a refused write that could be kept nowhere is a 503 (the
/// client should retry it), while a read that fails unexpectedly is a plain 500.
enum class operation { read, write };

/// The contract error for a bulwark error: timeout -> 409 CMS-0002; not_found -> 404 CMS-0003;
/// for a write, unavailable / circuit_open / rejected (nothing could take it) -> 503; anything
/// else -> 500 CMS-0008 with the error's message as the reason.
inline cms_error from_bulwark(const bulwark::error& e, operation op) {
  switch (e.condition()) {
  case bulwark::errc::timeout: return errors::timeout();
  case bulwark::errc::not_found: return errors::not_found();
  case bulwark::errc::unavailable:
  case bulwark::errc::circuit_open:
  case bulwark::errc::rejected:
    if (op == operation::write) return errors::not_kept(e.message());
    break;
  default: break;
  }
  return errors::unexpected(e.message());
}

/// CMS `POST /api/channel-metadata/force-update-all` failure: 500 text `Failed to update database: <reason>`.
inline bulwark::http::response force_update_failed(std::string_view reason) {
  return bulwark::http::text(500, std::string(text::force_update_failed_prefix) + std::string(reason));
}

namespace crs {

/// CRS `GET /trigger-cache-retry` success: 200 {"statusCode":"CRS-1000","message":...}.
inline bulwark::http::response trigger_accepted() {
  return bulwark::http::response(
      200, "application/json",
      nlohmann::ordered_json{{"statusCode", text::trigger_code}, {"message", text::trigger_accepted}}.dump());
}
/// CRS `GET /get-downtime-logs` failure: 409 {"errorCode":"CRS-0002","message":"Failed to fetch downtime logs"}.
inline bulwark::http::response downtime_failed() {
  return bulwark::http::response(
      409, "application/json",
      nlohmann::ordered_json{{"errorCode", text::downtime_failed_code}, {"message", text::downtime_failed}}.dump());
}

} // namespace crs

/// The two 401 shapes the contract fixes (CMS and CRS's /get-downtime-logs: text; CRS's
/// /trigger-cache-retry: JSON with a string statusCode).
enum class unauthorized_shape { text, json };

/// 401 with the contract's body and `WWW-Authenticate: Basic realm="<realm>"`.
inline bulwark::http::response unauthorized(unauthorized_shape shape, std::string_view realm) {
  auto r = shape == unauthorized_shape::text
               ? bulwark::http::text(401, std::string(text::unauthorized))
               : bulwark::http::response(
                     401, "application/json",
                     nlohmann::ordered_json{{"statusCode", "401"}, {"message", text::unauthorized}}.dump());
  r.headers.set("WWW-Authenticate", "Basic realm=\"" + std::string(realm) + "\"");
  return r;
}

} // namespace channel_metadata
