#pragma once
// Small pieces every service's main() needs: options from flags or the environment, and
// waiting for SIGINT/SIGTERM so that the service can stop gracefully.

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/use_future.hpp>

#include <csignal>
#include <cstdlib>
#include <optional>
#include <pthread.h>
#include <string>
#include <string_view>
#include <type_traits>

namespace bulwark::app {

/// The value of `--flag value` on the command line, else of environment variable `env`, else
/// `fallback`.
inline std::string option(int argc, char** argv, std::string_view flag, const char* env, std::string fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == flag) return argv[i + 1];
  if (const char* v = std::getenv(env); v && *v) return v;
  return fallback;
}

/// Runs `op` on `executor` and blocks the calling thread until it completes; for main() and
/// other code outside coroutines. Another thread must be running the executor's context.
/// (asio's use_future needs a default-constructible value, which result<T> is not, so the value
/// travels in an optional.)
template <class Executor, class T> T block_on(const Executor& executor, asio::awaitable<T> op) {
  if constexpr (std::is_void_v<T>) {
    asio::co_spawn(executor, std::move(op), asio::use_future).get();
  } else {
    auto wrapped = [](asio::awaitable<T> inner) -> asio::awaitable<std::optional<T>> {
      co_return std::optional<T>(co_await std::move(inner));
    };
    return std::move(*asio::co_spawn(executor, wrapped(std::move(op)), asio::use_future).get());
  }
}

/// Blocks SIGINT and SIGTERM in this thread and in every thread started after it (construct it
/// before starting servers), so that wait() is the only place that sees them.
class stop_signals {
public:
  stop_signals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  /// Returns the signal that arrived.
  int wait() {
    int sig = 0;
    sigwait(&set_, &sig);
    return sig;
  }

private:
  sigset_t set_{};
};

} // namespace bulwark::app
