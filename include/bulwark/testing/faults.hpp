#pragma once
// Fault injection for tests: decorators that wrap a repository, a cache or an event bus by
// reference, model the same concept, and make its operations fail, hang, slow down or flap as a
// fault_plan says, on an injected bulwark::clock (no sleeping).
//
//   bulwark::memory::repository db;
//   auto clk = bulwark::clock::manual();
//   bulwark::testing::faulty_repository repo(db, clk);
//   repo.faults().fail(testing::op::every, bulwark::errc::unavailable); // the database is down
//   ...
//   repo.faults().clear(testing::op::every);                            // and back
//
// What a plan can do, per operation kind (op::every applies to all of a decorator's kinds):
//   fail(op, e)                 every call fails with e until cleared
//   fail_nth(op, n, e)          the n-th call from now (1: the next) fails with e, once
//   down_between(op, t1, t2, e) calls while t1 <= clock.now() < t2 fail with e (add several
//                               windows to flap on a schedule)
//   hang(op)                    calls wait until release(op) or until cancelled (then
//                               errc::cancelled): what a dead peer that accepts connections does
//   slow(op, d)                 calls wait d on the clock first (cancellable), then run
//   clear(op), clear_all()      removes the rules (clear also releases hung calls)
// The first matching of: the n-th call, a window, fail, decides a failure; otherwise the call
// hangs and/or slows as told, then reaches the wrapped model. calls(op) counts every call seen,
// injected(op) the ones a rule failed or cancelled.
//
// A plan is shared: several decorators may take one (several replicas that lose one database);
// a decorator holds it by shared_ptr, so an operation abandoned at its deadline keeps it alive.
// Everything is thread-safe (a mutex); a hung or slowed call resumes on its caller's executor.
// The wrapped model must outlive the decorator's operations, as for the model itself.

#include <bulwark/cache.hpp>
#include <bulwark/clock.hpp>
#include <bulwark/event_bus.hpp>
#include <bulwark/memory/cache.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/repository.hpp>

#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>
#include <asio/use_awaitable.hpp>

#include <array>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace bulwark::testing {

/// The operation kinds a plan tells apart; `every` stands for all of them.
enum class op : std::size_t { get, put, erase, scan, publish, subscribe, every };

namespace detail {

/// Calls parked by hang(): released all at once, or one by one by their cancellation.
class hang_gate {
  struct waiter {
    std::function<void(bool)> resume; // posts the handler with true (released) or false
    bool done = false;
  };
  struct state {
    std::mutex mutex;
    std::vector<std::shared_ptr<waiter>> waiting;
  };

public:
  /// Completes with true at release(), false when cancelled through the handler's slot.
  template <class CompletionToken> auto async_wait(CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(bool)>(
        [s = state_](auto handler) {
          auto slot = asio::get_associated_cancellation_slot(handler);
          auto ex = asio::prefer(asio::get_associated_executor(handler), asio::execution::outstanding_work.tracked);
          auto held = std::make_shared<decltype(handler)>(std::move(handler));
          auto w = std::make_shared<waiter>();
          w->resume = [held, ex](bool released) mutable {
            asio::post(ex, [held, released]() mutable { std::move (*held)(released); });
          };
          {
            std::lock_guard lock(s->mutex);
            s->waiting.push_back(w);
          }
          if (slot.is_connected()) {
            slot.assign([s, w](asio::cancellation_type type) {
              if (type == asio::cancellation_type::none) return;
              std::unique_lock lock(s->mutex);
              if (w->done) return;
              w->done = true;
              std::erase(s->waiting, w);
              lock.unlock();
              w->resume(false);
            });
          }
        },
        token);
  }

  /// Releases every call waiting now.
  void release() {
    std::vector<std::shared_ptr<waiter>> released;
    {
      std::lock_guard lock(state_->mutex);
      released.swap(state_->waiting);
      for (auto& w : released) w->done = true;
    }
    for (auto& w : released) w->resume(true);
  }

  std::size_t waiting() const {
    std::lock_guard lock(state_->mutex);
    return state_->waiting.size();
  }

private:
  std::shared_ptr<state> state_ = std::make_shared<state>();
};

} // namespace detail

/// What faults to inject into which operations, on one clock. Shared by the decorators that
/// use it (see the file comment); thread-safe.
class fault_plan {
public:
  explicit fault_plan(bulwark::clock clk = {}) : clock_(std::move(clk)) {}
  fault_plan(const fault_plan&) = delete;
  fault_plan& operator=(const fault_plan&) = delete;

  /// Every call of `o` fails with `e` until clear(o).
  void fail(op o, error e = errc::unavailable) {
    std::lock_guard lock(mutex_);
    rule_of(o).failure = std::move(e);
  }

  /// The n-th call of `o` from now (n >= 1; 1 is the next) fails with `e`, once.
  void fail_nth(op o, std::size_t n, error e = errc::unavailable) {
    std::lock_guard lock(mutex_);
    rule_of(o).nth.push_back({calls_[index(o)] + (n == 0 ? 1 : n), std::move(e)});
  }

  /// Calls of `o` fail with `e` while from <= clock.now() < to. Windows add up (a flapping schedule).
  void down_between(op o, bulwark::clock::time_point from, bulwark::clock::time_point to, error e = errc::unavailable) {
    std::lock_guard lock(mutex_);
    rule_of(o).windows.push_back({from, to, std::move(e)});
  }

  /// Calls of `o` wait until release(o) or their cancellation (then errc::cancelled).
  void hang(op o) {
    std::lock_guard lock(mutex_);
    rule_of(o).hang = true;
  }

  /// Stops hanging calls of `o` and lets those waiting now go on.
  void release(op o) {
    {
      std::lock_guard lock(mutex_);
      rule_of(o).hang = false;
    }
    gates_[index(o)].release();
  }

  /// Calls of `o` wait `d` on the clock before they run (cancellable: errc::cancelled).
  void slow(op o, bulwark::clock::duration d) {
    std::lock_guard lock(mutex_);
    rule_of(o).slow = d;
  }

  /// Removes every rule of `o` and releases its hung calls.
  void clear(op o) {
    {
      std::lock_guard lock(mutex_);
      rule_of(o) = rule{};
    }
    gates_[index(o)].release();
  }

  /// clear() for every kind.
  void clear_all() {
    for (std::size_t i = 0; i < kinds; ++i) clear(static_cast<op>(i));
  }

  /// Calls of `o` seen so far (op::every: of all kinds).
  std::size_t calls(op o) const {
    std::lock_guard lock(mutex_);
    return calls_[index(o)];
  }

  /// Calls of `o` that a rule failed or that were cancelled while hung or slowed.
  std::size_t injected(op o) const {
    std::lock_guard lock(mutex_);
    return injected_[index(o)];
  }

  /// Calls of `o` hung now.
  std::size_t hung(op o) const { return gates_[index(o)].waiting(); }

  const bulwark::clock& clock() const noexcept { return clock_; }

  /// Applies the plan to one call of `o`: its error, or success once any hang and slowdown are
  /// over. The decorators call it first thing.
  task<void> before(op o) {
    const auto verdict = admit(o);
    if (verdict.failure) co_return *verdict.failure;
    if (verdict.hang_on) {
      const bool released = co_await gates_[index(*verdict.hang_on)].async_wait(asio::use_awaitable);
      if (!released) co_return count_injected(o, "hung call cancelled");
    }
    if (verdict.slow.count() > 0) {
      const bool reached = co_await clock_.wait_for(verdict.slow);
      if (!reached) co_return count_injected(o, "slowed call cancelled");
    }
    co_return ok();
  }

private:
  static constexpr std::size_t kinds = static_cast<std::size_t>(op::every) + 1;

  struct window {
    bulwark::clock::time_point from, to;
    error failure;
  };
  struct nth_call {
    std::size_t at;
    error failure;
  };
  struct rule {
    std::optional<error> failure;
    std::vector<nth_call> nth;
    std::vector<window> windows;
    bool hang = false;
    bulwark::clock::duration slow{};
  };
  struct verdict {
    std::optional<error> failure;
    std::optional<op> hang_on; // whose gate the call waits at
    bulwark::clock::duration slow{};
  };

  static std::size_t index(op o) { return static_cast<std::size_t>(o); }
  rule& rule_of(op o) { return rules_[index(o)]; }

  verdict admit(op o) {
    std::lock_guard lock(mutex_);
    const auto n = ++calls_[index(o)];
    if (o != op::every) ++calls_[index(op::every)];
    const auto now = clock_.now();
    verdict v;
    for (op which : {o, op::every}) {
      auto& r = rule_of(which);
      const auto count = which == o ? n : calls_[index(op::every)];
      for (auto it = r.nth.begin(); it != r.nth.end() && !v.failure; ++it) {
        if (it->at == count) {
          v.failure = it->failure;
          r.nth.erase(it);
          break;
        }
      }
      for (const auto& w : r.windows)
        if (!v.failure && w.from <= now && now < w.to) v.failure = w.failure;
      if (!v.failure && r.failure) v.failure = r.failure;
      if (r.hang && !v.hang_on) v.hang_on = which;
      if (r.slow > v.slow) v.slow = r.slow;
      if (which == op::every) break;
    }
    if (v.failure) {
      ++injected_[index(o)];
      if (o != op::every) ++injected_[index(op::every)];
    }
    return v;
  }

  error count_injected(op o, const char* what) {
    std::lock_guard lock(mutex_);
    ++injected_[index(o)];
    if (o != op::every) ++injected_[index(op::every)];
    return error(errc::cancelled, what);
  }

  bulwark::clock clock_;
  mutable std::mutex mutex_;
  std::array<rule, kinds> rules_{};
  std::array<std::size_t, kinds> calls_{};
  std::array<std::size_t, kinds> injected_{};
  std::array<detail::hang_gate, kinds> gates_{};
};

/// A repository whose calls go through a fault_plan first (op::get, put, erase, scan).
template <repository Repository> class faulty_repository {
public:
  /// Wraps `inner` (by reference) with a new plan on `clk`.
  explicit faulty_repository(Repository& inner, bulwark::clock clk = {})
      : faulty_repository(inner, std::make_shared<fault_plan>(std::move(clk))) {}
  /// Wraps `inner` with a plan shared with other decorators.
  faulty_repository(Repository& inner, std::shared_ptr<fault_plan> plan) : inner_(&inner), plan_(std::move(plan)) {}

  fault_plan& faults() const noexcept { return *plan_; }
  std::shared_ptr<fault_plan> shared_faults() const noexcept { return plan_; }
  Repository& inner() const noexcept { return *inner_; }

  task<std::optional<versioned>> get(std::string_view key) {
    return [](Repository* r, std::shared_ptr<fault_plan> p, std::string k) -> task<std::optional<versioned>> {
      BOOST_OUTCOME_CO_TRY(co_await p->before(op::get));
      co_return co_await r->get(k);
    }(inner_, plan_, std::string(key));
  }
  task<version_t> put(std::string_view key, std::string value, std::optional<version_t> expected) {
    return [](Repository* r, std::shared_ptr<fault_plan> p, std::string k, std::string v,
              std::optional<version_t> e) -> task<version_t> {
      BOOST_OUTCOME_CO_TRY(co_await p->before(op::put));
      co_return co_await r->put(k, std::move(v), e);
    }(inner_, plan_, std::string(key), std::move(value), expected);
  }
  task<bool> erase(std::string_view key) {
    return [](Repository* r, std::shared_ptr<fault_plan> p, std::string k) -> task<bool> {
      BOOST_OUTCOME_CO_TRY(co_await p->before(op::erase));
      co_return co_await r->erase(k);
    }(inner_, plan_, std::string(key));
  }
  task<scan_page> scan(std::string_view prefix, std::string_view after, std::size_t limit) {
    return [](Repository* r, std::shared_ptr<fault_plan> p, std::string pre, std::string aft,
              std::size_t lim) -> task<scan_page> {
      BOOST_OUTCOME_CO_TRY(co_await p->before(op::scan));
      co_return co_await r->scan(pre, aft, lim);
    }(inner_, plan_, std::string(prefix), std::string(after), limit);
  }

private:
  Repository* inner_;
  std::shared_ptr<fault_plan> plan_;
};

/// A cache whose calls go through a fault_plan first (op::get, put, erase).
template <cache Cache> class faulty_cache {
public:
  explicit faulty_cache(Cache& inner, bulwark::clock clk = {})
      : faulty_cache(inner, std::make_shared<fault_plan>(std::move(clk))) {}
  faulty_cache(Cache& inner, std::shared_ptr<fault_plan> plan) : inner_(&inner), plan_(std::move(plan)) {}

  fault_plan& faults() const noexcept { return *plan_; }
  std::shared_ptr<fault_plan> shared_faults() const noexcept { return plan_; }
  Cache& inner() const noexcept { return *inner_; }

  task<std::optional<cached>> get(std::string_view key) {
    return [](Cache* c, std::shared_ptr<fault_plan> p, std::string k) -> task<std::optional<cached>> {
      BOOST_OUTCOME_CO_TRY(co_await p->before(op::get));
      co_return co_await c->get(k);
    }(inner_, plan_, std::string(key));
  }
  task<bool> put(std::string_view key, versioned value, std::chrono::milliseconds ttl) {
    return [](Cache* c, std::shared_ptr<fault_plan> p, std::string k, versioned v,
              std::chrono::milliseconds t) -> task<bool> {
      BOOST_OUTCOME_CO_TRY(co_await p->before(op::put));
      co_return co_await c->put(k, std::move(v), t);
    }(inner_, plan_, std::string(key), std::move(value), ttl);
  }
  task<bool> erase(std::string_view key) {
    return [](Cache* c, std::shared_ptr<fault_plan> p, std::string k) -> task<bool> {
      BOOST_OUTCOME_CO_TRY(co_await p->before(op::erase));
      co_return co_await c->erase(k);
    }(inner_, plan_, std::string(key));
  }

private:
  Cache* inner_;
  std::shared_ptr<fault_plan> plan_;
};

/// An event bus whose publish and subscribe go through a fault_plan first (op::publish,
/// op::subscribe); deliveries to handlers and stop() are the wrapped bus's own.
template <event_bus Bus> class faulty_bus {
public:
  using subscription = typename Bus::subscription;

  explicit faulty_bus(Bus& inner, bulwark::clock clk = {})
      : faulty_bus(inner, std::make_shared<fault_plan>(std::move(clk))) {}
  faulty_bus(Bus& inner, std::shared_ptr<fault_plan> plan) : inner_(&inner), plan_(std::move(plan)) {}

  fault_plan& faults() const noexcept { return *plan_; }
  std::shared_ptr<fault_plan> shared_faults() const noexcept { return plan_; }
  Bus& inner() const noexcept { return *inner_; }

  task<delivery> publish(std::string_view topic, message m) {
    return [](Bus* b, std::shared_ptr<fault_plan> p, std::string t, message msg) -> task<delivery> {
      BOOST_OUTCOME_CO_TRY(co_await p->before(op::publish));
      co_return co_await b->publish(t, std::move(msg));
    }(inner_, plan_, std::string(topic), std::move(m));
  }
  task<subscription> subscribe(subscribe_options o, message_handler h) {
    return [](Bus* b, std::shared_ptr<fault_plan> p, subscribe_options opts,
              message_handler handler) -> task<subscription> {
      BOOST_OUTCOME_CO_TRY(co_await p->before(op::subscribe));
      co_return co_await b->subscribe(std::move(opts), std::move(handler));
    }(inner_, plan_, std::move(o), std::move(h));
  }
  /// Present when Bus models batch_event_bus; goes through op::subscribe as subscribe() does.
  task<subscription> subscribe_batch(subscribe_options o, batch_handler h) requires batch_event_bus<Bus> {
    return
        [](Bus* b, std::shared_ptr<fault_plan> p, subscribe_options opts, batch_handler handler) -> task<subscription> {
          BOOST_OUTCOME_CO_TRY(co_await p->before(op::subscribe));
          co_return co_await b->subscribe_batch(std::move(opts), std::move(handler));
        }(inner_, plan_, std::move(o), std::move(h));
  }
  asio::awaitable<void> stop() { return inner_->stop(); }

private:
  Bus* inner_;
  std::shared_ptr<fault_plan> plan_;
};

static_assert(bulwark::repository<faulty_repository<memory::repository>>,
              "testing::faulty_repository must model bulwark::repository");
static_assert(bulwark::cache<faulty_cache<memory::cache>>, "testing::faulty_cache must model bulwark::cache");
static_assert(bulwark::event_bus<faulty_bus<memory::event_bus>>, "testing::faulty_bus must model bulwark::event_bus");
static_assert(bulwark::batch_event_bus<faulty_bus<memory::event_bus>>,
              "testing::faulty_bus must model bulwark::batch_event_bus");

} // namespace bulwark::testing
