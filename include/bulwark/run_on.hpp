#pragma once
// run_on: a task run on another executor (where the client it uses lives: a MySQL pool, a
// Redis client), its result handed back to the caller on the caller's own executor.

#include <bulwark/result.hpp>

#include <asio/co_spawn.hpp>
#include <asio/use_awaitable.hpp>

#include <optional>
#include <utility>

namespace bulwark {

/// Runs `op` on `ex` and resumes the caller on its own executor with op's result. Cost: two
/// hops between threads (a few microseconds). (co_spawn's completion needs a
/// default-constructible value, which result<T> is not, so the value travels in an optional.)
template <class T, class Executor> task<T> run_on(const Executor& ex, task<T> op) {
  auto held = co_await asio::co_spawn(
      ex,
      [](task<T> inner) -> asio::awaitable<std::optional<result<T>>> {
        co_return std::optional<result<T>>(co_await std::move(inner));
      }(std::move(op)),
      asio::use_awaitable);
  co_return std::move(*held);
}

} // namespace bulwark
