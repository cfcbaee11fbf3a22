// What docs/errors.md's snippets use without declaring it. (docs/errors.md is being rewritten
// with the error categories; its skip lives here rather than in its text meanwhile.)
// needs:
// skip: 35 a member function shown out of its error_category class
#pragma once
#include <bulwark/memory/repository.hpp>

extern bulwark::memory::repository repo; // any bulwark::repository
