// The event-bus conformance suite against the real Kafka cluster (BULWARK_KAFKA_BOOTSTRAP).
#include <bulwark/kafka/event_bus.hpp>

#include "conformance/event_bus_suite.hpp"

#include <asio/io_context.hpp>

#include <cstdlib>
#include <memory>

namespace {

struct kafka_event_bus_factory {
  static constexpr std::chrono::milliseconds drain_period{2000};
  static bool available() { return std::getenv("BULWARK_KAFKA_BOOTSTRAP") != nullptr; }
  asio::io_context& context() { return ctx; }
  std::unique_ptr<bulwark::kafka::event_bus> make() {
    auto cfg = bulwark::kafka::config::from_env();
    // Short group timings keep rejoins quick; the cluster starts groups without delay.
    cfg.session_timeout = std::chrono::milliseconds(6000);
    cfg.heartbeat_interval = std::chrono::milliseconds(500);
    cfg.drain_timeout = drain_period;
    auto bus = bulwark::kafka::event_bus::create(ctx.get_executor(), cfg);
    return std::make_unique<bulwark::kafka::event_bus>(std::move(bus).value());
  }
  asio::io_context ctx;
};

} // namespace

namespace bulwark::test {
INSTANTIATE_TYPED_TEST_SUITE_P(kafka, event_bus_conformance, ::testing::Types<kafka_event_bus_factory>);
INSTANTIATE_TYPED_TEST_SUITE_P(kafka, batch_event_bus_conformance, ::testing::Types<kafka_event_bus_factory>);
} // namespace bulwark::test
