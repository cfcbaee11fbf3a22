#pragma once
// The fixture every conformance suite derives from: asks the factory whether its backend is
// there (skip, or fail under BULWARK_REQUIRE_SERVERS), makes a fresh model and runs coroutines
// on the factory's io_context.

#include "support/run.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <utility>

namespace bulwark::test {

template <class Factory> class conformance_fixture : public ::testing::Test {
protected:
  void SetUp() override {
    if (!Factory::available()) {
      if (std::getenv("BULWARK_REQUIRE_SERVERS")) FAIL() << "backend not available";
      GTEST_SKIP() << "backend not available";
    }
    model_ = factory_.make();
  }
  template <class T> T run(asio::awaitable<T> op, std::chrono::milliseconds limit = std::chrono::seconds(120)) {
    return test::run(factory_.context(), std::move(op), limit);
  }
  auto& model() { return *model_; }

  Factory factory_;
  decltype(std::declval<Factory&>().make()) model_;
};

} // namespace bulwark::test
