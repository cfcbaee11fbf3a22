#pragma once
// The command API (port 4000) and the query API (port 4001) as routers over plain functions, so
// the tests drive them in process and main() wires them to a bus and repositories.

#include <event_log/model.hpp>

#include <bulwark/http/message.hpp>
#include <bulwark/http/metrics_handler.hpp>
#include <bulwark/http/router.hpp>
#include <bulwark/metrics/registry.hpp>
#include <bulwark/repository.hpp>

#include <charconv>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace event_log {

namespace http = bulwark::http;

/// A 400 (or 404, 503) whose body is the text alone, as the reference answered.
inline http::response plain(int status, std::string_view text) {
  return http::response(status, "text/plain; charset=utf-8", std::string(text));
}

struct command_api_context {
  const settings* types = nullptr;
  body_limits limits{};
  /// Records the command as accepted (errc::conflict when its id is taken), and forgets it when
  /// it could not be published.
  std::function<bulwark::task<void>(std::string command_id, std::string status)> mark_accepted;
  std::function<bulwark::task<void>(std::string command_id)> forget;
  /// Publishes a command to `commands` (key: command_key).
  std::function<bulwark::task<void>(std::string value)> publish;
  /// When set, awaited before a command is accepted (and stamped): both modes hold requests
  /// there while the pipeline is too far behind (admission.hpp), so the lag stays bounded and
  /// the stages keep the CPU. An error answers 503 with Retry-After.
  std::function<bulwark::task<void>()> admit;
  std::shared_ptr<bulwark::metrics::registry> metrics;
  /// eventlog_commands_total's counters (add_command_routes looks them up once).
  bulwark::metrics::counter *accepted = nullptr, *refused = nullptr, *unavailable = nullptr, *overloaded = nullptr;
};

namespace detail {

/// Every request that matched no route (or not its method) is the reference's 400.
inline http::middleware unsupported_elsewhere() {
  return [](http::request& req, const http::handler& next) -> bulwark::task<http::response> {
    if (req.route_id < 0) co_return plain(400, text::unsupported);
    co_return co_await next(req);
  };
}

inline void count(bulwark::metrics::counter* c) {
  if (c) c->inc();
}

inline bulwark::task<http::response> handle_command(command_api_context& ctx, http::request& req, action a,
                                                    std::optional<std::string> given) {
  const auto* type = ctx.types->by_base(*req.param("base"));
  if (!type) co_return plain(400, text::unsupported);
  std::string id = given ? *given : new_uuid();
  if (!is_uuid(id)) {
    detail::count(ctx.refused);
    co_return plain(400, text::bad_id(id));
  }
  const std::string_view body = a == action::remove ? std::string_view("{}") : body_text(req.body);
  if (a != action::remove) {
    auto checked = check_body(*type, body, ctx.limits);
    if (!checked) {
      detail::count(ctx.refused);
      co_return plain(400, checked.error().detail());
    }
  }
  if (ctx.admit) {
    auto admitted = co_await ctx.admit();
    if (!admitted) {
      detail::count(ctx.overloaded);
      auto busy = plain(503, "Command not accepted: " + admitted.error().message());
      busy.headers.set("Retry-After", "1");
      co_return busy;
    }
  }
  const std::string command_id = new_uuid_v7(now_ms()); // time-ordered: its status expires from the front
  const std::string user(req.headers.value_or("X-User", "0"));
  // The body as received (check_body found it one valid JSON object of the type): as the
  // parser reads it, and not serialized again.
  const std::string cmd = command_text(a, *type, id, body, user, command_id);
  std::string status = R"({"id":")" + id + R"(","status":"accepted"})";
  auto marked = co_await ctx.mark_accepted(command_id, std::move(status));
  if (!marked) {
    detail::count(ctx.unavailable);
    co_return plain(503, "Command not accepted: " + marked.error().message());
  }
  auto sent = co_await ctx.publish(std::move(cmd));
  if (!sent) {
    auto forgotten = co_await ctx.forget(command_id); // best effort: the status would say "accepted"
    (void)forgotten;
    detail::count(ctx.unavailable);
    co_return plain(503, "Command not accepted: " + sent.error().message());
  }
  detail::count(ctx.accepted);
  co_return http::response(202, "application/json", R"({"commandId":")" + command_id + R"(","id":")" + id + R"("})");
}

} // namespace detail

/// POST /{base}, POST /{base}/{id}, PUT /{base}/{id}, DELETE /{base}/{id}; GET /metrics.
inline void add_command_routes(http::router& routes, command_api_context& ctx) {
  using bulwark::task;
  routes.use(detail::unsupported_elsewhere());
  if (ctx.metrics) {
    routes.get("/metrics", http::metrics_handler(ctx.metrics));
    auto& family = ctx.metrics->counter_family("eventlog_commands_total",
                                               "Commands the command API answered, by outcome", {"outcome"});
    ctx.accepted = &family.labels({"accepted"});
    ctx.refused = &family.labels({"refused"});
    ctx.unavailable = &family.labels({"unavailable"});
    ctx.overloaded = &family.labels({"overloaded"}); // refused by the admission bound
  }

  auto handle = [&ctx](http::request& req, action a, std::optional<std::string> given) {
    return detail::handle_command(ctx, req, a, std::move(given));
  };
  routes.post("/{base}", [handle](http::request& req) { return handle(req, action::create, std::nullopt); });
  routes.post("/{base}/{id}",
              [handle](http::request& req) { return handle(req, action::create, std::string(*req.param("id"))); });
  routes.put("/{base}/{id}",
             [handle](http::request& req) { return handle(req, action::update, std::string(*req.param("id"))); });
  routes.del("/{base}/{id}",
             [handle](http::request& req) { return handle(req, action::remove, std::string(*req.param("id"))); });
}

struct query_api_context {
  const settings* types = nullptr;
  /// The snapshot store's get and scan (snap:<base>:<id>, status:<cid>).
  std::function<bulwark::task<std::optional<bulwark::versioned>>(std::string key)> get;
  std::function<bulwark::task<bulwark::scan_page>(std::string prefix, std::string after, std::size_t limit)> scan;
  std::shared_ptr<bulwark::metrics::registry> metrics;
  std::size_t max_page = 1000;
  /// How long a command's status is kept (pipeline_options::retention; 0: for ever): a 404 for
  /// an older command says so.
  std::chrono::milliseconds retention{0};
};

namespace detail {

/// The value of `name` in a query string ("limit=10&after=x"), undecoded.
inline std::optional<std::string_view> query_value(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    if (auto eq = pair.find('='); eq != std::string_view::npos && pair.substr(0, eq) == name)
      return pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

/// The snapshot as the query API shows it.
inline json shown(const json& snap) {
  return json{{"id", snap["id"]},
              {"contentType", snap["contentType"]},
              {"version", snap["version"]},
              {"fields", snap["fields"]}};
}

} // namespace detail

/// GET /{base}?limit=&after= (paged, by id), GET /{base}/{id}, GET /commands/{id}; GET /metrics.
inline void add_query_routes(http::router& routes, query_api_context& ctx) {
  using bulwark::task;
  routes.use(detail::unsupported_elsewhere());
  if (ctx.metrics) routes.get("/metrics", http::metrics_handler(ctx.metrics));

  routes.get("/commands/{id}", [&ctx](http::request& req) -> task<http::response> {
    const std::string cid(*req.param("id"));
    if (!is_uuid(cid)) co_return plain(400, text::bad_id(cid));
    const std::string status_key = "status:" + cid;
    auto got = co_await ctx.get(status_key);
    if (!got) co_return plain(503, got.error().message());
    if (!got.value()) {
      const auto made = uuid_v7_ms(cid);
      if (ctx.retention.count() > 0 && made && *made < now_ms() - ctx.retention.count())
        co_return plain(404, "Command \"" + cid + "\" is older than the status retention (" +
                                 (ctx.retention.count() % 1000 ? std::to_string(ctx.retention.count()) + " ms"
                                                               : std::to_string(ctx.retention.count() / 1000) + " s") +
                                 "): its status was dropped");
      co_return plain(404, "Command \"" + cid + "\" is unknown");
    }
    json status = json::parse(got.value()->value);
    status["commandId"] = cid;
    co_return http::response(200, "application/json", status.dump());
  });

  routes.get("/{base}", [&ctx](http::request& req) -> task<http::response> {
    const auto* type = ctx.types->by_base(*req.param("base"));
    if (!type) co_return plain(400, text::unsupported);
    std::size_t limit = 100;
    if (auto l = detail::query_value(req.query(), "limit")) {
      auto [end, ec] = std::from_chars(l->data(), l->data() + l->size(), limit);
      if (ec != std::errc() || end != l->data() + l->size() || limit == 0 || limit > ctx.max_page)
        co_return plain(400, "limit must be 1 to " + std::to_string(ctx.max_page));
    }
    const std::string prefix = "snap:" + type->base + ":";
    std::string after;
    if (auto a = detail::query_value(req.query(), "after")) {
      if (!is_uuid(*a)) co_return plain(400, text::bad_id(*a));
      after = prefix + std::string(*a);
    }
    json items = json::array();
    json next = nullptr;
    // Tombstones are skipped, so a page may need more than one scan.
    while (items.size() < limit) {
      const std::size_t wanted = limit - items.size();
      auto page = co_await ctx.scan(prefix, after, wanted);
      if (!page) co_return plain(503, page.error().message());
      for (auto& e : page.value().entries) {
        auto snap = json::parse(e.value);
        if (!snap["deleted"].get<bool>()) items.push_back(detail::shown(snap));
        after = e.key;
      }
      if (!page.value().next) {
        after.clear();
        break;
      }
    }
    if (!after.empty()) next = after.substr(prefix.size());
    co_return http::response(200, "application/json", json{{"items", std::move(items)}, {"next", next}}.dump());
  });

  routes.get("/{base}/{id}", [&ctx](http::request& req) -> task<http::response> {
    const auto* type = ctx.types->by_base(*req.param("base"));
    if (!type) co_return plain(400, text::unsupported);
    const std::string id(*req.param("id"));
    if (!is_uuid(id)) co_return plain(400, text::bad_id(id));
    const std::string snapshot_key = "snap:" + type->base + ":" + id;
    auto got = co_await ctx.get(snapshot_key);
    if (!got) co_return plain(503, got.error().message());
    if (!got.value()) co_return plain(404, type->name + " \"" + id + "\" not found");
    auto snap = json::parse(got.value()->value);
    if (snap["deleted"].get<bool>()) co_return plain(404, type->name + " \"" + id + "\" not found");
    co_return http::response(200, "application/json", detail::shown(snap).dump());
  });
}

} // namespace event_log
