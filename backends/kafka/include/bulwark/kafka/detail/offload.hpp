#pragma once
// Private: completion plumbing between librdkafka's threads and the caller's executor.

#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/use_awaitable.hpp>

#include <thread>
#include <type_traits>
#include <utility>

namespace bulwark::kafka::detail {

/// The handler's associated executor, holding its context's work count until released: a
/// coroutine waiting for a librdkafka callback is not "no work" to io_context::run().
template <class Handler> auto tracked_executor(const Handler& handler) {
  return asio::prefer(asio::get_associated_executor(handler), asio::execution::outstanding_work.tracked);
}

/// The executor a completion for `handler` is posted to, holding its context's work count where
/// nothing else does: a coroutine waiting for a librdkafka callback is not "no work" to
/// io_context::run(). A use_awaitable handler's coroutine was started by co_spawn, whose entry
/// point holds that count on this very executor for the coroutine's whole life (Asio's
/// co_spawn_entry_point, `spawn_work`), so its operations take none of their own: a count per
/// operation is two atomic updates (and a type-erased executor's destruction) per publish.
template <class Handler> asio::any_io_executor completion_executor(const Handler& handler) {
  return tracked_executor(handler);
}
template <class Executor, class... T>
asio::any_io_executor completion_executor(const asio::detail::awaitable_handler<Executor, T...>& handler) {
  return handler.get_executor();
}

/// Invokes `handler(value)` on the handler's own executor (never inline on the calling thread).
template <class Executor, class Handler, class Value>
void post_result(const Executor& work, Handler&& handler, Value&& value) {
  asio::post(work, [h = std::forward<Handler>(handler), v = std::forward<Value>(value)]() mutable {
    std::move(h)(std::move(v));
  });
}

/// Runs the blocking `f` on a thread of its own and resumes the awaiting coroutine on its
/// executor with f's result. For rare, bounded calls (admin requests): one thread per call.
/// `f` must own (or share) everything it touches.
template <class F> asio::awaitable<std::invoke_result_t<F&>> offload(F f) {
  using value_type = std::invoke_result_t<F&>;
  // Named, not a temporary inside the co_await expression: GCC 12 destroys some temporaries
  // of a co_await full-expression twice.
  auto initiation = [f = std::move(f)](auto handler) mutable {
    auto work = tracked_executor(handler);
    std::thread([f = std::move(f), handler = std::move(handler), work]() mutable {
      post_result(work, std::move(handler), f());
    }).detach();
  };
  auto op =
      asio::async_initiate<decltype(asio::use_awaitable), void(value_type)>(std::move(initiation), asio::use_awaitable);
  co_return co_await std::move(op);
}

} // namespace bulwark::kafka::detail
