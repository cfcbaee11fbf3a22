#pragma once
// bulwark::redis::repository: the repository concept on Redis.
//
// Key layout, for key_prefix P (one namespace per prefix):
//   P d:<key>   a hash {v: version, d: value}
//   P index     a sorted set of every key (all scores 0): scan reads it with ZRANGEBYLEX, in
//               byte order, never SCAN over the keyspace
//   P seq       the namespace's version counter (INCR): versions rise on every put of every
//               key, so they stay monotonic per key even across erase
// put and erase are one Lua script (EVALSHA, EVAL on NOSCRIPT) that updates the hash and the
// index atomically; get is one HMGET; put_batch and get_batch are one script for many keys, and
// put_all (puts and erases, all or nothing: atomic_batch_repository) one script call; a scan
// page is one script that reads the index range and the entries together (it touches keys it derives from the index, so
// it needs a standalone server or a cluster in which all of P's keys share a hash slot, e.g. a prefix with a {hash
// tag}).

#include <bulwark/detail/key_rules.hpp>
#include <bulwark/redis/client.hpp>
#include <bulwark/redis/script.hpp>
#include <bulwark/repository.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::redis {

struct repository_options {
  /// The namespace: prepended to every Redis key this repository uses.
  std::string key_prefix = "bulwark:repo:";
  /// Longer keys fail with errc::invalid_argument.
  std::size_t max_key_bytes = 1024;
  /// Larger values fail with errc::too_large.
  std::size_t max_value_bytes = 16u << 20;
  /// The most keys one script of put_batch or get_batch handles: Redis runs a script alone, so
  /// this bounds how long one batch holds the server (about 5-10 us a put). put_all refuses more
  /// (it cannot split); the saga orchestrator and participant put up to 3 keys at once.
  std::size_t max_batch = 1024;
};

namespace detail {
// The put script, for one key (put), many (put_batch, each entry on its own) or many all or
// nothing (put_all), and erase. KEYS: index, seq, then one data key per entry. ARGV[1]: '1' all
// or nothing, '0' each entry on its own; then per entry: key, value, mode ('a' any, 'n' absent,
// 'v' version, 'e' erase), expected. Returns per entry the new version, -1 on a conflict, and
// for an erase 1 when the key existed, else 0. Each on its own: in order (a key twice: the
// second sees the first). All or nothing: every condition is checked before anything is
// written (the caller sends no key twice); one that fails: nothing written, -1 for it and 0 for
// the others. Only the modes that compare read the version first ('a' writes without a read),
// and only a new key is added to the index (HSET made its fields: a key's hash and its index
// entry are made and removed together, so a key that has its hash is indexed).
inline const script& repository_put_script() {
  static const script s(R"lua(
local all = ARGV[1] == '1'
local function holds(i, a)
  local mode = ARGV[a + 3]
  if mode == 'n' then return not redis.call('HGET', KEYS[i], 'v') end
  if mode == 'v' then return redis.call('HGET', KEYS[i], 'v') == ARGV[a + 4] end
  return true
end
local out = {}
if all then
  local refused = false
  for i = 3, #KEYS do
    if holds(i, 1 + 4 * (i - 3)) then out[i - 2] = 0 else out[i - 2] = -1; refused = true end
  end
  if refused then return out end
end
for i = 3, #KEYS do
  local a = 1 + 4 * (i - 3)
  if ARGV[a + 3] == 'e' then
    out[i - 2] = redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], ARGV[a + 1])
  elseif not all and not holds(i, a) then
    out[i - 2] = -1
  else
    local v = redis.call('INCR', KEYS[2])
    if redis.call('HSET', KEYS[i], 'v', string.format('%d', v), 'd', ARGV[a + 2]) > 0 then
      redis.call('ZADD', KEYS[1], 0, ARGV[a + 1])
    end
    out[i - 2] = v
  end
end
return out
)lua");
  return s;
}

// KEYS: the data keys. Returns {version, value} per key, both nil (false) when it is absent.
inline const script& repository_get_batch_script() {
  static const script s(R"lua(
local out = {}
for i = 1, #KEYS do
  local f = redis.call('HMGET', KEYS[i], 'v', 'd')
  out[2 * i - 1] = f[1]
  out[2 * i] = f[2]
end
return out
)lua");
  return s;
}

// KEYS: index. ARGV: min, max, count, data prefix. Returns {key, version, value, ...}.
inline const script& repository_scan_script() {
  static const script s(R"lua(
local keys = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, k in ipairs(keys) do
  local f = redis.call('HMGET', ARGV[4] .. k, 'v', 'd')
  if f[1] then
    out[#out + 1] = k
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
  end
end
return out
)lua");
  return s;
}

inline std::optional<version_t> parse_version(std::string_view s) {
  version_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

} // namespace detail

class repository {
public:
  /// A repository in namespace options.key_prefix on `client`'s server.
  explicit repository(client c, repository_options options = {})
      : client_(std::move(c)), options_(std::move(options)), index_key_(options_.key_prefix + "index"),
        seq_key_(options_.key_prefix + "seq"), data_prefix_(options_.key_prefix + "d:") {}

  /// The value and version at `key`, or nullopt. One HMGET.
  task<std::optional<versioned>> get(std::string_view key) {
    BOOST_OUTCOME_CO_TRY(check_key(key));
    const auto data = data_prefix_ + std::string(key);
    auto r = co_await client_.execute("HMGET", data, "v", "d");
    if (!r) co_return r.error();
    const auto& rep = r.value();
    if (rep.type != reply::kind::array || rep.elements.size() != 2) co_return unexpected("HMGET");
    if (rep.elements[0].is_nil()) co_return std::optional<versioned>();
    const auto version = detail::parse_version(rep.elements[0].str);
    if (!version || rep.elements[1].type != reply::kind::string) co_return unexpected("HMGET");
    co_return std::optional<versioned>(versioned{rep.elements[1].str, *version});
  }

  /// Stores `value` and returns its new version. expected: nullopt = unconditional,
  /// no_version = the key must be absent, n = the current version must be n; otherwise
  /// errc::conflict. One script. Errors also: invalid_argument, too_large, the client's.
  task<version_t> put(std::string_view key_view, std::string value, std::optional<version_t> expected) {
    // Owned: the script's argv is sent again after a suspension (EVAL after NOSCRIPT), and a
    // call abandoned at its deadline runs on after its caller's key is gone.
    const std::string key(key_view);
    BOOST_OUTCOME_CO_TRY(check_put(key, value));
    const auto data = data_prefix_ + key;
    const std::string_view mode = put_mode(expected);
    const auto expected_text = expected ? std::to_string(*expected) : std::string();
    auto r = co_await detail::repository_put_script().run(
        client_, std::array<std::string_view, 3>{index_key_, seq_key_, data},
        std::array<std::string_view, 5>{each, key, value, mode, expected_text});
    if (!r) co_return r.error();
    const auto n = only_result(r.value());
    if (!n) co_return unexpected("put script");
    if (*n < 0) co_return conflict(expected);
    co_return static_cast<version_t>(*n);
  }

  /// One put of put_batch or put_all: the arguments of put().
  using put_entry = bulwark::batch_put;

  /// put() of every entry, in order: one result per entry, each what put() would give (a
  /// conflict, a refused key or value fails that entry alone; a refused one is not sent). Cost:
  /// one script call (one round trip) per options().max_batch entries, the calls one after the
  /// other, instead of one call per put; Redis's work per put (the script's four commands)
  /// stays. A client error fails every entry of its call.
  asio::awaitable<std::vector<result<version_t>>> put_batch(std::vector<put_entry> entries) {
    std::vector<result<version_t>> out(entries.size(), result<version_t>(version_t{}));
    std::vector<std::size_t> sent; // indexes of the entries of the call being built
    for (std::size_t first = 0; first < entries.size();) {
      sent.clear();
      for (; first < entries.size() && sent.size() < std::max<std::size_t>(1, options_.max_batch); ++first) {
        const auto& e = entries[first];
        if (auto checked = check_put(e.key, e.value); !checked)
          out[first] = checked.error();
        else
          sent.push_back(first);
      }
      if (sent.empty()) continue;
      auto r = co_await run_put_script(false, entries, sent, {});
      const bool well_formed = r && r.value().type == reply::kind::array && r.value().elements.size() == sent.size();
      for (std::size_t j = 0; j < sent.size(); ++j) {
        auto& slot = out[sent[j]];
        const auto n = well_formed ? r.value().elements[j].as_integer() : std::nullopt;
        if (!r)
          slot = r.error();
        else if (!n)
          slot = unexpected("put script");
        else if (*n < 0)
          slot = conflict(entries[sent[j]].expected);
        else
          slot = static_cast<version_t>(*n);
      }
    }
    co_return out;
  }

  /// put() of every entry in `puts`, then erase() of every key in `erases`, all or nothing
  /// (atomic_batch_repository, repository.hpp): when an entry's expected version does not hold,
  /// nothing is written and the call fails with errc::conflict, whose detail names that entry's
  /// key. Returns the puts' new versions, in order. Errors also: invalid_argument (a refused key,
  /// a key given twice, more than options().max_batch keys in all), too_large, the client's (the
  /// outcome is then unknown, as for put()). Cost: one script call (one round trip) for what
  /// put() and erase() take one call each; the server's work per key stays.
  task<std::vector<version_t>> put_all(std::vector<put_entry> puts, std::vector<std::string> erases = {}) {
    if (puts.size() + erases.size() > std::max<std::size_t>(1, options_.max_batch))
      co_return bulwark::error(bulwark::errc::invalid_argument,
                               "put_all: " + std::to_string(puts.size() + erases.size()) +
                                   " keys, more than max_batch (" + std::to_string(options_.max_batch) + ")");
    std::vector<std::string_view> named;
    named.reserve(puts.size() + erases.size());
    for (const auto& e : puts) {
      BOOST_OUTCOME_CO_TRY(check_put(e.key, e.value));
      named.push_back(e.key);
    }
    for (const auto& k : erases) {
      BOOST_OUTCOME_CO_TRY(check_key(k));
      named.push_back(k);
    }
    std::sort(named.begin(), named.end());
    if (auto twice = std::adjacent_find(named.begin(), named.end()); twice != named.end())
      co_return bulwark::error(bulwark::errc::invalid_argument,
                               "put_all: key \"" + std::string(*twice) + "\" given twice");
    if (named.empty()) co_return std::vector<version_t>();
    std::vector<std::size_t> sent(puts.size());
    for (std::size_t j = 0; j < sent.size(); ++j) sent[j] = j;
    auto r = co_await run_put_script(true, puts, sent, erases);
    if (!r) co_return r.error();
    const auto& rep = r.value();
    if (rep.type != reply::kind::array || rep.elements.size() != named.size()) co_return unexpected("put script");
    std::vector<version_t> out;
    out.reserve(puts.size());
    for (std::size_t j = 0; j < puts.size(); ++j) {
      const auto n = rep.elements[j].as_integer();
      if (!n) co_return unexpected("put script");
      if (*n < 0) {
        const auto why = conflict(puts[j].expected);
        co_return bulwark::error(bulwark::errc::conflict,
                                 "put_all: \"" + puts[j].key + "\": " + std::string(why.detail()));
      }
      out.push_back(static_cast<version_t>(*n));
    }
    co_return out;
  }

  /// get() of every key, in order: one result per key (a refused key fails alone and is not
  /// sent). Cost: one script call per options().max_batch keys, one after the other, instead of
  /// one HMGET per key. A client error fails every key of its call.
  asio::awaitable<std::vector<result<std::optional<versioned>>>> get_batch(std::vector<std::string> keys) {
    std::vector<result<std::optional<versioned>>> out(keys.size(), std::optional<versioned>());
    std::vector<std::size_t> sent;
    for (std::size_t first = 0; first < keys.size();) {
      sent.clear();
      std::vector<std::string> data;
      for (; first < keys.size() && sent.size() < std::max<std::size_t>(1, options_.max_batch); ++first) {
        if (auto checked = check_key(keys[first]); !checked) {
          out[first] = checked.error();
          continue;
        }
        sent.push_back(first);
        data.push_back(data_prefix_ + keys[first]);
      }
      if (sent.empty()) continue;
      const std::vector<std::string_view> data_keys(data.begin(), data.end());
      auto r = co_await detail::repository_get_batch_script().run(client_, data_keys, {});
      const bool well_formed =
          r && r.value().type == reply::kind::array && r.value().elements.size() == 2 * sent.size();
      for (std::size_t j = 0; j < sent.size(); ++j) {
        auto& slot = out[sent[j]];
        if (!r) {
          slot = r.error();
          continue;
        }
        if (!well_formed) {
          slot = unexpected("get batch script");
          continue;
        }
        auto& version_reply = r.value().elements[2 * j];
        auto& value_reply = r.value().elements[2 * j + 1];
        if (version_reply.is_nil()) continue; // absent
        const auto version = detail::parse_version(version_reply.str);
        if (!version || value_reply.type != reply::kind::string)
          slot = unexpected("get batch script");
        else
          slot = std::optional<versioned>(versioned{std::move(value_reply.str), *version});
      }
    }
    co_return out;
  }

  /// Removes `key`; true when it existed. One script (the put script's erase).
  task<bool> erase(std::string_view key_view) {
    const std::string key(key_view); // owned, as in put
    BOOST_OUTCOME_CO_TRY(check_key(key));
    const auto data = data_prefix_ + key;
    auto r = co_await detail::repository_put_script().run(client_,
                                                          std::array<std::string_view, 3>{index_key_, seq_key_, data},
                                                          std::array<std::string_view, 5>{each, key, "", "e", ""});
    if (!r) co_return r.error();
    const auto n = only_result(r.value());
    if (!n) co_return unexpected("erase script");
    co_return *n > 0;
  }

  /// Up to `limit` entries whose key starts with `prefix` and is greater than `after`, in
  /// byte order; next is set when more may follow. One script (ZRANGEBYLEX + HMGETs).
  /// Errors: invalid_argument for limit 0, the client's.
  task<scan_page> scan(std::string_view prefix, std::string_view after, std::size_t limit) {
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_scan_limit(limit));
    std::string min;
    if (!after.empty() && after >= prefix)
      min = "(" + std::string(after);
    else if (prefix.empty())
      min = "-";
    else
      min = "[" + std::string(prefix);
    const auto successor = bulwark::detail::prefix_successor(prefix);
    const std::string max = successor ? "(" + *successor : std::string("+");
    const auto count = std::to_string(limit + 1);
    auto r =
        co_await detail::repository_scan_script().run(client_, std::array<std::string_view, 1>{index_key_},
                                                      std::array<std::string_view, 4>{min, max, count, data_prefix_});
    if (!r) co_return r.error();
    auto& rep = r.value();
    if (rep.type != reply::kind::array || rep.elements.size() % 3 != 0) co_return unexpected("scan script");
    scan_page page;
    const std::size_t found = rep.elements.size() / 3;
    page.entries.reserve(std::min(found, limit));
    for (std::size_t i = 0; i < found && i < limit; ++i) {
      const auto version = detail::parse_version(rep.elements[3 * i + 1].str);
      if (!version) co_return unexpected("scan script");
      page.entries.push_back(
          entry{std::move(rep.elements[3 * i].str), std::move(rep.elements[3 * i + 2].str), *version});
    }
    if (found > limit) page.next = page.entries.back().key;
    co_return page;
  }

  const repository_options& options() const noexcept { return options_; }
  client& connection() noexcept { return client_; }

private:
  result<void> check_key(std::string_view key) const { return bulwark::detail::check_key(key, options_.max_key_bytes); }
  // What put and put_batch refuse before sending anything.
  result<void> check_put(std::string_view key, std::string_view value) const {
    BOOST_OUTCOME_TRY(check_key(key));
    return bulwark::detail::check_value_size(value.size(), options_.max_value_bytes);
  }
  // The put script's flag for each entry on its own (put, put_batch, erase; put_all: "1").
  static constexpr std::string_view each = "0";

  // One call of the put script: entries[sent] as puts, then `erases`; all: all or nothing.
  // Owns the strings the command line views for the call (sent again with EVAL after NOSCRIPT).
  task<reply> run_put_script(bool all, const std::vector<put_entry>& entries, std::span<const std::size_t> sent,
                             std::span<const std::string> erases) {
    std::vector<std::string> data, expected;
    data.reserve(sent.size() + erases.size());
    expected.reserve(sent.size());
    std::vector<std::string_view> keys{index_key_, seq_key_}, args{all ? "1" : each};
    keys.reserve(2 + sent.size() + erases.size());
    args.reserve(1 + 4 * (sent.size() + erases.size()));
    for (const auto i : sent) {
      const auto& e = entries[i];
      data.push_back(data_prefix_ + e.key);
      expected.push_back(e.expected ? std::to_string(*e.expected) : std::string());
      args.insert(args.end(), {e.key, e.value, put_mode(e.expected), expected.back()});
    }
    for (const auto& k : erases) {
      data.push_back(data_prefix_ + k);
      args.insert(args.end(), {k, "", "e", ""});
    }
    keys.insert(keys.end(), data.begin(), data.end());
    co_return co_await detail::repository_put_script().run(client_, keys, args);
  }

  // The one result of a put script call over one entry.
  static std::optional<std::int64_t> only_result(const reply& rep) {
    if (rep.type != reply::kind::array || rep.elements.size() != 1) return std::nullopt;
    return rep.elements[0].as_integer();
  }

  // The put script's mode for `expected`: 'a' any, 'n' absent, 'v' that version.
  static std::string_view put_mode(const std::optional<version_t>& expected) {
    return !expected ? "a" : *expected == no_version ? "n" : "v";
  }
  static bulwark::error conflict(const std::optional<version_t>& expected) {
    return bulwark::error(bulwark::errc::conflict,
                          expected && *expected != no_version
                              ? "expected version " + std::to_string(*expected) + " is not the current one"
                              : "the key already exists");
  }
  static bulwark::error unexpected(const char* what) {
    return {make_error_code(redis_errc::unexpected_reply), std::string(what) + ": unexpected reply"};
  }

  client client_;
  repository_options options_;
  std::string index_key_;
  std::string seq_key_;
  std::string data_prefix_;
};

} // namespace bulwark::redis

static_assert(bulwark::repository<bulwark::redis::repository>, "redis::repository must model bulwark::repository");
static_assert(bulwark::atomic_batch_repository<bulwark::redis::repository>,
              "redis::repository must model bulwark::atomic_batch_repository");
