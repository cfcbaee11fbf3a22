#pragma once
// The `kafka` category: librdkafka's native codes (rd_kafka_resp_err_t, both the broker's
// protocol errors >= 0 and the client's local errors < 0) kept as they are. librdkafka owns the
// codes and their texts (rd_kafka_err2str); bulwark owns only their mapping onto its conditions,
// and kafka_error_rows is that mapping, the one table of it: value, librdkafka's own name
// (rd_kafka_err2name), no message of its own, condition. docs/errors.md shows the same rows
// and a test checks them against librdkafka and the docs. Any code without a row keeps
// librdkafka's text and maps onto no condition (bulwark::condition_of gives errc{}).
//
// The authorization and authentication failures map onto `rejected`: the service's own
// credentials were refused, which the HTTP layer answers 503, never 401/403.

#include <bulwark/error.hpp>

#include <librdkafka/rdkafka.h>

#include <array>
#include <string>
#include <string_view>
#include <system_error>

namespace bulwark::kafka {

namespace detail {
constexpr error_row row(rd_kafka_resp_err_t e, std::string_view name, errc condition) noexcept {
  return {static_cast<int>(e), name, {}, condition};
}
inline std::string librdkafka_message(int value) { return rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(value)); }
} // namespace detail

inline constexpr std::array<error_row, 52> kafka_error_rows{{
    detail::row(RD_KAFKA_RESP_ERR__TRANSPORT, "_TRANSPORT", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, "_ALL_BROKERS_DOWN", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR__RESOLVE, "_RESOLVE", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR__WAIT_COORD, "_WAIT_COORD", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR__NODE_UPDATE, "_NODE_UPDATE", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR__FATAL, "_FATAL", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE, "BROKER_NOT_AVAILABLE", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE, "LEADER_NOT_AVAILABLE", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, "NOT_LEADER_FOR_PARTITION", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR_REPLICA_NOT_AVAILABLE, "REPLICA_NOT_AVAILABLE", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, "NOT_ENOUGH_REPLICAS", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND, "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
                errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION, "NETWORK_EXCEPTION", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS, "COORDINATOR_LOAD_IN_PROGRESS", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, "COORDINATOR_NOT_AVAILABLE", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR_NOT_COORDINATOR, "NOT_COORDINATOR", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR, "KAFKA_STORAGE_ERROR", errc::unavailable),
    detail::row(RD_KAFKA_RESP_ERR__TIMED_OUT, "_TIMED_OUT", errc::timeout),
    detail::row(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, "_MSG_TIMED_OUT", errc::timeout),
    detail::row(RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE, "_TIMED_OUT_QUEUE", errc::timeout),
    detail::row(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, "REQUEST_TIMED_OUT", errc::timeout),
    detail::row(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, "_UNKNOWN_TOPIC", errc::not_found),
    detail::row(RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION, "_UNKNOWN_PARTITION", errc::not_found),
    detail::row(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, "UNKNOWN_TOPIC_OR_PART", errc::not_found),
    detail::row(RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND, "GROUP_ID_NOT_FOUND", errc::not_found),
    detail::row(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, "MSG_SIZE_TOO_LARGE", errc::too_large),
    detail::row(RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE, "RECORD_LIST_TOO_LARGE", errc::too_large),
    detail::row(RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE, "INVALID_MSG_SIZE", errc::too_large),
    detail::row(RD_KAFKA_RESP_ERR__INVALID_ARG, "_INVALID_ARG", errc::invalid_argument),
    detail::row(RD_KAFKA_RESP_ERR__INVALID_TYPE, "_INVALID_TYPE", errc::invalid_argument),
    detail::row(RD_KAFKA_RESP_ERR_INVALID_PARTITIONS, "INVALID_PARTITIONS", errc::invalid_argument),
    detail::row(RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR, "INVALID_REPLICATION_FACTOR", errc::invalid_argument),
    detail::row(RD_KAFKA_RESP_ERR_INVALID_CONFIG, "INVALID_CONFIG", errc::invalid_argument),
    detail::row(RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION, "TOPIC_EXCEPTION", errc::invalid_argument),
    detail::row(RD_KAFKA_RESP_ERR_INVALID_REQUEST, "INVALID_REQUEST", errc::invalid_argument),
    detail::row(RD_KAFKA_RESP_ERR__QUEUE_FULL, "_QUEUE_FULL", errc::rejected),
    detail::row(RD_KAFKA_RESP_ERR__STATE, "_STATE", errc::rejected),
    detail::row(RD_KAFKA_RESP_ERR__AUTHENTICATION, "_AUTHENTICATION", errc::rejected),
    detail::row(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, "TOPIC_AUTHORIZATION_FAILED", errc::rejected),
    detail::row(RD_KAFKA_RESP_ERR_TOPIC_DELETION_DISABLED, "TOPIC_DELETION_DISABLED", errc::rejected),
    detail::row(RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED, "GROUP_AUTHORIZATION_FAILED", errc::rejected),
    detail::row(RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED, "CLUSTER_AUTHORIZATION_FAILED", errc::rejected),
    detail::row(RD_KAFKA_RESP_ERR_POLICY_VIOLATION, "POLICY_VIOLATION", errc::rejected),
    detail::row(RD_KAFKA_RESP_ERR__DESTROY, "_DESTROY", errc::cancelled),
    detail::row(RD_KAFKA_RESP_ERR__PURGE_QUEUE, "_PURGE_QUEUE", errc::cancelled),
    detail::row(RD_KAFKA_RESP_ERR__PURGE_INFLIGHT, "_PURGE_INFLIGHT", errc::cancelled),
    detail::row(RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS, "TOPIC_ALREADY_EXISTS", errc::duplicate),
    detail::row(RD_KAFKA_RESP_ERR_DUPLICATE_SEQUENCE_NUMBER, "DUPLICATE_SEQUENCE_NUMBER", errc::duplicate),
    detail::row(RD_KAFKA_RESP_ERR__BAD_MSG, "_BAD_MSG", errc::protocol_error),
    detail::row(RD_KAFKA_RESP_ERR__BAD_COMPRESSION, "_BAD_COMPRESSION", errc::protocol_error),
    detail::row(RD_KAFKA_RESP_ERR_INVALID_MSG, "INVALID_MSG", errc::protocol_error),
    detail::row(RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "OUT_OF_ORDER_SEQUENCE_NUMBER", errc::protocol_error),
}};

/// The category of librdkafka's codes ("kafka").
inline const std::error_category& kafka_category() noexcept {
  static const bulwark::table_category instance("kafka", kafka_error_rows, &detail::librdkafka_message);
  return instance;
}

/// A code in the kafka category for a librdkafka error.
inline std::error_code make_error_code(rd_kafka_resp_err_t e) noexcept {
  return {static_cast<int>(e), kafka_category()};
}

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
