#pragma once
// Umbrella header for bulwark::http: parser, server, router, middleware, static files, client.
#include <bulwark/http/client.hpp>
#include <bulwark/http/event_stream.hpp>
#include <bulwark/http/message.hpp>
#include <bulwark/http/metrics_handler.hpp>
#include <bulwark/http/middleware.hpp>
#include <bulwark/http/negotiation.hpp>
#include <bulwark/http/parser.hpp>
#include <bulwark/http/responses.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/http/server.hpp>
#include <bulwark/http/static_files.hpp>
