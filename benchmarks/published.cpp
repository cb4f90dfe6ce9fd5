// SPDX-License-Identifier: Apache-2.0
// Reading published_numbers.csv, and what each of its rows is a figure of.
#include "published.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string_view>

namespace cmx::bench {
namespace {

constexpr std::string_view kHeader = "source,kernel,setting,metric,value,unit,notes";
constexpr std::size_t kNumColumns = 7;

std::string lowercase(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower;
}

bool contains(std::string_view text, std::string_view word) {
  return lowercase(text).find(word) != std::string::npos;
}

/// std::getline without the '\r' of a CRLF line end (the reference table is saved with CRLF).
bool read_line(std::istream& in, std::string& line) {
  if (!std::getline(in, line)) return false;
  if (line.ends_with('\r')) line.pop_back();
  return true;
}

/// The fields of one CSV line: comma-separated, a field in double quotes may hold commas, and
/// "" inside quotes is one quote. Fields spanning lines are not supported (none are used).
std::vector<std::string> split_csv_line(std::string_view line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
      fields.back() += '"';
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  return fields;
}

}  // namespace

std::optional<Kernel> PublishedFigure::ep_kernel() const {
  if (contains(kernel, "dispatch")) return Kernel::dispatch;
  if (contains(kernel, "combine")) return Kernel::combine;
  return std::nullopt;
}

std::string PublishedFigure::system() const {
  std::istringstream words(kernel);
  std::string system, word;
  while (words >> word) {
    if (contains(word, "dispatch") || contains(word, "combine")) continue;
    if (!system.empty()) system += ' ';
    system += word;
  }
  return system;
}

int PublishedFigure::num_ranks() const {
  if (!setting.starts_with("EP")) return 0;
  int num_ranks = 0;
  const char* digits = setting.data() + 2;
  std::from_chars(digits, setting.data() + setting.size(), num_ranks);
  return num_ranks;
}

std::string PublishedFigure::machine() const {
  if (num_ranks() == 0) return "";
  const std::size_t begin = setting.find("; ");
  if (begin == std::string::npos) return "";
  const std::size_t end = setting.find(';', begin + 2);
  return setting.substr(begin + 2, end == std::string::npos ? std::string::npos : end - begin - 2);
}

bool PublishedFigure::is_latency() const {
  return contains(metric, "latency");
}
bool PublishedFigure::is_bandwidth() const {
  return contains(metric, "bandwidth");
}
bool PublishedFigure::is_primary() const {
  return !source.starts_with("SECONDARY");
}

std::vector<PublishedFigure> load_published_figures(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw std::runtime_error("cannot open the published figures file '" + path + "'");
  std::string line;
  if (!read_line(file, line) || line != kHeader)
    throw std::runtime_error(path + ":1: the header must be '" + std::string(kHeader) + "'");
  std::vector<PublishedFigure> figures;
  for (int line_number = 2; read_line(file, line); ++line_number) {
    if (line.empty()) continue;
    std::vector<std::string> fields = split_csv_line(line);
    if (fields.size() != kNumColumns)
      throw std::runtime_error(path + ":" + std::to_string(line_number) + ": " +
                               std::to_string(fields.size()) + " fields, expected " +
                               std::to_string(kNumColumns));
    figures.push_back({.source = std::move(fields[0]),
                       .kernel = std::move(fields[1]),
                       .setting = std::move(fields[2]),
                       .metric = std::move(fields[3]),
                       .value = std::move(fields[4]),
                       .unit = std::move(fields[5]),
                       .notes = std::move(fields[6])});
  }
  return figures;
}

}  // namespace cmx::bench
