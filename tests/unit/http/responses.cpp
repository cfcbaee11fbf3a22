// The one mapping from bulwark conditions to HTTP statuses (http/responses.hpp).
#include <bulwark/http/responses.hpp>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>

namespace http = bulwark::http;
using bulwark::errc;

namespace {
// A backend category whose auth refusal maps onto rejected, as MySQL 1045, Redis auth_failed
// and Kafka's authorization failures do.
constexpr std::array<bulwark::error_row, 1> backend_rows{
    {{1045, "ER_ACCESS_DENIED_ERROR", "access denied", errc::rejected}}};
const std::error_category& backend_category() {
  static const bulwark::table_category instance("backend", backend_rows);
  return instance;
}
} // namespace

TEST(http_responses, every_condition_has_its_status) {
  EXPECT_EQ(http::status_for(errc::not_found), 404);
  EXPECT_EQ(http::status_for(errc::conflict), 409);
  EXPECT_EQ(http::status_for(errc::duplicate), 409);
  EXPECT_EQ(http::status_for(errc::declined), 422);
  EXPECT_EQ(http::status_for(errc::invalid_argument), 400);
  EXPECT_EQ(http::status_for(errc::too_large), 413);
  EXPECT_EQ(http::status_for(errc::timeout), 504);
  EXPECT_EQ(http::status_for(errc::unavailable), 503);
  EXPECT_EQ(http::status_for(errc::circuit_open), 503);
  EXPECT_EQ(http::status_for(errc::rejected), 503);
  EXPECT_EQ(http::status_for(errc::cancelled), 503);
  EXPECT_EQ(http::status_for(errc::protocol_error), 502);
  EXPECT_EQ(http::status_for(errc{}), 500);
}

TEST(http_responses, a_business_refusal_is_422_naming_declined) {
  const auto resp = http::error_response(bulwark::error(errc::declined, "not enough credit"));
  EXPECT_EQ(resp.status, 422);
  EXPECT_FALSE(resp.headers.get("Retry-After").has_value());
  const auto body = nlohmann::json::parse(resp.body);
  EXPECT_EQ(body["error"], "declined");
  EXPECT_EQ(body["message"], "declined by the rules: not enough credit");
}

// An overloaded bulkhead or a stopping component is "try again later", never "forbidden".
TEST(http_responses, overload_and_stopping_are_503_with_retry_after) {
  for (const auto e : {errc::rejected, errc::cancelled, errc::unavailable, errc::circuit_open}) {
    const auto resp = http::error_response(bulwark::error(e, "bulkhead full"));
    EXPECT_EQ(resp.status, 503) << bulwark::to_string(e);
    EXPECT_EQ(resp.headers.get("Retry-After"), std::optional<std::string_view>("1")) << bulwark::to_string(e);
    EXPECT_EQ(nlohmann::json::parse(resp.body)["error"], bulwark::to_string(e));
  }
}

// The service's own credentials refused by its backend are not the caller's fault: 503.
TEST(http_responses, a_backend_refusing_the_services_credentials_is_503_not_403) {
  const auto resp = http::error_response(bulwark::error(std::error_code(1045, backend_category()), "user 'app'"));
  EXPECT_EQ(resp.status, 503);
  EXPECT_EQ(nlohmann::json::parse(resp.body)["error"], "rejected");
}

TEST(http_responses, a_code_without_a_condition_is_500_internal) {
  const auto resp = http::error_response(bulwark::error(std::error_code(999, backend_category())));
  EXPECT_EQ(resp.status, 500);
  EXPECT_FALSE(resp.headers.get("Retry-After").has_value());
  EXPECT_EQ(nlohmann::json::parse(resp.body)["error"], "internal");
}

TEST(http_responses, an_error_message_that_is_not_utf8_still_makes_a_json_answer) {
  const auto r = http::error_response(bulwark::error(bulwark::errc::conflict, "row \"x\" \xff\xc3 gone"));
  EXPECT_EQ(r.status, 409);
  const auto body = nlohmann::json::parse(r.body);
  EXPECT_EQ(body["error"], "conflict");
  const auto message = body["message"].get<std::string>();
  EXPECT_NE(message.find("row \"x\" \xef\xbf\xbd\xef\xbf\xbd gone"), std::string::npos) << message;
}
