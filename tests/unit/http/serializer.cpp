#include <bulwark/http/detail/serializer.hpp>

#include <bulwark/http/parser.hpp>

#include <gtest/gtest.h>

#include <string>

namespace http = bulwark::http;

namespace {

// The serializer's output, parsed back by the parser that reads what peers send.
http::response parse_response(const std::string& wire, bool head = false) {
  http::response_parser p(http::parser_limits{});
  p.expect_no_body(head);
  EXPECT_EQ(p.feed(wire), wire.size()) << wire;
  EXPECT_TRUE(p.complete()) << wire;
  return p.release();
}

} // namespace

TEST(http_serializer, response_framing_comes_from_the_serializer_not_the_headers) {
  http::response r(200, "text/plain", "hello");
  r.headers.set("Content-Length", "999");
  r.headers.set("Transfer-Encoding", "chunked");
  r.headers.set("Connection", "upgrade");
  r.headers.add("X-Two", "a");
  r.headers.add("X-Two", "b");
  std::string wire;
  http::detail::append_response(wire, r, true, 1);
  EXPECT_TRUE(wire.starts_with("HTTP/1.1 200 OK\r\nDate: ")) << wire;
  EXPECT_NE(wire.find("\r\nContent-Length: 5\r\n"), std::string::npos) << wire;
  EXPECT_EQ(wire.find("999"), std::string::npos) << wire;
  EXPECT_EQ(wire.find("Transfer-Encoding"), std::string::npos) << wire;
  EXPECT_EQ(wire.find("Connection"), std::string::npos) << wire;
  EXPECT_TRUE(wire.ends_with("\r\n\r\nhello")) << wire;
  const auto back = parse_response(wire);
  EXPECT_EQ(back.body, "hello");
  EXPECT_EQ(back.headers.count("X-Two"), 2u);
}

TEST(http_serializer, connection_head_and_bodiless_statuses) {
  std::string closing, head, not_modified, old_client;
  http::detail::append_response(closing, http::response(200, "text/plain", "x"), false, 1);
  EXPECT_NE(closing.find("\r\nConnection: close\r\n"), std::string::npos) << closing;
  http::detail::append_response(head, http::response(200, "text/plain", "abc"), true, 1, true);
  EXPECT_NE(head.find("\r\nContent-Length: 3\r\n"), std::string::npos) << head;
  EXPECT_TRUE(head.ends_with("\r\n\r\n")) << head;
  EXPECT_EQ(parse_response(head, true).body, "");
  http::detail::append_response(not_modified, http::response(304), true, 1);
  EXPECT_EQ(not_modified.find("Content-Length"), std::string::npos) << not_modified;
  http::detail::append_response(old_client, http::response(200, "text/plain", "x"), true, 0);
  EXPECT_NE(old_client.find("\r\nConnection: keep-alive\r\n"), std::string::npos) << old_client;
}

TEST(http_serializer, streamed_heads_and_chunks) {
  std::string wire;
  http::detail::append_response_head(wire, http::response(200, "text/plain", ""), std::nullopt, true, 1);
  EXPECT_NE(wire.find("\r\nTransfer-Encoding: chunked\r\n"), std::string::npos) << wire;
  http::detail::append_chunk(wire, std::string(26, 'z'));
  http::detail::append_chunk(wire, "");
  EXPECT_TRUE(wire.ends_with("\r\n\r\n1a\r\nzzzzzzzzzzzzzzzzzzzzzzzzzz\r\n0\r\n\r\n")) << wire;
  EXPECT_EQ(parse_response(wire).body, std::string(26, 'z'));
  std::string old_client;
  http::detail::append_response_head(old_client, http::response(200), std::nullopt, false, 0);
  EXPECT_EQ(old_client.find("Transfer-Encoding"), std::string::npos) << old_client; // ends with the connection
}

TEST(http_serializer, requests_get_host_and_content_length) {
  http::request get;
  get.method = "GET";
  get.target = "";
  get.headers.set("Content-Length", "7");
  std::string wire;
  http::detail::append_request(wire, get, "::1", 8080);
  EXPECT_EQ(wire, "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");

  http::request post;
  post.method = "POST";
  post.target = "/a?b=1";
  post.headers.set("Host", "example");
  post.headers.set("Connection", "close");
  wire.clear();
  http::detail::append_request(wire, post, "127.0.0.1", 80);
  EXPECT_EQ(wire, "POST /a?b=1 HTTP/1.1\r\nHost: example\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  post.body = "data";
  wire.clear();
  http::detail::append_request(wire, post, "127.0.0.1", 80);
  http::request_parser p(http::parser_limits{});
  EXPECT_EQ(p.feed(wire), wire.size());
  ASSERT_TRUE(p.complete()) << wire;
  const auto back = p.release();
  EXPECT_EQ(back.body, "data");
  EXPECT_EQ(back.target, "/a?b=1");
  EXPECT_FALSE(back.keep_alive);
}
