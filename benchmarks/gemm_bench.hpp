// SPDX-License-Identifier: Apache-2.0
// The GEMM suite: cmx's INT8 GEMMs (dense, grouped masked, the fused expert FFN) with oneDNN
// timed in the same iterations on the same operands, and this machine's int8 peak.
#pragma once

namespace cmx::bench {

/// The counters of the GEMM suite's benchmarks (medians over a run's iterations).
namespace gemm_counter {
inline constexpr char kTops[] = "TOPS";                 // cmx: 1e12 int8 ops/s (2 per MAC)
inline constexpr char kOnednnTops[] = "onednn_TOPS";    // oneDNN, the same operations
inline constexpr char kRatioOnednn[] = "ratio_onednn";  // oneDNN time / cmx time
inline constexpr char kWeightGBps[] = "B_GBps";         // weight bytes read once / cmx time
inline constexpr char kPeakTops[] = "int8_peak_TOPS";   // machine_limits: the int8 peak, all cores
inline constexpr char kMemcpyGBps[] = "memcpy_GBps";    // machine_limits: memcpy on all cores
}  // namespace gemm_counter

}  // namespace cmx::bench
