#include <bulwark/memory/repository.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <iostream>

int main() {
  asio::io_context ctx;
  bulwark::memory::repository repo;
  int status = 1;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        auto v = co_await repo.put("hello", "world", bulwark::no_version);
        auto got = co_await repo.get("hello");
        if (v && got && got.value() && got.value()->value == "world") status = 0;
      },
      asio::detached);
  ctx.run();
  std::cout << (status == 0 ? "consumer: ok" : "consumer: FAILED") << '\n';
  return status;
}
