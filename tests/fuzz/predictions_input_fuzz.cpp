// libFuzzer target for the predictions example's input check (predictions::validate, the body of
// POST /input) and its published form. Besides crashes and sanitizer reports it checks that an
// input is either accepted or refused with at least one violation (each with a code and a
// message), that the 400's JSON can be written, and that an accepted prediction survives its
// trip through the topic (to_json -> dump -> accepted_from_json) unchanged.
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Iexamples/predictions \
//     tests/fuzz/predictions_input_fuzz.cpp
// or scripts/fuzz.sh SECONDS predictions_input.

#include <predictions/prediction.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);

  const auto checked = predictions::validate(body);
  if (checked.value.has_value() == !checked.violations.empty()) std::abort();
  for (const auto& v : checked.violations)
    if (v.code.empty() || v.message.empty()) std::abort();
  if (!checked.value) {
    (void)predictions::violations_json(checked.violations).dump(); // throws on bytes JSON cannot hold
    return 0;
  }
  predictions::accepted a;
  a.id = "0123456789ab0123456701234567";
  a.received_at_ms = 1764547200000;
  a.value = *checked.value;
  auto back = predictions::accepted_from_json(predictions::to_json(a).dump());
  if (!back || back.value().id != a.id || back.value().received_at_ms != a.received_at_ms ||
      !(back.value().value == a.value))
    std::abort();
  return 0;
}
