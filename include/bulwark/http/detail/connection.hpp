#pragma once
// One connection of the HTTP/1.1 server (server.hpp): it reads requests, hands each to the
// handler and writes the answers in order. Its steps are named after what they do: parse what
// is buffered, arm the read deadline, take the request, invoke the handler, answer (in memory or
// streamed), reject a malformed request, flush what is queued.
// Everything a connection holds (its socket, its place in the worker's list, its slot under
// max_connections, the open-connections gauge) is given back by its destructor, however the
// connection ends.
//
// Every co_await here is a statement of its own (`const bool x = co_await f();`): GCC 12.2, at
// -O0 and -O2 alike, miscompiles a member coroutine that has both `if (!co_await f())` and
// `co_return co_await g()` (f's frame is read past its end, its `this` is garbage).

#include <bulwark/http/detail/request_metrics.hpp>
#include <bulwark/http/detail/serializer.hpp>
#include <bulwark/http/event_stream.hpp>
#include <bulwark/http/handler.hpp>
#include <bulwark/http/message.hpp>
#include <bulwark/http/parser.hpp>
#include <bulwark/http/responses.hpp>
#include <bulwark/http/server_options.hpp>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <atomic>
#include <chrono>
#include <exception>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

// GCC 12 at -O1 and above (the asan preset) reports a false -Wmismatched-new-delete for Asio's
// recycling coroutine-frame allocator once it inlines both halves; the pair does match.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace bulwark::http::detail {

/// What every connection of one server shares. Fixed before start(); afterwards only the
/// atomics change.
struct server_shared {
  server_shared(server_options o, handler h) : options(std::move(o)), on_request(std::move(h)) {
    if (options.metrics) metrics.emplace(*options.metrics, "bulwark_http", true);
  }
  server_options options;
  handler on_request;
  std::optional<request_metrics> metrics;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> open{0}; ///< connections holding a slot under max_connections, all threads
};

class connection;

/// One thread of the server: its io_context, its acceptor and the connections it serves.
struct worker {
  // Declared before the io_context so it outlives it: destroying the io_context destroys the
  // coroutines of connections still open, and each connection's destructor leaves this list.
  std::list<connection*> connections;
  asio::io_context ctx{1};
  asio::ip::tcp::acceptor acceptor{ctx};
  asio::steady_timer sweeper{ctx};
  std::optional<std::chrono::steady_clock::time_point> stop_deadline;
  std::thread thread;
};

/// What a connection is doing, for the sweep: an idle one may be closed at stop, the others
/// only when their deadline passed; a streaming one (server-sent events) is asked to end.
enum class connection_phase { idle, reading, handling, writing, closing, streaming };

class connection {
public:
  using clock = std::chrono::steady_clock;

  /// Takes `socket` and the slot in shared.open that the acceptor reserved for it.
  connection(server_shared& shared, worker& w, asio::ip::tcp::socket socket)
      : shared_(shared), worker_(w), socket_(std::move(socket)), parser_(shared.options.limits) {
    self_ = worker_.connections.insert(worker_.connections.end(), this);
    if (shared_.metrics) shared_.metrics->connection_opened();
  }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection() {
    close();
    worker_.connections.erase(self_);
    shared_.open.fetch_sub(1);
    if (shared_.metrics) shared_.metrics->connection_closed();
  }

  /// Serves requests until the peer leaves, a timeout or an error closes the connection, or
  /// the server stops.
  asio::awaitable<void> run() {
    // The socket read and the handler are awaited here rather than in steps of their own: a
    // coroutine frame costs about 300 instructions, 3% of a small request.
    for (;;) {
      if (!parse_buffered()) {
        queue_continue();
        if (!out_.empty()) { // answers to pipelined requests go out before waiting for more
          const bool written = co_await flush();
          if (!written) break;
        }
        if (!arm_read_deadline()) break;
        const std::size_t n = co_await socket_.async_read_some(asio::buffer(buf_.data() + end_, buf_.size() - end_),
                                                               asio::redirect_error(asio::use_awaitable, ec_));
        if (ec_) break;
        end_ += n;
        continue;
      }
      if (parser_.failed()) {
        co_await reject_malformed();
        break;
      }
      // The handler step, then the write step.
      request req = take_request();
      const auto started = clock::now();
      response resp = co_await invoke(req);
      if (shared_.metrics) shared_.metrics->record(req, resp.status, clock::now() - started, recent_);
      const bool keep = req.keep_alive && !resp.close && !shared_.stopping.load(std::memory_order_relaxed);
      if (resp.events) { // the connection carries the event stream until it ends, then closes
        co_await answer_events(req, resp);
        break;
      }
      if (resp.stream) {
        const bool more = co_await answer_streamed(req, resp, keep);
        if (!more) break;
        continue;
      }
      append_response(out_, resp, keep, req.version_minor, req.method == "HEAD");
      // Answers to pipelined requests already buffered are written together, up to a bound.
      if (keep && begin_ < end_ && out_.size() < shared_.options.max_pipelined_bytes) continue;
      const bool written = co_await flush();
      if (!written || !keep) break;
    }
    if (!out_.empty() && !ec_) co_await flush();
  }

  /// Closes the socket, failing whatever the connection awaits on it.
  void close() noexcept {
    asio::error_code ignored;
    socket_.shutdown(asio::socket_base::shutdown_both, ignored);
    socket_.close(ignored);
  }
  bool idle() const noexcept { return phase_ == connection_phase::idle; }
  /// At a server stop: a connection waiting for its next server-sent event looks again, sees
  /// the stop and ends the stream. On the connection's thread.
  void end_stream() noexcept {
    if (phase_ == connection_phase::streaming && stream_wake_) stream_wake_->cancel();
  }
  bool expired(clock::time_point now) const noexcept { return now >= deadline_; }

private:
  void enter(connection_phase p, clock::time_point deadline) noexcept {
    phase_ = p;
    deadline_ = deadline;
  }

  // Feeds buffered bytes to the parser. true: it holds one complete or malformed request (an
  // incomplete parser takes every byte it is given, so nothing stays buffered then).
  bool parse_buffered() {
    if (begin_ < end_) {
      begin_ += parser_.feed(std::string_view(buf_.data() + begin_, end_ - begin_));
      if (begin_ == end_) begin_ = end_ = 0;
    }
    return parser_.complete() || parser_.failed();
  }

  // A client that sent `Expect: 100-continue` waits for this before sending the body.
  void queue_continue() {
    if (parser_.expects_continue() && !sent_continue_) {
      out_.append(continue_answer);
      sent_continue_ = true;
    }
  }

  // Before waiting for bytes: the read timeout inside a request, the idle timeout between
  // requests. false: the server is stopping and no request has started, so the connection ends.
  bool arm_read_deadline() noexcept {
    if (parser_.started()) {
      enter(connection_phase::reading, clock::now() + shared_.options.read_timeout);
      return true;
    }
    if (shared_.stopping.load(std::memory_order_relaxed)) return false;
    enter(connection_phase::idle, clock::now() + shared_.options.idle_timeout);
    return true;
  }

  // A request that cannot be parsed: the parser's status, then the connection closes.
  asio::awaitable<void> reject_malformed() {
    const response r = error_response(parser_.error_status(), "invalid_request", parser_.error_reason());
    append_response(out_, r, false, 1);
    co_await flush();
    // Stop sending, then give the client a moment to read the answer before closing, so
    // unread request bytes do not turn our close into a reset that destroys the answer.
    socket_.shutdown(asio::socket_base::shutdown_send, ec_);
    enter(connection_phase::closing, clock::now() + std::chrono::milliseconds(500));
    for (int i = 0; i < 16 && !ec_; ++i)
      co_await socket_.async_read_some(asio::buffer(buf_), asio::redirect_error(asio::use_awaitable, ec_));
  }

  // The complete request, out of the parser, which is ready for the next one. A handler has
  // as long as it needs; the write timeout starts when it answers.
  request take_request() {
    request req = parser_.release();
    parser_.reset();
    sent_continue_ = false;
    enter(connection_phase::handling, clock::time_point::max());
    return req;
  }

  // The handler's error becomes its status; an exception a 500. Either touches this request only.
  asio::awaitable<response> invoke(request& req) {
    try {
      auto r = co_await shared_.on_request(req);
      if (r.has_value()) co_return std::move(r).value();
      co_return error_response(r.error());
    } catch (const std::exception& e) {
      co_return error_response(500, "internal", std::string("unhandled exception: ") + e.what());
    } catch (...) {
      co_return error_response(500, "internal", "unhandled exception");
    }
  }

  // A body from a body_source: Content-Length when its size is known, else chunked (HTTP/1.1)
  // or ended by closing the connection (HTTP/1.0).
  asio::awaitable<bool> answer_streamed(const request& req, response& resp, bool keep) {
    const auto size = resp.stream->size();
    const bool chunked = !size && req.version_minor == 1;
    const bool delimited = size || chunked;
    append_response_head(out_, resp, size, keep && delimited, req.version_minor);
    const bool written = co_await flush();
    if (!written) co_return false;
    if (req.method != "HEAD") {
      const bool complete = co_await stream_body(*resp.stream, chunked);
      if (!complete) co_return false;
    }
    co_return keep&& delimited;
  }

  asio::awaitable<bool> stream_body(body_source& source, bool chunked) {
    std::vector<char> piece(64 * 1024);
    for (;;) {
      auto n = source.read(std::span<char>(piece.data(), piece.size()));
      if (!n.has_value()) co_return false; // a broken source: the client sees a truncated body
      const std::string_view data(piece.data(), n.value());
      if (chunked)
        append_chunk(out_, data); // an empty piece is the last chunk
      else if (data.empty())
        co_return true;
      else
        out_.append(data);
      const bool written = co_await flush();
      if (!written) co_return false;
      if (data.empty()) co_return true;
    }
  }

  // Server-sent events: the head (chunked; on HTTP/1.0 the body ends with the connection), then
  // whatever the stream queued, one chunk per wake-up, a heartbeat comment when it was quiet,
  // and the last chunk when the stream closes or the server stops. A failed write (the client
  // left) closes the stream, so its owner's next send() returns false.
  asio::awaitable<void> answer_events(const request& req, const response& resp) {
    event_stream& stream = *resp.events;
    const bool chunked = req.version_minor == 1;
    append_response_head(out_, resp, std::nullopt, false, req.version_minor);
    auto wake = std::make_shared<asio::steady_timer>(socket_.get_executor());
    stream_wake_ = wake.get();
    stream.attach([ex = socket_.get_executor(), w = std::weak_ptr<asio::steady_timer>(wake)] {
      asio::post(ex, [w] {
        if (auto timer = w.lock()) timer->cancel();
      });
    });
    bool quiet = false; // the last wait ended by the heartbeat period, not a wake-up
    for (;;) {
      auto [pending, ended] = stream.take();
      ended = ended || req.method == "HEAD" || shared_.stopping.load(std::memory_order_relaxed);
      if (req.method == "HEAD") pending.clear(); // the head only
      if (quiet && pending.empty() && !ended) pending = ":\n\n";
      quiet = false;
      if (!pending.empty() && chunked)
        append_chunk(out_, pending);
      else
        out_.append(pending);
      if (ended && chunked) append_chunk(out_, {});
      if (!out_.empty()) {
        const bool written = co_await flush();
        if (!written) break;
      }
      if (ended) break;
      // A wake-up that came while the write was suspended found no wait to cancel: look again.
      if (!pending.empty()) continue;
      enter(connection_phase::streaming, clock::time_point::max());
      asio::error_code waited;
      wake->expires_after(stream.settings().heartbeat);
      co_await wake->async_wait(asio::redirect_error(asio::use_awaitable, waited));
      quiet = !waited;
    }
    stream_wake_ = nullptr;
    stream.attach({});
    stream.close();
  }

  // Writes everything queued. false: the write failed or timed out.
  asio::awaitable<bool> flush() {
    enter(connection_phase::writing, clock::now() + shared_.options.write_timeout);
    co_await asio::async_write(socket_, asio::buffer(out_), asio::redirect_error(asio::use_awaitable, ec_));
    out_.clear();
    co_return !ec_;
  }

  server_shared& shared_;
  worker& worker_;
  std::list<connection*>::iterator self_;
  asio::ip::tcp::socket socket_;
  clock::time_point deadline_{};
  connection_phase phase_ = connection_phase::idle;
  std::vector<char> buf_ = std::vector<char>(16 * 1024);
  std::size_t begin_ = 0, end_ = 0; ///< buffered, not yet parsed bytes: buf_[begin_, end_)
  request_parser parser_;
  bool sent_continue_ = false;
  std::string out_;     ///< answers queued, not yet written
  asio::error_code ec_; ///< the last socket error; once set, nothing more is written
  request_metrics::recent recent_;
  asio::steady_timer* stream_wake_ = nullptr; ///< while streaming events: cancelled to wake the writer
};

} // namespace bulwark::http::detail

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
