// What docs/http.md's snippets use without declaring it: the reader's own objects and values,
// and the names the text before them introduced.
// needs: bulwark::http
#pragma once
#include <bulwark/http.hpp>
#include <bulwark/memory/repository.hpp>
#include <bulwark/metrics.hpp>

#include <asio/io_context.hpp>

#include <memory>
#include <string>

using namespace std::chrono_literals;
namespace http = bulwark::http;
namespace metrics = bulwark::metrics;

extern asio::io_context ctx;
extern std::string body;                 // a request body
extern bulwark::memory::repository repo; // any bulwark::repository
extern std::shared_ptr<bulwark::metrics::registry> registry;
extern http::router routes; // the Server section's router
