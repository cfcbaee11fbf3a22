// What docs/resilience.md's snippets use without declaring it: nothing but the headers.
#pragma once
#include <bulwark/memory/repository.hpp>
#include <bulwark/resilience.hpp>

#include <chrono>
#include <optional>
#include <string>
