// What docs/hazelcast.md's snippets use without declaring it: the reader's own values.
// needs: bulwark::hazelcast
#pragma once
#include <bulwark/hazelcast.hpp>

#include <asio/io_context.hpp>

#include <string>

using namespace std::chrono_literals;

extern asio::io_context ctx;
extern std::string bytes; // the bytes to store
