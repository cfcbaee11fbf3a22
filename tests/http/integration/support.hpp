#pragma once
// A deliberately plain blocking client over POSIX sockets, so the server is tested by code
// that shares nothing with bulwark's own client. Every read is bounded by SO_RCVTIMEO.

#include <bulwark/http/parser.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace bulwark::test {

class raw_client {
public:
  explicit raw_client(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~raw_client() {
    if (fd_ >= 0) ::close(fd_);
  }
  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;

  bool connected() const { return connected_; }
  void send(std::string_view data) {
    while (!data.empty()) {
      auto n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  /// Reads one response (nullopt on EOF, reset or timeout before it completes).
  std::optional<http::response> read_response(bool head = false) {
    http::response_parser p;
    p.expect_no_body(head);
    for (;;) {
      if (!pending_.empty()) {
        auto used = p.feed(pending_);
        pending_.erase(0, used);
        if (p.complete()) return p.release();
        if (p.failed()) return std::nullopt;
      }
      char buf[8192];
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        p.finish_eof();
        if (p.complete()) return p.release();
        return std::nullopt;
      }
      pending_.append(buf, static_cast<std::size_t>(n));
    }
  }
  /// Reads raw bytes until `needle` was seen (or EOF/timeout); returns everything read.
  std::string read_until(std::string_view needle) {
    while (pending_.find(needle) == std::string::npos) {
      char buf[4096];
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      pending_.append(buf, static_cast<std::size_t>(n));
    }
    auto pos = pending_.find(needle);
    std::string out = pending_.substr(0, pos == std::string::npos ? pending_.size() : pos + needle.size());
    pending_.erase(0, out.size());
    return out;
  }
  /// True when the server closed the connection (EOF or reset) within the receive timeout.
  bool closed_by_peer() {
    char buf[4096];
    for (;;) {
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }

private:
  int fd_ = -1;
  bool connected_ = false;
  std::string pending_;
};

} // namespace bulwark::test
