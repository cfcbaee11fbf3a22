// bulwark::app: options from flags or the environment, block_on, and io_threads' two ways out.
#include <bulwark/app.hpp>
#include <bulwark/result.hpp>

#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <thread>

using namespace std::chrono_literals;

namespace {

// Destroys *threads on another thread; fails (and aborts, rather than hang the suite) if that
// takes longer than `limit`.
void destroy_within(std::unique_ptr<bulwark::app::io_threads> threads, std::chrono::seconds limit) {
  auto done = std::async(std::launch::async, [t = std::move(threads)]() mutable { t.reset(); });
  if (done.wait_for(limit) != std::future_status::ready) {
    ADD_FAILURE() << "io_threads' destructor did not return within " << limit.count() << " s";
    std::abort();
  }
}

TEST(app, option_prefers_the_flag_then_the_environment_then_the_fallback) {
  char prog[] = "svc", flag[] = "--port", value[] = "9000", other[] = "--other";
  char* with_flag[] = {prog, flag, value};
  char* without[] = {prog, other};
  ::setenv("BULWARK_TEST_APP_PORT", "8000", 1);
  EXPECT_EQ(bulwark::app::option(3, with_flag, "--port", "BULWARK_TEST_APP_PORT", "7000"), "9000");
  EXPECT_EQ(bulwark::app::option(2, without, "--port", "BULWARK_TEST_APP_PORT", "7000"), "8000");
  ::unsetenv("BULWARK_TEST_APP_PORT");
  EXPECT_EQ(bulwark::app::option(2, without, "--port", "BULWARK_TEST_APP_PORT", "7000"), "7000");
  char* flag_last[] = {prog, flag}; // a flag without its value is not taken
  EXPECT_EQ(bulwark::app::option(2, flag_last, "--port", "BULWARK_TEST_APP_PORT", "7000"), "7000");
}

TEST(app, block_on_returns_what_the_coroutine_returns_on_the_io_threads) {
  bulwark::app::io_threads io(2);
  auto value = bulwark::app::block_on(io.executor(), []() -> bulwark::task<int> { co_return 42; }());
  ASSERT_TRUE(value.has_value());
  EXPECT_EQ(value.value(), 42);
  std::atomic<bool> ran{false};
  bulwark::app::block_on(io.executor(), [&]() -> asio::awaitable<void> {
    ran = true;
    co_return;
  }());
  EXPECT_TRUE(ran);
}

TEST(app, io_threads_finish_the_work_in_hand_before_they_end) {
  auto io = std::make_unique<bulwark::app::io_threads>(1);
  std::atomic<int> steps{0};
  auto ex = io->executor();
  // A chain of 100 posts, each posting the next: all of it runs before the destructor returns.
  auto next = std::make_shared<std::function<void()>>();
  *next = [&steps, ex, next]() mutable {
    if (++steps < 100)
      asio::post(ex, *next);
    else
      *next = nullptr; // breaks the cycle
  };
  asio::post(ex, *next);
  destroy_within(std::move(io), 10s);
  EXPECT_EQ(steps.load(), 100);
}

TEST(app, io_threads_that_stop_the_loop_leave_an_idle_wait_behind) {
  auto io = std::make_unique<bulwark::app::io_threads>(2, bulwark::app::io_threads::at_exit::stop_loop);
  std::atomic<bool> waiting{false};
  asio::co_spawn(
      io->executor(),
      [&waiting]() -> asio::awaitable<void> {
        asio::steady_timer idle(co_await asio::this_coro::executor, 1h); // an idle connection's read, say
        waiting = true;
        co_await idle.async_wait(asio::use_awaitable);
      },
      asio::detached);
  while (!waiting) std::this_thread::yield();
  destroy_within(std::move(io), 10s); // finish_work would wait the hour
}

} // namespace
