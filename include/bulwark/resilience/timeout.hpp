#pragma once
// with_timeout: bounds any awaitable by a deadline. Asio 1.22 has no cancel_after, so this is
// the one place that builds it: the operation races a steady_timer through the awaitable
// operators; the loser is cancelled through its cancellation slot.
//
// An operation that ignores cancellation still ends the wait at the deadline (its late
// completion is discarded once it arrives), which is why adapters must make their own I/O
// cancellable for the deadline to free resources as well as the caller.

#include <bulwark/result.hpp>

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <string>
#include <variant>

namespace bulwark {

/// The result of `op`, or errc::timeout (detail: `what`) once `limit` has passed.
template <class T>
task<T> with_timeout(task<T> op, std::chrono::steady_clock::duration limit, std::string what = "operation") {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(co_await asio::this_coro::executor, limit);
  auto winner = co_await (std::move(op) || timer.async_wait(asio::use_awaitable));
  if (winner.index() == 0) co_return std::move(std::get<0>(winner));
  co_return error(errc::timeout,
                  what + " timed out after " +
                      std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(limit).count()) + " ms");
}

} // namespace bulwark
