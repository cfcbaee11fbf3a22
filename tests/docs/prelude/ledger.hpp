// What docs/ledger.md's snippets use without declaring it: nothing but the headers.
// needs: bulwark::redis bulwark::mysql
#pragma once
#include <bulwark/ledger.hpp>

#include <asio/awaitable.hpp>

#include <chrono>
#include <string>
#include <vector>
