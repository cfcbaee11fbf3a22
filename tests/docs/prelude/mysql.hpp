// What docs/mysql.md's snippets use without declaring it: the reader's own values.
// needs: bulwark::mysql
#pragma once
#include <bulwark/mysql.hpp>

#include <string>

extern std::string bytes; // the bytes to store
