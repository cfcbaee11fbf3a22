#pragma once
// Request ids for the writes that bring none (flows::write_through): 15 characters of the
// URL-safe base64 alphabet, short enough for std::string's inline buffer, so that an id, its
// copy in the write's receipt and the moves between them allocate nothing (a 32-digit hex id
// cost a durable write ~260 of its ~3,000 instructions, its heap copy included).
//
//     characters 0..9    a 60-bit tag, drawn per thread from std::random_device, and again after
//                        every 2^30 ids
//     characters 10..14  a 30-bit counter, counted up from 0 under each tag
//
// Unique within a thread; across threads, processes and replicas unless two tags meet: with a
// million tags ever drawn, a chance of about 4e-7. write_through and retry_replayer tell a write
// by its request id and its order stamp together, so even such a meeting confuses two writes only
// if they also carry the same stamp. Sequential, not secret: not for tokens.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>

namespace bulwark::detail {

inline constexpr std::size_t request_id_chars = 15;
/// RFC 4648's URL-safe alphabet: safe in headers, URLs, JSON and logs as it is.
inline constexpr char request_id_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// One thread's ids. `draw` gives 64 random bits for each tag (60 of them are used).
class request_id_source {
public:
  using draw_fn = std::uint64_t (*)();
  static constexpr std::uint32_t ids_per_tag = std::uint32_t{1} << 30;

  /// `first`: the counter of the first id (a test starts near the end of a tag).
  explicit request_id_source(draw_fn draw = random_word, std::uint32_t first = 0) : draw_(draw), count_(first) {
    if (count_ >= ids_per_tag) count_ = 0;
    retag();
    format_counter();
  }

  /// Writes the next id to out[0..14]. Cost: ~15 instructions: the id is kept as text and its
  /// last character counted up in place; the other counter digits are formatted every 64th id,
  /// a new tag drawn every 2^30th.
  void next(char* out) {
    std::memcpy(out, text_, request_id_chars);
    if ((++count_ & 63) != 0) {
      text_[request_id_chars - 1] = request_id_alphabet[count_ & 63];
      return;
    }
    if (count_ >= ids_per_tag) {
      retag();
      count_ = 0;
    }
    format_counter();
  }

  /// 64 bits from std::random_device.
  static std::uint64_t random_word() {
    std::random_device rd;
    return (std::uint64_t{rd()} << 32) | rd();
  }

private:
  void retag() {
    const std::uint64_t t = draw_();
    for (std::size_t i = 0; i < 10; ++i) text_[i] = request_id_alphabet[(t >> (54 - 6 * i)) & 63];
  }
  void format_counter() {
    for (std::size_t i = 0; i < 5; ++i) text_[10 + i] = request_id_alphabet[(count_ >> (24 - 6 * i)) & 63];
  }

  draw_fn draw_;
  std::uint32_t count_; // the counter of the id in text_
  char text_[request_id_chars];
};

/// The calling thread's next id, written to out[0..14].
inline void next_request_id(char* out) {
  thread_local request_id_source source;
  source.next(out);
}

} // namespace bulwark::detail
