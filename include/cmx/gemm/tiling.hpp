// SPDX-License-Identifier: Apache-2.0
// The tiling and scheduling every INT8 GEMM of cmx shares (dense, grouped contiguous, grouped
// masked): a grouped product over a source of rows, cut into work items, one block each.
//
// For a product of G groups (group g: rows_g rows of A against its own packed weights [N, K]):
//   1. Cut each group into work items of up to kRowsPerItem rows (in blocks of equal sizes) x
//      kPanelsPerItem panels, in the order (group, column block, row block): consecutive items
//      read the same weight panels, which then come from cache.
//   2. Launch one block per item. A block gathers its rows (where the codes are, their scales,
//      where their outputs go) into local memory, with the int32 accumulators
//      [rows][panels * 16].
//   3. Multiply over the depth, each kDepthBlock of it one tile product of the device
//      (overwrite, then add; one call for K <= kDepthBlock).
//   4. Epilogue: dequantize each row into its output row (cmx/gemm/epilogue.hpp).
//
// NOTES: each output element is computed by one block, its sum in a fixed depth order, and
// int32 sums are exact: the output is bitwise the same whatever the block count or order.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "cmx/device/int8_matmul.hpp"
#include "cmx/gemm/epilogue.hpp"
#include "cmx/gemm/packed_weights.hpp"
#include "cmx/gemm/tuning.hpp"

namespace cmx::gemm::detail {

/// One row of A as a work item sees it.
struct RowRef {
  const std::int8_t* codes;  ///< its code at depth 0
  float scale;               ///< its per-token scale
  std::size_t out_row;       ///< its row in the output tensor
};

/// The rows a grouped product reads, group by group.
///   s.num_groups(), s.num_rows(group)
///   s.rows(group, first, refs)          fills refs with rows first ... first + refs.size() - 1
template <class S>
concept RowSource = requires(const S s, int group, std::span<RowRef> refs) {
  { s.num_groups() } -> std::same_as<int>;
  { s.num_rows(group) } -> std::same_as<int>;
  { s.rows(group, group, refs) } -> std::same_as<void>;
};

/// A work item: rows [first_row, first_row + num_rows) of `group` against panels
/// [first_panel, first_panel + num_panels).
struct WorkItem {
  int group = 0;
  int first_row = 0;
  int num_rows = 0;
  int first_panel = 0;
  int num_panels = 0;
};

/// The items of a grouped product, in the order of step 1. A group's rows are cut into the
/// fewest row blocks of at most rows_per_item rows, of equal sizes (to one row): a block of a
/// few left-over rows would read the weights once more for little work.
template <RowSource Source>
class WorkItems {
 public:
  WorkItems(const Source& source, int num_panels, int rows_per_item, int panels_per_item) noexcept
      : source_(source),
        num_panels_(num_panels),
        rows_per_item_(rows_per_item),
        panels_per_item_(panels_per_item) {}

  /// Items over all groups.
  int count() const noexcept {
    int total = 0;
    for (int g = 0; g < source_.num_groups(); ++g) total += in_group(g);
    return total;
  }

  /// The rows the items cut.
  const Source& source() const noexcept { return source_; }

  /// Item number `index` (0 <= index < count()).
  WorkItem at(int index) const noexcept {
    int group = 0;
    while (index >= in_group(group)) index -= in_group(group++);
    const int rows = source_.num_rows(group);
    const int row_blocks = ceil_div(rows, rows_per_item_);
    const int column_block = index / row_blocks;
    const int row_block = index % row_blocks;
    WorkItem item;
    item.group = group;
    item.first_row = static_cast<int>(std::int64_t{rows} * row_block / row_blocks);
    item.num_rows =
        static_cast<int>(std::int64_t{rows} * (row_block + 1) / row_blocks) - item.first_row;
    item.first_panel = column_block * panels_per_item_;
    item.num_panels = std::min(panels_per_item_, num_panels_ - item.first_panel);
    return item;
  }

 private:
  static int ceil_div(int a, int b) noexcept { return (a + b - 1) / b; }
  int in_group(int group) const noexcept {
    return ceil_div(source_.num_rows(group), rows_per_item_) *
           ceil_div(num_panels_, panels_per_item_);
  }

  Source source_;  // a copy: a kernel holding the items is plain data
  int num_panels_;
  int rows_per_item_;
  int panels_per_item_;
};

/// weights[g] for group g: the weights_of of a product whose groups each have their own.
struct GroupWeights {
  std::span<const PackedWeights> weights;
  const PackedWeights& operator()(int group) const noexcept {
    return weights[static_cast<std::size_t>(group)];
  }
};

/// acc [rows][acc_stride] = rows x panels [first_panel, first_panel + num_panels) of
/// `weights`, over the whole depth in kDepthBlock steps (step 3).
template <Int8MatmulDevice Dev>
void multiply(Dev& device, std::span<const std::int8_t* const> rows, const PackedWeights& weights,
              int first_panel, int num_panels, std::int32_t* acc, std::size_t acc_stride) {
  const int depth = weights.k();
  for (int k_begin = 0; k_begin < depth; k_begin += tuning::kDepthBlock) {
    const int k_end = std::min(depth, k_begin + tuning::kDepthBlock);
    device.int8_tile_product(
        {.a_rows = rows,
         .panels = weights.panel(first_panel),
         .panel_bytes = weights.panel_bytes(),
         .num_panels = num_panels,
         .k_begin = k_begin,
         .k_end = k_end,
         .acc = acc,
         .acc_stride = acc_stride,
         .mode = k_begin == 0 ? Accumulate::overwrite : Accumulate::add,
         .next_k_end = k_end < depth ? std::min(depth, k_end + tuning::kDepthBlock) : 0});
  }
}

/// Gathers the rows of `item` into local memory: their refs and their code pointers.
struct GatheredRows {
  std::span<RowRef> refs;               // [num_rows]
  std::span<const std::int8_t*> codes;  // [num_rows]
};
template <RowSource Source>
GatheredRows gather(const Source& source, const WorkItem& item, LocalArena& local) {
  const std::size_t num_rows = static_cast<std::size_t>(item.num_rows);
  GatheredRows rows{local.take<RowRef>(num_rows), local.take<const std::int8_t*>(num_rows)};
  source.rows(item.group, item.first_row, rows.refs);
  for (std::size_t r = 0; r < num_rows; ++r) rows.codes[r] = rows.refs[r].codes;
  return rows;
}

/// The block kernel of a grouped product (steps 2-4): block i computes work item i of `items`,
/// group g against weights_of(g) (a plain-data callable returning const PackedWeights&), into
/// `c` [output rows][n].
template <GemmOutput Out, RowSource Source, Int8MatmulDevice Dev, class WeightsOf>
struct GroupedProduct {
  Dev device;
  WorkItems<Source> items;
  WeightsOf weights_of;
  int n;
  std::span<Out> c;  // [output rows][n]

  void operator()(Block& block) {
    constexpr int kColumns = Dev::kInt8PanelColumns;
    const WorkItem item = items.at(block.index);
    const PackedWeights& weights = weights_of(item.group);
    const GatheredRows rows = gather(items.source(), item, block.local);
    const std::size_t columns = static_cast<std::size_t>(item.num_panels) * kColumns;
    const std::size_t first_column = static_cast<std::size_t>(item.first_panel) * kColumns;
    const std::span<std::int32_t> acc =  // [num_rows][columns]
        block.local.take<std::int32_t>(static_cast<std::size_t>(item.num_rows) * columns);
    multiply(device, rows.codes, weights, item.first_panel, item.num_panels, acc.data(), columns);
    for (std::size_t r = 0; r < rows.refs.size(); ++r)
      dequantize_row<Out>(
          acc.subspan(r * columns, columns), rows.refs[r].scale,
          weights.scales().subspan(first_column, columns),
          c.subspan(rows.refs[r].out_row * static_cast<std::size_t>(n) + first_column, columns));
  }
};

/// Runs the grouped product of `source`, group g against weights_of(g) [n, k], into `c`
/// [output rows][n] (steps 1-4). Every row's out_row must be inside c; the caller has checked
/// shapes and weights.
template <GemmOutput Out, RowSource Source, Int8MatmulDevice Dev, class WeightsOf>
void run_grouped_product(Dev& device, const Source& source, const WeightsOf& weights_of, int n,
                         std::span<Out> c) {
  using Kernel = GroupedProduct<Out, Source, Dev, WeightsOf>;
  Kernel kernel{.device = device,
                .items = WorkItems<Source>(source, n / Dev::kInt8PanelColumns, tuning::kRowsPerItem,
                                           tuning::kPanelsPerItem),
                .weights_of = weights_of,
                .n = n,
                .c = c};
  device.launch(kernel.items.count(), kernel);
}

}  // namespace cmx::gemm::detail
