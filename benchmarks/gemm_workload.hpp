// SPDX-License-Identifier: Apache-2.0
// What the GEMM suite measures: DeepSeek-V3 shapes, the masked rows of an expert-parallel rank
// as FusedDispatch lays them out (with skewed routing), and the operands' random codes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "cmx/cmx.hpp"

namespace cmx::bench {

/// One dense GEMM: C [m, n] = A [m, k] x B [n, k]^T.
struct DenseShape {
  int m = 0;
  int n = 0;
  int k = 0;
  friend bool operator==(const DenseShape&, const DenseShape&) = default;
};

/// DeepSeek-V3's projections (N, K), as DeepGEMM benchmarks them, each at M of a decode batch
/// (128), a small prefill chunk (512) and a prefill (4096).
inline constexpr int kDenseRows[] = {128, 512, 4096};
inline constexpr DenseShape kDenseProjections[] = {
    {.m = 0, .n = 4096, .k = 7168},  // MLA q/kv up-projections, routed-expert gate+up
    {.m = 0, .n = 7168, .k = 2048},  // expert down-projection
    {.m = 0, .n = 2112, .k = 7168},  // MLA down-projection (q_lora 1536 + kv_lora 512 + rope 64)
};

/// The expert-parallel setting of the grouped benchmarks: this rank hosts 8 experts of
/// 8 * 8 = 64, 8 ranks send it up to 128 tokens each, top-8, DeepSeek-V3 sizes (hidden 7168,
/// expert intermediate 2048).
struct MoeShape {
  int num_ranks = 8;
  int local_experts = 8;
  int tokens_per_rank = 128;
  int num_topk = 8;
  int hidden = 7168;
  int intermediate = 2048;
  friend bool operator==(const MoeShape&, const MoeShape&) = default;
};

/// Codes uniform over [-127, 127], from a seed.
inline std::vector<std::int8_t> random_codes(std::size_t count, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  std::vector<std::int8_t> codes(count);
  for (std::int8_t& code : codes)
    code = static_cast<std::int8_t>(static_cast<int>(random() % 255) - 127);
  return codes;
}

/// Scales in [0.5, 1.5) * `magnitude`, from a seed.
inline std::vector<float> random_scales(std::size_t count, float magnitude, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  std::uniform_real_distribution<float> uniform(0.5f, 1.5f);
  std::vector<float> scales(count);
  for (float& scale : scales) scale = uniform(random) * magnitude;
  return scales;
}

/// Rows that `src` rank sends to each local expert of rank 0, with skewed routing: every token
/// picks top-K distinct experts of all W * E_local with probability ~ 1 / (popularity rank +
/// 1) (Zipf), the popularity ranks a fixed random permutation of the experts. Returns
/// counts [E_local][W].
inline std::vector<std::int32_t> skewed_counts(const MoeShape& shape) {
  const int num_experts = shape.num_ranks * shape.local_experts;
  std::mt19937_64 random(0x5eed6e11u);
  std::vector<int> popularity(static_cast<std::size_t>(num_experts));
  std::iota(popularity.begin(), popularity.end(), 0);
  std::shuffle(popularity.begin(), popularity.end(), random);
  std::vector<double> weight(static_cast<std::size_t>(num_experts));
  for (int e = 0; e < num_experts; ++e)
    weight[static_cast<std::size_t>(e)] = 1.0 / (popularity[static_cast<std::size_t>(e)] + 1);
  std::vector<std::int32_t> counts(
      static_cast<std::size_t>(shape.local_experts) * static_cast<std::size_t>(shape.num_ranks), 0);
  for (int src = 0; src < shape.num_ranks; ++src)
    for (int t = 0; t < shape.tokens_per_rank; ++t) {
      std::vector<double> left = weight;  // draw K distinct experts, weighted
      for (int k = 0; k < shape.num_topk; ++k) {
        std::discrete_distribution<int> pick(left.begin(), left.end());
        const int expert = pick(random);
        left[static_cast<std::size_t>(expert)] = 0;
        if (expert < shape.local_experts)  // rank 0 hosts experts 0 ... E_local - 1
          ++counts[static_cast<std::size_t>(expert) * shape.num_ranks + src];
      }
    }
  return counts;
}

/// Rows in FusedDispatch's receive layout (ep::Layout): its num_messages() messages of `depth`
/// int8 codes padded to 32 B, each followed by its 32-byte MessageMeta (scale first), the
/// segments placed as dispatch places them (Layout::first_rows), filled with random codes and
/// scales.
class DispatchedRows {
 public:
  DispatchedRows(const MoeShape& shape, int depth, std::vector<std::int32_t> counts)
      : layout_({.num_experts = shape.num_ranks * shape.local_experts,
                 .max_tokens_per_rank = shape.tokens_per_rank,
                 .hidden = depth,
                 .num_topk = shape.num_topk},
                shape.num_ranks),
        counts_(std::move(counts)),
        first_rows_(counts_.size()),
        messages_(layout_.num_messages() * layout_.message_bytes) {
    layout_.first_rows(counts_, first_rows_);
    const std::vector<std::int8_t> codes = random_codes(messages_.size(), 0xc0de5u + depth);
    std::memcpy(messages_.data(), codes.data(), codes.size());
    const std::vector<float> scales = random_scales(layout_.num_messages(), 0.02f, 0x5ca1e5u);
    for (std::size_t i = 0; i < layout_.num_messages(); ++i) {
      ep::MessageMeta meta{};
      meta.scale = scales[i];
      std::memcpy(messages_.data() + i * layout_.message_bytes + layout_.row_bytes, &meta,
                  sizeof(meta));
    }
  }

  /// The masked view of the rows, as an ep::Received converts to it for a real dispatch.
  gemm::MaskedRows rows() const noexcept {
    return {.num_groups = layout_.num_local_experts,
            .num_segments = layout_.num_ranks,
            .capacity = layout_.max_tokens_per_rank,
            .k = layout_.hidden,
            .counts = counts_,
            .first_slots = first_rows_,
            .num_packed_slots = layout_.num_messages(),
            .codes = messages_.data(),
            .row_stride = layout_.message_bytes,
            .scales = messages_.data() + layout_.row_bytes + offsetof(ep::MessageMeta, scale),
            .scale_stride = layout_.message_bytes};
  }
  const ep::Layout& layout() const noexcept { return layout_; }
  /// Valid rows of `expert`, over every source rank.
  int expert_rows(int expert) const noexcept { return rows().num_rows(expert); }
  int total_rows() const noexcept { return std::accumulate(counts_.begin(), counts_.end(), 0); }

 private:
  ep::Layout layout_;
  std::vector<std::int32_t> counts_;      // [E_local][W]
  std::vector<std::int32_t> first_rows_;  // [E_local][W]
  std::vector<std::byte> messages_;       // [num_messages][message_bytes]
};

}  // namespace cmx::bench
