#pragma once
// A strict, incremental HTTP/1.1 parser for requests (the server) and responses (the client).
//
// feed() takes whatever bytes have arrived, in pieces of any size, and consumes a prefix: it
// stops at the end of one message, so the bytes after it (a pipelined request) stay with the
// caller. The parser keeps the header section in its own buffer and decodes the body (including
// chunked framing) as it arrives.
//
// What it rejects (RFC 9112), with the status a server answers:
//   400  a bare CR or LF, a malformed request line or field line, whitespace before a field's
//        colon, obsolete line folding, control characters in a value, a missing or repeated Host
//        (HTTP/1.1), a repeated Content-Length (even with equal values) or a non-numeric one,
//        Content-Length together with Transfer-Encoding, Transfer-Encoding in HTTP/1.0, a
//        Transfer-Encoding whose final coding is not chunked or that names chunked twice, a bad
//        chunk size (empty, non-hex, too long, signed, trailing garbage) or missing chunk CRLF
//   413  a body (declared or chunked) larger than limits.max_body
//   414  a request line longer than limits.max_request_line
//   431  more than limits.max_headers fields, or field lines longer than limits.max_header_bytes
//   501  a transfer coding other than chunked (ends in chunked, but we decode no other coding)
//   505  an HTTP version other than 1.0 and 1.1

#include <bulwark/http/message.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace bulwark::http {

/// Size limits; exceeding one fails the parse with the status in the comment.
struct parser_limits {
  std::size_t max_request_line = 8 * 1024;  ///< request or status line (414)
  std::size_t max_header_bytes = 16 * 1024; ///< all field lines together, also trailers (431)
  std::size_t max_headers = 100;            ///< number of field lines (431)
  std::size_t max_body = 8 * 1024 * 1024;   ///< decoded body (413)
};

enum class parse_status { need_more, complete, failed };

namespace detail {

constexpr bool is_tchar(unsigned char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
  case '!':
  case '#':
  case '$':
  case '%':
  case '&':
  case '\'':
  case '*':
  case '+':
  case '-':
  case '.':
  case '^':
  case '_':
  case '`':
  case '|':
  case '~': return true;
  }
  return false;
}

constexpr bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

constexpr std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

/// Calls f(element) for each non-empty element of a comma-separated list, trimmed.
template <class F> constexpr void for_each_list_element(std::string_view list, F&& f) {
  while (true) {
    auto comma = list.find(',');
    auto element = trim_ows(list.substr(0, comma));
    if (!element.empty()) f(element);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

/// True when the comma-separated `list` contains `token` (case-insensitive).
constexpr bool list_contains(std::string_view list, std::string_view token) noexcept {
  bool found = false;
  for_each_list_element(list, [&](std::string_view e) { found = found || iequals(e, token); });
  return found;
}

/// Parses 1*DIGIT into `out`; false on anything else or on overflow.
constexpr bool parse_decimal(std::string_view s, std::uint64_t& out) noexcept {
  if (s.empty() || s.size() > 19) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  out = v;
  return true;
}

/// The parser shared by request_parser and response_parser.
class message_parser {
public:
  enum class kind { request, response };

  message_parser(kind k, parser_limits limits) : kind_(k), limits_(limits) {}

  std::size_t feed(std::string_view data) {
    std::size_t used = 0;
    while (used < data.size() && status_ == parse_status::need_more) {
      if (state_ == state::head) {
        used += feed_head(data.substr(used));
      } else {
        used += feed_body(data.substr(used));
      }
    }
    return used;
  }

  /// For close-delimited response bodies: the peer closed the connection.
  void finish_eof() {
    if (status_ != parse_status::need_more) return;
    if (state_ == state::body_until_close) {
      status_ = parse_status::complete;
      state_ = state::done;
    } else {
      fail(400, "connection closed before the message ended");
    }
  }

  void reset() {
    state_ = state::head;
    status_ = parse_status::need_more;
    head_.clear();
    line_len_ = 0;
    header_bytes_ = 0;
    field_lines_ = 0;
    start_line_end_ = 0;
    start_offset_ = 0;
    start_line_seen_ = false;
    prev_cr_ = false;
    leading_empty_ = 0;
    remaining_ = 0;
    chunk_digits_ = 0;
    expects_continue_ = false;
    error_status_ = 0;
    error_reason_ = {};
    head_parsed_ = false;
    body_.clear();
    headers_.clear();
    method_.clear();
    target_.clear();
    reason_.clear();
    status_code_ = 0;
    version_minor_ = 1;
    keep_alive_ = true;
  }

  parse_status status() const noexcept { return status_; }
  bool head_done() const noexcept { return head_parsed_; }
  /// True once at least one byte of the next message has been consumed.
  bool started() const noexcept { return state_ != state::head || head_.size() > start_offset_; }
  bool expects_continue() const noexcept { return expects_continue_; }
  int error_status() const noexcept { return error_status_; }
  std::string_view error_reason() const noexcept { return error_reason_; }

  /// For responses to HEAD and similar: the caller knows there is no body.
  void set_no_body_expected(bool v) noexcept { no_body_ = v; }

  kind kind_;
  parser_limits limits_;
  std::string method_, target_, reason_, body_;
  fields headers_;
  int status_code_ = 0;
  int version_minor_ = 1;
  bool keep_alive_ = true;

private:
  enum class state {
    head,
    body_length,
    body_until_close,
    chunk_size,
    chunk_size_ws,
    chunk_ext,
    chunk_size_lf,
    chunk_data,
    chunk_data_cr,
    chunk_data_lf,
    trailer,
    done
  };

  void fail(int status, std::string_view reason) {
    status_ = parse_status::failed;
    error_status_ = status;
    error_reason_ = reason;
  }

  // Scans the header section byte by byte so limits and bare CR/LF are caught as soon as
  // they happen, not when the section ends.
  std::size_t feed_head(std::string_view data) {
    std::size_t i = 0;
    bool end = false;
    const std::size_t base = head_.size(); // offset of data[0] within head_ once appended
    for (; i < data.size(); ++i) {
      const char c = data[i];
      if (prev_cr_) {
        if (c != '\n') {
          fail(400, "bare CR");
          return i;
        }
        prev_cr_ = false;
        if (!start_line_seen_) {
          if (line_len_ == 0) {
            // An empty line before the start line is tolerated (RFC 9112 2.2), a few times.
            if (++leading_empty_ > 4) {
              fail(400, "too many empty lines");
              return i;
            }
            start_offset_ = base + i + 1;
            continue;
          }
          start_line_seen_ = true;
          start_line_end_ = base + i - 1; // the CR
        } else if (line_len_ == 0) {
          end = true;
          ++i;
          break;
        } else if (++field_lines_ > limits_.max_headers) {
          fail(431, "too many header fields");
          return i;
        }
        line_len_ = 0;
      } else if (c == '\r') {
        prev_cr_ = true;
      } else if (c == '\n') {
        fail(400, "bare LF");
        return i;
      } else {
        ++line_len_;
        if (!start_line_seen_) {
          if (line_len_ > limits_.max_request_line) {
            fail(kind_ == kind::request ? 414 : 400, "request line too long");
            return i;
          }
        } else if (++header_bytes_ > limits_.max_header_bytes) {
          fail(431, "header section too large");
          return i;
        }
      }
    }
    head_.append(data.substr(0, i));
    if (end) parse_head();
    return i;
  }

  void parse_head() {
    head_parsed_ = true;
    std::string_view head = head_;
    std::string_view start = head.substr(start_offset_, start_line_end_ - start_offset_);
    std::string_view rest = head.substr(start_line_end_ + 2);
    if (kind_ == kind::request ? !parse_request_line(start) : !parse_status_line(start)) return;
    // Field lines: rest ends with "\r\n" (the empty line's CRLF was consumed too).
    while (!rest.empty()) {
      auto eol = rest.find("\r\n");
      std::string_view line = rest.substr(0, eol);
      rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 2);
      if (line.empty()) break;
      if (line.front() == ' ' || line.front() == '\t') return fail(400, "obsolete line folding");
      auto colon = line.find(':');
      if (colon == std::string_view::npos) return fail(400, "field line without colon");
      std::string_view name = line.substr(0, colon);
      if (!is_token(name)) return fail(400, "invalid field name");
      std::string_view value = trim_ows(line.substr(colon + 1));
      for (unsigned char ch : value)
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return fail(400, "control character in field value");
      headers_.add(std::string(name), std::string(value));
    }
    decide_framing();
  }

  bool parse_version(std::string_view v) {
    if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' || v[7] < '0' ||
        v[7] > '9') {
      fail(400, "malformed HTTP version");
      return false;
    }
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) {
      fail(505, "unsupported HTTP version");
      return false;
    }
    version_minor_ = v[7] - '0';
    return true;
  }

  bool parse_request_line(std::string_view line) {
    auto sp1 = line.find(' ');
    if (sp1 == std::string_view::npos) return fail(400, "malformed request line"), false;
    auto sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
      return fail(400, "malformed request line"), false;
    std::string_view method = line.substr(0, sp1);
    std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    if (!is_token(method)) return fail(400, "invalid method"), false;
    if (target.empty()) return fail(400, "empty request target"), false;
    for (unsigned char c : target)
      if (c <= 0x20 || c >= 0x7f) return fail(400, "invalid character in request target"), false;
    if (!parse_version(line.substr(sp2 + 1))) return false;
    method_.assign(method);
    target_.assign(target);
    return true;
  }

  bool parse_status_line(std::string_view line) {
    // HTTP-version SP 3DIGIT SP [reason]; tolerate a missing reason with its space.
    if (line.size() < 12 || line[8] != ' ') return fail(400, "malformed status line"), false;
    if (!parse_version(line.substr(0, 8))) return false;
    std::string_view code = line.substr(9, 3);
    for (char c : code)
      if (c < '0' || c > '9') return fail(400, "malformed status code"), false;
    if (line.size() > 12 && line[12] != ' ') return fail(400, "malformed status line"), false;
    status_code_ = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
    if (status_code_ < 100) return fail(400, "malformed status code"), false;
    reason_.assign(line.size() > 13 ? line.substr(13) : std::string_view());
    return true;
  }

  void decide_framing() {
    // Connection persistence (RFC 9112 9.3).
    bool close = false, ka = false;
    for (const auto& [n, v] : headers_) {
      if (!iequals(n, "Connection")) continue;
      close = close || list_contains(v, "close");
      ka = ka || list_contains(v, "keep-alive");
    }
    keep_alive_ = version_minor_ == 1 ? !close : (ka && !close);

    const std::size_t cl_count = headers_.count("Content-Length");
    const std::size_t te_count = headers_.count("Transfer-Encoding");
    if (kind_ == kind::request) {
      if (version_minor_ == 1 && headers_.count("Host") != 1) return fail(400, "missing or repeated Host");
    }
    if (cl_count > 1) return fail(400, "repeated Content-Length");
    if (te_count > 0) {
      if (cl_count > 0) return fail(400, "Content-Length with Transfer-Encoding");
      if (version_minor_ == 0) return fail(400, "Transfer-Encoding in HTTP/1.0");
      // The codings across all fields, in order; only the last may be (and must be) chunked.
      std::size_t codings = 0, chunked_at = 0, chunked_count = 0;
      bool other = false;
      for (const auto& [n, v] : headers_) {
        if (!iequals(n, "Transfer-Encoding")) continue;
        for_each_list_element(v, [&](std::string_view coding) {
          ++codings;
          auto name = trim_ows(coding.substr(0, coding.find(';')));
          if (iequals(name, "chunked")) {
            ++chunked_count;
            chunked_at = codings;
          } else {
            other = true;
          }
        });
      }
      const bool final_chunked = chunked_count > 0 && chunked_at == codings;
      if (kind_ == kind::response) {
        if (no_body_ || status_code_ / 100 == 1 || status_code_ == 204 || status_code_ == 304) return finish();
        if (final_chunked && chunked_count == 1 && !other) return enter_chunked();
        if (chunked_count > 1) return fail(400, "chunked applied twice");
        state_ = state::body_until_close;
        keep_alive_ = false;
        return;
      }
      if (!final_chunked) return fail(400, "final transfer coding is not chunked");
      if (chunked_count > 1) return fail(400, "chunked applied twice");
      if (other) return fail(501, "unsupported transfer coding");
      set_continue(true);
      return enter_chunked();
    }
    if (kind_ == kind::response && (no_body_ || status_code_ / 100 == 1 || status_code_ == 204 || status_code_ == 304))
      return finish();
    if (cl_count == 1) {
      std::uint64_t n = 0;
      if (!parse_decimal(*headers_.get("Content-Length"), n)) return fail(400, "invalid Content-Length");
      if (n > limits_.max_body) return fail(413, "body too large");
      remaining_ = n;
      if (n == 0) return finish();
      set_continue(true);
      state_ = state::body_length;
      body_.reserve(static_cast<std::size_t>(n));
      return;
    }
    if (kind_ == kind::response) {
      state_ = state::body_until_close;
      keep_alive_ = false;
      return;
    }
    finish();
  }

  void set_continue(bool body_expected) {
    if (kind_ != kind::request || !body_expected || version_minor_ != 1) return;
    if (auto e = headers_.get("Expect"); e && iequals(*e, "100-continue")) expects_continue_ = true;
  }

  void enter_chunked() {
    state_ = state::chunk_size;
    remaining_ = 0;
    chunk_digits_ = 0;
  }

  void finish() {
    state_ = state::done;
    status_ = parse_status::complete;
  }

  static int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  std::size_t feed_body(std::string_view data) {
    std::size_t i = 0;
    while (i < data.size() && status_ == parse_status::need_more) {
      const char c = data[i];
      switch (state_) {
      case state::body_length: {
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, data.size() - i));
        body_.append(data.substr(i, n));
        i += n;
        remaining_ -= n;
        if (remaining_ == 0) finish();
        break;
      }
      case state::body_until_close: {
        auto n = data.size() - i;
        if (body_.size() + n > limits_.max_body) return fail(413, "body too large"), i;
        body_.append(data.substr(i));
        i = data.size();
        break;
      }
      case state::chunk_size: {
        int h = hex_value(c);
        if (h >= 0) {
          if (++chunk_digits_ > 15) return fail(400, "chunk size too long"), i;
          remaining_ = remaining_ * 16 + static_cast<std::uint64_t>(h);
        } else if (chunk_digits_ == 0) {
          return fail(400, "bad chunk size"), i;
        } else if (c == '\r') {
          state_ = state::chunk_size_lf;
        } else if (c == ';') {
          state_ = state::chunk_ext;
          ext_bytes_ = 0;
        } else if (c == ' ' || c == '\t') {
          state_ = state::chunk_size_ws;
        } else {
          return fail(400, "bad chunk size"), i;
        }
        ++i;
        break;
      }
      case state::chunk_size_ws:
        // BWS is allowed only before a chunk extension.
        if (c == ';') {
          state_ = state::chunk_ext;
          ext_bytes_ = 0;
        } else if (c != ' ' && c != '\t') {
          return fail(400, "bad chunk size"), i;
        }
        ++i;
        break;
      case state::chunk_ext:
        if (c == '\r') {
          state_ = state::chunk_size_lf;
        } else if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
          return fail(400, "bad chunk extension"), i;
        } else if (++ext_bytes_ > 4096) {
          return fail(400, "chunk extension too long"), i;
        }
        ++i;
        break;
      case state::chunk_size_lf:
        if (c != '\n') return fail(400, "bad chunk size line"), i;
        ++i;
        if (remaining_ == 0) {
          state_ = state::trailer;
          line_len_ = 0;
          prev_cr_ = false;
          header_bytes_ = 0;
        } else if (body_.size() + remaining_ > limits_.max_body) {
          return fail(413, "body too large"), i;
        } else {
          state_ = state::chunk_data;
        }
        chunk_digits_ = 0;
        break;
      case state::chunk_data: {
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, data.size() - i));
        body_.append(data.substr(i, n));
        i += n;
        remaining_ -= n;
        if (remaining_ == 0) state_ = state::chunk_data_cr;
        break;
      }
      case state::chunk_data_cr:
        if (c != '\r') return fail(400, "missing CRLF after chunk data"), i;
        state_ = state::chunk_data_lf;
        ++i;
        break;
      case state::chunk_data_lf:
        if (c != '\n') return fail(400, "missing CRLF after chunk data"), i;
        state_ = state::chunk_size;
        ++i;
        break;
      case state::trailer:
        // Trailer fields are read and dropped: nothing we do depends on them.
        ++i;
        if (prev_cr_) {
          if (c != '\n') return fail(400, "bare CR"), i;
          prev_cr_ = false;
          if (line_len_ == 0) {
            finish();
          } else {
            line_len_ = 0;
          }
        } else if (c == '\r') {
          prev_cr_ = true;
        } else if (c == '\n') {
          return fail(400, "bare LF"), i;
        } else if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
          return fail(400, "control character in trailer"), i;
        } else {
          ++line_len_;
          if (++header_bytes_ > limits_.max_header_bytes) return fail(431, "trailer section too large"), i;
        }
        break;
      case state::head:
      case state::done: return i;
      }
    }
    return i;
  }

  state state_ = state::head;
  parse_status status_ = parse_status::need_more;
  std::string head_;
  std::size_t line_len_ = 0, header_bytes_ = 0, field_lines_ = 0, start_line_end_ = 0, leading_empty_ = 0;
  std::size_t ext_bytes_ = 0, start_offset_ = 0;
  bool start_line_seen_ = false;
  bool prev_cr_ = false;
  bool head_parsed_ = false;
  bool expects_continue_ = false;
  bool no_body_ = false;
  std::uint64_t remaining_ = 0;
  int chunk_digits_ = 0;
  int error_status_ = 0;
  std::string_view error_reason_;
};

} // namespace detail

/// Parses requests; one parser serves a whole connection (reset() between requests).
class request_parser {
public:
  explicit request_parser(parser_limits limits = {}) : p_(detail::message_parser::kind::request, limits) {}

  /// Consumes a prefix of `data` (stopping at the end of one request) and returns its length.
  std::size_t feed(std::string_view data) { return p_.feed(data); }
  parse_status status() const noexcept { return p_.status(); }
  bool complete() const noexcept { return p_.status() == parse_status::complete; }
  bool failed() const noexcept { return p_.status() == parse_status::failed; }
  /// The header section has been parsed (the body may still be arriving).
  bool head_done() const noexcept { return p_.head_done(); }
  /// Some bytes of a request have arrived (for read vs idle timeouts).
  bool started() const noexcept { return p_.started(); }
  /// The client sent `Expect: 100-continue` and a body is still to come.
  bool expects_continue() const noexcept { return p_.expects_continue(); }
  /// When failed(): the status to answer with (400, 413, 414, 431, 501, 505) and why.
  int error_status() const noexcept { return p_.error_status(); }
  std::string_view error_reason() const noexcept { return p_.error_reason(); }
  /// The limits in force.
  const parser_limits& limits() const noexcept { return p_.limits_; }

  /// Moves the complete request out; call reset() before the next one.
  request release() {
    request r;
    r.method = std::move(p_.method_);
    r.target = std::move(p_.target_);
    r.version_minor = p_.version_minor_;
    r.headers = std::move(p_.headers_);
    r.body = std::move(p_.body_);
    r.keep_alive = p_.keep_alive_;
    return r;
  }
  void reset() { p_.reset(); }

private:
  detail::message_parser p_;
};

/// Parses responses (the client side); handles Content-Length, chunked and close-delimited
/// bodies and the no-body cases (1xx, 204, 304, and any answer to HEAD).
class response_parser {
public:
  explicit response_parser(parser_limits limits = {}) : p_(detail::message_parser::kind::response, limits) {}

  std::size_t feed(std::string_view data) { return p_.feed(data); }
  /// The server closed the connection: completes a close-delimited body, fails anything else.
  void finish_eof() { p_.finish_eof(); }
  /// The request was HEAD: the response has no body whatever its headers say.
  void expect_no_body(bool v) { p_.set_no_body_expected(v); }
  parse_status status() const noexcept { return p_.status(); }
  bool complete() const noexcept { return p_.status() == parse_status::complete; }
  bool failed() const noexcept { return p_.status() == parse_status::failed; }
  bool head_done() const noexcept { return p_.head_done(); }
  bool started() const noexcept { return p_.started(); }
  std::string_view error_reason() const noexcept { return p_.error_reason(); }
  int status_code() const noexcept { return p_.status_code_; }
  /// Whether the connection may carry another request after this response.
  bool keep_alive() const noexcept { return p_.keep_alive_; }

  response release() {
    response r;
    r.status = p_.status_code_;
    r.headers = std::move(p_.headers_);
    r.body = std::move(p_.body_);
    r.close = !p_.keep_alive_;
    return r;
  }
  void reset() { p_.reset(); }

private:
  detail::message_parser p_;
};

} // namespace bulwark::http
