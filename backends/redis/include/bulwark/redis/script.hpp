#pragma once
// A Lua script run with EVALSHA, falling back to EVAL when the server does not know it yet
// (NOSCRIPT: after a restart or SCRIPT FLUSH); EVAL also loads it for the next EVALSHA.

#include <bulwark/redis/client.hpp>
#include <bulwark/redis/detail/sha1.hpp>

#include <array>
#include <string>
#include <string_view>

namespace bulwark::redis {

class script {
public:
  explicit script(std::string text) : text_(std::move(text)), sha_(detail::sha1_hex(text_)) {}

  const std::string& text() const noexcept { return text_; }
  /// The SHA-1 the server knows the script by.
  const std::string& sha() const noexcept { return sha_; }

  /// Runs the script with `keys` then `args` (views, valid until the task completes).
  /// Errors: those of client::async_execute; a Lua error comes back as server_error.
  template <std::size_t Keys, std::size_t Args> task<reply>
  run(client& c, const std::array<std::string_view, Keys>& keys, const std::array<std::string_view, Args>& args) const {
    const auto nkeys = std::to_string(Keys);
    std::array<std::string_view, 3 + Keys + Args> argv;
    argv[0] = "EVALSHA";
    argv[1] = sha_;
    argv[2] = nkeys;
    for (std::size_t i = 0; i < Keys; ++i) argv[3 + i] = keys[i];
    for (std::size_t i = 0; i < Args; ++i) argv[3 + Keys + i] = args[i];
    auto r = co_await c.async_execute(argv);
    if (r || r.error().code() != make_error_code(errc::no_script)) co_return r;
    argv[0] = "EVAL";
    argv[1] = text_;
    co_return co_await c.async_execute(argv);
  }

private:
  std::string text_;
  std::string sha_;
};

} // namespace bulwark::redis
