// SPDX-License-Identifier: Apache-2.0
// The row operations of the CPU backends: cmx's portable definitions (core/quantize.hpp), with
// the weighted accumulation of combine replaced, where the CPU has AVX-512, by a loop that sweeps
// a token's rows together with the sums in registers. Bitwise the same results as the portable
// versions.
#pragma once

#include <cstddef>
#include <span>

#include "cmx/core/bf16.hpp"
#include "cmx/core/cpu_isa.hpp"
#include "cmx/core/quantize.hpp"

#if CMX_CPU_X86_64
#include <immintrin.h>
#endif

namespace cmx::tbb_backend::detail {

#if CMX_CPU_X86_64
/// How far ahead of the elements being accumulated each row is prefetched, in bytes: combine's
/// rows come from memory (a peer's expert outputs, megabytes apart), and a row's first lines
/// would otherwise wait for the hardware prefetcher to notice the stream.
inline constexpr std::size_t kAccumulatePrefetchBytes = 2048;

// GCC 12 reports its own AVX-512 intrinsics' undefined vectors as maybe-uninitialized (GCC bug
// 105593), here and wherever the functions are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

/// 16 bf16 -> 16 floats: the 16 bits become the upper half of a binary32 (exact).
__attribute__((target("avx512f,avx512bw"))) inline __m512 widen_bf16_avx512(
    const bf16* values) noexcept {
  const __m256i halves = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halves), 16));
}

/// cmx::accumulate_weighted_rows with AVX-512, 64 elements at a time: their sums stay in four
/// registers while every row adds to them in row order, so each row is one more stream read
/// once, and acc is read and written once, not once per row. VFMADD231PS rounds once, as
/// std::fma does, so the result is bitwise the portable one (in the default floating-point
/// environment: no flush-to-zero). Prefetching past a row's end is harmless: a prefetch never
/// faults.
__attribute__((target("avx512f,avx512bw"))) inline void accumulate_weighted_rows_avx512(
    std::span<float> acc, std::span<const std::span<const bf16>> rows,
    std::span<const float> weights) noexcept {
  constexpr std::size_t kStep = 64;  // elements: four registers of 16 floats
  const std::size_t size = acc.size();
  float* out = acc.data();
  std::size_t i = 0;
  for (; i + kStep <= size; i += kStep) {
    __m512 sum0 = _mm512_loadu_ps(out + i);
    __m512 sum1 = _mm512_loadu_ps(out + i + 16);
    __m512 sum2 = _mm512_loadu_ps(out + i + 32);
    __m512 sum3 = _mm512_loadu_ps(out + i + 48);
    for (std::size_t k = 0; k < rows.size(); ++k) {
      const bf16* in = rows[k].data() + i;
      const char* ahead = reinterpret_cast<const char*>(in) + kAccumulatePrefetchBytes;
      _mm_prefetch(ahead, _MM_HINT_T0);
      _mm_prefetch(ahead + 64, _MM_HINT_T0);  // kStep bf16 are two cache lines
      const __m512 weight = _mm512_set1_ps(weights[k]);
      sum0 = _mm512_fmadd_ps(weight, widen_bf16_avx512(in), sum0);
      sum1 = _mm512_fmadd_ps(weight, widen_bf16_avx512(in + 16), sum1);
      sum2 = _mm512_fmadd_ps(weight, widen_bf16_avx512(in + 32), sum2);
      sum3 = _mm512_fmadd_ps(weight, widen_bf16_avx512(in + 48), sum3);
    }
    _mm512_storeu_ps(out + i, sum0);
    _mm512_storeu_ps(out + i + 16, sum1);
    _mm512_storeu_ps(out + i + 32, sum2);
    _mm512_storeu_ps(out + i + 48, sum3);
  }
  for (; i + 16 <= size; i += 16) {  // what is left, a register at a time
    __m512 sum = _mm512_loadu_ps(out + i);
    for (std::size_t k = 0; k < rows.size(); ++k)
      sum = _mm512_fmadd_ps(_mm512_set1_ps(weights[k]), widen_bf16_avx512(rows[k].data() + i), sum);
    _mm512_storeu_ps(out + i, sum);
  }
  // The last < 16 elements, row by row: each element still takes its rows in order.
  for (std::size_t k = 0; k < rows.size(); ++k)
    cmx::accumulate_weighted_row(acc.subspan(i), rows[k].subspan(i), weights[k]);
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

/// cmx::accumulate_weighted_rows, bit for bit; with AVX-512 where the CPU has it.
inline void accumulate_weighted_rows(std::span<float> acc,
                                     std::span<const std::span<const bf16>> rows,
                                     std::span<const float> weights) noexcept {
#if CMX_CPU_X86_64
  static const bool has_avx512 = cpu::features().avx512;
  if (has_avx512) return accumulate_weighted_rows_avx512(acc, rows, weights);
#endif
  cmx::accumulate_weighted_rows(acc, rows, weights);
}

}  // namespace cmx::tbb_backend::detail
