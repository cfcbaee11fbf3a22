#pragma once
// Private: owning wrappers for librdkafka handles and configuration building.

#include <bulwark/kafka/config.hpp>
#include <bulwark/kafka/error.hpp>
#include <bulwark/result.hpp>

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace bulwark::kafka::detail {

struct handle_deleter {
  void operator()(rd_kafka_t* rk) const noexcept { rd_kafka_destroy(rk); }
};
using handle = std::unique_ptr<rd_kafka_t, handle_deleter>;

/// Destroys a consumer that was closed (or never consumed), waiting at most `bound` for
/// librdkafka's threads to end; false when they had not by then. librdkafka 2.0.2's
/// rd_kafka_destroy can wait forever for a broker thread: seen with a consumer whose topic was
/// deleted while it was assigned (the broker thread waits for partition references that are
/// never released), which made a service hang on SIGTERM. Past the bound the handle and its
/// threads are left to the process: they call nothing of ours (no consumer close, so no
/// rebalance callback into the closed member's state). One thread per call, at stop only.
inline bool destroy_closed_consumer_within(rd_kafka_t* rk, std::chrono::milliseconds bound) {
  if (rk == nullptr) return true;
  auto done = std::make_shared<std::promise<void>>();
  auto finished = done->get_future();
  std::thread([rk, done] {
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    done->set_value();
  }).detach();
  return finished.wait_for(bound) == std::future_status::ready;
}

struct conf_deleter {
  void operator()(rd_kafka_conf_t* c) const noexcept { rd_kafka_conf_destroy(c); }
};
using conf_ptr = std::unique_ptr<rd_kafka_conf_t, conf_deleter>;

struct partition_list_deleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const noexcept { rd_kafka_topic_partition_list_destroy(l); }
};
using partition_list = std::unique_ptr<rd_kafka_topic_partition_list_t, partition_list_deleter>;

using property_list = std::vector<std::pair<std::string, std::string>>;

/// A librdkafka configuration: bootstrap servers, then `own` (bulwark's settings for the client
/// kind), then the user's properties. errc::invalid_argument (kafka __INVALID_ARG) for a bad one.
inline result<conf_ptr> make_conf(const config& cfg, const property_list& own) {
  conf_ptr conf(rd_kafka_conf_new());
  char errstr[512];
  auto set = [&](const std::string& name, const std::string& value) -> result<void> {
    if (rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
      return make_error(RD_KAFKA_RESP_ERR__INVALID_ARG, name + ": " + errstr);
    return ok();
  };
  BOOST_OUTCOME_TRYV(set("bootstrap.servers", cfg.bootstrap_servers));
  for (const auto& [name, value] : own) {
    BOOST_OUTCOME_TRYV(set(name, value));
  }
  for (const auto& [name, value] : cfg.properties) {
    BOOST_OUTCOME_TRYV(set(name, value));
  }
  return conf;
}

/// A client of `type` from `conf` (consumed on success).
inline result<handle> make_handle(rd_kafka_type_t type, conf_ptr conf) {
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), errstr, sizeof errstr);
  if (!rk) return make_error(RD_KAFKA_RESP_ERR__INVALID_ARG, errstr);
  (void)conf.release(); // rd_kafka_new took ownership
  return handle(rk);
}

} // namespace bulwark::kafka::detail
