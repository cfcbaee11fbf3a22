#pragma once
// What the Kafka saga tests share: the servers rule (skip, or fail under BULWARK_REQUIRE_SERVERS),
// a bus with short group timings on the cluster of BULWARK_KAFKA_BOOTSTRAP, once that cluster is
// whole (every broker back and in sync), and topics created with replication 3.
#include <bulwark/kafka/event_bus.hpp>

#include "kafka/cluster_health.hpp"
#include "support/run.hpp"

#include <gtest/gtest.h>

#include <asio/io_context.hpp>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>

namespace bulwark::test {

class kafka_saga_bus : public ::testing::Test {
protected:
  void SetUp() override {
    using namespace std::chrono_literals;
    if (!std::getenv("BULWARK_KAFKA_BOOTSTRAP")) {
      if (std::getenv("BULWARK_REQUIRE_SERVERS")) FAIL() << "BULWARK_KAFKA_BOOTSTRAP is not set";
      GTEST_SKIP() << "BULWARK_KAFKA_BOOTSTRAP is not set (scripts/servers.sh up kafka)";
    }
    auto cfg = kafka::config::from_env();
    cfg.session_timeout = 6000ms;
    cfg.heartbeat_interval = 500ms;
    cfg.drain_timeout = 2000ms;
    auto created = kafka::event_bus::create(ctx_.get_executor(), cfg);
    ASSERT_TRUE(created.has_value()) << created.error();
    bus_.emplace(std::move(created).value());
    // kafka_failures.* ran before (same executable, same lock) and may have left restarted
    // brokers still catching up: wait for the whole cluster first (cluster_health.hpp).
    const auto unhealthy = wait_for_kafka_cluster(ctx_, bus_->admin());
    ASSERT_TRUE(unhealthy.empty()) << "the Kafka cluster did not recover from an earlier test: " << unhealthy;
  }

  /// `topic` with `partitions` partitions, replication 3 (a fatal failure when Kafka refuses:
  /// call it inside ASSERT_NO_FATAL_FAILURE).
  void create_topic(const std::string& topic, int partitions) {
    auto created = run(ctx_, bus_->admin().create_topic({topic, partitions, 3, {}}));
    ASSERT_TRUE(created.has_value()) << topic << ": " << created.error();
  }

  asio::io_context ctx_; // declared first: outlives the bus
  std::optional<kafka::event_bus> bus_;
};

} // namespace bulwark::test
