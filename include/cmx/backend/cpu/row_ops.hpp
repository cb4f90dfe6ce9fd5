// SPDX-License-Identifier: Apache-2.0
// The row operations of the CPU backends: cmx's portable definitions (core/quantize.hpp), with
// two replaced where the CPU has the instructions: combine's weighted accumulation (AVX-512), by
// a loop that sweeps a token's rows together with the sums in registers, and dispatch's
// quantization (AVX-512 or AVX2), so that its speed does not depend on how the caller compiled.
// Bitwise the same results as the portable versions.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "cmx/backend/cpu/isa.hpp"
#include "cmx/core/bf16.hpp"
#include "cmx/core/quantize.hpp"

#if CMX_CPU_X86_64
#include <immintrin.h>
#endif

namespace cmx::cpu::detail {

#if CMX_CPU_X86_64
/// How far ahead of the elements being accumulated each row is prefetched, in bytes: combine's
/// rows come from memory (a peer's expert outputs, megabytes apart), and a row's first lines
/// would otherwise wait for the hardware prefetcher to notice the stream.
inline constexpr std::size_t kAccumulatePrefetchBytes = 2048;

// GCC 12 reports its own AVX-512 intrinsics' undefined vectors as (maybe-)uninitialized (GCC
// bug 105593), here and wherever the functions are inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

/// 16 bf16 -> 16 floats: the 16 bits become the upper half of a binary32 (exact).
__attribute__((target("avx512f,avx512bw"))) inline __m512 widen_bf16_avx512(
    __m256i halves) noexcept {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halves), 16));
}
__attribute__((target("avx512f,avx512bw"))) inline __m512 widen_bf16_avx512(
    const bf16* values) noexcept {
  return widen_bf16_avx512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(values)));
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

/// The largest of 8 unsigned 16-bit lanes. (PHMINPOSUW finds the smallest: the largest x is
/// the smallest ~x.)
__attribute__((target("sse4.1"))) inline std::uint16_t max_u16_of_8(__m128i lanes) noexcept {
  const __m128i smallest = _mm_minpos_epu16(_mm_xor_si128(lanes, _mm_set1_epi16(-1)));
  return static_cast<std::uint16_t>(~_mm_extract_epi16(smallest, 0));
}

/// The amax of a bf16 row as quantize_row_int8 defines it (the integer max of the bits
/// without their sign), with AVX-512: 32 elements at a time, the last < 32 by a masked load.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline std::uint16_t bf16_amax_bits_avx512(
    std::span<const bf16> row) noexcept {
  const auto* bits = reinterpret_cast<const std::uint16_t*>(row.data());
  const std::size_t size = row.size();
  const __m512i magnitude = _mm512_set1_epi16(0x7fff);
  __m512i amax = _mm512_setzero_si512();
  std::size_t i = 0;
  for (; i + 32 <= size; i += 32)
    amax = _mm512_max_epu16(amax, _mm512_and_si512(_mm512_loadu_si512(bits + i), magnitude));
  const auto tail = static_cast<__mmask32>((std::uint64_t{1} << (size - i)) - 1);
  amax =
      _mm512_max_epu16(amax, _mm512_and_si512(_mm512_maskz_loadu_epi16(tail, bits + i), magnitude));
  const __m256i half =
      _mm256_max_epu16(_mm512_castsi512_si256(amax), _mm512_extracti64x4_epi64(amax, 1));
  return max_u16_of_8(
      _mm_max_epu16(_mm256_castsi256_si128(half), _mm256_extracti128_si256(half, 1)));
}

/// The 16 codes of 16 values: each product with the inverse scale rounded by VCVTPS2DQ in the
/// current rounding mode (to nearest even by default, as std::nearbyint rounds), then narrowed
/// by VPMOVDB (which truncates: every code fits, |code| <= 127).
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m128i int8_codes_avx512(
    __m512 values, __m512 inverse_scale) noexcept {
  return _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(values, inverse_scale)));
}

/// cmx::quantize_row_int8 with AVX-512, bit for bit (the same amax, scale and products; see
/// the helpers above): 16 codes at a time, the last < 16 by a masked load and store. Unlike
/// the portable loop, its speed does not depend on the caller's compiler flags (at -O2 GCC 12
/// leaves the portable loop scalar: 10x slower, 40x without SSE4.1).
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline float quantize_row_int8_avx512(
    std::span<const bf16> row, std::span<std::int8_t> out) noexcept {
  const cmx::detail::Int8RowScale row_scale =
      cmx::detail::int8_row_scale(std::uint32_t{bf16_amax_bits_avx512(row)} << 16);
  if (row_scale.codes_are_zero) {
    if (!out.empty()) std::memset(out.data(), 0, out.size());
    return row_scale.scale;
  }
  const std::size_t size = row.size();
  const __m512 inverse_scale = _mm512_set1_ps(row_scale.inverse_scale);
  std::size_t i = 0;
  for (; i + 16 <= size; i += 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out.data() + i),
                     int8_codes_avx512(widen_bf16_avx512(row.data() + i), inverse_scale));
  const auto tail = static_cast<__mmask16>((1u << (size - i)) - 1);
  const __m256i halves = _mm256_maskz_loadu_epi16(tail, row.data() + i);
  _mm_mask_storeu_epi8(out.data() + i, tail,
                       int8_codes_avx512(widen_bf16_avx512(halves), inverse_scale));
  return row_scale.scale;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/// 8 bf16 -> 8 floats (exact), with AVX2.
__attribute__((target("avx2"))) inline __m256 widen_bf16_avx2(const bf16* values) noexcept {
  const __m128i halves = _mm_loadu_si128(reinterpret_cast<const __m128i*>(values));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(halves), 16));
}

/// bf16_amax_bits_avx512 with AVX2: 16 elements at a time, the last < 16 one by one.
__attribute__((target("avx2"))) inline std::uint16_t bf16_amax_bits_avx2(
    std::span<const bf16> row) noexcept {
  const std::size_t size = row.size();
  const __m256i magnitude = _mm256_set1_epi16(0x7fff);
  __m256i amax = _mm256_setzero_si256();
  std::size_t i = 0;
  for (; i + 16 <= size; i += 16)
    amax = _mm256_max_epu16(
        amax, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row.data() + i)),
                               magnitude));
  std::uint16_t amax_bits =
      max_u16_of_8(_mm_max_epu16(_mm256_castsi256_si128(amax), _mm256_extracti128_si256(amax, 1)));
  for (; i < size; ++i) amax_bits = std::max<std::uint16_t>(amax_bits, row[i].bits & 0x7fffu);
  return amax_bits;
}

/// cmx::quantize_row_int8 with AVX2, bit for bit, for CPUs without AVX-512: the codes 16 at a
/// time, rounded by VCVTPS2DQ as in the AVX-512 version and narrowed by two saturating packs
/// (exact: every code fits); the last < 16 by the portable formula.
__attribute__((target("avx2"))) inline float quantize_row_int8_avx2(
    std::span<const bf16> row, std::span<std::int8_t> out) noexcept {
  const cmx::detail::Int8RowScale row_scale =
      cmx::detail::int8_row_scale(std::uint32_t{bf16_amax_bits_avx2(row)} << 16);
  if (row_scale.codes_are_zero) {
    if (!out.empty()) std::memset(out.data(), 0, out.size());
    return row_scale.scale;
  }
  const std::size_t size = row.size();
  const __m256 inverse_scale = _mm256_set1_ps(row_scale.inverse_scale);
  std::size_t i = 0;
  for (; i + 16 <= size; i += 16) {
    const __m256i low =
        _mm256_cvtps_epi32(_mm256_mul_ps(widen_bf16_avx2(row.data() + i), inverse_scale));
    const __m256i high =
        _mm256_cvtps_epi32(_mm256_mul_ps(widen_bf16_avx2(row.data() + i + 8), inverse_scale));
    // PACKSSDW interleaves the 128-bit lanes: [low 0-3, high 0-3 | low 4-7, high 4-7].
    const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(low, high), 0xd8);
    _mm_storeu_si128(
        reinterpret_cast<__m128i*>(out.data() + i),
        _mm_packs_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1)));
  }
  for (; i < size; ++i) out[i] = cmx::detail::int8_code(row[i].to_float(), row_scale.inverse_scale);
  return row_scale.scale;
}
#endif

/// cmx::quantize_row_int8, bit for bit; with AVX-512 or AVX2 where the CPU has it.
inline float quantize_row_int8(std::span<const bf16> row, std::span<std::int8_t> out) noexcept {
#if CMX_CPU_X86_64
  const cpu::Features& features = cpu::features();
  if (features.avx512) return quantize_row_int8_avx512(row, out);
  if (features.avx2) return quantize_row_int8_avx2(row, out);
#endif
  return cmx::quantize_row_int8(row, out);
}

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

}  // namespace cmx::cpu::detail
