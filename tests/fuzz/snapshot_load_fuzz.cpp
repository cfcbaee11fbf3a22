// libFuzzer target for the last-known-good snapshot decoder (what load() runs on a file's
// bytes). Besides crashes, sanitizer reports and runaway allocations (libFuzzer's -rss_limit_mb),
// it checks that whatever the decoder accepts encodes back to exactly the same bytes: the format
// has one encoding per snapshot, so an accepted input that re-encodes differently was misread.
//
// A random input almost never carries a right CRC-32, which would keep the fuzzer at the
// checksum test; so when the first byte is odd, the rest of the input gets its CRC fixed before
// decoding, and the length and count checks behind the checksum are fuzzed too.
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude tests/fuzz/snapshot_load_fuzz.cpp
// or scripts/fuzz.sh SECONDS snapshot_load.

#include <bulwark/flows/snapshot.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using bulwark::flows::last_known_good;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const bool fix_crc = (data[0] & 1) != 0;
  std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (fix_crc && bytes.size() >= last_known_good::header_bytes) {
    std::string crc;
    bulwark::flows::detail::put_u32(crc, bulwark::detail::crc32(std::string_view(bytes).substr(16)));
    bytes.replace(12, 4, crc);
  }
  const auto decoded = last_known_good::decode(bytes, "fuzz");
  if (!decoded) {
    if (decoded.error() != bulwark::errc::invalid_argument) std::abort();
    return 0;
  }
  const auto again = last_known_good::encode(decoded.value());
  if (!again || again.value() != bytes) std::abort();
  return 0;
}
