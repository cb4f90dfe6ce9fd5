// SPDX-License-Identifier: Apache-2.0
// The AVX-512 VNNI int8 tile product: VPDPBUSD on zmm registers, a register block of
// kRows x kPanels accumulators (16 int32 each) per step of the depth.
//
// For each chunk of up to kRowChunk rows of A:
//   1. Correction: c[r] = 128 * sum of row r's codes over the depth range (VPDPBUSD of the
//      row against bytes of 1), since the panels hold B + 128 (see
//      cmx/device/int8_panel_layout.hpp).
//   2. For each group of kPanels panels, for each group of kRows rows: start the accumulators
//      at -c[r] (or at acc - c[r] when adding), then for each quad q of the depth load the
//      panels' 64-byte rows of quad q once and, for each row, broadcast its 4 codes and
//      VPDPBUSD them into the row's accumulators; store. While it runs, a block prefetches
//      into L2 its share of the depth range the caller multiplies next (next_k_end), if any.
// Every row group of the chunk streams the panel group again, from L2 (the hardware
// prefetchers keep up; see cmx/gemm/tuning.hpp for the depths measured).
//
// Compiled with target attributes, so this header builds without -march flags; call it only
// where cmx::cpu::runs(Isa::avx512, KernelFamily::int8_matmul).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cmx/backend/cpu/isa.hpp"
#include "cmx/device/int8_matmul.hpp"
#include "cmx/device/int8_panel_layout.hpp"

#if CMX_CPU_X86_64
#include <immintrin.h>

#define CMX_TARGET_AVX512_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512cd,avx512vnni")))

namespace cmx::cpu::int8_matmul::avx512 {

/// The register block: rows of A x panels of B (kRows * kPanels zmm accumulators).
inline constexpr int kRows = 6;
inline constexpr int kPanels = 4;
/// Rows whose corrections are computed together (one stack array).
inline constexpr int kRowChunk = 128;

namespace detail {

/// 128 * (sum of `depth` codes at `a`), depth a multiple of 16; exact in int32 (|sum| < 2^24).
CMX_TARGET_AVX512_VNNI inline std::int32_t correction(const std::int8_t* a, int depth) noexcept {
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i sum = _mm512_setzero_si512();
  int d = 0;
  for (; d + 64 <= depth; d += 64) sum = _mm512_dpbusd_epi32(sum, ones, _mm512_loadu_si512(a + d));
  if (d < depth) {  // 16, 32 or 48 bytes left: a masked load reads only those
    const __mmask64 tail = (std::uint64_t{1} << (depth - d)) - 1;
    sum = _mm512_dpbusd_epi32(sum, ones, _mm512_maskz_loadu_epi8(tail, a + d));
  }
  // Sum the 16 lanes by halving (swaps of 256, 128, 64 and 32 bits). The masked forms with
  // every lane selected: GCC 12's unmasked ones trip -Wmaybe-uninitialized under target().
  sum = _mm512_add_epi32(sum, _mm512_mask_shuffle_i64x2(sum, 0xff, sum, sum, 0x4e));
  sum = _mm512_add_epi32(sum, _mm512_mask_shuffle_i64x2(sum, 0xff, sum, sum, 0xb1));
  sum = _mm512_add_epi32(sum, _mm512_mask_shuffle_epi32(sum, 0xffff, sum, _MM_PERM_BADC));
  sum = _mm512_add_epi32(sum, _mm512_mask_shuffle_epi32(sum, 0xffff, sum, _MM_PERM_CDAB));
  const std::int32_t total = _mm512_cvtsi512_si32(sum);
  return total * int8_panel::kCodeOffset;
}

/// The cache lines of the depth range the caller multiplies next (Int8TileProduct::next_k_end:
/// the same panels and rows, further on), in order: each panel's quads, then each row's codes.
/// Blocks prefetch disjoint slices of them into L2 while they compute, so that the next call
/// finds its operands in cache.
class NextRangeLines {
 public:
  NextRangeLines(const Int8TileProduct& product, int chunk_first_row, int chunk_rows) noexcept {
    const int next_depth = product.next_k_end - product.k_end;
    if (next_depth <= 0) return;
    panels_ = product.panels + int8_panel::quad_offset(product.k_end / int8_panel::kQuadDepth);
    panel_bytes_ = product.panel_bytes;
    lines_per_panel_ = next_depth / int8_panel::kQuadDepth;  // one 64-byte quad row per line
    rows_ = product.a_rows.data() + chunk_first_row;
    row_offset_ = product.k_end;
    lines_per_row_ = next_depth / 64;  // whole lines inside the range, so inside the row
    panel_lines_ = product.num_panels * lines_per_panel_;
    count_ = panel_lines_ + chunk_rows * lines_per_row_;
  }
  int count() const noexcept { return count_; }
  /// The address of line `index` (< count()).
  const void* line(int index) const noexcept {
    if (index < panel_lines_)
      return panels_ + static_cast<std::size_t>(index / lines_per_panel_) * panel_bytes_ +
             int8_panel::quad_offset(index % lines_per_panel_);
    index -= panel_lines_;
    return rows_[index / lines_per_row_] + row_offset_ + (index % lines_per_row_) * 64;
  }

 private:
  const std::byte* panels_ = nullptr;
  std::size_t panel_bytes_ = 0;
  int lines_per_panel_ = 1;
  const std::int8_t* const* rows_ = nullptr;
  int row_offset_ = 0;
  int lines_per_row_ = 1;
  int panel_lines_ = 0;
  int count_ = 0;
};

/// One register block of `Rows` x `Panels`; see the file comment.
struct BlockArgs {
  const std::int8_t* const* a_rows;  // [Rows], each at depth 0
  const std::int32_t* corrections;   // [Rows]
  const std::byte* panels;           // [Panels] panels, panel_bytes apart
  std::size_t panel_bytes;
  int first_quad, end_quad;
  std::int32_t* acc;  // [Rows][acc_stride], at this block's first column
  std::size_t acc_stride;
  Accumulate mode;
  const NextRangeLines* prefetch;  // prefetch lines [prefetch_first, prefetch_end), one per quad
  int prefetch_first, prefetch_end;
};

/// One quad of depth for a register block: the panels' 64 bytes of quad q, each row's 4 codes
/// broadcast, Rows x Panels VPDPBUSD.
template <int Rows, int Panels>
CMX_TARGET_AVX512_VNNI __attribute__((always_inline)) inline void quad_step(
    __m512i (&acc)[Rows][Panels], const std::int8_t* const (&a)[Rows], const std::byte* panels,
    std::size_t panel_bytes, int q) noexcept {
  const std::byte* b = panels + int8_panel::quad_offset(q);
  __m512i b_quad[Panels];  // [16 columns][4 codes] + 128 of each panel
#pragma GCC unroll 16
  for (int p = 0; p < Panels; ++p)
    b_quad[p] = _mm512_loadu_si512(b + static_cast<std::size_t>(p) * panel_bytes);
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r) {
    std::int32_t a_quad;  // row r's 4 codes at depth 4q
    std::memcpy(&a_quad, a[r] + q * int8_panel::kQuadDepth, sizeof(a_quad));
    const __m512i a_broadcast = _mm512_set1_epi32(a_quad);
#pragma GCC unroll 16
    for (int p = 0; p < Panels; ++p)
      acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], b_quad[p], a_broadcast);
  }
}

template <int Rows, int Panels>
CMX_TARGET_AVX512_VNNI void block(const BlockArgs& args) noexcept {
  __m512i acc[Rows][Panels];
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r) {
    const __m512i correction = _mm512_set1_epi32(args.corrections[r]);
    std::int32_t* acc_row = args.acc + static_cast<std::size_t>(r) * args.acc_stride;
#pragma GCC unroll 16
    for (int p = 0; p < Panels; ++p)
      acc[r][p] =
          args.mode == Accumulate::add
              ? _mm512_sub_epi32(_mm512_loadu_si512(acc_row + p * int8_panel::kColumns), correction)
              : _mm512_sub_epi32(_mm512_setzero_si512(), correction);
  }
  const std::int8_t* a[Rows];
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r) a[r] = args.a_rows[r];
  // The first quads also prefetch a line each (its share of the next depth range); the rest
  // run without the test.
  const int prefetch_quads =
      std::min(args.prefetch_end - args.prefetch_first, args.end_quad - args.first_quad);
  int q = args.first_quad;
  for (int line = args.prefetch_first; q < args.first_quad + prefetch_quads; ++q, ++line) {
    _mm_prefetch(static_cast<const char*>(args.prefetch->line(line)), _MM_HINT_T1);
    quad_step<Rows, Panels>(acc, a, args.panels, args.panel_bytes, q);
  }
  for (; q < args.end_quad; ++q) quad_step<Rows, Panels>(acc, a, args.panels, args.panel_bytes, q);
#pragma GCC unroll 16
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 16
    for (int p = 0; p < Panels; ++p)
      _mm512_storeu_si512(
          args.acc + static_cast<std::size_t>(r) * args.acc_stride + p * int8_panel::kColumns,
          acc[r][p]);
}

using BlockFunction = void (*)(const BlockArgs&) noexcept;

/// kBlocks[rows - 1][panels - 1]: the block for a remainder of rows and panels.
template <int... R>
constexpr auto make_blocks(std::integer_sequence<int, R...>) {
  struct Table {
    BlockFunction entries[kRows][kPanels];
  };
  return Table{{{&block<R + 1, 1>, &block<R + 1, 2>, &block<R + 1, 3>, &block<R + 1, 4>}...}};
}
static_assert(kPanels == 4, "make_blocks lists one entry per panel count");
inline constexpr auto kBlocks = make_blocks(std::make_integer_sequence<int, kRows>{});

}  // namespace detail

/// Computes `product` (see cmx::Int8TileProduct), exactly, as the file comment describes.
CMX_TARGET_AVX512_VNNI inline void tile_product(const Int8TileProduct& product) noexcept {
  const int num_rows = static_cast<int>(product.a_rows.size());
  const int depth = product.k_end - product.k_begin;
  for (int chunk = 0; chunk < num_rows; chunk += kRowChunk) {
    const int chunk_rows = std::min(kRowChunk, num_rows - chunk);
    std::int32_t corrections[kRowChunk];
    for (int r = 0; r < chunk_rows; ++r)
      corrections[r] = detail::correction(
          product.a_rows[static_cast<std::size_t>(chunk + r)] + product.k_begin, depth);
    const detail::NextRangeLines next(product, chunk, chunk_rows);
    const int num_blocks =
        ((product.num_panels + kPanels - 1) / kPanels) * ((chunk_rows + kRows - 1) / kRows);
    const int lines_per_block = (next.count() + num_blocks - 1) / num_blocks;
    int block_index = 0;
    for (int p = 0; p < product.num_panels; p += kPanels) {
      const int panels = std::min(kPanels, product.num_panels - p);
      for (int r = 0; r < chunk_rows; r += kRows, ++block_index) {
        const int rows = std::min(kRows, chunk_rows - r);
        const detail::BlockArgs args{
            .a_rows = product.a_rows.data() + chunk + r,
            .corrections = corrections + r,
            .panels = product.panels + static_cast<std::size_t>(p) * product.panel_bytes,
            .panel_bytes = product.panel_bytes,
            .first_quad = product.k_begin / int8_panel::kQuadDepth,
            .end_quad = product.k_end / int8_panel::kQuadDepth,
            .acc = product.acc + static_cast<std::size_t>(chunk + r) * product.acc_stride +
                   static_cast<std::size_t>(p) * int8_panel::kColumns,
            .acc_stride = product.acc_stride,
            .mode = product.mode,
            .prefetch = &next,
            .prefetch_first = std::min(next.count(), block_index * lines_per_block),
            .prefetch_end = std::min(next.count(), (block_index + 1) * lines_per_block)};
        detail::kBlocks.entries[rows - 1][panels - 1](args);
      }
    }
  }
}

}  // namespace cmx::cpu::int8_matmul::avx512

#undef CMX_TARGET_AVX512_VNNI
#endif  // CMX_CPU_X86_64
