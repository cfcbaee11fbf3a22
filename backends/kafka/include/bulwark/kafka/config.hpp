#pragma once
// Connection and behaviour settings shared by the producer, the consumer and the admin helper.

#include <bulwark/error.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/result.hpp>

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bulwark::kafka {

struct config {
  /// Comma-separated host:port list (librdkafka's bootstrap.servers).
  std::string bootstrap_servers;
  /// Extra librdkafka properties ("name", "value"), applied after bulwark's own, so they win:
  /// security settings (security.protocol, sasl.*, ssl.*) and tuning go here.
  std::vector<std::pair<std::string, std::string>> properties;

  // --- producer -------------------------------------------------------------------------
  /// How long a message may wait for its acknowledgement (message.timeout.ms); after it the
  /// publish fails (errc::unavailable when no broker was reachable, errc::timeout otherwise).
  std::chrono::milliseconds delivery_timeout{30000};
  /// How long the producer waits to fill a batch (linger.ms).
  std::chrono::milliseconds linger{5};
  /// Whether the producer is idempotent (enable.idempotence; acks=all either way). true (the
  /// default): its retries write no duplicate and keep per-key order. The cost, in librdkafka
  /// 2.0.2: while a partition's produce request waits for its acknowledgement and its next
  /// batch is due, that broker's thread polls without waiting, so once acknowledgements take
  /// longer than the linger (a loaded cluster) the broker threads spin (measured:
  /// benchmarks/predictions.sh's API at 3,000 messages/s, 1,000 in flight, linger 20 ms:
  /// 14,000-28,000 poll() calls per second per broker thread and 25-77 us of their CPU per
  /// message; with false, about 100 polls per second and 3-9 us). false: up to 5 produce
  /// requests in flight per broker connection, as with idempotence (Kafka's Java default; a
  /// property in `properties` can change it; 1 keeps per-key order across retries, at the
  /// cost of one request at a time per broker), and a retry may write a message twice or
  /// after a later one of its key: for messages with keys of their own and consumers that
  /// drop what they have already seen.
  bool idempotent = true;
  /// Messages the producer may hold before publish is rejected (queue.buffering.max.messages).
  std::size_t max_queued_messages = 200000;
  /// stop() waits at most this long for queued messages to be acknowledged, then purges them.
  std::chrono::milliseconds stop_timeout{10000};
  /// Destroying a consumer after its stop waits at most this long for librdkafka's threads to
  /// end; past it they are left to the process (librdkafka 2.0.2 can wait forever there, e.g.
  /// for a consumer whose topic was deleted: detail/handle.hpp).
  std::chrono::milliseconds destroy_timeout{5000};

  // --- consumer -------------------------------------------------------------------------
  std::chrono::milliseconds session_timeout{10000};   ///< session.timeout.ms
  std::chrono::milliseconds heartbeat_interval{1000}; ///< heartbeat.interval.ms
  /// subscribe() fails with errc::timeout when the group has not assigned partitions by then.
  std::chrono::milliseconds subscribe_timeout{30000};
  /// How often a member commits the offsets its handlers finished (auto.commit.interval.ms):
  /// what admin::consumer_lag and other clients see of the group's progress is up to this old.
  /// A revoke and a stop commit at once whatever the interval.
  std::chrono::milliseconds commit_interval{1000};
  /// A rebalance or stop waits at most this long for the handlers in flight to finish.
  std::chrono::milliseconds drain_timeout{30000};
  /// Messages buffered per partition before the partition is paused (resumed at half).
  std::size_t max_buffered_per_partition = 10000;

  // --- metrics ----------------------------------------------------------------------------
  /// Where each member exports bulwark_bus_backlog_messages and
  /// bulwark_bus_consumer_lag_messages (metrics/event_bus.hpp) for the partitions assigned to
  /// it; none when empty.
  std::shared_ptr<metrics::registry> metrics{};
  /// How often a member refreshes those gauges (one watermark query per assigned partition).
  std::chrono::milliseconds metrics_interval{5000};

  // --- topics created by subscribe() when missing ----------------------------------------
  int default_partitions = -1;         ///< -1: the broker's num.partitions
  int default_replication_factor = -1; ///< -1: the broker's default.replication.factor
  std::chrono::milliseconds admin_timeout{15000};

  /// A config for the cluster named by $BULWARK_KAFKA_BOOTSTRAP (the test cluster), else
  /// $KAFKA_BOOTSTRAP_SERVERS, else localhost:9092.
  static config from_env() {
    config c;
    if (const char* v = std::getenv("BULWARK_KAFKA_BOOTSTRAP"); v && *v)
      c.bootstrap_servers = v;
    else if (const char* w = std::getenv("KAFKA_BOOTSTRAP_SERVERS"); w && *w)
      c.bootstrap_servers = w;
    else
      c.bootstrap_servers = "localhost:9092";
    return c;
  }
};

/// Reads a command line's librdkafka settings, "name=value,name=value" (the examples'
/// `--kafka-properties`), into config::properties entries, in order; empty items are skipped
/// (an empty list gives none). A value may hold '=' (only the first one splits). Errors:
/// errc::invalid_argument naming the first item that is not name=value.
inline result<std::vector<std::pair<std::string, std::string>>> parse_properties(std::string_view list) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!list.empty()) {
    const auto comma = list.find(',');
    const std::string_view item = list.substr(0, comma);
    list.remove_prefix(comma == std::string_view::npos ? list.size() : comma + 1);
    if (item.empty()) continue;
    const auto eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0)
      return error(errc::invalid_argument, "\"" + std::string(item) + "\" is not name=value");
    out.emplace_back(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1)));
  }
  return out;
}

/// Reads a producer's linger in milliseconds (the examples' `--linger-ms`): a whole decimal
/// number from 0 to 900,000, librdkafka's own range for linger.ms. Errors: errc::invalid_argument
/// saying what is accepted.
inline result<std::chrono::milliseconds> parse_linger_ms(std::string_view text) {
  constexpr long long max = 900'000;
  long long ms = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || ms < 0 || ms > max)
    return error(errc::invalid_argument,
                 "linger \"" + std::string(text) + "\" is not a whole number of milliseconds from 0 to 900000");
  return std::chrono::milliseconds(ms);
}

} // namespace bulwark::kafka
