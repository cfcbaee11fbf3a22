#include <bulwark/memory/repository.hpp>

#if defined(BULWARK_CONSUMER_WITH_REDIS)
#include <bulwark/redis.hpp>
#endif
#if defined(BULWARK_CONSUMER_WITH_MYSQL)
#include <bulwark/mysql.hpp>
#endif
#if defined(BULWARK_CONSUMER_WITH_KAFKA)
#include <bulwark/kafka.hpp>
#endif
#if defined(BULWARK_CONSUMER_WITH_HAZELCAST)
#include <bulwark/hazelcast.hpp>
#endif
#if defined(BULWARK_CONSUMER_WITH_HTTP)
#include <bulwark/http.hpp>
#endif

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>

#include <iostream>

int main() {
  asio::io_context ctx;
  bulwark::memory::repository repo;
  int status = 1;
  asio::co_spawn(
      ctx,
      [&]() -> asio::awaitable<void> {
        auto v = co_await repo.put("hello", "world", bulwark::no_version);
        auto got = co_await repo.get("hello");
        if (v && got && got.value() && got.value()->value == "world") status = 0;
      },
      asio::detached);
  ctx.run();
  // Each component's client library must be found and linked through the package.
#if defined(BULWARK_CONSUMER_WITH_REDIS)
  bulwark::redis::client redis(ctx.get_executor());
  std::cout << "consumer: redis component linked\n";
#endif
#if defined(BULWARK_CONSUMER_WITH_MYSQL)
  std::cout << "consumer: mysql component linked (client " << mysql_get_client_info() << ")\n";
#endif
#if defined(BULWARK_CONSUMER_WITH_KAFKA)
  std::cout << "consumer: kafka component linked (librdkafka " << rd_kafka_version_str() << ")\n";
#endif
#if defined(BULWARK_CONSUMER_WITH_HAZELCAST)
  static_assert(bulwark::cache<bulwark::hazelcast::cache>);
  std::cout << "consumer: hazelcast component found\n";
#endif
  std::cout << (status == 0 ? "consumer: ok" : "consumer: FAILED") << '\n';
  return status;
}
