#pragma once
// detail::load_once<T>: concurrent loads of one key share one execution and its result, with the
// interface of resilience/singleflight.hpp (part R of issue 11), which write_through switches to
// once that header lands (the alias `write_through::coalescer`); until then this is the one
// implementation. The first caller of a key runs `make` itself; later callers wait (not
// cancellable here: they leave with the leader's result) and get a copy of the result.
// Thread-safe; waiters resume on their own executors.

#include <bulwark/detail/notifier.hpp>
#include <bulwark/result.hpp>

#include <asio/async_result.hpp>
#include <asio/use_awaitable.hpp>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::flows::detail {

template <class T> class load_once {
  struct flight {
    std::optional<result<T>> outcome;
    std::vector<std::function<void()>> waiters;
  };

public:
  /// make()'s result, shared with every concurrent run() for `key`.
  task<T> run(std::string_view key, std::function<task<T>()> make) {
    std::shared_ptr<flight> joined;
    std::string k(key);
    {
      std::lock_guard lock(mutex_);
      auto [it, leader] = flights_.try_emplace(k, nullptr);
      if (leader)
        it->second = std::make_shared<flight>();
      else
        joined = it->second;
    }
    if (joined) {
      co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
          [&](auto handler) {
            auto resume = bulwark::detail::resumer(std::move(handler));
            std::unique_lock lock(mutex_);
            if (joined->outcome) {
              lock.unlock();
              resume();
              return;
            }
            joined->waiters.push_back(std::move(resume));
          },
          asio::use_awaitable);
      co_return *joined->outcome;
    }
    std::optional<result<T>> outcome;
    try {
      outcome.emplace(co_await make());
    } catch (...) {
      outcome.emplace(error(errc::unavailable, "the shared load threw"));
    }
    std::vector<std::function<void()>> waiters;
    {
      std::lock_guard lock(mutex_);
      auto it = flights_.find(k);
      it->second->outcome = *outcome;
      waiters.swap(it->second->waiters);
      flights_.erase(it);
    }
    for (auto& w : waiters) w();
    co_return std::move(*outcome);
  }

private:
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<flight>, std::less<>> flights_;
};

} // namespace bulwark::flows::detail
