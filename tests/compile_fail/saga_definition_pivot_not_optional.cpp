// A hand-written saga definition whose pivot() is a plain index (0 meaning "none") does not model
// bulwark::saga::saga_definition: "no pivot" and "the first step is the pivot" must differ, so
// pivot() is a std::optional<std::size_t>, and the orchestrator refuses anything else.
// expect: note: constraints not satisfied
#include <bulwark/memory/repository.hpp>
#include <bulwark/saga/orchestrator.hpp>

#include <string>
#include <vector>

struct index_pivot_definition {
  using context_type = std::string;
  using codec = bulwark::json_codec<std::string>;
  const std::string& name() const { return name_; }
  std::size_t pivot() const { return 0; }
  bulwark::clock::duration saga_timeout() const { return std::chrono::seconds(30); }
  bulwark::result<void> validate() const { return bulwark::ok(); }
  const std::vector<bulwark::saga::step<std::string>>& steps() const { return steps_; }
  std::string name_ = "checkout";
  std::vector<bulwark::saga::step<std::string>> steps_;
};

int main() {
  using orchestrator = bulwark::saga::orchestrator<index_pivot_definition, bulwark::memory::repository>;
  return sizeof(orchestrator) > 0 ? 0 : 1;
}
