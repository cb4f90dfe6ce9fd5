// SPDX-License-Identifier: Apache-2.0
// cmx_bench: every kernel family of cmx on this machine (Google Benchmark), each beside its
// baseline measured in the same run, then each family's summary beside the published figures.
//
//   cmx_bench [--published_numbers=PATH] [Google Benchmark flags]
//
// Defaults, each overridable on the command line: --benchmark_repetitions=3
// --benchmark_min_time=0.2 --benchmark_display_aggregates_only=true
// --benchmark_counters_tabular=true. Select benchmarks with --benchmark_filter, e.g.
// --benchmark_filter='ranks:(2|8)/'. The published figures are read from PATH, else
// $CMX_PUBLISHED_NUMBERS, else the published_numbers.csv of the source tree. With a JSON or CSV
// --benchmark_format the summaries go to stderr, so stdout stays machine-readable.
#include <benchmark/benchmark.h>

#include <array>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "published.hpp"
#include "report.hpp"
#include "suite.hpp"

namespace {

constexpr std::string_view kPublishedFlag = "--published_numbers=";
constexpr const char* kPublishedEnv = "CMX_PUBLISHED_NUMBERS";

/// Google Benchmark flags cmx_bench runs with unless the command line says otherwise (later
/// flags win).
constexpr std::array<const char*, 4> kDefaultFlags = {
    "--benchmark_repetitions=3",
    "--benchmark_min_time=0.2",
    "--benchmark_display_aggregates_only=true",
    "--benchmark_counters_tabular=true",
};

}  // namespace

int main(int argc, char** argv) {
  cmx::bench::PublishedTable published{.figures = {}, .path = CMX_BENCH_PUBLISHED_NUMBERS};
  if (const char* from_env = std::getenv(kPublishedEnv)) published.path = from_env;

  // Google Benchmark's arguments: ours first, so that the user's override them; our own flag
  // taken out.
  std::vector<std::string> arguments = {argv[0]};
  arguments.insert(arguments.end(), kDefaultFlags.begin(), kDefaultFlags.end());
  for (int i = 1; i < argc; ++i) {
    const std::string_view argument = argv[i];
    if (argument.starts_with(kPublishedFlag))
      published.path = argument.substr(kPublishedFlag.size());
    else
      arguments.emplace_back(argument);
  }
  std::vector<char*> argument_pointers;
  for (std::string& argument : arguments) argument_pointers.push_back(argument.data());
  int argument_count = static_cast<int>(argument_pointers.size());
  benchmark::Initialize(&argument_count, argument_pointers.data());
  if (benchmark::ReportUnrecognizedArguments(argument_count, argument_pointers.data())) return 1;

  try {
    published.figures = cmx::bench::load_published_figures(published.path);
  } catch (const std::exception& error) {
    std::cerr << "cmx_bench: " << error.what() << " (give its path with " << kPublishedFlag
              << "PATH or $" << kPublishedEnv << ")\n";
    return 1;
  }

  std::vector<std::unique_ptr<cmx::bench::Suite>> suites;
  suites.push_back(cmx::bench::make_ep_suite());
  suites.push_back(cmx::bench::make_gemm_suite());
  cmx::bench::add_common_context();
  for (const auto& suite : suites) suite->register_benchmarks();

  // Owned by Google Benchmark; it follows --benchmark_format.
  benchmark::BenchmarkReporter* display = benchmark::CreateDefaultDisplayReporter();
  cmx::bench::RunCollector collector(*display);
  benchmark::RunSpecifiedBenchmarks(&collector);
  for (const auto& suite : suites) suite->finish();

  const bool display_is_table = dynamic_cast<benchmark::ConsoleReporter*>(display) != nullptr;
  std::ostream& summary = display_is_table ? std::cout : std::cerr;
  for (const auto& suite : suites) suite->print_summary(summary, collector.runs(), published);
  benchmark::Shutdown();
  return 0;
}
