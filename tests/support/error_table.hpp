#pragma once
// Checks one error category against its table and against docs/errors.md, row by row: every
// row's code gives the row's message and condition, the docs list exactly these rows under the
// category's heading (value, name, condition, message), and a code without a row maps onto no
// condition. BULWARK_ERRORS_MD is the docs path (a compile definition of the test targets).

#include <bulwark/error.hpp>

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bulwark::test {

struct documented_code {
  std::string name, condition, message;
};

inline std::string trim_cell(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  if (s.size() >= 2 && s.front() == '`' && s.back() == '`') s = s.substr(1, s.size() - 2);
  return std::string(s);
}

/// The table rows under the first heading of docs/errors.md that names `category` in
/// backquotes, by value (rows whose first cell is not a number are headers and are skipped).
inline std::map<int, documented_code> documented_codes(std::string_view category) {
  std::ifstream in(BULWARK_ERRORS_MD);
  EXPECT_TRUE(in.good()) << "cannot read " << BULWARK_ERRORS_MD;
  // Appended, not "`" + std::string(...): GCC 12 at -O3 reports a false -Wstringop-overflow in
  // operator+(const char*, string&&) (see support/keys.hpp).
  std::string marker = "`";
  marker.append(category).append("`");
  std::map<int, documented_code> codes;
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("#")) {
      if (inside) break;
      inside = line.find(marker) != std::string::npos;
      continue;
    }
    if (!inside || !line.starts_with("|")) continue;
    std::vector<std::string> cells;
    for (std::size_t at = 1, bar; (bar = line.find('|', at)) != std::string::npos; at = bar + 1)
      cells.push_back(trim_cell(std::string_view(line).substr(at, bar - at)));
    if (cells.size() < 4) continue;
    int value = 0;
    try {
      std::size_t used = 0;
      value = std::stoi(cells[0], &used);
      if (used != cells[0].size()) continue;
    } catch (const std::exception&) {
      continue;
    }
    EXPECT_FALSE(codes.contains(value)) << category << ": value " << value << " documented twice";
    codes[value] = {cells[1], cells[2], cells[3]};
  }
  return codes;
}

/// Walks every row of `rows` (the table behind `cat`) against the category and the docs.
inline void expect_category_matches_table_and_docs(const std::error_category& cat, std::span<const error_row> rows,
                                                   int value_without_row) {
  const auto docs = documented_codes(cat.name());
  EXPECT_EQ(docs.size(), rows.size()) << "docs/errors.md lists " << docs.size() << " codes under `" << cat.name()
                                      << "`, the table has " << rows.size();
  for (const auto& row : rows) {
    SCOPED_TRACE(std::string(cat.name()) + ":" + std::to_string(row.value) + " " + std::string(row.name));
    const std::error_code ec(row.value, cat);
    if (!row.message.empty()) {
      EXPECT_EQ(ec.message(), row.message);
    }
    EXPECT_EQ(condition_of(ec), row.condition);
    if (row.condition != errc{}) {
      EXPECT_TRUE(ec == row.condition);
    }
    const auto doc = docs.find(row.value);
    if (doc == docs.end()) {
      ADD_FAILURE() << "no row in docs/errors.md";
      continue;
    }
    EXPECT_EQ(doc->second.name, row.name);
    EXPECT_EQ(doc->second.condition,
              row.condition == errc{} ? std::string("none") : std::string(to_string(row.condition)));
    EXPECT_EQ(doc->second.message, ec.message());
  }
  EXPECT_EQ(find_row(rows, value_without_row), nullptr);
  EXPECT_EQ(condition_of(std::error_code(value_without_row, cat)), errc{});
}

} // namespace bulwark::test
