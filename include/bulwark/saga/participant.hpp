#pragma once
// saga::participant<Bus, Store, Clock>: the service side of a saga's remote step. It consumes a
// command topic (saga/wire.hpp), runs the step's action or compensation handler at most once
// per (saga id, step, op) as far as its record can tell, keeps the reply it gave in a
// repository, and gives the same reply to every duplicate.
//
// Requirements:
//   Bus      models bulwark::event_bus (memory::event_bus, kafka::event_bus).
//   Store    models bulwark::repository (memory, Redis, MySQL) and can be called from the bus's
//            handler executor (the subscription's strand): for redis::repository or
//            mysql::repository that means the same single-threaded io_context.
//   Clock    a wall clock: `clock.now()` -> std::chrono::system_clock::time_point (manual_clock
//            in tests; coarse_system_clock by default). Retention is wall time because records
//            outlive the process.
//   Handlers step_handler: task<step_result>(const step_command&). An effect must be idempotent
//            on step_command::op_id (saga id + "/" + step, the same for the action and its
//            compensation), e.g. ledger.apply(op_id, ...) / ledger.revert(op_id): the handler
//            runs again after a crash between its effect and the stored reply. A compensation
//            must accept "nothing to undo" (ledger.revert answers nothing_applied/tombstoned).
//            Different answers to a repeated effect (applied / already_applied) must map to the
//            same step_result.
//
// Per command (the envelope of one delivery):
//   1. parse_command; a malformed command, or a step this participant has no handler for:
//      errc::invalid_argument, which the bus does not retry: dead-lettered at once, committed.
//   2. get the (saga id, step) record from the Store (key: key_prefix + "r/" + saga id + "/" +
//      step; step names never contain '/', so the key and the op id are unambiguous). A record
//      it cannot read (corrupt, or another writer's value under its key prefix) is no outage
//      that a retry outlasts: errc::invalid_argument, dead-lettered at once, nothing run and the
//      record left as found for an operator to inspect; the saga's step deadline answers it.
//   3. A reply for this op is recorded: a duplicate. Publish that reply again, run nothing.
//   4. An action whose compensation came first (a tombstone): refused, "failed", not run.
//   5. Otherwise run the handler. A step_result is the reply. An error whose condition is
//      errc::declined (ledger_errc::insufficient, ledger_errc::reverted, a card declined) is a
//      business refusal: the reply is "failed" with the error's message as payload, a
//      successful handling. Any other error (store, ledger or broker unavailable, timeout) is
//      returned to the bus, which retries under options::retry (nothing is recorded, so the
//      retry runs the handler again: the effect's op id makes that harmless).
//   6. A compensation with no action recorded leaves a tombstone in the same record.
//   7. Store the record (compare-and-set on the version read in 2; a conflict, another
//      delivery of the same saga step racing after a rebalance, starts again at 2, up to three
//      times, then the bus retries), then publish the reply to the command's reply-to topic,
//      keyed by saga id. A crash after 7's put and before the publish: the redelivery finds the
//      reply in 3 and publishes it. So each new command costs one get, one put (two for the
//      first op of a step: its expiry-index entry; one put_all of both on an
//      atomic_batch_repository) and one publish; a duplicate one get and one publish.
//   The participant's record is the ordering authority for one consumer of the partition (the
//   bus delivers one message, or one batch, per partition at a time, and commands are keyed by
//   saga id). Two
//   consumers of one partition during a rebalance may both run a handler; the effect's op id
//   (a ledger's tombstone refuses a late apply) is what keeps that to one effect.
//
// Batches: on a bus that models batch_event_bus (memory, Kafka) and with options::max_batch > 1,
// the participant subscribes in batches (event_bus.hpp "Batches") so that a partition's backlog
// costs round trips per batch, not per command. A batch's commands are grouped by saga id: the
// groups run concurrently (their store, ledger and handler calls in flight together: on one Redis
// connection they share a pipeline), the commands of one saga one after the other, in offset
// order, each under steps 2-7 above (so a duplicate within the batch finds the record its first
// copy wrote, a compensation before its action in the batch leaves the tombstone that refuses
// it). Then every reply is published, all in flight together (one publish_batch per reply topic
// when the bus has it), and their acknowledgements awaited together; the bus commits the batch
// after that. A batch holding a malformed command runs nothing; any failure (a store or broker
// error, a conflict that outlasts its three rounds) fails the batch, which the bus redelivers one
// command at a time: those already recorded are answered from their records (duplicates), the
// others run as single commands. One batch's latency is that of its longest saga's chain, about
// one command's, whatever its size.
//
// Retention (repositories have no TTL). Each record is kept for options::retention after its
// last change, then purged; a command arriving later is handled as new. Choose the retention
// longer than the longest redelivery the bus can make. Purging is bounded: the first write of a
// record also writes an expiry-index entry (key_prefix + "x/" + 16-digit expiry in Unix ms +
// "/" + saga id + "/" + step, empty value; written before the record, or with it in one
// all-or-nothing put_all on an atomic_batch_repository, so no record is ever unindexed).
// purge_expired(limit) scans the index from its oldest entry and, for at most
// `limit` entries whose time has come, erases the record (or re-indexes it at its real expiry
// when it changed since) and the entry. Handlers call it every options::purge_every commands
// with options::purge_batch (default 64 per 32 commands: twice the rate records are created),
// so under a steady load the number of records stays bounded by rate x retention. Purge errors
// are counted, never fail a command. A purge racing a command for the same record after its
// retention may lose that record: the command then counts as new (as documented above).
//
// Metrics (options::metrics, label `participant` = options::name):
//   bulwark_participant_commands_total{participant,op,outcome}  commands handled (run, or a late
//                                          action refused), by op and reply outcome
//   bulwark_participant_duplicates_total{participant,op}        duplicates answered from a record
//   bulwark_participant_tombstones_total{participant}           compensations before their action
//   bulwark_participant_late_actions_refused_total{participant} actions refused by a tombstone
//   bulwark_participant_malformed_total{participant}            commands dead-lettered at once
//   bulwark_participant_unreadable_records_total{participant}   commands dead-lettered because
//                                          their step's record could not be read (step 2)
//   bulwark_participant_purged_total{participant}               records purged after retention
//   bulwark_participant_batches_total{participant}              batches of more than one command
//                                          handled together
//
// Stopping: stop() leaves the group as the bus's subscription stop() does (drains the handler in
// flight, then interrupts it; an interrupted command is redelivered). start() may follow again.
// Threads: handlers run on the subscription's strand; stats() may be read from any thread. The
// participant keeps references to the bus and the store: they must outlive it, and stop() must
// have completed before it is destroyed.

#include <bulwark/coarse_clock.hpp>
#include <bulwark/detail/when_all.hpp>
#include <bulwark/error.hpp>
#include <bulwark/event_bus.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/repository.hpp>
#include <bulwark/result.hpp>
#include <bulwark/retry_policy.hpp>
#include <bulwark/saga/wire.hpp>

#include <asio/awaitable.hpp>

#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bulwark::saga {

/// What a step handler is asked to do; views valid until the handler's task completes.
struct step_command {
  std::string_view saga_id;
  std::string_view step;
  saga::op op = op::action;
  std::string_view payload;
  /// saga id + "/" + step: the idempotency key to pass to the effect (ledger.apply/revert).
  /// The same for the action and its compensation, so revert(op_id) undoes apply(op_id).
  std::string_view op_id;
  unsigned attempt = 1; ///< the bus's delivery attempt (1 on the first)
};

/// A step handler's answer: the reply's outcome and payload.
struct step_result {
  reply_outcome outcome = reply_outcome::succeeded;
  std::string payload;

  static step_result succeeded(std::string payload = {}) { return {reply_outcome::succeeded, std::move(payload)}; }
  /// A business refusal (the saga compensates); returning an errc::declined error does the same.
  static step_result failed(std::string reason) { return {reply_outcome::failed, std::move(reason)}; }
};

using step_handler = std::function<task<step_result>(const step_command&)>;

/// The two halves of one step; a step without compensation answers "succeeded" to one.
struct step_handlers {
  step_handler action;
  step_handler compensation{};
};

/// The op id a participant gives its handlers for (saga_id, step).
inline std::string make_op_id(std::string_view saga_id, std::string_view step) {
  std::string id;
  id.reserve(saga_id.size() + 1 + step.size());
  id.append(saga_id).append("/").append(step);
  return id;
}

struct participant_options {
  std::string topic;                         ///< the command topic (required)
  std::string group = "bulwark-participant"; ///< consumer group
  std::string dead_letter_topic;             ///< empty: topic + ".dlq"
  start_from start = start_from::earliest;   ///< where a new group starts
  /// Retries of a handler error (an unavailable store, ledger or broker). Unbounded by default:
  /// an outage must not dead-letter commands; only malformed ones are dead-lettered (at once).
  retry_policy retry{.delays = {std::chrono::milliseconds(50), std::chrono::milliseconds(5000), 2.0, true},
                     .max_attempts = std::numeric_limits<unsigned>::max()};
  std::string key_prefix = "saga-participant/"; ///< the Store keys' prefix: one per participant
  /// How long a record (replies, tombstone) is kept after its last change.
  std::chrono::system_clock::duration retention = std::chrono::hours(24);
  std::size_t purge_every = 32; ///< commands between two inline purges (0: never inline)
  std::size_t purge_batch = 64; ///< index entries looked at per inline purge
  /// The most commands handled together (see "Batches"), on a bus that models batch_event_bus;
  /// 1: one command at a time.
  std::size_t max_batch = 128;
  std::shared_ptr<metrics::registry> metrics{}; ///< none when empty
  std::string name = "participant";             ///< the `participant` label
};

/// What a participant did since it was built.
struct participant_stats {
  std::uint64_t handled = 0;              ///< commands run (or refused late), not duplicates
  std::uint64_t failed_replies = 0;       ///< of those, replied "failed"
  std::uint64_t duplicates = 0;           ///< answered from a record
  std::uint64_t tombstones = 0;           ///< compensations that came before their action
  std::uint64_t late_actions_refused = 0; ///< actions refused by a tombstone
  std::uint64_t malformed = 0;            ///< dead-lettered at once
  std::uint64_t unreadable_records = 0;   ///< dead-lettered: their step's record is unreadable
  std::uint64_t purged = 0;               ///< records purged after their retention
  std::uint64_t purge_failures = 0;       ///< inline purges that met a store error
  std::uint64_t batches = 0;              ///< batches of more than one command handled together
};

namespace detail {

/// One (saga id, step) record: the replies given, and whether the compensation came first.
struct participant_record {
  struct stored_reply {
    reply_outcome outcome = reply_outcome::succeeded;
    std::string payload;
  };
  std::optional<stored_reply> action;
  std::optional<stored_reply> compensation;
  bool tombstone = false;      ///< the compensation came before any action: refuse a late one
  std::int64_t changed_ms = 0; ///< the last change, Unix ms (the retention runs from it)
};

// Binary, so that payloads need not be UTF-8: "P1", a flags byte, changed_ms (8 bytes, big
// endian), then each reply present as a 4-byte big-endian length and its bytes.
inline constexpr unsigned char record_has_action = 1, record_action_failed = 2, record_has_compensation = 4,
                               record_compensation_failed = 8, record_tombstone = 16;

inline void put_be(std::string& out, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline std::uint64_t get_be(std::string_view in, std::size_t at, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(in[at + static_cast<std::size_t>(i)]);
  return v;
}

inline std::string encode(const participant_record& r) {
  unsigned char flags = 0;
  if (r.action) flags |= record_has_action | (r.action->outcome == reply_outcome::failed ? record_action_failed : 0);
  if (r.compensation)
    flags |=
        record_has_compensation | (r.compensation->outcome == reply_outcome::failed ? record_compensation_failed : 0);
  if (r.tombstone) flags |= record_tombstone;
  std::string out = "P1";
  out.push_back(static_cast<char>(flags));
  put_be(out, static_cast<std::uint64_t>(r.changed_ms), 8);
  for (const auto* reply : {&r.action, &r.compensation})
    if (*reply) {
      put_be(out, (*reply)->payload.size(), 4);
      out += (*reply)->payload;
    }
  return out;
}

/// errc::protocol_error for bytes that encode() did not write.
inline result<participant_record> decode(std::string_view in) {
  auto bad = [](const char* why) { return error(errc::protocol_error, std::string("participant record: ") + why); };
  if (in.size() < 11 || in.substr(0, 2) != "P1") return bad("not a participant record");
  const auto flags = static_cast<unsigned char>(in[2]);
  participant_record r;
  r.changed_ms = static_cast<std::int64_t>(get_be(in, 3, 8));
  r.tombstone = (flags & record_tombstone) != 0;
  std::size_t at = 11;
  auto take = [&](std::optional<participant_record::stored_reply>& into, bool failed) -> bool {
    if (in.size() - at < 4) return false;
    const auto size = get_be(in, at, 4);
    at += 4;
    if (in.size() - at < size) return false;
    into.emplace();
    into->outcome = failed ? reply_outcome::failed : reply_outcome::succeeded;
    into->payload.assign(in.substr(at, size));
    at += size;
    return true;
  };
  if ((flags & record_has_action) && !take(r.action, (flags & record_action_failed) != 0)) return bad("truncated");
  if ((flags & record_has_compensation) && !take(r.compensation, (flags & record_compensation_failed) != 0))
    return bad("truncated");
  if (at != in.size()) return bad("trailing bytes");
  return r;
}

inline std::string expiry_text(std::int64_t ms) {
  char digits[24];
  std::snprintf(digits, sizeof digits, "%016lld", static_cast<long long>(ms < 0 ? 0 : ms));
  return digits;
}

} // namespace detail

/// Applies each (saga id, step, op) command once and answers duplicates from its record; see
/// the header comment for the rules.
template <event_bus Bus, repository Store, class Clock = coarse_system_clock> class participant {
public:
  using options = participant_options;

  /// Keeps references to bus and store. Throws std::invalid_argument for an empty topic or
  /// group, or a retention that is not positive (as every construction in bulwark fails).
  participant(Bus& bus, Store& store, options opts, Clock clock = Clock{})
      : bus_(bus), store_(store), opts_(std::move(opts)), clock_(std::move(clock)) {
    if (opts_.topic.empty()) throw std::invalid_argument("saga::participant: options::topic is empty");
    if (opts_.group.empty()) throw std::invalid_argument("saga::participant: options::group is empty");
    if (opts_.max_batch == 0) throw std::invalid_argument("saga::participant: options::max_batch is 0");
    if (opts_.retention <= std::chrono::system_clock::duration::zero())
      throw std::invalid_argument("saga::participant: options::retention must be positive");
    if (opts_.metrics) instruments_.emplace(*opts_.metrics, opts_.name);
  }
  participant(const participant&) = delete;
  participant& operator=(const participant&) = delete;

  /// Registers the handlers of step `name`, before start(). Throws std::invalid_argument for an
  /// empty name, a name with '/', a step registered twice or no action handler, and
  /// std::logic_error once started.
  void add_step(std::string name, step_handlers handlers) {
    if (subscription_) throw std::logic_error("saga::participant: add_step after start()");
    if (name.empty() || name.find('/') != std::string::npos)
      throw std::invalid_argument("saga::participant: a step name is non-empty and has no '/': \"" + name + "\"");
    if (!handlers.action) throw std::invalid_argument("saga::participant: step \"" + name + "\" has no action");
    if (!steps_.emplace(std::move(name), std::move(handlers)).second)
      throw std::invalid_argument("saga::participant: step registered twice");
  }

  /// Joins the consumer group on the command topic. Errors: the bus's subscribe errors;
  /// errc::rejected when already started or no step is registered.
  task<void> start() {
    if (subscription_) co_return error(errc::rejected, "saga::participant: already started");
    if (steps_.empty()) co_return error(errc::rejected, "saga::participant: no step registered");
    subscribe_options o{.topic = opts_.topic,
                        .group = opts_.group,
                        .retry = opts_.retry,
                        .dead_letter_topic = opts_.dead_letter_topic,
                        .start = opts_.start,
                        .max_batch = opts_.max_batch};
    auto subscribing = subscribe_commands(std::move(o));
    auto sub = co_await std::move(subscribing);
    if (!sub) co_return std::move(sub).error();
    subscription_.emplace(std::move(sub).value());
    co_return ok();
  }

  /// Leaves the group (drains the handler in flight, see the bus's stop()). Idempotent.
  asio::awaitable<void> stop() {
    if (!subscription_) co_return;
    auto sub = std::move(*subscription_);
    subscription_.reset();
    co_await sub.stop();
  }

  /// The reply recorded for (saga_id, step, o), if any: what a duplicate would be answered.
  /// Errors: the store's; errc::protocol_error for a record it did not write.
  task<std::optional<reply>> recorded_reply(std::string saga_id, std::string step, saga::op o) {
    auto getting = store_.get(record_key(saga_id, step));
    BOOST_OUTCOME_CO_TRY(found, co_await std::move(getting));
    if (!found) co_return std::optional<reply>{};
    BOOST_OUTCOME_CO_TRY(rec, detail::decode(found->value));
    const auto& slot = o == op::action ? rec.action : rec.compensation;
    if (!slot) co_return std::optional<reply>{};
    co_return std::optional<reply>{reply{std::move(saga_id), std::move(step), o, slot->outcome, slot->payload}};
  }

  /// Purges up to `limit` records whose retention has passed (see the header comment); the
  /// number purged. Errors: the store's (what was purged before it stays purged). Cost: a scan
  /// of the oldest index entry; when it is due, a scan of `limit`, then one get and one or two
  /// erases per index entry due. (Most calls find nothing due: the one-entry scan keeps them
  /// from reading `limit` entries for nothing, which cost Redis ~8 reads per checkout command.)
  task<std::size_t> purge_expired(std::size_t limit) {
    if (limit == 0) co_return std::size_t{0};
    const std::int64_t now = now_ms();
    const std::string index_prefix = opts_.key_prefix + "x/";
    // An entry's key after the prefix: 16-digit expiry, '/', the record's name; its expiry or -1.
    auto due_of = [&index_prefix](std::string_view key) -> std::int64_t {
      const std::string_view rest = key.substr(index_prefix.size());
      std::int64_t due = 0;
      const bool well_formed = rest.size() > 17 && rest[16] == '/' &&
                               std::from_chars(rest.data(), rest.data() + 16, due).ptr == rest.data() + 16;
      return well_formed ? due : -1;
    };
    auto peeking = store_.scan(index_prefix, "", 1);
    BOOST_OUTCOME_CO_TRY(oldest, co_await std::move(peeking));
    if (oldest.entries.empty() || due_of(oldest.entries.front().key) > now) co_return std::size_t{0};
    auto scanning = store_.scan(index_prefix, "", limit);
    BOOST_OUTCOME_CO_TRY(page, co_await std::move(scanning));
    std::size_t purged = 0;
    for (const auto& entry : page.entries) {
      const std::string_view rest = std::string_view(entry.key).substr(index_prefix.size());
      const std::int64_t due = due_of(entry.key);
      const bool well_formed = due >= 0;
      if (well_formed && due > now) break; // the index is in expiry order: nothing further is due
      if (well_formed) {
        const std::string key = opts_.key_prefix + "r/" + std::string(rest.substr(17));
        auto getting = store_.get(key);
        BOOST_OUTCOME_CO_TRY(found, co_await std::move(getting));
        if (found) {
          auto rec = detail::decode(found->value);
          const std::int64_t expires = rec ? expiry_of(rec.value()) : due;
          if (expires > now) {
            // Changed since it was indexed: index it again at its real expiry.
            const std::string moved = index_prefix + detail::expiry_text(expires) + "/" + std::string(rest.substr(17));
            auto indexing = store_.put(moved, std::string(), std::nullopt);
            BOOST_OUTCOME_CO_TRY(co_await std::move(indexing));
          } else {
            auto erasing = store_.erase(key);
            BOOST_OUTCOME_CO_TRY(erased, co_await std::move(erasing));
            if (erased) {
              ++purged;
              count(&atomic_stats::purged, instruments_ ? instruments_->purged : nullptr);
            }
          }
        }
      }
      auto unindexing = store_.erase(entry.key);
      BOOST_OUTCOME_CO_TRY(co_await std::move(unindexing));
    }
    co_return purged;
  }

  participant_stats stats() const {
    participant_stats s;
    s.handled = stats_.handled.load(std::memory_order_relaxed);
    s.failed_replies = stats_.failed_replies.load(std::memory_order_relaxed);
    s.duplicates = stats_.duplicates.load(std::memory_order_relaxed);
    s.tombstones = stats_.tombstones.load(std::memory_order_relaxed);
    s.late_actions_refused = stats_.late_actions_refused.load(std::memory_order_relaxed);
    s.malformed = stats_.malformed.load(std::memory_order_relaxed);
    s.unreadable_records = stats_.unreadable_records.load(std::memory_order_relaxed);
    s.purged = stats_.purged.load(std::memory_order_relaxed);
    s.purge_failures = stats_.purge_failures.load(std::memory_order_relaxed);
    s.batches = stats_.batches.load(std::memory_order_relaxed);
    return s;
  }

private:
  using record = detail::participant_record;

  // How a command was answered: what the metrics count.
  enum class answer_kind { handled, duplicate, tombstoned, refused_late };
  struct answer {
    record::stored_reply reply;
    answer_kind kind;
  };

  struct atomic_stats {
    std::atomic<std::uint64_t> handled{0}, failed_replies{0}, duplicates{0}, tombstones{0}, late_actions_refused{0},
        malformed{0}, unreadable_records{0}, purged{0}, purge_failures{0}, batches{0};
  };

  struct instruments {
    instruments(metrics::registry& r, const std::string& name) {
      auto& commands = r.counter_family("bulwark_participant_commands_total",
                                        "Saga commands a participant handled, by op and reply outcome",
                                        {"participant", "op", "outcome"});
      for (auto o : {op::action, op::compensation})
        for (auto out : {reply_outcome::succeeded, reply_outcome::failed})
          handled[index(o)][out == reply_outcome::failed] =
              &commands.labels({name, std::string(to_string(o)), std::string(to_string(out))});
      auto& dups =
          r.counter_family("bulwark_participant_duplicates_total",
                           "Duplicate saga commands a participant answered from its record", {"participant", "op"});
      for (auto o : {op::action, op::compensation})
        duplicates[index(o)] = &dups.labels({name, std::string(to_string(o))});
      tombstones =
          &r.counter_family("bulwark_participant_tombstones_total",
                            "Compensations that arrived before their action (a tombstone refuses it)", {"participant"})
               .labels({name});
      late_refused = &r.counter_family("bulwark_participant_late_actions_refused_total",
                                       "Actions refused because their compensation came first", {"participant"})
                          .labels({name});
      malformed = &r.counter_family("bulwark_participant_malformed_total",
                                    "Malformed or unknown saga commands, dead-lettered at once", {"participant"})
                       .labels({name});
      unreadable = &r.counter_family("bulwark_participant_unreadable_records_total",
                                     "Saga commands dead-lettered because their step's record could not be read",
                                     {"participant"})
                        .labels({name});
      purged = &r.counter_family("bulwark_participant_purged_total", "Participant records purged after their retention",
                                 {"participant"})
                    .labels({name});
      batches =
          &r.counter_family("bulwark_participant_batches_total",
                            "Batches of more than one saga command a participant handled together", {"participant"})
               .labels({name});
    }
    static std::size_t index(op o) { return o == op::action ? 0 : 1; }
    std::array<std::array<metrics::counter*, 2>, 2> handled{};
    std::array<metrics::counter*, 2> duplicates{};
    metrics::counter* tombstones;
    metrics::counter* late_refused;
    metrics::counter* malformed;
    metrics::counter* unreadable;
    metrics::counter* purged;
    metrics::counter* batches;
  };

  std::string record_key(std::string_view saga_id, std::string_view step) const {
    std::string key;
    key.reserve(opts_.key_prefix.size() + 3 + saga_id.size() + step.size());
    key.append(opts_.key_prefix).append("r/").append(saga_id).append("/").append(step);
    return key;
  }

  std::int64_t now_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now().time_since_epoch()).count();
  }
  std::int64_t expiry_of(const record& r) const {
    return r.changed_ms + std::chrono::duration_cast<std::chrono::milliseconds>(opts_.retention).count();
  }

  void count(std::atomic<std::uint64_t> atomic_stats::*field, metrics::counter* c) {
    (stats_.*field).fetch_add(1, std::memory_order_relaxed);
    if (c) c->inc();
  }

  // Batches where the bus has them (see "Batches"), else one command at a time.
  task<typename Bus::subscription> subscribe_commands(subscribe_options o) {
    if constexpr (batch_event_bus<Bus>) {
      if (opts_.max_batch > 1) {
        batch_handler h = [this](std::span<const envelope> batch) { return handle_batch(batch); };
        return bus_.subscribe_batch(std::move(o), std::move(h));
      }
    }
    message_handler h = [this](const envelope& e) { return handle(e); };
    return bus_.subscribe(std::move(o), std::move(h));
  }

  // A command and the handlers of its step; owned copies (the envelope's views die with the
  // delivery, and the steps after this suspend).
  struct parsed_command {
    command cmd;
    const step_handlers* handlers;
    unsigned attempt;
  };

  // Step 1: errc::invalid_argument for a malformed command or a step not served here (counted
  // as malformed when `count_malformed`).
  result<parsed_command> parse(const envelope& e, bool count_malformed) {
    auto parsed = parse_command(e);
    if (!parsed) {
      if (count_malformed) count(&atomic_stats::malformed, instruments_ ? instruments_->malformed : nullptr);
      return parsed.error();
    }
    auto found = steps_.find(parsed.value().step);
    if (found == steps_.end()) {
      if (count_malformed) count(&atomic_stats::malformed, instruments_ ? instruments_->malformed : nullptr);
      return error(errc::invalid_argument, "saga command for step \"" + parsed.value().step +
                                               "\", which this participant (" + opts_.name + ") does not serve");
    }
    return parsed_command{std::move(parsed).value(), &found->second, e.attempt};
  }

  // Steps 2-7 without the publish, a conflict read again up to three times: the reply to send.
  task<reply> answer_command(const parsed_command& p) {
    const command& cmd = p.cmd;
    const std::string op_id = make_op_id(cmd.saga_id, cmd.step);
    for (int round = 1;; ++round) {
      auto deciding = decide(cmd, *p.handlers, op_id, p.attempt);
      auto d = co_await std::move(deciding);
      if (d) {
        // Counted once recorded: a publish that fails now is answered again as a duplicate.
        note(cmd.op, d.value().kind, d.value().reply.outcome);
        co_return reply{cmd.saga_id, cmd.step, cmd.op, d.value().reply.outcome, std::move(d.value().reply.payload)};
      }
      // Another delivery of this step wrote the record between our get and put: read again.
      if (d.error() == errc::conflict && round < 3) continue;
      co_return std::move(d).error();
    }
  }

  task<void> handle(const envelope& e) {
    BOOST_OUTCOME_CO_TRY(p, parse(e, true));
    auto answering = answer_command(p);
    BOOST_OUTCOME_CO_TRY(r, co_await std::move(answering));
    auto publishing = bus_.publish(p.cmd.reply_to, r.to_message());
    BOOST_OUTCOME_CO_TRY(co_await std::move(publishing));
    co_await maybe_purge(1);
    co_return ok();
  }

  // A reply and where it goes (a view of its command's reply-to).
  using addressed_reply = std::pair<std::string_view, message>;

  // The commands of one saga in a batch, in offset order: their replies, or the first error.
  task<std::vector<addressed_reply>> answer_in_order(std::vector<const parsed_command*> commands) {
    std::vector<addressed_reply> out;
    out.reserve(commands.size());
    for (const auto* p : commands) {
      auto answering = answer_command(*p);
      BOOST_OUTCOME_CO_TRY(r, co_await std::move(answering));
      out.emplace_back(p->cmd.reply_to, r.to_message());
    }
    co_return out;
  }

  // A batch (see "Batches"): sagas concurrently, each saga's commands in order, then every reply
  // published together. Any failure fails the batch (the bus delivers it again one at a time).
  task<void> handle_batch(std::span<const envelope> batch) {
    if (batch.size() == 1) return handle(batch.front());
    return handle_many(batch);
  }

  task<void> handle_many(std::span<const envelope> batch) {
    std::vector<parsed_command> commands;
    commands.reserve(batch.size());
    // A malformed command fails the batch before anything runs: its one-at-a-time delivery
    // dead-letters it (and counts it) and handles the others.
    for (const auto& e : batch) {
      BOOST_OUTCOME_CO_TRY(p, parse(e, false));
      commands.push_back(std::move(p));
    }
    std::vector<std::vector<const parsed_command*>> sagas;
    {
      std::unordered_map<std::string_view, std::size_t> group_of;
      for (const auto& p : commands) {
        auto [it, fresh] = group_of.emplace(p.cmd.saga_id, sagas.size());
        if (fresh) sagas.emplace_back();
        sagas[it->second].push_back(&p);
      }
    }
    std::vector<task<std::vector<addressed_reply>>> chains;
    chains.reserve(sagas.size());
    for (auto& one : sagas) chains.push_back(answer_in_order(std::move(one)));
    auto answered = co_await bulwark::detail::when_all(std::move(chains));
    count(&atomic_stats::batches, instruments_ ? instruments_->batches : nullptr);
    // Every reply by its topic, each topic's in batch order of the sagas.
    std::map<std::string_view, std::vector<message>> outgoing;
    for (auto& chain : answered) {
      if (!chain) co_return std::move(chain).error();
      for (auto& [topic, m] : chain.value()) outgoing[topic].push_back(std::move(m));
    }
    auto publishing = publish_all(std::move(outgoing));
    BOOST_OUTCOME_CO_TRY(co_await std::move(publishing));
    co_await maybe_purge(batch.size());
    co_return ok();
  }

  // Publishes every message, all in flight together; ok once every one is acknowledged.
  task<void> publish_all(std::map<std::string_view, std::vector<message>> outgoing) {
    if constexpr (requires(Bus & b, std::vector<message> m) { b.publish_batch(std::string_view{}, std::move(m)); }) {
      std::vector<task<void>> topics;
      for (auto& [topic, messages] : outgoing)
        topics.push_back([](Bus& bus, std::string t, std::vector<message> m) -> task<void> {
          auto results = co_await bus.publish_batch(t, std::move(m));
          for (auto& r : results)
            if (!r) co_return std::move(r).error();
          co_return ok();
        }(bus_, std::string(topic), std::move(messages)));
      auto done = co_await bulwark::detail::when_all(std::move(topics));
      for (auto& d : done)
        if (!d) co_return std::move(d).error();
    } else {
      std::vector<task<delivery>> publishes;
      for (auto& [topic, messages] : outgoing)
        for (auto& m : messages) publishes.push_back(bus_.publish(topic, std::move(m)));
      auto done = co_await bulwark::detail::when_all(std::move(publishes));
      for (auto& d : done)
        if (!d) co_return std::move(d).error();
    }
    co_return ok();
  }

  // Steps 2-7 of the header comment, without the publish: the answer, stored.
  task<answer> decide(const command& cmd, const step_handlers& handlers, const std::string& op_id, unsigned attempt) {
    const std::string key = record_key(cmd.saga_id, cmd.step);
    auto getting = store_.get(key);
    BOOST_OUTCOME_CO_TRY(found, co_await std::move(getting));
    record rec;
    std::optional<version_t> expected = no_version;
    if (found) {
      auto decoded = detail::decode(found->value);
      if (!decoded) {
        count(&atomic_stats::unreadable_records, instruments_ ? instruments_->unreadable : nullptr);
        co_return error(errc::invalid_argument, "saga step record \"" + key + "\" is unreadable (" +
                                                    decoded.error().message() + "): not retried, nothing run");
      }
      rec = std::move(decoded).value();
      expected = found->version;
    }
    auto& slot = cmd.op == op::action ? rec.action : rec.compensation;
    if (slot) co_return answer{*slot, answer_kind::duplicate};

    answer a{{}, answer_kind::handled};
    if (cmd.op == op::action && rec.tombstone) {
      a = {{reply_outcome::failed, "refused: the compensation of this step came first"}, answer_kind::refused_late};
    } else {
      const step_handler& run = cmd.op == op::action ? handlers.action : handlers.compensation;
      if (run) {
        step_command sc{cmd.saga_id, cmd.step, cmd.op, cmd.payload, op_id, attempt};
        auto running = run(sc);
        auto result = co_await std::move(running);
        if (result)
          a.reply = {result.value().outcome, std::move(result.value().payload)};
        else if (result.error() == errc::declined)
          a.reply = {reply_outcome::failed, result.error().message()};
        else
          co_return std::move(result).error(); // infrastructure: the bus retries
      }
      if (cmd.op == op::compensation && !rec.action) {
        rec.tombstone = true;
        a.kind = answer_kind::tombstoned;
      }
    }
    slot = a.reply;
    rec.changed_ms = now_ms();
    if (!found) {
      const std::string index_key = opts_.key_prefix + "x/" + detail::expiry_text(expiry_of(rec)) + "/" +
                                    std::string(std::string_view(key).substr(opts_.key_prefix.size() + 2));
      if constexpr (atomic_batch_repository<Store>) {
        // The index entry and the record in one call, all or nothing (one round trip, not two).
        std::vector<batch_put> puts; // built apart: GCC 12 miscompiles a braced list inside co_await
        puts.push_back({index_key, std::string(), std::nullopt});
        puts.push_back({key, detail::encode(rec), expected});
        auto putting = store_.put_all(std::move(puts), {});
        BOOST_OUTCOME_CO_TRY(co_await std::move(putting));
        co_return a;
      } else {
        // The index entry first: a record is never left unindexed (an orphan entry is harmless).
        auto indexing = store_.put(index_key, std::string(), std::nullopt);
        BOOST_OUTCOME_CO_TRY(co_await std::move(indexing));
      }
    }
    auto putting = store_.put(key, detail::encode(rec), expected);
    BOOST_OUTCOME_CO_TRY(co_await std::move(putting));
    co_return a;
  }

  void note(op o, answer_kind kind, reply_outcome outcome) {
    const auto i = instruments::index(o);
    if (kind == answer_kind::duplicate) {
      count(&atomic_stats::duplicates, instruments_ ? instruments_->duplicates[i] : nullptr);
      return;
    }
    count(&atomic_stats::handled, instruments_ ? instruments_->handled[i][outcome == reply_outcome::failed] : nullptr);
    if (outcome == reply_outcome::failed) stats_.failed_replies.fetch_add(1, std::memory_order_relaxed);
    if (kind == answer_kind::tombstoned)
      count(&atomic_stats::tombstones, instruments_ ? instruments_->tombstones : nullptr);
    if (kind == answer_kind::refused_late)
      count(&atomic_stats::late_actions_refused, instruments_ ? instruments_->late_refused : nullptr);
  }

  // After `handled` more commands: purge purge_batch entries per purge_every commands.
  asio::awaitable<void> maybe_purge(std::size_t handled) {
    if (opts_.purge_every == 0) co_return;
    const std::size_t since = commands_since_purge_.fetch_add(handled, std::memory_order_relaxed) + handled;
    if (since < opts_.purge_every) co_return;
    commands_since_purge_.store(since % opts_.purge_every, std::memory_order_relaxed);
    auto purging = purge_expired(opts_.purge_batch * (since / opts_.purge_every));
    auto purged = co_await std::move(purging);
    if (!purged) stats_.purge_failures.fetch_add(1, std::memory_order_relaxed);
  }

  Bus& bus_;
  Store& store_;
  options opts_;
  Clock clock_;
  std::map<std::string, step_handlers, std::less<>> steps_;
  std::optional<instruments> instruments_;
  std::optional<typename Bus::subscription> subscription_;
  atomic_stats stats_;
  std::atomic<std::size_t> commands_since_purge_{0};
};

} // namespace bulwark::saga
