#pragma once
// Waiting for the shared test cluster to have recovered from an earlier test's broker kill.
//
// kafka_failures.* (tests/kafka/failures.cpp) kill brokers and start them again; the control
// script returns once each broker logged "Kafka Server started", which in KRaft means registered
// and unfenced, not caught up: the restarted replicas are still out of the ISR, and partitions
// of __consumer_offsets may still be moving their leadership (and the group coordinators
// reloading). A test that runs next on a loaded machine then sees its first joins and publishes
// wait on that. The tests that need the cluster whole wait for it first, bounded.
#include <bulwark/kafka/admin.hpp>

#include "support/run.hpp"

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <string>

namespace bulwark::test {

/// What is not healthy about `topic` ("" when every partition has a leader and every replica in
/// sync), or the describe error.
inline std::string kafka_topic_unhealthy(const result<kafka::topic_description>& d) {
  if (!d) return d.error().message();
  if (d.value().partitions.empty()) return d.value().name + ": no partitions";
  for (const auto& p : d.value().partitions) {
    const std::string where = d.value().name + "-" + std::to_string(p.id);
    if (p.leader < 0) return where + " has no leader";
    if (p.in_sync_replicas.size() < p.replicas.size())
      return where + ": " + std::to_string(p.in_sync_replicas.size()) + " of " + std::to_string(p.replicas.size()) +
             " replicas in sync";
  }
  return {};
}

/// Waits until every partition of __consumer_offsets (the group coordinators; absent until a
/// first group committed) and of __transaction_state (where the
/// idempotent producer gets its id; absent until a first producer asked) has a leader and its
/// full ISR, i.e. every broker is back and caught up; "" then, else what was still wrong when
/// `limit` passed. The metadata comes from whichever broker answers, so two healthy answers in
/// a row are asked.
inline std::string wait_for_kafka_cluster(asio::io_context& ctx, const kafka::admin& admin,
                                          std::chrono::milliseconds limit = std::chrono::seconds(120)) {
  auto wait = [&]() -> asio::awaitable<std::string> {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    asio::steady_timer tick(co_await asio::this_coro::executor);
    int healthy_in_a_row = 0;
    std::string why = "not asked";
    while (std::chrono::steady_clock::now() < deadline) {
      // A fresh cluster has neither topic until a first group commits or a first producer asks
      // for an id: nothing to wait for then.
      auto described = co_await admin.describe_topic("__consumer_offsets");
      why = described || described.error() != errc::not_found ? kafka_topic_unhealthy(described) : std::string();
      if (why.empty()) {
        auto producer_ids = co_await admin.describe_topic("__transaction_state");
        if (producer_ids || producer_ids.error() != errc::not_found) why = kafka_topic_unhealthy(producer_ids);
      }
      if (why.empty() && ++healthy_in_a_row == 2) co_return std::string();
      if (!why.empty()) healthy_in_a_row = 0;
      tick.expires_after(std::chrono::milliseconds(why.empty() ? 50 : 250));
      co_await tick.async_wait(asio::use_awaitable);
    }
    co_return why;
  };
  return run(ctx, wait(), limit + std::chrono::seconds(30));
}

} // namespace bulwark::test
