// SPDX-License-Identifier: Apache-2.0
// The avx512 tier of the bf16 attention tile operations: VDPBF16PS, which multiplies pairs of
// bf16 and adds both products to an fp32 lane (AVX512_BF16), 16 lanes at a time.
//
//   scores:  lanes are queries. Per pair p of depth elements, one load of 16 queries' pairs
//            (Bf16ScoresTile's layout, no reshuffle) and one broadcast of each key's pair feed
//            a register block of 12 keys x 32 queries; the keys are read straight from the
//            (staged) cache rows. Masking and the row maxima are done in registers. The depth
//            loops also bring the next tile's keys (Bf16ScoresTile::next_keys) into L2, a few
//            lines every 16 pairs, so that the next tile does not start from memory.
//   exp:     2^x as 2^round(x) (VSCALEFPS) times a degree-6 polynomial on [-1/2, 1/2]
//            (Cephes exp2f, relative error 1.7e-7); two keys' probabilities are rounded to bf16
//            together (VCVTNE2PS2BF16) and interleaved into the pair layout.
//   values:  lanes are value elements. Every 64 value columns, the tile's values are packed by
//            pairs of keys into 8 KiB on the stack (the layout VDPBF16PS needs on its reduction
//            axis); a register block of 4 queries x 64 columns then takes one broadcast of each
//            query's probability pair per 4 products.
//
// NOTES: VDPBF16PS rounds after each of its two products (round to nearest even), treats
// subnormal inputs as 0 and flushes subnormal results, whatever MXCSR says; the scalar tier
// does neither, which the attention kernels' tolerance admits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cmx/backend/cpu/isa.hpp"
#include "cmx/device/bf16_attention.hpp"

#if CMX_CPU_X86_64
#include <immintrin.h>

/// What the avx512 tier's functions are compiled for (every AVX512_BF16 CPU has all of it).
#define CMX_AVX512_BF16_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

namespace cmx::cpu::bf16_attention::avx512 {
namespace detail {

/// Register block of the scores: keys x 16-query vectors.
inline constexpr int kScoreKeys = 12;
inline constexpr int kScoreKeysOneVector = 16;
/// Register block of the values: queries x 16-column vectors (64 columns).
inline constexpr int kValueQueries = 4;
inline constexpr int kValueVectors = 4;
inline constexpr int kValueColumns = 16 * kValueVectors;

/// Mask of the first `count` of 16 lanes (all of them for count >= 16).
CMX_AVX512_BF16_TARGET inline __mmask16 first_lanes(int count) {
  return count >= 16 ? static_cast<__mmask16>(0xFFFF)
                     : static_cast<__mmask16>((1u << (count > 0 ? count : 0)) - 1);
}

/// Mask of the words of the first `count` of 16 lanes (two words per lane).
CMX_AVX512_BF16_TARGET inline __mmask32 first_lane_words(int count) {
  return count >= 16 ? static_cast<__mmask32>(0xFFFFFFFFu)
                     : static_cast<__mmask32>((1u << 2 * (count > 0 ? count : 0)) - 1);
}

/// The 32-bit word at `pair` (two bf16), in every lane.
CMX_AVX512_BF16_TARGET inline __m512i broadcast_pair(const bf16* pair) {
  std::uint32_t word;
  std::memcpy(&word, pair, sizeof word);
  return _mm512_set1_epi32(static_cast<int>(word));
}

// GCC 12 warns that the unmasked forms of these read an uninitialized register (its
// _mm512_undefined_ps, bug 105593): the zero-masked forms with every lane kept are the same
// instructions.
inline constexpr __mmask16 kAllLanes = 0xFFFF;
CMX_AVX512_BF16_TARGET inline __m512 max(__m512 a, __m512 b) {
  return _mm512_maskz_max_ps(kAllLanes, a, b);
}
CMX_AVX512_BF16_TARGET inline __m512 round_to_nearest(__m512 x) {
  return _mm512_maskz_roundscale_ps(kAllLanes, x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
CMX_AVX512_BF16_TARGET inline __m512 times_power_of_two(__m512 x, __m512 exponent) {
  return _mm512_maskz_scalef_ps(kAllLanes, x, exponent);
}

CMX_AVX512_BF16_TARGET inline __m512 dot_pairs(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

/// Depth pairs between two steps of the next tile's prefetch.
inline constexpr int kPairsPerPrefetch = 16;

/// Brings the next tile's keys into L2 a few cache lines at a time, spread over the loops that
/// compute this tile, so that the next tile starts from L2 instead of memory.
class NextTilePrefetch {
 public:
  /// `steps`: how many times step() will be called.
  NextTilePrefetch(const Bf16ScoresTile& tile, long steps)
      : row_(reinterpret_cast<const char*>(tile.next_keys)),
        row_bytes_(static_cast<long>(tile.key_stride * sizeof(bf16))),
        lines_per_row_((static_cast<long>(tile.depth * sizeof(bf16)) + 63) / 64),
        lines_left_(tile.next_keys == nullptr ? 0 : tile.next_num_keys * lines_per_row_),
        lines_per_step_(steps > 0 ? (lines_left_ + steps - 1) / steps : 0) {}

  CMX_AVX512_BF16_TARGET void step() {
    for (long i = 0; i < lines_per_step_ && lines_left_ > 0; ++i, --lines_left_) {
      _mm_prefetch(row_ + 64 * line_, _MM_HINT_T1);
      if (++line_ == lines_per_row_) line_ = 0, row_ += row_bytes_;
    }
  }

 private:
  const char* row_;  // the row being fetched
  long row_bytes_, lines_per_row_, lines_left_, lines_per_step_;
  long line_ = 0;  // the next line of row_
};

/// Scores of keys [key0, key0 + kKeys) against kVectors vectors of 16 queries from query0;
/// masked, stored, folded into row_max. kKeyStride: the key stride if known at compile time
/// (the addresses of the kKeys rows are then one register plus constants), else 0.
template <int kKeys, int kVectors, std::size_t kKeyStride>
CMX_AVX512_BF16_TARGET inline void scores_block(const Bf16ScoresTile& tile, int key0, int query0,
                                                NextTilePrefetch& prefetch) {
  const std::size_t key_stride = kKeyStride != 0 ? kKeyStride : tile.key_stride;
  const int num_queries = tile.num_queries;
  __mmask16 lanes[kVectors];
  __m512 acc[kKeys][kVectors];
#pragma GCC unroll 4
  for (int v = 0; v < kVectors; ++v) lanes[v] = first_lanes(num_queries - query0 - 16 * v);
#pragma GCC unroll 16
  for (int j = 0; j < kKeys; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v) acc[j][v] = _mm512_setzero_ps();

  const bf16* keys = tile.keys + static_cast<std::size_t>(key0) * key_stride;
  const bf16* pairs = tile.query_pairs.data() + static_cast<std::size_t>(query0) * 2;
  const std::size_t pair_stride = static_cast<std::size_t>(num_queries) * 2;  // one depth pair
  NextTilePrefetch fetch = prefetch;  // a local copy the compiler keeps in registers
  for (int p0 = 0; p0 < tile.depth / 2; p0 += kPairsPerPrefetch) {
    fetch.step();
    for (int p = p0; p < p0 + kPairsPerPrefetch; ++p) {
      __m512i queries[kVectors];
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v)
        queries[v] = _mm512_maskz_loadu_epi32(lanes[v], pairs + p * pair_stride + 32 * v);
#pragma GCC unroll 16
      for (int j = 0; j < kKeys; ++j) {
        const __m512i key = broadcast_pair(keys + j * key_stride + 2 * p);
#pragma GCC unroll 4
        for (int v = 0; v < kVectors; ++v) acc[j][v] = dot_pairs(acc[j][v], key, queries[v]);
      }
    }
  }
  prefetch = fetch;

  const __m512 negative_infinity = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
#pragma GCC unroll 4
  for (int v = 0; v < kVectors; ++v) {
    const int first = query0 + 16 * v;
    const __m512i visible = _mm512_maskz_loadu_epi32(lanes[v], tile.visible_keys.data() + first);
    __m512 max = _mm512_maskz_loadu_ps(lanes[v], tile.row_max.data() + first);
#pragma GCC unroll 16
    for (int j = 0; j < kKeys; ++j) {
      const __mmask16 seen = _mm512_cmpgt_epi32_mask(visible, _mm512_set1_epi32(key0 + j));
      const __m512 score = _mm512_mask_blend_ps(seen, negative_infinity, acc[j][v]);
      max = detail::max(max, score);
      _mm512_mask_storeu_ps(
          tile.scores.data() + static_cast<std::size_t>(key0 + j) * num_queries + first, lanes[v],
          score);
    }
    _mm512_mask_storeu_ps(tile.row_max.data() + first, lanes[v], max);
  }
}

/// Every key of the tile against kVectors vectors of queries from query0.
template <int kVectors, int kKeys, std::size_t kKeyStride>
CMX_AVX512_BF16_TARGET inline void scores_for_queries(const Bf16ScoresTile& tile, int query0,
                                                      NextTilePrefetch& prefetch) {
  int key = 0;
  for (; key + kKeys <= tile.num_keys; key += kKeys)
    scores_block<kKeys, kVectors, kKeyStride>(tile, key, query0, prefetch);
  for (; key + 4 <= tile.num_keys; key += 4)
    scores_block<4, kVectors, kKeyStride>(tile, key, query0, prefetch);
  for (; key < tile.num_keys; ++key)
    scores_block<1, kVectors, kKeyStride>(tile, key, query0, prefetch);
}

/// Bf16ScoresTile for a key stride of kKeyStride (0: any).
template <std::size_t kKeyStride>
CMX_AVX512_BF16_TARGET inline void scores_with_stride(const Bf16ScoresTile& tile) {
  for (int i = 0; i < tile.num_queries; ++i)
    tile.row_max[static_cast<std::size_t>(i)] = -std::numeric_limits<float>::infinity();
  // Each block of keys of each group of queries (as the loops below cut them) runs the depth
  // loop once; the next tile's prefetch is spread over those loops.
  const auto blocks_of = [&](int keys_per_block) {
    const int rest = tile.num_keys % keys_per_block;
    return tile.num_keys / keys_per_block + rest / 4 + rest % 4;
  };
  long depth_loops = 0;
  for (int query = 0; query < tile.num_queries; query += 32)
    depth_loops +=
        tile.num_queries - query > 16 ? blocks_of(kScoreKeys) : blocks_of(kScoreKeysOneVector);
  NextTilePrefetch prefetch(tile, depth_loops * (tile.depth / 2 / kPairsPerPrefetch));
  int query = 0;
  for (; tile.num_queries - query > 16; query += 32)
    scores_for_queries<2, kScoreKeys, kKeyStride>(tile, query, prefetch);
  if (query < tile.num_queries)
    scores_for_queries<1, kScoreKeysOneVector, kKeyStride>(tile, query, prefetch);
}

/// 2^x: 0 below 2^-126 (and for -inf and NaN).
CMX_AVX512_BF16_TARGET inline __m512 exp2(__m512 x) {
  // Cephes exp2f: 2^f = 1 + f P(f) on [-1/2, 1/2].
  const __m512 whole = round_to_nearest(x);
  const __m512 f = _mm512_sub_ps(x, whole);
  __m512 poly = _mm512_set1_ps(1.535336188319500e-4f);
  poly = _mm512_fmadd_ps(poly, f, _mm512_set1_ps(1.339887440266574e-3f));
  poly = _mm512_fmadd_ps(poly, f, _mm512_set1_ps(9.618437357674640e-3f));
  poly = _mm512_fmadd_ps(poly, f, _mm512_set1_ps(5.550332471162809e-2f));
  poly = _mm512_fmadd_ps(poly, f, _mm512_set1_ps(2.402264791363012e-1f));
  poly = _mm512_fmadd_ps(poly, f, _mm512_set1_ps(6.931472028550421e-1f));
  poly = _mm512_fmadd_ps(poly, f, _mm512_set1_ps(1.0f));
  const __mmask16 kept =
      _mm512_cmp_ps_mask(x, _mm512_set1_ps(kBf16ExpSmallestExponent), _CMP_GE_OQ);
  return _mm512_maskz_mov_ps(kept, times_power_of_two(poly, whole));
}

/// p = 2^(score * scale - shift) of key `key` for 16 queries from query0 (the lanes).
CMX_AVX512_BF16_TARGET inline __m512 power(const Bf16ExpTile& tile, int key, int query0,
                                           __mmask16 lanes, __m512 scale, __m512 shift) {
  const __m512 score = _mm512_maskz_loadu_ps(
      lanes, tile.scores.data() + static_cast<std::size_t>(key) * tile.num_queries + query0);
  return exp2(_mm512_fmsub_ps(score, scale, shift));
}

/// Packs value columns [column0, column0 + 64) of every key pair: packed[q][c] holds
/// (v[2q][column0 + c], v[2q + 1][column0 + c]), the partner of an odd last key 0.
CMX_AVX512_BF16_TARGET inline void pack_value_pairs(const Bf16ValuesTile& tile, int column0,
                                                    std::uint32_t (*packed)[kValueColumns]) {
  // Word k of the result takes word k / 2 of the first row (k even) or of the second (k odd).
  alignas(64) static constexpr std::uint16_t kLow[32] = {0,  32, 1,  33, 2,  34, 3,  35, 4,  36, 5,
                                                         37, 6,  38, 7,  39, 8,  40, 9,  41, 10, 42,
                                                         11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static constexpr std::uint16_t kHigh[32] = {
      16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
      24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  const __m512i low = _mm512_load_si512(kLow);
  const __m512i high = _mm512_load_si512(kHigh);
  for (int q = 0; q < (tile.num_keys + 1) / 2; ++q) {
    const bf16* first = tile.values + static_cast<std::size_t>(2 * q) * tile.value_stride + column0;
    const bool has_second = 2 * q + 1 < tile.num_keys;
#pragma GCC unroll 2
    for (int half = 0; half < 2; ++half) {
      const __m512i a = _mm512_loadu_si512(first + 32 * half);
      const __m512i b = has_second ? _mm512_loadu_si512(first + tile.value_stride + 32 * half)
                                   : _mm512_setzero_si512();
      _mm512_store_si512(packed[q] + 32 * half, _mm512_permutex2var_epi16(a, low, b));
      _mm512_store_si512(packed[q] + 32 * half + 16, _mm512_permutex2var_epi16(a, high, b));
    }
  }
}

/// out[query0 + r][column0 ...] for kQueries queries and 64 columns.
template <int kQueries>
CMX_AVX512_BF16_TARGET inline void values_block(const Bf16ValuesTile& tile,
                                                const std::uint32_t (*packed)[kValueColumns],
                                                int query0, int column0) {
  const std::size_t num_queries = static_cast<std::size_t>(tile.num_queries);
  __m512 acc[kQueries][kValueVectors];
#pragma GCC unroll 4
  for (int r = 0; r < kQueries; ++r) {
    const __m512 rescale = _mm512_set1_ps(tile.rescale[static_cast<std::size_t>(query0 + r)]);
    const float* out =
        tile.out.data() + static_cast<std::size_t>(query0 + r) * tile.width + column0;
#pragma GCC unroll 4
    for (int v = 0; v < kValueVectors; ++v)
      acc[r][v] = _mm512_mul_ps(rescale, _mm512_loadu_ps(out + 16 * v));
  }
  const bf16* probabilities = tile.probabilities.data() + static_cast<std::size_t>(query0) * 2;
  for (int q = 0; q < (tile.num_keys + 1) / 2; ++q) {
    __m512i values[kValueVectors];
#pragma GCC unroll 4
    for (int v = 0; v < kValueVectors; ++v) values[v] = _mm512_load_si512(packed[q] + 16 * v);
#pragma GCC unroll 4
    for (int r = 0; r < kQueries; ++r) {
      const __m512i p = broadcast_pair(probabilities + (q * num_queries + r) * 2);
#pragma GCC unroll 4
      for (int v = 0; v < kValueVectors; ++v) acc[r][v] = dot_pairs(acc[r][v], p, values[v]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < kQueries; ++r) {
    float* out = tile.out.data() + static_cast<std::size_t>(query0 + r) * tile.width + column0;
#pragma GCC unroll 4
    for (int v = 0; v < kValueVectors; ++v) _mm512_storeu_ps(out + 16 * v, acc[r][v]);
  }
}

}  // namespace detail

/// Bf16ScoresTile with VDPBF16PS.
CMX_AVX512_BF16_TARGET inline void scores(const Bf16ScoresTile& tile) {
  constexpr std::size_t kCacheRow = 576;  // MLA's cached rows, staged or in place
  if (tile.key_stride == kCacheRow)
    detail::scores_with_stride<kCacheRow>(tile);
  else
    detail::scores_with_stride<0>(tile);
}

/// Bf16ExpTile with a polynomial 2^x and VCVTNE2PS2BF16.
CMX_AVX512_BF16_TARGET inline void exp_scores(const Bf16ExpTile& tile) {
  // Word k of the result takes word k / 2 of the even key (k even) or of the odd key (k odd).
  alignas(64) static constexpr std::uint16_t kInterleave[32] = {
      0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i interleave = _mm512_load_si512(kInterleave);
  const __m512 scale = _mm512_set1_ps(tile.scale_log2);
  const std::size_t num_queries = static_cast<std::size_t>(tile.num_queries);
  for (int query0 = 0; query0 < tile.num_queries; query0 += 16) {
    const __mmask16 lanes = detail::first_lanes(tile.num_queries - query0);
    const __mmask32 words = detail::first_lane_words(tile.num_queries - query0);
    const __m512 shift = _mm512_maskz_loadu_ps(lanes, tile.shift.data() + query0);
    __m512 sum = _mm512_setzero_ps();
    for (int key = 0; key < tile.num_keys; key += 2) {
      const __m512 even = detail::power(tile, key, query0, lanes, scale, shift);
      const __m512 odd = key + 1 < tile.num_keys
                             ? detail::power(tile, key + 1, query0, lanes, scale, shift)
                             : _mm512_setzero_ps();
      sum = _mm512_add_ps(_mm512_add_ps(sum, even), odd);
      const __m512i rounded = (__m512i)_mm512_cvtne2ps_pbh(odd, even);  // even in words 0-15
      const __m512i pairs = _mm512_permutexvar_epi16(interleave, rounded);
      _mm512_mask_storeu_epi16(tile.probabilities.data() + ((key / 2) * num_queries + query0) * 2,
                               words, pairs);
    }
    _mm512_mask_storeu_ps(tile.row_sum.data() + query0, lanes, sum);
  }
}

/// Bf16ValuesTile with VDPBF16PS on value columns packed by key pairs.
CMX_AVX512_BF16_TARGET inline void accumulate_values(const Bf16ValuesTile& tile) {
  alignas(64) std::uint32_t packed[kMaxBf16TileKeys / 2][detail::kValueColumns];  // 8 KiB
  for (int column0 = 0; column0 < tile.width; column0 += detail::kValueColumns) {
    detail::pack_value_pairs(tile, column0, packed);
    int query = 0;
    for (; query + detail::kValueQueries <= tile.num_queries; query += detail::kValueQueries)
      detail::values_block<detail::kValueQueries>(tile, packed, query, column0);
    for (; query < tile.num_queries; ++query) detail::values_block<1>(tile, packed, query, column0);
  }
}

}  // namespace cmx::cpu::bf16_attention::avx512

#endif  // CMX_CPU_X86_64
