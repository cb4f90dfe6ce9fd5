// SPDX-License-Identifier: Apache-2.0
// The amx tier of the bf16 attention tile operations: the two products on AMX-BF16 tiles
// (TDPBF16PS: C[16][16] fp32 += A[16][32] bf16 x B[16 pairs][16][2] bf16), the rest with the
// avx512 tier (every AMX CPU has AVX512_BF16).
//
//   scores:  C = 16 keys x 16 queries of the key-major scores; A = 16 key rows, read in place
//            (stride: the cache row); B = 16 depth pairs of 16 queries, the packed queries as
//            they are. Masking and row maxima after, with AVX-512.
//   values:  the output rows are rescaled with AVX-512, then C = 16 queries x 16 value columns,
//            loaded from and stored to the output rows; A = the probabilities turned
//            query-major (16 queries x 16 key pairs, on the stack), B = 16 key pairs of 16
//            columns, the values packed by pairs as the avx512 tier packs them. Key pairs are
//            padded with zeros to 16 so that one tile shape serves a whole accumulation.
//
// NOTES: THIS TIER HAS NOT RUN ON HARDWARE BY US: it was written from Intel's documentation
// (SDM vol. 2, TDPBF16PS, LDTILECFG; the intrinsics guide) and is compiled by every build, but
// the machines cmx is developed on have no AMX. So its first use in a process runs check_once(),
// a comparison against the scalar tier on small random problems (compare.hpp) that throws
// cmx::Error(state) beyond the tolerance: a wrong result cannot pass silently.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "cmx/backend/cpu/bf16_attention/avx512.hpp"
#include "cmx/backend/cpu/bf16_attention/compare.hpp"
#include "cmx/backend/cpu/isa.hpp"
#include "cmx/core/error.hpp"
#include "cmx/device/bf16_attention.hpp"

#if CMX_CPU_X86_64
#include <immintrin.h>

/// What the amx tier's functions are compiled for.
#define CMX_AMX_BF16_TARGET                                                     \
  __attribute__((                                                               \
      target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16," \
             "fma")))

namespace cmx::cpu::bf16_attention::amx {
namespace detail {

/// The 64-byte operand of LDTILECFG, palette 1: bytes per row and rows of each tile register.
struct alignas(64) TileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t bytes_per_row[16] = {};
  std::uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64, "LDTILECFG reads 64 bytes");

/// The tile registers: tmm0 = C accumulates tmm1 = A times tmm2 = B. (The intrinsics take
/// literal register numbers: GCC's are assembler macros that paste them into the name.)
inline constexpr int kC = 0, kA = 1, kB = 2;
/// Pairs of the reduction axis in one A and B tile (32 bf16).
inline constexpr int kPairsPerTile = 16;

/// Loads a configuration of C [c_rows][c_columns fp32], A [c_rows][a_pairs pairs],
/// B [a_pairs][c_columns pairs] unless it is the one loaded (LDTILECFG zeroes every tile).
class Tiles {
 public:
  CMX_AMX_BF16_TARGET void configure(int c_rows, int c_columns, int a_pairs) {
    if (c_rows == c_rows_ && c_columns == c_columns_ && a_pairs == a_pairs_) return;
    c_rows_ = c_rows, c_columns_ = c_columns, a_pairs_ = a_pairs;
    TileConfig config;
    config.rows[kC] = static_cast<std::uint8_t>(c_rows);
    config.bytes_per_row[kC] = static_cast<std::uint16_t>(4 * c_columns);
    config.rows[kA] = static_cast<std::uint8_t>(c_rows);
    config.bytes_per_row[kA] = static_cast<std::uint16_t>(4 * a_pairs);
    config.rows[kB] = static_cast<std::uint8_t>(a_pairs);
    config.bytes_per_row[kB] = static_cast<std::uint16_t>(4 * c_columns);
    _tile_loadconfig(&config);
  }
  CMX_AMX_BF16_TARGET ~Tiles() {
    if (c_rows_ != 0) _tile_release();
  }

 private:
  int c_rows_ = 0, c_columns_ = 0, a_pairs_ = 0;
};

/// Masks the key-major scores past each query's visible keys and folds them into row_max.
CMX_AMX_BF16_TARGET inline void mask_and_max(const Bf16ScoresTile& tile) {
  const __m512 negative_infinity = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int query0 = 0; query0 < tile.num_queries; query0 += 16) {
    const __mmask16 lanes = avx512::detail::first_lanes(tile.num_queries - query0);
    const __m512i visible = _mm512_maskz_loadu_epi32(lanes, tile.visible_keys.data() + query0);
    __m512 max = negative_infinity;
    for (int key = 0; key < tile.num_keys; ++key) {
      float* scores =
          tile.scores.data() + static_cast<std::size_t>(key) * tile.num_queries + query0;
      const __mmask16 seen = _mm512_cmpgt_epi32_mask(visible, _mm512_set1_epi32(key));
      const __m512 score =
          _mm512_mask_blend_ps(seen, negative_infinity, _mm512_maskz_loadu_ps(lanes, scores));
      max = avx512::detail::max(max, score);
      _mm512_mask_storeu_ps(scores, lanes, score);
    }
    _mm512_mask_storeu_ps(tile.row_max.data() + query0, lanes, max);
  }
}

}  // namespace detail

/// Bf16ScoresTile with TDPBF16PS.
CMX_AMX_BF16_TARGET inline void scores(const Bf16ScoresTile& tile) {
  const std::size_t num_queries = static_cast<std::size_t>(tile.num_queries);
  const long key_stride_bytes = static_cast<long>(tile.key_stride * sizeof(bf16));
  const long pair_row_bytes = static_cast<long>(num_queries * 4);  // one depth pair of queries
  detail::Tiles tiles;
  for (int key0 = 0; key0 < tile.num_keys; key0 += 16) {
    const int keys = std::min(16, tile.num_keys - key0);
    for (int query0 = 0; query0 < tile.num_queries; query0 += 16) {
      const int queries = std::min(16, tile.num_queries - query0);
      tiles.configure(keys, queries, detail::kPairsPerTile);
      _tile_zero(0);
      for (int depth0 = 0; depth0 < tile.depth; depth0 += 2 * detail::kPairsPerTile) {
        _tile_loadd(1, tile.keys + static_cast<std::size_t>(key0) * tile.key_stride + depth0,
                    key_stride_bytes);
        _tile_loadd(2,
                    tile.query_pairs.data() +
                        (static_cast<std::size_t>(depth0 / 2) * num_queries + query0) * 2,
                    pair_row_bytes);
        _tile_dpbf16ps(0, 1, 2);
      }
      _tile_stored(0, tile.scores.data() + key0 * num_queries + query0, pair_row_bytes);
    }
  }
  detail::mask_and_max(tile);
}

/// Bf16ValuesTile with TDPBF16PS.
CMX_AMX_BF16_TARGET inline void accumulate_values(const Bf16ValuesTile& tile) {
  constexpr int kColumns = avx512::detail::kValueColumns;  // packed per pass: 64
  const std::size_t num_queries = static_cast<std::size_t>(tile.num_queries);
  const std::size_t width = static_cast<std::size_t>(tile.width);
  const int num_pairs = (tile.num_keys + 1) / 2;
  const int padded_pairs =
      (num_pairs + detail::kPairsPerTile - 1) / detail::kPairsPerTile * detail::kPairsPerTile;

  // out *= rescale.
  for (std::size_t i = 0; i < num_queries; ++i) {
    const __m512 rescale = _mm512_set1_ps(tile.rescale[i]);
    for (std::size_t d = 0; d < width; d += 16)
      _mm512_storeu_ps(tile.out.data() + i * width + d,
                       _mm512_mul_ps(rescale, _mm512_loadu_ps(tile.out.data() + i * width + d)));
  }
  // The probabilities query-major: by_query[i][q] = (p[i][2q], p[i][2q + 1]), zero-padded.
  alignas(64) std::uint32_t by_query[kMaxBf16TileQueries][kMaxBf16TileKeys / 2] = {};
  for (int q = 0; q < num_pairs; ++q)
    for (std::size_t i = 0; i < num_queries; ++i)
      std::memcpy(&by_query[i][q], tile.probabilities.data() + (q * num_queries + i) * 2, 4);
  // Packed values, zero past the last pair so that padded pairs add exactly 0.
  alignas(64) std::uint32_t packed[kMaxBf16TileKeys / 2][kColumns] = {};

  detail::Tiles tiles;
  for (int column0 = 0; column0 < tile.width; column0 += kColumns) {
    avx512::detail::pack_value_pairs(tile, column0, packed);
    for (int query0 = 0; query0 < tile.num_queries; query0 += 16) {
      const int queries = std::min<int>(16, tile.num_queries - query0);
      tiles.configure(queries, 16, detail::kPairsPerTile);
      for (int sub = 0; sub < kColumns; sub += 16) {
        float* out = tile.out.data() + static_cast<std::size_t>(query0) * width + column0 + sub;
        _tile_loadd(0, out, static_cast<long>(width * 4));
        for (int pair0 = 0; pair0 < padded_pairs; pair0 += detail::kPairsPerTile) {
          _tile_loadd(1, &by_query[query0][pair0], static_cast<long>(sizeof by_query[0]));
          _tile_loadd(2, &packed[pair0][sub], static_cast<long>(sizeof packed[0]));
          _tile_dpbf16ps(0, 1, 2);
        }
        _tile_stored(0, out, static_cast<long>(width * 4));
      }
    }
  }
}

/// Runs the amx tier against the scalar tier once per process (compare_with_scalar, on ragged
/// shapes); throws cmx::Error(state) if they disagree, on this and every later call.
inline void check_once() {
  static const bool passed = [] {
    for (const auto& [queries, keys] : {std::pair{21, 37}, std::pair{32, 64}, std::pair{1, 1}}) {
      const std::string mismatch =
          compare_with_scalar({.scores = amx::scores,
                               .exp_scores = avx512::exp_scores,
                               .accumulate_values = amx::accumulate_values},
                              queries, keys, 2026);
      cmx::detail::require(mismatch.empty(), ErrorCode::state,
                           "the amx bf16 attention micro-kernels failed their self-check against "
                           "the scalar tier: ",
                           mismatch, ". Run with CMX_ISA=avx512, and please report this CPU");
    }
    return true;
  }();
  (void)passed;
}

}  // namespace cmx::cpu::bf16_attention::amx

#endif  // CMX_CPU_X86_64
