#pragma once
// The Redis backend: bulwark::redis::client (async hiredis on Asio), cache, repository and ledger.

#include <bulwark/redis/cache.hpp>
#include <bulwark/redis/client.hpp>
#include <bulwark/redis/error.hpp>
#include <bulwark/redis/ledger.hpp>
#include <bulwark/redis/options.hpp>
#include <bulwark/redis/reply.hpp>
#include <bulwark/redis/repository.hpp>
#include <bulwark/redis/script.hpp>
