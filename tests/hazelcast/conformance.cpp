// The cache conformance suite on hazelcast::cache against the real members
// (scripts/servers/hazelcast.sh up).
#include <bulwark/hazelcast.hpp>

#include "conformance/cache_suite.hpp"
#include "fixture.hpp"

#include <asio/io_context.hpp>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <thread>

namespace hz = bulwark::hazelcast;

namespace {

struct hazelcast_cache_factory {
  static bool available() { return std::getenv("BULWARK_HAZELCAST_MEMBERS") != nullptr; }
  asio::io_context& context() { return ctx; }
  std::unique_ptr<hz::cache> make() {
    auto members =
        hz::member_list::create(ctx.get_executor(), hz::member_options{.members = hz::test::real_members()}).value();
    return std::make_unique<hz::cache>(
        hz::cache::create(members, hz::cache_options{.map = hz::test::unique_map("conformance")}).value());
  }
  // Real members, real time: TTLs are judged on this process's wall clock.
  void advance(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }
  asio::io_context ctx;
};

} // namespace

namespace bulwark::test {
INSTANTIATE_TYPED_TEST_SUITE_P(hazelcast, cache_conformance, ::testing::Types<hazelcast_cache_factory>);
} // namespace bulwark::test
