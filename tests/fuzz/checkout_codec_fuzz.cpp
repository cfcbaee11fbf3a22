// libFuzzer target for the checkout example's stored forms (checkout/record_codec.hpp): the order
// record and the saga context. Besides crashes and sanitizer reports it checks that whatever a
// decode accepts encodes to bytes that decode to the same value (a decode may accept spellings
// encode does not write, such as leading zeros, so the check is on values, not bytes), and that
// a refusal carries its stable error code.
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Iexamples/checkout \
//     tests/fuzz/checkout_codec_fuzz.cpp
// or scripts/fuzz.sh SECONDS checkout_codec.

#include <checkout/order.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

bool same(const checkout::order_line& a, const checkout::order_line& b) {
  return a.item_id == b.item_id && a.quantity == b.quantity;
}
bool same(const std::vector<checkout::order_line>& a, const std::vector<checkout::order_line>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) { return same(x, y); });
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  if (auto r = checkout::decode_order("o", bytes)) {
    const auto& a = r.value();
    auto back = checkout::decode_order("o", checkout::encode_order(a));
    if (!back) std::abort();
    const auto& b = back.value();
    if (a.user_id != b.user_id || !same(a.items, b.items) || a.total_cost != b.total_cost || a.paid != b.paid ||
        a.attempt != b.attempt || a.checkout != b.checkout)
      std::abort();
  } else if (r.error() != bulwark::errc::protocol_error) {
    std::abort();
  }

  if (auto c = checkout::context_codec::decode(bytes)) {
    const auto& a = c.value();
    auto back = checkout::context_codec::decode(checkout::context_codec::encode(a));
    if (!back) std::abort();
    const auto& b = back.value();
    if (a.order_id != b.order_id || a.saga_id != b.saga_id || a.attempt != b.attempt || a.user_id != b.user_id ||
        a.total_cost != b.total_cost || !same(a.take, b.take) || !same(a.items, b.items) ||
        a.record_version != b.record_version)
      std::abort();
  } else if (c.error() != bulwark::errc::invalid_argument) {
    std::abort();
  }
  return 0;
}
