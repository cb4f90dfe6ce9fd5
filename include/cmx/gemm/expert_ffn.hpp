// SPDX-License-Identifier: Apache-2.0
// cmx::gemm::expert_ffn: the INT8 expert FFN of an MoE layer, y = (silu(x Wg^T) * (x Wu^T)) Wd^T,
// over the masked rows FusedDispatch delivered, output in dispatch's layout for FusedCombine.
// Gate, up, SwiGLU and the re-quantization are fused per row tile, so the full-precision
// intermediate stays in the block's local memory; only its INT8 codes leave it.
//
// Launch 1, over work items of up to R valid rows of one expert (R as large as the block's
// local memory holds, see ffn_rows_per_item; as many blocks as run at once, each taking the
// next item in order):
//   1. Gather the rows: codes in place, per-token scales, slots (as cmx/gemm/tiling.hpp).
//   2. Gate and up, kFfnPanelsPerStep panels of the intermediate I at a time: exact int32
//      products of the rows with Wg and Wu (the device's tile products), dequantized as every
//      GEMM output (cmx/gemm/epilogue.hpp) to g and u in binary32, then h = silu_mul(g, u)
//      (cmx/gemm/swiglu.hpp) rounded once to bf16 (ties to even) into h [R][I], in local memory.
//   3. Re-quantize each row of h with its own scale, cmx::quantize_row_int8 (as dispatch
//      quantizes a token: amax / 127, round to nearest even), into the workspace: the row's
//      slot of [num_slots][I] int8 codes and [num_slots] scales.
// Launch 2:
//   4. Down: the masked grouped GEMM (cmx/gemm/tiling.hpp) of the workspace's codes with Wd,
//      every row dequantized with its new scale and Wd's channel scales, rounded once to bf16
//      into its output slot.
//
// NOTES: why two launches. A row tile's h must be whole before its per-token scale is known,
// so R is bounded by local memory (38 rows at I = 2048 in 192 KiB), and every tile reads its
// expert's gate and up weights once more. h is kept in bf16 for that reason: in binary32 R
// was 21, and the FFN measured 7-10% slower at DeepSeek-V3's shape; the bf16 rounding
// (relative 2^-9) is well below the INT8 step that follows (amax / 254 at most). Running the down
// projection as its own grouped GEMM lets its items take up to kRowsPerItem rows, so Wd is read
// once per 120 rows instead of once per R; the intermediate crosses memory as INT8 only (what the
// down GEMM reads anyway). Each output row is computed by one block in a fixed order: the output is
// bitwise the same whatever the block count, and (the int32 sums being exact) whatever the tier.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "cmx/core/bf16.hpp"
#include "cmx/core/error.hpp"
#include "cmx/core/quantize.hpp"
#include "cmx/device/int8_matmul.hpp"
#include "cmx/gemm/epilogue.hpp"
#include "cmx/gemm/grouped.hpp"
#include "cmx/gemm/masked_rows.hpp"
#include "cmx/gemm/packed_weights.hpp"
#include "cmx/gemm/swiglu.hpp"
#include "cmx/gemm/tiling.hpp"
#include "cmx/gemm/tuning.hpp"

namespace cmx::gemm {

/// One expert's packed weights: gate and up [I, H], down [H, I] (output channels first, as
/// every cmx GEMM takes them).
struct ExpertWeights {
  PackedWeights gate;
  PackedWeights up;
  PackedWeights down;
};

/// Where expert_ffn keeps the INT8 intermediate between its two launches: a code row and a
/// scale per row slot of the input ([num_slots][I] int8, [num_slots] float), and the counter
/// from which the blocks of its first launch take their work items. Made once, at start-up,
/// for the largest layout and I; reused by every call (one call at a time).
class ExpertFfnWorkspace {
 public:
  /// For inputs of up to `num_slots` row slots (MaskedRows::num_slots()) and intermediate size
  /// `intermediate`.
  ExpertFfnWorkspace(std::size_t num_slots, int intermediate)
      : num_slots_(num_slots),
        intermediate_(intermediate),
        codes_(num_slots * static_cast<std::size_t>(std::max(intermediate, 0))),
        scales_(num_slots),
        next_item_(std::make_unique<std::atomic<int>>(0)) {}

  std::size_t num_slots() const noexcept { return num_slots_; }
  int intermediate() const noexcept { return intermediate_; }
  std::int8_t* codes() noexcept { return codes_.data(); }  ///< [num_slots][intermediate]
  float* scales() noexcept { return scales_.data(); }      ///< [num_slots]
  /// The first launch's item counter (global memory, shared by its blocks).
  std::atomic<int>* next_item() noexcept { return next_item_.get(); }

 private:
  std::size_t num_slots_;
  int intermediate_;
  std::vector<std::int8_t> codes_;
  std::vector<float> scales_;
  std::unique_ptr<std::atomic<int>> next_item_;  // on the heap: the workspace stays movable
};

/// The operands of expert_ffn.
struct ExpertFfnArgs {
  MaskedRows x;  ///< the tokens, k = H: dispatch's rows in place (an ep::Received converts)
  std::span<const ExpertWeights> experts;  ///< [x.num_groups]
  /// [x.num_slots()][H] bf16 output, row slot_index(e, s, slot) for each valid row: the layout
  /// of CombineArgs::expert_out; rows of slots without a valid row are not written.
  std::span<bf16> out;
  ExpertFfnWorkspace& workspace;  ///< at least x.num_slots() slots of the experts' I
};

namespace detail {

/// Rows per work item of the fused gate/up/SwiGLU/quantize launch with intermediate size
/// `intermediate`, for a device with `local_bytes` of local memory per block: as many as hold
/// h (bf16) and the gate and up accumulators, up to tuning::kRowsPerItem; 0 if not one row.
inline int ffn_rows_per_item(std::size_t local_bytes, int intermediate, int panel_columns) {
  const std::size_t columns = static_cast<std::size_t>(tuning::kFfnPanelsPerStep) * panel_columns;
  const std::size_t per_row = static_cast<std::size_t>(intermediate) * sizeof(bf16) +
                              2 * columns * sizeof(std::int32_t) + sizeof(RowRef) + sizeof(void*);
  const std::size_t fixed = 6 * kTileAlignment;  // each tile rounded up to 32 B
  if (local_bytes <= fixed) return 0;
  return static_cast<int>(
      std::min<std::size_t>(tuning::kRowsPerItem, (local_bytes - fixed) / per_row));
}

/// h[c] = bf16(silu_mul(g, u)) of one row's gate and up sums: g = dequantize(acc_gate[c],
/// row_scale, gate_scales[c]), u likewise (step 2).
inline void swiglu_row(std::span<const std::int32_t> acc_gate, std::span<const std::int32_t> acc_up,
                       float row_scale, std::span<const float> gate_scales,
                       std::span<const float> up_scales, std::span<bf16> h) noexcept {
  for (std::size_t c = 0; c < h.size(); ++c)
    h[c] = bf16::from_float(silu_mul(dequantize(acc_gate[c], row_scale, gate_scales[c]),
                                     dequantize(acc_up[c], row_scale, up_scales[c])));
}

/// Throws cmx::Error(invalid_argument) unless the experts' weights fit each other and x.
template <Int8MatmulDevice Dev>
void check_expert_weights(const Dev& device, std::span<const ExpertWeights> experts, int hidden) {
  if (experts.empty()) return;
  require_packed_for(device, experts.front().gate, hidden, -1, "expert_ffn (gate)");
  const int intermediate = experts.front().gate.n();
  for (const ExpertWeights& expert : experts) {
    require_packed_for(device, expert.gate, hidden, intermediate, "expert_ffn (gate)");
    require_packed_for(device, expert.up, hidden, intermediate, "expert_ffn (up)");
    require_packed_for(device, expert.down, intermediate, hidden, "expert_ffn (down)");
  }
}

/// Expert e's down weights for group e: the weights_of of launch 2.
struct DownWeights {
  std::span<const ExpertWeights> experts;
  const PackedWeights& operator()(int group) const noexcept {
    return experts[static_cast<std::size_t>(group)].down;
  }
};

/// The block kernel of launch 1 (steps 1-3): each block takes the next work item from
/// `next_item` until none is left, and writes its rows' INT8 intermediate into the workspace.
///
/// The blocks take the items in order from a shared counter: those running at once work on
/// adjacent row tiles of one expert and stream its gate and up weights at about the same time
/// (the trailing block then finds them in the shared cache), and a block slowed down (by
/// another program on its core) takes fewer items. Blocks never wait for each other, and an
/// item's result does not depend on which block computed it.
template <Int8MatmulDevice Dev>
struct GateUpSwiglu {
  Dev device;
  WorkItems<MaskedSource> items;
  std::span<const ExpertWeights> experts;  // [groups]
  int intermediate;                        // I
  std::int8_t* codes;                      // [num_slots][I] workspace
  float* scales;                           // [num_slots] workspace
  std::atomic<int>* next_item;             // 0 at the launch

  void operator()(Block& block) {
    const int num_items = items.count();
    const std::size_t start = block.local.mark();
    for (int index = next_item->fetch_add(1, std::memory_order_relaxed); index < num_items;
         index = next_item->fetch_add(1, std::memory_order_relaxed)) {
      block.local.rewind(start);
      compute(items.at(index), block.local);
    }
  }

 private:
  void compute(const WorkItem& item, LocalArena& local) {
    constexpr int kColumns = Dev::kInt8PanelColumns;
    const ExpertWeights& expert = experts[static_cast<std::size_t>(item.group)];
    const std::size_t num_rows = static_cast<std::size_t>(item.num_rows);
    const std::size_t width = static_cast<std::size_t>(intermediate);
    // 1. Gather.
    const GatheredRows rows = gather(items.source(), item, local);
    const std::span<bf16> h = local.take<bf16>(num_rows * width);  // [R][I]
    const std::size_t step_columns = static_cast<std::size_t>(tuning::kFfnPanelsPerStep) * kColumns;
    const std::span<std::int32_t> acc_gate = local.take<std::int32_t>(num_rows * step_columns);
    const std::span<std::int32_t> acc_up = local.take<std::int32_t>(num_rows * step_columns);
    // 2. Gate and up, a step of panels at a time, into h.
    for (int panel = 0; panel < expert.gate.num_panels(); panel += tuning::kFfnPanelsPerStep) {
      const int panels = std::min(tuning::kFfnPanelsPerStep, expert.gate.num_panels() - panel);
      const std::size_t columns = static_cast<std::size_t>(panels) * kColumns;
      const std::size_t first = static_cast<std::size_t>(panel) * kColumns;
      multiply(device, rows.codes, expert.gate, panel, panels, acc_gate.data(), columns);
      multiply(device, rows.codes, expert.up, panel, panels, acc_up.data(), columns);
      for (std::size_t r = 0; r < num_rows; ++r)
        swiglu_row(acc_gate.subspan(r * columns, columns), acc_up.subspan(r * columns, columns),
                   rows.refs[r].scale, expert.gate.scales().subspan(first, columns),
                   expert.up.scales().subspan(first, columns),
                   h.subspan(r * width + first, columns));
    }
    // 3. Re-quantize each row into its slot of the workspace.
    for (std::size_t r = 0; r < num_rows; ++r) {
      const std::size_t slot = rows.refs[r].out_row;
      scales[slot] = quantize_row_int8(std::span<const bf16>(h.subspan(r * width, width)),
                                       std::span<std::int8_t>(codes + slot * width, width));
    }
  }
};

}  // namespace detail

/// The INT8 expert FFN (see the file comment for the exact sequence): for every valid row
/// (e, s, slot) of x,
///
///   out[slot_index(e, s, slot)] = bf16( dequantize( q(h) x Wd_e^T ) ),
///   h = silu_mul( dequantize(x Wg_e^T), dequantize(x Wu_e^T) ),  q = per-row INT8 quantization
///
/// Reads x in place; writes only the output rows of valid rows (and the workspace).
///
/// Errors (cmx::Error, raised before anything is written): invalid_argument for weights not
/// packed for this device or not of shapes gate/up [I, H], down [H, I] with H = x.k, a bad
/// masked layout, an output of the wrong size, a workspace too small; capacity if one row's
/// intermediate does not fit the device's local memory (I above ~D::kLocalMemoryBytes / 2 B).
template <Int8MatmulDevice Dev>
void expert_ffn(Dev& device, const ExpertFfnArgs& args) {
  using cmx::detail::require;
  constexpr int kColumns = Dev::kInt8PanelColumns;
  constexpr const char* kWhat = "expert_ffn";
  detail::check_masked_rows(args.x, kWhat);
  require(args.experts.size() == static_cast<std::size_t>(args.x.num_groups),
          ErrorCode::invalid_argument, kWhat, ": ", args.experts.size(), " experts' weights for ",
          args.x.num_groups, " groups of rows");
  detail::check_expert_weights(device, args.experts, args.x.k);
  const int hidden = args.x.k;
  require(args.out.size() == args.x.num_slots() * static_cast<std::size_t>(hidden),
          ErrorCode::invalid_argument, kWhat, ": out has ", args.out.size(),
          " elements, expected x.num_slots() * H = ", args.x.num_slots(), " * ", hidden);
  if (args.experts.empty()) return;
  const int intermediate = args.experts.front().gate.n();
  require(args.workspace.num_slots() >= args.x.num_slots() &&
              args.workspace.intermediate() == intermediate,
          ErrorCode::invalid_argument, kWhat, ": the workspace holds ", args.workspace.num_slots(),
          " slots of I = ", args.workspace.intermediate(), ", the call needs ", args.x.num_slots(),
          " of I = ", intermediate);
  const int rows_per_item =
      detail::ffn_rows_per_item(Dev::kLocalMemoryBytes, intermediate, kColumns);
  require(rows_per_item >= 1, ErrorCode::capacity, kWhat,
          ": one row's intermediate (I = ", intermediate,
          ") does not fit the device's local memory of ", Dev::kLocalMemoryBytes, " B");

  // Launch 1: steps 1-3, over work items of whole rows (every column).
  detail::GateUpSwiglu<Dev> gate_up{.device = device,
                                    .items = detail::WorkItems<detail::MaskedSource>(
                                        detail::MaskedSource(args.x), 1, rows_per_item, 1),
                                    .experts = args.experts,
                                    .intermediate = intermediate,
                                    .codes = args.workspace.codes(),
                                    .scales = args.workspace.scales(),
                                    .next_item = args.workspace.next_item()};
  const int num_items = gate_up.items.count();
  gate_up.next_item->store(0, std::memory_order_relaxed);  // the launch publishes it
  device.launch(std::max(1, std::min(device.max_blocks(), num_items)), gate_up);

  // Launch 2, step 4: the down projection of the INT8 intermediate, as a masked grouped GEMM.
  MaskedRows intermediate_rows = args.x;  // the same segments, in the workspace's slots
  intermediate_rows.k = intermediate;
  intermediate_rows.codes = reinterpret_cast<const std::byte*>(gate_up.codes);
  intermediate_rows.row_stride = static_cast<std::size_t>(intermediate);
  intermediate_rows.scales = reinterpret_cast<const std::byte*>(gate_up.scales);
  intermediate_rows.scale_stride = sizeof(float);
  detail::run_grouped_product(device, detail::MaskedSource(intermediate_rows),
                              detail::DownWeights{args.experts}, hidden, args.out);
}

}  // namespace cmx::gemm
