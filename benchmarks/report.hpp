// SPDX-License-Identifier: Apache-2.0
// cmx_bench's report: the context recorded with every run, a reporter that keeps each EP
// benchmark's medians, and the summary printed after Google Benchmark's table.
#pragma once

#include <benchmark/benchmark.h>

#include <map>
#include <ostream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ep_workload.hpp"
#include "published.hpp"

namespace cmx::bench {

/// Records the context of the run (backend, ranks, threads, ISA, workload, byte counting) in
/// Google Benchmark's context block. Call before RunSpecifiedBenchmarks.
void add_benchmark_context(const EpShape& shape, std::span<const int> rank_counts);

/// What one EP benchmark measured: its counters (medians), or why it failed.
struct MeasuredRow {
  Kernel kernel = Kernel::dispatch;
  int num_ranks = 0;
  double latency_us = 0;
  double gbps = 0;
  double memcpy_gbps = 0;
  double ratio_memcpy = 0;
  double ratio_unfused = 0;
  std::string error;  // empty unless the benchmark failed
};

/// A display reporter that passes every call on to Google Benchmark's own display reporter
/// (so --benchmark_format still decides the table) and keeps each EP benchmark's row: the
/// median aggregate when there are repetitions, else the single run.
class SummaryCollector final : public benchmark::BenchmarkReporter {
 public:
  explicit SummaryCollector(benchmark::BenchmarkReporter& display) : display_(display) {}

  bool ReportContext(const Context& context) override;
  void ReportRuns(const std::vector<Run>& runs) override;
  void Finalize() override;

  /// The rows kept, by kernel then rank count.
  std::vector<MeasuredRow> rows() const;

 private:
  benchmark::BenchmarkReporter& display_;
  std::map<std::pair<Kernel, int>, MeasuredRow> rows_;  // by (kernel, num_ranks)
};

/// Prints the summary: per kernel and W, latency, GB/s, this machine's limit (memcpy) and the
/// ratios, with the published figures of the same kernel and EP size beneath, then the sources.
void print_summary(std::ostream& out, const EpShape& shape, const std::vector<MeasuredRow>& rows,
                   const std::vector<PublishedFigure>& published,
                   const std::string& published_path);

}  // namespace cmx::bench
