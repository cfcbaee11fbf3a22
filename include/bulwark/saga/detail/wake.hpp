#pragma once
// detail::wake: a wait on the clock until a time point that another party can end early (a
// reply arrived, a saga finished), and that the waiting coroutine's own cancellation ends too.
// One clock wait, no extra timer: the wake-up is a cancellation of that wait.
//
// Use from one executor (a strand or a one-thread context): the waker posts the wake-up there,
// so it cannot slip between the waiter's check of `woken` and the start of its wait.

#include <bulwark/clock.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/cancellation_state.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <memory>

namespace bulwark::saga::detail {

class wake : public std::enable_shared_from_this<wake> {
public:
  explicit wake(asio::any_io_executor ex) : ex_(std::move(ex)) {}

  /// Ends the wait (now or, if it has not begun, as soon as it begins). Any thread; the caller
  /// sets what the waiter will read under its own lock first.
  void notify() {
    asio::post(ex_, [self = shared_from_this()] {
      self->woken_ = true;
      self->signal_.emit(asio::cancellation_type::terminal);
    });
  }

  /// Waits until `at`, a notify(), or the caller's cancellation. True when `at` was reached.
  asio::awaitable<bool> wait_until(const bulwark::clock& clock, bulwark::clock::time_point at) {
    auto state = co_await asio::this_coro::cancellation_state;
    if (woken_ || state.cancelled() != asio::cancellation_type::none) co_return false;
    // The caller's cancellation reaches the wait through this forwarder (a coroutine spawned
    // without a cancellation slot has none to forward).
    auto forward = state.slot();
    if (forward.is_connected()) forward.assign([this](asio::cancellation_type type) { signal_.emit(type); });
    const bool reached =
        co_await clock.async_wait_until(ex_, at, asio::bind_cancellation_slot(signal_.slot(), asio::use_awaitable));
    if (forward.is_connected()) forward.clear();
    co_return reached;
  }

private:
  asio::any_io_executor ex_;
  asio::cancellation_signal signal_;
  bool woken_ = false; // only touched on ex_
};

} // namespace bulwark::saga::detail
