// SPDX-License-Identifier: Apache-2.0
// The GEMM suite's summary table.
#pragma once

#include <ostream>
#include <vector>

#include "gemm_workload.hpp"
#include "published.hpp"
#include "report.hpp"

namespace cmx::bench {

/// Prints, for every GEMM benchmark in `runs`: cmx's TOPS and its share of this machine's int8
/// peak (measured by machine_limits in the same run), oneDNN's TOPS and ratio_onednn against
/// the suite's targets, and beneath it DeepGEMM's published H800 figure for the same shape with
/// its share of the H800's FP8 peak; then the sources. `expert_rows` are the rows of each
/// local expert of the MoE workload `moe`. Prints nothing if no GEMM benchmark ran.
void print_gemm_summary(std::ostream& out, const MoeShape& moe, const std::vector<int>& expert_rows,
                        const std::vector<MeasuredRun>& runs, const PublishedTable& published);

}  // namespace cmx::bench
