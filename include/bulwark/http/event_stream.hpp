#pragma once
// Server-sent events (text/event-stream, the HTML standard's EventSource protocol). A handler
// answers with event_stream_response(stream) and keeps the stream; any thread then send()s
// events until one of these ends it: the owner close()s it, the client goes away (seen at the
// next write: an event or the heartbeat), the client reads too slowly (more than
// max_queued_bytes waiting), or the server stops. A graceful server stop ends every open stream
// with its last chunk at once (it does not wait for the stop deadline), so an EventSource sees
// the end and reconnects, to this server's successor or another replica.
//
// Cost: send() formats the event and appends it under a mutex (a few hundred ns); one wake-up
// per batch of events is posted to the connection's thread, which writes everything queued in
// one chunk. A stream is written by its connection's thread only.

#include <bulwark/http/message.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace bulwark::http {

class event_stream {
public:
  struct options {
    /// Bytes queued for a client that does not read; past it the stream is closed (the client
    /// reconnects and reads a fresh state) rather than growing without bound.
    std::size_t max_queued_bytes = 1u << 20;
    /// A comment line written when nothing else was for this long: finds a client that went away
    /// and keeps proxies from closing an idle stream.
    std::chrono::milliseconds heartbeat{std::chrono::seconds(15)};
    /// The reconnection delay sent to the client first (`retry:`), if any.
    std::optional<std::chrono::milliseconds> retry{};
  };

  event_stream() : event_stream(options{}) {}
  explicit event_stream(options o) : opts_(o) {
    if (opts_.retry) queued_ = "retry: " + std::to_string(opts_.retry->count()) + "\n\n";
  }
  event_stream(const event_stream&) = delete;
  event_stream& operator=(const event_stream&) = delete;

  /// Queues one event: `data` (each of its lines becomes a `data:` line), an optional `event`
  /// name and `id`. Returns false when the stream is closed, or is closed now because the client
  /// left too much unread. Any thread.
  bool send(std::string_view data, std::string_view event = {}, std::string_view id = {}) {
    std::string text;
    text.reserve(data.size() + event.size() + id.size() + 32);
    if (!event.empty()) append_field(text, "event", event);
    if (!id.empty()) append_field(text, "id", id);
    for (;;) {
      const auto eol = data.find('\n');
      append_field(text, "data", data.substr(0, eol));
      if (eol == std::string_view::npos) break;
      data.remove_prefix(eol + 1);
    }
    text += '\n';
    std::function<void()> wake;
    {
      std::lock_guard lock(mutex_);
      if (closed_) return false;
      if (queued_.size() + text.size() > opts_.max_queued_bytes) {
        closed_ = true;
        queued_.clear();
      } else {
        queued_ += text;
      }
      wake = wake_;
    }
    if (wake) wake();
    std::lock_guard lock(mutex_);
    return !closed_;
  }

  /// Ends the stream: what is queued is still written, then the last chunk. Any thread;
  /// idempotent.
  void close() {
    std::function<void()> wake;
    {
      std::lock_guard lock(mutex_);
      if (closed_) return;
      closed_ = true;
      wake = wake_;
    }
    if (wake) wake();
  }

  /// True once the stream ended (close(), a client gone or too slow, the server stopping).
  bool closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
  }

  const options& settings() const noexcept { return opts_; }

  // --- the connection's side (detail/connection.hpp) -------------------------------------

  /// Called by the connection that writes the stream: `wake` (any thread) asks it to look again.
  void attach(std::function<void()> wake) {
    std::lock_guard lock(mutex_);
    wake_ = std::move(wake);
  }
  /// What is queued (taken), and whether the stream has ended.
  std::pair<std::string, bool> take() {
    std::lock_guard lock(mutex_);
    return {std::exchange(queued_, std::string()), closed_};
  }

private:
  // One field line; a CR would end the line early for the client, so it is dropped.
  static void append_field(std::string& out, std::string_view name, std::string_view value) {
    out.append(name);
    out.append(": ");
    for (char ch : value)
      if (ch != '\r') out += ch;
    out += '\n';
  }

  options opts_;
  mutable std::mutex mutex_;
  std::string queued_;
  bool closed_ = false;
  std::function<void()> wake_;
};

/// The answer that turns the connection into `stream`: 200, text/event-stream, no caching; the
/// connection closes when the stream ends.
inline response event_stream_response(std::shared_ptr<event_stream> stream) {
  response r(200);
  r.headers.set("Content-Type", "text/event-stream");
  r.headers.set("Cache-Control", "no-cache");
  r.events = std::move(stream);
  return r;
}

/// True when the request's Accept header asks for `text/event-stream`.
inline bool accepts_event_stream(const request& req) {
  const auto accept = req.headers.get("Accept");
  return accept && accept->find("text/event-stream") != std::string_view::npos;
}

} // namespace bulwark::http
