// SPDX-License-Identifier: Apache-2.0
// cmx_bench's common context, the reporter that keeps the medians, and the summary pieces.
#include "report.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>
#include <exception>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string_view>
#include <thread>
#include <vector>

#include "cmx/backend/cpu/isa.hpp"

namespace cmx::bench {
namespace {

/// Appends `item` to a `separator`-separated list.
void append_item(std::string& list, std::string_view item, std::string_view separator) {
  if (!list.empty()) list += separator;
  list += item;
}

/// The instruction sets this binary was compiled for (-march=native picks them).
std::string compiled_isa() {
  constexpr const char* kFeatures[] = {
#if defined(__x86_64__)
    "x86-64",
#elif defined(__aarch64__)
    "aarch64",
#else
    "unknown architecture",
#endif
#if defined(__AVX2__)
    "avx2",
#endif
#if defined(__FMA__)
    "fma",
#endif
#if defined(__AVX512F__)
    "avx512f",
#endif
#if defined(__AVX512BW__)
    "avx512bw",
#endif
#if defined(__AVX512BF16__)
    "avx512bf16",
#endif
#if defined(__ARM_NEON)
    "neon",
#endif
  };
  std::string isa;
  for (const char* feature : kFeatures) append_item(isa, feature, " ");
  return isa;
}

}  // namespace

double MeasuredRun::counter(std::string_view key) const {
  const auto found = counters.find(std::string(key));
  return found == counters.end() ? 0.0 : found->second;
}

long MeasuredRun::arg(std::string_view key, long missing) const {
  const std::string prefix = std::string(key) + ":";
  std::size_t at = 0;
  while (at < args.size()) {
    const std::size_t end = std::min(args.find('/', at), args.size());
    const std::string_view item(args.data() + at, end - at);
    if (item.starts_with(prefix)) {
      long value = missing;
      std::from_chars(item.data() + prefix.size(), item.data() + item.size(), value);
      return value;
    }
    at = end + 1;
  }
  return missing;
}

std::optional<PublishedTable> initialize(int argc, char** argv,
                                         const std::string& default_published_path) {
  constexpr std::string_view kPublishedFlag = "--published_numbers=";
  constexpr const char* kPublishedEnv = "CMX_PUBLISHED_NUMBERS";
  constexpr std::array<const char*, 4> kDefaultFlags = {
      "--benchmark_repetitions=3",
      "--benchmark_min_time=0.2",
      "--benchmark_display_aggregates_only=true",
      "--benchmark_counters_tabular=true",
  };
  PublishedTable published{.figures = {}, .path = default_published_path};
  if (const char* from_env = std::getenv(kPublishedEnv)) published.path = from_env;

  // Google Benchmark's arguments: ours first, so that the user's override them; our own flag
  // taken out. The program name stays argv[0] itself: Google Benchmark keeps that pointer (the
  // JSON context's "executable"), so it must outlive this function, as `arguments` does not.
  std::vector<std::string> arguments(kDefaultFlags.begin(), kDefaultFlags.end());
  for (int i = 1; i < argc; ++i) {
    const std::string_view argument = argv[i];
    if (argument.starts_with(kPublishedFlag))
      published.path = argument.substr(kPublishedFlag.size());
    else
      arguments.emplace_back(argument);
  }
  std::vector<char*> argument_pointers = {argv[0]};
  for (std::string& argument : arguments) argument_pointers.push_back(argument.data());
  int argument_count = static_cast<int>(argument_pointers.size());
  benchmark::Initialize(&argument_count, argument_pointers.data());
  if (benchmark::ReportUnrecognizedArguments(argument_count, argument_pointers.data()))
    return std::nullopt;

  try {
    published.figures = load_published_figures(published.path);
  } catch (const std::exception& error) {
    std::cerr << argv[0] << ": " << error.what() << " (give its path with " << kPublishedFlag
              << "PATH or $" << kPublishedEnv << ")\n";
    return std::nullopt;
  }
  return published;
}

std::ostream& summary_stream(benchmark::BenchmarkReporter& display) {
  const bool display_is_table = dynamic_cast<benchmark::ConsoleReporter*>(&display) != nullptr;
  return display_is_table ? std::cout : std::cerr;
}

void add_common_context() {
  benchmark::AddCustomContext("cmx_hardware_threads",
                              std::to_string(std::thread::hardware_concurrency()));
  benchmark::AddCustomContext("cmx_compiled_isa", compiled_isa());
  benchmark::AddCustomContext("cmx_cpu_features", cmx::cpu::describe(cmx::cpu::features()));
  benchmark::AddCustomContext("cmx_statistics",
                              "counters: medians over a run's iterations (or repetitions)");
}

bool RunCollector::ReportContext(const Context& context) {
  return display_.ReportContext(context);
}

void RunCollector::ReportRuns(const std::vector<Run>& runs) {
  display_.ReportRuns(runs);
  for (const Run& run : runs) {
    const bool is_median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
    const bool is_only_run = run.run_type == Run::RT_Iteration && run.repetitions <= 1;
    if (!is_median && !is_only_run && !run.error_occurred) continue;
    MeasuredRun measured;
    measured.name = run.run_name.function_name;
    measured.args = run.run_name.args;
    if (run.error_occurred) {
      measured.error = run.error_message;
    } else {
      for (const auto& [key, value] : run.counters) measured.counters[key] = value.value;
    }
    // An error is reported by every repetition: keep one row per benchmark.
    const auto same = std::find_if(runs_.begin(), runs_.end(), [&](const MeasuredRun& kept) {
      return kept.name == measured.name && kept.args == measured.args;
    });
    if (same == runs_.end())
      runs_.push_back(std::move(measured));
    else
      *same = std::move(measured);
  }
}

void RunCollector::Finalize() {
  display_.Finalize();
}

std::size_t Footnotes::number(const std::string& source) {
  const auto found = std::find(sources_.begin(), sources_.end(), source);
  if (found != sources_.end()) return static_cast<std::size_t>(found - sources_.begin()) + 1;
  sources_.push_back(source);
  return sources_.size();
}

std::string Footnotes::cite(const std::string& source) {
  std::string citation = "[";
  citation += std::to_string(number(source));
  citation += ']';
  return citation;
}

void Footnotes::print(std::ostream& out, const PublishedTable& published) const {
  if (sources_.empty()) return;
  out << "\nSources (rows of " << published.path << "):\n";
  for (std::size_t i = 0; i < sources_.size(); ++i) {
    const PublishedFigure& first =
        *std::find_if(published.figures.begin(), published.figures.end(),
                      [&](const PublishedFigure& figure) { return figure.source == sources_[i]; });
    // A SECONDARY source says so at its start; a PRIMARY one does not.
    out << '[' << i + 1 << "] " << (first.is_primary() ? "PRIMARY: " : "") << sources_[i] << '\n';
    if (!first.machine().empty()) out << "    machine: " << first.machine() << '\n';
    if (!first.notes.empty()) out << "    notes: " << first.notes << '\n';
  }
}

std::string fixed(double value, int decimals) {
  std::ostringstream text;
  text << std::fixed << std::setprecision(decimals) << value;
  return text.str();
}

void print_row(std::ostream& out, std::span<const int> widths,
               const std::vector<std::string>& cells) {
  for (std::size_t i = 0; i < cells.size(); ++i) {
    const int width = widths.empty() ? 0 : widths[std::min(i, widths.size() - 1)];
    out << (width < 0 ? std::left : std::right) << std::setw(std::abs(width)) << cells[i];
  }
  out << std::right << '\n';
}

}  // namespace cmx::bench
