// libFuzzer target for flows::decode and flows::parse_retry_message. Besides crashes and
// sanitizer reports it checks that the encoding is canonical (whatever decode accepts, encode
// writes back byte for byte) and that a frame built from the input survives encode -> decode.
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude tests/fuzz/frame_decode_fuzz.cpp
// or scripts/fuzz.sh SECONDS frame_decode.

#include <bulwark/flows/frame.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace flows = bulwark::flows;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  auto decoded = flows::decode(bytes);
  if (decoded) {
    if (flows::encode(decoded.value()) != bytes) std::abort();
  } else if (decoded.error() != bulwark::errc::invalid_argument || decoded.error().detail().empty()) {
    std::abort();
  }

  // The same bytes as a retry message's value, with headers taken from the input.
  const std::vector<bulwark::header> headers = {
      {"bulwark-request-id", decoded ? decoded.value().request_id : std::string(bytes.substr(0, 8))},
      {"bulwark-known-version", std::string(bytes.substr(0, 4))}};
  const bulwark::envelope e{"retry", 0, 0, 1, bytes.substr(0, 3), bytes, headers};
  auto parsed = flows::parse_retry_message(e);
  if (!parsed && parsed.error() != bulwark::errc::invalid_argument) std::abort();

  // A frame whose fields come from the input round-trips.
  if (size >= 10) {
    flows::frame f;
    f.state = (data[0] & 1) ? flows::write_state::pending : flows::write_state::durable;
    for (std::size_t i = 1; i < 9; ++i) f.stamp.value = (f.stamp.value << 8) | data[i];
    const std::size_t id = std::min<std::size_t>(data[9] % (flows::max_request_id + 1), size - 10);
    f.request_id.assign(bytes.substr(10, id));
    f.value.assign(bytes.substr(10 + id));
    auto back = flows::decode(flows::encode(f));
    if (!back || !(back.value() == f)) std::abort();
  }
  return 0;
}
