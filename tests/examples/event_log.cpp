// examples/event-log in process on its memory backends: the command API's checks and texts,
// the validator's rules (also across ids, and on redelivery), the persister's and the
// materializer's idempotence, the query API, and a rebuild racing live commands.
//
// The pipeline runs on a background io_context (the memory bus delivers there); the tests call
// the routers as the HTTP server would and wait, bounded, until every group caught up.

#include "../support/keys.hpp"
#include "../support/run.hpp"

#include <bulwark/app.hpp>
#include <event_log/memory_mode.hpp>
#include <event_log/routes.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>

namespace {

namespace el = event_log;
namespace http = bulwark::http;
using el::json;

class event_log_test : public ::testing::Test {
protected:
  event_log_test() : work_(asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {
    settings_ = el::parse_settings(el::default_settings_json).value();
    deployment_ = std::make_unique<el::memory_deployment>(io_.get_executor(), settings_);
    EXPECT_TRUE(run(deployment_->start()));
    el::add_command_routes(commands_, deployment_->commands());
    el::add_query_routes(queries_, deployment_->queries());
  }
  ~event_log_test() override {
    bulwark::app::block_on(io_.get_executor(), deployment_->stop());
    work_.reset();
    thread_.join();
  }

  /// Runs `op` on the pipeline's executor and waits for it.
  template <class T> T run(asio::awaitable<T> op) { return bulwark::app::block_on(io_.get_executor(), std::move(op)); }

  http::response call(http::router& r, std::string method, std::string target, std::string body = {},
                      std::string user = {}) {
    auto req = std::make_shared<http::request>();
    req->method = std::move(method);
    req->target = std::move(target);
    req->body = std::move(body);
    if (!user.empty()) req->headers.set("X-User", user);
    auto answered = run([](http::router& r, std::shared_ptr<http::request> req) -> bulwark::task<http::response> {
      co_return co_await r(*req);
    }(r, req));
    EXPECT_TRUE(answered);
    return answered ? std::move(answered).value() : http::response(599);
  }
  http::response command(std::string method, std::string target, std::string body = {}) {
    return call(commands_, std::move(method), std::move(target), std::move(body));
  }
  http::response query(std::string target) { return call(queries_, "GET", std::move(target)); }

  /// The accepted command's {commandId, id}.
  json accepted(std::string method, std::string target, std::string body = {}) {
    auto r = command(method, target, body);
    EXPECT_EQ(r.status, 202) << method << " " << target << ": " << r.body;
    return r.status == 202 ? json::parse(r.body) : json{{"commandId", ""}, {"id", ""}};
  }

  std::int64_t published(std::string_view topic) {
    std::int64_t n = 0;
    for (std::int32_t p = 0; p < 4; ++p) n += deployment_->bus().end_offset(topic, p);
    return n;
  }

  /// Waits (at most 10 s) until every group committed everything on its topic.
  void settle() {
    const std::vector<std::pair<std::string, std::string>> groups{
        {"commands", "validator"}, {"events", "persister"}, {"events", "materializer"}, {"rejections", "status"}};
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
      bool caught_up = true;
      for (const auto& [topic, group] : groups)
        for (std::int32_t p = 0; p < 4; ++p)
          caught_up = caught_up && deployment_->bus().committed(topic, group, p).value_or(0) ==
                                       deployment_->bus().end_offset(topic, p);
      if (caught_up) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(1)); // waiting on the bus's thread, bounded
    }
    FAIL() << "the pipeline did not catch up within 10 s";
  }

  json status(const json& accepted_command) {
    auto r = query("/commands/" + accepted_command["commandId"].get<std::string>());
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? json::parse(r.body) : json();
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
  el::settings settings_;
  std::unique_ptr<el::memory_deployment> deployment_;
  http::router commands_, queries_;
};

std::string asset_body(std::string title = "a") {
  return json{{"title", std::move(title)}, {"src", "a.png"}, {"width", 640}}.dump();
}

TEST(event_log_settings, default_matches_the_shipped_file) {
  std::ifstream in(EVENT_LOG_SETTINGS_JSON);
  std::stringstream file;
  file << in.rdbuf();
  EXPECT_EQ(json::parse(file.str()), json::parse(el::default_settings_json));
  auto s = el::parse_settings(el::default_settings_json).value();
  ASSERT_EQ(s.types.size(), 2u);
  EXPECT_EQ(s.by_base("entries")->fields[1].link_type, "Asset");
  EXPECT_EQ(s.command_port, 4000);
  EXPECT_EQ(s.query_port, 4001);
}

TEST(event_log_settings, refuses_what_cannot_work) {
  for (const char* bad :
       {"", "[]", "{}", R"({"contentTypes":[]})", R"({"contentTypes":[{"name":"A"}]})",
        R"({"contentTypes":[{"name":"A","base":"a/b"}]})",
        R"({"contentTypes":[{"name":"A","base":"a"},{"name":"A","base":"b"}]})",
        R"({"contentTypes":[{"name":"A","base":"a","fields":[{"id":"x","type":"date"}]}]})",
        R"({"contentTypes":[{"name":"A","base":"a","fields":[{"id":"x","type":"string","linkType":"B"}]}]})"}) {
    auto s = el::parse_settings(bad);
    EXPECT_FALSE(s) << bad;
    if (!s) {
      EXPECT_EQ(s.error(), bulwark::errc::invalid_argument);
    }
  }
}

TEST(event_log_body, every_validation_text) {
  auto s = el::parse_settings(el::default_settings_json).value();
  const auto& asset = *s.by_name("Asset");
  auto text = [&](std::string_view body) {
    auto r = el::check_body(asset, body);
    return r ? std::string("ok") : std::string(r.error().detail());
  };
  EXPECT_EQ(text(R"({"title":"t","src":"s","width":1})"), "ok");
  EXPECT_EQ(text(R"({"title":"t","src":"s","width":1,"height":2,"description":"d"})"), "ok");
  EXPECT_EQ(text(R"({"src":"s","width":1})"), "Required field \"title\" is missing");
  EXPECT_EQ(text(R"({"title":null,"src":"s","width":1})"), "Required field \"title\" is missing");
  EXPECT_EQ(text(R"({"title":"t","src":"s","width":"1"})"),
            "Field \"width\" should be of type \"number\" but is of type \"string\"");
  EXPECT_EQ(text(R"({"title":true,"src":"s","width":1})"),
            "Field \"title\" should be of type \"string\" but is of type \"boolean\"");
  EXPECT_EQ(text(R"({"title":["t"],"src":"s","width":1})"),
            "Field \"title\" should be of type \"string\" but is of type \"object\"");
  EXPECT_EQ(text(R"({"title":"t","src":"s","width":1,"colour":"red"})"), "Unknown field \"colour\"");
  EXPECT_EQ(text("{\"title\":"), "Body is not valid JSON");
  EXPECT_EQ(text("not json"), "Body is not valid JSON");
  EXPECT_EQ(text("[1,2]"), "Body must be a JSON object");
  EXPECT_EQ(text(std::string(100, '[') + std::string(100, ']')), "Body is nested deeper than 32 levels");
  EXPECT_EQ(text(R"({"title":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[","src":"s","width":1})"), "ok");
  EXPECT_EQ(text(std::string(70000, ' ')), "Body is larger than 65536 bytes");
}

TEST(event_log_ids, uuids) {
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(el::is_uuid(el::new_uuid()));
  EXPECT_NE(el::new_uuid(), el::new_uuid());
  EXPECT_FALSE(el::is_uuid("123"));
  EXPECT_FALSE(el::is_uuid("0E5B4F04-57C8-4C8C-9A4D-4E0C8F0B2C9A"));
  EXPECT_EQ(el::event_type(el::action::create, {"Entry", "entries", {}}), "entryCreated");
  EXPECT_EQ(el::command_type(el::action::remove, {"Asset", "assets", {}}), "deleteAsset");
}

TEST_F(event_log_test, creates_updates_deletes_and_links) {
  auto asset = accepted("POST", "/assets", asset_body());
  // Linked at once: the validator's own state knows the asset, no snapshot is needed.
  auto entry = accepted("POST", "/entries", json{{"title", "e"}, {"heroImage", asset["id"]}}.dump());
  auto update = accepted("PUT", "/entries/" + entry["id"].get<std::string>(),
                         json{{"title", "e2"}, {"heroImage", asset["id"]}, {"description", "d"}}.dump());
  auto refused_delete = accepted("DELETE", "/assets/" + asset["id"].get<std::string>());
  const std::string given = el::new_uuid();
  auto at_id = accepted("POST", "/assets/" + given, asset_body("given"));
  EXPECT_EQ(at_id["id"], given);
  settle();

  EXPECT_EQ(status(asset)["status"], "applied");
  EXPECT_EQ(status(update)["status"], "applied");
  EXPECT_EQ(status(update)["version"], 2);
  auto refused = status(refused_delete);
  EXPECT_EQ(refused["status"], "rejected");
  EXPECT_EQ(refused["reason"], "Asset \"" + asset["id"].get<std::string>() + "\" is still linked from 1 place");

  auto got = query("/entries/" + entry["id"].get<std::string>());
  ASSERT_EQ(got.status, 200) << got.body;
  auto doc = json::parse(got.body);
  EXPECT_EQ(doc["version"], 2);
  EXPECT_EQ(doc["fields"]["title"], "e2");
  EXPECT_EQ(doc["fields"]["heroImage"], asset["id"]);
  EXPECT_EQ(json::parse(query("/assets/" + given).body)["fields"]["title"], "given");

  // Unlink, then the asset may go.
  accepted("PUT", "/entries/" + entry["id"].get<std::string>(), json{{"title", "e3"}}.dump());
  auto gone = accepted("DELETE", "/assets/" + asset["id"].get<std::string>());
  auto entry_gone = accepted("DELETE", "/entries/" + entry["id"].get<std::string>());
  settle();
  EXPECT_EQ(status(gone)["status"], "applied");
  EXPECT_EQ(status(entry_gone)["status"], "applied");
  EXPECT_EQ(query("/assets/" + asset["id"].get<std::string>()).status, 404);
  EXPECT_EQ(query("/entries/" + entry["id"].get<std::string>()).status, 404);
  auto list = json::parse(query("/assets").body);
  ASSERT_EQ(list["items"].size(), 1u);
  EXPECT_EQ(list["items"][0]["id"], given);
}

TEST_F(event_log_test, business_rules_reject_with_their_reason) {
  const std::string nobody = el::new_uuid();
  auto update_missing = accepted("PUT", "/entries/" + nobody, json{{"title", "x"}}.dump());
  auto delete_missing = accepted("DELETE", "/assets/" + nobody);
  auto dangling = accepted("POST", "/entries", json{{"title", "x"}, {"heroImage", nobody}}.dump());
  auto first = accepted("POST", "/assets/" + nobody, asset_body());
  auto twice = accepted("POST", "/assets/" + nobody, asset_body());
  auto wrong_type = accepted("POST", "/entries/" + nobody, json{{"title", "x"}}.dump());
  // An entry may not name an entry where an asset is wanted.
  auto entry = accepted("POST", "/entries", json{{"title", "x"}}.dump());
  auto bad_link = accepted("POST", "/entries", json{{"title", "y"}, {"heroImage", entry["id"]}}.dump());
  settle();
  EXPECT_EQ(status(update_missing)["reason"], "Entry \"" + nobody + "\" does not exist");
  EXPECT_EQ(status(delete_missing)["reason"], "Asset \"" + nobody + "\" does not exist");
  EXPECT_EQ(status(dangling)["reason"], "Field \"heroImage\" names Asset \"" + nobody + "\", which does not exist");
  EXPECT_EQ(status(first)["status"], "applied");
  EXPECT_EQ(status(twice)["reason"], "Asset \"" + nobody + "\" already exists");
  EXPECT_EQ(status(wrong_type)["reason"], "Id \"" + nobody + "\" belongs to a Asset");
  EXPECT_EQ(status(bad_link)["reason"],
            "Field \"heroImage\" names Asset \"" + entry["id"].get<std::string>() + "\", which does not exist");
  EXPECT_EQ(query("/commands/" + el::new_uuid()).status, 404);
}

TEST_F(event_log_test, bad_input_is_a_clear_400_and_nothing_is_published) {
  const auto before = published("commands");
  struct bad {
    std::string method, target, body, text;
  };
  const std::string id = el::new_uuid();
  const std::vector<bad> cases{
      {"POST", "/entries", "not json", "Body is not valid JSON"},
      {"POST", "/entries", "{\"title\":", "Body is not valid JSON"},
      {"POST", "/entries", "[]", "Body must be a JSON object"},
      {"POST", "/entries", std::string(200000, '['), "Body is larger than 65536 bytes"},
      {"POST", "/entries", std::string(1000, '[') + std::string(1000, ']'), "Body is nested deeper than 32 levels"},
      {"POST", "/entries", "{\"title\":5}", "Field \"title\" should be of type \"string\" but is of type \"number\""},
      {"POST", "/entries", "{}", "Required field \"title\" is missing"},
      {"PUT", "/entries/" + id, "{\"description\":\"d\"}", "Required field \"title\" is missing"},
      {"PUT", "/entries/not-a-uuid", "{\"title\":\"t\"}", "Id \"not-a-uuid\" is not a UUID"},
      {"POST", "/pages", "{}", "Unsupported method or URL pattern"},
      {"GET", "/entries", "", "Unsupported method or URL pattern"},
      {"PATCH", "/entries/" + id, "{}", "Unsupported method or URL pattern"},
      {"POST", "/entries/" + id + "/x", "{}", "Unsupported method or URL pattern"},
      {"DELETE", "/entries", "", "Unsupported method or URL pattern"},
      {"POST", "/", "{}", "Unsupported method or URL pattern"},
  };
  for (const auto& c : cases) {
    auto r = command(c.method, c.target, c.body);
    EXPECT_EQ(r.status, 400) << c.method << " " << c.target;
    EXPECT_EQ(r.body, c.text) << c.method << " " << c.target;
  }
  EXPECT_EQ(published("commands"), before);
  EXPECT_EQ(query("/entries/not-a-uuid").status, 400);
  EXPECT_EQ(query("/nothing").body, "Unsupported method or URL pattern");
  EXPECT_EQ(query("/entries?limit=0").status, 400);
}

TEST_F(event_log_test, command_shape_and_user) {
  auto r = call(commands_, "POST", "/assets", asset_body(), "42");
  ASSERT_EQ(r.status, 202);
  settle();
  // The events topic keeps what every group has not committed: read the stored event instead.
  const auto id = json::parse(r.body)["id"].get<std::string>();
  auto events = run(deployment_->stages().store().read(id));
  ASSERT_TRUE(events);
  ASSERT_EQ(events.value().size(), 1u);
  const auto& e = events.value()[0];
  EXPECT_EQ(e["type"], "assetCreated");
  EXPECT_EQ(e["version"], 1);
  EXPECT_EQ(e["meta"]["user"], "42");
  EXPECT_EQ(e["eventId"], json::parse(r.body)["commandId"]);
  EXPECT_EQ(e["body"]["width"], 640);
}

TEST_F(event_log_test, every_stage_is_idempotent) {
  el::memory_deployment::repository_type state, events, snapshots;
  el::validator<el::memory_deployment::repository_type> v(settings_, state);
  el::event_store<el::memory_deployment::repository_type> store(events);
  el::materializer<el::memory_deployment::repository_type, el::memory_deployment::repository_type> m(settings_,
                                                                                                     snapshots, store);
  const auto id = el::new_uuid();
  const auto cmd = el::make_command(el::action::create, *settings_.by_name("Asset"), id, json::parse(asset_body()), "0",
                                    el::new_uuid());
  auto first = run(v.decide(cmd.dump())).value();
  auto again = run(v.decide(cmd.dump())).value();
  EXPECT_TRUE(first.accepted);
  EXPECT_FALSE(first.replayed);
  EXPECT_TRUE(again.replayed);
  EXPECT_EQ(first.value, again.value); // the same event id and version
  const auto event = json::parse(first.value);
  EXPECT_EQ(run(store.append(event)).value(), el::append_outcome::appended);
  EXPECT_EQ(run(store.append(event)).value(), el::append_outcome::duplicate);
  auto other = event;
  other["eventId"] = el::new_uuid();
  auto conflict = run(store.append(other));
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error(), bulwark::errc::conflict);
  auto gap = event;
  gap["version"] = 3;
  EXPECT_EQ(run(store.append(gap)).error(), bulwark::errc::unavailable);
  EXPECT_EQ(run(m.apply(event)).value(), el::apply_outcome::applied);
  EXPECT_EQ(run(m.apply(event)).value(), el::apply_outcome::duplicate);
  // A snapshot that lost events is filled in from the event store.
  const auto update = el::make_command(el::action::update, *settings_.by_name("Asset"), id,
                                       json::parse(asset_body("b")), "0", el::new_uuid());
  auto e2 = json::parse(run(v.decide(update.dump())).value().value);
  const auto update3 = el::make_command(el::action::update, *settings_.by_name("Asset"), id,
                                        json::parse(asset_body("c")), "0", el::new_uuid());
  auto e3 = json::parse(run(v.decide(update3.dump())).value().value);
  EXPECT_EQ(run(m.apply(e3)).error(), bulwark::errc::unavailable); // version 2 not stored yet
  EXPECT_EQ(run(store.append(e2)).value(), el::append_outcome::appended);
  EXPECT_EQ(run(m.apply(e3)).value(), el::apply_outcome::applied);
  EXPECT_EQ(run(store.append(e3)).value(), el::append_outcome::appended);
  EXPECT_EQ(run(m.verify()).value().differ, 0u);
}

TEST_F(event_log_test, a_rebuild_while_commands_arrive_converges) {
  std::vector<std::string> assets;
  for (int i = 0; i < 20; ++i) assets.push_back(accepted("POST", "/assets", asset_body())["id"].get<std::string>());
  settle();
  std::atomic<bool> done{false};
  std::size_t rebuilds = 0;
  std::thread rebuilder([&] {
    while (!done.load() && rebuilds < 25) { // bounded: each rebuild reads every stream
      auto r = run(deployment_->stages().snapshots().rebuild());
      EXPECT_TRUE(r);
      ++rebuilds;
    }
  });
  for (int round = 0; round < 10; ++round)
    for (std::size_t i = 0; i < assets.size(); ++i) {
      if ((i + static_cast<std::size_t>(round)) % 7 == 0) continue;
      accepted("PUT", "/assets/" + assets[i], asset_body(bulwark::test::numbered_key("r", round)));
    }
  settle();
  done = true;
  rebuilder.join();
  EXPECT_GT(rebuilds, 0u);
  auto report = run(deployment_->stages().snapshots().verify());
  ASSERT_TRUE(report);
  EXPECT_EQ(report.value().streams, assets.size());
  EXPECT_EQ(report.value().differ, 0u);
  // And a rebuild from nothing gives exactly the live snapshots.
  el::memory_deployment::repository_type fresh;
  el::materializer<el::memory_deployment::repository_type, el::memory_deployment::repository_type> from_log(
      settings_, fresh, deployment_->stages().store());
  ASSERT_TRUE(run(from_log.rebuild()));
  EXPECT_EQ(run(el::all_snapshots(fresh)).value(), run(el::all_snapshots(deployment_->snapshots())).value());
}

TEST_F(event_log_test, paged_list) {
  for (int i = 0; i < 5; ++i) accepted("POST", "/assets", asset_body(bulwark::test::numbered_key("", i)));
  settle();
  auto first = json::parse(query("/assets?limit=2").body);
  ASSERT_EQ(first["items"].size(), 2u);
  ASSERT_TRUE(first["next"].is_string());
  auto second = json::parse(query("/assets?limit=10&after=" + first["next"].get<std::string>()).body);
  EXPECT_EQ(second["items"].size(), 3u);
  EXPECT_TRUE(second["next"].is_null());
  EXPECT_LT(first["items"][1]["id"].get<std::string>(), second["items"][0]["id"].get<std::string>());
}

TEST_F(event_log_test, other_content_types_need_no_code) {
  // A second deployment over a settings file of other types.
  auto other = el::parse_settings(R"({"contentTypes":[{"name":"Author","base":"authors","fields":[
      {"id":"name","type":"string","required":true}]},{"name":"Post","base":"posts","fields":[
      {"id":"title","type":"string","required":true},{"id":"author","type":"string","linkType":"Author"},
      {"id":"draft","type":"boolean","required":true}]}]})")
                   .value();
  el::memory_deployment d(io_.get_executor(), other);
  ASSERT_TRUE(run(d.start()));
  http::router c, q;
  el::add_command_routes(c, d.commands());
  el::add_query_routes(q, d.queries());
  auto author = json::parse(call(c, "POST", "/authors", R"({"name":"A"})").body);
  auto post = call(c, "POST", "/posts", json{{"title", "t"}, {"author", author["id"]}, {"draft", true}}.dump());
  ASSERT_EQ(post.status, 202) << post.body;
  EXPECT_EQ(call(c, "POST", "/posts", R"({"title":"t","draft":"no"})").body,
            "Field \"draft\" should be of type \"boolean\" but is of type \"string\"");
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  http::response got;
  do {
    got = call(q, "GET", "/posts/" + json::parse(post.body)["id"].get<std::string>());
    if (got.status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  } while (std::chrono::steady_clock::now() < until);
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(json::parse(got.body)["fields"]["author"], author["id"]);
  bulwark::app::block_on(io_.get_executor(), d.stop());
}

} // namespace
