// SPDX-License-Identifier: Apache-2.0
// The MLA suite's grid and counters, shared by its benchmarks and its summary.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "cmx/cmx.hpp"

namespace cmx::bench {

/// One decode batch's inputs, as cmx and the baseline both read them.
struct MlaInputs {
  attention::MlaDecodeShape shape;
  std::vector<bf16> q;         // [batch][s_q][h_q][576]
  std::vector<bf16> kv_cache;  // [num_blocks][block_size][576]
  int block_size = 0;
  std::vector<std::int32_t> block_table;  // [batch][max_blocks_per_seq]
  int max_blocks_per_seq = 0;
  std::vector<std::int32_t> seqlens;  // [batch]
  float softmax_scale = 0;
};

/// One point of FlashMLA's benchmark grid, scaled to this machine.
struct MlaShape {
  int batch = 1;
  int mean_seqlen = 1024;
  int num_heads = 16;   // h_q
  int num_queries = 1;  // s_q

  friend bool operator==(const MlaShape&, const MlaShape&) = default;
};

/// FlashMLA's grid (tests/test_flash_mla.py: b=128, mean seqlen 4096/8192, h_q 16-128, s_q 1-2)
/// cut to what two cores run in a sane time: batch {1, 8, 32}, mean seqlen {1024, 4096},
/// h_q {16, 128}, s_q {1, 2}.
inline constexpr std::array<int, 3> kMlaBatches = {1, 8, 32};
inline constexpr std::array<int, 2> kMlaMeanSeqlens = {1024, 4096};
inline constexpr std::array<int, 2> kMlaHeads = {16, 128};
inline constexpr std::array<int, 2> kMlaQueries = {1, 2};
/// FlashMLA's cache block size.
inline constexpr int kMlaBlockSize = 64;

/// FLOPs and bytes of one decode as FlashMLA's test counts them (its README's figures use
/// these): FLOPs = s_q * sum(seqlens) * h_q * (576 + 512) * 2,
/// bytes = (sum(seqlens) * 576 + batch * s_q * h_q * (576 + 512)) * 2.
inline double mla_flops(int num_queries, int num_heads, double total_seqlens) {
  return 2.0 * num_queries * total_seqlens * num_heads * (576 + 512);
}
inline double mla_bytes(int batch, int num_queries, int num_heads, double total_seqlens) {
  return 2.0 *
         (total_seqlens * 576 + static_cast<double>(batch) * num_queries * num_heads * (576 + 512));
}

namespace mla_counter {
inline constexpr const char* kTflops = "TFLOPS";             // cmx, FlashMLA's FLOPs
inline constexpr const char* kGBps = "GBps";                 // cmx, FlashMLA's bytes, 1e9 B/s
inline constexpr const char* kUtilPeak = "util_peak";        // TFLOPS / this machine's bf16 peak
inline constexpr const char* kUtilBw = "util_bw";            // GBps / this machine's read bandwidth
inline constexpr const char* kRatioOnednn = "ratio_onednn";  // oneDNN baseline time / cmx time
inline constexpr const char* kPeakTflops = "peak_TFLOPS";    // this machine, same run
inline constexpr const char* kReadGBps = "read_GBps";        // this machine, same run
}  // namespace mla_counter

}  // namespace cmx::bench
