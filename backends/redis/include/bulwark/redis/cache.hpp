#pragma once
// bulwark::redis::cache: the cache concept on Redis.
//
// Key layout: one string per entry at <key_prefix><key>, holding
//   16 hex digits of the version | 16 hex digits of stored_at (ms since the Unix epoch) | value
// so a get is one plain GET. A put is one Lua script (EVALSHA, EVAL on NOSCRIPT) that compares
// the stored version with the new one and writes with PX <ttl> (or no expiry for ttl 0), so
// "a lower version never replaces a higher one" holds atomically across every process sharing
// the server. Expiry is Redis's own (PEXPIRE semantics): an expired entry is a miss and no
// longer blocks a lower version.

#include <bulwark/cache.hpp>
#include <bulwark/redis/client.hpp>
#include <bulwark/redis/script.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bulwark::redis {

struct cache_options {
  /// Prepended to every key: give each cache (and each repository) its own prefix.
  std::string key_prefix = "bulwark:cache:";
  /// Longer keys fail with errc::invalid_argument.
  std::size_t max_key_bytes = 1024;
  /// Larger values fail with errc::too_large (Redis itself caps a string at 512 MiB).
  std::size_t max_value_bytes = 64u << 20;
};

namespace detail {
inline constexpr std::size_t cache_header_size = 32;

inline void append_hex16(std::string& out, std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) out.push_back(digits[(v >> (i * 4)) & 0xf]);
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

// KEYS[1] entry; ARGV[1] packed entry, ARGV[2] ttl in ms ("0": none). Returns 1 stored, 0 not.
// Versions are compared as two 32-bit halves: Lua numbers are doubles.
inline const script& cache_put_script() {
  static const script s(R"lua(
local cur = redis.call('GET', KEYS[1])
if cur and string.len(cur) >= 32 then
  local ch = tonumber(string.sub(cur, 1, 8), 16)
  local cl = tonumber(string.sub(cur, 9, 16), 16)
  local nh = tonumber(string.sub(ARGV[1], 1, 8), 16)
  local nl = tonumber(string.sub(ARGV[1], 9, 16), 16)
  if ch and cl and (ch > nh or (ch == nh and cl > nl)) then return 0 end
end
if ARGV[2] == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
)lua");
  return s;
}
} // namespace detail

class cache {
public:
  /// A cache on `client`'s server; cheap to construct (connections belong to the client).
  explicit cache(client c, cache_options options = {}) : client_(std::move(c)), options_(std::move(options)) {}

  /// The entry, or nullopt on a miss or after its ttl. One GET.
  /// Errors: the client's (unavailable, timeout, ...); invalid_argument for a bad key;
  /// protocol_error (redis::errc::unexpected_reply) for a value not in this layout.
  task<std::optional<cached>> get(std::string_view key) {
    BOOST_OUTCOME_CO_TRY(check_key(key));
    const auto full = options_.key_prefix + std::string(key);
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
  /// false). ttl 0: no expiry. One EVALSHA. Errors: the client's; invalid_argument for a bad
  /// key or a negative ttl; too_large over max_value_bytes.
  task<bool> put(std::string_view key, versioned value, std::chrono::milliseconds ttl) {
    BOOST_OUTCOME_CO_TRY(check_key(key));
    if (ttl.count() < 0) co_return bulwark::error(bulwark::errc::invalid_argument, "negative ttl");
    if (value.value.size() > options_.max_value_bytes)
      co_return bulwark::error(bulwark::errc::too_large, "value of " + std::to_string(value.value.size()) +
                                                             " bytes exceeds " +
                                                             std::to_string(options_.max_value_bytes));
    const auto full = options_.key_prefix + std::string(key);
    std::string packed;
    packed.reserve(detail::cache_header_size + value.value.size());
    detail::append_hex16(packed, value.version);
    const auto now =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
    detail::append_hex16(packed, static_cast<std::uint64_t>(now.count()));
    packed += value.value;
    const auto ttl_text = std::to_string(ttl.count());
    const auto& put_script = detail::cache_put_script();
    auto argv = put_script.command(std::array<std::string_view, 1>{full},
                                   std::array<std::string_view, 2>{packed, ttl_text}, "1");
    auto r = co_await client_.async_execute(argv);
    if (script::not_loaded(r)) {
      put_script.as_eval(argv);
      r = co_await client_.async_execute(argv);
    }
    if (!r) co_return r.error();
    if (auto n = r.value().as_integer()) co_return *n == 1;
    co_return bulwark::error(make_error_code(errc::unexpected_reply), "cache put script: not an integer");
  }

  /// Removes the entry; true when it was present. One DEL.
  task<bool> erase(std::string_view key) {
    BOOST_OUTCOME_CO_TRY(check_key(key));
    const auto full = options_.key_prefix + std::string(key);
    auto r = co_await client_.execute("DEL", full);
    if (!r) co_return r.error();
    if (auto n = r.value().as_integer()) co_return *n > 0;
    co_return bulwark::error(make_error_code(errc::unexpected_reply), "DEL: not an integer");
  }

  const cache_options& options() const noexcept { return options_; }
  client& connection() noexcept { return client_; }

private:
  result<void> check_key(std::string_view key) const {
    if (key.empty()) return bulwark::error(bulwark::errc::invalid_argument, "empty key");
    if (key.size() > options_.max_key_bytes) return bulwark::error(bulwark::errc::invalid_argument, "key too long");
    return ok();
  }
  static bulwark::error malformed(const std::string& key) {
    return {make_error_code(errc::unexpected_reply), "value at " + key + " is not a bulwark cache entry"};
  }

  client client_;
  cache_options options_;
};

} // namespace bulwark::redis

static_assert(bulwark::cache<bulwark::redis::cache>, "redis::cache must model bulwark::cache");
