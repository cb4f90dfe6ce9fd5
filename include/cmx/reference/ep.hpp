// SPDX-License-Identifier: Apache-2.0
// Scalar, obviously-correct FusedDispatch and FusedCombine over all ranks at once: what every
// backend's dispatch must deliver and what its combine must compute, bit for bit.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "cmx/core/bf16.hpp"
#include "cmx/ep/config.hpp"
#include "cmx/reference/quantize.hpp"

namespace cmx::reference {

/// One rank's inputs to an expert-parallel round.
struct EpRankInput {
  int num_tokens = 0;
  std::vector<bf16> x;                 // [num_tokens, hidden]
  std::vector<std::int32_t> topk_idx;  // [num_tokens, num_topk], -1 = no expert
  std::vector<float> topk_weights;     // [num_tokens, num_topk]
};

/// One row as dispatch must deliver it.
struct DispatchedRow {
  int src_token = 0;               // the token's index on its source rank
  int topk_slot = 0;               // k: which of the token's choices
  float scale = 1.0f;              // int8: the per-token scale; bf16: 1
  std::vector<std::int8_t> codes;  // [hidden] int8 mode, else empty
  std::vector<bf16> values;        // [hidden] bf16 mode, else empty
};

/// rows[rank][local_expert][src_rank]: the rows of that segment in delivery order.
using DispatchedRows = std::vector<std::vector<std::vector<std::vector<DispatchedRow>>>>;

/// What dispatch delivers on every rank, given every rank's inputs. Segment (e, s) of rank r
/// holds, for each token t of rank s in increasing order and each k with
/// topk_idx[t, k] == r * E_local + e, the row of token t: quantized (int8) or as is (bf16).
inline DispatchedRows dispatch(const ep::Config& config, int num_ranks,
                               const std::vector<EpRankInput>& inputs) {
  const int experts_per_rank = config.num_experts / num_ranks;
  const std::size_t hidden = static_cast<std::size_t>(config.hidden);
  DispatchedRows rows(
      static_cast<std::size_t>(num_ranks),
      std::vector<std::vector<std::vector<DispatchedRow>>>(
          static_cast<std::size_t>(experts_per_rank),
          std::vector<std::vector<DispatchedRow>>(static_cast<std::size_t>(num_ranks))));
  for (int src = 0; src < num_ranks; ++src) {
    const EpRankInput& input = inputs[static_cast<std::size_t>(src)];
    for (int t = 0; t < input.num_tokens; ++t) {
      const std::span<const bf16> x(input.x.data() + static_cast<std::size_t>(t) * hidden, hidden);
      for (int k = 0; k < config.num_topk; ++k) {
        const int expert = input.topk_idx[static_cast<std::size_t>(t * config.num_topk + k)];
        if (expert < 0) continue;
        DispatchedRow row;
        row.src_token = t;
        row.topk_slot = k;
        if (config.precision == ep::DispatchPrecision::int8) {
          row.codes.resize(hidden);
          row.scale = reference::quantize_row_int8(x, row.codes);
        } else {
          row.values.assign(x.begin(), x.end());
        }
        rows[static_cast<std::size_t>(expert / experts_per_rank)]
            [static_cast<std::size_t>(expert % experts_per_rank)][static_cast<std::size_t>(src)]
                .push_back(std::move(row));
      }
    }
  }
  return rows;
}

/// What combine computes on one rank: y [num_tokens, hidden] with
///   y[t, h] = bf16( acc ), acc = 0, then for k = 0 ... K-1 with topk_idx[t, k] >= 0:
///             acc = fma(topk_weights[t, k], expert_row(t, k)[h], acc)     (binary32)
/// `expert_row(t, k)` returns the expert output row [hidden] for that choice.
template <class ExpertRow>
std::vector<bf16> combine(const ep::Config& config, const EpRankInput& input,
                          ExpertRow&& expert_row) {
  const std::size_t hidden = static_cast<std::size_t>(config.hidden);
  std::vector<bf16> y(static_cast<std::size_t>(input.num_tokens) * hidden);
  std::vector<std::vector<bf16>> rows(static_cast<std::size_t>(config.num_topk));  // [K][hidden]
  for (int t = 0; t < input.num_tokens; ++t) {
    for (int k = 0; k < config.num_topk; ++k) {  // copied: expert_row may reuse its storage
      const std::size_t choice = static_cast<std::size_t>(t * config.num_topk + k);
      if (input.topk_idx[choice] < 0) continue;
      const std::span<const bf16> row = expert_row(t, k);
      rows[static_cast<std::size_t>(k)].assign(row.begin(), row.end());
    }
    for (std::size_t h = 0; h < hidden; ++h) {
      float acc = 0.0f;
      for (int k = 0; k < config.num_topk; ++k) {
        const std::size_t choice = static_cast<std::size_t>(t * config.num_topk + k);
        if (input.topk_idx[choice] < 0) continue;
        acc = std::fma(input.topk_weights[choice], rows[static_cast<std::size_t>(k)][h].to_float(),
                       acc);
      }
      y[static_cast<std::size_t>(t) * hidden + h] = round_to_bf16(acc);
    }
  }
  return y;
}

}  // namespace cmx::reference
