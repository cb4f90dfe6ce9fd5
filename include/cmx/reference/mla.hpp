// SPDX-License-Identifier: Apache-2.0
// Scalar, obviously-correct MLA decode: materializes every score and the softmax in fp32, one
// query row at a time. What every device tier's cmx::attention::mla_decode must match within
// its documented tolerance.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "cmx/attention/kv_cache.hpp"
#include "cmx/attention/mla_decode.hpp"
#include "cmx/core/bf16.hpp"

namespace cmx::reference {

/// The exact-as-fp32-allows result of an MLA decode, and the scale of each output's tolerance.
struct MlaDecodeResult {
  std::vector<float> o;    ///< [batch][s_q][h_q][512], not rounded to bf16
  std::vector<float> lse;  ///< [batch][h_q][s_q]
  /// [batch][s_q][h_q][512]: sum over keys j of softmax_j * |v_j[d]|, the size of what the
  /// output averages (0 for a row that sees no key).
  std::vector<float> weighted_abs_v;
};

/// MLA decode of `args` (its o and lse are not used). For request b and query row (i, h):
///   keys j < n_i, n_i = cache_seqlens[b] - (s_q - 1 - i) if causal else cache_seqlens[b];
///   row j of the request is the cache row at block block_table[b][j / block_size], slot
///   j % block_size; s_j = softmax_scale * sum_c q[c] * row_j[c] (c < 576);
///   lse = log sum_j exp(s_j);  o[d] = sum_j exp(s_j - lse) * row_j[d] (d < 512).
/// A row with n_i <= 0 gives o = 0 and lse = -inf.
inline MlaDecodeResult mla_decode(const attention::MlaDecodeArgs& args) {
  using attention::kKvDim;
  using attention::kLatentDim;
  const attention::MlaDecodeShape& shape = args.shape;
  const std::size_t num_rows = static_cast<std::size_t>(shape.batch) * shape.rows();
  MlaDecodeResult result{.o = std::vector<float>(num_rows * kLatentDim, 0.0f),
                         .lse = std::vector<float>(num_rows),
                         .weighted_abs_v = std::vector<float>(num_rows * kLatentDim, 0.0f)};
  std::vector<float> weights;  // [keys] the scores, then exp(s_j - max)
  for (int b = 0; b < shape.batch; ++b) {
    const std::int64_t length = args.cache_seqlens[static_cast<std::size_t>(b)];
    const auto cached_row = [&](std::int64_t j) {
      const std::int32_t block =
          args.block_table[static_cast<std::size_t>(b) *
                               static_cast<std::size_t>(args.max_blocks_per_seq) +
                           static_cast<std::size_t>(j / args.block_size)];
      return args.kv_cache.data() + (static_cast<std::size_t>(block) * args.block_size +
                                     static_cast<std::size_t>(j % args.block_size)) *
                                        kKvDim;
    };
    for (int i = 0; i < shape.num_queries; ++i)
      for (int h = 0; h < shape.num_heads; ++h) {
        const std::size_t row =
            (static_cast<std::size_t>(b) * shape.num_queries + static_cast<std::size_t>(i)) *
                shape.num_heads +
            static_cast<std::size_t>(h);
        const std::size_t lse_index =
            (static_cast<std::size_t>(b) * shape.num_heads + static_cast<std::size_t>(h)) *
                shape.num_queries +
            static_cast<std::size_t>(i);
        const std::int64_t visible = args.masking == attention::Masking::causal
                                         ? length - (shape.num_queries - 1 - i)
                                         : length;
        if (visible <= 0) {
          result.lse[lse_index] = -std::numeric_limits<float>::infinity();
          continue;
        }
        const bf16* q = args.q.data() + row * kKvDim;
        weights.assign(static_cast<std::size_t>(visible), 0.0f);
        float max = -std::numeric_limits<float>::infinity();
        for (std::int64_t j = 0; j < visible; ++j) {
          const bf16* k = cached_row(j);
          float dot = 0.0f;
          for (int c = 0; c < kKvDim; ++c) dot += q[c].to_float() * k[c].to_float();
          weights[static_cast<std::size_t>(j)] = args.softmax_scale * dot;
          max = std::max(max, weights[static_cast<std::size_t>(j)]);
        }
        float sum = 0.0f;
        for (float& weight : weights) sum += weight = std::exp(weight - max);
        result.lse[lse_index] = max + std::log(sum);
        float* o = result.o.data() + row * kLatentDim;
        float* weighted_abs_v = result.weighted_abs_v.data() + row * kLatentDim;
        for (std::int64_t j = 0; j < visible; ++j) {
          const float p = weights[static_cast<std::size_t>(j)] / sum;
          const bf16* v = cached_row(j);
          for (int d = 0; d < kLatentDim; ++d) {
            o[d] += p * v[d].to_float();
            weighted_abs_v[d] += p * std::abs(v[d].to_float());
          }
        }
      }
  }
  return result;
}

}  // namespace cmx::reference
