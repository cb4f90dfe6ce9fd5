// SPDX-License-Identifier: Apache-2.0
// The tile sizes of cmx's INT8 GEMM kernels: how the work is cut into blocks, apart from the
// algorithm (cmx/gemm/tiling.hpp) and from the device's tile product.
#pragma once

namespace cmx::gemm::tuning {

/// Rows of A per work item (one block of a launch): each item reads its weight panels once, so
/// more rows read the weights fewer times. With kPanelsPerItem, the int32 accumulators of an
/// item take kRowsPerItem * kPanelsPerItem * 16 * 4 B (120 KiB) of local memory.
inline constexpr int kRowsPerItem = 120;
/// Panels of B (16 output channels each) per work item: a tile product over more panels
/// spreads its per-row work (the rows' corrections) over more products.
inline constexpr int kPanelsPerItem = 16;
/// Depth per tile product call. Every call re-reads and re-writes its accumulators and recomputes
/// its rows' corrections; on Zen 5 (1 MiB L2) one call over the whole depth of DeepSeek-V3's
/// GEMMs (K <= 7168) measured faster than 512- to 4096-deep steps, the hardware prefetchers
/// streaming the operands from L2 and L3. Larger K is cut into steps of this depth.
inline constexpr int kDepthBlock = 8192;
/// Panels of the intermediate per gate/up step of the fused expert FFN: its accumulators share
/// the block's local memory with the intermediate rows.
inline constexpr int kFfnPanelsPerStep = 8;

}  // namespace cmx::gemm::tuning
