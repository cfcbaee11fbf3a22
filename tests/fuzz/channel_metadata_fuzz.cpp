// libFuzzer target for the channel-metadata document parser (examples/channel-metadata). The
// first two bytes are the path's country code, the rest the body. Besides crashes and
// sanitizer reports it checks that every answer is one the contract allows: a document that
// serializes and parses back the same, or a 400 with CMS-0001 (with fields), CMS-0004 or
// CMS-0007 (with one of its two texts), whose JSON body can be written.
//
//   clang++ -std=c++20 -DASIO_HAS_CO_AWAIT -DASIO_HAS_STD_COROUTINE -g -O1 \
//     -fsanitize=fuzzer,address,undefined -Iinclude -Iexamples/channel-metadata \
//     tests/fuzz/channel_metadata_fuzz.cpp -o build/fuzz/channel_metadata_fuzz
//   build/fuzz/channel_metadata_fuzz -max_total_time=60 build/fuzz/cm-corpus tests/fuzz/channel_metadata_corpus

#include <channel_metadata/document.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace cm = channel_metadata;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const auto path = all.substr(0, 2);
  const auto body = all.substr(2);
  auto r = cm::parse_request(path, body, cm::parse_limits{4096});
  if (r) {
    const auto key = cm::parse_country_code(path);
    if (!key || r.value().country_code != key.value()) std::abort();
    auto back = cm::parse_document(cm::serialize(r.value()));
    if (!back || !(back.value() == r.value())) std::abort();
    return 0;
  }
  const auto& e = r.error();
  if (e.status != 400) std::abort();
  if (e.code == "CMS-0007") {
    if (e.message != cm::text::malformed_json && e.message != cm::text::field_mismatch) std::abort();
  } else if (e.code == "CMS-0001") {
    if (e.details.empty()) std::abort();
  } else if (e.code != "CMS-0004") {
    std::abort();
  }
  if (e.body().dump().empty()) std::abort();
  return 0;
}
