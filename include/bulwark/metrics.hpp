#pragma once
// Umbrella header for bulwark metrics: instruments, families, registry, Prometheus text format.
#include <bulwark/metrics/instruments.hpp>
#include <bulwark/metrics/registry.hpp>
