#pragma once
// What a request handler is: a request in, a task of a response out. Router, static files and
// the metrics handler need only this, not the server.

#include <bulwark/http/message.hpp>
#include <bulwark/result.hpp>

#include <functional>

namespace bulwark::http {

/// What the server calls for every request. The request lives until the returned task ends.
/// An error result is answered with status_for(errc) and a JSON body (responses.hpp).
using handler = std::function<task<response>(request&)>;

} // namespace bulwark::http
