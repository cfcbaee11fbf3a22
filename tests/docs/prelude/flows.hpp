// What docs/flows.md's snippets use without declaring it.
// needs:
#pragma once
#include <bulwark/metrics/registry.hpp>

#include <asio/any_io_executor.hpp>

#include <chrono>
#include <memory>

using namespace std::chrono_literals;
