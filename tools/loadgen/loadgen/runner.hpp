#pragma once
// The run itself: `concurrency` workers on one io_context thread, each with its own
// bulwark::http::client (one keep-alive connection, idempotent retry off: a failed request is
// counted, never sent again), taking request numbers from one counter until -n, --duration or
// --timeout says stop.
//
// Closed model (no --rate): a worker sends its next request when the previous one answered;
// latency is measured from the send.
// Open model (--rate R): request i is due at start + i/R whatever happened before; a worker
// takes the next number, waits until it is due (if it is not late already) and sends it, and
// latency is measured from the due time, so a server that stalls is charged for the requests
// that queued behind the stall (no coordinated omission). The workers bound what is in flight.
//
// Bounded always: the counter stops at -n, no request starts after --duration, and at --timeout
// the run stops with whatever is in flight counted as unfinished.

#include <loadgen/command_line.hpp>
#include <loadgen/recorder.hpp>

#include <bulwark/http/client.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read_until.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/streambuf.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

namespace loadgen {

/// "user:password" -> "Basic dXNlcjpwYXNzd29yZA==".
inline std::string basic_authorization(std::string_view credentials) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out = "Basic ";
  std::size_t i = 0;
  for (; i + 2 < credentials.size(); i += 3) {
    const auto v = static_cast<unsigned>(static_cast<unsigned char>(credentials[i])) << 16 |
                   static_cast<unsigned>(static_cast<unsigned char>(credentials[i + 1])) << 8 |
                   static_cast<unsigned>(static_cast<unsigned char>(credentials[i + 2]));
    for (int s = 18; s >= 0; s -= 6) out.push_back(alphabet[(v >> s) & 63]);
  }
  if (const auto left = credentials.size() - i; left != 0) {
    auto v = static_cast<unsigned>(static_cast<unsigned char>(credentials[i])) << 16;
    if (left == 2) v |= static_cast<unsigned>(static_cast<unsigned char>(credentials[i + 1])) << 8;
    out.push_back(alphabet[(v >> 18) & 63]);
    out.push_back(alphabet[(v >> 12) & 63]);
    out.push_back(left == 2 ? alphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

/// The outcome of one client call.
inline outcome classify(const bulwark::result<bulwark::http::response>& r) {
  using bulwark::http::client_errc;
  if (r) return outcome_of_status(r.value().status);
  const auto& code = r.error().code();
  if (code == make_error_code(client_errc::timed_out)) return outcome::timeout;
  if (code == make_error_code(client_errc::connect_failed)) return outcome::refused;
  if (code == make_error_code(client_errc::closed_without_response) ||
      code == make_error_code(client_errc::truncated_response))
    return outcome::reset;
  return outcome::protocol;
}

class runner {
public:
  using clock = std::chrono::steady_clock;

  /// `bodies`: the request bodies sent in turn (empty: none). `progress` gets the progress
  /// lines (nullptr: none); `terminal` redraws one line instead of printing one per period.
  runner(const options& o, std::vector<std::string> bodies, recorder& rec, std::FILE* progress, bool terminal)
      : options_(o), bodies_(std::move(bodies)), recorder_(rec), progress_(progress), terminal_(terminal),
        watchdog_(context_), progress_timer_(context_), signals_(context_, SIGINT, SIGTERM) {
    for (const auto& u : options_.urls) targets_.push_back({bulwark::http::endpoint{u.host, u.port}, u.target, {}});
    for (auto& t : targets_)
      if (t.path.fixed()) t.path.expand(t.fixed_path, random_);
    base_ = bulwark::http::make_request(options_.effective_method(), "");
    for (const auto& [name, value] : options_.headers) base_.headers.add(name, value);
    if (!options_.basic_auth.empty() && !base_.headers.contains("Authorization"))
      base_.headers.set("Authorization", basic_authorization(options_.basic_auth));
    if (!bodies_.empty() && !base_.headers.contains("Content-Type"))
      base_.headers.set("Content-Type", options_.content_type);
    random_.seed(options_.seed != 0 ? options_.seed
                                    : static_cast<std::uint64_t>(clock::now().time_since_epoch().count()));
  }

  /// Opens the control socket (if any); errors name the path.
  bulwark::result<void> open_control() {
    if (options_.control_path.empty()) return bulwark::ok();
    struct stat st {};
    if (::lstat(options_.control_path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        return bulwark::error(bulwark::errc::invalid_argument,
                              "--control " + options_.control_path + ": exists and is not a socket");
      ::unlink(options_.control_path.c_str()); // a previous run's
    }
    asio::error_code ec;
    control_.emplace(context_);
    control_->open(asio::local::stream_protocol(), ec);
    if (!ec) control_->bind(asio::local::stream_protocol::endpoint(options_.control_path), ec);
    if (!ec) control_->listen(16, ec);
    if (ec)
      return bulwark::error(bulwark::errc::unavailable, "--control " + options_.control_path + ": " + ec.message());
    return bulwark::ok();
  }

  /// Runs to the end (see the file comment). Returns whether the run was cut short.
  bool run() {
    start_ = clock::now();
    last_end_ = start_;
    if (options_.requests) limit_ = *options_.requests;
    if (options_.duration) deadline_ = start_ + *options_.duration;
    for (const auto& e : options_.events) recorder_.mark(e.at, e.label);
    watchdog_.expires_at(start_ + options_.timeout);
    watchdog_.async_wait([this](const asio::error_code& ec) {
      if (!ec) stop(true);
    });
    signals_.async_wait([this](const asio::error_code& ec, int) {
      if (!ec) stop(true);
    });
    if (progress_) asio::co_spawn(context_, report_progress(), asio::detached);
    if (control_) asio::co_spawn(context_, accept_control(), asio::detached);
    workers_left_ = options_.concurrency;
    for (std::size_t w = 0; w < options_.concurrency; ++w) asio::co_spawn(context_, work(), asio::detached);
    context_.run();
    recorder_.set_elapsed(std::chrono::duration_cast<nanoseconds>(last_end_ - start_));
    if (progress_ && terminal_) std::fputs("\n", progress_);
    if (control_) ::unlink(options_.control_path.c_str());
    return cut_short_;
  }

private:
  struct target {
    bulwark::http::endpoint to;
    target_template path;
    std::string fixed_path; ///< the expansion when the path has no parameters
  };

  bulwark::http::request request_for(std::uint64_t i) {
    bulwark::http::request req = base_;
    auto& t = targets_[i % targets_.size()];
    if (t.path.fixed()) {
      req.target = t.fixed_path;
    } else {
      t.path.expand(req.target, random_);
    }
    if (!bodies_.empty()) req.body = bodies_[i % bodies_.size()];
    return req;
  }

  asio::awaitable<void> work() {
    bulwark::http::client_options client_options;
    client_options.connect_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(options_.connect_timeout);
    client_options.request_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(options_.request_timeout);
    client_options.max_retries = 0; // no hidden retries: a failed request is counted as failed
    client_options.max_idle_per_host = 1;
    bulwark::http::client client(context_.get_executor(), client_options);
    asio::steady_timer timer(context_);
    while (!stopping_) {
      const std::uint64_t i = next_;
      if (limit_ && i >= *limit_) break;
      clock::time_point due;
      if (options_.rate) {
        due = start_ + std::chrono::duration_cast<clock::duration>(
                           std::chrono::duration<double>(static_cast<double>(i) / *options_.rate));
        if (deadline_ && due >= *deadline_) break;
        ++next_;
        if (due > clock::now()) {
          timer.expires_at(due);
          asio::error_code ec;
          co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          if (stopping_) break;
        }
      } else {
        due = clock::now();
        if (deadline_ && due >= *deadline_) break;
        ++next_;
      }
      auto& t = targets_[i % targets_.size()];
      ++in_flight_;
      auto answer = co_await client.request(t.to, request_for(i));
      --in_flight_;
      const auto end = clock::now();
      if (stopping_) break; // cut short meanwhile: counted as unfinished
      recorder_.record(end - start_, end - due, classify(answer));
      if (end > last_end_) last_end_ = end;
    }
    if (--workers_left_ == 0) stop(false);
  }

  void stop(bool cut_short) {
    if (stopping_) return;
    stopping_ = true;
    cut_short_ = cut_short;
    if (cut_short) {
      recorder_.set_unfinished(in_flight_);
      last_end_ = clock::now();
    }
    context_.stop(); // in-flight requests and their connections end with the context
  }

  asio::awaitable<void> report_progress() {
    const nanoseconds period = options_.progress_interval ? *options_.progress_interval
                               : terminal_                ? nanoseconds(std::chrono::seconds(1))
                                                          : nanoseconds(std::chrono::seconds(5));
    std::uint64_t before = 0;
    for (;;) {
      progress_timer_.expires_after(period);
      asio::error_code ec;
      co_await progress_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (ec || stopping_) co_return;
      const auto done = recorder_.completed();
      const double elapsed = std::chrono::duration<double>(clock::now() - start_).count();
      const double rate = static_cast<double>(done - before) / std::chrono::duration<double>(period).count();
      before = done;
      char line[256];
      const std::string total = limit_ ? "/" + std::to_string(*limit_) : std::string();
      std::snprintf(line, sizeof line, "%7.1fs  done %llu%s  %.0f requests/s  errors %llu  p99 %.3f ms", elapsed,
                    static_cast<unsigned long long>(done), total.c_str(), rate,
                    static_cast<unsigned long long>(recorder_.errors()),
                    static_cast<double>(recorder_.latency().percentile(99)) / 1e6);
      if (terminal_) {
        std::fprintf(progress_, "\r%s\x1b[K", line);
      } else {
        std::fprintf(progress_, "%s\n", line);
      }
      std::fflush(progress_);
    }
  }

  // Each line a client sends is an event mark at the moment it arrives; "ok" answers it.
  asio::awaitable<void> accept_control() {
    for (;;) {
      asio::error_code ec;
      auto socket = co_await control_->async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      asio::co_spawn(context_, read_control(std::move(socket)), asio::detached);
    }
  }
  asio::awaitable<void> read_control(asio::local::stream_protocol::socket socket) {
    asio::streambuf buffer(4096); // a line longer than this ends the connection
    for (;;) {
      asio::error_code ec;
      const std::size_t n =
          co_await asio::async_read_until(socket, buffer, '\n', asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      std::string line(asio::buffers_begin(buffer.data()),
                       asio::buffers_begin(buffer.data()) + static_cast<std::ptrdiff_t>(n));
      buffer.consume(n);
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' ')) line.pop_back();
      if (line.empty()) continue;
      recorder_.mark(std::chrono::duration_cast<nanoseconds>(clock::now() - start_), std::move(line));
      co_await asio::async_write(socket, asio::buffer("ok\n", 3), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
    }
  }

  const options& options_;
  std::vector<std::string> bodies_;
  recorder& recorder_;
  std::FILE* progress_;
  bool terminal_;
  asio::io_context context_{1};
  asio::steady_timer watchdog_;
  asio::steady_timer progress_timer_;
  asio::signal_set signals_;
  std::optional<asio::local::stream_protocol::acceptor> control_;
  std::vector<target> targets_;
  bulwark::http::request base_;
  std::mt19937_64 random_;
  clock::time_point start_, last_end_;
  std::optional<std::uint64_t> limit_;
  std::optional<clock::time_point> deadline_;
  std::uint64_t next_ = 0;
  std::uint64_t in_flight_ = 0;
  std::size_t workers_left_ = 0;
  bool stopping_ = false;
  bool cut_short_ = false;
};

} // namespace loadgen
