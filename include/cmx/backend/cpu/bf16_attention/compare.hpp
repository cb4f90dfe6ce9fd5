// SPDX-License-Identifier: Apache-2.0
// One tier of the bf16 attention tile operations against the scalar tier on a random problem:
// the amx tier's first-use check, and the tests of every tier.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cmx/core/bf16.hpp"
#include "cmx/device/bf16_attention.hpp"
#include "cmx/device/bf16_attention_portable.hpp"

namespace cmx::cpu::bf16_attention {

/// A tier's three operations.
struct TileOperations {
  void (*scores)(const Bf16ScoresTile&);
  void (*exp_scores)(const Bf16ExpTile&);
  void (*accumulate_values)(const Bf16ValuesTile&);
};

/// Runs `tier` and the scalar tier on the same random tiles (depth 576, width 512, some keys
/// masked) and returns "" if every result agrees within what a different summation order and
/// bf16 rounding allow, else the first that does not:
///   scores:  |tier - scalar| <= 2^-12 * sum_c |q_c k_c|, masked ones -inf in both;
///   row_max: the max of the tier's own visible scores, exactly;
///   exp (given the scalar scores): p within one bf16 step (2^-7 relative), row sums 2^-16;
///   values (given the scalar p): |tier - scalar| <= 2^-12 * (|out * rescale| + sum_j |p v|).
inline std::string compare_with_scalar(const TileOperations& tier, int num_queries, int num_keys,
                                       std::uint32_t seed) {
  constexpr int kDepth = 576, kWidth = 512;
  const std::size_t nq = static_cast<std::size_t>(num_queries);
  const std::size_t nk = static_cast<std::size_t>(num_keys);
  const std::size_t num_pairs = (nk + 1) / 2;
  std::mt19937 random(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto random_bf16 = [&](std::size_t count) {
    std::vector<bf16> values(count);
    for (bf16& value : values) value = bf16::from_float(normal(random));
    return values;
  };
  std::ostringstream text;
  const auto mismatch = [&](const char* what, std::size_t index, float got, float expected) {
    text << what << "[" << index << "] is " << got << ", the scalar tier gives " << expected << " ("
         << num_queries << " queries, " << num_keys << " keys)";
    return text.str();
  };

  // Scores. Keys sit 600 elements apart, as staged rows with a gap.
  const std::vector<bf16> query_pairs = random_bf16(kDepth * nq);  // [288][nq][2]
  const std::size_t key_stride = 600;
  const std::vector<bf16> keys = random_bf16(nk * key_stride);
  std::vector<int> visible(nq);
  for (std::size_t i = 0; i < nq; ++i) visible[i] = std::max(0, num_keys - static_cast<int>(i % 4));
  std::vector<float> scores[2], row_max[2];
  for (int t = 0; t < 2; ++t) {
    scores[t].assign(nk * nq, 0.0f);
    row_max[t].assign(nq, 0.0f);
    (t == 0 ? tier.scores : portable::bf16_scores)({.query_pairs = query_pairs,
                                                    .keys = keys.data(),
                                                    .key_stride = key_stride,
                                                    .num_queries = num_queries,
                                                    .num_keys = num_keys,
                                                    .depth = kDepth,
                                                    .visible_keys = visible,
                                                    .scores = scores[t],
                                                    .row_max = row_max[t]});
  }
  for (std::size_t i = 0; i < nq; ++i) {
    float max = -std::numeric_limits<float>::infinity();
    for (std::size_t j = 0; j < nk; ++j) {
      float bound = 0.0f;
      for (std::size_t c = 0; c < kDepth; ++c)
        bound += std::abs(query_pairs[((c / 2) * nq + i) * 2 + c % 2].to_float() *
                          keys[j * key_stride + c].to_float());
      const float got = scores[0][j * nq + i], expected = scores[1][j * nq + i];
      const bool same =
          std::isinf(expected) ? got == expected : std::abs(got - expected) <= bound * 0x1p-12f;
      if (!same) return mismatch("scores", j * nq + i, got, expected);
      max = std::max(max, got);
    }
    if (row_max[0][i] != max) return mismatch("row_max", i, row_max[0][i], max);
  }

  // Exponentials of the scalar scores, shifted by their (scaled) max.
  const float scale_log2 = 0.06f;
  std::vector<float> shift(nq);
  for (std::size_t i = 0; i < nq; ++i)
    shift[i] = std::isinf(row_max[1][i]) ? 0.0f : row_max[1][i] * scale_log2;
  std::vector<bf16> probabilities[2];
  std::vector<float> row_sum[2];
  for (int t = 0; t < 2; ++t) {
    probabilities[t].assign(num_pairs * 2 * nq, bf16::from_float(-1.0f));
    row_sum[t].assign(nq, 0.0f);
    (t == 0 ? tier.exp_scores : portable::bf16_exp_scores)({.scores = scores[1],
                                                            .num_queries = num_queries,
                                                            .num_keys = num_keys,
                                                            .scale_log2 = scale_log2,
                                                            .shift = shift,
                                                            .probabilities = probabilities[t],
                                                            .row_sum = row_sum[t]});
  }
  for (std::size_t at = 0; at < probabilities[0].size(); ++at) {
    const float got = probabilities[0][at].to_float(), expected = probabilities[1][at].to_float();
    if (!(std::abs(got - expected) <= expected * 0x1p-7f))
      return mismatch("probabilities", at, got, expected);
  }
  for (std::size_t i = 0; i < nq; ++i)
    if (!(std::abs(row_sum[0][i] - row_sum[1][i]) <= row_sum[1][i] * 0x1p-16f))
      return mismatch("row_sum", i, row_sum[0][i], row_sum[1][i]);

  // Values, weighted by the scalar probabilities, into a random running output.
  const std::vector<bf16> values = random_bf16(nk * key_stride);
  std::vector<float> rescale(nq), out_before(nq * kWidth);
  for (float& value : rescale) value = std::abs(normal(random));
  for (float& value : out_before) value = normal(random);
  std::vector<float> out[2] = {out_before, out_before};
  for (int t = 0; t < 2; ++t)
    (t == 0 ? tier.accumulate_values
            : portable::bf16_accumulate_values)({.probabilities = probabilities[1],
                                                 .values = values.data(),
                                                 .value_stride = key_stride,
                                                 .num_queries = num_queries,
                                                 .num_keys = num_keys,
                                                 .width = kWidth,
                                                 .rescale = rescale,
                                                 .out = out[t]});
  for (std::size_t i = 0; i < nq; ++i)
    for (std::size_t d = 0; d < kWidth; ++d) {
      float bound = std::abs(out_before[i * kWidth + d] * rescale[i]);
      for (std::size_t j = 0; j < nk; ++j)
        bound += std::abs(probabilities[1][((j / 2) * nq + i) * 2 + j % 2].to_float() *
                          values[j * key_stride + d].to_float());
      const std::size_t at = i * kWidth + d;
      if (!(std::abs(out[0][at] - out[1][at]) <= bound * 0x1p-12f))
        return mismatch("out", at, out[0][at], out[1][at]);
    }
  return "";
}

}  // namespace cmx::cpu::bf16_attention
