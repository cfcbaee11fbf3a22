#pragma once
// The admin page's files, embedded into the CMS executable at build time (CMake turns every
// file of examples/channel-metadata/admin/ into admin_assets.hpp), and the handler serving
// them: GET /admin/ is index.html, GET /admin/<file> the file, Content-Type by extension, an
// ETag from the content (304 on If-None-Match) and "no-cache" so a new build is picked up.

#include <bulwark/http/handler.hpp>
#include <bulwark/http/message.hpp>
#include <bulwark/http/parser.hpp>
#include <bulwark/http/responses.hpp>
#include <bulwark/http/static_files.hpp>

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace channel_metadata {

/// One embedded file: its path under admin/ ("index.html", "js/app.js") and its bytes.
struct admin_asset {
  std::string_view path;
  std::string_view body;
};

/// A handler for "/admin/{path...}" and "/admin/" over `assets` (which outlive it): the
/// parameter `path` names the file, none or a trailing '/' means index.html. Unknown: 404.
inline bulwark::http::handler admin_files(std::span<const admin_asset> assets) {
  struct entry {
    const admin_asset* asset;
    std::string etag;
  };
  std::vector<entry> table;
  for (const auto& a : assets) {
    std::uint64_t h = 1469598103934665603ull; // FNV-1a: the ETag only has to change with the content
    for (unsigned char c : a.body) h = (h ^ c) * 1099511628211ull;
    char etag[40];
    std::snprintf(etag, sizeof etag, "\"%016llx\"", static_cast<unsigned long long>(h));
    table.push_back({&a, etag});
  }
  return [table = std::move(table)](bulwark::http::request& req) -> bulwark::task<bulwark::http::response> {
    std::string path(req.param("path").value_or(""));
    if (path.empty() || path.back() == '/') path += "index.html";
    for (const auto& e : table) {
      if (e.asset->path != path) continue;
      bulwark::http::response r(200);
      r.headers.set("ETag", e.etag);
      r.headers.set("Cache-Control", "no-cache");
      if (auto inm = req.headers.get("If-None-Match"); inm && *inm == e.etag) {
        r.status = 304;
        co_return r;
      }
      r.headers.set("Content-Type", std::string(bulwark::http::content_type_for(path)));
      r.body = std::string(e.asset->body);
      co_return r;
    }
    co_return bulwark::http::error_response(404, "not_found", "no such file");
  };
}

} // namespace channel_metadata
