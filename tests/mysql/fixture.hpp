#pragma once
// Shared by the mysql tests: configuration from the environment, unique table names, and a
// private server instance for tests that stop, kill or hang it.

#include <bulwark/mysql.hpp>

#include "support/run.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <unistd.h>

namespace bulwark::mysql::test {

/// Wraps op so that co_spawn can default-construct its result (result<T> cannot be).
template <class T> asio::awaitable<std::optional<T>> optional_of(asio::awaitable<T> op) {
  co_return co_await std::move(op);
}

/// Runs op on ctx to completion (at most `limit`) and returns its result.
template <class T>
T run_in(asio::io_context& ctx, asio::awaitable<T> op, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  if constexpr (std::is_void_v<T>) {
    ::bulwark::test::run(ctx, std::move(op), limit);
  } else {
    return *::bulwark::test::run(ctx, optional_of(std::move(op)), limit);
  }
}

/// Configuration from BULWARK_MYSQL_* with short timeouts, so failure tests stay fast.
inline config test_config() {
  auto c = config::from_env();
  c.connect_timeout = std::chrono::milliseconds(1000);
  c.read_timeout = std::chrono::milliseconds(1000);
  c.write_timeout = std::chrono::milliseconds(1000);
  c.reconnect = backoff{std::chrono::milliseconds(20), std::chrono::milliseconds(200), 2.0, true};
  return c;
}

/// A table name unique to this test process and test.
inline std::string table_name(const std::string& stem) {
  std::string name = "t" + std::to_string(::getpid()) + "_";
  for (char c : stem) name += (std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return name.substr(0, 64);
}

inline std::string current_test_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return std::string(info->test_suite_name()) + "_" + info->name();
}

/// A private mariadbd (BULWARK_MYSQL_INSTANCE) for one failure test; torn down with the object.
class private_server {
public:
  explicit private_server(std::string script, std::string instance)
      : script_(std::move(script)), instance_(std::move(instance)) {
    std::error_code ignored; // a directory that cannot be made shows in up()'s log message
    std::filesystem::create_directories(servers_dir(), ignored);
  }
  ~private_server() { command("down"); }

  /// Runs `mysql.sh <action>` for this instance; true on exit status 0. Its output goes to
  /// log_path() (outside the instance's directory, which `down` removes).
  bool command(const std::string& action) const {
    const std::string cmd = "BULWARK_SERVERS_DIR=" + servers_dir() + " BULWARK_MYSQL_INSTANCE=" + instance_ + " " +
                            script_ + " " + action + " >>" + log_path() + " 2>&1";
    return std::system(cmd.c_str()) == 0;
  }

  std::string log_path() const { return servers_dir() + "/" + instance_ + ".log"; }

  /// The script's output so far, for a failure message.
  std::string log() const {
    std::ifstream in(log_path());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  /// Starts it and returns its configuration (test timeouts).
  std::optional<config> up() {
    if (!command("up")) return std::nullopt;
    std::ifstream env(servers_dir() + "/" + instance_ + "/env");
    std::map<std::string, std::string> vars;
    std::string line;
    while (std::getline(env, line)) {
      auto eq = line.find('=');
      if (line.rfind("export ", 0) != 0 || eq == std::string::npos) continue;
      vars[line.substr(7, eq - 7)] = line.substr(eq + 1);
    }
    auto c = test_config();
    c.host = vars["BULWARK_MYSQL_HOST"];
    c.port = static_cast<unsigned int>(std::stoul(vars["BULWARK_MYSQL_PORT"]));
    c.user = vars["BULWARK_MYSQL_USER"];
    c.password = vars["BULWARK_MYSQL_PASSWORD"];
    c.database = vars["BULWARK_MYSQL_DATABASE"];
    return c;
  }

private:
  static std::string servers_dir() {
    const char* servers = std::getenv("BULWARK_SERVERS_DIR");
    return servers && *servers ? servers : "/tmp/bulwark-mysql-servers";
  }
  std::string script_;
  std::string instance_;
};

} // namespace bulwark::mysql::test
