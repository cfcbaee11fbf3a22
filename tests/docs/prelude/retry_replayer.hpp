// What docs/retry_replayer.md's snippets use without declaring it: the service's parts.
// needs:
#pragma once
#include <bulwark/flows/retry_replayer.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>

extern bulwark::memory::repository users;      // the repository write_through writes to
extern bulwark::memory::repository outage_log; // where outage windows are recorded
extern bulwark::memory::event_bus bus;         // the bus carrying the retry topic
bulwark::task<void> reconcile_store();         // e.g. a write_through's reconcile()
