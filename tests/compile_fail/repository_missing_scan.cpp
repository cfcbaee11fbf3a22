// A type with every repository operation but scan does not model bulwark::repository: using it
// where a repository is required must not compile, and the diagnostic names the concept.
// expect: note: constraints not satisfied
#include <bulwark/repository.hpp>

struct almost_repository {
  bulwark::task<std::optional<bulwark::versioned>> get(std::string_view);
  bulwark::task<bulwark::version_t> put(std::string_view, std::string, std::optional<bulwark::version_t>);
  bulwark::task<bool> erase(std::string_view);
};

template <bulwark::repository Repository> void use(Repository&) {}

int main() {
  almost_repository r;
  use(r);
}
