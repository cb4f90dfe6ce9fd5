// SPDX-License-Identifier: Apache-2.0
// The tile sizes of cmx's INT8 GEMM kernels: how the work is cut into blocks, apart from the
// algorithm (cmx/gemm/tiling.hpp) and from the device's tile product.
#pragma once

namespace cmx::gemm::tuning {

/// Rows of A per work item (one block of a launch): each item reads its weight panels once, so
/// more rows read the weights fewer times. With kPanelsPerItem, the int32 accumulators of an
/// item take kRowsPerItem * kPanelsPerItem * 16 * 4 B (60 KiB) of local memory.
inline constexpr int kRowsPerItem = 120;
/// Panels of B (16 output channels each) per work item.
inline constexpr int kPanelsPerItem = 8;
/// Depth per tile product call: the panels of a register block (4 x 16 channels x 512 B =
/// 32 KiB) stay in a 48 KiB L1 while every row of the item passes them.
inline constexpr int kDepthBlock = 512;

}  // namespace cmx::gemm::tuning
