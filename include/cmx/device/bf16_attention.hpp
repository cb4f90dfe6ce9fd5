// SPDX-License-Identifier: Apache-2.0
// cmx::Bf16AttentionDevice: the bf16 tile operations of attention a backend may supply (QK^T,
// the softmax exponentials, PV), and the tiles they work on. A device without them runs the
// attention kernels on the portable scalar operations (cmx/device/bf16_attention_portable.hpp).
#pragma once

#include <concepts>
#include <cstddef>
#include <span>

#include "cmx/core/bf16.hpp"
#include "cmx/device/device.hpp"

namespace cmx {

/// The most keys one tile of the operations below holds.
inline constexpr int kMaxBf16TileKeys = 64;
/// The most query rows one tile of the operations below holds.
inline constexpr int kMaxBf16TileQueries = 64;
/// Bf16ExpTile's powers of two with an exponent below this are 0.
inline constexpr float kBf16ExpSmallestExponent = -126.0f;

/// QK^T of one key tile: the scores of num_queries query rows against num_keys keys, with the
/// row maxima the online softmax needs.
///
///   scores[j][i] = sum over c of q[i][c] * k[j][c]  (bf16 products, fp32 accumulation)
///                  for j < visible_keys[i]; -inf for j >= visible_keys[i] (masked)
///   row_max[i]   = max over j of scores[j][i]; -inf if query i sees no key of the tile
///
/// NOTES: the layouts are the ones a bf16 dot-product unit consumes without reshuffling
/// (VDPBF16PS, AMX TDPBF16PS): queries are packed by pairs of depth elements, so one 32-bit
/// word holds q[i][2p] and q[i][2p+1]; scores come out key-major, a row per key.
struct Bf16ScoresTile {
  /// [depth / 2][num_queries][2]: q[i][c] at ((c / 2) * num_queries + i) * 2 + c % 2.
  std::span<const bf16> query_pairs;
  const bf16* keys = nullptr;         ///< key j's depth elements at keys + j * key_stride
  std::size_t key_stride = 0;         ///< elements from one key to the next, >= depth
  int num_queries = 0;                ///< 1 ... kMaxBf16TileQueries
  int num_keys = 0;                   ///< 1 ... kMaxBf16TileKeys
  int depth = 0;                      ///< a positive multiple of 32 (576 for MLA)
  std::span<const int> visible_keys;  ///< [num_queries]: query i sees keys j < visible_keys[i]
  std::span<float> scores;            ///< [num_keys][num_queries] out
  std::span<float> row_max;           ///< [num_queries] out
  /// The keys of the tile this block computes next (same stride and depth), which the device
  /// may start moving closer while it computes this one (a prefetch, an early DMA): a hint,
  /// never read for the result. Null if none.
  const bf16* next_keys = nullptr;
  int next_num_keys = 0;
};

/// The softmax numerators of one tile, as bf16 probabilities for the PV product, and their sums.
///
///   p[i][j]    = bf16(2^(scores[j][i] * scale_log2 - shift[i]))   (round to nearest even;
///                 0 where the exponent is below kBf16ExpSmallestExponent, so masked scores
///                 give exactly 0)
///   row_sum[i] = sum over j of 2^(scores[j][i] * scale_log2 - shift[i]), in fp32, before rounding
///
/// The power of two may be computed by an approximation of relative error below 2^-20.
/// shift[i] is finite and at least max_j scores[j][i] * scale_log2, so no power exceeds 1 by
/// more than rounding.
struct Bf16ExpTile {
  std::span<const float> scores;  ///< [num_keys][num_queries], as Bf16ScoresTile writes them
  int num_queries = 0;            ///< 1 ... kMaxBf16TileQueries
  int num_keys = 0;               ///< 1 ... kMaxBf16TileKeys
  float scale_log2 = 0;           ///< the softmax scale times log2(e): scores to base-2 exponents
  std::span<const float> shift;   ///< [num_queries]
  /// [ceil(num_keys / 2)][num_queries][2] out: p[i][j] at ((j / 2) * num_queries + i) * 2 + j % 2,
  /// pairs of keys as the PV product consumes them; the pad of an odd num_keys is written 0.
  std::span<bf16> probabilities;
  std::span<float> row_sum;  ///< [num_queries] out
};

/// PV of one tile, accumulated into the running output rows with their softmax rescale.
///
///   out[i][d] = out[i][d] * rescale[i] + sum over j of p[i][j] * v[j][d]
///               (bf16 products, fp32 accumulation)
struct Bf16ValuesTile {
  std::span<const bf16> probabilities;  ///< as Bf16ExpTile writes them
  const bf16* values = nullptr;         ///< value j's width elements at values + j * value_stride
  std::size_t value_stride = 0;         ///< elements from one value to the next, >= width
  int num_queries = 0;                  ///< 1 ... kMaxBf16TileQueries
  int num_keys = 0;                     ///< 1 ... kMaxBf16TileKeys
  int width = 0;                        ///< a positive multiple of 64 (512 for MLA)
  std::span<const float> rescale;       ///< [num_queries], finite
  std::span<float> out;                 ///< [num_queries][width] in and out
};

/// Requires (beyond cmx::Device): the bf16 tile operations of attention, on tiles in a block's
/// local memory (keys and values may be a staged tile or, on a zero-copy backend, global memory).
///
///   d.bf16_scores(const Bf16ScoresTile&)           QK^T, masked, with the row maxima.
///   d.bf16_exp_scores(const Bf16ExpTile&)          the bf16 probabilities and their fp32 sums.
///   d.bf16_accumulate_values(const Bf16ValuesTile&) out = out * rescale + PV.
///
/// Each is called from inside a launch, by one block, on tiles no other block touches, and
/// must be deterministic: the same tile gives the same bits every time. Implementations may
/// differ from the scalar definitions above by their rounding (summation order, fused or
/// separate products, flushed subnormals): the attention kernels document the tolerance this
/// admits.
// clang-format off  (clang-format 14 flattens requires-expressions)
template <class D>
concept Bf16AttentionDevice = Device<D> &&
    requires(D d, const Bf16ScoresTile& scores, const Bf16ExpTile& exp,
             const Bf16ValuesTile& values) {
  { d.bf16_scores(scores) } -> std::same_as<void>;
  { d.bf16_exp_scores(exp) } -> std::same_as<void>;
  { d.bf16_accumulate_values(values) } -> std::same_as<void>;
};
// clang-format on

}  // namespace cmx
