#pragma once
// The saga log: one record per saga, stored in a repository under `<prefix><saga id>` and
// replaced with a compare-and-set put (the version read) at every transition, before the next
// step's effect is requested. The record is what a replica needs to resume a saga after a crash
// and what keeps two replicas from driving one saga at once (the lease).
//
// Encoding (log_codec, one allocation, ~100 ns; no JSON, the record is written 4-5 times per saga): a version
// tag, then fields separated by '\n', strings as <length>:<bytes> so any bytes fit, and the
// context's own encoding (the definition's codec) last, to the end:
//   S1\n<state>\n<step>\n<attempt>\n<started_ms>\n<updated_ms>\n<lease_expiry_ms>\n
//   <len>:<lease owner>\n<len>:<detail>\n<context bytes>
// Times are wall-clock milliseconds since the epoch (the orchestrator's injected wall clock):
// replicas on several hosts compare lease expiries, so a steady clock would not do.
// A final record keeps state, timestamps, detail and context (the outcome a duplicate start
// returns); its lease fields are cleared.

#include <bulwark/error.hpp>
#include <bulwark/result.hpp>
#include <bulwark/saga.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace bulwark::saga {

/// Wall-clock time as stored in the log.
using wall_time = std::chrono::system_clock::time_point;

/// One saga's log record. `step` while running: the next step to run; while compensating: how
/// many steps are left to undo (the next is step - 1); when final: where the saga stopped.
struct log_record {
  saga_state state = saga_state::running;
  std::uint32_t step = 0;
  std::uint32_t attempt = 0; ///< failed attempts of the current action or compensation
  wall_time started{};
  wall_time updated{};
  std::string lease_owner{}; ///< the replica driving the saga; empty when final
  wall_time lease_expiry{};  ///< another replica may take the saga over after this
  std::string detail{};      ///< why it compensated or failed
  std::string context{};     ///< the definition codec's bytes

  friend bool operator==(const log_record&, const log_record&) = default;
};

namespace detail {
inline std::int64_t to_ms(wall_time t) noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
inline wall_time from_ms(std::int64_t ms) noexcept {
  return wall_time(std::chrono::duration_cast<wall_time::duration>(std::chrono::milliseconds(ms)));
}

/// Reads the fields of a log record one by one; any malformed field fails the whole parse.
class log_reader {
public:
  explicit log_reader(std::string_view bytes) : rest_(bytes) {}

  template <class Int> bool number(Int& out) {
    auto end = rest_.find('\n');
    if (end == std::string_view::npos) return false;
    auto [ptr, ec] = std::from_chars(rest_.data(), rest_.data() + end, out);
    if (ec != std::errc() || ptr != rest_.data() + end) return false;
    rest_.remove_prefix(end + 1);
    return true;
  }

  bool text(std::string& out) {
    std::size_t length = 0;
    auto colon = rest_.find(':');
    if (colon == std::string_view::npos) return false;
    auto [ptr, ec] = std::from_chars(rest_.data(), rest_.data() + colon, length);
    if (ec != std::errc() || ptr != rest_.data() + colon) return false;
    rest_.remove_prefix(colon + 1);
    if (rest_.size() < length + 1 || rest_[length] != '\n') return false;
    out.assign(rest_.data(), length);
    rest_.remove_prefix(length + 1);
    return true;
  }

  std::string_view rest() const noexcept { return rest_; }

private:
  std::string_view rest_;
};
} // namespace detail

/// The log record's byte format (see above).
struct log_codec {
  static std::string encode(const log_record& r) {
    // One allocation sized for the longest record these fields make (the tag and 8 numbers of
    // at most 20 digits with a separator each), written in place, then cut to size.
    std::string out(3 + 8 * 21 + r.lease_owner.size() + r.detail.size() + 2 + r.context.size(), '\0');
    char* p = out.data();
    char* const end = p + out.size();
    auto number = [&](std::int64_t v, char separator) {
      p = std::to_chars(p, end, v).ptr;
      *p++ = separator;
    };
    auto bytes = [&](std::string_view s) {
      std::memcpy(p, s.data(), s.size());
      p += s.size();
    };
    auto text = [&](std::string_view s) {
      number(static_cast<std::int64_t>(s.size()), ':');
      bytes(s);
      *p++ = '\n';
    };
    bytes("S1\n");
    number(static_cast<std::int64_t>(r.state), '\n');
    number(r.step, '\n');
    number(r.attempt, '\n');
    number(detail::to_ms(r.started), '\n');
    number(detail::to_ms(r.updated), '\n');
    number(detail::to_ms(r.lease_expiry), '\n');
    text(r.lease_owner);
    text(r.detail);
    bytes(r.context);
    out.resize(static_cast<std::size_t>(p - out.data()));
    return out;
  }

  /// errc::invalid_argument "saga log record: ..." for bytes that are not a record.
  static result<log_record> decode(std::string_view bytes) {
    auto bad = [](const char* what) { return error(errc::invalid_argument, std::string("saga log record: ") + what); };
    if (!bytes.starts_with("S1\n")) return bad("unknown format (no S1 tag)");
    detail::log_reader in(bytes.substr(3));
    log_record r;
    int state = 0;
    std::int64_t started = 0, updated = 0, expiry = 0;
    if (!in.number(state) || state < 1 || state > static_cast<int>(saga_state::failed)) return bad("bad state");
    r.state = static_cast<saga_state>(state);
    if (!in.number(r.step) || !in.number(r.attempt)) return bad("bad step or attempt");
    if (!in.number(started) || !in.number(updated) || !in.number(expiry)) return bad("bad time");
    r.started = detail::from_ms(started);
    r.updated = detail::from_ms(updated);
    r.lease_expiry = detail::from_ms(expiry);
    if (!in.text(r.lease_owner) || !in.text(r.detail)) return bad("bad lease owner or detail");
    r.context.assign(in.rest());
    return r;
  }
};

} // namespace bulwark::saga
