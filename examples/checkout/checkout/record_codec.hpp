#pragma once
// The stored form of the order record and of the checkout saga's context: fields separated by
// '\n', numbers in decimal, strings as <length>:<bytes> (any bytes fit), after a format tag.
// Both are written and read several times per checkout (the record: read twice, written
// twice; the context: written with every saga transition), so they are not JSON: an
// nlohmann::json tree per read and per write cost about a sixth of memory mode's CPU per
// checkout. One allocation per encode; a decode checks every field (errc::protocol_error).

#include <bulwark/error.hpp>
#include <bulwark/result.hpp>

#include <charconv>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

namespace checkout::detail {

/// Appends fields to a string.
class field_writer {
public:
  explicit field_writer(std::string_view tag, std::size_t expected_bytes = 64) {
    out_.reserve(tag.size() + 1 + expected_bytes);
    out_.append(tag).push_back('\n');
  }

  template <std::integral Int> field_writer& number(Int v) {
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, v).ptr;
    out_.append(digits, end).push_back('\n');
    return *this;
  }

  field_writer& text(std::string_view s) {
    number(s.size());
    out_.pop_back();
    out_.push_back(':');
    out_.append(s).push_back('\n');
    return *this;
  }

  std::string take() && { return std::move(out_); }

private:
  std::string out_;
};

/// Reads the fields field_writer wrote, in the same order; any malformed field makes ok() false.
class field_reader {
public:
  field_reader(std::string_view bytes, std::string_view tag) {
    ok_ = bytes.size() > tag.size() && bytes.starts_with(tag) && bytes[tag.size()] == '\n';
    if (ok_) rest_ = bytes.substr(tag.size() + 1);
  }

  template <std::integral Int> field_reader& number(Int& out) {
    const auto end = ok_ ? rest_.find('\n') : std::string_view::npos;
    if (end == std::string_view::npos) return fail();
    const auto [ptr, ec] = std::from_chars(rest_.data(), rest_.data() + end, out);
    if (ec != std::errc() || ptr != rest_.data() + end) return fail();
    rest_.remove_prefix(end + 1);
    return *this;
  }

  field_reader& text(std::string& out) {
    const auto colon = ok_ ? rest_.find(':') : std::string_view::npos;
    if (colon == std::string_view::npos) return fail();
    std::size_t length = 0;
    const auto [ptr, ec] = std::from_chars(rest_.data(), rest_.data() + colon, length);
    if (ec != std::errc() || ptr != rest_.data() + colon) return fail();
    rest_.remove_prefix(colon + 1);
    if (length >= rest_.size() || rest_[length] != '\n') return fail(); // (length + 1 could wrap)
    out.assign(rest_.data(), length);
    rest_.remove_prefix(length + 1);
    return *this;
  }

  /// Bytes not read yet (a count read from the bytes can be checked against it).
  std::size_t left() const noexcept { return rest_.size(); }
  /// Every field read and nothing left over.
  bool done() const noexcept { return ok_ && rest_.empty(); }
  bool ok() const noexcept { return ok_; }

private:
  field_reader& fail() {
    ok_ = false;
    return *this;
  }

  std::string_view rest_;
  bool ok_ = false;
};

} // namespace checkout::detail
