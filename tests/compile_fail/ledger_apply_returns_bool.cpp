// A ledger whose apply returns task<bool> (applied or not) instead of task<apply_outcome> does not
// model bulwark::ledger: a duplicate must be told apart from a first apply.
// expect: note: constraints not satisfied
#include <bulwark/ledger.hpp>

struct bool_apply_ledger {
  bulwark::task<bool> apply(std::string_view, std::span<const bulwark::adjustment>);
  bulwark::task<bulwark::revert_outcome> revert(std::string_view);
  bulwark::task<std::optional<bulwark::amount>> get(std::string_view);
  bulwark::task<void> set(std::string_view, bulwark::amount);
  bulwark::task<bulwark::amount> add(std::string_view, bulwark::amount);
  bulwark::task<void> set_many(std::span<const bulwark::balance>);
};

template <bulwark::ledger Ledger> void use(Ledger&) {}

int main() {
  bool_apply_ledger l;
  use(l);
}
