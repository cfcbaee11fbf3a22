#pragma once
// One MySQL connection on the client library's non-blocking API (mysql_*_start/_cont),
// driven by Asio: every time the library would block, the coroutine waits on the socket with
// stream_descriptor::async_wait, bounded by a deadline that a per-connection watchdog enforces
// (the library only *reports* MYSQL_WAIT_TIMEOUT; it never times out on its own in this mode).
//
// The socket is registered with the reactor as a dup() of the library's descriptor: the
// library may close its descriptor on an error and a new connection may reuse that number,
// but our duplicate keeps the registration pointing at the right socket until we close it.
// During connect the descriptor can change, so it is registered again before every wait.
//
// A connection is used by one coroutine at a time (the pool's lease guarantees it) and from
// the executor it was created on. It keeps its prepared statements in a small cache keyed by
// SQL text; a reconnect is a new connection, so statements are prepared again.

#include <bulwark/mysql/config.hpp>
#include <bulwark/mysql/error.hpp>
#include <bulwark/result.hpp>

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <mysql.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if !defined(MARIADB_PACKAGE_VERSION_ID)
#error "bulwark::mysql needs MariaDB Connector/C (its non-blocking API); Oracle's libmysqlclient lacks it"
#endif

namespace bulwark::mysql {

namespace detail {
/// What the watchdog shares with the connection; outlives it while handlers are queued.
struct io_state {
  explicit io_state(const asio::any_io_executor& ex) : socket(ex), watchdog(ex) {}
  asio::posix::stream_descriptor socket;
  asio::steady_timer watchdog;
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::chrono::milliseconds tick{100};
  bool waiting = false;
  bool watchdog_armed = false;
  bool timed_out = false;
  bool closed = false;
};

// Ticks only while the connection waits, so an idle pool leaves the io_context idle too.
inline void arm_watchdog(const std::shared_ptr<io_state>& io) {
  io->watchdog_armed = true;
  io->watchdog.expires_after(io->tick);
  io->watchdog.async_wait([weak = std::weak_ptr<io_state>(io)](std::error_code ec) {
    auto state = weak.lock();
    if (!state) return;
    state->watchdog_armed = false;
    if (ec || state->closed) return;
    if (state->waiting && std::chrono::steady_clock::now() >= state->deadline) {
      state->timed_out = true;
      std::error_code ignored;
      state->socket.cancel(ignored);
    }
    if (state->waiting) arm_watchdog(state);
  });
}
} // namespace detail

/// A connected MYSQL handle driven by Asio. Create it with connection::open().
class connection {
public:
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection() { close(); }

  /// Connects with the configured timeouts and TLS options, auto-reconnect off.
  /// Errors: the mysql category (2002/2003 -> unavailable, 1045 -> rejected), errc::timeout
  /// when the connect timeout passes, errc::cancelled.
  static task<std::unique_ptr<connection>> open(asio::any_io_executor ex, const config& cfg) {
    std::unique_ptr<connection> c(new connection(std::move(ex), cfg));
    BOOST_OUTCOME_CO_TRY(co_await c->connect());
    co_return c;
  }

  /// True until an I/O error, a timeout or a cancellation broke the connection.
  bool is_open() const noexcept { return handle_ != nullptr && !broken_; }

  /// Marks the connection unusable (it is closed when the pool gets it back).
  void mark_broken() noexcept { broken_ = true; }

  /// The native handle, for what this class does not wrap. Do not call blocking I/O on it.
  MYSQL* native_handle() const noexcept { return handle_; }

  /// Closes statements and the connection. mysql_close only writes COM_QUIT: it does not wait.
  void close() noexcept {
    if (!handle_) return;
    io_->closed = true;
    std::error_code ignored;
    io_->watchdog.cancel();
    io_->socket.close(ignored);
    for (auto& s : statements_) mysql_stmt_close(s.stmt);
    statements_.clear();
    mysql_close(handle_);
    handle_ = nullptr;
  }

  /// A prepared statement for `sql`, prepared on first use on this connection.
  task<MYSQL_STMT*> prepare(std::string_view sql) {
    for (auto& s : statements_) {
      if (s.sql == sql) co_return s.stmt;
    }
    MYSQL_STMT* stmt = mysql_stmt_init(handle_);
    if (!stmt) co_return fail(errc::unavailable, "mysql_stmt_init failed");
    int rc = 0;
    auto r = co_await drive([&] { return mysql_stmt_prepare_start(&rc, stmt, sql.data(), sql.size()); },
                            [&](int s) { return mysql_stmt_prepare_cont(&rc, stmt, s); });
    if (!r || rc != 0) {
      auto e = r ? last_error(stmt) : r.error();
      mysql_stmt_close(stmt);
      co_return note(std::move(e));
    }
    if (statements_.size() >= max_statements) {
      mysql_stmt_close(statements_.front().stmt);
      statements_.erase(statements_.begin());
    }
    statements_.push_back({std::string(sql), stmt});
    co_return stmt;
  }

  /// Executes a prepared statement whose parameters are bound.
  task<void> execute(MYSQL_STMT* stmt) {
    int rc = 0;
    BOOST_OUTCOME_CO_TRY(co_await drive([&] { return mysql_stmt_execute_start(&rc, stmt); },
                                        [&](int s) { return mysql_stmt_execute_cont(&rc, stmt, s); }));
    if (rc != 0) co_return note(last_error(stmt));
    co_return ok();
  }

  /// Fetches the next row into the bound result buffers: 0 (a row), MYSQL_DATA_TRUNCATED
  /// (a row, some column needs mysql_stmt_fetch_column) or MYSQL_NO_DATA.
  task<int> fetch(MYSQL_STMT* stmt) {
    int rc = 0;
    BOOST_OUTCOME_CO_TRY(co_await drive([&] { return mysql_stmt_fetch_start(&rc, stmt); },
                                        [&](int s) { return mysql_stmt_fetch_cont(&rc, stmt, s); }));
    if (rc == 1) co_return note(last_error(stmt));
    co_return rc;
  }

  /// Reads and discards what is left of the current result set.
  task<void> free_result(MYSQL_STMT* stmt) {
    my_bool rc = 0;
    BOOST_OUTCOME_CO_TRY(co_await drive([&] { return mysql_stmt_free_result_start(&rc, stmt); },
                                        [&](int s) { return mysql_stmt_free_result_cont(&rc, stmt, s); }));
    if (rc != 0) co_return note(last_error(stmt));
    co_return ok();
  }

  /// Runs one text statement without results (DDL from trusted text only: the migration).
  task<void> run_ddl(std::string_view sql) {
    int rc = 0;
    BOOST_OUTCOME_CO_TRY(co_await drive([&] { return mysql_real_query_start(&rc, handle_, sql.data(), sql.size()); },
                                        [&](int s) { return mysql_real_query_cont(&rc, handle_, s); }));
    if (rc != 0) co_return note(last_error(handle_));
    if (MYSQL_RES* res = mysql_store_result(handle_)) mysql_free_result(res);
    co_return ok();
  }

  /// A round trip to the server (COM_PING): the health check.
  task<void> ping() {
    int rc = 0;
    BOOST_OUTCOME_CO_TRY(co_await drive([&] { return mysql_ping_start(&rc, handle_); },
                                        [&](int s) { return mysql_ping_cont(&rc, handle_, s); }));
    if (rc != 0) co_return note(last_error(handle_));
    co_return ok();
  }

  static constexpr std::size_t max_statements = 64;

private:
  struct cached_statement {
    std::string sql;
    MYSQL_STMT* stmt;
  };

  connection(asio::any_io_executor ex, const config& cfg)
      : cfg_(cfg), io_(std::make_shared<detail::io_state>(ex)), handle_(mysql_init(nullptr)) {
    io_->tick = std::clamp(std::min({cfg.connect_timeout, cfg.read_timeout, cfg.write_timeout}) / 10,
                           std::chrono::milliseconds(5), std::chrono::milliseconds(250));
  }

  bulwark::error fail(errc e, std::string detail) {
    broken_ = true;
    return bulwark::error(e, std::move(detail));
  }

  /// Records whether an error leaves the connection unusable, then passes it on.
  bulwark::error note(bulwark::error e) {
    if (is_connection_error(e)) broken_ = true;
    return e;
  }

  task<void> connect() {
    if (!handle_) co_return fail(errc::unavailable, "mysql_init failed");
    auto seconds = [](std::chrono::milliseconds ms) {
      return static_cast<unsigned int>(std::max<long long>(1, (ms.count() + 999) / 1000));
    };
    const unsigned int connect_s = seconds(cfg_.connect_timeout), read_s = seconds(cfg_.read_timeout),
                       write_s = seconds(cfg_.write_timeout);
    const my_bool no = 0;
    mysql_options(handle_, MYSQL_OPT_NONBLOCK, nullptr);
    mysql_options(handle_, MYSQL_OPT_CONNECT_TIMEOUT, &connect_s);
    mysql_options(handle_, MYSQL_OPT_READ_TIMEOUT, &read_s);
    mysql_options(handle_, MYSQL_OPT_WRITE_TIMEOUT, &write_s);
    mysql_options(handle_, MYSQL_OPT_RECONNECT, &no);
    mysql_options(handle_, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (cfg_.tls) {
      const auto& t = *cfg_.tls;
      auto set = [&](mysql_option o, const std::string& v) {
        if (!v.empty()) mysql_options(handle_, o, v.c_str());
      };
      set(MYSQL_OPT_SSL_CA, t.ca);
      set(MYSQL_OPT_SSL_CAPATH, t.ca_path);
      set(MYSQL_OPT_SSL_CERT, t.cert);
      set(MYSQL_OPT_SSL_KEY, t.key);
      set(MYSQL_OPT_SSL_CIPHER, t.cipher);
      set(MYSQL_OPT_SSL_CRL, t.crl);
      const my_bool verify = t.verify_server_cert ? 1 : 0, enforce = t.enforce ? 1 : 0;
      mysql_options(handle_, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify);
      mysql_options(handle_, MYSQL_OPT_SSL_ENFORCE, &enforce);
    }
    MYSQL* ret = nullptr;
    const char* socket_path = cfg_.unix_socket.empty() ? nullptr : cfg_.unix_socket.c_str();
    auto r = co_await drive(
        [&] {
          return mysql_real_connect_start(&ret, handle_, cfg_.host.c_str(), cfg_.user.c_str(), cfg_.password.c_str(),
                                          cfg_.database.empty() ? nullptr : cfg_.database.c_str(), cfg_.port,
                                          socket_path, 0);
        },
        [&](int s) { return mysql_real_connect_cont(&ret, handle_, s); }, cfg_.connect_timeout);
    // Registered per wait while connecting; from now on the socket stays registered.
    if (!r) co_return fail_with(r.error());
    if (!ret) co_return fail_with(last_error(handle_));
    connecting_ = false;
    if (auto reg = register_socket(); !reg) co_return fail_with(reg.error());
    co_return ok();
  }

  bulwark::error fail_with(bulwark::error e) {
    broken_ = true;
    return e;
  }

  result<void> register_socket() {
    std::error_code ec;
    io_->socket.close(ec);
    const int fd = ::dup(static_cast<int>(mysql_get_socket(handle_)));
    if (fd < 0) return bulwark::error(errc::unavailable, "dup of the mysql socket failed");
    io_->socket.assign(fd, ec);
    if (ec) {
      ::close(fd);
      return bulwark::error(errc::unavailable, "registering the mysql socket failed: " + ec.message());
    }
    return ok();
  }

  /// Runs start(), then cont(ready) after every wait until the library is done. On a timeout
  /// or a cancellation the library is told MYSQL_WAIT_TIMEOUT (it aborts the operation) and
  /// the connection is marked broken.
  template <class Start, class Cont>
  task<void> drive(Start start, Cont cont, std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
    if (!handle_ || broken_) co_return bulwark::error(errc::unavailable, "connection is closed");
    int status = start();
    std::optional<bulwark::error> interrupted;
    while (status != 0) {
      if (interrupted) {
        status = cont(MYSQL_WAIT_TIMEOUT);
        continue;
      }
      if (connecting_) {
        if (auto reg = register_socket(); !reg) {
          interrupted = reg.error();
          continue;
        }
      }
      auto limit = timeout.count() > 0 ? timeout : cfg_.read_timeout;
      if (status & MYSQL_WAIT_TIMEOUT) limit = std::chrono::milliseconds(mysql_get_timeout_value_ms(handle_));
      if (status & MYSQL_WAIT_WRITE) limit = std::max(limit, timeout.count() > 0 ? timeout : cfg_.write_timeout);
      io_->deadline = std::chrono::steady_clock::now() + limit;
      io_->timed_out = false;
      io_->waiting = true;
      if (!io_->watchdog_armed) detail::arm_watchdog(io_);
      auto [ec] = co_await io_->socket.async_wait((status & MYSQL_WAIT_WRITE) ? asio::posix::descriptor_base::wait_write
                                                                              : asio::posix::descriptor_base::wait_read,
                                                  asio::experimental::as_tuple(asio::use_awaitable));
      io_->waiting = false;
      if (ec) {
        interrupted =
            io_->timed_out
                ? bulwark::error(errc::timeout, "mysql: no answer within " + std::to_string(limit.count()) + " ms")
                : bulwark::error(errc::cancelled, "mysql: operation cancelled");
        status = cont(MYSQL_WAIT_TIMEOUT);
        continue;
      }
      status = cont((status & MYSQL_WAIT_WRITE) ? MYSQL_WAIT_WRITE : MYSQL_WAIT_READ);
    }
    if (interrupted) {
      broken_ = true;
      co_return *interrupted;
    }
    co_return ok();
  }

  config cfg_;
  std::shared_ptr<detail::io_state> io_;
  MYSQL* handle_ = nullptr;
  bool broken_ = false;
  bool connecting_ = true;
  std::vector<cached_statement> statements_;
};

} // namespace bulwark::mysql
