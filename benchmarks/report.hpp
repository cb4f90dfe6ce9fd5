// SPDX-License-Identifier: Apache-2.0
// cmx_bench's report: the context every run records, a reporter that keeps each benchmark's
// median counters, and the pieces every suite's summary is printed with.
#pragma once

#include <benchmark/benchmark.h>

#include <map>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "published.hpp"

namespace cmx::bench {

/// What one benchmark measured: the median aggregate's counters when it has repetitions, else
/// its single run's; or why it failed.
struct MeasuredRun {
  std::string name;  ///< the registered name without arguments, e.g. "dispatch", "gemm"
  std::string args;  ///< the named arguments, e.g. "ranks:8/tokens:128/hidden:7168/topk:8"
  std::map<std::string, double> counters;
  std::string error;  ///< empty unless the benchmark failed

  /// The counter `key`, 0 if the run has none.
  double counter(std::string_view key) const;
  /// The value of named argument `key` ("ranks" of "ranks:8/..."), or `missing`.
  long arg(std::string_view key, long missing = -1) const;
};

/// Google Benchmark's initialization for cmx_bench and cmx_bench_mpi: its flags, after these
/// defaults (the command line overrides them): --benchmark_repetitions=3
/// --benchmark_min_time=0.2 --benchmark_display_aggregates_only=true
/// --benchmark_counters_tabular=true; and cmx's own --published_numbers=PATH, else
/// $CMX_PUBLISHED_NUMBERS, else `default_published_path`. Returns the published figures, or
/// nothing after printing why the command line or the file is bad.
std::optional<PublishedTable> initialize(int argc, char** argv,
                                         const std::string& default_published_path);

/// Where summaries go: stdout under the console table, else stderr (so that stdout stays
/// machine-readable with a JSON or CSV --benchmark_format).
std::ostream& summary_stream(benchmark::BenchmarkReporter& display);

/// Records the context every suite shares (hardware threads, compiled ISA) in Google
/// Benchmark's context block. Call before RunSpecifiedBenchmarks.
void add_common_context();

/// A display reporter that passes every call on to Google Benchmark's own display reporter (so
/// --benchmark_format still decides the table) and keeps each benchmark's MeasuredRun.
class RunCollector final : public benchmark::BenchmarkReporter {
 public:
  explicit RunCollector(benchmark::BenchmarkReporter& display) : display_(display) {}

  bool ReportContext(const Context& context) override;
  void ReportRuns(const std::vector<Run>& runs) override;
  void Finalize() override;

  /// Every benchmark's run, in the order they finished.
  const std::vector<MeasuredRun>& runs() const noexcept { return runs_; }

 private:
  benchmark::BenchmarkReporter& display_;
  std::vector<MeasuredRun> runs_;
};

/// Numbers the sources a summary cites, in order of first use, and prints them as footnotes.
class Footnotes {
 public:
  /// The footnote number (from 1) of `source`.
  std::size_t number(const std::string& source);
  /// "[n]" for `source`.
  std::string cite(const std::string& source);
  /// The footnotes: each source verbatim with its weight, the machine and notes of its first
  /// figure in `published`.
  void print(std::ostream& out, const PublishedTable& published) const;

 private:
  std::vector<std::string> sources_;  // footnote i + 1 is sources_[i]
};

/// `value` with `decimals` digits after the point.
std::string fixed(double value, int decimals);

/// One row of a summary table: cell i in |widths[i]| characters, left-aligned where the width
/// is negative, else right-aligned (a cell past the widths takes the last one).
void print_row(std::ostream& out, std::span<const int> widths,
               const std::vector<std::string>& cells);

}  // namespace cmx::bench
