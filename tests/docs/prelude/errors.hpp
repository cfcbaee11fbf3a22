// What docs/errors.md's snippets use without declaring it.
// needs:
#pragma once
#include <bulwark/error.hpp>
#include <bulwark/memory/repository.hpp>

#include <array>

extern bulwark::memory::repository repo; // any bulwark::repository
