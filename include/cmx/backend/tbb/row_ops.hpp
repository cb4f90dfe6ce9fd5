// SPDX-License-Identifier: Apache-2.0
// The row operations of the CPU backends: cmx's portable definitions (core/quantize.hpp), with
// the weighted accumulation of combine replaced, where the CPU has AVX-512, by a loop that
// prefetches the row it streams. Bitwise the same results as the portable versions.
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
/// How far ahead of the element being accumulated the row is prefetched, in bytes: combine's
/// rows come from memory (a peer's expert outputs, megabytes apart), and a row's first lines
/// would otherwise wait for the hardware prefetcher to notice the stream. Measured on the
/// DeepEP decode shape (rows of 14 KiB): 2 KiB ahead halves the time of the reduction.
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

/// acc[i] = fma(weight, row[i], acc[i]) with AVX-512: VFMADD231PS rounds once, as std::fma does,
/// so the result is bitwise cmx::accumulate_weighted_row's (in the default floating-point
/// environment: no flush-to-zero). Prefetching past the row's end is harmless: a prefetch never
/// faults.
__attribute__((target("avx512f,avx512bw"))) inline void accumulate_weighted_row_avx512(
    std::span<float> acc, std::span<const bf16> row, float weight) noexcept {
  const std::size_t size = acc.size();
  const __m512 weights = _mm512_set1_ps(weight);
  float* out = acc.data();
  const bf16* in = row.data();
  std::size_t i = 0;
  for (; i + 32 <= size; i += 32) {
    _mm_prefetch(reinterpret_cast<const char*>(in + i) + kAccumulatePrefetchBytes, _MM_HINT_T0);
    _mm512_storeu_ps(out + i,
                     _mm512_fmadd_ps(weights, widen_bf16_avx512(in + i), _mm512_loadu_ps(out + i)));
    _mm512_storeu_ps(out + i + 16, _mm512_fmadd_ps(weights, widen_bf16_avx512(in + i + 16),
                                                   _mm512_loadu_ps(out + i + 16)));
  }
  cmx::accumulate_weighted_row(acc.subspan(i), row.subspan(i), weight);  // the last < 32
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

/// cmx::accumulate_weighted_row, bit for bit; with AVX-512 where the CPU has it.
inline void accumulate_weighted_row(std::span<float> acc, std::span<const bf16> row,
                                    float weight) noexcept {
#if CMX_CPU_X86_64
  static const bool has_avx512 = cpu::features().avx512;
  if (has_avx512) return accumulate_weighted_row_avx512(acc, row, weight);
#endif
  cmx::accumulate_weighted_row(acc, row, weight);
}

}  // namespace cmx::tbb_backend::detail
