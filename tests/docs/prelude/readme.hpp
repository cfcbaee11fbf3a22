// What README.md's snippets use without declaring it: the reader's own values and functions.
// needs: bulwark::redis bulwark::mysql bulwark::hazelcast bulwark::http
#pragma once
#include <bulwark/hazelcast.hpp>
#include <bulwark/http.hpp>
#include <bulwark/memory/event_bus.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/metrics.hpp>
#include <bulwark/mysql.hpp>
#include <bulwark/redis.hpp>

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace http = bulwark::http;

extern asio::any_io_executor ex;
extern std::string body;  // the bytes to store
extern std::string bytes; // likewise

// The HTTP snippet serves a store of the reader's own, as examples/kv-demo does.
struct item_store {
  bulwark::task<std::optional<bulwark::versioned>> get(std::string key);
};
extern item_store store;
// The event-bus snippet stores a batch's values in one round trip.
bulwark::task<void> store_all(std::vector<std::string> values);
nlohmann::json to_json(const std::optional<bulwark::versioned>& item);
