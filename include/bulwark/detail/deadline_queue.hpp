#pragma once
// The machinery under bulwark::clock: deadline entries, the queue that orders them, and the two
// time lines that fire them (a manual one that tests move, and one per execution context that a
// single steady_timer drives for every deadline on that context).
//
// Why one timer per context: arming and cancelling an asio::steady_timer per bounded call costs
// a timerfd_settime and an epoll round trip each time (6-8 us per with_timeout on this machine).
// Here a deadline later than the armed one touches no kernel timer, a finished operation removes
// its entry in O(log n) (O(1) when it is the newest, the common case), and the timer re-arms to
// the next live entry when it fires. Memory is the peak number of live entries, not the rate.

#include <asio/any_io_executor.hpp>
#include <asio/execution/context.hpp>
#include <asio/execution_context.hpp>
#include <asio/post.hpp>
#include <asio/query.hpp>
#include <asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace bulwark::detail {

/// One registration in a deadline_queue: a time and what to do when it is reached. Reference
/// counted: the queue, the waiter and a cancellation slot each may be the last to let go.
class deadline_entry {
public:
  using time_point = std::chrono::steady_clock::time_point;

  deadline_entry() = default;
  deadline_entry(const deadline_entry&) = delete;
  deadline_entry& operator=(const deadline_entry&) = delete;

  /// Runs once, outside every lock, when its time was reached while it was queued. Must not
  /// block and must not resume anyone inline: it posts to the executors it serves.
  virtual void expire() noexcept = 0;

  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

protected:
  virtual ~deadline_entry() = default;

private:
  friend class deadline_queue;
  static constexpr std::size_t not_queued = std::numeric_limits<std::size_t>::max();

  std::atomic<std::uint32_t> refs_{1};
  time_point at_{};
  std::size_t slot_ = not_queued;
};

/// A reference to a deadline_entry (retain on copy, release on destruction).
template <class Entry> class entry_ref {
public:
  struct adopt_t {};
  static constexpr adopt_t adopt{};

  entry_ref() = default;
  /// Takes over a reference the caller holds (a new entry's first one): no atomic operation.
  entry_ref(Entry* e, adopt_t) noexcept : e_(e) {}
  explicit entry_ref(Entry* e) noexcept : e_(e) {
    if (e_) e_->retain();
  }
  entry_ref(const entry_ref& o) noexcept : entry_ref(o.e_) {}
  entry_ref(entry_ref&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
  entry_ref& operator=(entry_ref o) noexcept {
    std::swap(e_, o.e_);
    return *this;
  }
  ~entry_ref() {
    if (e_) e_->release();
  }
  Entry* operator->() const noexcept { return e_; }
  Entry& operator*() const noexcept { return *e_; }
  Entry* get() const noexcept { return e_; }

private:
  Entry* e_ = nullptr;
};

/// A binary min-heap of entries by time, each entry knowing its slot so that it can be removed
/// from the middle. Not synchronised: its owner locks. Holds one reference per queued entry.
class deadline_queue {
public:
  using time_point = deadline_entry::time_point;

  /// Queues `e` (not queued yet) at `at`. True when it became the earliest entry.
  bool push(deadline_entry& e, time_point at) {
    e.at_ = at;
    e.retain();
    heap_.push_back(&e);
    sift_up(heap_.size() - 1);
    return e.slot_ == 0;
  }

  /// Removes `e` if it is still queued, handing the queue's reference to the caller (who must
  /// release it, preferably outside the lock). False: it already expired or is expiring.
  bool erase(deadline_entry& e) noexcept {
    if (e.slot_ == deadline_entry::not_queued) return false;
    remove_at(e.slot_);
    return true;
  }

  /// Moves every entry due at `now` to `due`, earliest first; the references go with them.
  void pop_due(time_point now, std::vector<deadline_entry*>& due) {
    while (!heap_.empty() && heap_.front()->at_ <= now) {
      due.push_back(heap_.front());
      remove_at(0);
    }
  }

  /// Moves every entry to `out` (used at shutdown); the references go with them.
  void clear(std::vector<deadline_entry*>& out) {
    for (auto* e : heap_) {
      e->slot_ = deadline_entry::not_queued;
      out.push_back(e);
    }
    heap_.clear();
  }

  bool empty() const noexcept { return heap_.empty(); }
  time_point earliest() const noexcept { return heap_.front()->at_; }

private:
  void place(std::size_t i, deadline_entry* e) noexcept {
    heap_[i] = e;
    e->slot_ = i;
  }
  void sift_up(std::size_t i) noexcept {
    auto* e = heap_[i];
    while (i > 0) {
      const std::size_t parent = (i - 1) / 2;
      if (!(e->at_ < heap_[parent]->at_)) break;
      place(i, heap_[parent]);
      i = parent;
    }
    place(i, e);
  }
  void sift_down(std::size_t i) noexcept {
    auto* e = heap_[i];
    const std::size_t n = heap_.size();
    for (;;) {
      std::size_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && heap_[child + 1]->at_ < heap_[child]->at_) ++child;
      if (!(heap_[child]->at_ < e->at_)) break;
      place(i, heap_[child]);
      i = child;
    }
    place(i, e);
  }
  void remove_at(std::size_t i) noexcept {
    heap_[i]->slot_ = deadline_entry::not_queued;
    auto* last = heap_.back();
    heap_.pop_back();
    if (i == heap_.size()) return;
    place(i, last);
    sift_up(i);
    sift_down(last->slot_);
  }

  std::vector<deadline_entry*> heap_;
};

/// Where deadlines live and what "now" is. Both implementations are thread-safe.
class time_line {
public:
  using time_point = deadline_entry::time_point;
  using duration = std::chrono::steady_clock::duration;

  /// Queues `e` until `at`; when `at` has already passed it may expire `e` at once (expire()
  /// only posts, so that is safe from any caller). `ex` is the executor of the waiter, used by
  /// a time line that needs one to run its timer on.
  virtual void arm(deadline_entry& e, time_point at, const asio::any_io_executor& ex) = 0;
  /// Removes `e` when still queued: true means expire() will not run for it.
  virtual bool disarm(deadline_entry& e) noexcept = 0;

protected:
  ~time_line() = default;
};

/// The manual time line: time moves only in advance(), which expires what became due.
class manual_time_line final : public time_line {
public:
  explicit manual_time_line(time_point start) : ticks_(start.time_since_epoch().count()) {}

  time_point now() const noexcept { return time_point(duration(ticks_.load(std::memory_order_acquire))); }

  void arm(deadline_entry& e, time_point at, const asio::any_io_executor&) override {
    {
      std::lock_guard lock(mutex_);
      if (at > now()) {
        queue_.push(e, at);
        return;
      }
    }
    e.expire();
  }

  bool disarm(deadline_entry& e) noexcept override {
    bool removed = false;
    {
      std::lock_guard lock(mutex_);
      removed = queue_.erase(e);
    }
    if (removed) e.release();
    return removed;
  }

  void advance(duration d) {
    std::vector<deadline_entry*> due;
    {
      std::lock_guard lock(mutex_);
      ticks_.fetch_add(d.count(), std::memory_order_acq_rel);
      queue_.pop_due(now(), due);
    }
    for (auto* e : due) {
      e->expire();
      e->release();
    }
  }

  ~manual_time_line() {
    std::vector<deadline_entry*> left;
    queue_.clear(left);
    for (auto* e : left) e->release();
  }

private:
  std::atomic<duration::rep> ticks_;
  std::mutex mutex_;
  deadline_queue queue_;
};

/// The real time line of one execution context: one steady_timer armed at the earliest live
/// entry. It re-arms only when a new entry is earlier than the armed time (so a stream of
/// "now + 1 s" deadlines arms the kernel timer about once a second), and when the queue runs
/// empty it cancels the timer from a posted check, so that an idle context's run() returns.
class steady_time_line final : public asio::execution_context::service, public time_line {
public:
  using key_type = steady_time_line;
  static inline asio::execution_context::id id;

  explicit steady_time_line(asio::execution_context& ctx) : asio::execution_context::service(ctx) {}

  /// The time line of the context `ex` belongs to (created on first use).
  static steady_time_line& of(const asio::any_io_executor& ex) {
    // use_service locks the context's registry (tens of ns): paid on arming only, never on the
    // fast path of a call that finishes before it needed a deadline. Not cached per thread: a
    // context may die and another be built at its address.
    return asio::use_service<steady_time_line>(asio::query(ex, asio::execution::context));
  }

  void arm(deadline_entry& e, time_point at, const asio::any_io_executor& ex) override {
    std::lock_guard lock(mutex_);
    if (shut_down_) return; // the context is going away: nothing will run again
    queue_.push(e, at);
    if (!armed_ || at < armed_at_) start_timer(ex, at);
  }

  bool disarm(deadline_entry& e) noexcept override {
    bool removed = false;
    {
      std::lock_guard lock(mutex_);
      removed = queue_.erase(e);
      if (removed && queue_.empty() && armed_ && !idle_check_posted_) {
        idle_check_posted_ = true;
        asio::post(timer_->get_executor(), [this]() { idle_check(); });
      }
    }
    if (removed) e.release();
    return removed;
  }

private:
  void shutdown() override {
    std::vector<deadline_entry*> left;
    {
      std::lock_guard lock(mutex_);
      shut_down_ = true;
      queue_.clear(left);
      // Destroyed here, while the timer service still exists (services die after shutdown).
      timer_.reset();
      armed_ = false;
    }
    for (auto* e : left) e->release();
  }

  // Under mutex_.
  void start_timer(const asio::any_io_executor& ex, time_point at) {
    if (!timer_) timer_.emplace(ex);
    armed_ = true;
    armed_at_ = at;
    const std::uint64_t generation = ++generation_;
    timer_->expires_at(at); // cancels the previous wait: its handler sees a stale generation
    timer_->async_wait([this, generation](const asio::error_code&) { fire(generation); });
  }

  void fire(std::uint64_t generation) {
    std::vector<deadline_entry*> due;
    {
      std::lock_guard lock(mutex_);
      if (generation != generation_ || shut_down_) return;
      armed_ = false;
      queue_.pop_due(std::chrono::steady_clock::now(), due);
      if (!queue_.empty()) start_timer(timer_->get_executor(), queue_.earliest());
    }
    for (auto* e : due) {
      e->expire();
      e->release();
    }
  }

  void idle_check() {
    std::lock_guard lock(mutex_);
    idle_check_posted_ = false;
    if (shut_down_ || !queue_.empty() || !armed_) return;
    armed_ = false;
    ++generation_;
    timer_->cancel();
  }

  std::mutex mutex_;
  deadline_queue queue_;
  std::optional<asio::steady_timer> timer_;
  time_point armed_at_{};
  std::uint64_t generation_ = 0;
  bool armed_ = false;
  bool idle_check_posted_ = false;
  bool shut_down_ = false;
};

} // namespace bulwark::detail
