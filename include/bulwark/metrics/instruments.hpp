#pragma once
// The three instruments: counter, gauge, histogram. Updates are lock-free atomic operations
// (relaxed: metrics order nothing), so they are safe and cheap on any thread.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace bulwark::metrics {

/// A value that only goes up (requests served, errors seen).
class counter {
public:
  /// Adds `v` (must be >= 0).
  void inc(double v = 1.0) noexcept { value_.fetch_add(v, std::memory_order_relaxed); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<double> value_{0.0};
};

/// A value that goes up and down (open connections, queue depth).
class gauge {
public:
  void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void add(double v) noexcept { value_.fetch_add(v, std::memory_order_relaxed); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<double> value_{0.0};
};

/// Bucket upper bounds for request latencies in seconds, 1 ms to 10 s.
inline std::vector<double> default_latency_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

/// Observations counted into fixed buckets (upper bounds, ascending) plus their sum.
class histogram {
public:
  explicit histogram(std::shared_ptr<const std::vector<double>> bounds)
      : bounds_(std::move(bounds)), counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_->size() + 1)) {}

  /// Counts `v` into the first bucket whose bound is >= v (the +Inf bucket when none is).
  void observe(double v) noexcept {
    const auto& b = *bounds_;
    const auto i = static_cast<std::size_t>(std::lower_bound(b.begin(), b.end(), v) - b.begin());
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
  }

  const std::vector<double>& bounds() const noexcept { return *bounds_; }
  /// Observations in bucket i alone (not cumulative); i == bounds().size() is +Inf.
  std::uint64_t bucket_count(std::size_t i) const noexcept { return counts_[i].load(std::memory_order_relaxed); }
  double sum() const noexcept { return sum_.load(std::memory_order_relaxed); }
  std::uint64_t count() const noexcept {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i <= bounds_->size(); ++i) n += bucket_count(i);
    return n;
  }

private:
  std::shared_ptr<const std::vector<double>> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
  std::atomic<double> sum_{0.0};
};

} // namespace bulwark::metrics
