#pragma once
// hazelcast::cache: bulwark::cache over the member REST API, one Hazelcast map per cache.
//
//   auto members = hazelcast::member_list::create(ex, hazelcast::member_options{
//       .members = hazelcast::parse_members("127.0.0.1:5701,127.0.0.1:5702").value()}).value();
//   auto c = hazelcast::cache::create(members, {.map = "channel-metadata"}).value();
//   co_await c.put("NL", versioned{bytes, 7}, 60s);   // true, or false if version > 7 is there
//
// Each entry is GET/POST/DELETE /hazelcast/rest/maps/{map}/{percent-encoded key}; its body is an
// envelope (envelope.hpp: value, version, stored_at, ttl; Content-Type
// application/vnd.bulwark.cache-entry.v1). The REST API has no per-entry TTL, so the ttl is
// enforced on read from stored_at (a reader's clock against the writer's: keep clocks in sync);
// the member configuration's map time-to-live-seconds bounds how long any entry stays stored.
//
// Versions: put reads the entry, compares versions and writes. Puts and erases of one key from
// one cache object are serialised (detail::key_locks), so they never race each other; a writer
// in another process can still interleave between the read and the write (the REST API has no
// conditional put), and then the last write wins even if its version is lower. Erase is likewise
// a GET (to learn whether the key was present) then a DELETE.
//
// (Temporaries are kept out of co_await expressions on purpose: GCC 12 may destroy them twice.)
//
// Errors: hazelcast_errc (error.hpp) and errc::invalid_argument (negative ttl), errc::too_large
// (value over max_value_bytes), errc::rejected (too many writers waiting for one key's lock).

#include <bulwark/cache.hpp>
#include <bulwark/detail/key_rules.hpp>
#include <bulwark/hazelcast/detail/key_locks.hpp>
#include <bulwark/hazelcast/envelope.hpp>
#include <bulwark/hazelcast/error.hpp>
#include <bulwark/hazelcast/members.hpp>
#include <bulwark/hazelcast/path.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace bulwark::hazelcast {

struct cache_options {
  std::string map = "bulwark-cache";      ///< 1-255 of [A-Za-z0-9._-]
  std::size_t max_key_bytes = 1024;       ///< longer keys: hazelcast_errc::bad_key
  std::size_t max_value_bytes = 4u << 20; ///< larger values: errc::too_large
  std::size_t max_waiting_writers = 1024; ///< puts/erases queued behind another on the same key
};

/// The cache over a member list; Clock (now() -> system_clock::time_point) stamps stored_at
/// and judges expiry.
template <class Clock = std::chrono::system_clock> class basic_cache {
public:
  /// A cache over `members`. Construction fails one way across bulwark (docs/errors.md):
  /// errc::invalid_argument for no member list or a map name the adapter does not accept.
  /// Move it only while no operation is in flight.
  static result<basic_cache> create(std::shared_ptr<member_list> members, cache_options options = {},
                                    Clock clock = Clock{}) {
    if (!members) return error(errc::invalid_argument, "hazelcast::cache: no member list");
    if (!valid_map_name(options.map))
      return error(errc::invalid_argument, "hazelcast::cache: bad map name " + options.map);
    return basic_cache(std::move(members), std::move(options), std::move(clock));
  }

  /// The entry for key, or nullopt on a miss (204) or once its ttl has passed since stored_at.
  task<std::optional<cached>> get(std::string_view key) {
    BOOST_OUTCOME_CO_TRY(path, entry_path(options_.map, key, options_.max_key_bytes));
    BOOST_OUTCOME_CO_TRY(found, co_await read(path));
    if (!found || found->expired_at(clock_.now())) co_return std::optional<cached>{};
    co_return std::optional<cached>(std::move(found->entry));
  }

  /// Stores value stamped with stored_at = now unless a live entry with a higher version is
  /// present (then false). ttl 0: no expiry but the map's own time-to-live. Cost: a GET and a
  /// POST, serialised with other writes of this key from this object.
  task<bool> put(std::string_view key, versioned value, std::chrono::milliseconds ttl) {
    BOOST_OUTCOME_CO_TRY(path, entry_path(options_.map, key, options_.max_key_bytes));
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_ttl(ttl));
    BOOST_OUTCOME_CO_TRY(bulwark::detail::check_value_size(value.value.size(), options_.max_value_bytes));
    auto locked = co_await locks_.lock(path); // held until the end of this call
    if (!locked) co_return locked.error();
    BOOST_OUTCOME_CO_TRY(current, co_await read(path));
    const auto now = clock_.now();
    if (current && !current->expired_at(now) && current->entry.version > value.version) co_return false;
    auto body = encode_envelope(value.value, value.version, now, ttl);
    auto request = http::make_request("POST", path, std::move(body), std::string(envelope_content_type));
    BOOST_OUTCOME_CO_TRY(resp, co_await members_->send(std::move(request)));
    if (resp.status != 200) co_return unexpected(resp, "POST", path);
    co_return true;
  }

  /// Removes key; true when a live entry was present. Cost: a GET and a DELETE.
  task<bool> erase(std::string_view key) {
    BOOST_OUTCOME_CO_TRY(path, entry_path(options_.map, key, options_.max_key_bytes));
    auto locked = co_await locks_.lock(path); // held until the end of this call
    if (!locked) co_return locked.error();
    auto current = co_await read(path);
    // A foreign value in the way is removed too; it just never counted as an entry.
    const bool present = current.has_value() && current.value() && !current.value()->expired_at(clock_.now());
    if (!current.has_value() && current.error().code() != make_error_code(hazelcast_errc::bad_envelope))
      co_return current.error();
    auto request = http::make_request("DELETE", path);
    BOOST_OUTCOME_CO_TRY(resp, co_await members_->send(std::move(request)));
    if (resp.status != 200) co_return unexpected(resp, "DELETE", path);
    co_return present;
  }

  /// Removes every entry of the map (DELETE on the map).
  task<void> clear() {
    const auto path = "/hazelcast/rest/maps/" + options_.map;
    auto request = http::make_request("DELETE", path);
    BOOST_OUTCOME_CO_TRY(resp, co_await members_->send(std::move(request)));
    if (resp.status != 200) co_return unexpected(resp, "DELETE", path);
    co_return ok();
  }

  const cache_options& options() const noexcept { return options_; }
  member_list& members() noexcept { return *members_; }

private:
  basic_cache(std::shared_ptr<member_list> members, cache_options options, Clock clock)
      : members_(std::move(members)), options_(std::move(options)), clock_(std::move(clock)),
        locks_(options_.max_waiting_writers) {}

  static error unexpected(const http::response& resp, std::string_view method, std::string_view path) {
    std::string detail = std::string(method) + " " + std::string(path) + ": status " + std::to_string(resp.status);
    if (!resp.body.empty()) detail += " " + resp.body.substr(0, 200);
    return error(make_error_code(hazelcast_errc::unexpected_status), std::move(detail));
  }

  // The stored envelope, or nullopt on 204.
  task<std::optional<envelope>> read(const std::string& path) {
    auto request = http::make_request("GET", path);
    BOOST_OUTCOME_CO_TRY(resp, co_await members_->send(std::move(request)));
    if (resp.status == 204) co_return std::optional<envelope>{};
    if (resp.status != 200) co_return unexpected(resp, "GET", path);
    BOOST_OUTCOME_CO_TRY(e, decode_envelope(resp.body, resp.headers.value_or("Content-Type", "")));
    co_return std::optional<envelope>(std::move(e));
  }

  std::shared_ptr<member_list> members_;
  cache_options options_;
  Clock clock_;
  detail::key_locks locks_;
};

using cache = basic_cache<>;

} // namespace bulwark::hazelcast

static_assert(bulwark::cache<bulwark::hazelcast::cache>, "hazelcast::cache must model bulwark::cache");
