#pragma once
// One hiredis async connection driven by an Asio executor: the event adapter on
// redisAsyncContext::ev, connect and command timeouts, reconnect with backoff, and the
// write batching that gives automatic pipelining. Private: use redis::client.
//
// Threading: hiredis is not thread-safe. A connection and everything that submits to it must
// run on one executor that never runs two handlers at once (a single-threaded io_context, or
// a strand). Nothing here locks.
//
// How a command travels:
//   submit()  formats it into hiredis's output buffer (redisAsyncCommandArgv) and records a
//             pending_command with its deadline. hiredis asks for a write (ev.addWrite); the
//             adapter does not write at once but posts one flush, so every command submitted
//             before the flush runs (all coroutines resumed in this turn of the loop) leaves in
//             one write() - automatic pipelining.
//   reading   a wait for readability calls redisAsyncHandleRead (16 KiB at most), resumes the
//             callers of the replies it parsed (after hiredis returns, never from inside a
//             hiredis callback), and continues from a posted handler while bytes remain (Asio's
//             epoll reactor is edge-triggered: waiting again could strand them), so new
//             commands are flushed between two chunks. Replies are matched FIFO.
//   timeouts  one steady_timer per connection watches the oldest pending command (replies are
//             FIFO, so it is the first to be late) and the connect deadline; when one passes,
//             the context is freed (redisAsyncDisconnect would wait for the replies), every
//             pending command fails, and the connection backs off before reconnecting.

#include <bulwark/redis/error.hpp>
#include <bulwark/redis/options.hpp>
#include <bulwark/redis/reply.hpp>
#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/dispatch.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bulwark::redis::detail {

using steady = std::chrono::steady_clock;

/// Appends `argv` as one RESP command (an array of bulk strings) to `out`.
inline void format_command(std::string& out, int argc, const char** argv, const std::size_t* lengths) {
  char digits[24];
  auto append_number = [&](char tag, std::size_t n) {
    out.push_back(tag);
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, n);
    (void)ec;
    out.append(digits, end);
    out.append("\r\n", 2);
  };
  append_number('*', static_cast<std::size_t>(argc));
  for (int i = 0; i < argc; ++i) {
    append_number('$', lengths[i]);
    out.append(argv[i], lengths[i]);
    out.append("\r\n", 2);
  }
}

/// A top-level reply as the connection's reader builds it: hiredis's parser calls the functions
/// below (redisReplyObjectFunctions) to build redis::reply directly, so a reply costs no
/// redisReply tree and no copy of its bytes. `header` comes first and mirrors the type (and an
/// error's text) because hiredis's async code reads a reply that no command waits for (an
/// error the server sends before closing) as a redisReply.
struct reply_node {
  redisReply header{};
  reply value;
};

// Children live in their parent's `elements` (sized when the array was created); a task's obj
// is a reply_node* at the top level, the reply* of its element below.
inline reply* reply_of_task(const redisReadTask* task) {
  return task->parent == nullptr ? &static_cast<reply_node*>(task->obj)->value : static_cast<reply*>(task->obj);
}

/// The object for one parsed item: a new reply_node at the top level, else the parent's element.
/// nullptr (out of memory) makes hiredis fail the connection.
inline void* reply_object(const redisReadTask* task, reply::kind kind, const auto& fill) noexcept {
  try {
    if (task->parent == nullptr) {
      auto* node = new reply_node;
      node->header.type = task->type;
      node->value.type = kind;
      fill(node->value);
      if (kind == reply::kind::error) {
        node->header.str = node->value.str.data();
        node->header.len = node->value.str.size();
      }
      return node;
    }
    auto& parent = *reply_of_task(task->parent);
    auto& element = parent.elements[static_cast<std::size_t>(task->idx)];
    element.type = kind;
    fill(element);
    return &element;
  } catch (...) {
    return nullptr;
  }
}

inline reply::kind reply_kind(int type) noexcept {
  switch (type) {
  case REDIS_REPLY_STRING: return reply::kind::string;
  case REDIS_REPLY_STATUS: return reply::kind::status;
  case REDIS_REPLY_ERROR: return reply::kind::error;
  case REDIS_REPLY_INTEGER: return reply::kind::integer;
  case REDIS_REPLY_ARRAY: return reply::kind::array;
  default: return reply::kind::nil;
  }
}

inline redisReplyObjectFunctions reply_functions{
    [](const redisReadTask* task, char* bytes, std::size_t length) -> void* {
      return reply_object(task, reply_kind(task->type), [&](reply& r) { r.str.assign(bytes, length); });
    },
    [](const redisReadTask* task, int elements) -> void* {
      return reply_object(task, reply::kind::array,
                          [&](reply& r) { r.elements.resize(static_cast<std::size_t>(std::max(elements, 0))); });
    },
    [](const redisReadTask* task, long long value) -> void* {
      return reply_object(task, reply::kind::integer, [&](reply& r) { r.integer = value; });
    },
    [](const redisReadTask* task) -> void* { return reply_object(task, reply::kind::nil, [](reply&) {}); },
    [](void* object) { delete static_cast<reply_node*>(object); },
};

/// A command waiting for its reply. Reference-counted: the connection's queue holds one
/// reference until the reply (or the connection's end) arrives, the caller's cancellation
/// slot holds another while its hook is installed.
class pending_command {
public:
  virtual ~pending_command() = default;
  /// Completes the caller with `outcome`; later calls do nothing. `defer`: post rather than
  /// dispatch (used when the caller might be on the stack, e.g. during destruction).
  virtual void complete(result<reply> outcome, bool defer) = 0;
  /// The caller has been completed (or cancelled): nothing more will reach it.
  virtual bool finished() const noexcept = 0;
  void add_ref() noexcept { ++refs_; }
  void release() noexcept {
    if (--refs_ == 0) delete this;
  }
  steady::time_point deadline{};
  bool internal = false; ///< AUTH, SELECT or READONLY sent by the connection itself

private:
  int refs_ = 1;
};

template <class Handler, class Executor> class command_op final : public pending_command {
public:
  command_op(Handler&& handler, const Executor& fallback)
      : handler_(std::move(handler)), executor_(asio::get_associated_executor(*handler_, fallback)) {}

  /// Lets the caller cancel (terminal, partial or total): the caller resumes at once with
  /// redis_errc::cancelled; the reply, when it comes, is dropped.
  void hook_cancellation() {
    slot_ = asio::get_associated_cancellation_slot(*handler_);
    if (slot_.is_connected()) {
      add_ref();
      slot_.template emplace<hook>(this);
    }
  }

  void complete(result<reply> outcome, bool defer) override { finish(std::move(outcome), defer, true); }
  bool finished() const noexcept override { return !handler_; }

private:
  struct hook {
    explicit hook(command_op* op) noexcept : op(op) {}
    hook(const hook&) = delete;
    hook& operator=(const hook&) = delete;
    ~hook() { op->release(); }
    void operator()(asio::cancellation_type type) {
      if (!!(type &
             (asio::cancellation_type::terminal | asio::cancellation_type::partial | asio::cancellation_type::total)))
        op->finish(bulwark::error(make_error_code(redis_errc::cancelled)), true, false);
    }
    command_op* op;
  };

  void finish(result<reply> outcome, bool defer, bool clear_slot) {
    if (!handler_) return;
    auto handler = std::move(*handler_);
    handler_.reset();
    auto executor = executor_;
    // Clearing destroys the hook, which releases a reference: keep one of our own meanwhile.
    add_ref();
    if (clear_slot && slot_.is_connected()) slot_.clear();
    auto call = [handler = std::move(handler), outcome = std::move(outcome)]() mutable {
      std::move(handler)(std::move(outcome));
    };
    if (defer)
      asio::post(executor, std::move(call));
    else
      asio::dispatch(executor, std::move(call));
    release();
  }

  std::optional<Handler> handler_;
  asio::associated_executor_t<Handler, Executor> executor_;
  asio::associated_cancellation_slot_t<Handler> slot_;
};

/// Completes `handler` with `e` without touching any connection (posted: never inline).
template <class Handler, class Executor> void fail_now(Handler&& handler, const Executor& fallback, bulwark::error e) {
  auto executor = asio::get_associated_executor(handler, fallback);
  asio::post(executor, [handler = std::forward<Handler>(handler), e = std::move(e)]() mutable {
    std::move(handler)(result<reply>(std::move(e)));
  });
}

/// Counters of one connection (or, summed, of a client).
struct connection_statistics {
  std::uint64_t commands = 0;    ///< commands submitted to a context
  std::uint64_t writes = 0;      ///< flushes of the output buffer (write() calls by hiredis)
  std::uint64_t reads = 0;       ///< reads of up to 16 KiB (redisAsyncHandleRead calls)
  std::uint64_t connects = 0;    ///< connections established
  std::uint64_t disconnects = 0; ///< contexts ended (error, timeout, close)
  std::uint64_t timeouts = 0;    ///< contexts closed by connect_timeout or command_timeout
  connection_statistics& operator+=(const connection_statistics& o) noexcept {
    commands += o.commands;
    writes += o.writes;
    reads += o.reads;
    connects += o.connects;
    disconnects += o.disconnects;
    timeouts += o.timeouts;
    return *this;
  }
};

class connection : public std::enable_shared_from_this<connection> {
public:
  connection(asio::any_io_executor executor, const connection_options& options)
      : executor_(std::move(executor)), options_(options), timer_(executor_), rng_(std::random_device{}()) {}

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  ~connection() { shutdown(); }

  /// A hiredis context exists (connecting or connected).
  bool has_context() const noexcept { return ctx_ != nullptr; }
  bool connected() const noexcept { return ctx_ != nullptr && connected_; }
  /// No context, and the backoff delay since the last failure has passed.
  bool due(steady::time_point now) const noexcept { return ctx_ == nullptr && now >= retry_at_ && !stopped_; }
  std::size_t outstanding() const noexcept { return pending_.size(); }
  const connection_statistics& statistics() const noexcept { return stats_; }
  /// The text of the last connection failure, for error details.
  const std::string& last_failure() const noexcept { return last_failure_; }

  /// Starts a connection attempt (non-blocking; see connection_options::host). On an
  /// immediate failure the connection backs off and has_context() stays false.
  void start_connect() {
    if (ctx_ || stopped_) return;
    redisAsyncContext* ac = redisAsyncConnect(options_.host.c_str(), options_.port);
    if (ac == nullptr) {
      note_failure("out of memory");
      return;
    }
    if (ac->err != 0) {
      std::string why = ac->errstr;
      redisAsyncFree(ac);
      note_failure(why);
      return;
    }
    ++generation_;
    ctx_ = ac;
    connected_ = false;
    ac->data = this;
    descriptor_.emplace(executor_, ac->c.fd);
    ac->ev.data = this;
    ac->ev.addRead = [](void* p) { static_cast<connection*>(p)->add_read(); };
    ac->ev.delRead = [](void* p) { static_cast<connection*>(p)->want_read_ = false; };
    ac->ev.addWrite = [](void* p) { static_cast<connection*>(p)->add_write(); };
    ac->ev.delWrite = [](void* p) { static_cast<connection*>(p)->want_write_ = false; };
    ac->ev.cleanup = [](void* p) { static_cast<connection*>(p)->on_cleanup(); };
    ac->c.reader->fn = &reply_functions; // replies are built as redis::reply (see reply_node)
    // After the hooks: setting the connect callback asks for the first write event.
    redisAsyncSetConnectCallback(ac, &connection::on_connect);
    redisAsyncSetDisconnectCallback(ac, [](const redisAsyncContext*, int) {});
    connect_deadline_ = steady::now() + options_.connect_timeout;
    arm_timer(connect_deadline_);
    // AUTH and SELECT go first in the pipeline; a refusal closes the connection.
    if (!options_.password.empty()) {
      if (options_.username.empty())
        send_internal({"AUTH", options_.password});
      else
        send_internal({"AUTH", options_.username, options_.password});
    }
    if (options_.database != 0) {
      const auto db = std::to_string(options_.database);
      send_internal({"SELECT", db});
    }
    if (options_.readonly) send_internal({"READONLY"});
  }

  /// Queues one command. `handler` is completed exactly once with the reply or an error.
  template <class Handler> void submit(int argc, const char** argv, const std::size_t* lengths, Handler&& handler) {
    if (stopped_ || stopping_)
      return fail_now(std::forward<Handler>(handler), executor_, error_of(redis_errc::stopped));
    if (!ctx_) return fail_now(std::forward<Handler>(handler), executor_, not_connected());
    if (pending_.size() >= options_.max_pending)
      return fail_now(std::forward<Handler>(handler), executor_, error_of(redis_errc::queue_full));
    using op_type = command_op<std::decay_t<Handler>, asio::any_io_executor>;
    auto* op = new op_type(std::forward<Handler>(handler), executor_);
    if (enqueue(argc, argv, lengths, op)) op->hook_cancellation();
  }

  /// Queues one command completed through `op` (the connection takes one reference, released
  /// after op->complete()): for callers that are their own pending_command (a cluster call),
  /// so that no handler is wrapped and no executor hop is taken per reply. An immediate failure
  /// completes `op` deferred (posted), never inline.
  void submit_op(int argc, const char** argv, const std::size_t* lengths, pending_command* op) {
    const auto refuse = [op](bulwark::error e) {
      op->complete(std::move(e), true);
      op->release();
    };
    if (stopped_ || stopping_) return refuse(error_of(redis_errc::stopped));
    if (!ctx_) return refuse(not_connected());
    if (pending_.size() >= options_.max_pending) return refuse(error_of(redis_errc::queue_full));
    enqueue(argc, argv, lengths, op);
  }

  /// Refuses new commands; close() once outstanding() is 0.
  void begin_stop() noexcept { stopping_ = true; }

  /// Frees the context now: every pending command fails with `why`, posted to its caller.
  void close(redis_errc why) {
    if (!ctx_) return;
    close_reason_ = why;
    redisAsyncFree(ctx_); // runs the callbacks with NULL replies, then ev.cleanup
    close_reason_.reset();
    complete_ready(true);
  }

  /// For destruction: close, and never reconnect.
  void shutdown() {
    stopped_ = true;
    close(redis_errc::stopped);
    timer_.cancel();
  }

private:
  /// Formats the command into hiredis's output buffer and records `op` (whose one reference
  /// the queue now holds). false: the context refused it, `op` was failed and released.
  bool enqueue(int argc, const char** argv, const std::size_t* lengths, pending_command* op) {
    // One clock read per batch: the commands of one flush were all submitted in this turn.
    if (!flush_posted_) batch_now_ = steady::now();
    op->deadline = batch_now_ + options_.command_timeout;
    op->internal = sending_internal_;
    // Formatted here into a reused buffer: hiredis's own formatting allocates and reallocates.
    command_buffer_.clear();
    format_command(command_buffer_, argc, argv, lengths);
    if (redisAsyncFormattedCommand(ctx_, &connection::on_reply, op, command_buffer_.data(), command_buffer_.size()) !=
        REDIS_OK) {
      op->complete(error_of(redis_errc::connection_closed), true);
      op->release();
      return false;
    }
    pending_.push_back(op);
    ++stats_.commands;
    arm_timer(op->deadline);
    return true;
  }

  static bulwark::error error_of(redis_errc e, std::string detail = {}) {
    return {make_error_code(e), std::move(detail)};
  }

  bulwark::error not_connected() const {
    return error_of(redis_errc::not_connected,
                    last_failure_.empty() ? std::string() : "last failure: " + last_failure_);
  }

  void note_failure(std::string why) {
    last_failure_ = std::move(why);
    ++attempts_;
    retry_at_ = steady::now() + options_.reconnect.delay(attempts_, rng_);
  }

  // --- hiredis callbacks (run inside hiredis: record only, never resume callers here) ---

  static void on_connect(const redisAsyncContext* ac, int status) {
    auto* self = static_cast<connection*>(ac->data);
    if (status == REDIS_OK) {
      self->connected_ = true;
      self->attempts_ = 0;
      ++self->stats_.connects;
    }
  }

  static void on_reply(redisAsyncContext* ac, void* raw, void* privdata) {
    auto* self = static_cast<connection*>(ac->data);
    auto* op = static_cast<pending_command*>(privdata);
    assert(!self->pending_.empty() && self->pending_.front() == op);
    self->pending_.pop_front();
    if (raw == nullptr) {
      self->ready_.emplace_back(op, self->failure_of(ac));
      return;
    }
    auto* node = static_cast<reply_node*>(raw); // freed by hiredis when this returns
    if (node->value.type == reply::kind::error) {
      auto e = server_error(node->value.str);
      // A refused AUTH or SELECT fails every command behind it on this connection: none may
      // run as the wrong user or in the wrong database.
      if (op->internal && !self->refused_)
        self->refused_ = bulwark::error(make_error_code(redis_errc::auth_failed), e.message());
      self->ready_.emplace_back(op, std::move(e));
    } else if (self->refused_) {
      self->ready_.emplace_back(op, *self->refused_);
    } else {
      self->ready_.emplace_back(op, std::move(node->value));
    }
  }

  /// Why pending commands of a dying context fail.
  bulwark::error failure_of(const redisAsyncContext* ac) const {
    if (close_reason_) {
      switch (*close_reason_) {
      case redis_errc::connect_timeout:
        return error_of(redis_errc::connect_timeout, "no connection within connect_timeout");
      case redis_errc::command_timeout: return error_of(redis_errc::command_timeout, "no reply within command_timeout");
      default: return error_of(*close_reason_);
      }
    }
    std::string detail = ac->c.errstr;
    switch (ac->c.err) {
    case REDIS_ERR_EOF: return error_of(redis_errc::connection_closed, std::move(detail));
    case REDIS_ERR_PROTOCOL: return error_of(redis_errc::protocol, std::move(detail));
    case REDIS_ERR_OOM: return error_of(redis_errc::out_of_memory, std::move(detail));
    default:
      return error_of(connected_ ? redis_errc::connection_closed : redis_errc::connection_failed, std::move(detail));
    }
  }

  void on_cleanup() {
    if (ctx_ != nullptr && ctx_->c.err != 0)
      last_failure_ = ctx_->c.errstr;
    else if (close_reason_)
      last_failure_ = make_error_code(*close_reason_).message();
    ctx_ = nullptr;
    connected_ = false;
    refused_.reset();
    ++stats_.disconnects;
    want_read_ = want_write_ = read_waiting_ = write_waiting_ = flush_posted_ = in_read_ = false;
    ++generation_; // stale waits and flushes see a new generation and do nothing
    if (descriptor_) {
      descriptor_->release(); // hiredis closes the fd itself
      descriptor_.reset();
    }
    if (!stopped_) {
      ++attempts_;
      retry_at_ = steady::now() + options_.reconnect.delay(attempts_, rng_);
    }
  }

  // --- the event adapter ---

  void add_read() {
    want_read_ = true;
    // Inside on_readable, hiredis asks for reads after every chunk: on_readable re-arms itself
    // (one wait or one continuation at a time; two waits would both complete on one event).
    if (in_read_ || read_waiting_ || !descriptor_) return;
    read_waiting_ = true;
    descriptor_->async_wait(asio::posix::stream_descriptor::wait_read,
                            [self = shared_from_this(), gen = generation_](std::error_code ec) {
                              if (gen != self->generation_) return;
                              self->read_waiting_ = false;
                              if (!ec) self->on_readable();
                            });
  }

  // One chunk (hiredis reads at most 16 KiB), then its callers resume, and their new commands
  // are flushed before the next chunk is read: the server works on the next batch while this
  // one is processed. Bytes left in the socket are read from a posted continuation, not from
  // a new readiness wait (the reactor is edge-triggered: no new edge would come for them).
  void on_readable() {
    if (!ctx_ || !want_read_) return;
    ++stats_.reads;
    in_read_ = true;
    redisAsyncHandleRead(ctx_);
    in_read_ = false;
    complete_ready(false);
    if (!ctx_ || !want_read_) return;
    int available = 0;
    if (::ioctl(ctx_->c.fd, FIONREAD, &available) == 0 && available > 0) {
      read_waiting_ = true; // the continuation stands for the wait
      asio::post(executor_, [self = shared_from_this(), gen = generation_] {
        if (gen != self->generation_) return;
        self->read_waiting_ = false;
        self->on_readable();
      });
      return;
    }
    add_read();
  }

  void add_write() {
    want_write_ = true;
    if (!connected_) return start_write_wait(); // the connect completes on the first write event
    if (in_write_) {
      write_again_ = true; // a partial write: wait until the socket drains
      return;
    }
    if (flush_posted_) return;
    flush_posted_ = true;
    asio::post(executor_, [self = shared_from_this(), gen = generation_] {
      if (gen != self->generation_) return;
      self->flush_posted_ = false;
      if (self->ctx_ && self->want_write_) self->do_write();
    });
  }

  void start_write_wait() {
    if (write_waiting_ || !descriptor_) return;
    write_waiting_ = true;
    descriptor_->async_wait(asio::posix::stream_descriptor::wait_write,
                            [self = shared_from_this(), gen = generation_](std::error_code ec) {
                              if (gen != self->generation_) return;
                              self->write_waiting_ = false;
                              if (!ec && self->ctx_) self->do_write();
                            });
  }

  void do_write() {
    if (connected_ && ctx_->c.obuf != nullptr && sdslen(ctx_->c.obuf) > 0) ++stats_.writes;
    in_write_ = true;
    write_again_ = false;
    redisAsyncHandleWrite(ctx_);
    in_write_ = false;
    if (ctx_ && (!connected_ || (write_again_ && want_write_))) start_write_wait();
    complete_ready(false);
  }

  // --- timeouts ---

  void arm_timer(steady::time_point at) {
    if (timer_armed_ && timer_at_ <= at) return;
    timer_armed_ = true;
    timer_at_ = at;
    timer_.expires_at(at);
    timer_.async_wait([self = shared_from_this(), token = ++timer_token_](std::error_code) {
      if (token == self->timer_token_) self->on_timer();
    });
  }

  void on_timer() {
    timer_armed_ = false;
    const auto now = steady::now();
    if (ctx_ && !connected_ && now >= connect_deadline_) {
      ++stats_.timeouts;
      close(redis_errc::connect_timeout);
    } else if (!pending_.empty() && now >= pending_.front()->deadline) {
      ++stats_.timeouts;
      close(redis_errc::command_timeout);
    }
    std::optional<steady::time_point> next;
    if (ctx_ && !connected_) next = connect_deadline_;
    if (!pending_.empty() && (!next || pending_.front()->deadline < *next)) next = pending_.front()->deadline;
    if (next) arm_timer(*next);
  }

  // --- completions ---

  void complete_ready(bool defer) {
    while (!ready_.empty()) {
      std::vector<std::pair<pending_command*, result<reply>>> batch;
      batch.swap(ready_);
      for (auto& [op, outcome] : batch) {
        op->complete(std::move(outcome), defer);
        op->release();
      }
      batch.clear();
      if (ready_.empty()) ready_.swap(batch); // keep the capacity
    }
  }

  // A command of our own (AUTH, SELECT): a refusal closes the connection.
  void send_internal(std::initializer_list<std::string_view> args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    for (auto a : args) {
      argv.push_back(a.data());
      lengths.push_back(a.size());
    }
    std::weak_ptr<connection> weak = weak_from_this();
    sending_internal_ = true;
    submit(static_cast<int>(argv.size()), argv.data(), lengths.data(), [weak](result<reply> r) {
      auto self = weak.lock();
      if (!r && self && r.error() != bulwark::errc::timeout && r.error() != bulwark::errc::unavailable) {
        self->last_failure_ = r.error().message();
        self->close(redis_errc::auth_failed);
      }
    });
    sending_internal_ = false;
  }

  asio::any_io_executor executor_;
  connection_options options_;
  redisAsyncContext* ctx_ = nullptr;
  std::optional<asio::posix::stream_descriptor> descriptor_;
  std::deque<pending_command*> pending_;
  std::string command_buffer_;
  std::vector<std::pair<pending_command*, result<reply>>> ready_;
  asio::steady_timer timer_;
  steady::time_point timer_at_{};
  steady::time_point connect_deadline_{};
  steady::time_point retry_at_{};
  steady::time_point batch_now_{};
  std::optional<redis_errc> close_reason_;
  std::optional<bulwark::error> refused_;
  std::string last_failure_;
  std::minstd_rand rng_;
  connection_statistics stats_;
  unsigned attempts_ = 0;
  std::uint64_t generation_ = 0;
  std::uint64_t timer_token_ = 0;
  bool connected_ = false;
  bool want_read_ = false;
  bool want_write_ = false;
  bool read_waiting_ = false;
  bool write_waiting_ = false;
  bool flush_posted_ = false;
  bool in_read_ = false;
  bool in_write_ = false;
  bool write_again_ = false;
  bool timer_armed_ = false;
  bool sending_internal_ = false;
  bool stopping_ = false;
  bool stopped_ = false;
};

} // namespace bulwark::redis::detail
