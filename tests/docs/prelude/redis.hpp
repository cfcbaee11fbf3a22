// What docs/redis.md's snippets use without declaring it: the reader's own values.
// needs: bulwark::redis
#pragma once
#include <bulwark/redis.hpp>

#include <string>

extern std::string json; // the bytes to store
