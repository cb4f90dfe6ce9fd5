// SPDX-License-Identifier: Apache-2.0
// The portable int8 tile product: plain loops over the packed panel layout, for any CPU. It is
// the tier every other one is checked against, and what a device without vector units runs.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cmx/device/int8_matmul.hpp"
#include "cmx/device/int8_panel_layout.hpp"

namespace cmx::portable {

/// Computes `product` (see cmx::Int8TileProduct) one row at a time: a row of int32
/// accumulators [columns] takes each quad of depth for every column in turn.
///
/// NOTES: no partial sum overflows: each term is at most 2^14 in magnitude and a sum has at
/// most K <= kInt8MaxDepth terms, so any order of the additions gives the exact sum.
inline void int8_tile_product(const Int8TileProduct& product) noexcept {
  const int num_columns = product.num_panels * int8_panel::kColumns;
  const int first_quad = product.k_begin / int8_panel::kQuadDepth;
  const int end_quad = product.k_end / int8_panel::kQuadDepth;
  for (std::size_t r = 0; r < product.a_rows.size(); ++r) {
    const std::int8_t* a = product.a_rows[r];
    std::int32_t* acc = product.acc + r * product.acc_stride;  // [num_columns]
    if (product.mode == Accumulate::overwrite)
      for (int c = 0; c < num_columns; ++c) acc[c] = 0;
    for (int p = 0; p < product.num_panels; ++p) {
      const std::byte* panel = product.panels + static_cast<std::size_t>(p) * product.panel_bytes;
      std::int32_t* acc_panel = acc + p * int8_panel::kColumns;  // [16]
      for (int q = first_quad; q < end_quad; ++q) {
        const std::int8_t* a_quad = a + q * int8_panel::kQuadDepth;
        const std::byte* b_quad = panel + int8_panel::quad_offset(q);  // [16][4] B + 128
        for (int n = 0; n < int8_panel::kColumns; ++n)
          for (int i = 0; i < int8_panel::kQuadDepth; ++i) {
            const int b =
                static_cast<int>(b_quad[n * int8_panel::kQuadDepth + i]) - int8_panel::kCodeOffset;
            acc_panel[n] += static_cast<std::int32_t>(a_quad[i]) * b;
          }
      }
    }
  }
}

}  // namespace cmx::portable
