// What docs/last_known_good.md's snippets use without declaring it: the reader's own values and
// functions.
// needs: bulwark::redis bulwark::kafka
#pragma once
#include <bulwark/flows/near_cache.hpp>
#include <bulwark/flows/snapshot.hpp>
#include <bulwark/kafka.hpp>
#include <bulwark/memory/cache.hpp>
#include <bulwark/metrics.hpp>
#include <bulwark/redis.hpp>

#include <asio/thread_pool.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

using namespace std::chrono_literals;

extern asio::any_io_executor ex;
extern bulwark::memory::cache cache; // the cache the snapshot seeds
extern std::shared_ptr<bulwark::metrics::registry> registry;
extern bulwark::redis::cache redis_cache;
extern bulwark::kafka::event_bus kafka_bus;
extern std::string hostname;
void log_warning(std::string_view text);
std::vector<bulwark::flows::snapshot_entry> entries_now(); // what the process holds, copied
