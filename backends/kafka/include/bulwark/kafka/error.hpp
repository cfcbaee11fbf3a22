#pragma once
// The `kafka` error category: librdkafka's native codes (rd_kafka_resp_err_t, both the broker's
// protocol errors >= 0 and the client's local errors < 0) kept as they are, and mapped onto
// bulwark's conditions so that `ec == bulwark::errc::unavailable` holds for a transport error.
//
//   condition          native codes
//   unavailable        __TRANSPORT, __ALL_BROKERS_DOWN, __RESOLVE, __WAIT_COORD, BROKER_NOT_AVAILABLE,
//                      LEADER_NOT_AVAILABLE, NOT_LEADER_FOR_PARTITION, NOT_ENOUGH_REPLICAS(_AFTER_APPEND),
//                      NETWORK_EXCEPTION, COORDINATOR_*, NOT_COORDINATOR, __NODE_UPDATE, __FATAL
//   timeout            __TIMED_OUT, __MSG_TIMED_OUT, __TIMED_OUT_QUEUE, REQUEST_TIMED_OUT
//   not_found          __UNKNOWN_TOPIC, __UNKNOWN_PARTITION, UNKNOWN_TOPIC_OR_PART, GROUP_ID_NOT_FOUND
//   too_large          MSG_SIZE_TOO_LARGE, RECORD_LIST_TOO_LARGE, INVALID_MSG_SIZE
//   invalid_argument   __INVALID_ARG, __INVALID_TYPE, INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR,
//                      INVALID_CONFIG, TOPIC_EXCEPTION (invalid topic name), INVALID_REQUEST
//   rejected           __QUEUE_FULL, __STATE, *_AUTHORIZATION_FAILED, __AUTHENTICATION, POLICY_VIOLATION,
//                      TOPIC_DELETION_DISABLED
//   cancelled          __DESTROY, __PURGE_QUEUE, __PURGE_INFLIGHT
//   duplicate          TOPIC_ALREADY_EXISTS, DUPLICATE_SEQUENCE_NUMBER
//   protocol_error     __BAD_MSG, __BAD_COMPRESSION, INVALID_MSG, CORRUPT_MESSAGE, OUT_OF_ORDER_SEQUENCE_NUMBER

#include <bulwark/error.hpp>

#include <librdkafka/rdkafka.h>

#include <string>
#include <string_view>
#include <system_error>

namespace bulwark::kafka {

namespace detail {
class error_category final : public std::error_category {
public:
  const char* name() const noexcept override { return "kafka"; }
  std::string message(int value) const override { return rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(value)); }
  std::error_condition default_error_condition(int value) const noexcept override {
    if (const auto c = condition(static_cast<rd_kafka_resp_err_t>(value)); c != errc{}) return make_error_condition(c);
    return {value, *this};
  }

  static errc condition(rd_kafka_resp_err_t e) noexcept {
    switch (e) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR__NODE_UPDATE:
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR: return errc::unavailable;
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT: return errc::timeout;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND: return errc::not_found;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE: return errc::too_large;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__INVALID_TYPE:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_INVALID_REQUEST: return errc::invalid_argument;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR__STATE:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_DELETION_DISABLED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION: return errc::rejected;
    case RD_KAFKA_RESP_ERR__DESTROY:
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT: return errc::cancelled;
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
    case RD_KAFKA_RESP_ERR_DUPLICATE_SEQUENCE_NUMBER: return errc::duplicate;
    case RD_KAFKA_RESP_ERR__BAD_MSG:
    case RD_KAFKA_RESP_ERR__BAD_COMPRESSION:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER: return errc::protocol_error;
    default: return errc{};
    }
  }
};
} // namespace detail

/// The category of librdkafka's codes.
inline const std::error_category& category() noexcept {
  static const detail::error_category instance;
  return instance;
}

/// A code in the kafka category for a librdkafka error.
inline std::error_code make_error_code(rd_kafka_resp_err_t e) noexcept { return {static_cast<int>(e), category()}; }

/// A bulwark::error for a librdkafka error, with `detail` (or librdkafka's own text) as detail.
inline bulwark::error make_error(rd_kafka_resp_err_t e, std::string detail = {}) {
  return {make_error_code(e), std::move(detail)};
}

/// Prefix of the detail of a failed delivery whose message may still have been written
/// (rd_kafka_message_status() == POSSIBLY_PERSISTED): a retry may duplicate it.
inline constexpr std::string_view possibly_persisted_prefix = "possibly persisted: ";
/// Prefix of the detail of a failed delivery whose message was certainly not written.
inline constexpr std::string_view not_persisted_prefix = "not persisted: ";

/// True when a failed publish may still have stored the message (so a retry may duplicate it).
inline bool possibly_persisted(const bulwark::error& e) noexcept {
  return e.detail().substr(0, possibly_persisted_prefix.size()) == possibly_persisted_prefix;
}

} // namespace bulwark::kafka
