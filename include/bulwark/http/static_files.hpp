#pragma once
// Static files: a handler serving a directory, for a route ending in "{path...}":
//   routes.get("/static/{path...}", http::static_files("/srv/www"));
//
// The path parameter is resolved under the root, never outside it: "..", absolute paths, NUL
// and backslashes are refused (404), and a symlink leading out of the root is refused too.
// Content-Type from the extension; a weak ETag from size and modification time, answered with
// 304 on a matching If-None-Match; files larger than `stream_threshold` are streamed in 64 KiB
// pieces instead of read into memory. A directory serves its index.html.

#include <bulwark/http/handler.hpp>
#include <bulwark/http/message.hpp>
#include <bulwark/http/parser.hpp>
#include <bulwark/http/responses.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

namespace bulwark::http {

/// The Content-Type for a file name's extension (application/octet-stream when unknown).
inline std::string_view content_type_for(std::string_view name) noexcept {
  const auto dot = name.rfind('.');
  const std::string_view ext = dot == std::string_view::npos ? std::string_view() : name.substr(dot + 1);
  struct entry {
    std::string_view ext, type;
  };
  static constexpr entry types[] = {
      {"html", "text/html; charset=utf-8"},
      {"htm", "text/html; charset=utf-8"},
      {"css", "text/css; charset=utf-8"},
      {"js", "text/javascript; charset=utf-8"},
      {"mjs", "text/javascript; charset=utf-8"},
      {"json", "application/json"},
      {"txt", "text/plain; charset=utf-8"},
      {"csv", "text/csv; charset=utf-8"},
      {"xml", "application/xml"},
      {"svg", "image/svg+xml"},
      {"png", "image/png"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},
      {"webp", "image/webp"},
      {"ico", "image/x-icon"},
      {"woff", "font/woff"},
      {"woff2", "font/woff2"},
      {"wasm", "application/wasm"},
      {"pdf", "application/pdf"},
      {"map", "application/json"},
  };
  for (const auto& t : types)
    if (iequals(t.ext, ext)) return t.type;
  return "application/octet-stream";
}

namespace detail {

/// Reads a file piece by piece (the server's streamed body).
class file_source final : public body_source {
public:
  file_source(std::FILE* f, std::uint64_t size) : file_(f), size_(size) {}
  ~file_source() override {
    if (file_) std::fclose(file_);
  }
  std::optional<std::uint64_t> size() const override { return size_; }
  result<std::size_t> read(std::span<char> out) override {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), size_ - sent_));
    if (want == 0) return std::size_t{0};
    const std::size_t n = std::fread(out.data(), 1, want, file_);
    if (n == 0) return error(errc::unavailable, "file read failed");
    sent_ += n;
    return n;
  }

private:
  std::FILE* file_;
  std::uint64_t size_;
  std::uint64_t sent_ = 0;
};

/// Whether a relative request path is safe to join to the root.
inline bool safe_relative(std::string_view p) noexcept {
  if (p.empty()) return true;
  if (p.front() == '/' || p.find('\0') != std::string_view::npos || p.find('\\') != std::string_view::npos)
    return false;
  while (!p.empty()) {
    const auto slash = p.find('/');
    const auto seg = p.substr(0, slash);
    if (seg == "..") return false;
    if (slash == std::string_view::npos) break;
    p.remove_prefix(slash + 1);
  }
  return true;
}

} // namespace detail

struct static_options {
  std::string param = "path";                  ///< the route parameter holding the file path
  std::uint64_t stream_threshold = 256 * 1024; ///< larger files are streamed
  std::string cache_control = "public, max-age=60";
};

/// A handler serving files under `root` (see the file comment).
inline handler static_files(std::filesystem::path root, static_options options = {}) {
  std::error_code ec;
  auto canonical_root = std::filesystem::canonical(root, ec);
  if (ec) canonical_root = std::filesystem::absolute(root);
  return [root = std::move(canonical_root), options = std::move(options)](request& req) -> task<response> {
    namespace fs = std::filesystem;
    const std::string rel(req.param(options.param).value_or(""));
    if (!detail::safe_relative(rel)) co_return error_response(404, "not_found", "no such file");
    std::error_code ec;
    fs::path p = fs::weakly_canonical(root / rel, ec);
    if (!ec && fs::is_directory(p, ec)) p /= "index.html";
    // After resolving symlinks the file must still be under the root.
    const auto [r_end, p_it] = std::mismatch(root.begin(), root.end(), p.begin(), p.end());
    (void)p_it;
    if (ec || r_end != root.end() || !fs::is_regular_file(p, ec))
      co_return error_response(404, "not_found", "no such file");
    const auto size = fs::file_size(p, ec);
    const auto mtime = fs::last_write_time(p, ec);
    if (ec) co_return error_response(404, "not_found", "no such file");
    char etag[64];
    std::snprintf(etag, sizeof etag, "W/\"%llx-%llx\"", static_cast<unsigned long long>(size),
                  static_cast<unsigned long long>(mtime.time_since_epoch().count()));
    response r(200);
    r.headers.set("ETag", etag);
    r.headers.set("Cache-Control", options.cache_control);
    if (auto inm = req.headers.get("If-None-Match")) {
      bool match = false;
      detail::for_each_list_element(*inm, [&](std::string_view t) {
        // Weak comparison (RFC 9110 8.8.3.2): ignore W/ on either side.
        auto strip = [](std::string_view s) { return s.starts_with("W/") ? s.substr(2) : s; };
        match = match || t == "*" || strip(t) == strip(etag);
      });
      if (match) {
        r.status = 304;
        co_return r;
      }
    }
    r.headers.set("Content-Type", std::string(content_type_for(p.filename().string())));
    std::FILE* f = std::fopen(p.c_str(), "rb");
    if (!f) co_return error_response(404, "not_found", "no such file");
    if (size > options.stream_threshold) {
      r.stream = std::make_shared<detail::file_source>(f, size);
      co_return r;
    }
    r.body.resize(static_cast<std::size_t>(size));
    const std::size_t n = std::fread(r.body.data(), 1, r.body.size(), f);
    std::fclose(f);
    r.body.resize(n);
    co_return r;
  };
}

} // namespace bulwark::http
