#include <bulwark/http/parser.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace http = bulwark::http;

namespace {

struct outcome {
  http::parse_status status;
  int error = 0;
  http::request req;
  std::size_t consumed = 0;
};

outcome parse(std::string_view text, http::parser_limits limits = {}) {
  http::request_parser p(limits);
  outcome o;
  o.consumed = p.feed(text);
  o.status = p.status();
  o.error = p.error_status();
  if (p.complete()) o.req = p.release();
  return o;
}

int rejects(std::string_view text, http::parser_limits limits = {}) {
  auto o = parse(text, limits);
  EXPECT_EQ(o.status, http::parse_status::failed) << text;
  return o.error;
}

const std::vector<std::string> valid_messages = {
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "GET /x/y?q=1&r=2 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n",
    "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
    "PUT /k HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    "GET / HTTP/1.1\r\nHost:a\r\nX-Empty:\r\nX-Tab: \tv\t \r\n\r\n",
};

} // namespace

TEST(http_parser, parses_a_simple_get) {
  auto o = parse("GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-A:  v  \r\n\r\n");
  ASSERT_EQ(o.status, http::parse_status::complete);
  EXPECT_EQ(o.req.method, "GET");
  EXPECT_EQ(o.req.target, "/a/b?x=1");
  EXPECT_EQ(o.req.path(), "/a/b");
  EXPECT_EQ(o.req.query(), "x=1");
  EXPECT_EQ(o.req.headers.value_or("x-a", ""), "v");
  EXPECT_EQ(o.req.headers.value_or("HOST", ""), "h");
  EXPECT_TRUE(o.req.keep_alive);
}

TEST(http_parser, keep_alive_rules) {
  EXPECT_FALSE(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").req.keep_alive);
  EXPECT_FALSE(parse("GET / HTTP/1.0\r\n\r\n").req.keep_alive);
  EXPECT_TRUE(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").req.keep_alive);
  EXPECT_FALSE(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, close\r\n\r\n").req.keep_alive);
}

TEST(http_parser, decodes_chunked_body_and_drops_trailers) {
  auto o = parse(valid_messages[4]);
  ASSERT_EQ(o.status, http::parse_status::complete);
  EXPECT_EQ(o.req.body, "hello world");
  EXPECT_EQ(o.consumed, valid_messages[4].size());
}

TEST(http_parser, stops_at_the_end_of_one_message) {
  std::string two = valid_messages[3] + valid_messages[0];
  http::request_parser p;
  auto n = p.feed(two);
  ASSERT_TRUE(p.complete());
  EXPECT_EQ(n, valid_messages[3].size());
  EXPECT_EQ(p.release().body, "hello");
  p.reset();
  EXPECT_EQ(p.feed(std::string_view(two).substr(n)), valid_messages[0].size());
  EXPECT_TRUE(p.complete());
}

TEST(http_parser, every_valid_message_split_at_every_offset) {
  for (const auto& m : valid_messages) {
    const auto whole = parse(m);
    ASSERT_EQ(whole.status, http::parse_status::complete) << m;
    for (std::size_t cut = 0; cut <= m.size(); ++cut) {
      for (std::size_t cut2 = cut; cut2 <= m.size();
           cut2 += (cut2 == m.size() ? 1 : std::max<std::size_t>(1, m.size() / 7))) {
        http::request_parser p;
        std::size_t used = p.feed(std::string_view(m).substr(0, cut));
        ASSERT_EQ(used, cut) << m << " cut " << cut;
        used += p.feed(std::string_view(m).substr(cut, cut2 - cut));
        used += p.feed(std::string_view(m).substr(cut2));
        ASSERT_TRUE(p.complete()) << m << " cut " << cut << "/" << cut2;
        ASSERT_EQ(used, m.size());
        auto r = p.release();
        EXPECT_EQ(r.method, whole.req.method);
        EXPECT_EQ(r.target, whole.req.target);
        EXPECT_EQ(r.body, whole.req.body);
        EXPECT_EQ(r.headers.size(), whole.req.headers.size());
      }
    }
    // One byte at a time.
    http::request_parser p;
    for (char c : m) ASSERT_EQ(p.feed(std::string_view(&c, 1)), 1u) << m;
    EXPECT_TRUE(p.complete()) << m;
  }
}

TEST(http_parser, expect_continue) {
  http::request_parser p;
  std::string_view m = valid_messages[7];
  auto head_end = m.find("\r\n\r\n") + 4;
  p.feed(m.substr(0, head_end));
  EXPECT_TRUE(p.head_done());
  EXPECT_FALSE(p.complete());
  EXPECT_TRUE(p.expects_continue());
  p.feed(m.substr(head_end));
  EXPECT_TRUE(p.complete());
  // No body, no 100 Continue.
  http::request_parser q;
  q.feed("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_FALSE(q.expects_continue());
}

TEST(http_parser, limits) {
  http::parser_limits l;
  l.max_request_line = 32;
  l.max_header_bytes = 64;
  l.max_headers = 3;
  l.max_body = 10;
  EXPECT_EQ(rejects("GET /" + std::string(40, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", l), 414);
  // The 414 comes as soon as the line is too long, without waiting for its end.
  EXPECT_EQ(rejects("GET /" + std::string(40, 'a'), l), 414);
  EXPECT_EQ(rejects("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(80, 'v') + "\r\n\r\n", l), 431);
  EXPECT_EQ(rejects("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", l), 431);
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", l), 413);
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n", l), 413);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789", l).status,
            http::parse_status::complete);
  EXPECT_EQ(parse("GET /" + std::string(18, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", l).status,
            http::parse_status::complete);
}

TEST(http_parser, rejects_malformed_lines) {
  EXPECT_EQ(rejects("GET / HTTP/1.1\nHost: a\r\n\r\n"), 400);         // bare LF
  EXPECT_EQ(rejects("GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n"), 400); // bare CR
  EXPECT_EQ(rejects("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);      // double space
  EXPECT_EQ(rejects("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(rejects("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400); // method not a token
  EXPECT_EQ(rejects("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(rejects("GET / HTTP/1.x\r\nHost: a\r\n\r\n"), 400);
  EXPECT_EQ(rejects("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
  EXPECT_EQ(rejects("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400); // space before colon
  EXPECT_EQ(rejects("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), 400);
  EXPECT_EQ(rejects("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n"), 400);
  EXPECT_EQ(rejects("GET / HTTP/1.1\r\n\r\n"), 400); // no Host
  EXPECT_EQ(rejects("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
}

TEST(http_parser, rejects_request_smuggling_vectors) {
  // Obsolete line folding.
  EXPECT_EQ(rejects("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n"), 400);
  EXPECT_EQ(rejects("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\tTransfer-Encoding: chunked\r\n\r\n"), 400);
  // Content-Length: repeated, conflicting, listed, signed, non-numeric.
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"), 400);
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"), 400);
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc"), 400);
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc"), 400);
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc"), 400);
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n"), 400);
  // CL + TE, in both orders, and TE spelled oddly.
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400);
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"),
            400);
  // Whitespace before the colon is the classic "Transfer-Encoding : chunked" desync.
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"), 400);
  // Final coding not chunked, chunked twice, unknown coding, TE in HTTP/1.0.
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), 400);
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"), 400);
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n"), 400);
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), 400);
  EXPECT_EQ(rejects("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
  EXPECT_EQ(rejects("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400);
  // Bad chunk sizes.
  const std::string te = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(rejects(te + "\r\n"), 400);   // empty size
  EXPECT_EQ(rejects(te + "-1\r\n"), 400); // signed
  EXPECT_EQ(rejects(te + "+5\r\nhello\r\n0\r\n\r\n"), 400);
  EXPECT_EQ(rejects(te + "0x5\r\nhello\r\n0\r\n\r\n"), 400);
  EXPECT_EQ(rejects(te + "5 5\r\nhello\r\n0\r\n\r\n"), 400);
  EXPECT_EQ(rejects(te + "g\r\n"), 400);
  EXPECT_EQ(rejects(te + "1000000000000000000\r\n"), 400); // overflow
  EXPECT_EQ(rejects(te + "5\nhello\r\n0\r\n\r\n"), 400);   // bare LF after size
  EXPECT_EQ(rejects(te + "5\r\nhelloXX0\r\n\r\n"), 400);   // chunk longer than its size
  EXPECT_EQ(rejects(te + "5\r\nhello\r\n0\r\nX: 1\n\r\n"), 400);
  // BWS before an extension is fine.
  EXPECT_EQ(parse(te + "5 ;a=b\r\nhello\r\n0\r\n\r\n").status, http::parse_status::complete);
}

TEST(http_parser, response_parser_framings) {
  {
    http::response_parser p;
    std::string m = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    EXPECT_EQ(p.feed(m), m.size());
    ASSERT_TRUE(p.complete());
    auto r = p.release();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "hi");
    EXPECT_FALSE(r.close);
  }
  {
    http::response_parser p;
    std::string m = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
    EXPECT_EQ(p.feed(m), m.size());
    ASSERT_TRUE(p.complete());
    EXPECT_EQ(p.release().body, "hi");
  }
  {
    http::response_parser p;
    p.feed("HTTP/1.1 200 OK\r\n\r\nuntil close");
    EXPECT_FALSE(p.complete());
    p.finish_eof();
    ASSERT_TRUE(p.complete());
    auto r = p.release();
    EXPECT_EQ(r.body, "until close");
    EXPECT_TRUE(r.close);
  }
  {
    http::response_parser p;
    p.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
    p.finish_eof();
    EXPECT_TRUE(p.failed());
  }
  {
    http::response_parser p;
    p.expect_no_body(true);
    EXPECT_EQ(p.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"), 39u);
    EXPECT_TRUE(p.complete());
  }
  {
    http::response_parser p;
    p.feed("HTTP/1.1 204 No Content\r\n\r\n");
    EXPECT_TRUE(p.complete());
    p.reset();
    p.feed("HTTP/1.1 100 Continue\r\n\r\n");
    EXPECT_TRUE(p.complete());
    EXPECT_EQ(p.status_code(), 100);
  }
  {
    http::response_parser p;
    p.feed("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n");
    EXPECT_TRUE(p.complete());
    http::response_parser q;
    q.feed("HTTP/1.1 2x0 OK\r\n\r\n");
    EXPECT_TRUE(q.failed());
  }
}
