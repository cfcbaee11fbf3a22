#pragma once
// bulwark::redis::cache: the cache concept on Redis.
//
// Key layout: one string per entry at <key_prefix><key>, holding
//   16 hex digits of the version | 16 hex digits of stored_at (ms since the Unix epoch) | value
// so a get is one plain GET. A put runs a Lua script (EVALSHA, EVAL on NOSCRIPT) that compares
// the stored version with the new one and writes with PX <ttl> (or no expiry for ttl 0), so
// "a lower version never replaces a higher one" holds atomically across every process sharing
// the server. Expiry is Redis's own (PEXPIRE semantics): an expired entry is a miss and no
// longer blocks a lower version.
//
// Put batching: the server's cost of a script call dwarfs that of the SET inside it, so the
// puts started in the same turn of the event loop (on one cache and its copies) are coalesced
// into ONE EVALSHA of a multi-key script (KEYS = the keys, ARGV = entry/ttl pairs) that applies
// the rule above to each key in issue order (a later put of the same key sees the earlier one)
// and returns one 0/1 per key. A batch holds at most cache_options::max_put_batch puts; more go
// in the next one. Each caller still gets its own result: arguments are checked before a put
// joins a batch, and a per-key server error (e.g. WRONGTYPE) fails that put only; an error of
// the whole command (transport, timeout, stop) fails every put of the batch with that error.
// A cancelled caller resumes at once with redis::redis_errc::cancelled (its write may still happen).
// A put joins the client's outstanding() only when its batch is flushed (at the end of the
// turn), so one started in the same turn as client::stop() fails with stopped. On a cluster
// (a client made with cluster_options) a turn's puts are grouped by hash slot as they arrive
// (a script's keys must share one): one script call per slot and turn, or per max_put_batch
// puts of one slot, each sent to that slot's master.

#include <bulwark/cache.hpp>
#include <bulwark/detail/key_rules.hpp>
#include <bulwark/redis/client.hpp>
#include <bulwark/redis/script.hpp>

#include <asio/post.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bulwark::redis {

struct cache_options {
  /// Prepended to every key: give each cache (and each repository) its own prefix.
  std::string key_prefix = "bulwark:cache:";
  /// Longer keys fail with errc::invalid_argument.
  std::size_t max_key_bytes = 1024;
  /// Larger values fail with errc::too_large (Redis itself caps a string at 512 MiB).
  std::size_t max_value_bytes = 64u << 20;
  /// Most puts coalesced into one script call (see "Put batching" above); 1: one call per put.
  /// Clamped to 1..1024 (the script unpacks a batch into one MSET).
  std::size_t max_put_batch = 128;
};

namespace detail {
inline constexpr std::size_t cache_header_size = 32;

inline void append_hex16(std::string& out, std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  char text[16];
  for (int i = 15; i >= 0; --i, v >>= 4) text[i] = digits[v & 0xf];
  out.append(text, sizeof text); // one append, not 16 push_backs (each checks the capacity)
}

/// The 16 lowercase hex digits at the start of `s` (at least 16 bytes long), or nullopt.
inline std::optional<std::uint64_t> parse_hex16(std::string_view s) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < 16; ++i) {
    const char c = s[static_cast<std::size_t>(i)];
    unsigned d;
    if (c >= '0' && c <= '9')
      d = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f')
      d = static_cast<unsigned>(c - 'a' + 10);
    else
      return std::nullopt;
    v = (v << 4) | d;
  }
  return v;
}

// The batched put: KEYS[i] entry, ARGV[2i-1] packed entry, ARGV[2i] ttl in ms ("0": none), in
// issue order. Returns an array: per key 1 stored, 0 not, or the server's error for that key.
// Each distinct key is read once (GETRANGE of its 32-byte header, so a large value is never
// copied into Lua); the puts are then decided in order against the version the earlier ones
// left, and only the last accepted put of each key is written (a SET replaces value and ttl
// whole, so the end state is the same): one MSET for those without ttl, one SET PX per other.
// Versions are compared as their 16 lowercase hex digits (fixed width: the byte order is the
// numeric order): one substring per put, no number conversion (a stored header that is not
// such digits puts no constraint, as before). Lua's per-put work is most of a pipelined put's
// server cost.
inline const script& cache_put_batch_script() {
  static const script s(R"lua(
local out, head, last, order = {}, {}, {}, {}
for i = 1, #KEYS do
  local k, e = KEYS[i], ARGV[2 * i - 1]
  local h = head[k]
  if h == nil then
    local r = redis.pcall('GETRANGE', k, 0, 31)
    if type(r) == 'table' then
      h = r
    else
      local v = string.sub(r, 1, 16)
      if string.len(r) == 32 and string.find(v, '^[0-9a-f]+$') then h = v else h = false end
    end
    head[k] = h
  end
  if type(h) == 'table' then
    out[i] = h
  else
    local v = string.sub(e, 1, 16)
    if h and h > v then
      out[i] = 0
    else
      if last[k] == nil then order[#order + 1] = k end
      last[k] = i
      head[k] = v
      out[i] = 1
    end
  end
end
local plain, failed = {}, {}
for _, k in ipairs(order) do
  local i = last[k]
  local ttl = ARGV[2 * i]
  if ttl == '0' then
    plain[#plain + 1] = k
    plain[#plain + 1] = ARGV[2 * i - 1]
  else
    local r = redis.pcall('SET', k, ARGV[2 * i - 1], 'PX', ttl)
    if type(r) == 'table' and r.err then failed[k] = r end
  end
end
if #plain > 0 then
  local r = redis.pcall('MSET', unpack(plain))
  if type(r) == 'table' and r.err then
    for j = 1, #plain, 2 do failed[plain[j]] = r end
  end
end
if next(failed) ~= nil then
  for i = 1, #KEYS do
    if out[i] == 1 and failed[KEYS[i]] then out[i] = failed[KEYS[i]] end
  end
end
return out
)lua");
  return s;
}

/// Coalesces the puts of one turn of the event loop into one script call (see the header).
/// Shared by a cache and its copies; lives while a posted flush or a batch in flight needs it.
class put_batcher : public std::enable_shared_from_this<put_batcher> {
public:
  put_batcher(client c, std::size_t max_batch)
      : client_(std::move(c)), max_batch_(std::clamp<std::size_t>(max_batch, 1, 1024)) {}
  put_batcher(const put_batcher&) = delete;
  put_batcher& operator=(const put_batcher&) = delete;
  ~put_batcher() {
    for (auto& g : open_)
      for (auto& e : g.entries) {
        e.op->complete(bulwark::error(make_error_code(redis_errc::stopped)), true);
        e.op->release();
      }
  }

  /// One put: the full key then the packed entry in one buffer (one string to move around,
  /// not three), and its ttl in ms (0: none).
  struct put_request {
    std::string bytes;
    std::size_t key_size = 0;
    long long ttl_ms = 0;
    std::string_view key() const noexcept { return std::string_view(bytes).substr(0, key_size); }
    std::string_view packed() const noexcept { return std::string_view(bytes).substr(key_size); }
  };

  /// Queues one put (moved in); completes with that key's element of the script's reply (an
  /// integer, or an error element) or with the batch's error.
  auto enqueue(put_request request) {
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(result<reply>)>(
        initiation{}, asio::use_awaitable, shared_from_this(), std::move(request));
  }

  /// Script calls issued and puts they carried (for metrics and tests).
  std::uint64_t batches() const noexcept { return batches_; }
  std::uint64_t puts() const noexcept { return puts_; }

private:
  struct entry {
    put_request request;
    pending_command* op; // one reference, released once completed
  };
  struct batch {
    std::vector<entry> entries;
    std::vector<std::string_view> argv;
    std::vector<std::array<char, 24>> ttls; ///< each entry's ttl in decimal (argv points here)
    std::string nkeys;
    ~batch() {
      for (auto& e : entries) {
        if (e.op == nullptr) continue;
        e.op->complete(bulwark::error(make_error_code(redis_errc::stopped)), true);
        e.op->release();
      }
    }
  };

  struct initiation {
    template <class Handler>
    void operator()(Handler&& handler, const std::shared_ptr<put_batcher>& self, put_request request) const {
      using op_type = command_op<std::decay_t<Handler>, asio::any_io_executor>;
      auto* op = new op_type(std::forward<Handler>(handler), self->client_.get_executor());
      op->hook_cancellation();
      self->add(entry{std::move(request), op});
    }
  };

  // The puts of one turn wait in one group per cluster slot (a script's keys must share a
  // slot; one group on a single server), issue order kept within a group. A group that reaches
  // max_batch is sent at once (its command joins the connection's current write); the others
  // at the end of the turn.
  void add(entry e) {
    auto& group = group_of(client_.is_cluster() ? key_slot(e.request.key()) : std::uint16_t{0});
    group.entries.push_back(std::move(e));
    if (group.entries.size() >= max_batch_) {
      std::vector<entry> full;
      full.swap(group.entries);
      send_batch(std::move(full));
    }
    if (!flush_posted_) {
      flush_posted_ = true;
      asio::post(client_.get_executor(), [self = shared_from_this()] {
        self->flush_posted_ = false;
        self->flush();
      });
    }
  }

  struct open_group {
    std::uint16_t slot;
    std::vector<entry> entries;
  };

  open_group& group_of(std::uint16_t slot) {
    if (group_index_.empty()) group_index_.assign(slot_count, 0);
    auto& index = group_index_[slot];
    if (index == 0) {
      open_.push_back(open_group{slot, {}});
      index = static_cast<std::uint32_t>(open_.size());
    }
    return open_[index - 1];
  }

  void flush() {
    if (open_.empty()) return;
    std::vector<open_group> groups;
    groups.swap(open_);
    for (const auto& g : groups) group_index_[g.slot] = 0;
    for (auto& g : groups)
      if (!g.entries.empty()) send_batch(std::move(g.entries));
  }

  void send_batch(std::vector<entry> entries) {
    auto b = std::make_shared<batch>();
    b->entries = std::move(entries);
    const auto n = b->entries.size();
    b->nkeys = std::to_string(n);
    const auto& s = cache_put_batch_script();
    b->argv.reserve(3 + 3 * n);
    b->ttls.resize(n);
    b->argv.push_back("EVALSHA");
    b->argv.push_back(s.sha());
    b->argv.push_back(b->nkeys);
    for (auto& e : b->entries) b->argv.push_back(e.request.key());
    for (std::size_t i = 0; i < n; ++i) {
      auto& ttl = b->ttls[i];
      const auto end = std::to_chars(ttl.data(), ttl.data() + ttl.size(), b->entries[i].request.ttl_ms).ptr;
      b->argv.push_back(b->entries[i].request.packed());
      b->argv.push_back(std::string_view(ttl.data(), static_cast<std::size_t>(end - ttl.data())));
    }
    ++batches_;
    puts_ += n;
    send(std::move(b));
  }

  void send(std::shared_ptr<batch> b) {
    auto& argv = b->argv;
    client_.async_execute(argv, [self = shared_from_this(), b = std::move(b)](result<reply> r) mutable {
      self->on_reply(std::move(b), std::move(r));
    });
  }

  void on_reply(std::shared_ptr<batch> b, result<reply> r) {
    if (script::not_loaded(r) && b->argv[0] == "EVALSHA") {
      const auto& s = cache_put_batch_script();
      b->argv[0] = "EVAL";
      b->argv[1] = s.text();
      return send(std::move(b));
    }
    auto& entries = b->entries;
    if (r && (r.value().type != reply::kind::array || r.value().elements.size() != entries.size()))
      r = bulwark::error(make_error_code(redis_errc::unexpected_reply), "cache put script: not one reply per key");
    for (std::size_t i = 0; i < entries.size(); ++i) {
      pending_command* op = std::exchange(entries[i].op, nullptr);
      if (r)
        op->complete(std::move(r.value().elements[i]), false);
      else
        op->complete(r.error(), false);
      op->release();
    }
    entries.clear();
  }

  client client_;
  std::size_t max_batch_;
  std::vector<open_group> open_;
  std::vector<std::uint32_t> group_index_; ///< slot -> 1 + its group in open_, 0: none
  bool flush_posted_ = false;
  std::uint64_t batches_ = 0;
  std::uint64_t puts_ = 0;
};
} // namespace detail

class cache {
public:
  /// A cache on `client`'s server; cheap to construct (connections belong to the client).
  explicit cache(client c, cache_options options = {})
      : client_(std::move(c)), options_(std::move(options)),
        batcher_(std::make_shared<detail::put_batcher>(client_, options_.max_put_batch)) {}

  /// The entry, or nullopt on a miss or after its ttl. One GET.
  /// Errors: the client's (unavailable, timeout, ...); invalid_argument for a bad key;
  /// protocol_error (redis::redis_errc::unexpected_reply) for a value not in this layout.
  task<std::optional<cached>> get(std::string_view key) {
    BOOST_OUTCOME_CO_TRY(check_key(key));
    const auto full = full_key(key);
    auto r = co_await client_.execute("GET", full);
    if (!r) co_return r.error();
    auto& rep = r.value();
    if (rep.is_nil()) co_return std::optional<cached>();
    if (rep.type != reply::kind::string || rep.str.size() < detail::cache_header_size) co_return malformed(full);
    const auto version = detail::parse_hex16(rep.str);
    const auto stored_ms = detail::parse_hex16(std::string_view(rep.str).substr(16));
    if (!version || !stored_ms) co_return malformed(full);
    cached out;
    rep.str.erase(0, detail::cache_header_size);
    out.value = std::move(rep.str);
    out.version = *version;
    out.stored_at = std::chrono::system_clock::time_point(std::chrono::milliseconds(*stored_ms));
    co_return std::optional<cached>(std::move(out));
  }

  /// Stores `value` stamped with stored_at = now unless a higher version is present (then
  /// false). ttl 0: no expiry. One EVALSHA per batch of the puts started in the same turn of
  /// the event loop (see "Put batching" above). Errors: the client's; invalid_argument for a bad
  /// key or a negative ttl; too_large over max_value_bytes.
  task<bool> put(std::string_view key, versioned value, std::chrono::milliseconds ttl) {
    BOOST_OUTCOME_CO_TRY(check_key(key));
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_ttl(ttl));
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_value_size(value.value.size(), options_.max_value_bytes));
    detail::put_batcher::put_request request;
    auto& bytes = request.bytes;
    bytes.reserve(options_.key_prefix.size() + key.size() + detail::cache_header_size + value.value.size());
    bytes += options_.key_prefix;
    bytes += key;
    request.key_size = bytes.size();
    detail::append_hex16(bytes, value.version);
    const auto now =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
    detail::append_hex16(bytes, static_cast<std::uint64_t>(now.count()));
    bytes += value.value;
    request.ttl_ms = static_cast<long long>(ttl.count());
    auto r = co_await batcher_->enqueue(std::move(request));
    if (!r) co_return r.error();
    auto& rep = r.value();
    if (auto n = rep.as_integer()) co_return *n == 1;
    if (rep.type == reply::kind::error) co_return server_error(rep.str);
    co_return bulwark::error(make_error_code(redis_errc::unexpected_reply), "cache put script: not an integer");
  }

  /// Removes the entry; true when it was present. One DEL.
  task<bool> erase(std::string_view key) {
    BOOST_OUTCOME_CO_TRY(check_key(key));
    const auto full = full_key(key);
    auto r = co_await client_.execute("DEL", full);
    if (!r) co_return r.error();
    if (auto n = r.value().as_integer()) co_return *n > 0;
    co_return bulwark::error(make_error_code(redis_errc::unexpected_reply), "DEL: not an integer");
  }

  const cache_options& options() const noexcept { return options_; }
  /// Script calls made for puts so far (one per batch), and the puts they carried.
  std::uint64_t put_batches() const noexcept { return batcher_->batches(); }
  std::uint64_t batched_puts() const noexcept { return batcher_->puts(); }
  client& connection() noexcept { return client_; }

private:
  result<void> check_key(std::string_view key) const { return bulwark::detail::check_key(key, options_.max_key_bytes); }
  /// key_prefix + key in one allocation (prefix + std::string(key) made two).
  std::string full_key(std::string_view key) const {
    std::string full;
    full.reserve(options_.key_prefix.size() + key.size());
    full += options_.key_prefix;
    full += key;
    return full;
  }
  static bulwark::error malformed(const std::string& key) {
    return {make_error_code(redis_errc::unexpected_reply), "value at " + key + " is not a bulwark cache entry"};
  }

  client client_;
  cache_options options_;
  std::shared_ptr<detail::put_batcher> batcher_;
};

} // namespace bulwark::redis

static_assert(bulwark::cache<bulwark::redis::cache>, "redis::cache must model bulwark::cache");
