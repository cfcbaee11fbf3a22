// Archetypes: the smallest types that model each concept, and near misses that must not. Checked
// when bulwark_unit compiles; there is no runtime test here (one could not fail).
#include <bulwark/cache.hpp>
#include <bulwark/event_bus.hpp>
#include <bulwark/ledger.hpp>
#include <bulwark/repository.hpp>

namespace archetype {
struct repository {
  bulwark::task<std::optional<bulwark::versioned>> get(std::string_view);
  bulwark::task<bulwark::version_t> put(std::string_view, std::string, std::optional<bulwark::version_t>);
  bulwark::task<bool> erase(std::string_view);
  bulwark::task<bulwark::scan_page> scan(std::string_view, std::string_view, std::size_t);
};
struct repository_without_erase {
  bulwark::task<std::optional<bulwark::versioned>> get(std::string_view);
  bulwark::task<bulwark::version_t> put(std::string_view, std::string, std::optional<bulwark::version_t>);
  bulwark::task<bulwark::scan_page> scan(std::string_view, std::string_view, std::size_t);
};
struct cache {
  bulwark::task<std::optional<bulwark::cached>> get(std::string_view);
  bulwark::task<bool> put(std::string_view, bulwark::versioned, std::chrono::milliseconds);
  bulwark::task<bool> erase(std::string_view);
};
struct cache_with_sync_get {
  std::optional<bulwark::cached> get(std::string_view);
  bulwark::task<bool> put(std::string_view, bulwark::versioned, std::chrono::milliseconds);
  bulwark::task<bool> erase(std::string_view);
};
// The optional synchronous refinements: the archetypes plus the plain calls; and near misses
// whose plain call returns something else than the task's result.
struct synchronous_repository : repository {
  bulwark::result<std::optional<bulwark::versioned>> get_now(std::string_view);
  bulwark::result<bulwark::version_t> put_now(std::string_view, std::string, std::optional<bulwark::version_t>);
};
// The purge refinement, and a near miss whose purge does not say how many it removed.
struct purgeable_repository : repository {
  bulwark::task<std::size_t> purge(std::string_view, std::string_view, std::size_t);
};
struct repository_with_silent_purge : repository {
  bulwark::task<void> purge(std::string_view, std::string_view, std::size_t);
};
struct repository_with_unchecked_put_now : repository {
  bulwark::result<std::optional<bulwark::versioned>> get_now(std::string_view);
  bulwark::version_t put_now(std::string_view, std::string, std::optional<bulwark::version_t>);
};
struct synchronous_cache : cache {
  bulwark::result<std::optional<bulwark::cached>> get_now(std::string_view);
  bulwark::result<bool> put_now(std::string_view, bulwark::versioned, std::chrono::milliseconds);
};
struct cache_with_get_now_only : cache {
  bulwark::result<std::optional<bulwark::cached>> get_now(std::string_view);
};
// The copying refinements (a viewed value copied into the model's buffer), and near misses: a
// copying put without the synchronous calls, and one that takes the value as a string.
struct copying_repository : synchronous_repository {
  bulwark::result<bulwark::version_t> put_copy_now(std::string_view, std::string_view,
                                                   std::optional<bulwark::version_t>);
};
struct repository_with_copying_put_only : repository {
  bulwark::result<bulwark::version_t> put_copy_now(std::string_view, std::string_view,
                                                   std::optional<bulwark::version_t>);
};
struct copying_cache : synchronous_cache {
  bulwark::result<bool> put_copy_now(std::string_view, std::string_view, bulwark::version_t, std::chrono::milliseconds);
};
struct cache_with_owning_put_copy_now : synchronous_cache {
  bulwark::result<bool> put_copy_now(std::string_view, std::string&&, bulwark::version_t, std::chrono::milliseconds);
};
struct bus {
  struct subscription {
    asio::awaitable<void> stop();
  };
  bulwark::task<bulwark::delivery> publish(std::string_view, bulwark::message);
  bulwark::task<subscription> subscribe(bulwark::subscribe_options, bulwark::message_handler);
  asio::awaitable<void> stop();
};
// The batch refinement: the archetype plus subscribe_batch; a near miss whose batch
// subscription takes a handler of one message.
struct batch_bus : bus {
  bulwark::task<subscription> subscribe_batch(bulwark::subscribe_options, bulwark::batch_handler);
};
struct batch_bus_with_message_handler : bus {
  bulwark::task<subscription> subscribe_batch(bulwark::subscribe_options, bulwark::message_handler);
};
struct bus_without_stop {
  struct subscription {};
  bulwark::task<bulwark::delivery> publish(std::string_view, bulwark::message);
  bulwark::task<subscription> subscribe(bulwark::subscribe_options, bulwark::message_handler);
  asio::awaitable<void> stop();
};
struct bus_that_cannot_stop { // its subscriptions stop, the bus itself does not
  struct subscription {
    asio::awaitable<void> stop();
  };
  bulwark::task<bulwark::delivery> publish(std::string_view, bulwark::message);
  bulwark::task<subscription> subscribe(bulwark::subscribe_options, bulwark::message_handler);
};
struct ledger {
  bulwark::task<bulwark::apply_outcome> apply(std::string_view, std::span<const bulwark::adjustment>);
  bulwark::task<bulwark::revert_outcome> revert(std::string_view);
  bulwark::task<std::optional<bulwark::amount>> get(std::string_view);
  bulwark::task<void> set(std::string_view, bulwark::amount);
  bulwark::task<bulwark::amount> add(std::string_view, bulwark::amount);
  bulwark::task<void> set_many(std::span<const bulwark::balance>);
};
struct ledger_without_revert { // applies, but cannot undo: no saga can compensate over it
  bulwark::task<bulwark::apply_outcome> apply(std::string_view, std::span<const bulwark::adjustment>);
  bulwark::task<std::optional<bulwark::amount>> get(std::string_view);
  bulwark::task<void> set(std::string_view, bulwark::amount);
  bulwark::task<bulwark::amount> add(std::string_view, bulwark::amount);
  bulwark::task<void> set_many(std::span<const bulwark::balance>);
};
} // namespace archetype

static_assert(bulwark::repository<archetype::repository>);
static_assert(!bulwark::repository<archetype::repository_without_erase>);
static_assert(bulwark::cache<archetype::cache>);
static_assert(!bulwark::cache<archetype::cache_with_sync_get>);
static_assert(bulwark::event_bus<archetype::bus>);
static_assert(!bulwark::event_bus<archetype::bus_without_stop>);
static_assert(!bulwark::event_bus<archetype::bus_that_cannot_stop>);
static_assert(bulwark::batch_event_bus<archetype::batch_bus>);
static_assert(!bulwark::batch_event_bus<archetype::bus>);
static_assert(!bulwark::batch_event_bus<archetype::batch_bus_with_message_handler>);
static_assert(!bulwark::repository<archetype::cache>);
static_assert(!bulwark::synchronous_repository<archetype::repository>);
static_assert(bulwark::synchronous_repository<archetype::synchronous_repository>);
static_assert(!bulwark::synchronous_repository<archetype::repository_with_unchecked_put_now>);
static_assert(!bulwark::purgeable_repository<archetype::repository>);
static_assert(bulwark::purgeable_repository<archetype::purgeable_repository>);
static_assert(!bulwark::purgeable_repository<archetype::repository_with_silent_purge>);
static_assert(!bulwark::synchronous_cache<archetype::cache>);
static_assert(bulwark::synchronous_cache<archetype::synchronous_cache>);
static_assert(!bulwark::synchronous_cache<archetype::cache_with_get_now_only>);
static_assert(!bulwark::copying_repository<archetype::synchronous_repository>);
static_assert(bulwark::copying_repository<archetype::copying_repository>);
static_assert(!bulwark::copying_repository<archetype::repository_with_copying_put_only>);
static_assert(!bulwark::copying_cache<archetype::synchronous_cache>);
static_assert(bulwark::copying_cache<archetype::copying_cache>);
static_assert(!bulwark::copying_cache<archetype::cache_with_owning_put_copy_now>);
static_assert(bulwark::ledger<archetype::ledger>);
static_assert(!bulwark::ledger<archetype::ledger_without_revert>);
static_assert(!bulwark::ledger<archetype::repository>);
