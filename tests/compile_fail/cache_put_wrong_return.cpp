// A cache whose put returns task<void> instead of task<bool> does not model bulwark::cache.
// expect: note: constraints not satisfied
#include <bulwark/cache.hpp>

struct void_put_cache {
  bulwark::task<std::optional<bulwark::cached>> get(std::string_view);
  bulwark::task<void> put(std::string_view, bulwark::versioned, std::chrono::milliseconds);
  bulwark::task<bool> erase(std::string_view);
};

template <bulwark::cache Cache> void use(Cache&) {}

int main() {
  void_put_cache c;
  use(c);
}
