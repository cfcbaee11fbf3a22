#pragma once
// detail::when_all: runs tasks concurrently on the caller's executor and completes once every
// one of them has, with their results in order. What lets one coroutine keep many I/O calls in
// flight together (commands on one Redis connection join one pipeline; publishes share one
// producer batch). The caller's cancellation is forwarded to every task; when_all still waits
// for all of them to end, so nothing they reference dies under them. An exception escaping a
// task is rethrown once all have ended.

#include <bulwark/detail/notifier.hpp>
#include <bulwark/result.hpp>

#include <asio/async_result.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

namespace bulwark::detail {

/// Runs `tasks` concurrently on the calling coroutine's executor (which must not run two
/// handlers at once: a strand or a one-thread io_context); their results, in order. Cost: one
/// coroutine spawn per task.
template <class T> asio::awaitable<std::vector<result<T>>> when_all(std::vector<task<T>> tasks) {
  struct state {
    std::vector<std::optional<result<T>>> results;
    std::vector<std::unique_ptr<asio::cancellation_signal>> signals;
    std::exception_ptr thrown;
    std::size_t left = 0;
    notifier all_ended; // raised by the last task to end
  };
  auto ex = co_await asio::this_coro::executor;
  auto st = std::make_shared<state>();
  st->results.resize(tasks.size());
  st->left = tasks.size();
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    st->signals.push_back(std::make_unique<asio::cancellation_signal>());
    auto run = [](task<T> t, std::optional<result<T>>* into) -> asio::awaitable<void> {
      into->emplace(co_await std::move(t));
    };
    asio::co_spawn(ex, run(std::move(tasks[i]), &st->results[i]),
                   asio::bind_cancellation_slot(st->signals[i]->slot(), [st](std::exception_ptr e) {
                     if (e && !st->thrown) st->thrown = e;
                     if (--st->left == 0) st->all_ended.notify();
                   }));
  }
  auto cs = co_await asio::this_coro::cancellation_state;
  auto forward = cs.slot();
  if (forward.is_connected())
    forward.assign([st](asio::cancellation_type type) {
      for (auto& s : st->signals) s->emit(type);
    });
  while (st->left > 0) co_await st->all_ended.async_wait(asio::use_awaitable);
  if (forward.is_connected()) forward.clear();
  if (st->thrown) std::rethrow_exception(st->thrown);
  std::vector<result<T>> out;
  out.reserve(st->results.size());
  for (auto& r : st->results) {
    if (!r) throw std::logic_error("when_all: resumed before a task ended");
    out.push_back(std::move(*r));
  }
  co_return out;
}

} // namespace bulwark::detail
