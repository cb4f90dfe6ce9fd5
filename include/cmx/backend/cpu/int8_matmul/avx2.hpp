// SPDX-License-Identifier: Apache-2.0
// The AVX2 int8 tile product (no VNNI): codes widened to int16 and multiplied in pairs with
// VPMADDWD, which is exact (|a0*b0 + a1*b1| <= 2^15 fits int32). VPMADDUBSW is not used: it
// saturates int16 on full-range codes.
//
// For each group of kRows rows and each panel:
//   1. The row's accumulators: 4 ymm per row, ymm j holding columns 4j ... 4j+3 as two partial
//      sums each (the first and the second pair of every quad).
//   2. For each quad q: widen the panel's 16 bytes of 4 columns to int16 and subtract 128
//      (the layout's offset), broadcast the row's 4 codes widened to int16 to every column,
//      and VPMADDWD them into the partial sums.
//   3. Add the two partial sums of each column (VPHADDD, then VPERMQ to undo its lane order)
//      and store, or add to acc.
//
// Compiled with target attributes, so this header builds without -march flags; call it only
// where cmx::cpu::runs(Isa::avx2, KernelFamily::int8_matmul).
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

#define CMX_TARGET_AVX2 __attribute__((target("avx2")))

namespace cmx::cpu::int8_matmul::avx2 {

/// Rows of A per register block (of one panel: 4 ymm accumulators per row). tile_product runs
/// a remainder row with a block of one row.
inline constexpr int kRows = 2;

namespace detail {

/// Column groups of 4 per panel, one ymm accumulator each.
inline constexpr int kColumnGroups = int8_panel::kColumns / 4;

template <int Rows>
CMX_TARGET_AVX2 void block(const std::int8_t* const* a_rows, const std::byte* panel, int first_quad,
                           int end_quad, std::int32_t* acc, std::size_t acc_stride,
                           Accumulate mode) noexcept {
  const __m256i offset = _mm256_set1_epi16(int8_panel::kCodeOffset);
  __m256i partial[Rows][kColumnGroups];
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < kColumnGroups; ++j) partial[r][j] = _mm256_setzero_si256();
  const std::byte* b = panel + int8_panel::quad_offset(first_quad);
  for (int q = first_quad; q < end_quad; ++q, b += int8_panel::kQuadRowBytes) {
    __m256i a_pairs[Rows];  // row r's 4 codes as int16, repeated for the 4 columns
#pragma GCC unroll 8
    for (int r = 0; r < Rows; ++r) {
      std::int32_t a_quad;
      std::memcpy(&a_quad, a_rows[r] + q * int8_panel::kQuadDepth, sizeof(a_quad));
      a_pairs[r] = _mm256_broadcastq_epi64(_mm_cvtepi8_epi16(_mm_cvtsi32_si128(a_quad)));
    }
#pragma GCC unroll 8
    for (int j = 0; j < kColumnGroups; ++j) {
      const __m128i b_bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16 * j));
      const __m256i b_codes = _mm256_sub_epi16(_mm256_cvtepu8_epi16(b_bytes), offset);
#pragma GCC unroll 8
      for (int r = 0; r < Rows; ++r)
        partial[r][j] = _mm256_add_epi32(partial[r][j], _mm256_madd_epi16(b_codes, a_pairs[r]));
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < Rows; ++r) {
    std::int32_t* acc_row = acc + static_cast<std::size_t>(r) * acc_stride;
#pragma GCC unroll 8
    for (int half = 0; half < 2; ++half) {  // columns 8 * half ... 8 * half + 7
      const __m256i sums = _mm256_permute4x64_epi64(
          _mm256_hadd_epi32(partial[r][2 * half], partial[r][2 * half + 1]), 0xd8);
      __m256i* out = reinterpret_cast<__m256i*>(acc_row + 8 * half);
      _mm256_storeu_si256(
          out, mode == Accumulate::add ? _mm256_add_epi32(_mm256_loadu_si256(out), sums) : sums);
    }
  }
}

}  // namespace detail

/// Computes `product` (see cmx::Int8TileProduct), exactly, as the file comment describes.
CMX_TARGET_AVX2 inline void tile_product(const Int8TileProduct& product) noexcept {
  const int num_rows = static_cast<int>(product.a_rows.size());
  const int first_quad = product.k_begin / int8_panel::kQuadDepth;
  const int end_quad = product.k_end / int8_panel::kQuadDepth;
  for (int p = 0; p < product.num_panels; ++p) {
    const std::byte* panel = product.panels + static_cast<std::size_t>(p) * product.panel_bytes;
    for (int r = 0; r < num_rows; r += kRows) {
      const std::int8_t* const* rows = product.a_rows.data() + r;
      std::int32_t* acc = product.acc + static_cast<std::size_t>(r) * product.acc_stride +
                          static_cast<std::size_t>(p) * int8_panel::kColumns;
      if (num_rows - r >= kRows)
        detail::block<kRows>(rows, panel, first_quad, end_quad, acc, product.acc_stride,
                             product.mode);
      else
        detail::block<1>(rows, panel, first_quad, end_quad, acc, product.acc_stride, product.mode);
    }
  }
}

}  // namespace cmx::cpu::int8_matmul::avx2

#undef CMX_TARGET_AVX2
#endif  // CMX_CPU_X86_64
