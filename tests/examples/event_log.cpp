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

#include <bulwark/testing/faults.hpp>
#include <event_log/admission.hpp>

#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <span>
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
  // nlohmann_json stops reading at a NUL byte; the stages would not: such a body is refused
  // here, never accepted and then rejected as a malformed command (found by the scanner fuzzer).
  using namespace std::string_view_literals;
  EXPECT_EQ(text("{\"title\":\"t\",\"src\":\"s\",\"width\":1}\0junk"sv), "Body is not valid JSON");
  // A leading byte order mark is skipped, as nlohmann_json does; the command carries the rest.
  const auto bom = el::body_text("\xEF\xBB\xBF{\"title\":\"t\",\"src\":\"s\",\"width\":1}");
  EXPECT_EQ(text(bom), "ok");
  EXPECT_TRUE(el::object_members(el::command_text(el::action::create, asset, "i", bom, "0", "c")));
}

TEST(event_log_ids, uuids) {
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(el::is_uuid(el::new_uuid()));
  EXPECT_NE(el::new_uuid(), el::new_uuid());
  EXPECT_FALSE(el::is_uuid("123"));
  EXPECT_FALSE(el::is_uuid("0E5B4F04-57C8-4C8C-9A4D-4E0C8F0B2C9A"));
  EXPECT_EQ(el::event_type(el::action::create, {"Entry", "entries", {}}), "entryCreated");
  EXPECT_EQ(el::command_type(el::action::remove, {"Asset", "assets", {}}), "deleteAsset");
}

// The stages read a message's fields without building a tree: the scanner accepts exactly what
// nlohmann_json accepts (for objects), and an escaped field reads as its parsed value.
TEST(event_log_scan, members_of_valid_json_only) {
  auto members = el::object_members(R"( {"a":1, "b" : {"c":[1,2.5e-3,"x\"y"]},"a":"\u0041","n":null} )");
  ASSERT_TRUE(members);
  EXPECT_EQ(el::member(*members, "b").value(), R"({"c":[1,2.5e-3,"x\"y"]})");
  EXPECT_EQ(el::member(*members, "a").value(), R"("\u0041")"); // the last one, as a parser keeps
  EXPECT_EQ(el::member(*members, "n").value(), "null");
  EXPECT_FALSE(el::member(*members, "z"));
  for (const char* bad : {"", "[]", "{", R"({"a":1,})", R"({"a":01})", R"({"a":1.})", R"({"a":"\x"})", R"({"a":tru})",
                          R"({"a":1} x)", R"({"a":[1,]})", R"({"a":"x)", "{\"a\":\"\x01\"}", R"({a:1})", R"({"a":-})",
                          "{\"a\":\"\xc3\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xc0\xaf\"}",
                          // as nlohmann_json: lone or unpaired surrogate escapes, a number over a double's range
                          R"({"a":"\ud800"})", R"({"a":"\udc00"})", R"({"a":"\ud800\u0041"})", R"({"a":"\ud800x"})",
                          R"({"a":1e400})", R"({"a":-1E+309})"}) {
    EXPECT_FALSE(el::object_members(bad)) << bad;
    EXPECT_FALSE(json::accept(bad) && json::parse(bad).is_object()) << bad;
  }
  EXPECT_TRUE(el::object_members("{\"a\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}"));
  for (const char* good : {R"({"a":"\ud83d\ude00"})", R"({"a":1e-400})", R"({"a":1.5e300})", R"({"a":"\uFFFF"})"}) {
    EXPECT_TRUE(el::object_members(good)) << good;
    EXPECT_TRUE(json::parse(good).is_object()) << good;
  }
  EXPECT_FALSE(el::object_members(R"({"a":[[[1]]]})", 2));
  EXPECT_TRUE(el::object_members(R"({"a":[[1]]})", 2));
  EXPECT_EQ(el::integer_member(R"({"version":12})", "version"), 12);
  EXPECT_EQ(el::integer_member(R"({"version":1.2e1})", "version"), 12);

  const std::string event =
      R"({"body":{"title":"t"},"contentType":"Asset","eventId":"e","id":"\u0061b","meta":{"acceptedAt":5},)"
      R"("type":"assetCreated","version":3})";
  auto read = el::read_event(event);
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(read.value().id, "ab");
  EXPECT_EQ(read.value().version, 3);
  EXPECT_EQ(read.value().body, R"({"title":"t"})");
  EXPECT_EQ(el::accepted_at(read.value()), 5);
  for (const char* bad :
       {R"({"id":"a"})", R"({"body":{},"contentType":"A","eventId":"e","id":1,"type":"t","version":1})",
        R"({"body":[],"contentType":"A","eventId":"e","id":"i","type":"t","version":1})",
        R"({"body":{},"contentType":"A","eventId":"e","id":"i","type":"t","version":"1"})", "nope"})
    EXPECT_EQ(el::read_event(bad).error(), bulwark::errc::invalid_argument) << bad;
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

// Batches (subscribe_batch): one batch decided in log order against the validator's own records.
TEST_F(event_log_test, a_batch_is_decided_in_log_order) {
  el::memory_deployment::repository_type state;
  el::validator<el::memory_deployment::repository_type> v(settings_, state);
  const auto& asset_type = *settings_.by_name("Asset");
  const auto& entry_type = *settings_.by_name("Entry");
  const auto asset = el::new_uuid(), entry = el::new_uuid(), ghost = el::new_uuid();
  const std::vector<json> commands{
      el::make_command(el::action::update, asset_type, ghost, json::parse(asset_body()), "0", el::new_uuid()),
      el::make_command(el::action::create, asset_type, asset, json::parse(asset_body()), "0", el::new_uuid()),
      el::make_command(el::action::create, entry_type, entry, {{"title", "e"}, {"heroImage", asset}}, "0",
                       el::new_uuid()),
      el::make_command(el::action::update, entry_type, entry, {{"title", "e2"}, {"heroImage", asset}}, "0",
                       el::new_uuid()),
      el::make_command(el::action::remove, asset_type, asset, json::object(), "0", el::new_uuid()),
      el::make_command(el::action::update, entry_type, entry, {{"title", "e3"}}, "0", el::new_uuid()),
      el::make_command(el::action::remove, asset_type, asset, json::object(), "0", el::new_uuid()),
      el::make_command(el::action::create, asset_type, asset, json::parse(asset_body()), "0", el::new_uuid())};
  std::vector<std::string> texts;
  for (const auto& c : commands) texts.push_back(c.dump());
  const std::vector<std::string_view> batch(texts.begin(), texts.end());
  auto decided = run(v.decide_batch(batch));
  ASSERT_TRUE(decided);
  const auto& d = decided.value();
  ASSERT_EQ(d.size(), commands.size());
  auto reason = [](const el::decision& x) { return json::parse(x.value)["reason"].get<std::string>(); };
  auto version = [](const el::decision& x) { return json::parse(x.value)["version"].get<int>(); };
  EXPECT_EQ(reason(d[0]), "Asset \"" + ghost + "\" does not exist");
  EXPECT_TRUE(d[1].accepted);
  EXPECT_TRUE(d[2].accepted); // the asset created earlier in the same batch
  EXPECT_TRUE(d[3].accepted);
  EXPECT_EQ(version(d[3]), 2);
  EXPECT_EQ(reason(d[4]), "Asset \"" + asset + "\" is still linked from 1 place");
  EXPECT_TRUE(d[5].accepted); // unlinks
  EXPECT_TRUE(d[6].accepted);
  EXPECT_EQ(version(d[6]), 2);
  EXPECT_TRUE(d[7].accepted); // created again: its versions go on
  EXPECT_EQ(version(d[7]), 3);
  for (const auto& x : d) EXPECT_FALSE(x.replayed);

  // The same commands one at a time on a fresh state give the same messages.
  el::memory_deployment::repository_type one_state;
  el::validator<el::memory_deployment::repository_type> one(settings_, one_state);
  for (std::size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(run(one.decide(texts[i])).value().value, d[i].value) << i;
}

// A batch delivered again after a crash (its decisions stored, all or some, its records maybe
// not) or one message at a time after a failure gives the same decisions, each once.
TEST_F(event_log_test, a_redelivered_batch_gives_the_same_decisions_once) {
  using repo = el::memory_deployment::repository_type;
  const auto& asset_type = *settings_.by_name("Asset");
  const auto& entry_type = *settings_.by_name("Entry");
  const auto asset = el::new_uuid(), entry = el::new_uuid();
  std::vector<std::string> texts;
  for (const auto& c :
       {el::make_command(el::action::update, entry_type, entry, {{"title", "early"}}, "0", el::new_uuid()),
        el::make_command(el::action::create, asset_type, asset, json::parse(asset_body()), "0", el::new_uuid()),
        el::make_command(el::action::create, entry_type, entry, {{"title", "e"}, {"heroImage", asset}}, "0",
                         el::new_uuid()),
        el::make_command(el::action::update, entry_type, entry, {{"title", "e2"}}, "0", el::new_uuid()),
        el::make_command(el::action::remove, asset_type, asset, json::object(), "0", el::new_uuid())})
    texts.push_back(c.dump());
  const std::vector<std::string_view> batch(texts.begin(), texts.end());
  repo state;
  el::validator<repo> v(settings_, state);
  const auto first = run(v.decide_batch(batch)).value();
  ASSERT_EQ(first.size(), texts.size());
  EXPECT_FALSE(first[0].accepted); // the entry did not exist yet
  const auto records = state.scan_now("agg:", "", 100).value().entries;
  const auto decisions = state.scan_now("decision:", "", 100).value().entries;
  EXPECT_EQ(decisions.size(), texts.size()); // rejections are stored too

  // Delivered again as a whole: every decision replayed, the same messages, the same records.
  const auto again = run(v.decide_batch(batch)).value();
  for (std::size_t i = 0; i < texts.size(); ++i) {
    EXPECT_TRUE(again[i].replayed) << i;
    EXPECT_EQ(again[i].value, first[i].value) << i;
    EXPECT_EQ(again[i].topic, first[i].topic) << i;
  }
  // One at a time (a failed batch): the rejected update stays rejected although the entry exists now.
  for (std::size_t i = 0; i < texts.size(); ++i) {
    auto one = run(v.decide(texts[i])).value();
    EXPECT_TRUE(one.replayed) << i;
    EXPECT_EQ(one.value, first[i].value) << i;
  }
  auto values = [](const std::vector<bulwark::entry>& es) {
    std::map<std::string, std::string> out;
    for (const auto& e : es) out[e.key] = e.value;
    return out;
  };
  EXPECT_EQ(values(state.scan_now("agg:", "", 100).value().entries), values(records));

  // A decision stored before "message" (the message as a string in "value") replays the same.
  {
    repo older;
    const std::string key =
        std::string("decision:").append(json::parse(texts[1])["meta"]["commandId"].get<std::string>());
    const auto stored = json::parse(state.get_now(key).value().value().value);
    const json old_form{{"topic", stored["topic"]},
                        {"key", stored["key"]},
                        {"value", stored["message"].dump()},
                        {"state", stored["state"]}};
    ASSERT_TRUE(older.put_now(key, old_form.dump(), {}));
    el::validator<repo> reader(settings_, older);
    const auto replayed = run(reader.decide(texts[1])).value();
    EXPECT_TRUE(replayed.replayed);
    EXPECT_EQ(replayed.value, first[1].value);
  }

  // A crash after some of the decisions were stored and none of the records: the rest is
  // decided again against the same state, to the same messages, and the records end the same.
  for (std::size_t stored : {std::size_t(0), std::size_t(2), decisions.size()}) {
    repo crashed;
    for (std::size_t i = 0; i < stored; ++i) ASSERT_TRUE(crashed.put_now(decisions[i].key, decisions[i].value, {}));
    el::validator<repo> after(settings_, crashed);
    const auto redelivered = run(after.decide_batch(batch)).value();
    for (std::size_t i = 0; i < texts.size(); ++i)
      EXPECT_EQ(redelivered[i].value, first[i].value) << stored << " " << i;
    EXPECT_EQ(values(crashed.scan_now("agg:", "", 100).value().entries), values(records)) << stored;
    EXPECT_EQ(crashed.scan_now("decision:", "", 100).value().entries.size(), decisions.size());
  }

  // The pipeline's split (stored while the messages are published): decide_unstored writes
  // nothing (a crash after the publish is the case above with nothing stored) and gives the
  // same decisions; store writes what decide_batch writes.
  {
    repo split;
    el::validator<repo> w(settings_, split);
    auto decided = run(w.decide_unstored(batch)).value();
    ASSERT_EQ(decided.decisions.size(), texts.size());
    for (std::size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(decided.decisions[i].value, first[i].value) << i;
    EXPECT_TRUE(split.scan_now("", "", 100).value().entries.empty());
    ASSERT_TRUE(run(w.store(std::move(decided.stored), std::move(decided.records))));
    EXPECT_EQ(values(split.scan_now("decision:", "", 100).value().entries), values(decisions));
    EXPECT_EQ(values(split.scan_now("agg:", "", 100).value().entries), values(records));
  }
}

// On a store whose calls wait (Redis), a batch's writes are in flight at once: all its
// decisions are parked together before any record is written.
bulwark::task<std::vector<el::decision>>
decide_on(el::validator<bulwark::testing::faulty_repository<el::memory_deployment::repository_type>>* v,
          std::vector<std::string> texts) {
  const std::vector<std::string_view> batch(texts.begin(), texts.end());
  co_return co_await v->decide_batch(batch);
}

TEST_F(event_log_test, a_store_that_waits_gets_a_batch_s_writes_at_once) {
  using inner = el::memory_deployment::repository_type;
  using waiting = bulwark::testing::faulty_repository<inner>;
  inner state, plain_state;
  waiting store(state);
  el::validator<waiting> v(settings_, store);
  el::validator<inner> plain(settings_, plain_state);
  const auto& asset_type = *settings_.by_name("Asset");
  const auto asset = el::new_uuid();
  std::vector<std::string> texts;
  for (const auto& c :
       {el::make_command(el::action::create, asset_type, asset, json::parse(asset_body("a1")), "0", el::new_uuid()),
        el::make_command(el::action::update, asset_type, asset, json::parse(asset_body("a2")), "0", el::new_uuid()),
        el::make_command(el::action::create, asset_type, el::new_uuid(), json::parse(asset_body()), "0",
                         el::new_uuid()),
        el::make_command(el::action::create, asset_type, asset, json::parse(asset_body()), "0", el::new_uuid())})
    texts.push_back(c.dump());
  store.faults().hang(bulwark::testing::op::put);
  auto decided = asio::co_spawn(
      io_,
      [](auto op) -> asio::awaitable<std::optional<bulwark::result<std::vector<el::decision>>>> {
        co_return co_await std::move(op);
      }(decide_on(&v, texts)),
      asio::use_future);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (store.faults().hung(bulwark::testing::op::put) < texts.size() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));             // bounded
  EXPECT_EQ(store.faults().hung(bulwark::testing::op::put), texts.size()); // every decision at once
  EXPECT_EQ(state.scan_now("agg:", "", 10).value().entries.size(), 0u);    // no record before them
  store.faults().release(bulwark::testing::op::put);
  auto got = std::move(*decided.get());
  ASSERT_TRUE(got);
  const std::vector<std::string_view> batch(texts.begin(), texts.end());
  auto expected = run(plain.decide_batch(batch)).value();
  ASSERT_EQ(got.value().size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(got.value()[i].value, expected[i].value) << i;
  EXPECT_EQ(state.scan_now("agg:", "", 10).value().entries.size(), 2u);
}

// The persister and the materializer take a batch: several ids, duplicates, a gap.
TEST_F(event_log_test, persister_and_materializer_batches) {
  using repo = el::memory_deployment::repository_type;
  repo state, events, snapshots;
  el::validator<repo> v(settings_, state);
  el::event_store<repo> store(events);
  el::materializer<repo, repo> m(settings_, snapshots, store);
  const auto& asset_type = *settings_.by_name("Asset");
  const auto a = el::new_uuid(), b = el::new_uuid();
  std::vector<std::string> texts;
  for (const auto& c :
       {el::make_command(el::action::create, asset_type, a, json::parse(asset_body("a1")), "0", el::new_uuid()),
        el::make_command(el::action::create, asset_type, b, json::parse(asset_body("b1")), "0", el::new_uuid()),
        el::make_command(el::action::update, asset_type, a, json::parse(asset_body("a2")), "0", el::new_uuid()),
        el::make_command(el::action::update, asset_type, a, json::parse(asset_body("a3")), "0", el::new_uuid()),
        el::make_command(el::action::update, asset_type, b, json::parse(asset_body("b2")), "0", el::new_uuid())})
    texts.push_back(c.dump());
  std::vector<json> es;
  auto decided = run(v.decide_batch(std::vector<std::string_view>(texts.begin(), texts.end())));
  ASSERT_TRUE(decided);
  for (auto& d : decided.value()) es.push_back(json::parse(d.value));
  using ao = el::append_outcome;
  using mo = el::apply_outcome;
  // The first two alone, then all: those two are duplicates, the rest appended in one batch.
  EXPECT_EQ(run(store.append_batch(std::span(es).first(2))).value(), (std::vector{ao::appended, ao::appended}));
  EXPECT_EQ(run(store.append_batch(es)).value(),
            (std::vector{ao::duplicate, ao::duplicate, ao::appended, ao::appended, ao::appended}));
  EXPECT_EQ(run(store.append_batch(es)).value(), std::vector<ao>(5, ao::duplicate));
  // The materializer misses a's version 2: version 3 is filled in from the event store.
  const std::vector<json> gap{es[0], es[1], es[3]};
  EXPECT_EQ(run(m.apply_batch(gap)).value(), (std::vector{mo::applied, mo::applied, mo::applied}));
  EXPECT_EQ(run(m.apply_batch(es)).value(),
            (std::vector{mo::duplicate, mo::duplicate, mo::duplicate, mo::duplicate, mo::applied}));
  EXPECT_EQ(run(m.verify()).value().differ, 0u);
  EXPECT_EQ(json::parse(snapshots.get_now("snap:assets:" + a).value()->value)["fields"]["title"], "a3");
  EXPECT_EQ(json::parse(snapshots.get_now("status:" + es[2]["eventId"].get<std::string>()).value()->value)["status"],
            "applied");
}

// The command API's admission bound (admission.hpp, both modes): with no stage running, the
// commands pile up; past the bound a request is held for admit_timeout and refused with 503, a
// Retry-After and the count; eventlog_commands_total counts it as overloaded.
TEST_F(event_log_test, the_admission_bound_refuses_with_503_and_retry_after) {
  el::pipeline_options o;
  o.max_in_flight = 3;
  o.admit_timeout = std::chrono::milliseconds(100);
  el::memory_deployment idle(io_.get_executor(), settings_, o); // its stages never start
  http::router routes;
  el::add_command_routes(routes, idle.commands());
  int accepted_count = 0;
  http::response refused(0);
  for (int i = 0; i < 20 && refused.status == 0; ++i) {
    auto r = call(routes, "POST", "/assets", asset_body());
    if (r.status == 202)
      ++accepted_count;
    else
      refused = std::move(r);
  }
  EXPECT_EQ(accepted_count, 4); // the count (0, 1, 2, 3) is at most the bound before each
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.body, "Command not accepted: backend unavailable: the pipeline is 4 messages behind (bound 3)");
  EXPECT_EQ(refused.headers.value_or("Retry-After", ""), "1");
  const auto metrics = idle.stages().metrics()->expose();
  EXPECT_NE(metrics.find("eventlog_commands_total{outcome=\"overloaded\"} 1\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("eventlog_admission_behind_messages 4\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("eventlog_admission_bound_messages 3\n"), std::string::npos) << metrics;
  run(idle.stop());
}

// What the admission counts: the messages on a command's way through the stages. The persister
// and the materializer read the same events side by side, so an event neither has handled is
// one message on the way, not two (the sum over the groups took the pipeline for twice as slow
// as it is, and a bound derived from it held the throughput at half).
TEST_F(event_log_test, the_admission_counts_an_event_once_for_the_stages_that_read_it_side_by_side) {
  using pipeline_type = el::memory_deployment::pipeline_type;
  EXPECT_EQ(pipeline_type::behind_on_the_way({5, 7, 3, 1}), 5 + 7 + 1);
  EXPECT_EQ(pipeline_type::behind_on_the_way({0, 2, 9, 0}), 9);
  el::memory_deployment half(io_.get_executor(), settings_, {});
  ASSERT_TRUE(run(half.stages().start_validator())); // no persister, no materializer
  http::router routes;
  el::add_command_routes(routes, half.commands());
  for (int i = 0; i < 3; ++i) ASSERT_EQ(call(routes, "POST", "/assets", asset_body()).status, 202);
  auto decided = [&] {
    std::int64_t n = 0;
    for (std::int32_t part = 0; part < 4; ++part) n += half.bus().end_offset("events", part);
    return n;
  };
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((decided() < 3 || half.in_flight() != 3) && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1)); // bounded
  EXPECT_EQ(decided(), 3);
  EXPECT_EQ(half.in_flight(), 3); // three events, each waiting for two stages: 6 in the old sum
  run(half.stop());
}

// The admission's count between two measurements: the last one plus the commands admitted
// since it began, so that requests released together by one low count do not all pass; a
// request held while the count is high passes once a measurement finds it low again.
TEST(event_log_admission, counts_admissions_since_the_last_measurement_and_releases_held_requests) {
  bulwark::app::io_threads io(1);
  bulwark::metrics::registry metrics;
  std::atomic<std::int64_t> behind{0};
  std::atomic<int> measured{0};
  // The next measurement a century away: longer than the steady clock has run on any machine
  // (its epoch is the boot), so the first admission must still measure ("never measured" is no
  // age; a test machine up for less than the refresh once found the count fresh and never measured).
  el::admission once(
      {.max_in_flight = 5, .timeout = std::chrono::milliseconds(50), .refresh = std::chrono::hours(24 * 365 * 100)},
      [&]() -> bulwark::task<el::pipeline_count> {
        ++measured;
        co_return el::pipeline_count{behind.load(), 0};
      },
      metrics);
  // One measurement (0 behind; the next is a century away): the commands admitted since count,
  // so admissions stop after the bound: 6 (0..5 before each), or 7 when the measurement began
  // after the first was admitted (the first then is not in its count). Without the count all
  // 20 would pass.
  int passed = 0;
  for (int i = 0; i < 20; ++i)
    if (bulwark::app::block_on(io.executor(), once.admit())) ++passed;
  EXPECT_EQ(measured.load(), 1);
  EXPECT_GE(passed, 6);
  EXPECT_LE(passed, 7);
  // A request held while the count is high passes once a measurement finds it low again.
  el::admission often(
      {.max_in_flight = 5, .timeout = std::chrono::seconds(5), .refresh = std::chrono::milliseconds(1)},
      [&]() -> bulwark::task<el::pipeline_count> {
        co_return el::pipeline_count{behind.load(), 0};
      },
      metrics);
  behind = 100;
  std::atomic<bool> done{false};
  std::thread held([&] {
    EXPECT_TRUE(bulwark::app::block_on(io.executor(), often.admit()));
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(done.load()); // held: 100 behind
  behind = 2;
  held.join(); // released by a measurement within milliseconds (bounded by the 5 s timeout)
  EXPECT_TRUE(done.load());

  // The bound in time: what the stages handle in max_lag at their recent rate. Stages that
  // make no progress close the door at min_in_flight; at 10,000 messages/s it opens to the cap.
  const auto t0 = std::chrono::steady_clock::now();
  std::atomic<bool> progressing{false};
  el::admission timed(
      {.max_in_flight = 1000,
       .max_lag = std::chrono::milliseconds(500),
       .min_in_flight = 10,
       .timeout = std::chrono::milliseconds(20),
       .refresh = std::chrono::milliseconds(1)},
      [&]() -> bulwark::task<el::pipeline_count> {
        const auto ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
        co_return el::pipeline_count{50, progressing ? ms * 10 : 0};
      },
      metrics);
  EXPECT_TRUE(bulwark::app::block_on(io.executor(), timed.admit())); // no rate yet: the cap, 1000
  bulwark::result<void> stalled = bulwark::ok();
  for (int i = 0; i < 400 && stalled; ++i) { // a rate needs measurements 50 ms apart: up to 0.8 s
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    stalled = bulwark::app::block_on(io.executor(), timed.admit());
  }
  ASSERT_FALSE(stalled); // 50 behind and no progress: the bound fell to 10
  EXPECT_EQ(timed.bound(), 10);
  EXPECT_NE(stalled.error().detail().find("(bound 10)"), std::string::npos) << stalled.error().detail();
  progressing = true;
  bulwark::result<void> flowing = bulwark::error(bulwark::errc::unavailable);
  for (int i = 0; i < 200 && !flowing; ++i) flowing = bulwark::app::block_on(io.executor(), timed.admit());
  EXPECT_TRUE(flowing); // 10,000 handled a second: the bound rose past 51
  EXPECT_GT(timed.bound(), 51);
}

// A stage whose batch failed with a transient error (a store timing out under load) runs the
// batch again whole instead of leaving it to the bus's one-message-at-a-time delivery (which,
// on Kafka, costs a round of store calls and acknowledgements per command: the minutes-long
// tails of the loaded benchmark runs). The decisions come out the same and once each.
TEST_F(event_log_test, a_batch_that_failed_for_a_moment_runs_again_whole) {
  using inner = el::memory_deployment::repository_type;
  using flaky = bulwark::testing::faulty_repository<inner>;
  inner state, events, snapshots;
  flaky flaky_state(state), flaky_events(events), flaky_snapshots(snapshots);
  bulwark::memory::event_bus bus(io_.get_executor());
  el::pipeline<bulwark::memory::event_bus, flaky> p(settings_, bus, flaky_state, flaky_events, flaky_snapshots, {});
  const auto& asset_type = *settings_.by_name("Asset");
  for (int i = 0; i < 100; ++i) {
    const auto c = el::make_command(el::action::create, asset_type, el::new_uuid(), json::parse(asset_body()), "0",
                                    el::new_uuid_v7(el::now_ms()));
    bulwark::message m{std::string(el::command_key), c.dump(), {}};
    ASSERT_TRUE(run(bus.publish("commands", std::move(m))));
  }
  flaky_state.faults().fail_nth(bulwark::testing::op::put, 1, bulwark::errc::timeout); // the first batch's store
  ASSERT_TRUE(run(p.start_validator()));
  ASSERT_TRUE(run(p.start_persister()));
  ASSERT_TRUE(run(p.start_materializer()));
  auto behind = [&](const std::string& topic, const std::string& group) {
    std::int64_t n = 0;
    for (std::int32_t part = 0; part < 4; ++part)
      n += bus.end_offset(topic, part) - bus.committed(topic, group, part).value_or(0);
    return n;
  };
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((behind("commands", "validator") > 0 || behind("events", "materializer") > 0 ||
          snapshots.scan_now("snap:assets:", "", 1000).value().entries.size() < 100) &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1)); // bounded
  const auto metrics = p.metrics()->expose();
  EXPECT_NE(metrics.find("eventlog_stage_batch_retries_total{stage=\"validator\"} 1\n"), std::string::npos) << metrics;
  // Every create applied once: the run again published the events the failed run had already
  // published (the same ids and versions), which the materializer dropped as duplicates.
  const auto snaps = snapshots.scan_now("snap:assets:", "", 1000).value().entries;
  EXPECT_EQ(snaps.size(), 100u);
  for (const auto& e : snaps) EXPECT_EQ(json::parse(e.value)["version"], 1) << e.key;
  run(p.stop());
  run(bus.stop());
}

TEST_F(event_log_test, a_rebuild_while_commands_arrive_converges) {
  std::vector<std::string> assets;
  for (int i = 0; i < 20; ++i) assets.push_back(accepted("POST", "/assets", asset_body())["id"].get<std::string>());
  settle();
  std::atomic<bool> done{false};
  std::atomic<std::size_t> rebuilds{0};
  std::thread rebuilder([&] {
    while (!done.load() && rebuilds < 25) { // bounded: each rebuild reads every stream
      auto r = run(deployment_->stages().snapshots().rebuild());
      EXPECT_TRUE(r);
      ++rebuilds;
    }
  });
  for (int round = 0; round < 10; ++round) {
    for (std::size_t i = 0; i < assets.size(); ++i) {
      if ((i + static_cast<std::size_t>(round)) % 7 == 0) continue;
      accepted("PUT", "/assets/" + assets[i], asset_body(bulwark::test::numbered_key("r", round)));
    }
    // Half the rounds after a rebuild ran (bounded): a busy machine may start the thread late.
    for (int waited = 0; round == 4 && rebuilds.load() == 0 && waited < 10000; ++waited)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
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

// A command's decision and status are dropped once older than the retention (here 300 ms, swept
// at every batch): its status query then says so (404), and newer commands keep theirs.
TEST_F(event_log_test, decisions_and_statuses_expire) {
  el::pipeline_options o;
  o.retention = std::chrono::milliseconds(300);
  o.sweep_every = std::chrono::milliseconds(0);
  el::memory_deployment d(io_.get_executor(), settings_, std::move(o));
  ASSERT_TRUE(run(d.start()));
  http::router c, q;
  el::add_command_routes(c, d.commands());
  el::add_query_routes(q, d.queries());
  auto applied = [&](const json& cmd) { // waits (at most 10 s) until the command is applied
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    http::response got;
    do {
      got = call(q, "GET", "/commands/" + cmd["commandId"].get<std::string>());
      if (got.status == 200 && json::parse(got.body)["status"] == "applied") return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } while (std::chrono::steady_clock::now() < until);
    return false;
  };
  // More than one sweep takes (1024 keys): the next batches go on where it stopped.
  std::vector<json> older;
  for (int i = 0; i < 1100; ++i) older.push_back(json::parse(call(c, "POST", "/assets", asset_body()).body));
  const auto old = json::parse(call(c, "POST", "/assets", asset_body()).body);
  ASSERT_TRUE(el::uuid_v7_ms(old["commandId"].get<std::string>())); // time-ordered command ids
  ASSERT_TRUE(applied(old));
  const std::string old_decision = "decision:" + old["commandId"].get<std::string>();
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  json fresh;
  for (int i = 0; i < 3; ++i) { // their batches sweep the old commands' keys first
    fresh = json::parse(call(c, "POST", "/assets", asset_body("b")).body);
    ASSERT_TRUE(applied(fresh));
  }
  for (const auto& o : older) {
    EXPECT_EQ(call(q, "GET", "/commands/" + o["commandId"].get<std::string>()).status, 404);
    EXPECT_FALSE(d.state().get_now("decision:" + o["commandId"].get<std::string>()).value());
  }
  auto gone = call(q, "GET", "/commands/" + old["commandId"].get<std::string>());
  EXPECT_EQ(gone.status, 404);
  EXPECT_EQ(gone.body, "Command \"" + old["commandId"].get<std::string>() +
                           "\" is older than the status retention (300 ms): its status was dropped");
  EXPECT_FALSE(d.state().get_now(old_decision).value());
  EXPECT_TRUE(d.state().get_now("decision:" + fresh["commandId"].get<std::string>()).value());
  EXPECT_EQ(call(q, "GET", "/assets/" + old["id"].get<std::string>()).status, 200); // the entity stays
  const std::string unknown = el::new_uuid_v7(el::now_ms());
  EXPECT_EQ(call(q, "GET", "/commands/" + unknown).body, "Command \"" + unknown + "\" is unknown");
  bulwark::app::block_on(io_.get_executor(), d.stop());
}

} // namespace
