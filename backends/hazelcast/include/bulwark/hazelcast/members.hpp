#pragma once
// member_list: sends REST requests to a healthy member of a Hazelcast cluster, failing over to
// the next one.
//
// Policy, per request (send):
//  - Members are tried in order from the one that answered last. A member that failed is marked
//    down and is used again only after a successful probe of /hazelcast/health/ready (at most one
//    probe per probe_interval; concurrent requests never probe the same member twice).
//  - Failover on: connect refused, a reset or a connection closed without an answer, an attempt
//    timeout (attempt_timeout), a connection closed in the middle of an answer, and 503.
//  - A connection closed without an answer by a member that then answers its readiness probe
//    (200) and drops the same request again on a fresh connection is the symptom of a disabled
//    REST endpoint group (the member drops requests it has no handler for instead of answering
//    403/404): the member is marked misconfigured, and when no member
//    answered, send fails with hazelcast_errc::rest_group_disabled (condition protocol_error)
//    naming the member, the path and the likely cause. Never a hang.
//  - Rounds over the members repeat (waiting for the next due probe) until operation_timeout;
//    then send fails with hazelcast_errc::all_members_down (condition unavailable). Every
//    attempt is bounded by what remains of operation_timeout, so send returns within it.
//  - Any other status (200, 204, 400, 500...) is the answer, returned as is.
// Retries are safe for the cache's requests: GET and DELETE are idempotent, and a repeated POST
// stores the same envelope again.
//
// Belongs to one executor, like http::client: call it from coroutines on that executor only.

#include <bulwark/hazelcast/error.hpp>
#include <bulwark/http/client.hpp>
#include <bulwark/resilience/timeout.hpp>
#include <bulwark/result.hpp>

#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::hazelcast {

struct member_options {
  std::vector<http::endpoint> members;                   ///< at least one
  std::chrono::milliseconds connect_timeout{500};        ///< per connection attempt
  std::chrono::milliseconds attempt_timeout{2000};       ///< one request on one member
  std::chrono::milliseconds operation_timeout{5000};     ///< send() as a whole, across members
  std::chrono::milliseconds probe_timeout{500};          ///< one readiness probe
  std::chrono::milliseconds probe_interval{200};         ///< a down member is probed at most this often
  std::chrono::milliseconds misconfigured_retry{10'000}; ///< a misconfigured member is retried this late
  std::size_t max_body = 8u << 20;                       ///< largest answer accepted
};

/// Parses "host:port,host:port,..." (as BULWARK_HAZELCAST_MEMBERS holds; spaces around entries
/// are ignored). Errors:
/// errc::invalid_argument on an empty list or a malformed entry.
inline result<std::vector<http::endpoint>> parse_members(std::string_view list) {
  std::vector<http::endpoint> out;
  while (!list.empty()) {
    const auto comma = list.find(',');
    auto item = list.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) {
      BOOST_OUTCOME_TRY(ep, http::endpoint::parse(item));
      out.push_back(std::move(ep));
    }
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  if (out.empty()) return error(errc::invalid_argument, "empty member list");
  return out;
}

/// What a member looks like from here, for logs, metrics and tests.
struct member_status {
  http::endpoint address;
  bool healthy = true;        ///< used without a probe
  bool misconfigured = false; ///< answered its probe but dropped a REST data request
  std::uint64_t failures = 0; ///< failed attempts and probes so far
  std::string last_error;
};

class member_list {
  struct passkey {
    explicit passkey() = default;
  };

public:
  /// A member list on `ex` (shared: every cache over it holds it). Construction fails one way
  /// across bulwark (docs/errors.md): errc::invalid_argument for an empty member list.
  static result<std::shared_ptr<member_list>> create(asio::any_io_executor ex, member_options options) {
    if (options.members.empty()) return error(errc::invalid_argument, "hazelcast::member_list: no members");
    return std::make_shared<member_list>(passkey{}, std::move(ex), std::move(options));
  }

  /// Use create(); public only for std::make_shared.
  member_list(passkey, asio::any_io_executor ex, member_options options)
      : ex_(ex), options_(std::move(options)),
        client_(ex, http::client_options{.connect_timeout = options_.connect_timeout,
                                         .request_timeout = options_.attempt_timeout,
                                         .max_retries = 0,
                                         .limits = limits(options_.max_body)}) {
    for (auto& m : options_.members) members_.push_back(member{m});
  }

  /// Sends `req` to a healthy member (see the file comment). Errors: all_members_down
  /// (unavailable), rest_group_disabled (protocol_error), stopped (cancelled), and the
  /// http::client_errc codes that say nothing about a member's health (malformed_response,
  /// response_too_large).
  task<http::response> send(http::request req) {
    if (stopping_) co_return error(make_error_code(hazelcast_errc::stopped), req.method + " " + req.target);
    ++in_flight_;
    auto r = co_await send_with_failover(std::move(req));
    --in_flight_;
    co_return r;
  }

  /// Stops: new requests fail with hazelcast_errc::stopped; waits (bounded by
  /// operation_timeout) for the requests in flight, then closes the pooled connections.
  task<void> stop() {
    stopping_ = true;
    asio::steady_timer tick(ex_);
    const auto deadline = std::chrono::steady_clock::now() + options_.operation_timeout + options_.attempt_timeout;
    while (in_flight_ > 0 && std::chrono::steady_clock::now() < deadline) {
      tick.expires_after(std::chrono::milliseconds(5));
      asio::error_code ec;
      co_await tick.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    client_.close_idle();
    co_return ok();
  }

  /// A snapshot of every member's state.
  std::vector<member_status> status() const {
    std::vector<member_status> out;
    for (const auto& m : members_) out.push_back({m.address, m.healthy, m.misconfigured, m.failures, m.last_error});
    return out;
  }
  const member_options& options() const noexcept { return options_; }
  /// Requests in flight now.
  std::size_t in_flight() const noexcept { return in_flight_; }

private:
  using clock = std::chrono::steady_clock;
  struct member {
    http::endpoint address;
    bool healthy = true;
    bool misconfigured = false;
    bool probing = false;
    clock::time_point next_probe{};
    std::uint64_t failures = 0;
    std::string last_error;
  };
  enum class probe_result { ready, not_ready, unreachable, no_answer };

  static http::parser_limits limits(std::size_t max_body) {
    http::parser_limits l{};
    l.max_body = max_body;
    return l;
  }

  void mark_down(member& m, std::string why) {
    m.healthy = false;
    m.next_probe = clock::now() + options_.probe_interval;
    ++m.failures;
    m.last_error = std::move(why);
  }

  static std::chrono::milliseconds left(clock::time_point deadline) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
  }

  // One readiness probe of m, bounded by probe_timeout and the deadline. A ready member is
  // healthy again.
  asio::awaitable<probe_result> probe(member& m, clock::time_point deadline) {
    m.probing = true;
    const auto limit = std::min(options_.probe_timeout, left(deadline));
    // Named operands: GCC 12 may destroy temporaries of a co_await expression twice.
    auto what = std::string("readiness probe of ") + m.address.to_string();
    auto op = client_.get(m.address, "/hazelcast/health/ready");
    auto r = co_await with_timeout(std::move(op), limit, std::move(what));
    m.probing = false;
    probe_result p = probe_result::unreachable;
    if (r.has_value()) {
      p = r.value().status == 200 ? probe_result::ready : probe_result::not_ready;
    } else if (r.error().code() == make_error_code(http::client_errc::closed_without_response)) {
      p = probe_result::no_answer;
    }
    if (p == probe_result::ready) {
      m.healthy = true;
    } else {
      mark_down(m, "readiness probe: " +
                       (r.has_value() ? "status " + std::to_string(r.value().status) : r.error().message()));
    }
    co_return p;
  }

  // One request to m, bounded by attempt_timeout and the deadline; nullopt when no time is left.
  asio::awaitable<std::optional<result<http::response>>> attempt(const member& m, const http::request& req,
                                                                 clock::time_point deadline) {
    const auto limit = std::min(options_.attempt_timeout, left(deadline));
    if (limit.count() <= 0) co_return std::nullopt;
    auto what = req.method + " " + req.target;
    auto op = client_.request(m.address, req);
    auto r = co_await with_timeout(std::move(op), limit, std::move(what));
    co_return std::move(r);
  }

  // An answer that ends the failover: any status but 503.
  static bool answered(const result<http::response>& r) { return r.has_value() && r.value().status != 503; }

  task<http::response> send_with_failover(http::request req) {
    const auto deadline = clock::now() + options_.operation_timeout;
    const std::size_t n = members_.size();
    std::string last_failure = "no attempt";
    asio::steady_timer pause(ex_);
    for (;;) {
      bool answered_probe_but_dropped = false;
      error dropped;
      for (std::size_t k = 0; k < n && clock::now() < deadline; ++k) {
        const std::size_t i = (preferred_ + k) % n;
        member& m = members_[i];
        if (!m.healthy) {
          if (m.probing || clock::now() < m.next_probe) continue;
          const auto p = co_await probe(m, deadline);
          if (p != probe_result::ready) continue;
        }
        auto first = co_await attempt(m, req, deadline);
        if (!first) break;
        auto& r = *first;
        if (answered(r)) {
          m.healthy = true;
          m.misconfigured = false;
          preferred_ = i;
          co_return std::move(r);
        }
        if (r.has_value()) {
          last_failure = m.address.to_string() + ": 503";
          mark_down(m, "503 Service Unavailable");
          continue;
        }
        const auto& code = r.error().code();
        last_failure = r.error().message();
        if (code == make_error_code(http::client_errc::malformed_response) ||
            code == make_error_code(http::client_errc::response_too_large))
          co_return r.error();
        if (code == make_error_code(http::client_errc::closed_without_response)) {
          // Crashed, or alive with the REST group that serves this path disabled? Ask it, and
          // if it answers, repeat the request once on a fresh connection: a member dying right
          // now can still pass a probe, but not drop the same request twice while staying up.
          const auto p = co_await probe(m, deadline);
          if (p != probe_result::ready) continue; // probe() marked it down
          auto second = co_await attempt(m, req, deadline);
          if (!second) break;
          auto& again = *second;
          if (answered(again)) {
            m.misconfigured = false;
            preferred_ = i;
            co_return std::move(again);
          }
          if (again.has_value() ||
              again.error().code() != make_error_code(http::client_errc::closed_without_response)) {
            mark_down(m, again.has_value() ? "503 Service Unavailable" : again.error().message());
            continue;
          }
          m.healthy = false;
          m.misconfigured = true;
          m.next_probe = clock::now() + options_.misconfigured_retry;
          ++m.failures;
          answered_probe_but_dropped = true;
          dropped =
              error(make_error_code(hazelcast_errc::rest_group_disabled),
                    "member " + m.address.to_string() + " is ready but closed the connection twice without answering " +
                        req.method + " " + req.target +
                        ": enable the REST API and its DATA endpoint group in the member configuration "
                        "(<rest-api enabled=\"true\"><endpoint-group name=\"DATA\" enabled=\"true\"/>)");
          m.last_error = std::string(dropped.detail());
          continue;
        }
        mark_down(m, r.error().message());
      }
      // No member answered in this round.
      if (answered_probe_but_dropped) co_return dropped;
      if (std::all_of(members_.begin(), members_.end(), [](const member& m) { return m.misconfigured; })) {
        co_return error(make_error_code(hazelcast_errc::rest_group_disabled),
                        "every member dropped REST data requests; last: " + members_[preferred_].last_error);
      }
      const auto now = clock::now();
      if (now >= deadline) break;
      // Wait for the earliest due probe (or a short pause), within the deadline.
      auto wake = deadline;
      for (const auto& m : members_)
        if (!m.healthy && !m.misconfigured) wake = std::min(wake, m.next_probe);
      wake = std::max(wake, now + std::chrono::milliseconds(10));
      pause.expires_at(std::min(wake, deadline));
      asio::error_code ec;
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return error(errc::cancelled, "cancelled while waiting for a member");
    }
    co_return error(make_error_code(hazelcast_errc::all_members_down),
                    "no member answered " + req.method + " " + req.target + " within " +
                        std::to_string(options_.operation_timeout.count()) + " ms; last failure: " + last_failure);
  }

  asio::any_io_executor ex_;
  member_options options_;
  http::client client_;
  std::vector<member> members_;
  std::size_t preferred_ = 0;
  std::size_t in_flight_ = 0;
  bool stopping_ = false;
};

} // namespace bulwark::hazelcast
