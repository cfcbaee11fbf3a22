#pragma once
// Umbrella header for bulwark's resilience primitives: with_timeout / with_deadline and
// deadline, backoff and retry_policy, retry, circuit_breaker, bulkhead, singleflight.
#include <bulwark/resilience/backoff.hpp>
#include <bulwark/resilience/bulkhead.hpp>
#include <bulwark/resilience/circuit_breaker.hpp>
#include <bulwark/resilience/retry.hpp>
#include <bulwark/resilience/singleflight.hpp>
#include <bulwark/resilience/timeout.hpp>
