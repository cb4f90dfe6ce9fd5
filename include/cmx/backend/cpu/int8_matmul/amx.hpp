// SPDX-License-Identifier: Apache-2.0
// The AMX-INT8 tile product: TDPBSUD (signed A x unsigned B bytes -> int32) on 16 x 64-byte
// tiles, 32 rows x 32 columns per step (4 accumulator tiles, 2 of A, 2 of B).
//
// NOTES: written from Intel's documentation (Intel 64 and IA-32 Architectures Software
// Developer's Manual, vol. 2: LDTILECFG, TILELOADD, TDPBSUD, TILESTORED, TILERELEASE; the
// Optimization Reference Manual's AMX chapter) and compiled in CI, but never run by us: the
// machines cmx is developed on have no AMX. Int8Matmul therefore checks it against the
// scalar tier on a random problem the first time a process uses it, and raises cmx::Error
// on any difference instead of returning a wrong result.
//
// For each chunk of up to 32 rows of A:
//   1. Stage the rows' codes of the depth range into a per-thread buffer [32][depth padded to
//      64], zeros past the range and past the last row: a tile load needs equally strided rows,
//      and the rows of a tile product may be a gather.
//   2. Correction: c[r] = 128 * sum of row r's codes (the panels hold B + 128; TDPBSUD
//      multiplies signed A by unsigned B), with AVX-512 (every AMX CPU has it).
//   3. For each pair of panels: zero 4 accumulator tiles; for each 64 of depth, load the 2
//      A tiles (rows 0-15, 16-31) and the 2 panels' 16 quad rows as B tiles, 4 TDPBSUD; store
//      the tiles to a per-thread buffer and write acc = (acc +) tile - c[r] for the real rows
//      and columns.
// The tile configuration is loaded once per call and released at its end.
//
// Compiled with target attributes, so this header builds without -march flags; call it only
// where cmx::cpu::runs(Isa::amx, ...) and cmx::cpu::runs(Isa::avx512, ...) both hold.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cmx/backend/cpu/int8_matmul/avx512.hpp"
#include "cmx/backend/cpu/isa.hpp"
#include "cmx/device/int8_matmul.hpp"
#include "cmx/device/int8_panel_layout.hpp"

#if CMX_CPU_X86_64
#include <immintrin.h>

#define CMX_TARGET_AMX                                                        \
  __attribute__((                                                             \
      target("amx-tile,amx-int8,avx512f,avx512bw,avx512dq,avx512vl,avx512cd," \
             "avx512vnni")))

namespace cmx::cpu::int8_matmul::amx {

/// Rows and bytes of every tile this kernel configures (palette 1's maximum).
inline constexpr int kTileRows = 16;
inline constexpr int kTileBytes = 64;
/// Rows of A per step: two A tiles.
inline constexpr int kRows = 2 * kTileRows;

namespace detail {

/// The 64-byte operand of LDTILECFG (palette 1).
struct alignas(64) TileConfig {
  std::uint8_t palette_id = 0;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};  ///< bytes per row of tile i
  std::uint8_t rows[16] = {};    ///< rows of tile i
};
static_assert(sizeof(TileConfig) == 64, "LDTILECFG reads 64 bytes");

/// Tiles: 0-3 accumulators (C), 4-5 A (rows 0-15, 16-31), 6-7 B (panel p, p + 1).
inline TileConfig tile_config() noexcept {
  TileConfig config;
  config.palette_id = 1;
  for (int tile = 0; tile < 8; ++tile) {
    config.colsb[tile] = kTileBytes;
    config.rows[tile] = kTileRows;
  }
  return config;
}

/// Per-thread buffers of one call.
struct Staging {
  std::vector<std::int8_t> a;                                   // [kRows][padded depth]
  alignas(64) std::byte b[2][kTileRows * kTileBytes];           // a B tile near a panel's end
  alignas(64) std::int32_t c[kRows][2 * int8_panel::kColumns];  // the 4 accumulator tiles
  std::int32_t corrections[kRows];
};
inline Staging& staging() {
  thread_local Staging buffers;
  return buffers;
}

/// Orders the compiler's memory accesses around the tile instructions: GCC 12 declares
/// TILELOADD (and LDTILECFG beyond its first 8 bytes) as asm that reads no memory, so stores to
/// a staging buffer could otherwise be moved past the load that reads them.
inline void compiler_fence() noexcept {
  __asm__ volatile("" ::: "memory");
}

/// The 16 quad rows of a B tile of `panel` starting at quad `quad`, read in place, or copied
/// into `spare` (zeros past the panel) when they would run past its `panel_quads` quads.
inline const std::byte* b_tile(const std::byte* panel, int panel_quads, int quad,
                               std::byte* spare) noexcept {
  if (quad + kTileRows <= panel_quads) return panel + int8_panel::quad_offset(quad);
  const int available = std::max(0, panel_quads - quad);
  if (available > 0)
    std::memcpy(spare, panel + int8_panel::quad_offset(quad),
                static_cast<std::size_t>(available) * int8_panel::kQuadRowBytes);
  std::memset(spare + static_cast<std::size_t>(available) * int8_panel::kQuadRowBytes,
              int8_panel::kCodeOffset,
              static_cast<std::size_t>(kTileRows - available) * int8_panel::kQuadRowBytes);
  compiler_fence();
  return spare;
}

}  // namespace detail

/// Computes `product` (see cmx::Int8TileProduct), exactly, as the file comment describes.
/// May allocate its per-thread staging buffer on first use (std::bad_alloc).
CMX_TARGET_AMX inline void tile_product(const Int8TileProduct& product) {
  const int num_rows = static_cast<int>(product.a_rows.size());
  const int depth = product.k_end - product.k_begin;
  const int padded_depth = static_cast<int>(round_up(static_cast<std::size_t>(depth), kTileBytes));
  const std::size_t a_stride = static_cast<std::size_t>(padded_depth);
  const int num_depth_tiles = padded_depth / kTileBytes;
  const int first_quad = product.k_begin / int8_panel::kQuadDepth;
  const int panel_quads = static_cast<int>(product.panel_bytes / int8_panel::kQuadRowBytes);
  detail::Staging& staging = detail::staging();
  staging.a.resize(kRows * a_stride);

  const detail::TileConfig config = detail::tile_config();
  detail::compiler_fence();
  _tile_loadconfig(&config);
  for (int chunk = 0; chunk < num_rows; chunk += kRows) {
    const int chunk_rows = std::min(kRows, num_rows - chunk);
    // 1-2. Stage and correct.
    std::memset(staging.a.data(), 0, staging.a.size());
    for (int r = 0; r < chunk_rows; ++r) {
      std::int8_t* row = staging.a.data() + static_cast<std::size_t>(r) * a_stride;
      std::memcpy(row, product.a_rows[static_cast<std::size_t>(chunk + r)] + product.k_begin,
                  static_cast<std::size_t>(depth));
      staging.corrections[r] = avx512::detail::correction(row, padded_depth);
    }
    detail::compiler_fence();
    const std::int8_t* a_upper = staging.a.data();                         // rows 0-15
    const std::int8_t* a_lower = staging.a.data() + kTileRows * a_stride;  // rows 16-31
    const bool has_lower = chunk_rows > kTileRows;
    // 3. Pairs of panels.
    for (int p = 0; p < product.num_panels; p += 2) {
      const bool has_second = p + 1 < product.num_panels;
      const std::byte* panel0 = product.panels + static_cast<std::size_t>(p) * product.panel_bytes;
      const std::byte* panel1 = panel0 + product.panel_bytes;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int t = 0; t < num_depth_tiles; ++t) {
        const int quad = first_quad + t * kTileRows;
        _tile_loadd(4, a_upper + t * kTileBytes, a_stride);
        _tile_loadd(6, detail::b_tile(panel0, panel_quads, quad, staging.b[0]), kTileBytes);
        _tile_dpbsud(0, 4, 6);
        if (has_lower) {
          _tile_loadd(5, a_lower + t * kTileBytes, a_stride);
          _tile_dpbsud(2, 5, 6);
        }
        if (has_second) {
          _tile_loadd(7, detail::b_tile(panel1, panel_quads, quad, staging.b[1]), kTileBytes);
          _tile_dpbsud(1, 4, 7);
          if (has_lower) _tile_dpbsud(3, 5, 7);
        }
      }
      constexpr std::size_t kCStride = sizeof(staging.c[0]);
      _tile_stored(0, &staging.c[0][0], kCStride);
      _tile_stored(1, &staging.c[0][int8_panel::kColumns], kCStride);
      _tile_stored(2, &staging.c[kTileRows][0], kCStride);
      _tile_stored(3, &staging.c[kTileRows][int8_panel::kColumns], kCStride);
      const int columns = (has_second ? 2 : 1) * int8_panel::kColumns;
      for (int r = 0; r < chunk_rows; ++r) {
        std::int32_t* acc = product.acc + static_cast<std::size_t>(chunk + r) * product.acc_stride +
                            static_cast<std::size_t>(p) * int8_panel::kColumns;
        // Unsigned arithmetic: the tile sums may have wrapped; the corrected sum is exact.
        const std::uint32_t correction = static_cast<std::uint32_t>(staging.corrections[r]);
        for (int c = 0; c < columns; ++c) {
          const std::uint32_t sum = static_cast<std::uint32_t>(staging.c[r][c]) - correction;
          acc[c] = static_cast<std::int32_t>(
              product.mode == Accumulate::add ? static_cast<std::uint32_t>(acc[c]) + sum : sum);
        }
      }
    }
  }
  _tile_release();
}

}  // namespace cmx::cpu::int8_matmul::amx

#undef CMX_TARGET_AMX
#endif  // CMX_CPU_X86_64
