#pragma once
// Test helpers: run a coroutine to completion on an io_context, with a deadline.

#include <bulwark/result.hpp>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>

namespace bulwark::test {

/// co_spawn(ex, op, use_future) for any T: asio needs a default-constructible result type for
/// use_future, and result<T> is not one, so the value travels in an optional: `*f.get()`.
template <class T, class Executor> std::future<std::optional<T>> spawn(const Executor& ex, asio::awaitable<T> op) {
  auto wrapped = [](asio::awaitable<T> inner) -> asio::awaitable<std::optional<T>> {
    co_return std::optional<T>(co_await std::move(inner));
  };
  return asio::co_spawn(ex, wrapped(std::move(op)), asio::use_future);
}

/// Spawns `t` on `where` (an executor or an io_context) and stores its result in `*out` when it
/// completes, so a test can poll the context and look; `slot` cancels it. An exception escaping
/// the task is rethrown from the context's run/poll.
template <class T, class Where>
void spawn_into(Where&& where, task<T> t, std::optional<result<T>>* out, asio::cancellation_slot slot = {}) {
  auto store = [](task<T> inner, std::optional<result<T>>* into) -> asio::awaitable<void> {
    into->emplace(co_await std::move(inner));
  };
  asio::co_spawn(where, store(std::move(t), out), asio::bind_cancellation_slot(slot, [](std::exception_ptr e) {
                   if (e) std::rethrow_exception(e);
                 }));
}

/// The value of `f` (a spawn() future), awaited without blocking the executor that runs the
/// spawned coroutine: polls every millisecond.
/// (A coroutine lambda, as in spawn(): a coroutine function template whose frame holds a type
/// from an anonymous namespace trips GCC's -Wsubobject-linkage.)
template <class T> asio::awaitable<T> await_future(std::future<T>& f) {
  return [](std::future<T>* future) -> asio::awaitable<T> {
    asio::steady_timer tick(co_await asio::this_coro::executor);
    while (future->wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      tick.expires_after(std::chrono::milliseconds(1));
      co_await tick.async_wait(asio::use_awaitable);
    }
    co_return future->get();
  }(&f);
}

/// `base` with a random suffix: a topic, group or key no earlier run has used. Thread-safe.
inline std::string unique_name(std::string_view base) {
  static std::mt19937_64 rng(std::random_device{}());
  static std::mutex m;
  std::lock_guard lock(m);
  return std::string(base) + "-" + std::to_string(rng() % 1'000'000'000);
}

/// Runs `op` on `ctx` (driving ctx on this thread) and returns its result. Throws when it has
/// not finished within `limit`, so a hang fails the test instead of the whole run.
template <class T> auto wrap(asio::awaitable<T> inner) {
  if constexpr (std::is_void_v<T>) {
    return inner;
  } else {
    return [](asio::awaitable<T> op) -> asio::awaitable<std::optional<T>> {
      co_return std::optional<T>(co_await std::move(op));
    }(std::move(inner));
  }
}

template <class T>
T run(asio::io_context& ctx, asio::awaitable<T> op, std::chrono::milliseconds limit = std::chrono::seconds(60)) {
  auto future = asio::co_spawn(ctx, wrap(std::move(op)), asio::use_future);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (future.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("test::run: operation timed out");
    if (ctx.stopped()) ctx.restart();
    ctx.run_one_for(std::chrono::milliseconds(10));
  }
  if constexpr (std::is_void_v<T>) {
    future.get();
  } else {
    return std::move(*future.get());
  }
}

/// Polls `done` every 5 ms on the current executor until it holds (true) or `limit` passes
/// (false). For waiting on what other coroutines or threads do, without blocking them.
inline asio::awaitable<bool> eventually(std::function<bool()> done,
                                        std::chrono::milliseconds limit = std::chrono::seconds(60)) {
  asio::steady_timer tick(co_await asio::this_coro::executor);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) co_return false;
    tick.expires_after(std::chrono::milliseconds(5));
    co_await tick.async_wait(asio::use_awaitable);
  }
  co_return true;
}

/// The value of environment variable `name`; when it is missing the test is skipped, or fails
/// when BULWARK_REQUIRE_SERVERS is set (as scripts/test.sh does), so CI never skips silently.
inline std::optional<std::string> server_env(const char* name) {
  if (const char* v = std::getenv(name); v && *v) return std::string(v);
  return std::nullopt;
}

} // namespace bulwark::test

/// Skips (or, under scripts/test.sh, fails) the current test when `var` is not set.
#define BULWARK_REQUIRE_SERVER(var, name)                                                                              \
  auto var##_value = ::bulwark::test::server_env(name);                                                                \
  if (!var##_value) {                                                                                                  \
    if (std::getenv("BULWARK_REQUIRE_SERVERS")) FAIL() << name << " is not set: start the servers first";              \
    GTEST_SKIP() << name << " is not set (scripts/servers.sh up)";                                                     \
  }                                                                                                                    \
  const std::string var = *var##_value

/// Skips (or, under scripts/test.sh, fails) the current test when the external tool at `path`
/// (a CMake find_program result) was not found.
#define BULWARK_REQUIRE_TOOL(path, what)                                                                               \
  if (const std::string bulwark_tool_path_ = (path);                                                                   \
      bulwark_tool_path_.empty() || bulwark_tool_path_.ends_with("NOTFOUND")) {                                        \
    if (std::getenv("BULWARK_REQUIRE_SERVERS")) FAIL() << what << " is not installed (scripts/install-deps.sh)";       \
    GTEST_SKIP() << what << " is not installed";                                                                       \
  }
