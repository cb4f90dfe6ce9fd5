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

#include <iostream>
#include <memory>
#include <vector>

#include "published.hpp"
#include "report.hpp"
#include "suite.hpp"

int main(int argc, char** argv) {
  const auto published = cmx::bench::initialize(argc, argv, CMX_BENCH_PUBLISHED_NUMBERS);
  if (!published) return 1;

  std::vector<std::unique_ptr<cmx::bench::Suite>> suites;
  suites.push_back(cmx::bench::make_ep_suite());
  suites.push_back(cmx::bench::make_mla_suite());
  suites.push_back(cmx::bench::make_gemm_suite());
  cmx::bench::add_common_context();
  for (const auto& suite : suites) suite->register_benchmarks();

  // Owned by Google Benchmark; it follows --benchmark_format.
  benchmark::BenchmarkReporter* display = benchmark::CreateDefaultDisplayReporter();
  cmx::bench::RunCollector collector(*display);
  benchmark::RunSpecifiedBenchmarks(&collector);
  for (const auto& suite : suites) suite->finish();

  std::ostream& summary = cmx::bench::summary_stream(*display);
  for (const auto& suite : suites) suite->print_summary(summary, collector.runs(), *published);
  benchmark::Shutdown();
  return 0;
}
