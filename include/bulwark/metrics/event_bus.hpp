#pragma once
// The gauges every event bus exports, with one name, label set and help text on every model
// (memory::event_bus, kafka::event_bus), so a dashboard or an alert reads any bus alike:
//   bulwark_bus_backlog_messages{topic,partition}            messages the partition holds
//   bulwark_bus_consumer_lag_messages{topic,group,partition} messages the group has not
//                                                            committed (handled) yet

#include <bulwark/metrics/registry.hpp>

#include <string>

namespace bulwark::metrics {

struct event_bus_gauges {
  explicit event_bus_gauges(registry& r)
      : backlog(&r.gauge_family("bulwark_bus_backlog_messages", "Messages an event-bus partition holds",
                                {"topic", "partition"})),
        lag(&r.gauge_family("bulwark_bus_consumer_lag_messages",
                            "Messages of an event-bus partition its consumer group has not committed yet",
                            {"topic", "group", "partition"})) {}

  gauge& backlog_of(const std::string& topic, int partition) {
    return backlog->labels({topic, std::to_string(partition)});
  }
  gauge& lag_of(const std::string& topic, const std::string& group, int partition) {
    return lag->labels({topic, group, std::to_string(partition)});
  }

  family<gauge>* backlog;
  family<gauge>* lag;
};

} // namespace bulwark::metrics
