#pragma once
// Small pieces every service's main() needs: options from flags or the environment, an
// io_context on threads of its own, and waiting for SIGINT/SIGTERM so that the service can stop
// gracefully.

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>

#include <csignal>
#include <cstdlib>
#include <optional>
#include <pthread.h>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

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

/// An io_context run by threads of its own until destruction: the home of a service's backends
/// and bus (their clients belong to one executor), with main() blocking on it through block_on.
/// At destruction the threads either finish the work in hand (`finish_work`: every coroutine
/// runs to its end, so everything on it must have been stopped first) or leave it (`stop_loop`:
/// for a loop that idle client connections would keep running).
class io_threads {
public:
  enum class at_exit { finish_work, stop_loop };

  explicit io_threads(std::size_t threads = 1, at_exit exit = at_exit::finish_work)
      : exit_(exit), work_(asio::make_work_guard(ctx_)) {
    for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { ctx_.run(); });
  }
  ~io_threads() {
    work_.reset();
    if (exit_ == at_exit::stop_loop) ctx_.stop();
    for (auto& t : threads_) t.join();
  }
  io_threads(const io_threads&) = delete;
  io_threads& operator=(const io_threads&) = delete;

  asio::any_io_executor executor() { return ctx_.get_executor(); }

private:
  at_exit exit_;
  asio::io_context ctx_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
};

} // namespace bulwark::app
