// libFuzzer target for the event-log example's JSON scanner (event_log::object_members), checked
// against nlohmann_json, whose reading the scanner promises to match: it accepts exactly the
// texts nlohmann_json parses into an object nested no deeper than the scanner's limit, and each
// member it reports is, parsed, the value nlohmann_json holds under that key (the last of
// duplicates, as nlohmann keeps). Also the route's body check (check_body) on the same bytes,
// and its splice into a command: a body the API accepts makes a command the validator reads.
//
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Iexamples/event-log \
//     tests/fuzz/event_log_scanner_fuzz.cpp
// or scripts/fuzz.sh SECONDS event_log_scanner.

#include <event_log/model.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

using nlohmann::json;

constexpr std::size_t depth_limit = 8; // small, so the fuzzer reaches it

// Levels of arrays and objects in `j` (a scalar: 0).
std::size_t depth_of(const json& j) {
  if (!j.is_structured()) return 0;
  std::size_t deepest = 0;
  for (const auto& v : j) deepest = std::max(deepest, depth_of(v));
  return deepest + 1;
}

[[noreturn]] void differ() { std::abort(); }

// The scanner's reading of `text` (not starting with a byte order mark, no NUL byte) against
// nlohmann_json's.
void agree(std::string_view text, const std::optional<std::vector<event_log::raw_member>>& members) {
  const json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  // object_members' limit counts the levels below the top object.
  const bool nlohmann_object = !parsed.is_discarded() && parsed.is_object() && depth_of(parsed) <= depth_limit + 1;
  if (members.has_value() != nlohmann_object) differ();
  if (!members) return;
  const auto& ms = *members;
  const auto key_of = [](std::string_view raw) { return json::parse("\"" + std::string(raw) + "\"", nullptr, false); };
  for (std::size_t i = 0; i < ms.size(); ++i) {
    const json key = key_of(ms[i].key);
    if (key.is_discarded() || !parsed.contains(key.get<std::string>())) differ();
    bool later = false; // nlohmann keeps the last of duplicate keys
    for (std::size_t j = i + 1; j < ms.size() && !later; ++j) later = key_of(ms[j].key) == key;
    if (!later && json::parse(ms[i].value, nullptr, false) != parsed[key.get<std::string>()]) differ();
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  const auto members = event_log::object_members(text, depth_limit);
  // Where nlohmann_json reads on its own terms (it skips a leading byte order mark and ends its
  // input at a NUL byte), the scanner refuses, and the command API keeps such bytes out of
  // commands (body_text, check_body: checked below).
  if (text.starts_with("\xEF\xBB\xBF") || text.find('\0') != std::string_view::npos) {
    if (members) differ();
  } else {
    agree(text, members);
  }

  // The command API's check and splice: whatever it accepts, the validator reads as a command.
  static const auto settings = event_log::parse_settings(event_log::default_settings_json).value();
  const auto body = event_log::body_text(text);
  for (const auto& type : settings.types) {
    auto checked = event_log::check_body(type, body);
    if (!checked) {
      if (checked.error() != bulwark::errc::invalid_argument || checked.error().detail().empty()) differ();
      continue;
    }
    const auto command = event_log::command_text(event_log::action::create, type, "id-1", body, "0", "cmd-1");
    if (!event_log::object_members(command)) differ();
  }
  return 0;
}
