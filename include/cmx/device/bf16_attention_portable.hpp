// SPDX-License-Identifier: Apache-2.0
// The portable bf16 tile operations of attention: plain loops over the definitions of
// cmx/device/bf16_attention.hpp. The tier every CPU runs, and what the attention kernels use on
// a device without its own (a device that is not a cmx::Bf16AttentionDevice).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "cmx/core/bf16.hpp"
#include "cmx/device/bf16_attention.hpp"

namespace cmx::portable {

/// Bf16ScoresTile, one key and one pair of depth elements at a time: for every query,
/// acc += q[2p] * k[2p] + q[2p + 1] * k[2p + 1] (the pairs VDPBF16PS consumes), in fp32.
inline void bf16_scores(const Bf16ScoresTile& tile) {
  const std::size_t num_queries = static_cast<std::size_t>(tile.num_queries);
  std::fill_n(tile.row_max.data(), num_queries, -std::numeric_limits<float>::infinity());
  for (int j = 0; j < tile.num_keys; ++j) {
    float* row = tile.scores.data() + static_cast<std::size_t>(j) * num_queries;  // [num_queries]
    std::fill_n(row, num_queries, 0.0f);
    const bf16* key = tile.keys + static_cast<std::size_t>(j) * tile.key_stride;  // [depth]
    for (int p = 0; p < tile.depth / 2; ++p) {
      const float k0 = key[2 * p].to_float();
      const float k1 = key[2 * p + 1].to_float();
      const bf16* pairs = tile.query_pairs.data() + static_cast<std::size_t>(p) * num_queries * 2;
      for (std::size_t i = 0; i < num_queries; ++i)
        row[i] += pairs[2 * i].to_float() * k0 + pairs[2 * i + 1].to_float() * k1;
    }
    for (std::size_t i = 0; i < num_queries; ++i) {
      if (j >= tile.visible_keys[i]) row[i] = -std::numeric_limits<float>::infinity();
      tile.row_max[i] = std::max(tile.row_max[i], row[i]);
    }
  }
}

/// Bf16ExpTile with std::exp2.
inline void bf16_exp_scores(const Bf16ExpTile& tile) {
  const std::size_t num_queries = static_cast<std::size_t>(tile.num_queries);
  std::fill_n(tile.row_sum.data(), num_queries, 0.0f);
  const int num_pairs = (tile.num_keys + 1) / 2;
  for (int j = 0; j < 2 * num_pairs; ++j) {
    bf16* pair = tile.probabilities.data() + static_cast<std::size_t>(j / 2) * num_queries * 2;
    for (std::size_t i = 0; i < num_queries; ++i) {
      float p = 0.0f;
      if (j < tile.num_keys) {
        const float exponent =
            tile.scores[static_cast<std::size_t>(j) * num_queries + i] * tile.scale_log2 -
            tile.shift[i];
        p = exponent < kBf16ExpSmallestExponent ? 0.0f : std::exp2(exponent);
      }
      tile.row_sum[i] += p;
      pair[2 * i + static_cast<std::size_t>(j % 2)] = bf16::from_float(p);
    }
  }
}

/// Bf16ValuesTile, one key at a time: out[i][d] += p[i][j] * v[j][d] in fp32 after the rescale.
inline void bf16_accumulate_values(const Bf16ValuesTile& tile) {
  const std::size_t num_queries = static_cast<std::size_t>(tile.num_queries);
  const std::size_t width = static_cast<std::size_t>(tile.width);
  for (std::size_t i = 0; i < num_queries; ++i) {
    float* out = tile.out.data() + i * width;  // [width]
    for (std::size_t d = 0; d < width; ++d) out[d] *= tile.rescale[i];
    for (int j = 0; j < tile.num_keys; ++j) {
      const float p = tile.probabilities[(static_cast<std::size_t>(j / 2) * num_queries + i) * 2 +
                                         static_cast<std::size_t>(j % 2)]
                          .to_float();
      const bf16* value = tile.values + static_cast<std::size_t>(j) * tile.value_stride;
      for (std::size_t d = 0; d < width; ++d) out[d] += p * value[d].to_float();
    }
  }
}

}  // namespace cmx::portable
