#pragma once
// The Redis Cluster side of redis::client: hash slots, the slot map, and the routing of one
// call through MOVED, ASK, TRYAGAIN, CLUSTERDOWN and node failures. Private: use
// redis::client(executor, cluster_options).
//
// How a call travels:
//   route     the key (argv[1], or the first key of EVAL/EVALSHA) gives the slot (CRC16 of the
//             key or of its {hash tag}, mod 16384), the slot map gives the node; keyless
//             commands go to any master. Each node is a detail::pool (one connection by
//             default): the command joins that connection's pipeline like any other.
//   MOVED     the slot has a new owner: the map is updated for that slot at once, a full
//             refresh (CLUSTER SLOTS) is started (at most one per refresh_interval), and the
//             call is sent again to the new owner.
//   ASK       the slot is migrating: the call is sent once to the named node, preceded by ASKING
//             on the same connection (the two leave in one write); the map is not changed.
//   TRYAGAIN, CLUSTERDOWN, MASTERDOWN, LOADING, READONLY, a node that refuses connections or
//             is reconnecting: the call waits retry.delay(n) and is routed again (the map
//             refreshed meanwhile), until request_timeout; then it fails with the last error.
//   a connection lost after the command was sent: a read is retried; a write fails
//             (connection_closed, condition unavailable): it may have been applied.
//   WAIT      with min_replicas_acked > 0, a write is followed on the same connection by
//             WAIT n timeout (pipelined behind it, no extra round trip before it is sent).
//
// Cost per call on the hot path: one allocation (the call with its copied arguments; it is
// also the connection's pending command, so a reply reaches on_reply with no handler object
// and no executor hop), one table look-up of the command name, no clock read (deadlines
// start from a time read once per turn of the event loop), plus the connection's own work.
//
// Threading: as redis::client (one executor that never runs two handlers at once).

#include <bulwark/redis/detail/connection.hpp>
#include <bulwark/redis/detail/pool.hpp>
#include <bulwark/redis/error.hpp>
#include <bulwark/redis/options.hpp>
#include <bulwark/redis/reply.hpp>
#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bulwark::redis {

/// Counters of a cluster client (for metrics and tests).
struct cluster_statistics {
  std::uint64_t moved = 0;         ///< MOVED redirections followed
  std::uint64_t ask = 0;           ///< ASK redirections followed
  std::uint64_t retries = 0;       ///< calls routed again after a busy cluster or an unreachable node
  std::uint64_t refreshes = 0;     ///< slot maps read (CLUSTER SLOTS answered and applied)
  std::uint64_t replica_reads = 0; ///< reads sent to a replica
};

namespace detail {

inline constexpr std::uint16_t slot_count = 16384;

inline constexpr std::array<std::uint16_t, 256> crc16_table = [] {
  std::array<std::uint16_t, 256> t{};
  for (unsigned i = 0; i < 256; ++i) {
    unsigned crc = i << 8;
    for (int b = 0; b < 8; ++b) crc = (crc & 0x8000u) ? ((crc << 1) ^ 0x1021u) : (crc << 1);
    t[i] = static_cast<std::uint16_t>(crc & 0xffffu);
  }
  return t;
}();

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), the one Redis Cluster hashes keys with.
constexpr std::uint16_t crc16(std::string_view bytes) noexcept {
  std::uint16_t crc = 0;
  for (unsigned char c : bytes) crc = static_cast<std::uint16_t>((crc << 8) ^ crc16_table[((crc >> 8) ^ c) & 0xffu]);
  return crc;
}

/// The cluster slot of `key`: CRC16 of its hash tag (the bytes between the first '{' and the
/// first '}' after it, when not empty) or of the whole key, mod 16384.
constexpr std::uint16_t key_slot(std::string_view key) noexcept {
  if (const auto open = key.find('{'); open != std::string_view::npos) {
    const auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close != open + 1) key = key.substr(open + 1, close - open - 1);
  }
  return static_cast<std::uint16_t>(crc16(key) & (slot_count - 1));
}

inline bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x >= 'a' && x <= 'z' ? x - 32 : x) == (y >= 'a' && y <= 'z' ? y - 32 : y);
         });
}

/// What routing needs to know of a command name (one table: a lookup compares only the names
/// of the same length, case-insensitively).
enum command_flags : std::uint8_t {
  command_keyless = 1,  ///< no key: goes to any master
  command_read = 2,     ///< only reads: may go to a replica, needs no WAIT
  command_scripted = 4, ///< EVAL-like: the key is the first declared one (argv[3])
};

struct command_class {
  std::string_view name;
  std::uint8_t flags;
};

inline constexpr command_class command_classes[] = {
    {"GET", command_read},
    {"SET", 0},
    {"EVALSHA", command_scripted},
    {"EVAL", command_scripted},
    {"EVAL_RO", command_scripted | command_read},
    {"EVALSHA_RO", command_scripted | command_read},
    {"FCALL", command_scripted},
    {"FCALL_RO", command_scripted},
    {"MGET", command_read},
    {"HGET", command_read},
    {"HMGET", command_read},
    {"HGETALL", command_read},
    {"HEXISTS", command_read},
    {"HLEN", command_read},
    {"EXISTS", command_read},
    {"TTL", command_read},
    {"PTTL", command_read},
    {"STRLEN", command_read},
    {"GETRANGE", command_read},
    {"TYPE", command_read},
    {"ZRANGE", command_read},
    {"ZRANGEBYLEX", command_read},
    {"ZRANGEBYSCORE", command_read},
    {"ZSCORE", command_read},
    {"ZCARD", command_read},
    {"SCARD", command_read},
    {"SMEMBERS", command_read},
    {"SISMEMBER", command_read},
    {"LRANGE", command_read},
    {"LLEN", command_read},
    {"PING", command_keyless | command_read},
    {"INFO", command_keyless | command_read},
    {"CLUSTER", command_keyless | command_read},
    {"DBSIZE", command_keyless | command_read},
    {"TIME", command_keyless | command_read},
    {"ECHO", command_keyless | command_read},
    {"KEYS", command_keyless | command_read},
    {"SCAN", command_keyless | command_read},
    {"SCRIPT", command_keyless},
    {"WAIT", command_keyless},
    {"FLUSHALL", command_keyless},
    {"FLUSHDB", command_keyless},
    {"CONFIG", command_keyless},
    {"CLIENT", command_keyless},
    {"READONLY", command_keyless},
    {"READWRITE", command_keyless},
    {"ASKING", command_keyless},
    {"COMMAND", command_keyless},
    {"ROLE", command_keyless},
    {"RANDOMKEY", command_keyless},
    {"FUNCTION", command_keyless},
    {"MEMORY", command_keyless},
    {"LATENCY", command_keyless},
    {"SLOWLOG", command_keyless},
    {"DEBUG", command_keyless},
};

/// The flags of a command name (0 for a keyed command not in the table: a write by its first key).
inline std::uint8_t command_flags_of(std::string_view name) noexcept {
  for (const auto& c : command_classes)
    if (c.name.size() == name.size() && iequals(c.name, name)) return c.flags;
  return 0;
}

/// The key a command with these flags is routed by, nullopt for a keyless command.
inline std::optional<std::string_view> routing_key(std::span<const std::string_view> args,
                                                   std::uint8_t flags) noexcept {
  if (args.size() < 2 || (flags & command_keyless) != 0) return std::nullopt;
  if ((flags & command_scripted) != 0) {
    if (args.size() >= 4 && args[2] != "0") return args[3];
    return std::nullopt;
  }
  return args[1];
}

/// The key a command is routed by, nullopt for a keyless command (sent to any master).
inline std::optional<std::string_view> routing_key(std::span<const std::string_view> args) noexcept {
  return args.empty() ? std::nullopt : routing_key(args, command_flags_of(args[0]));
}

/// A command that only reads (may go to a replica, needs no WAIT).
inline bool read_only_command(std::string_view name) noexcept { return (command_flags_of(name) & command_read) != 0; }

/// "host:port" split; nullopt when it does not parse.
inline std::optional<std::pair<std::string, std::uint16_t>> split_address(std::string_view address) {
  const auto colon = address.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::uint16_t port = 0;
  const auto digits = address.substr(colon + 1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (ec != std::errc() || end != digits.data() + digits.size() || port == 0) return std::nullopt;
  return std::pair{std::string(address.substr(0, colon)), port};
}

class cluster;

/// One call in flight through the cluster: its own copy of the arguments (it may be sent
/// several times), the caller's completion, and where it stands. It is also the connection's
/// pending_command for each try: a reply reaches cluster::on_reply without a handler object
/// or an executor hop of its own. Reference-counted (pending_command's count, one thread):
/// the cluster holds one while the call is routed, a connection one per try in its queue, a
/// retry timer or a WAIT one each.
class cluster_call final : public pending_command {
public:
  /// One allocation: the call, then its argv and lengths arrays, then the argument bytes.
  static cluster_call* make(std::span<const std::string_view> args, pending_command* caller,
                            std::shared_ptr<cluster> owner) {
    std::size_t total = 0;
    for (auto a : args) total += a.size();
    const std::size_t n = args.size();
    void* raw = ::operator new(sizeof(cluster_call) + n * (sizeof(const char*) + sizeof(std::size_t)) + total);
    auto* call = new (raw) cluster_call(caller, std::move(owner), static_cast<int>(n));
    auto* argv = call->argv_base();
    auto* lengths = call->lengths_base();
    char* bytes = reinterpret_cast<char*>(lengths + n);
    for (std::size_t i = 0; i < n; ++i) {
      if (!args[i].empty()) std::memcpy(bytes, args[i].data(), args[i].size());
      argv[i] = bytes;
      lengths[i] = args[i].size();
      bytes += args[i].size();
    }
    return call;
  }
  // Matches make()'s allocation (the deleting destructor looks it up in this class).
  static void operator delete(void* p) noexcept { ::operator delete(p); }

  cluster_call(const cluster_call&) = delete;
  cluster_call& operator=(const cluster_call&) = delete;
  ~cluster_call() override {
    if (op == nullptr) return;
    op->complete(bulwark::error(make_error_code(redis_errc::stopped)), true);
    op->release();
  }

  /// A try's outcome, from the connection: on to cluster::on_reply (posted when `defer`).
  void complete(result<reply> outcome, bool defer) override;
  bool finished() const noexcept override { return op == nullptr || op->finished(); }

  void finish(result<reply>&& outcome) {
    if (op == nullptr) return;
    op->complete(std::move(outcome), false);
    op->release();
    op = nullptr;
  }

  int argc() const noexcept { return argc_; }
  const char** argv() noexcept { return argv_base(); }
  const std::size_t* lengths() noexcept { return lengths_base(); }

  std::shared_ptr<cluster> owner;
  pending_command* op;
  std::optional<std::uint16_t> slot;
  std::uint16_t tried = 0; ///< the node of the try in flight
  bool read = false;
  bool acked_write = false; ///< followed by WAIT
  bool waited = false;      ///< has waited for a slot map (its deadline may be near)
  steady::time_point deadline{};
  unsigned redirections = 0;
  unsigned retries = 0;
  unsigned attempt = 0;           ///< numbers the tries, so a stale WAIT reply is ignored
  std::optional<std::string> ask; ///< the node of an ASK redirection: the next try goes there
  std::optional<reply> written;   ///< a write's reply, waiting for its WAIT
  bulwark::error last_error{make_error_code(redis_errc::not_connected), "no cluster node reachable"};
  std::optional<asio::steady_timer> timer;

private:
  cluster_call(pending_command* caller, std::shared_ptr<cluster> o, int n)
      : owner(std::move(o)), op(caller), argc_(n) {}
  const char** argv_base() noexcept { return reinterpret_cast<const char**>(this + 1); }
  std::size_t* lengths_base() noexcept { return reinterpret_cast<std::size_t*>(argv_base() + argc_); }
  int argc_;
};

/// A counted reference to a cluster_call.
class call_ref {
public:
  call_ref() noexcept = default;
  /// Takes over the reference `p` holds (a new call's first one).
  static call_ref adopt(cluster_call* p) noexcept {
    call_ref r;
    r.p_ = p;
    return r;
  }
  explicit call_ref(cluster_call* p) noexcept : p_(p) {
    if (p_) p_->add_ref();
  }
  call_ref(const call_ref& o) noexcept : call_ref(o.p_) {}
  call_ref(call_ref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  call_ref& operator=(call_ref o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~call_ref() {
    if (p_) p_->release();
  }
  cluster_call* operator->() const noexcept { return p_; }
  cluster_call& operator*() const noexcept { return *p_; }
  cluster_call* get() const noexcept { return p_; }

private:
  cluster_call* p_ = nullptr;
};

class cluster : public std::enable_shared_from_this<cluster> {
public:
  cluster(asio::any_io_executor executor, cluster_options options)
      : executor_(std::move(executor)), options_(std::move(options)), rng_(std::random_device{}()) {
    options_.node.readonly = options_.read_from_replicas;
    owner_.assign(slot_count, no_node);
    for (const auto& s : options_.seeds) node_at(s);
  }
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;

  /// Starts one call (the arguments are copied); completes `op` exactly once.
  void start(std::span<const std::string_view> args, pending_command* op) {
    if (stopping_) {
      op->complete(bulwark::error(make_error_code(redis_errc::stopped)), true);
      op->release();
      return;
    }
    auto call = call_ref::adopt(cluster_call::make(args, op, shared_from_this()));
    const auto flags = args.empty() ? std::uint8_t{0} : command_flags_of(args[0]);
    if (auto key = routing_key(args, flags)) call->slot = key_slot(*key);
    call->read = (flags & command_read) != 0;
    call->acked_write = options_.min_replicas_acked > 0 && !call->read && call->slot.has_value();
    call->deadline = turn_now() + options_.request_timeout;
    attempt(std::move(call));
  }

  std::size_t outstanding() const noexcept {
    std::size_t n = 0;
    for (const auto& node : nodes_) n += node.connections->outstanding();
    return n;
  }
  connection_statistics statistics() const noexcept {
    connection_statistics total;
    for (const auto& node : nodes_) total += node.connections->statistics();
    return total;
  }
  const cluster_statistics& cluster_counters() const noexcept { return counters_; }
  /// The master currently mapped to `slot` ("host:port"), empty when unknown (for tests).
  std::string owner_of(std::uint16_t slot) const {
    const auto i = owner_[slot];
    return i == no_node ? std::string() : nodes_[i].address;
  }

  void begin_stop() {
    stopping_ = true;
    for (auto& node : nodes_) node.connections->begin_stop();
    auto waiters = std::move(refresh_waiters_);
    for (auto& w : waiters) finish(*w, bulwark::error(make_error_code(redis_errc::stopped)));
  }
  void close_all() {
    for (auto& node : nodes_) node.connections->close_all();
  }

  const asio::any_io_executor& executor() const noexcept { return executor_; }
  const cluster_options& options() const noexcept { return options_; }

private:
  static constexpr std::uint16_t no_node = 0xffff;

  struct node {
    std::string address;
    std::shared_ptr<detail::pool> connections;
    std::vector<std::uint16_t> replicas; ///< from the last refresh, when this node is a master
    bool master = false;
  };

  std::uint16_t node_at(std::string_view address) {
    if (auto it = index_.find(std::string(address)); it != index_.end()) return it->second;
    auto parts = split_address(address);
    if (!parts || nodes_.size() >= no_node) return no_node;
    connection_options o = options_.node;
    o.host = parts->first;
    o.port = parts->second;
    const auto i = static_cast<std::uint16_t>(nodes_.size());
    nodes_.push_back(node{std::string(address), std::make_shared<pool>(executor_, std::move(o)), {}, false});
    index_.emplace(std::string(address), i);
    return i;
  }

  /// The node for the call's next try, or no_node when the map does not know one yet.
  std::uint16_t choose(cluster_call& call) {
    if (call.ask) return node_at(*call.ask);
    if (!call.slot) {
      for (std::size_t i = 0; i < nodes_.size(); ++i)
        if (nodes_[i].master) return static_cast<std::uint16_t>(i);
      return nodes_.empty() ? no_node : std::uint16_t{0};
    }
    const auto master = owner_[*call.slot];
    if (master == no_node || !call.read || !options_.read_from_replicas) return master;
    const auto& replicas = nodes_[master].replicas;
    if (replicas.empty()) return master;
    ++counters_.replica_reads;
    return replicas[next_replica_++ % replicas.size()];
  }

  void attempt(call_ref call) {
    if (call->op == nullptr || call->op->finished()) return finish(*call, call->last_error); // cancelled
    if (stopping_) return finish(*call, bulwark::error(make_error_code(redis_errc::stopped)));
    // The first try has its whole deadline ahead (set in this turn): no clock read.
    if ((call->attempt > 0 || call->waited) && steady::now() >= call->deadline) return finish(*call, call->last_error);
    const auto target = choose(*call);
    if (target == no_node) return wait_for_refresh(std::move(call));
    connection* c = nodes_[target].connections->pick();
    if (c == nullptr) {
      call->last_error = nodes_[target].connections->unavailable_error();
      refresh();
      return retry_later(std::move(call));
    }
    const bool asking = call->ask.has_value();
    call->ask.reset();
    const auto attempt_number = ++call->attempt;
    call->written.reset();
    if (asking) {
      const char* asking_argv[] = {"ASKING"};
      const std::size_t asking_length[] = {6};
      c->submit(1, asking_argv, asking_length, [](result<reply>) {});
    }
    call->tried = target;
    call->add_ref(); // the connection's, released after the try completes
    c->submit_op(call->argc(), call->argv(), call->lengths(), call.get());
    if (call->acked_write) send_wait(*c, call, attempt_number);
  }

  /// Completes the caller.
  static void finish(cluster_call& call, result<reply> outcome) { call.finish(std::move(outcome)); }

  /// The time at the start of this turn of the event loop: read once per turn, not per call
  /// (a call's deadline may start up to one turn early: conservative).
  steady::time_point turn_now() {
    if (!turn_clock_read_) {
      turn_now_ = steady::now();
      turn_clock_read_ = true;
      asio::post(executor_, [weak = weak_from_this()] {
        if (auto self = weak.lock()) self->turn_clock_read_ = false;
      });
    }
    return turn_now_;
  }

  void send_wait(connection& c, const call_ref& call, unsigned attempt_number) {
    // WAIT 0 would block forever; below command_timeout, or the connection would be closed.
    const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(call->deadline - turn_now());
    const auto cap = options_.node.command_timeout * 3 / 4;
    const auto timeout = std::max<std::chrono::milliseconds::rep>(1, std::min(remaining, cap).count());
    const auto n = std::to_string(options_.min_replicas_acked);
    const auto t = std::to_string(timeout);
    const char* argv[] = {"WAIT", n.c_str(), t.c_str()};
    const std::size_t lengths[] = {4, n.size(), t.size()};
    c.submit(3, argv, lengths, [self = shared_from_this(), call, attempt_number](result<reply> r) {
      if (call->attempt != attempt_number || !call->written) return; // the write itself failed
      auto written = std::move(*call->written);
      call->written.reset();
      if (!r) return finish(*call, r.error());
      const auto acked = r.value().as_integer().value_or(0);
      if (acked >= static_cast<long long>(self->options_.min_replicas_acked)) return finish(*call, std::move(written));
      finish(*call, bulwark::error(make_error_code(redis_errc::replicas_not_acked),
                                   std::to_string(acked) + " of " + std::to_string(self->options_.min_replicas_acked) +
                                       " replicas acknowledged the write in time"));
    });
  }

public:
  /// A try's outcome (from cluster_call::complete).
  void on_reply(call_ref call, std::uint16_t target, result<reply>&& r) {
    if (r) {
      if (call->acked_write) {
        call->written = std::move(r.value()); // completed by the WAIT behind it
        return;
      }
      return call->finish(std::move(r));
    }
    const auto& e = r.error();
    const auto code = e.code();
    if (code == make_error_code(redis_errc::redirected)) return redirect(std::move(call), target, e.detail(), e);
    const bool busy = code == make_error_code(redis_errc::server_busy);
    const bool never_sent = code == make_error_code(redis_errc::not_connected) ||
                            code == make_error_code(redis_errc::connection_failed) ||
                            code == make_error_code(redis_errc::connect_timeout);
    const bool lost = code == make_error_code(redis_errc::connection_closed);
    if (busy || never_sent || (lost && call->read)) {
      call->last_error = e;
      refresh();
      return retry_later(std::move(call));
    }
    if (lost) refresh();
    finish(*call, e);
  }

private:
  /// MOVED <slot> <host:port> or ASK <slot> <host:port>.
  void redirect(call_ref call, std::uint16_t from, std::string_view text, const bulwark::error& e) {
    if (++call->redirections > options_.max_redirections) return finish(*call, e);
    const bool moved = text.starts_with("MOVED ");
    const auto first = text.find(' ');
    const auto second = text.find(' ', first + 1);
    if (second == std::string_view::npos) return finish(*call, e);
    std::uint16_t slot = 0;
    const auto slot_text = text.substr(first + 1, second - first - 1);
    auto [end, ec] = std::from_chars(slot_text.data(), slot_text.data() + slot_text.size(), slot);
    std::string address(text.substr(second + 1));
    if (ec != std::errc() || slot >= slot_count || !split_address(address)) return finish(*call, e);
    if (address.front() == ':') // an empty host: the node that answered
      address = split_address(nodes_[from].address)->first + address;
    if (moved) {
      ++counters_.moved;
      const auto to = node_at(address);
      if (to == no_node) return finish(*call, e);
      owner_[slot] = to;
      nodes_[to].master = true;
      refresh();
    } else {
      ++counters_.ask;
      call->ask = std::move(address);
    }
    attempt(std::move(call));
  }

  void retry_later(call_ref call) {
    ++counters_.retries;
    const auto now = steady::now();
    auto delay = options_.retry.delay(++call->retries, rng_);
    if (now + delay > call->deadline)
      delay =
          std::chrono::duration_cast<std::chrono::milliseconds>(call->deadline - now) + std::chrono::milliseconds(1);
    if (!call->timer) call->timer.emplace(executor_);
    call->timer->expires_after(delay);
    call->timer->async_wait(
        [self = shared_from_this(), call](std::error_code) mutable { self->attempt(std::move(call)); });
  }

  // --- the slot map ---

  void wait_for_refresh(call_ref call) {
    call->waited = true;
    refresh_waiters_.push_back(std::move(call));
    refresh(true);
  }

  /// Reads CLUSTER SLOTS from the first node that answers (known masters, then the others,
  /// then the seeds). At most one at a time; `urgent` skips refresh_interval.
  void refresh(bool urgent = false) {
    if (refreshing_ || stopping_) return;
    const auto now = steady::now();
    if (!urgent && now - last_refresh_ < options_.refresh_interval) return;
    refreshing_ = true;
    last_refresh_ = now;
    auto candidates = std::make_shared<std::vector<std::uint16_t>>();
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      if (nodes_[i].master) candidates->push_back(static_cast<std::uint16_t>(i));
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      if (!nodes_[i].master) candidates->push_back(static_cast<std::uint16_t>(i));
    ask_slots(std::move(candidates), 0);
  }

  void ask_slots(std::shared_ptr<std::vector<std::uint16_t>> candidates, std::size_t next) {
    while (next < candidates->size()) {
      const auto i = (*candidates)[next];
      connection* c = nodes_[i].connections->pick();
      if (c == nullptr) {
        ++next;
        continue;
      }
      const char* argv[] = {"CLUSTER", "SLOTS"};
      const std::size_t lengths[] = {7, 5};
      c->submit(2, argv, lengths, [self = shared_from_this(), candidates, next, i](result<reply> r) mutable {
        if (r && self->apply_slots(r.value(), i)) return self->refresh_done(true);
        self->ask_slots(std::move(candidates), next + 1);
      });
      return;
    }
    refresh_done(false);
  }

  void refresh_done(bool ok) {
    refreshing_ = false;
    if (ok) ++counters_.refreshes;
    auto waiters = std::move(refresh_waiters_);
    refresh_waiters_.clear();
    for (auto& w : waiters) {
      if (ok)
        attempt(std::move(w));
      else
        retry_later(std::move(w));
    }
  }

  /// CLUSTER SLOTS: [[start, end, [host, port, id, ...], [replica host, port, ...]...]...].
  /// Applied only when the whole reply parses.
  bool apply_slots(const reply& r, std::uint16_t asked) {
    if (r.type != reply::kind::array || r.elements.empty()) return false;
    std::vector<std::uint16_t> owner(slot_count, no_node);
    std::vector<std::pair<std::uint16_t, std::vector<std::uint16_t>>> shards;
    const auto asked_host = split_address(nodes_[asked].address)->first;
    auto address_of = [&](const reply& n) -> std::optional<std::string> {
      if (n.type != reply::kind::array || n.elements.size() < 2 || n.elements[0].type != reply::kind::string ||
          !n.elements[1].as_integer())
        return std::nullopt;
      std::string host = n.elements[0].str;
      if (host.empty() || host == "?") host = asked_host;
      return host + ":" + std::to_string(n.elements[1].integer);
    };
    for (const auto& range : r.elements) {
      if (range.type != reply::kind::array || range.elements.size() < 3) return false;
      const auto first = range.elements[0].as_integer();
      const auto last = range.elements[1].as_integer();
      if (!first || !last || *first < 0 || *last >= slot_count || *first > *last) return false;
      auto master_address = address_of(range.elements[2]);
      if (!master_address) return false;
      const auto master = node_at(*master_address);
      if (master == no_node) return false;
      std::vector<std::uint16_t> replicas;
      for (std::size_t k = 3; k < range.elements.size(); ++k) {
        auto a = address_of(range.elements[k]);
        if (!a) return false;
        if (const auto n = node_at(*a); n != no_node) replicas.push_back(n);
      }
      for (auto s = *first; s <= *last; ++s) owner[static_cast<std::size_t>(s)] = master;
      shards.emplace_back(master, std::move(replicas));
    }
    owner_ = std::move(owner);
    for (auto& n : nodes_) {
      n.master = false;
      n.replicas.clear();
    }
    for (auto& [master, replicas] : shards) {
      nodes_[master].master = true;
      auto& list = nodes_[master].replicas;
      for (auto rep : replicas)
        if (std::find(list.begin(), list.end(), rep) == list.end()) list.push_back(rep);
    }
    return true;
  }

  asio::any_io_executor executor_;
  cluster_options options_;
  std::vector<node> nodes_;
  std::unordered_map<std::string, std::uint16_t> index_;
  std::vector<std::uint16_t> owner_; ///< slot -> master node
  std::vector<call_ref> refresh_waiters_;
  steady::time_point turn_now_{};
  bool turn_clock_read_ = false;
  steady::time_point last_refresh_{};
  std::minstd_rand rng_;
  cluster_statistics counters_;
  std::size_t next_replica_ = 0;
  bool refreshing_ = false;
  bool stopping_ = false;
};

inline void cluster_call::complete(result<reply> outcome, bool defer) {
  if (defer) { // the connection is closing, its caller may be on the stack: later
    add_ref();
    auto& executor = owner->executor();
    asio::post(executor, [self = call_ref::adopt(this), outcome = std::move(outcome)]() mutable {
      auto& cluster = *self->owner;
      const auto tried = self->tried;
      cluster.on_reply(std::move(self), tried, std::move(outcome));
    });
    return;
  }
  owner->on_reply(call_ref(this), tried, std::move(outcome));
}

/// Starts a call on the cluster; `args` is any contiguous range of views.
struct cluster_initiation {
  template <class Handler, class Args>
  void operator()(Handler&& handler, const std::shared_ptr<cluster>& cluster, const Args& args) const {
    using op_type = command_op<std::decay_t<Handler>, asio::any_io_executor>;
    auto* op = new op_type(std::forward<Handler>(handler), cluster->executor());
    op->hook_cancellation();
    cluster->start(std::span<const std::string_view>(std::data(args), std::size(args)), op);
  }
};

} // namespace detail
} // namespace bulwark::redis
