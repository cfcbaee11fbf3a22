#pragma once
// assign_bytes: a stored value replaced in the buffer it already has. The memory models and
// flows::write_through keep one std::string per key and rewrite it on every put; most rewrites
// have the size of the value they replace (a frame around a fixed-size record, a counter).

#include <cstring>
#include <string>
#include <string_view>
#include <utility>

namespace bulwark::detail {

/// `to` holds `from`'s bytes, in its own buffer: a plain copy when the sizes match (~10
/// instructions for 130 bytes against ~60 in std::string::assign's general replace), else
/// assign, which allocates only past the buffer's capacity.
inline void assign_bytes(std::string& to, std::string_view from) {
  if (to.size() == from.size()) {
    if (!from.empty()) std::memcpy(to.data(), from.data(), from.size());
  } else {
    to.assign(from.data(), from.size());
  }
}

/// A value handed over as a string: taken as it is (its buffer replaces `to`'s).
inline void assign_bytes(std::string& to, std::string&& from) noexcept { to = std::move(from); }

} // namespace bulwark::detail
