#pragma once
// atomic_mutex: a mutex for short critical sections on the hot paths (memory::cache's shards,
// write_through's entries), whose uncontended lock and unlock are inline: one compare-and-swap
// and one exchange, where std::mutex calls into libpthread (pthread_mutex_lock and
// pthread_mutex_unlock: ~50 instructions a pair with their calls and type dispatch). A waiter
// sleeps in std::atomic::wait (a futex on Linux); there is no spinning, as with std::mutex.
// The three-state protocol of Drepper's "Futexes Are Tricky" (mutex 2): 0 unlocked, 1 locked, 2 contended (locked
// and maybe waited for), so an unlock wakes a waiter only when there may be one.
// Lockable: std::lock_guard and std::unique_lock take it. Not recursive, no timed lock.

#include <atomic>

namespace bulwark::detail {

class atomic_mutex {
public:
  atomic_mutex() = default;
  atomic_mutex(const atomic_mutex&) = delete;
  atomic_mutex& operator=(const atomic_mutex&) = delete;

  void lock() noexcept {
    int expected = unlocked;
    if (state_.compare_exchange_strong(expected, locked, std::memory_order_acquire, std::memory_order_relaxed))
        [[likely]]
      return;
    lock_contended(expected);
  }

  bool try_lock() noexcept {
    int expected = unlocked;
    return state_.compare_exchange_strong(expected, locked, std::memory_order_acquire, std::memory_order_relaxed);
  }

  void unlock() noexcept {
    if (state_.exchange(unlocked, std::memory_order_release) == contended) [[unlikely]]
      state_.notify_one();
  }

private:
  static constexpr int unlocked = 0, locked = 1, contended = 2;

  // `seen`: the state the first compare-and-swap found (locked or contended).
  void lock_contended(int seen) noexcept {
    if (seen != contended) seen = state_.exchange(contended, std::memory_order_acquire);
    while (seen != unlocked) {
      state_.wait(contended, std::memory_order_relaxed);
      seen = state_.exchange(contended, std::memory_order_acquire);
    }
  }

  std::atomic<int> state_{unlocked};
};

} // namespace bulwark::detail
