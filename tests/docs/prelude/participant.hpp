// What docs/participant.md's snippets use without declaring it: the service's parts.
// needs:
#pragma once
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/ledger.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/saga/participant.hpp>

#include <chrono>
#include <vector>

extern bulwark::memory::event_bus bus;    // the bus carrying the command and reply topics
extern bulwark::memory::repository store; // where the participant keeps its replies
extern bulwark::memory::ledger ledger;    // the stock
