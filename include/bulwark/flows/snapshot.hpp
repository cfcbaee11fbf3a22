#pragma once
// The last-known-good snapshot: the cache entries a process holds, written to disk now and then
// so that a restart while the repository is down still has something to serve (write_through
// loads it before its first repository call). docs/last_known_good.md has the whole story.
//
//   last_known_good::save(path, entries)   atomic: a temporary file in the same directory,
//                                          fsync, rename over path, fsync the directory. A
//                                          crash or a failed save leaves the previous file.
//   last_known_good::load(path)            the entries; a missing file is an empty snapshot;
//                                          a corrupt, truncated, foreign or newer-format file
//                                          is errc::invalid_argument naming the file and the
//                                          problem (never a crash: the decoder is fuzzed,
//                                          tests/fuzz/snapshot_load_fuzz.cpp).
//   snapshot_writer                        saves a provider's entries every period on a
//                                          bulwark::clock and once more on stop().
//
// File format 1 (all integers little-endian):
//   offset 0   8 bytes  magic "\x89BWLKG\r\n" (the PNG trick: a text-mode transfer or a
//                       7-bit channel changes it, and no text file starts with it)
//   offset 8   u32      format version (1); a reader refuses a version newer than its own
//   offset 12  u32      CRC-32 (detail/crc32.hpp, zlib's) of every byte from offset 16 on
//   offset 16  u64      entry count
//   offset 24  u64      body length in bytes (the file is exactly 32 + this long)
//   offset 32  body     per entry: u32 key length, key, u64 version, i64 stored_at in
//                       nanoseconds since the Unix epoch, u32 value length, value
// Every field the checksum covers is length-prefixed, so keys and values may hold any bytes.

#include <bulwark/cache.hpp>
#include <bulwark/clock.hpp>
#include <bulwark/detail/crc32.hpp>
#include <bulwark/detail/periodic.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/result.hpp>
#include <bulwark/run_on.hpp>

#include <asio/any_io_executor.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace bulwark::flows {

/// One cache entry as a snapshot keeps it.
struct snapshot_entry {
  std::string key;
  cached entry;
  friend bool operator==(const snapshot_entry&, const snapshot_entry&) = default;
};

namespace detail {

inline void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}
inline void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}
inline std::uint64_t get_le(std::string_view bytes, std::size_t at, int width) {
  std::uint64_t v = 0;
  for (int i = 0; i < width; ++i) v |= std::uint64_t(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
  return v;
}

/// "last-known-good snapshot <path>: <what>" under `code`: the one shape of every snapshot error.
inline error snapshot_error(errc code, std::string_view source, std::string_view what) {
  std::string text = "last-known-good snapshot ";
  text += source;
  text += ": ";
  text += what;
  return error(code, std::move(text));
}

/// The same for a failed system call: "<step> <file>: <OS error text>", errc::unavailable.
inline error os_error(std::string_view source, std::string_view step, const std::filesystem::path& file, int err) {
  return snapshot_error(errc::unavailable, source,
                        std::string(step) + " " + file.string() + ": " + std::generic_category().message(err));
}

// A file descriptor closed on scope exit (close errors that matter are checked before).
struct unique_fd {
  int fd = -1;
  unique_fd() = default;
  explicit unique_fd(int f) : fd(f) {}
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never a mix, and
/// the new one survives a power cut once this returns: temp file, fsync, rename, fsync dir. On
/// failure the temporary file is removed and `path` is untouched. Errors: errc::unavailable
/// with the step and the OS error text.
inline result<void> write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  static std::atomic<std::uint64_t> sequence{0};
  const std::string source = path.string();
  // Unique per process and call, so concurrent savers never share a temporary file; a crash
  // can leave one behind (named *.tmp, never read by load).
  std::filesystem::path temp = path;
  temp += "." + std::to_string(::getpid()) + "." + std::to_string(sequence.fetch_add(1)) + ".tmp";
  unique_fd file(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (file.fd < 0) return os_error(source, "create", temp, errno);
  auto fail = [&](std::string_view step) -> result<void> {
    const int err = errno;
    ::close(file.release());
    ::unlink(temp.c_str());
    return os_error(source, step, temp, err);
  };
  for (std::size_t done = 0; done < bytes.size();) {
    const ::ssize_t n = ::write(file.fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(file.fd) != 0) return fail("fsync");
  // close can report a deferred write error (NFS); EINTR leaves the descriptor closed on Linux.
  if (::close(file.release()) != 0 && errno != EINTR) {
    const int err = errno;
    ::unlink(temp.c_str());
    return os_error(source, "close", temp, err);
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    return os_error(source, "rename", temp, err);
  }
  // The rename is durable only once the directory entry is.
  const auto parent = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  unique_fd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.fd < 0) return os_error(source, "open directory", parent, errno);
  if (::fsync(dir.fd) != 0) return os_error(source, "fsync directory", parent, errno);
  return ok();
}

/// The bytes of `path`, nullopt when it does not exist. Errors: errc::invalid_argument when it
/// is longer than max_bytes (checked before reading), errc::unavailable for any other OS error.
inline result<std::optional<std::string>> read_file(const std::filesystem::path& path, std::uint64_t max_bytes) {
  const std::string source = path.string();
  unique_fd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.fd < 0) {
    if (errno == ENOENT) return std::optional<std::string>{};
    return os_error(source, "open", path, errno);
  }
  struct ::stat st {};
  if (::fstat(file.fd, &st) != 0) return os_error(source, "stat", path, errno);
  if (S_ISDIR(st.st_mode)) return os_error(source, "read", path, EISDIR);
  if (static_cast<std::uint64_t>(st.st_size) > max_bytes)
    return snapshot_error(errc::invalid_argument, source,
                          "file of " + std::to_string(st.st_size) + " bytes exceeds the limit of " +
                              std::to_string(max_bytes));
  std::string bytes(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ::ssize_t n = ::read(file.fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return os_error(source, "read", path, errno);
    }
    if (n == 0) break; // shrank while we read: the decoder reports what is missing
    done += static_cast<std::size_t>(n);
  }
  bytes.resize(done);
  return std::optional<std::string>(std::move(bytes));
}

} // namespace detail

/// The snapshot file: encode/decode its bytes, save/load it. Stateless; every function is
/// thread-safe (concurrent saves to one path each write their own temporary file, and the
/// last rename wins).
struct last_known_good {
  static constexpr std::string_view magic{"\x89"
                                          "BWLKG\r\n",
                                          8};
  static constexpr std::uint32_t format_version = 1;
  static constexpr std::size_t header_bytes = 32;
  /// The smallest entry: an empty key and value with their lengths, version and stored_at.
  static constexpr std::size_t min_entry_bytes = 4 + 8 + 8 + 4;
  /// load() refuses a larger file before reading it.
  static constexpr std::uint64_t default_max_bytes = std::uint64_t(1) << 30;

  /// The file's bytes for `entries`. Errors: errc::too_large for a key or value over 4 GiB - 1.
  /// Cost: one pass over the entries, one allocation of the file's size, one CRC pass.
  static result<std::string> encode(std::span<const snapshot_entry> entries) {
    std::size_t body = 0;
    for (const auto& e : entries) {
      if (e.key.size() > std::numeric_limits<std::uint32_t>::max() ||
          e.entry.value.size() > std::numeric_limits<std::uint32_t>::max())
        return error(errc::too_large, "last-known-good snapshot: a key or value over 4 GiB - 1 bytes");
      body += min_entry_bytes + e.key.size() + e.entry.value.size();
    }
    std::string out;
    out.reserve(header_bytes + body);
    out.append(magic);
    detail::put_u32(out, format_version);
    detail::put_u32(out, 0); // the CRC, filled in below
    detail::put_u64(out, entries.size());
    detail::put_u64(out, body);
    for (const auto& e : entries) {
      detail::put_u32(out, static_cast<std::uint32_t>(e.key.size()));
      out.append(e.key);
      detail::put_u64(out, e.entry.version);
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(e.entry.stored_at.time_since_epoch());
      detail::put_u64(out, static_cast<std::uint64_t>(ns.count()));
      detail::put_u32(out, static_cast<std::uint32_t>(e.entry.value.size()));
      out.append(e.entry.value);
    }
    const std::uint32_t crc = bulwark::detail::crc32(std::string_view(out).substr(16));
    std::string crc_bytes;
    detail::put_u32(crc_bytes, crc);
    out.replace(12, 4, crc_bytes);
    return out;
  }

  /// The entries in a snapshot file's bytes; `source` names the file in error texts. Errors:
  /// errc::invalid_argument for bytes that are not a complete snapshot of a known format
  /// (foreign, truncated, trailing bytes, newer format, checksum mismatch, inconsistent
  /// lengths), each with its own text. Every length is checked against the bytes left before
  /// anything is allocated for it, so the memory used is bounded by a small multiple of
  /// bytes.size() whatever the input.
  static result<std::vector<snapshot_entry>> decode(std::string_view bytes, std::string_view source = "(bytes)") {
    auto bad = [&](std::string_view what) { return detail::snapshot_error(errc::invalid_argument, source, what); };
    if (bytes.size() < magic.size()) {
      if (bytes.empty()) return bad("empty file (truncated before the header)");
      if (magic.starts_with(bytes)) return bad("truncated in the header");
      return bad("not a bulwark snapshot (no snapshot magic): a foreign file");
    }
    if (bytes.substr(0, magic.size()) != magic)
      return bad("not a bulwark snapshot (no snapshot magic): a foreign file");
    if (bytes.size() < header_bytes)
      return bad("truncated in the header (" + std::to_string(bytes.size()) + " of " + std::to_string(header_bytes) +
                 " bytes)");
    const auto version = static_cast<std::uint32_t>(detail::get_le(bytes, 8, 4));
    if (version == 0) return bad("format version 0 is not valid (corrupt header)");
    if (version > format_version)
      return bad("format version " + std::to_string(version) + " is newer than this build reads (" +
                 std::to_string(format_version) + ")");
    const auto stored_crc = static_cast<std::uint32_t>(detail::get_le(bytes, 12, 4));
    const std::uint64_t count = detail::get_le(bytes, 16, 8);
    const std::uint64_t body = detail::get_le(bytes, 24, 8);
    const std::uint64_t have = bytes.size() - header_bytes;
    if (body > have)
      return bad("truncated: the header announces " + std::to_string(body) + " body bytes, the file holds " +
                 std::to_string(have));
    if (body < have) return bad(std::to_string(have - body) + " bytes after the end of the snapshot");
    const std::uint32_t crc = bulwark::detail::crc32(bytes.substr(16));
    if (crc != stored_crc) return bad("checksum mismatch (the file is corrupt)");
    if (count > body / min_entry_bytes)
      return bad("entry count " + std::to_string(count) + " cannot fit in " + std::to_string(body) + " bytes");

    std::vector<snapshot_entry> entries;
    entries.reserve(static_cast<std::size_t>(count));
    std::size_t at = header_bytes;
    auto take = [&](std::size_t n) -> std::optional<std::string_view> {
      if (bytes.size() - at < n) return std::nullopt;
      const auto out = bytes.substr(at, n);
      at += n;
      return out;
    };
    for (std::uint64_t i = 0; i < count; ++i) {
      const auto where = "entry " + std::to_string(i) + ": ";
      const auto key_len = take(4);
      if (!key_len) return bad(where + "truncated before the key length");
      const auto key = take(static_cast<std::size_t>(detail::get_le(*key_len, 0, 4)));
      if (!key) return bad(where + "key length runs past the end");
      const auto fixed = take(16);
      if (!fixed) return bad(where + "truncated before the version");
      const auto value_len = take(4);
      if (!value_len) return bad(where + "truncated before the value length");
      const auto value = take(static_cast<std::size_t>(detail::get_le(*value_len, 0, 4)));
      if (!value) return bad(where + "value length runs past the end");
      const auto ns = static_cast<std::int64_t>(detail::get_le(*fixed, 8, 8));
      entries.push_back(snapshot_entry{
          std::string(*key),
          cached{std::string(*value), detail::get_le(*fixed, 0, 8),
                 std::chrono::system_clock::time_point(
                     std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(ns)))}});
    }
    if (at != bytes.size())
      return bad(std::to_string(bytes.size() - at) + " bytes after the last of " + std::to_string(count) + " entries");
    return entries;
  }

  /// Writes `entries` to `path` atomically and durably (see write_file_atomically above): a
  /// reader, or a process restarted after a crash, finds the previous file or this one, whole.
  /// Errors: errc::unavailable with the failing step and the OS error text (the previous file
  /// is left as it was); errc::too_large as encode(). Blocks for the write and two fsyncs:
  /// call it off the event loop (snapshot_writer's options::blocking_executor).
  static result<void> save(const std::filesystem::path& path, std::span<const snapshot_entry> entries) {
    BOOST_OUTCOME_TRY(bytes, encode(entries));
    return detail::write_file_atomically(path, bytes);
  }

  /// The entries saved at `path`; an empty vector when there is no file (the first start).
  /// Errors: errc::invalid_argument for a file that is not a readable snapshot (see decode) or
  /// longer than max_bytes (refused before reading); errc::unavailable when it cannot be read
  /// (permissions, I/O error, a directory). A caller starting up reports either and starts
  /// without the snapshot: it is a copy, never the truth. Reads the whole file.
  static result<std::vector<snapshot_entry>> load(const std::filesystem::path& path,
                                                  std::uint64_t max_bytes = default_max_bytes) {
    BOOST_OUTCOME_TRY(bytes, detail::read_file(path, max_bytes));
    if (!bytes) return std::vector<snapshot_entry>{};
    return decode(*bytes, path.string());
  }
};

/// Saves a provider's entries to a last-known-good snapshot every period, and once more on
/// stop(). A failed save is reported (options::on_failure, the metrics) and retried at the next
/// period; the previous file stays. The writer runs on a strand of the executor it is given;
/// the provider is called there, so it must be safe to call from that executor.
///
/// Metrics (options::metrics set), labelled snapshot=options::name:
///   bulwark_snapshot_saves_total{snapshot,result="ok"|"error"}   saves attempted
///   bulwark_snapshot_age_seconds{snapshot}          time since the last good save (since the
///                                                   writer was made, before the first), as of
///                                                   the last attempt: at most one period old
///   bulwark_snapshot_last_success_timestamp_seconds{snapshot}   wall-clock time of the last
///                                                   good save (age at scrape = time() - this)
///   bulwark_snapshot_entries{snapshot}              entries in the last good save
class snapshot_writer {
public:
  using provider = std::function<std::vector<snapshot_entry>()>;

  struct options {
    std::filesystem::path path;
    std::chrono::milliseconds period{std::chrono::seconds(30)};
    /// The time of the period (clock::manual() in tests).
    bulwark::clock clock{};
    /// Called on the writer's strand with each failed save's error.
    std::function<void(const error&)> on_failure{};
    std::shared_ptr<metrics::registry> metrics{};
    std::string name = "default"; ///< the metrics' snapshot label
    /// Where the blocking write and fsyncs run (e.g. an asio::thread_pool's executor); empty:
    /// on the writer's strand, which then blocks its thread for the save (a few ms for a few
    /// MB on a local disk, more on a slow one).
    asio::any_io_executor blocking_executor{};
  };

  /// Does not start: call start().
  snapshot_writer(asio::any_io_executor executor, provider entries, options opts)
      : state_(std::make_shared<state>(std::move(entries), std::move(opts))),
        loop_(std::move(executor), state_->opts.clock, state_->opts.period,
              [s = state_]() -> asio::awaitable<void> { (void)co_await save_once(s); }) {}
  snapshot_writer(const snapshot_writer&) = delete;
  snapshot_writer& operator=(const snapshot_writer&) = delete;
  /// Asks the loop to stop without a final save (the loop's destructor); call stop() first to
  /// have one.
  ~snapshot_writer() = default;

  /// Starts the loop: the first save one period from now. A second call does nothing.
  void start() { loop_.start(); }

  /// Stops the loop (a save in progress finishes first), then saves once more and returns that
  /// save's result (errc::unavailable etc. as last_known_good::save). Later calls return at
  /// once with success and save nothing. Without a start(), only the final save happens.
  task<void> stop() {
    auto s = state_;
    (void)co_await loop_.stop();
    co_return co_await bulwark::run_on(loop_.strand(), final_save(s));
  }

  /// Saves that succeeded and that failed so far (loop and stop).
  std::uint64_t saves() const noexcept { return state_->saves.load(); }
  std::uint64_t failures() const noexcept { return state_->failures.load(); }

  /// Time since the last good save (before the first, since the writer was made), on
  /// options::clock.
  bulwark::clock::duration age() const { return state_->age_at(state_->opts.clock.now()); }

private:
  static constexpr bulwark::clock::duration::rep no_time = std::numeric_limits<bulwark::clock::duration::rep>::min();

  struct gauges {
    metrics::counter* ok;
    metrics::counter* failed;
    metrics::gauge* age;
    metrics::gauge* last_success;
    metrics::gauge* entries;
  };

  struct state {
    state(provider p, options o) : entries(std::move(p)), opts(std::move(o)), started_at(opts.clock.now()) {
      if (opts.metrics) {
        auto& saves = opts.metrics->counter_family("bulwark_snapshot_saves_total",
                                                   "Last-known-good snapshot saves attempted", {"snapshot", "result"});
        auto& r = *opts.metrics;
        metrics =
            gauges{&saves.labels({opts.name, "ok"}), &saves.labels({opts.name, "error"}),
                   &r.gauge_family("bulwark_snapshot_age_seconds",
                                   "Seconds since the last good last-known-good snapshot save, as of the last attempt",
                                   {"snapshot"})
                        .labels({opts.name}),
                   &r.gauge_family("bulwark_snapshot_last_success_timestamp_seconds",
                                   "Unix time of the last good last-known-good snapshot save", {"snapshot"})
                        .labels({opts.name}),
                   &r.gauge_family("bulwark_snapshot_entries", "Entries in the last good last-known-good snapshot save",
                                   {"snapshot"})
                        .labels({opts.name})};
      }
    }

    bulwark::clock::duration age_at(bulwark::clock::time_point now) const {
      const auto last = last_success.load();
      return now - (last != no_time ? bulwark::clock::time_point(bulwark::clock::duration(last)) : started_at);
    }

    provider entries;
    options opts;
    const bulwark::clock::time_point started_at;
    bool stopped = false; // the loop's strand only
    std::atomic<std::uint64_t> saves{0}, failures{0};
    std::atomic<bulwark::clock::duration::rep> last_success{no_time};
    std::optional<gauges> metrics;
  };

  // One save, from the provider's entries to the file, with its accounting. On the strand.
  static asio::awaitable<result<void>> save_once(std::shared_ptr<state> s) {
    result<void> saved = ok();
    std::size_t count = 0;
    try {
      auto entries = s->entries();
      count = entries.size();
      if (s->opts.blocking_executor) {
        saved = co_await bulwark::run_on(s->opts.blocking_executor,
                                         [](std::filesystem::path path, std::vector<snapshot_entry> e) -> task<void> {
                                           co_return last_known_good::save(path, e);
                                         }(s->opts.path, std::move(entries)));
      } else {
        saved = last_known_good::save(s->opts.path, entries);
      }
    } catch (const std::exception& e) {
      // A throwing provider must not end the loop silently: it is reported like a failed save.
      saved = detail::snapshot_error(errc::unavailable, s->opts.path.string(),
                                     std::string("the entries provider threw: ") + e.what());
    }
    const auto now = s->opts.clock.now();
    if (saved) {
      s->saves.fetch_add(1);
      s->last_success.store(now.time_since_epoch().count());
      if (s->metrics) {
        s->metrics->ok->inc();
        s->metrics->age->set(0);
        s->metrics->last_success->set(
            std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
        s->metrics->entries->set(static_cast<double>(count));
      }
    } else {
      s->failures.fetch_add(1);
      if (s->metrics) {
        s->metrics->failed->inc();
        s->metrics->age->set(std::chrono::duration<double>(s->age_at(now)).count());
      }
      if (s->opts.on_failure) s->opts.on_failure(saved.error());
    }
    co_return saved;
  }

  static task<void> final_save(std::shared_ptr<state> s) {
    if (s->stopped) co_return ok();
    s->stopped = true;
    co_return co_await save_once(s);
  }

  std::shared_ptr<state> state_;
  bulwark::detail::periodic loop_;
};

} // namespace bulwark::flows
