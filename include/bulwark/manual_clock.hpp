#pragma once
// manual_clock: a wall clock that moves only when told, for testing TTLs, backoff and breaker
// windows without sleeping. Copies share one time line.

#include <atomic>
#include <chrono>
#include <memory>

namespace bulwark {

class manual_clock {
public:
  using duration = std::chrono::system_clock::duration;
  using time_point = std::chrono::system_clock::time_point;

  explicit manual_clock(time_point start = time_point(std::chrono::hours(24 * 365 * 50)))
      : ticks_(std::make_shared<std::atomic<duration::rep>>(start.time_since_epoch().count())) {}

  time_point now() const noexcept { return time_point(duration(ticks_->load(std::memory_order_acquire))); }
  void advance(duration d) noexcept { ticks_->fetch_add(d.count(), std::memory_order_acq_rel); }
  void set(time_point t) noexcept { ticks_->store(t.time_since_epoch().count(), std::memory_order_release); }

private:
  std::shared_ptr<std::atomic<duration::rep>> ticks_;
};

} // namespace bulwark
