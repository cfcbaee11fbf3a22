// What docs/saga.md's snippets use without declaring it: nothing but the headers.
// needs:
#pragma once
#include <bulwark/saga.hpp>

#include <asio/awaitable.hpp>

#include <chrono>
#include <string>
#include <vector>
