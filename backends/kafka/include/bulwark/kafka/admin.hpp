#pragma once
// kafka::admin: create, describe and delete topics on librdkafka's admin API.
//
// The blocking forms wait at most config::admin_timeout; the task forms run the same call on a
// thread of their own and resume the caller on its executor (admin calls are rare).

#include <bulwark/kafka/config.hpp>
#include <bulwark/kafka/detail/handle.hpp>
#include <bulwark/kafka/detail/offload.hpp>
#include <bulwark/kafka/error.hpp>
#include <bulwark/result.hpp>

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace bulwark::kafka {

/// What create_topic makes.
struct topic_spec {
  std::string name;
  int partitions = -1;         ///< -1: the broker's num.partitions
  int replication_factor = -1; ///< -1: the broker's default.replication.factor
  /// Topic configs, e.g. {"min.insync.replicas", "2"}.
  std::vector<std::pair<std::string, std::string>> configs;
};

struct partition_description {
  std::int32_t id = 0;
  std::int32_t leader = -1; ///< broker id, -1 while none
  std::vector<std::int32_t> replicas;
  std::vector<std::int32_t> in_sync_replicas;
};

struct topic_description {
  std::string name;
  std::vector<partition_description> partitions;
};

/// How far a consumer group is behind on one partition of a topic (admin::consumer_lag).
struct partition_lag {
  std::int32_t partition = 0;
  std::int64_t committed = -1; ///< the group's committed offset (the next to handle); -1: none
  std::int64_t end = 0;        ///< the high watermark (the offset the next message gets)
  /// Messages at or after the committed offset (a partition without one: every retained
  /// message, as a group that starts from the earliest sees it).
  std::int64_t behind = 0;
};

class admin {
public:
  /// Errors: errc::invalid_argument for a configuration librdkafka refuses.
  static result<admin> create(const config& cfg) {
    const detail::property_list own{{"allow.auto.create.topics", "false"}, {"client.id", "bulwark-admin"}};
    BOOST_OUTCOME_TRY(conf, detail::make_conf(cfg, own));
    BOOST_OUTCOME_TRY(rk, detail::make_handle(RD_KAFKA_PRODUCER, std::move(conf)));
    auto s = std::make_shared<state>();
    s->cfg = cfg;
    s->rk = std::move(rk);
    return admin(std::move(s));
  }

  /// Creates a topic and waits until every partition has a leader. Errors: errc::duplicate
  /// (TOPIC_ALREADY_EXISTS), errc::invalid_argument (bad name, partitions or replication
  /// factor, e.g. more replicas than brokers), errc::timeout, errc::unavailable.
  result<void> create_topic_blocking(const topic_spec& spec) const { return s_->create(spec); }

  /// Describes a topic from the cluster's metadata. errc::not_found (UNKNOWN_TOPIC_OR_PART, the
  /// topic's name as detail) when it does not exist. Brokers learn of a new topic one after the
  /// other, so an "unknown" answer is asked again (another broker, or the same one a moment
  /// later) until every broker said so or a second passed: not_found takes up to a second,
  /// and a topic just created (by any client) is found. Describing never creates a topic.
  result<topic_description> describe_topic_blocking(const std::string& name) const { return s_->describe(name); }

  /// create_topic_blocking() without blocking the caller's thread.
  task<void> create_topic(topic_spec spec) const {
    auto call = [s = s_, spec = std::move(spec)] { return s->create(spec); };
    co_return co_await detail::offload(std::move(call));
  }

  /// create_topic() that treats an existing topic as success; an existing topic is left as it
  /// is (its partitions and replication factor are not compared with `spec`). A topic that one
  /// metadata request already finds is not created at all: CreateTopics goes to the active
  /// controller, and while that is being elected again (a broker died) it times out. One that
  /// another client created meanwhile (TOPIC_ALREADY_EXISTS) is waited for as create_topic()
  /// waits: until every partition has a leader.
  task<void> ensure_topic(topic_spec spec) const {
    auto call = [s = s_, spec = std::move(spec)] { return s->ensure(spec); };
    co_return co_await detail::offload(std::move(call));
  }

  /// Deletes a topic and waits until every broker's metadata no longer shows it (or "unknown"
  /// answers held for a second), so that the name can be created again at once. Errors:
  /// errc::not_found (UNKNOWN_TOPIC_OR_PART) when it does not exist, errc::rejected when the
  /// cluster has topic deletion disabled, errc::timeout, errc::unavailable. The brokers remove its data in the
  /// background; a consumer still subscribed to it reports the topic as gone.
  result<void> delete_topic_blocking(const std::string& name) const { return s_->remove(name); }

  /// delete_topic_blocking() without blocking the caller's thread.
  task<void> delete_topic(std::string name) const {
    auto call = [s = s_, name = std::move(name)] { return s->remove(name); };
    co_return co_await detail::offload(std::move(call));
  }

  /// describe_topic_blocking() without blocking the caller's thread.
  task<topic_description> describe_topic(std::string name) const {
    auto call = [s = s_, name = std::move(name)] { return s->describe(name); };
    co_return co_await detail::offload(std::move(call));
  }

  /// How far `group` is behind on every partition of `topic`: the high watermark minus the
  /// group's committed offset. Three requests (metadata, the group coordinator's committed
  /// offsets, the partition leaders' end offsets), each bounded by config::admin_timeout; a
  /// group commits every config::commit_interval, so the figure is up to that much older than
  /// the group's progress. A topic that does not exist (yet) gives no partitions; a group that
  /// never committed a partition is behind by its retained messages. Errors: errc::timeout,
  /// errc::unavailable, errc::invalid_argument (an empty group or topic).
  result<std::vector<partition_lag>> consumer_lag_blocking(const std::string& group, const std::string& topic) const {
    return s_->lag(group, topic);
  }

  /// consumer_lag_blocking() without blocking the caller's thread.
  task<std::vector<partition_lag>> consumer_lag(std::string group, std::string topic) const {
    auto call = [s = s_, group = std::move(group), topic = std::move(topic)] { return s->lag(group, topic); };
    co_return co_await detail::offload(std::move(call));
  }

private:
  struct state {
    /// How long "unknown topic" answers must hold before they are believed: brokers learn of
    /// a new or deleted topic one after the other.
    static constexpr std::chrono::milliseconds unknown_topic_grace{1000};

    config cfg;
    detail::handle rk;

    result<void> create(const topic_spec& spec) const {
      char errstr[512] = {};
      rd_kafka_NewTopic_t* topic =
          rd_kafka_NewTopic_new(spec.name.c_str(), spec.partitions, spec.replication_factor, errstr, sizeof errstr);
      if (!topic) return make_error(RD_KAFKA_RESP_ERR__INVALID_ARG, errstr);
      for (const auto& [name, value] : spec.configs) {
        if (auto e = rd_kafka_NewTopic_set_config(topic, name.c_str(), value.c_str())) {
          rd_kafka_NewTopic_destroy(topic);
          return make_error(e, name);
        }
      }
      auto outcome = call(
          RD_KAFKA_ADMIN_OP_CREATETOPICS, "CreateTopics " + spec.name,
          [&](rd_kafka_AdminOptions_t* options, rd_kafka_queue_t* queue) {
            rd_kafka_CreateTopics(rk.get(), &topic, 1, options, queue);
          },
          [](rd_kafka_event_t* event, size_t* count) {
            return rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), count);
          });
      rd_kafka_NewTopic_destroy(topic);
      if (!outcome) return outcome;
      return wait_for_leaders(spec.name);
    }

    result<void> remove(const std::string& name) const {
      rd_kafka_DeleteTopic_t* topic = rd_kafka_DeleteTopic_new(name.c_str());
      auto outcome = call(
          RD_KAFKA_ADMIN_OP_DELETETOPICS, "DeleteTopics " + name,
          [&](rd_kafka_AdminOptions_t* options, rd_kafka_queue_t* queue) {
            rd_kafka_DeleteTopics(rk.get(), &topic, 1, options, queue);
          },
          [](rd_kafka_event_t* event, size_t* count) {
            return rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(event), count);
          });
      rd_kafka_DeleteTopic_destroy(topic);
      if (!outcome) return outcome;
      // The controller answers before every broker forgot the topic. describe() believes
      // "unknown" only once every broker said so or such answers held for
      // unknown_topic_grace; a broker that still shows the topic starts it over.
      const auto deadline = std::chrono::steady_clock::now() + cfg.admin_timeout;
      for (;;) {
        auto d = describe(name);
        if (!d && d.error() == errc::not_found) return ok();
        if (std::chrono::steady_clock::now() > deadline)
          return make_error(RD_KAFKA_RESP_ERR__TIMED_OUT, "the cluster still shows the deleted topic " + name);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }

    // One admin request on a queue of its own, bounded by admin_timeout: `issue(options,
    // queue)` sends it, `topics(event, &count)` reads its per-topic results; the first
    // request-level or topic-level error is the outcome.
    template <class Issue, class Topics>
    result<void> call(rd_kafka_admin_op_t op, const std::string& what, Issue issue, Topics topics) const {
      char errstr[512] = {};
      const auto timeout_ms = static_cast<int>(cfg.admin_timeout.count());
      rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk.get(), op);
      rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr, sizeof errstr);
      rd_kafka_AdminOptions_set_operation_timeout(options, timeout_ms, errstr, sizeof errstr);
      rd_kafka_queue_t* queue = rd_kafka_queue_new(rk.get());
      issue(options, queue);
      rd_kafka_event_t* event = rd_kafka_queue_poll(queue, timeout_ms + 2000);
      result<void> outcome = ok();
      if (!event) {
        outcome = make_error(RD_KAFKA_RESP_ERR__TIMED_OUT, what);
      } else if (rd_kafka_event_error(event)) {
        outcome = make_error(rd_kafka_event_error(event), rd_kafka_event_error_string(event));
      } else {
        size_t count = 0;
        const rd_kafka_topic_result_t** results = topics(event, &count);
        for (size_t i = 0; i < count && outcome; ++i) {
          if (const auto e = rd_kafka_topic_result_error(results[i])) {
            const char* text = rd_kafka_topic_result_error_string(results[i]);
            outcome = make_error(e, what + ": " + (text ? text : rd_kafka_err2str(e)));
          }
        }
      }
      if (event) rd_kafka_event_destroy(event);
      rd_kafka_queue_destroy(queue);
      rd_kafka_AdminOptions_destroy(options);
      return outcome;
    }

    result<void> ensure(const topic_spec& spec) const {
      // Found: made a moment ago perhaps (another service starting too), so not yet known to
      // every broker: wait as create() does.
      std::vector<std::pair<std::int32_t, std::string>> brokers;
      if (auto d = describe_once(spec.name, nullptr, nullptr, &brokers); d && !d.value().partitions.empty())
        return wait_for_leaders(spec.name, led(d.value()) ? &brokers : nullptr);
      auto r = create(spec);
      // Created meanwhile by another client (two services starting together), or a broker lagged:
      // wait for its leaders as create() does, so that a subscription made next sees the topic.
      // Returning at once let a consumer join its group before its broker knew the topic, and
      // hold none of its partitions until its next metadata refresh.
      if (!r && r.error() == errc::duplicate) return wait_for_leaders(spec.name);
      return r;
    }

    result<std::vector<partition_lag>> lag(const std::string& group, const std::string& topic) const {
      if (group.empty() || topic.empty())
        return make_error(RD_KAFKA_RESP_ERR__INVALID_ARG, "consumer_lag needs a group and a topic");
      auto d = describe_once(topic);
      if (!d && d.error() == errc::not_found) return std::vector<partition_lag>{};
      if (!d) return d.error();
      std::vector<partition_lag> out;
      if (d.value().partitions.empty()) return out;
      const int timeout_ms = static_cast<int>(cfg.admin_timeout.count());
      using partition_list =
          std::unique_ptr<rd_kafka_topic_partition_list_t, void (*)(rd_kafka_topic_partition_list_t*)>;
      auto listed = [&](std::int64_t offset) {
        partition_list l(rd_kafka_topic_partition_list_new(static_cast<int>(d.value().partitions.size())),
                         rd_kafka_topic_partition_list_destroy);
        for (const auto& p : d.value().partitions)
          rd_kafka_topic_partition_list_add(l.get(), topic.c_str(), p.id)->offset = offset;
        return l;
      };
      for (const auto& p : d.value().partitions) out.push_back(partition_lag{p.id, -1, 0, 0});
      BOOST_OUTCOME_TRY(committed(group, *listed(RD_KAFKA_OFFSET_INVALID), out));
      // ListOffsets with the "latest" timestamp: every leader's high watermark in one request each.
      auto ends = listed(RD_KAFKA_OFFSET_END);
      if (const auto e = rd_kafka_offsets_for_times(rk.get(), ends.get(), timeout_ms))
        return make_error(e, "end offsets of " + topic);
      for (int i = 0; i < ends->cnt; ++i) {
        const auto& p = ends->elems[i];
        if (p.err) return make_error(p.err, "end offset of " + topic + " [" + std::to_string(p.partition) + "]");
        out[static_cast<std::size_t>(i)].end = p.offset;
      }
      for (auto& p : out) {
        std::int64_t from = p.committed;
        if (from < 0) { // no commit: from the first retained message
          std::int64_t low = 0, high = 0;
          if (const auto e =
                  rd_kafka_query_watermark_offsets(rk.get(), topic.c_str(), p.partition, &low, &high, timeout_ms))
            return make_error(e, "watermarks of " + topic + " [" + std::to_string(p.partition) + "]");
          from = low;
        }
        p.behind = std::max<std::int64_t>(0, p.end - from);
      }
      return out;
    }

    // The committed offsets of `group` on the partitions of `parts` (one ListConsumerGroupOffsets
    // request, to the group coordinator), into `out` (in the order of `parts`).
    result<void> committed(const std::string& group, const rd_kafka_topic_partition_list_t& parts,
                           std::vector<partition_lag>& out) const {
      char errstr[512] = {};
      const auto timeout_ms = static_cast<int>(cfg.admin_timeout.count());
      rd_kafka_AdminOptions_t* options =
          rd_kafka_AdminOptions_new(rk.get(), RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
      rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr, sizeof errstr);
      rd_kafka_queue_t* queue = rd_kafka_queue_new(rk.get());
      rd_kafka_ListConsumerGroupOffsets_t* request = rd_kafka_ListConsumerGroupOffsets_new(group.c_str(), &parts);
      rd_kafka_ListConsumerGroupOffsets(rk.get(), &request, 1, options, queue);
      rd_kafka_ListConsumerGroupOffsets_destroy(request);
      rd_kafka_event_t* event = rd_kafka_queue_poll(queue, timeout_ms + 2000);
      result<void> outcome = ok();
      if (!event) {
        outcome = make_error(RD_KAFKA_RESP_ERR__TIMED_OUT, "committed offsets of " + group);
      } else if (rd_kafka_event_error(event)) {
        outcome = make_error(rd_kafka_event_error(event), rd_kafka_event_error_string(event));
      } else {
        size_t count = 0;
        const rd_kafka_group_result_t** groups = rd_kafka_ListConsumerGroupOffsets_result_groups(
            rd_kafka_event_ListConsumerGroupOffsets_result(event), &count);
        if (count != 1) {
          outcome = make_error(RD_KAFKA_RESP_ERR__BAD_MSG, "committed offsets of " + group + ": no group result");
        } else if (const rd_kafka_error_t* e = rd_kafka_group_result_error(groups[0])) {
          outcome =
              make_error(rd_kafka_error_code(e), "committed offsets of " + group + ": " + rd_kafka_error_string(e));
        } else if (const auto* got = rd_kafka_group_result_partitions(groups[0])) {
          for (int i = 0; i < got->cnt; ++i)
            for (auto& p : out)
              if (p.partition == got->elems[i].partition && !got->elems[i].err)
                p.committed = got->elems[i].offset >= 0 ? got->elems[i].offset : -1;
        }
      }
      if (event) rd_kafka_event_destroy(event);
      rd_kafka_queue_destroy(queue);
      rd_kafka_AdminOptions_destroy(options);
      return outcome;
    }

    // The controller answers CreateTopics before every broker learnt the new leaders, and the
    // brokers learn them one after the other. A consumer group's leader takes the metadata its
    // assignor uses from whichever broker it asks: one that does not know the topic yet gives
    // the group no partition of it, and librdkafka 2.0.2 never rejoins for that (it rejoins
    // when the subscription's partition counts change, and the member's own view had them all
    // along). So this waits until each broker itself describes the topic with a leader for
    // every partition: first through this handle, then through a handle bootstrapped on each
    // broker alone (its first request can only go there; the answer names the broker).
    // `led_on`: the brokers of a description that already had a leader for every partition
    // (ensure()'s), so the first step is done.
    result<void> wait_for_leaders(const std::string& name,
                                  const std::vector<std::pair<std::int32_t, std::string>>* led_on = nullptr) const {
      const auto deadline = std::chrono::steady_clock::now() + cfg.admin_timeout;
      auto timed_out = [&](const std::string& what) {
        return make_error(RD_KAFKA_RESP_ERR__TIMED_OUT, "no leader for every partition of " + name + what);
      };
      std::vector<std::pair<std::int32_t, std::string>> brokers; // id, host:port
      if (led_on) brokers = *led_on;
      while (!led_on) {
        auto d = describe_once(name, nullptr, nullptr, &brokers);
        if (d && led(d.value())) break;
        if (std::chrono::steady_clock::now() > deadline) return timed_out("");
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      for (const auto& [id, address] : brokers) {
        for (;;) {
          const auto seen = broker_view(name, id, address, deadline);
          // A broker that does not answer at all (down, its departure not yet in the metadata)
          // cannot give a group leader a stale view either.
          if (seen == view::led || seen == view::unreachable) break;
          if (std::chrono::steady_clock::now() > deadline) return timed_out(" on broker " + std::to_string(id));
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
      return ok();
    }

    enum class view { led, not_yet, unreachable };

    static bool led(const topic_description& d) {
      if (d.partitions.empty()) return false;
      for (const auto& p : d.partitions)
        if (p.leader < 0) return false;
      return true;
    }

    // How broker `id` (at `address`) describes `name`: one metadata request, at most 2 s, from
    // a handle that knows only that broker. not_yet also when another broker answered or the
    // probe could not be made; unreachable when no broker answered at all.
    view broker_view(const std::string& name, std::int32_t id, const std::string& address,
                     std::chrono::steady_clock::time_point deadline) const {
      const detail::property_list own{{"allow.auto.create.topics", "false"}, {"client.id", "bulwark-admin-probe"}};
      auto conf = detail::make_conf(cfg, own);
      if (!conf) return view::not_yet;
      char errstr[256];
      if (rd_kafka_conf_set(conf.value().get(), "bootstrap.servers", address.c_str(), errstr, sizeof errstr) !=
          RD_KAFKA_CONF_OK) // over config::bootstrap_servers and any bootstrap.servers in config::properties
        return view::not_yet;
      auto probe = detail::make_handle(RD_KAFKA_PRODUCER, std::move(conf).value());
      if (!probe) return view::not_yet;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      const auto limit = std::clamp<std::int64_t>(left.count(), 100, 2000);
      std::int32_t answered = -1;
      auto d = describe_on(probe.value().get(), name, static_cast<int>(limit), &answered, nullptr, nullptr);
      if (answered < 0 && !d) return view::unreachable;
      return answered == id && d && led(d.value()) ? view::led : view::not_yet;
    }

    // describe_once() until a broker knows the topic, every broker said it does not, or
    // unknown_topic_grace passed.
    result<topic_description> describe(const std::string& name) const {
      const auto deadline = std::chrono::steady_clock::now() + unknown_topic_grace;
      std::set<std::int32_t> said_unknown;
      for (;;) {
        std::int32_t broker = -1, brokers = 0;
        auto d = describe_once(name, &broker, &brokers);
        if (d || d.error() != errc::not_found) return d;
        said_unknown.insert(broker);
        if (static_cast<std::int32_t>(said_unknown.size()) >= brokers || std::chrono::steady_clock::now() > deadline)
          return d;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }

    // One metadata request (to a broker librdkafka picks). `broker` gets the id of the broker
    // that answered, `brokers` how many the cluster has, `addresses` each one's id and
    // host:port.
    result<topic_description>
    describe_once(const std::string& name, std::int32_t* broker = nullptr, std::int32_t* brokers = nullptr,
                  std::vector<std::pair<std::int32_t, std::string>>* addresses = nullptr) const {
      return describe_on(rk.get(), name, static_cast<int>(cfg.admin_timeout.count()), broker, brokers, addresses);
    }

    static result<topic_description> describe_on(rd_kafka_t* handle, const std::string& name, int timeout_ms,
                                                 std::int32_t* broker, std::int32_t* brokers,
                                                 std::vector<std::pair<std::int32_t, std::string>>* addresses) {
      rd_kafka_topic_t* topic = rd_kafka_topic_new(handle, name.c_str(), nullptr);
      if (!topic) return make_error(rd_kafka_last_error(), name);
      const rd_kafka_metadata_t* md = nullptr;
      const auto err = rd_kafka_metadata(handle, 0, topic, &md, timeout_ms);
      rd_kafka_topic_destroy(topic);
      if (err) return make_error(err, "metadata for " + name);
      if (broker) *broker = md->orig_broker_id;
      if (brokers) *brokers = md->broker_cnt;
      if (addresses) {
        addresses->clear();
        for (int b = 0; b < md->broker_cnt; ++b)
          addresses->emplace_back(md->brokers[b].id,
                                  std::string(md->brokers[b].host) + ":" + std::to_string(md->brokers[b].port));
      }
      result<topic_description> out = make_error(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, name);
      for (int t = 0; t < md->topic_cnt; ++t) {
        const auto& mt = md->topics[t];
        if (name != mt.topic) continue;
        if (mt.err) {
          out = make_error(mt.err, name);
          break;
        }
        topic_description d{name, {}};
        for (int p = 0; p < mt.partition_cnt; ++p) {
          const auto& mp = mt.partitions[p];
          partition_description pd{mp.id, mp.leader, {}, {}};
          pd.replicas.assign(mp.replicas, mp.replicas + mp.replica_cnt);
          pd.in_sync_replicas.assign(mp.isrs, mp.isrs + mp.isr_cnt);
          d.partitions.push_back(std::move(pd));
        }
        out = std::move(d);
      }
      rd_kafka_metadata_destroy(md);
      return out;
    }
  };

  explicit admin(std::shared_ptr<state> s) : s_(std::move(s)) {}
  std::shared_ptr<state> s_;
};

} // namespace bulwark::kafka
