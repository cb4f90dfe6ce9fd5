// SPDX-License-Identifier: Apache-2.0
// A suite of cmx_bench: one kernel family's benchmarks and the summary printed after them.
#pragma once

#include <memory>
#include <ostream>
#include <vector>

#include "published.hpp"
#include "report.hpp"

namespace cmx::bench {

/// One kernel family in cmx_bench (EP dispatch/combine, GEMM, MLA, ...). main() registers every
/// suite's benchmarks, runs the ones the filter selects, then asks every suite for its summary.
class Suite {
 public:
  virtual ~Suite() = default;

  /// Registers the suite's benchmarks with Google Benchmark and adds its context lines
  /// (benchmark::AddCustomContext). Called once, before any benchmark runs.
  virtual void register_benchmarks() = 0;

  /// Prints the suite's summary of `runs` (every benchmark's median, this suite's and others')
  /// beside `published`; prints nothing if none of its benchmarks ran.
  virtual void print_summary(std::ostream& out, const std::vector<MeasuredRun>& runs,
                             const PublishedTable& published) const = 0;

  /// Frees what the suite kept between runs (called after the last benchmark).
  virtual void finish() noexcept {}
};

/// The EP suite: FusedDispatch and FusedCombine at the DeepEP low-latency setting.
std::unique_ptr<Suite> make_ep_suite();

/// The MLA suite: MLA decode on FlashMLA's grid, scaled to this machine.
std::unique_ptr<Suite> make_mla_suite();

/// The GEMM suite: dense, grouped masked and expert FFN INT8 GEMMs beside oneDNN, at
/// DeepSeek-V3 shapes, with this machine's int8 peak.
std::unique_ptr<Suite> make_gemm_suite();

}  // namespace cmx::bench
