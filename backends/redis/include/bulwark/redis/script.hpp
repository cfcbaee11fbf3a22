#pragma once
// A Lua script run with EVALSHA, falling back to EVAL when the server does not know it yet
// (NOSCRIPT: after a restart or SCRIPT FLUSH); EVAL also loads it for the next EVALSHA.

#include <bulwark/redis/client.hpp>
#include <bulwark/redis/detail/sha1.hpp>

#include <array>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::redis {

class script {
public:
  explicit script(std::string text) : text_(std::move(text)), sha_(detail::sha1_hex(text_)) {}

  const std::string& text() const noexcept { return text_; }
  /// The SHA-1 the server knows the script by.
  const std::string& sha() const noexcept { return sha_; }

  /// The EVALSHA command line for `keys` then `args`: {"EVALSHA", sha, nkeys, keys..., args...}.
  /// `nkeys` must outlive the result (it holds the key count's digits).
  template <std::size_t Keys, std::size_t Args>
  std::array<std::string_view, 3 + Keys + Args> command(const std::array<std::string_view, Keys>& keys,
                                                        const std::array<std::string_view, Args>& args,
                                                        std::string_view nkeys) const {
    std::array<std::string_view, 3 + Keys + Args> argv;
    argv[0] = "EVALSHA";
    argv[1] = sha_;
    argv[2] = nkeys;
    for (std::size_t i = 0; i < Keys; ++i) argv[3 + i] = keys[i];
    for (std::size_t i = 0; i < Args; ++i) argv[3 + Keys + i] = args[i];
    return argv;
  }

  /// True when `r` says the server does not know the script (NOSCRIPT): resend with as_eval().
  static bool not_loaded(const result<reply>& r) noexcept {
    return !r && r.error().code() == make_error_code(redis_errc::no_script);
  }

  /// Turns an EVALSHA command line from command() into the EVAL one (which also loads it).
  template <std::size_t N> void as_eval(std::array<std::string_view, N>& argv) const noexcept {
    argv[0] = "EVAL";
    argv[1] = text_;
  }

  /// Runs the script with `keys` then `args` (views, valid until the task completes): EVALSHA,
  /// then EVAL on NOSCRIPT. Errors: those of client::async_execute; a Lua error comes back as
  /// server_error. (The adapters inline these steps to save a coroutine frame per call.)
  template <std::size_t Keys, std::size_t Args> task<reply>
  run(client& c, const std::array<std::string_view, Keys>& keys, const std::array<std::string_view, Args>& args) const {
    const auto nkeys = std::to_string(Keys);
    auto argv = command(keys, args, nkeys);
    auto r = co_await c.async_execute(argv);
    if (!not_loaded(r)) co_return r;
    as_eval(argv);
    co_return co_await c.async_execute(argv);
  }

  /// As run() above, with as many keys and args as the caller has (a batch's): the command
  /// line is built in a vector instead of an array.
  task<reply> run(client& c, std::span<const std::string_view> keys, std::span<const std::string_view> args) const {
    const auto nkeys = std::to_string(keys.size());
    std::vector<std::string_view> argv{"EVALSHA", sha_, nkeys};
    argv.reserve(3 + keys.size() + args.size());
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = co_await c.async_execute(argv);
    if (!not_loaded(r)) co_return r;
    argv[0] = "EVAL";
    argv[1] = text_;
    co_return co_await c.async_execute(argv);
  }

private:
  std::string text_;
  std::string sha_;
};

} // namespace bulwark::redis
