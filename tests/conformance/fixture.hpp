#pragma once
// The fixture every conformance suite derives from: asks the factory whether its backend is
// there (skip, or fail under BULWARK_REQUIRE_SERVERS), makes a fresh model and runs coroutines
// on the factory's io_context.

#include "support/run.hpp"

#include <bulwark/error.hpp>

#include <asio/executor_work_guard.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <utility>
#include <vector>

namespace bulwark::test {

/// How many threads may drive a factory's context() at once: `Factory::context_threads` when
/// the factory declares it (its model and everything the model uses are thread-safe), else 1
/// (a backend whose client is bound to one thread keeps the single-threaded shape).
template <class Factory> constexpr int context_threads() {
  if constexpr (requires { Factory::context_threads; }) {
    return Factory::context_threads > 1 ? static_cast<int>(Factory::context_threads) : 1;
  } else {
    return 1;
  }
}

template <class Factory> class conformance_fixture : public ::testing::Test {
protected:
  void SetUp() override {
    if (!Factory::available()) {
      if (std::getenv("BULWARK_REQUIRE_SERVERS")) FAIL() << "backend not available";
      GTEST_SKIP() << "backend not available";
    }
    model_ = factory_.make();
  }
  template <class T> T run(asio::awaitable<T> op, std::chrono::milliseconds limit = std::chrono::seconds(120)) {
    return test::run(factory_.context(), std::move(op), limit);
  }

  /// Like run(), but drives the context from context_threads<Factory>() threads at once, so
  /// the coroutines `op` spawns on it run in parallel against the model (one thread, as run(),
  /// when the factory does not declare context_threads).
  template <class T>
  T run_threaded(asio::awaitable<T> op, std::chrono::milliseconds limit = std::chrono::seconds(120)) {
    constexpr int threads = context_threads<Factory>();
    if constexpr (threads == 1) {
      return run(std::move(op), limit);
    } else {
      auto& ctx = factory_.context();
      if (ctx.stopped()) ctx.restart();
      // Helpers run handlers until told to leave; work that outlives `op` (a subscription
      // waiting for messages) stays on the context for the next run().
      struct helpers {
        asio::io_context& ctx;
        asio::executor_work_guard<asio::io_context::executor_type> work{ctx.get_executor()};
        std::atomic<bool> leave{false};
        std::vector<std::thread> threads;
        ~helpers() {
          leave = true;
          for (auto& t : threads) t.join();
        }
      } pool{ctx};
      for (int i = 1; i < threads; ++i)
        pool.threads.emplace_back([&pool] {
          while (!pool.leave) pool.ctx.run_one_for(std::chrono::milliseconds(5));
        });
      return run(std::move(op), limit);
    }
  }
  auto& model() { return *model_; }

  /// Errors a backend may return for a while after one of its calls was cancelled (its
  /// connection is re-opened): unavailable, cancelled, timeout.
  static bool transient(const error& e) { return e == errc::unavailable || e == errc::cancelled || e == errc::timeout; }

  /// Runs `make()` (a fresh call per try) until it succeeds or fails with a non-transient
  /// error, riding out transient ones for up to `window` (counted in `transient_errors`).
  template <class Make>
  auto run_settled(Make make, int& transient_errors, std::chrono::milliseconds window = std::chrono::seconds(5)) {
    const auto until = std::chrono::steady_clock::now() + window;
    for (;;) {
      auto r = run(make());
      if (r || !transient(r.error()) || std::chrono::steady_clock::now() > until) return r;
      ++transient_errors;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  Factory factory_;
  decltype(std::declval<Factory&>().make()) model_;
};

} // namespace bulwark::test
