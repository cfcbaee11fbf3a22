#pragma once
// Many store operations of one batch at once: on Redis, the client pipelines the commands started
// in one turn of the event loop, so N operations cost about one round trip instead of N, and a
// batch's gets and puts are one script call (redis::repository::get_batch, put_batch: no command
// line, reply and coroutine per key); on the memory repository, which never waits, a spawn per
// operation would cost more than the operation, so they are awaited one after the other.

#include <bulwark/repository.hpp>
#include <bulwark/result.hpp>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace event_log {

/// A repository whose operations complete without suspending (memory::repository: it also
/// offers them synchronously, get_now and put_now).
template <class Repository>
concept never_waits = requires(const Repository& r, std::string_view key) {
  r.get_now(key);
};

namespace detail {

template <class T> struct joined {
  explicit joined(asio::any_io_executor ex, std::size_t n) : results(n), left(n), done(ex) {
    done.expires_at(asio::steady_timer::time_point::max());
  }
  std::vector<std::optional<bulwark::result<T>>> results;
  std::size_t left;
  std::exception_ptr thrown;
  asio::steady_timer done;
};

template <class T> asio::awaitable<void> run_into(std::shared_ptr<joined<T>> j, std::size_t i, bulwark::task<T> op) {
  j->results[i].emplace(co_await std::move(op));
}

} // namespace detail

/// Runs `ops` and returns their results in order. With a Repository that never waits they run
/// one after the other; otherwise all at once on the caller's executor, which must not run them
/// on two threads at once (a strand or a one-thread io_context: the bus's handlers and real
/// mode's loop are). The call returns only after every op ended, even when the caller is
/// cancelled meanwhile (the ops may use what the caller owns); an op's exception is rethrown
/// then.
template <class Repository, class T>
asio::awaitable<std::vector<bulwark::result<T>>> together(std::vector<bulwark::task<T>> ops) {
  std::vector<bulwark::result<T>> out;
  out.reserve(ops.size());
  if constexpr (never_waits<Repository>) {
    for (auto& op : ops) out.push_back(co_await std::move(op));
  } else {
    if (ops.size() == 1) {
      out.push_back(co_await std::move(ops.front()));
      co_return out;
    }
    // Not thrown out of the wait below by a cancellation of the caller. The setting belongs to
    // the whole coroutine thread (the bus's worker included): restored before returning.
    const bool throws = co_await asio::this_coro::throw_if_cancelled();
    co_await asio::this_coro::throw_if_cancelled(false);
    auto ex = co_await asio::this_coro::executor;
    auto j = std::make_shared<detail::joined<T>>(ex, ops.size());
    for (std::size_t i = 0; i < ops.size(); ++i)
      asio::co_spawn(ex, detail::run_into(j, i, std::move(ops[i])), [j](std::exception_ptr e) {
        if (e && !j->thrown) j->thrown = e;
        if (--j->left == 0) j->done.cancel();
      });
    // co_spawn may run an op to its end before returning, so the count is checked before every
    // wait; the wait is not cancellable (an empty slot), see above.
    while (j->left > 0)
      co_await j->done.async_wait(
          asio::bind_cancellation_slot(asio::cancellation_slot(), asio::experimental::as_tuple(asio::use_awaitable)));
    co_await asio::this_coro::throw_if_cancelled(throws);
    if (j->thrown) std::rethrow_exception(j->thrown);
    for (auto& r : j->results) out.push_back(std::move(*r));
  }
  co_return out;
}

/// A repository that gets and puts many keys in one call (redis::repository: one script per
/// batch, where each get or put alone is a command and a reply, and a coroutine here).
template <class Repository>
concept batches_calls = requires(Repository& r, std::vector<std::string> keys, std::vector<bulwark::batch_put> puts) {
  r.get_batch(std::move(keys));
  r.put_batch(std::move(puts));
};

/// Gets every key at once (see together; one call with batches_calls); one result per key, in
/// order.
template <class Repository> asio::awaitable<std::vector<bulwark::result<std::optional<bulwark::versioned>>>>
get_each(Repository& repo, std::vector<std::string> keys) {
  if constexpr (batches_calls<Repository>) co_return co_await repo.get_batch(std::move(keys));
  std::vector<bulwark::task<std::optional<bulwark::versioned>>> gets;
  gets.reserve(keys.size());
  for (const auto& k : keys) gets.push_back(repo.get(k));
  co_return co_await together<Repository>(std::move(gets)); // `keys` lives until then
}

/// One put of a batch: key, value and the expected version (as repository::put takes them).
using write = bulwark::batch_put;

/// Puts every write at once (see together; one call with batches_calls); one result per
/// write, in order.
template <class Repository> asio::awaitable<std::vector<bulwark::result<bulwark::version_t>>>
put_each(Repository& repo, std::vector<write> writes) {
  if constexpr (batches_calls<Repository>) co_return co_await repo.put_batch(std::move(writes));
  std::vector<bulwark::task<bulwark::version_t>> puts;
  puts.reserve(writes.size());
  for (auto& w : writes) puts.push_back(repo.put(w.key, std::move(w.value), w.expected));
  co_return co_await together<Repository>(std::move(puts)); // `writes` (the keys) lives until then
}

/// Puts every (key, value) unconditionally, at once; the first error.
template <class Repository>
bulwark::task<void> put_all(Repository& repo, std::vector<std::pair<std::string, std::string>> entries) {
  std::vector<write> writes;
  writes.reserve(entries.size());
  for (auto& [key, value] : entries) writes.push_back(write{std::move(key), std::move(value), std::nullopt});
  for (auto& written : co_await put_each(repo, std::move(writes)))
    if (!written) co_return written.error();
  co_return bulwark::ok();
}

} // namespace event_log
