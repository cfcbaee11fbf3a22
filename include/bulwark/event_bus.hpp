#pragma once
// The event bus concept: durable publish, consumer groups with at-least-once delivery.
//
// Requirements, for a model B, an lvalue b of B, topic of type std::string_view, m of type
// message, o of type subscribe_options, h of type message_handler:
//
// | expression            | type                            | semantics, errors
// |-----------------------|---------------------------------|--------------------------------------
// | b.publish(topic, m)   | task<delivery>                  | completes once m is durable; messages
// |                       |                                 | with one key keep their order (one
// |                       |                                 | partition per key). errc::rejected when
// |                       |                                 | the bus is full or stopping
// | b.subscribe(o, h)     | task<B::subscription>           | joins consumer group o.group on
// |                       |                                 | o.topic; h runs for every message
// |                       |                                 | (below); errc::invalid_argument for an
// |                       |                                 | empty topic or group, errc::rejected
// |                       |                                 | once the bus is stopping
// | b.subscribe_batch(o,  | task<B::subscription>           | batch_event_bus only: as subscribe,
// |   bh)  (bh a          |                                 | bh gets up to o.max_batch messages of
// |   batch_handler)      |                                 | one partition at a time (see Batches);
// |                       |                                 | also errc::invalid_argument for
// |                       |                                 | o.max_batch == 0
// | s.stop()  (s an       | asio::awaitable<void>           | leaves the group: waits up to the
// |  lvalue of            |                                 | model's drain period for the handlers
// |  B::subscription)     |                                 | in flight (a finished message is
// |                       |                                 | committed), then interrupts those
// |                       |                                 | still running (see Stopping)
// | b.stop()              | asio::awaitable<void>           | refuses new publishes and subscribes
// |                       |                                 | (errc::rejected), stops every
// |                       |                                 | subscription as s.stop() does, then
// |                       |                                 | makes what was published durable (a
// |                       |                                 | producer's flush); later calls return
// |                       |                                 | at once
//
// Delivery (detail/delivery.hpp implements it once for every model): a message's offset is
// committed only after h succeeded for it (at-least-once), per partition and in order (per-key
// order). A failing h (an error, or any exception) is retried under o.retry (a retry_policy:
// its backoff between attempts, its max_attempts, and which errors retry: by default all but
// errc::invalid_argument, errc::too_large and errc::declined). After the last attempt, or at once for an
// error the policy does not retry, the message is published to the dead-letter topic with the
// dead_letter_* headers below (that publish is retried with the same backoff until it succeeds
// or a stop interrupts it), and committed. A member that joins a group later, or again after a
// stop, resumes from the group's committed offsets.
//
// Concurrency, what a handler may assume: at most one message per partition is in flight in a
// group (so one key's messages are handled one at a time, in order); handlers of different
// partitions may overlap, also within one subscription. All handlers of one subscription run on
// one strand of the bus's executor: they never run on two threads at once, but interleave at
// their suspension points, and may run on any thread that runs that executor. A handler's
// envelope views stay valid until its task completes.
//
// Stopping: s.stop() (and, on Kafka, a rebalance that revokes a partition) first lets the
// handler in flight finish, for up to the model's drain period; a delivery waiting between two
// attempts is interrupted at once. After the drain period the handler still running is
// interrupted: the cancellation slot of the coroutine running it is emitted
// (asio::cancellation_type::terminal), so its cancellable waits (timers, clock waits) end with
// operation_aborted and every later co_await in it throws. A handler that waits on purpose
// (for a database to come back) waits in a cancellable way, or checks
// `(co_await asio::this_coro::cancellation_state).cancelled()`. An interrupted message is not
// committed, is not dead-lettered, and is redelivered to the partition's next owner; the old
// owner never commits past it, even if its handler completes later.
//
// Threads: a bus and its subscriptions may be used from any thread (publish and subscribe
// concurrently); one subscription object is not to be stopped from two threads at once. Every
// task resumes on the executor of the coroutine that awaits it.
//
// Batches (the optional refinement batch_event_bus): b.subscribe_batch(o, bh) joins the group as
// subscribe does, but bh (a batch_handler) receives a run of messages at a time, so that a
// handler can do the I/O for all of them together (one Redis pipeline, every publish in flight
// at once) and commit once:
//  - a batch is consecutive messages of ONE partition, in offset order, at most o.max_batch of
//    them, taken from what the member already holds: a member never waits to fill a batch (a
//    partition with one message waiting gets a batch of one);
//  - partitions still run in parallel, one batch in flight per partition;
//  - success commits through the batch's last offset;
//  - a failure (an error or any exception) makes the member deliver that batch's messages one
//    at a time (bh called with a span of one) under the delivery rules above: retries under
//    o.retry, then the dead-letter topic for a message that keeps failing; then batching
//    resumes. So a poison message never blocks its partition, and the messages that shared its
//    batch are not dead-lettered with it. The failed batch may have been partly applied:
//    delivery is at-least-once, and handlers must be idempotent (as they already must be);
//  - stopping (and a revoke): the batch in flight gets the drain period, then cancellation, as
//    a single handler does; a batch interrupted, or failing while its member stops, stays
//    uncommitted as a whole and goes to the partition's next owner. Interrupted while its
//    messages went one at a time, the member commits those it finished.
// Every envelope of a batch has attempt 1; the span and its views stay valid until bh's task
// completes. subscribe(o, h) behaves as a subscription whose batches hold one message.
// errc::invalid_argument for o.max_batch == 0.
//
// Models: memory::event_bus (bulwark/memory/event_bus.hpp; drain period
// options::drain_timeout) and kafka::event_bus (backends/kafka; config::drain_timeout).
// Conformance suite: tests/conformance/event_bus_suite.hpp (tests/conformance/memory.cpp,
// tests/kafka/conformance.cpp). Archetype: archetype::bus in tests/unit/core/concepts.cpp.
//
// Deadlines and abandonment (see repository.hpp): publish reads its topic view before its
// first suspension and owns its message (memory::event_bus appends without suspending;
// kafka::event_bus resolves the topic when called and does not honour cancellation: abandoned,
// it completes unobserved at its delivery report). The message may still be delivered, so
// errc::timeout on publish means "unknown": publish idempotently (a request id in a header). A handler bounding its own
// calls gets the same promise; the envelope it receives is valid for the handler's call only, so an operation it may
// abandon copies what it needs from it.

#include <bulwark/result.hpp>
#include <bulwark/retry_policy.hpp>

#include <asio/awaitable.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark {

struct header {
  std::string name;
  std::string value;
  friend bool operator==(const header&, const header&) = default;
};

/// What a producer publishes. The key chooses the partition (and so the order domain).
struct message {
  std::string key;
  std::string value;
  std::vector<header> headers;

  /// The first header named `name`, if any.
  std::optional<std::string_view> find_header(std::string_view name) const noexcept {
    for (const auto& h : headers)
      if (h.name == name) return std::string_view(h.value);
    return std::nullopt;
  }
  friend bool operator==(const message&, const message&) = default;
};

/// Where a published message landed.
struct delivery {
  std::int32_t partition = 0;
  std::int64_t offset = 0;
};

/// What a handler sees: views valid until the handler's task completes.
struct envelope {
  std::string_view topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  unsigned attempt = 1; ///< 1 on the first delivery, +1 on every retry
  std::string_view key;
  std::string_view value;
  std::span<const header> headers;

  std::optional<std::string_view> find_header(std::string_view name) const noexcept {
    for (const auto& h : headers)
      if (h.name == name) return std::string_view(h.value);
    return std::nullopt;
  }
};

/// A handler's error asks for a retry; success commits the message.
using message_handler = std::function<task<void>(const envelope&)>;

/// A batch subscription's handler (batch_event_bus): consecutive messages of one partition, in
/// offset order. Success commits them all; an error (or exception) has them delivered again one
/// at a time (see "Batches").
using batch_handler = std::function<task<void>(std::span<const envelope>)>;

/// Where a new group starts reading: the oldest message the bus still holds, or the end.
/// What a bus holds differs: Kafka keeps a topic's messages for its retention; the memory bus
/// drops a message once every existing group committed it (a topic without groups keeps all),
/// so a group that joins later does not see what the others already consumed.
enum class start_from { earliest, latest };

struct subscribe_options {
  std::string topic;
  std::string group;
  retry_policy retry{};          ///< attempts, the delay between two, and which errors retry
  std::string dead_letter_topic; ///< empty: topic + ".dlq"
  start_from start = start_from::earliest;
  /// subscribe_batch only: the most messages one batch holds (at least 1). subscribe() hands
  /// its handler one message at a time whatever this says.
  std::size_t max_batch = 256;

  std::string dead_letter_topic_name() const { return dead_letter_topic.empty() ? topic + ".dlq" : dead_letter_topic; }
};

/// Headers a dead-lettered message carries, naming where it came from and why it failed.
inline constexpr std::string_view dead_letter_origin_topic = "bulwark-origin-topic";
inline constexpr std::string_view dead_letter_origin_partition = "bulwark-origin-partition";
inline constexpr std::string_view dead_letter_origin_offset = "bulwark-origin-offset";
inline constexpr std::string_view dead_letter_error = "bulwark-error";
inline constexpr std::string_view dead_letter_attempts = "bulwark-attempts";

/// The dead-letter copy of a message that failed `attempts` times with `why`.
inline message make_dead_letter(const envelope& e, const error& why, unsigned attempts) {
  message dead{std::string(e.key), std::string(e.value), {e.headers.begin(), e.headers.end()}};
  dead.headers.push_back({std::string(dead_letter_origin_topic), std::string(e.topic)});
  dead.headers.push_back({std::string(dead_letter_origin_partition), std::to_string(e.partition)});
  dead.headers.push_back({std::string(dead_letter_origin_offset), std::to_string(e.offset)});
  dead.headers.push_back({std::string(dead_letter_error), why.message()});
  dead.headers.push_back({std::string(dead_letter_attempts), std::to_string(attempts)});
  return dead;
}

template <class B>
concept event_bus = requires(B& b, std::string_view topic, message m, subscribe_options o, message_handler h) {
  typename B::subscription;
  { b.publish(topic, std::move(m)) } -> std::same_as<task<delivery>>;
  { b.subscribe(std::move(o), std::move(h)) } -> std::same_as<task<typename B::subscription>>;
  { b.stop() } -> std::same_as<asio::awaitable<void>>;
  requires requires(typename B::subscription & s) {
    { s.stop() } -> std::same_as<asio::awaitable<void>>;
  };
};

/// The optional batch refinement: subscribe_batch(o, bh) -> task<B::subscription> (see
/// "Batches" above). Models: memory::event_bus, kafka::event_bus; conformance suite
/// batch_event_bus_conformance in tests/conformance/event_bus_suite.hpp; archetype
/// archetype::batch_bus in tests/unit/core/concepts.cpp.
template <class B>
concept batch_event_bus = event_bus<B> && requires(B& b, subscribe_options o, batch_handler h) {
  { b.subscribe_batch(std::move(o), std::move(h)) } -> std::same_as<task<typename B::subscription>>;
};

} // namespace bulwark
