// libFuzzer target for the HTTP/1.1 parsers. Besides crashes and sanitizer reports it checks
// that a message parses identically whole and split into pieces (the split points come from
// the input), that the parser never consumes more than it was given, and that every message it
// accepts, written again by the serializer the server and client use, parses back the same.
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude tests/fuzz/http_parser_fuzz.cpp
// or scripts/fuzz.sh SECONDS.

#include <bulwark/http/detail/serializer.hpp>
#include <bulwark/http/parser.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace http = bulwark::http;

namespace {

struct trace {
  std::vector<int> statuses; // per message: 0 complete, else the error status
  std::vector<std::string> bodies;
  bool operator==(const trace&) const = default;
};

// Serializes `m` and parses the bytes back (default limits: the serializer may add a Host or a
// Content-Length field); what the parser accepted once it must accept again, unchanged.
void round_trip(const http::request& m) {
  // The serializer writes HTTP/1.1, whose rules are stricter (one Host, for one).
  if (m.version_minor != 1) return;
  std::string wire;
  http::detail::append_request(wire, m, "fuzz", 80);
  http::request_parser p{http::parser_limits{}};
  if (p.feed(wire) != wire.size() || !p.complete()) std::abort();
  const auto back = p.release();
  if (back.method != m.method || back.target != (m.target.empty() ? "/" : m.target) || back.body != m.body)
    std::abort();
}

void round_trip(const http::response& m) {
  std::string wire;
  http::detail::append_response(wire, m, true, 1);
  http::response_parser p{http::parser_limits{}};
  if (p.feed(wire) != wire.size() || !p.complete()) std::abort();
  const auto back = p.release();
  if (back.status != m.status || back.body != m.body) std::abort();
}

template <class Parser> trace run(std::string_view data, std::size_t step, const http::parser_limits& limits) {
  trace t;
  Parser p(limits);
  std::size_t pos = 0;
  int messages = 0;
  while (pos < data.size() && messages < 64) {
    std::size_t piece = step == 0 ? data.size() - pos : std::min(step, data.size() - pos);
    std::size_t used = p.feed(data.substr(pos, piece));
    if (used > piece) std::abort();
    pos += used;
    if (p.failed()) {
      if constexpr (std::is_same_v<Parser, http::request_parser>)
        t.statuses.push_back(p.error_status());
      else
        t.statuses.push_back(1);
      break;
    }
    if (p.complete()) {
      t.statuses.push_back(0);
      auto message = p.release();
      if (step == 0) round_trip(message);
      t.bodies.push_back(std::move(message.body));
      p.reset();
      ++messages;
    } else if (used < piece) {
      std::abort(); // an incomplete, unfailed parser must take everything it is given
    }
  }
  return t;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t step = 1 + bytes[0] % 17;
  std::string_view data(reinterpret_cast<const char*>(bytes) + 1, size - 1);
  http::parser_limits limits;
  limits.max_request_line = 256;
  limits.max_header_bytes = 1024;
  limits.max_headers = 16;
  limits.max_body = 4096;
  if (run<http::request_parser>(data, 0, limits) != run<http::request_parser>(data, step, limits)) std::abort();
  if (run<http::response_parser>(data, 0, limits) != run<http::response_parser>(data, step, limits)) std::abort();
  return 0;
}
