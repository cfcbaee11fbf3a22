// What docs/kafka.md's snippets use without declaring it: the reader's own values and functions.
// needs: bulwark::kafka
#pragma once
#include <bulwark/kafka.hpp>

#include <string>
#include <vector>

extern std::string payload; // a message's value
extern std::string id;      // a trace id
extern bulwark::message_handler handler;
extern bulwark::batch_handler batch_handler;
std::vector<bulwark::message> read_some();
extern std::string user; // SASL credentials
extern std::string password;
