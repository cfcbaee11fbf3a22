#include <bulwark/detail/atomic_mutex.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace {

using bulwark::detail::atomic_mutex;

// Each increment reads, yields and writes back: without mutual exclusion the threads' updates
// interleave and some are lost (and TSan reports the race); with it the total is exact. The
// yield inside the critical section makes the others find the mutex held, so they take the
// contended path (sleep in wait, woken by unlock) many times.
TEST(atomic_mutex, excludes_and_wakes_every_waiter) {
  atomic_mutex m;
  long counter = 0;
  constexpr int threads = 4, rounds = 5'000;
  std::atomic<int> ready{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      ready.fetch_add(1);
      while (ready.load() < threads) std::this_thread::yield();
      for (int i = 0; i < rounds; ++i) {
        std::lock_guard lock(m);
        const long seen = counter;
        std::this_thread::yield();
        counter = seen + 1;
      }
    });
  }
  for (auto& w : workers) w.join();
  EXPECT_EQ(counter, long{threads} * rounds);
}

TEST(atomic_mutex, try_lock_fails_while_another_thread_holds_it) {
  atomic_mutex m;
  m.lock();
  bool taken = true;
  std::thread([&] { taken = m.try_lock(); }).join();
  EXPECT_FALSE(taken);
  m.unlock();
  std::thread([&] {
    taken = m.try_lock();
    if (taken) m.unlock();
  }).join();
  EXPECT_TRUE(taken);
}

// A waiter that found the mutex held gets it once the holder unlocks (the holder's unlock must
// wake it: a lost wake-up hangs here until the test's timeout).
TEST(atomic_mutex, a_blocked_locker_gets_it_after_unlock) {
  atomic_mutex m;
  std::atomic<bool> attempting{false}, acquired{false};
  m.lock();
  std::thread waiter([&] {
    attempting = true;
    std::lock_guard lock(m);
    acquired = true;
  });
  while (!attempting) std::this_thread::yield();
  EXPECT_FALSE(acquired.load());
  m.unlock();
  waiter.join();
  EXPECT_TRUE(acquired.load());
}

} // namespace
