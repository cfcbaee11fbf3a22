#pragma once
// Private: the memory a use_awaitable completion handler touches when it resumes its coroutine,
// so that a loop completing many operations can fetch it a few completions ahead.
//
// With 50,000 publishes in flight, each delivery report resumes a coroutine last touched
// 50,000 messages earlier. Resuming it chases three frames, one after the other: the bottom
// frame of its awaitable thread (which names the top of the stack), the operation's frame
// (async_initiate's, which takes the result) and the awaiting coroutine's frame (resumed),
// each a cache miss on a loaded machine: the largest part of what per-message publish cost
// the caller's thread beyond raw librdkafka (perf, 2026-12-04). All three addresses are known,
// and hot, when the operation starts, so the handler's operation records them and the
// completing loop prefetches them: the misses of several completions overlap instead of
// queueing. Reading them needs two protected members of Asio's coroutine machinery (the
// handler's frame() and a frame's caller_), reached through derived classes; for an Asio whose
// internals were not checked, the hint holds the bottom frame only (public: entry_point()).

#include <asio/use_awaitable.hpp>
#include <asio/version.hpp>

#include <array>
#include <cstddef>
#include <functional>

namespace bulwark::kafka::detail {

struct resume_hint {
  /// Promise addresses: the bottom frame, the operation's, the awaiting coroutine's; all three
  /// the same frame where only the bottom one is known, and null for a handler of another kind.
  std::array<const void*, 3> frames{};

  /// Always inlined: GCC 12 takes a function whose only work is __builtin_prefetch for pure
  /// and drops the call once it is not inlined early (eight prefetches were enough; checked
  /// with objdump). Compiles to nothing but with GCC and Clang.
  [[gnu::always_inline]] inline void prefetch() const noexcept {
    // Cache lines from the frame's start (GCC and Clang put the resume and destroy pointers,
    // 16 bytes, just before the promise). A resumption reads the bottom frame up to its
    // throw_if_cancelled_ (promise + 0x72 in Asio 1.22), writes the result into the
    // operation's promise and runs on in the awaiting frame, whose locals follow its promise
    // (the benchmark's lane reaches frame + 0xe8).
#if defined(__GNUC__) // GCC and Clang
    constexpr std::size_t lines[] = {3, 2, 4};
    for (std::size_t i = 0; i < frames.size(); ++i) {
      if (!frames[i]) continue;
      const char* start = static_cast<const char*>(frames[i]) - 2 * sizeof(void*);
      for (std::size_t line = 0; line < lines[i]; ++line) __builtin_prefetch(start + 64 * line, 1);
    }
#endif
  }
};

/// The hint of any other handler: none.
template <class Handler> struct resume_hint_of {
  static resume_hint of(const Handler&) noexcept { return {}; }
};

template <class Executor, class... T> struct resume_hint_of<asio::detail::awaitable_handler<Executor, T...>>
    : asio::detail::awaitable_handler<Executor, T...> {
  using handler = asio::detail::awaitable_handler<Executor, T...>;

  static resume_hint of(handler& h) noexcept {
#if ASIO_VERSION >= 102200 && ASIO_VERSION < 103100 // 1.22 through 1.30: frame() and caller_ as read here
    struct frame_links : asio::detail::awaitable_frame_base<Executor> {
      static auto caller(asio::detail::awaitable_frame_base<Executor>* f) noexcept {
        return f->*(&frame_links::caller_);
      }
    };
    constexpr auto frame = &resume_hint_of::frame;
    asio::detail::awaitable_frame_base<Executor>* top = std::invoke(frame, h);
    return {{ h.entry_point(), top, top ? frame_links::caller(top) : nullptr }};
#else
    return {{h.entry_point(), h.entry_point(), h.entry_point()}};
#endif
  }
};

/// Where resuming `handler`'s coroutine will touch memory; call it before the handler runs
/// (while it is still suspended on the operation).
template <class Handler> resume_hint hint_of(Handler& handler) noexcept { return resume_hint_of<Handler>::of(handler); }

} // namespace bulwark::kafka::detail
