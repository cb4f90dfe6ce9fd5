// SPDX-License-Identifier: Apache-2.0
// cmx::Int8MatmulDevice: the device capability the INT8 GEMM kernels need on top of cmx::Device,
// an int8 x int8 -> int32 tile product over weights packed in the device's own layout.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "cmx/device/device.hpp"

namespace cmx {

/// Whether a tile product replaces its accumulators or adds to them.
enum class Accumulate { overwrite, add };

/// The multiple that K (the depth of an int8 product) and every depth range of a tile product
/// are kept to.
inline constexpr int kInt8DepthMultiple = 16;

/// The largest K whose products are exact in int32: |sum_k a*b| <= 2^14 * K < 2^31 with the
/// codes in [-128, 127] (rounded down to a multiple of kInt8DepthMultiple).
inline constexpr int kInt8MaxDepth = (1 << 17) - kInt8DepthMultiple;

/// One int8 tile product: for r < a_rows.size() and c < num_panels * kInt8PanelColumns,
///
///   acc[r * acc_stride + c]  (=, or +=)  sum over k in [k_begin, k_end) of
///                                        a_rows[r][k] * B[panel c / 16][column c % 16][k]
///
/// exactly, in int32 (the sum is bounded by 2^14 * K < 2^31, see kInt8MaxDepth).
struct Int8TileProduct {
  /// [rows] the first code (k = 0) of each row of A; row r's code k is a_rows[r][k]. Rows may be
  /// anywhere (a gather): the masked layout's rows come from several segments.
  std::span<const std::int8_t* const> a_rows;
  const std::byte* panels = nullptr;  ///< the first packed panel of B; panel p at + p * panel_bytes
  std::size_t panel_bytes = 0;        ///< int8_panel_bytes(K) of the packed weights
  int num_panels = 0;                 ///< columns = num_panels * kInt8PanelColumns
  int k_begin = 0;                    ///< depth range, multiples of kInt8DepthMultiple,
  int k_end = 0;                      ///< 0 <= k_begin < k_end <= K
  std::int32_t* acc = nullptr;        ///< [rows][acc_stride] int32
  std::size_t acc_stride = 0;         ///< elements between rows of acc, >= columns
  Accumulate mode = Accumulate::overwrite;
  /// A hint: the caller's next tile product reads the same rows and panels over
  /// [k_end, next_k_end) (next_k_end <= K), or 0 if it does not. A device may prefetch it.
  int next_k_end = 0;
};

/// Requires: what a device supplies to run the INT8 GEMM kernels (cmx/gemm/), on top of every
/// member of cmx::Device. The packed layout of the weights is the device's business, like the
/// operand layout of an MMA instruction: kernels handle packed panels as opaque bytes of a
/// known size.
///
///   D::kInt8PanelColumns                   output channels (columns of C) per packed panel.
///   cd.int8_panel_bytes(k) -> size_t       bytes of one packed panel of depth k (a multiple of
///                                          kInt8DepthMultiple); a multiple of 64.
///   cd.int8_panel_format() -> string_view  names the byte layout of a panel, so that weights
///                                          packed for one layout are never read by another.
///   d.pack_int8_panel(rows, k, panel)      packs rows [kInt8PanelColumns][k] int8 (row-major,
///                                          one output channel per row) into panel
///                                          [int8_panel_bytes(k)] bytes. Deterministic.
///   d.int8_tile_product(product)           computes an Int8TileProduct, exactly, in int32. Reads
///                                          A and the panels where they are, writes only acc.
///                                          Called from inside launches, concurrently on
///                                          disjoint accumulators; takes no local memory of
///                                          the calling block.
// clang-format off  (clang-format 14 flattens requires-expressions)
template <class D>
concept Int8MatmulDevice = Device<D> &&
    requires(D d, const D cd, int k, std::span<const std::int8_t> rows, std::span<std::byte> panel,
             const Int8TileProduct& product) {
  { D::kInt8PanelColumns } -> std::convertible_to<int>;
  { cd.int8_panel_bytes(k) } -> std::same_as<std::size_t>;
  { cd.int8_panel_format() } -> std::same_as<std::string_view>;
  { d.pack_int8_panel(rows, k, panel) } -> std::same_as<void>;
  { d.int8_tile_product(product) } -> std::same_as<void>;
};
// clang-format on

}  // namespace cmx
