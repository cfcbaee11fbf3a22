#pragma once
// Starting while a dependency is down. A service of a resilience library must not exit because
// its database (or its Kafka cluster) does not answer at start: it starts, reports the
// dependency DOWN in its healthcheck, keeps trying in the background, and does the work once the
// dependency is back.
//
//   background_attempts   an operation tried until it succeeds: first at once, then after a
//                         bounded backoff (first_delay, doubling, at most max_delay), each
//                         failure logged with the next delay; stop() ends it (cancelling an
//                         attempt in progress) and returns once the loop has ended.
//   deferred_repository   a repository whose model is opened that way (mysql::repository::open
//                         creates the table, so it needs the server): until it is open every call
//                         fails at once with errc::unavailable ("<name> not reachable yet: <the
//                         last attempt's error>"), which every user of a repository already takes
//                         as an outage (write_through serves the cache and accepts writes as
//                         pending; retry_replayer waits, the message stays on the retry topic; a
//                         health probe says DOWN).
//
// Threads: one executor, the one start() gets (the models' own); ready() from any thread.

#include <bulwark/clock.hpp>
#include <bulwark/error.hpp>
#include <bulwark/repository.hpp>
#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace channel_metadata {

/// An operation tried until it succeeds, with a bounded backoff between attempts.
class background_attempts {
public:
  struct options {
    std::string name; ///< what is tried, for the log: "channel-metadata database"
    bulwark::clock::duration first_delay = std::chrono::milliseconds(250);
    bulwark::clock::duration max_delay = std::chrono::seconds(5);
    bulwark::clock clock{};
    std::function<void(const std::string&)> log;
  };
  using attempt_type = std::function<bulwark::task<void>()>;

  background_attempts(attempt_type attempt, options o)
      : state_(std::make_shared<state>(std::move(attempt), std::move(o))) {}
  background_attempts(const background_attempts&) = delete;
  background_attempts& operator=(const background_attempts&) = delete;
  /// Call stop() first when started (the loop runs on its own state, but its attempts may use
  /// what the caller owns).
  ~background_attempts() = default;

  /// One attempt now, before start() (which then waits first_delay before its first one):
  /// for a service that wants its dependency ready when it starts serving, if it answers. Run
  /// on start()'s executor. True when it succeeded.
  asio::awaitable<bool> first_attempt() { return attempt_once(state_, state_->opts.first_delay); }

  /// Starts trying on `ex` (the first attempt at once, unless first_attempt() ran; nothing when
  /// that succeeded). A second call does nothing.
  void start(asio::any_io_executor ex) {
    if (state_->started) return;
    state_->started = true;
    if (state_->succeeded) return;
    state_->running = true;
    auto s = state_;
    asio::co_spawn(ex, loop(s), asio::bind_cancellation_slot(s->cancel.slot(), asio::detached));
  }

  /// Ends the loop (an attempt in progress is cancelled) and returns once it has ended. Run on
  /// start()'s executor.
  asio::awaitable<void> stop() {
    auto s = state_;
    s->stopping = true;
    if (!s->running) co_return;
    s->cancel.emit(asio::cancellation_type::terminal);
    if (!s->running) co_return;
    s->loop_done.emplace(co_await asio::this_coro::executor, asio::steady_timer::time_point::max());
    std::error_code cancelled; // the loop cancels the wait when it ends
    co_await s->loop_done->async_wait(asio::redirect_error(asio::use_awaitable, cancelled));
    s->loop_done.reset();
  }

  /// Whether an attempt has succeeded.
  bool succeeded() const noexcept { return state_->succeeded; }
  /// Attempts made so far.
  std::uint64_t attempts() const noexcept { return state_->attempts; }
  /// The last failed attempt's message ("" before the first failure).
  std::string last_error() const {
    std::lock_guard lock(state_->mutex);
    return state_->last_error;
  }

private:
  struct state {
    state(attempt_type a, options o) : attempt(std::move(a)), opts(std::move(o)) {}
    attempt_type attempt;
    options opts;
    asio::cancellation_signal cancel;
    std::optional<asio::steady_timer> loop_done;
    bool started = false, running = false, stopping = false; // the executor's
    std::atomic<bool> succeeded{false};
    std::atomic<std::uint64_t> attempts{0};
    mutable std::mutex mutex;
    std::string last_error; // under mutex
  };

  // Marks the loop ended however it ends (a cancelled await may end it with an exception).
  struct ended {
    std::shared_ptr<state> s;
    ~ended() {
      s->running = false;
      if (s->loop_done) s->loop_done->cancel();
    }
  };

  static std::string millis(bulwark::clock::duration d) {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
  }

  // One attempt; a failure is logged with the delay before the next one. True on success.
  static asio::awaitable<bool> attempt_once(std::shared_ptr<state> s, bulwark::clock::duration next_delay) {
    const auto n = ++s->attempts;
    auto trying = s->attempt();
    auto tried = co_await std::move(trying);
    if (tried) {
      s->succeeded = true;
      if (s->opts.log && n > 1)
        s->opts.log(s->opts.name + ": reachable again after " + std::to_string(n) + " attempts");
      co_return true;
    }
    {
      std::lock_guard lock(s->mutex);
      s->last_error = tried.error().message();
    }
    if (s->opts.log && !s->stopping)
      s->opts.log(s->opts.name + ": not reachable (attempt " + std::to_string(n) + "): " + tried.error().message() +
                  "; trying again in " + millis(next_delay));
    co_return false;
  }

  static asio::awaitable<void> loop(std::shared_ptr<state> s) {
    ended guard{s};
    auto delay = s->opts.first_delay;
    if (s->attempts > 0) { // first_attempt() ran: its failure announced this wait
      const bool waited = co_await s->opts.clock.wait_for(delay);
      if (!waited) co_return;
      delay = std::min(delay * 2, s->opts.max_delay);
    }
    while (!s->stopping && !s->succeeded && s->attempt) {
      const bool done = co_await attempt_once(s, delay);
      if (done || s->stopping) break;
      const bool waited = co_await s->opts.clock.wait_for(delay);
      if (!waited) break;
      delay = std::min(delay * 2, s->opts.max_delay);
    }
  }

  std::shared_ptr<state> state_;
};

/// A repository opened in the background (see the top of this file). R: the model, movable.
template <bulwark::repository R> class deferred_repository {
public:
  using opener = std::function<bulwark::task<R>()>;

  /// `open` makes the model (it runs on start()'s executor until it succeeds).
  deferred_repository(opener open, background_attempts::options o)
      : opened_(std::make_shared<std::optional<R>>()),
        attempts_([opened = opened_, open = std::move(open)]() { return open_into(opened, open()); }, o),
        name_(o.name) {}
  deferred_repository(const deferred_repository&) = delete;
  deferred_repository& operator=(const deferred_repository&) = delete;

  /// See background_attempts::first_attempt and start.
  asio::awaitable<bool> first_attempt() { return attempts_.first_attempt(); }
  void start(asio::any_io_executor ex) { attempts_.start(std::move(ex)); }
  asio::awaitable<void> stop() { return attempts_.stop(); }
  /// Whether the model is open (from any thread).
  bool ready() const noexcept { return attempts_.succeeded(); }
  const background_attempts& attempts() const noexcept { return attempts_; }

  bulwark::task<std::optional<bulwark::versioned>> get(std::string_view key) {
    if (!*opened_) return not_ready<std::optional<bulwark::versioned>>();
    return (*opened_)->get(key);
  }
  bulwark::task<bulwark::version_t> put(std::string_view key, std::string value,
                                        std::optional<bulwark::version_t> expected) {
    if (!*opened_) return not_ready<bulwark::version_t>();
    return (*opened_)->put(key, std::move(value), expected);
  }
  bulwark::task<bool> erase(std::string_view key) {
    if (!*opened_) return not_ready<bool>();
    return (*opened_)->erase(key);
  }
  bulwark::task<bulwark::scan_page> scan(std::string_view prefix, std::string_view after, std::size_t limit) {
    if (!*opened_) return not_ready<bulwark::scan_page>();
    return (*opened_)->scan(prefix, after, limit);
  }

private:
  static bulwark::task<void> open_into(std::shared_ptr<std::optional<R>> opened, bulwark::task<R> opening) {
    BOOST_OUTCOME_CO_TRY(model, co_await std::move(opening));
    opened->emplace(std::move(model));
    co_return bulwark::ok();
  }

  template <class T> bulwark::task<T> not_ready() {
    return [](std::string why) -> bulwark::task<T> {
      co_return bulwark::error(bulwark::errc::unavailable, std::move(why));
    }(name_ + " not reachable yet" + (attempts_.last_error().empty() ? "" : ": " + attempts_.last_error()));
  }

  std::shared_ptr<std::optional<R>> opened_;
  background_attempts attempts_;
  std::string name_;
};

} // namespace channel_metadata
