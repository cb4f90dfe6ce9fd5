// SPDX-License-Identifier: Apache-2.0
// The avx2 tier of the bf16 attention tile operations: bf16 widened to fp32 by a 16-bit shift
// (exact), then fp32 FMA, 8 lanes at a time. For CPUs without AVX512_BF16.
//
//   scores:  lanes are queries; each 32-bit pair of the packed queries and of a key splits into
//            its even element (shifted up) and its odd one (masked), two FMAs per pair; a
//            register block of 4 keys x 16 queries.
//   exp:     2^x as an exponent built in the float's bits times the avx512 tier's polynomial;
//            rounded to bf16 (nearest even) with integer arithmetic, the two keys of a pair
//            merged into one 32-bit word.
//   values:  lanes are value columns; each key's row widened once per 16 columns and shared
//            by a register block of 4 queries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cmx/backend/cpu/isa.hpp"
#include "cmx/device/bf16_attention.hpp"

#if CMX_CPU_X86_64
#include <immintrin.h>

/// What the avx2 tier's functions are compiled for.
#define CMX_AVX2_FMA_TARGET __attribute__((target("avx2,fma")))

namespace cmx::cpu::bf16_attention::avx2 {
namespace detail {

inline constexpr int kScoreKeys = 4;
inline constexpr int kScoreVectors = 2;
inline constexpr int kValueQueries = 4;
inline constexpr int kValueVectors = 2;

/// All ones in the first `count` of 8 lanes: a mask for maskload / maskstore.
CMX_AVX2_FMA_TARGET inline __m256i first_lanes(int count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// The even (low) and odd (high) bf16 of each 32-bit lane, widened to fp32.
CMX_AVX2_FMA_TARGET inline __m256 even_half(__m256i pairs) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(pairs, 16));
}
CMX_AVX2_FMA_TARGET inline __m256 odd_half(__m256i pairs) {
  return _mm256_castsi256_ps(
      _mm256_and_si256(pairs, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

/// Eight consecutive bf16 widened to fp32.
CMX_AVX2_FMA_TARGET inline __m256 widen(const bf16* values) {
  const __m128i words = _mm_loadu_si128(reinterpret_cast<const __m128i*>(values));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(words), 16));
}

template <int kKeys, int kVectors>
CMX_AVX2_FMA_TARGET inline void scores_block(const Bf16ScoresTile& tile, int key0, int query0) {
  const int num_queries = tile.num_queries;
  __m256i lanes[kVectors];
  __m256 acc[kKeys][kVectors];
#pragma GCC unroll 2
  for (int v = 0; v < kVectors; ++v) lanes[v] = first_lanes(num_queries - query0 - 8 * v);
#pragma GCC unroll 4
  for (int j = 0; j < kKeys; ++j)
#pragma GCC unroll 2
    for (int v = 0; v < kVectors; ++v) acc[j][v] = _mm256_setzero_ps();

  const bf16* keys = tile.keys + static_cast<std::size_t>(key0) * tile.key_stride;
  const bf16* pairs = tile.query_pairs.data() + static_cast<std::size_t>(query0) * 2;
  const std::size_t pair_stride = static_cast<std::size_t>(num_queries) * 2;
  for (int p = 0; p < tile.depth / 2; ++p) {
    __m256 even[kVectors], odd[kVectors];
#pragma GCC unroll 2
    for (int v = 0; v < kVectors; ++v) {
      const __m256i words = _mm256_maskload_epi32(
          reinterpret_cast<const int*>(pairs + p * pair_stride + 16 * v), lanes[v]);
      even[v] = even_half(words);
      odd[v] = odd_half(words);
    }
#pragma GCC unroll 4
    for (int j = 0; j < kKeys; ++j) {
      std::uint32_t word;
      std::memcpy(&word, keys + j * tile.key_stride + 2 * p, sizeof word);
      const __m256i key = _mm256_set1_epi32(static_cast<int>(word));
      const __m256 key_even = even_half(key), key_odd = odd_half(key);
#pragma GCC unroll 2
      for (int v = 0; v < kVectors; ++v)
        acc[j][v] = _mm256_fmadd_ps(odd[v], key_odd, _mm256_fmadd_ps(even[v], key_even, acc[j][v]));
    }
  }

  const __m256 negative_infinity = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
#pragma GCC unroll 2
  for (int v = 0; v < kVectors; ++v) {
    const int first = query0 + 8 * v;
    const __m256i visible = _mm256_maskload_epi32(tile.visible_keys.data() + first, lanes[v]);
    float* row_max = tile.row_max.data() + first;
    __m256 max = _mm256_maskload_ps(row_max, lanes[v]);
#pragma GCC unroll 4
    for (int j = 0; j < kKeys; ++j) {
      const __m256i seen = _mm256_cmpgt_epi32(visible, _mm256_set1_epi32(key0 + j));
      const __m256 score =
          _mm256_blendv_ps(negative_infinity, acc[j][v], _mm256_castsi256_ps(seen));
      max = _mm256_max_ps(max, score);
      _mm256_maskstore_ps(
          tile.scores.data() + static_cast<std::size_t>(key0 + j) * num_queries + first, lanes[v],
          score);
    }
    _mm256_maskstore_ps(row_max, lanes[v], max);
  }
}

template <int kVectors>
CMX_AVX2_FMA_TARGET inline void scores_for_queries(const Bf16ScoresTile& tile, int query0) {
  int key = 0;
  for (; key + kScoreKeys <= tile.num_keys; key += kScoreKeys)
    scores_block<kScoreKeys, kVectors>(tile, key, query0);
  for (; key < tile.num_keys; ++key) scores_block<1, kVectors>(tile, key, query0);
}

/// 2^x: 0 below 2^-126 (and for -inf and NaN); the avx512 tier's polynomial.
CMX_AVX2_FMA_TARGET inline __m256 exp2(__m256 x) {
  const __m256 clamped = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-127.0f)),
                                       _mm256_set1_ps(127.0f));  // max picks -127 for NaN
  const __m256 whole = _mm256_round_ps(clamped, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(clamped, whole);
  __m256 poly = _mm256_set1_ps(1.535336188319500e-4f);
  poly = _mm256_fmadd_ps(poly, f, _mm256_set1_ps(1.339887440266574e-3f));
  poly = _mm256_fmadd_ps(poly, f, _mm256_set1_ps(9.618437357674640e-3f));
  poly = _mm256_fmadd_ps(poly, f, _mm256_set1_ps(5.550332471162809e-2f));
  poly = _mm256_fmadd_ps(poly, f, _mm256_set1_ps(2.402264791363012e-1f));
  poly = _mm256_fmadd_ps(poly, f, _mm256_set1_ps(6.931472028550421e-1f));
  poly = _mm256_fmadd_ps(poly, f, _mm256_set1_ps(1.0f));
  const __m256i exponent =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(whole), _mm256_set1_epi32(127)), 23);
  const __m256 kept = _mm256_cmp_ps(x, _mm256_set1_ps(kBf16ExpSmallestExponent), _CMP_GE_OQ);
  return _mm256_and_ps(kept, _mm256_mul_ps(poly, _mm256_castsi256_ps(exponent)));
}

/// p = 2^(score * scale - shift) of key `key` for 8 queries from query0 (the lanes).
CMX_AVX2_FMA_TARGET inline __m256 power(const Bf16ExpTile& tile, int key, int query0, __m256i lanes,
                                        __m256 scale, __m256 shift) {
  const __m256 score = _mm256_maskload_ps(
      tile.scores.data() + static_cast<std::size_t>(key) * tile.num_queries + query0, lanes);
  return exp2(_mm256_fmsub_ps(score, scale, shift));
}

/// Rounds non-negative finite floats to bf16 (nearest, ties to even), left in 32-bit lanes:
/// the bf16 bits in the high half, garbage in the low half.
CMX_AVX2_FMA_TARGET inline __m256i round_to_bf16_high(__m256 values) {
  const __m256i bits = _mm256_castps_si256(values);
  const __m256i odd_bit = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  return _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), odd_bit));
}

template <int kQueries>
CMX_AVX2_FMA_TARGET inline void values_block(const Bf16ValuesTile& tile, int query0, int column0) {
  const std::size_t num_queries = static_cast<std::size_t>(tile.num_queries);
  __m256 acc[kQueries][kValueVectors];
#pragma GCC unroll 4
  for (int r = 0; r < kQueries; ++r) {
    const __m256 rescale = _mm256_set1_ps(tile.rescale[static_cast<std::size_t>(query0 + r)]);
    const float* out =
        tile.out.data() + static_cast<std::size_t>(query0 + r) * tile.width + column0;
#pragma GCC unroll 2
    for (int v = 0; v < kValueVectors; ++v)
      acc[r][v] = _mm256_mul_ps(rescale, _mm256_loadu_ps(out + 8 * v));
  }
  for (int j = 0; j < tile.num_keys; ++j) {
    const bf16* value = tile.values + static_cast<std::size_t>(j) * tile.value_stride + column0;
    __m256 values[kValueVectors];
#pragma GCC unroll 2
    for (int v = 0; v < kValueVectors; ++v) values[v] = widen(value + 8 * v);
    const bf16* p = tile.probabilities.data() +
                    (static_cast<std::size_t>(j / 2) * num_queries + query0) * 2 + j % 2;
#pragma GCC unroll 4
    for (int r = 0; r < kQueries; ++r) {
      const __m256 weight = _mm256_set1_ps(p[2 * r].to_float());
#pragma GCC unroll 2
      for (int v = 0; v < kValueVectors; ++v)
        acc[r][v] = _mm256_fmadd_ps(weight, values[v], acc[r][v]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < kQueries; ++r) {
    float* out = tile.out.data() + static_cast<std::size_t>(query0 + r) * tile.width + column0;
#pragma GCC unroll 2
    for (int v = 0; v < kValueVectors; ++v) _mm256_storeu_ps(out + 8 * v, acc[r][v]);
  }
}

}  // namespace detail

/// Bf16ScoresTile with fp32 FMA on widened bf16.
CMX_AVX2_FMA_TARGET inline void scores(const Bf16ScoresTile& tile) {
  for (int i = 0; i < tile.num_queries; ++i)
    tile.row_max[static_cast<std::size_t>(i)] = -std::numeric_limits<float>::infinity();
  int query = 0;
  for (; tile.num_queries - query > 8; query += 16)
    detail::scores_for_queries<detail::kScoreVectors>(tile, query);
  if (query < tile.num_queries) detail::scores_for_queries<1>(tile, query);
}

/// Bf16ExpTile with a polynomial 2^x and integer rounding to bf16.
CMX_AVX2_FMA_TARGET inline void exp_scores(const Bf16ExpTile& tile) {
  const __m256 scale = _mm256_set1_ps(tile.scale_log2);
  const __m256i high_half = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  const std::size_t num_queries = static_cast<std::size_t>(tile.num_queries);
  for (int query0 = 0; query0 < tile.num_queries; query0 += 8) {
    const __m256i lanes = detail::first_lanes(tile.num_queries - query0);
    const __m256 shift = _mm256_maskload_ps(tile.shift.data() + query0, lanes);
    __m256 sum = _mm256_setzero_ps();
    for (int key = 0; key < tile.num_keys; key += 2) {
      const __m256 even = detail::power(tile, key, query0, lanes, scale, shift);
      const __m256 odd = key + 1 < tile.num_keys
                             ? detail::power(tile, key + 1, query0, lanes, scale, shift)
                             : _mm256_setzero_ps();
      sum = _mm256_add_ps(_mm256_add_ps(sum, even), odd);
      const __m256i pairs =
          _mm256_or_si256(_mm256_srli_epi32(detail::round_to_bf16_high(even), 16),
                          _mm256_and_si256(detail::round_to_bf16_high(odd), high_half));
      _mm256_maskstore_epi32(reinterpret_cast<int*>(tile.probabilities.data() +
                                                    ((key / 2) * num_queries + query0) * 2),
                             lanes, pairs);
    }
    _mm256_maskstore_ps(tile.row_sum.data() + query0, lanes, sum);
  }
}

/// Bf16ValuesTile with fp32 FMA on widened bf16.
CMX_AVX2_FMA_TARGET inline void accumulate_values(const Bf16ValuesTile& tile) {
  for (int column0 = 0; column0 < tile.width; column0 += 8 * detail::kValueVectors) {
    int query = 0;
    for (; query + detail::kValueQueries <= tile.num_queries; query += detail::kValueQueries)
      detail::values_block<detail::kValueQueries>(tile, query, column0);
    for (; query < tile.num_queries; ++query) detail::values_block<1>(tile, query, column0);
  }
}

}  // namespace cmx::cpu::bf16_attention::avx2

#endif  // CMX_CPU_X86_64
