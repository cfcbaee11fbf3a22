#pragma once
// singleflight<T>: concurrent calls for one key share one execution and its result. The read
// path of a cache uses it so that a thousand readers missing one key cost the repository one
// load, not a thousand.
//
// The first call for a key starts the execution (its `make()`) in a coroutine of its own on that
// caller's executor; every call for the key, the first included, then waits for it. When the
// execution ends, each waiter gets a copy of its result (an exception it threw is rethrown in
// each waiter, and so is a copy's own exception in the waiter it was for) and the key is
// forgotten, so the next call runs again: results are shared, never cached.
// When starting the execution fails (its spawn throws, an allocation fails), that exception is
// rethrown in each waiter and the key is forgotten too: no later caller waits on an execution
// that never runs.
//
// A waiter whose caller is cancelled (a deadline, a closed connection) leaves at once with
// errc::cancelled; the execution runs on for the others, and when every waiter has left it still
// runs to its end (its result then goes nowhere): cancelling one reader must not fail the
// others, and an execution that honours no cancellation could not be stopped anyway. Bound
// each call with with_timeout / with_deadline; bound `make()`'s work inside it the same way.
//
// Cost: one mutex, one map lookup, and one allocation for the waiter per call; one coroutine and
// one map entry per execution. Waiters resume on their own executors (posted).
//
// Thread-safe: callers may be on any threads and executors. The singleflight may be destroyed
// while executions are running (they keep its state alive).

#include <bulwark/error.hpp>
#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <cstddef>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace bulwark {

template <class T> class singleflight {
public:
  singleflight() : core_(std::make_shared<core>()) {}
  singleflight(const singleflight&) = delete;
  singleflight& operator=(const singleflight&) = delete;

  /// The result of the execution for `key`: joins the one in flight, or starts `make()` (on this
  /// caller's executor) when there is none. Errors: errc::cancelled when this caller is
  /// cancelled while waiting (the execution goes on for the others); otherwise what the
  /// execution returned, copied. `make` is called only when this call starts the execution.
  task<T> run(std::string_view key, std::function<task<T>()> make) {
    // The key is copied before the coroutine starts: a task runs when awaited, perhaps after the
    // caller's string is gone.
    return run_owned(std::string(key), std::move(make));
  }

  /// Keys whose execution is running now.
  std::size_t in_flight() const {
    std::lock_guard lock(core_->mutex);
    return core_->flights.size();
  }

  /// Callers waiting now for the execution of `key` (0 when none runs).
  std::size_t waiters(std::string_view key) const {
    std::lock_guard lock(core_->mutex);
    auto it = core_->flights.find(std::string(key));
    return it == core_->flights.end() ? 0 : it->second->waiters.size();
  }

private:
  task<T> run_owned(std::string key, std::function<task<T>()> make) {
    auto ex = co_await asio::this_coro::executor;
    std::shared_ptr<waiter> joined;
    co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [&](auto handler) { join(std::move(handler), key, make, ex, joined); }, asio::use_awaitable);
    std::unique_lock lock(core_->mutex);
    if (joined->failure) {
      auto failure = joined->failure;
      lock.unlock();
      std::rethrow_exception(failure);
    }
    if (joined->outcome) co_return std::move(*joined->outcome);
    co_return error(errc::cancelled, "cancelled while waiting for a shared execution");
  }

  struct flight;

  // One caller waiting for a flight. Settled once, under core::mutex: given the outcome (or the
  // failure), or cancelled.
  struct waiter {
    virtual ~waiter() = default;
    virtual void resume() noexcept = 0;
    bool settled = false;
    std::optional<result<T>> outcome;
    std::exception_ptr failure;
    std::shared_ptr<flight> in;                                    // while pending
    typename std::list<std::shared_ptr<waiter>>::iterator place{}; // in in->waiters
  };

  template <class Handler> struct waiter_for final : waiter {
    waiter_for(Handler h, asio::any_io_executor w) : handler(std::move(h)), work(std::move(w)) {}
    void resume() noexcept override {
      auto ex = std::move(work);
      asio::post(ex, [h = std::move(handler)]() mutable { std::move(h)(); });
    }
    Handler handler;
    asio::any_io_executor work; // the caller's executor, tracking work while it waits
  };

  struct flight {
    std::list<std::shared_ptr<waiter>> waiters;
  };

  struct core {
    mutable std::mutex mutex;
    std::unordered_map<std::string, std::shared_ptr<flight>> flights;
  };

  struct cancel_wait {
    std::shared_ptr<core> owner;
    std::shared_ptr<waiter> w;
    void operator()(asio::cancellation_type type) {
      if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial |
                   asio::cancellation_type::total)) == asio::cancellation_type::none)
        return;
      {
        std::lock_guard lock(owner->mutex);
        if (w->settled) return;
        w->settled = true;
        w->in->waiters.erase(w->place);
        w->in.reset();
      }
      w->resume();
    }
  };

  // Registers the caller as a waiter of the flight for `key` (in `joined`), starting the flight
  // if needed. Everything of the caller's coroutine (`joined`, its cancellation slot) is set
  // before the waiter is listed: from then on the flight may end on another thread and resume
  // the coroutine there (on an executor run by several threads) while this still runs. No
  // cancellation reaches the handler before it is listed: Asio emits one on the caller's
  // executor, never during this initiation.
  template <class Handler> void join(Handler handler, std::string_view key, std::function<task<T>()>& make,
                                     const asio::any_io_executor& fallback, std::shared_ptr<waiter>& joined) {
    asio::any_io_executor ex = asio::get_associated_executor(handler, fallback);
    auto slot = asio::get_associated_cancellation_slot(handler);
    std::shared_ptr<waiter> w = std::make_shared<waiter_for<Handler>>(
        std::move(handler), asio::prefer(ex, asio::execution::outstanding_work.tracked));
    joined = w;
    if (slot.is_connected()) slot.template emplace<cancel_wait>(cancel_wait{core_, w});
    // Everything that may throw (allocations, the spawn) is inside the try: a key left in the map
    // with no flight running would make every later caller for it wait forever. On a throw the
    // flight this call started is ended with that exception (its waiters, this caller and any that
    // joined meanwhile, get it rethrown), or this caller alone gets it when it was not listed.
    std::shared_ptr<flight> started;
    try {
      std::list<std::shared_ptr<waiter>> entry{w}; // allocated outside the lock, listed by splice
      std::string map_key(key);
      {
        std::lock_guard lock(core_->mutex);
        auto [it, fresh] = core_->flights.try_emplace(std::move(map_key));
        if (fresh) {
          try {
            it->second = std::make_shared<flight>();
          } catch (...) {
            core_->flights.erase(it);
            throw;
          }
          started = it->second;
        }
        w->in = it->second;
        w->place = entry.begin();
        w->in->waiters.splice(w->in->waiters.end(), entry); // cannot throw: listed from here on
      }
      // Detached, with no cancellation slot: no caller's cancellation reaches the shared work.
      if (started) asio::co_spawn(fallback, execute(core_, started, std::string(key), std::move(make)), asio::detached);
    } catch (...) {
      if (started) {
        std::optional<result<T>> none;
        finish(core_, started, nullptr, none, std::current_exception());
      } else {
        {
          std::lock_guard lock(core_->mutex);
          w->settled = true;
        }
        w->failure = std::current_exception();
        w->resume();
      }
    }
  }

  static asio::awaitable<void> execute(std::shared_ptr<core> owner, std::shared_ptr<flight> f, std::string key,
                                       std::function<task<T>()> make) {
    std::optional<result<T>> outcome;
    std::exception_ptr failure;
    try {
      outcome.emplace(co_await make());
    } catch (...) {
      failure = std::current_exception();
    }
    finish(owner, f, &key, outcome, failure);
  }

  // Ends flight `f`: forgets its key (found by `key`, or by a search for `f` when null: no
  // allocation on the failure path) and resumes every waiter with a copy of `outcome`, or with
  // `failure` when set. Idempotent: a second call finds no waiters left.
  static void finish(const std::shared_ptr<core>& owner, const std::shared_ptr<flight>& f, const std::string* key,
                     std::optional<result<T>>& outcome, std::exception_ptr failure) noexcept {
    std::list<std::shared_ptr<waiter>> done;
    {
      std::lock_guard lock(owner->mutex);
      auto it = key ? owner->flights.find(*key) : owner->flights.begin();
      if (!key)
        while (it != owner->flights.end() && it->second != f) ++it;
      if (it != owner->flights.end() && it->second == f) owner->flights.erase(it);
      done.swap(f->waiters);
      for (auto& w : done) {
        w->settled = true;
        w->in.reset();
      }
    }
    // Settled, so nobody else touches these waiters until they resume: the copies are made
    // outside the lock (a copy may be long), and a copy that throws becomes that waiter's
    // exception instead of leaving the execution with the other waiters never resumed.
    for (auto& w : done) {
      if (failure) {
        w->failure = failure;
      } else {
        try {
          w->outcome = *outcome;
        } catch (...) {
          w->failure = std::current_exception();
        }
      }
      w->resume();
    }
  }

  std::shared_ptr<core> core_;
};

} // namespace bulwark
