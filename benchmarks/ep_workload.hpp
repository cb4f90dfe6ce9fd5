// SPDX-License-Identifier: Apache-2.0
// What cmx_bench measures: the DeepEP low-latency setting, its uniform random routing, and the
// bytes of one message counted the way DeepEP's test counts them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "cmx/cmx.hpp"

namespace cmx::bench {

/// Which of the two EP kernels a benchmark times.
enum class Kernel { dispatch, combine };

inline const char* to_string(Kernel kernel) noexcept {
  return kernel == Kernel::dispatch ? "dispatch" : "combine";
}

/// The benchmark name of `kernel` on a buffer whose combine reads from `source`:
/// "dispatch", "combine" or "combine_zero_copy".
inline const char* benchmark_name(Kernel kernel, ep::CombineSource source) noexcept {
  if (kernel == Kernel::combine && source == ep::CombineSource::buffer) return "combine_zero_copy";
  return to_string(kernel);
}

/// The shape of one benchmark. Sizes are per rank, as in DeepEP's low-latency test (decode:
/// 128 tokens per rank, DeepSeek-V3 hidden size 7168, top-8 of 256 routed experts).
struct EpShape {
  int num_ranks = 8;      ///< W: emulated ranks, one thread each
  int num_tokens = 128;   ///< T: tokens each rank dispatches per call
  int hidden = 7168;      ///< H: elements per token row
  int num_topk = 8;       ///< K: experts per token
  int num_experts = 256;  ///< E: routed experts over all ranks
  /// Where combine reads the expert outputs: the caller's tensor (copied back), or the
  /// buffer's own (zero-copy).
  ep::CombineSource combine_source = ep::CombineSource::caller_memory;

  /// INT8 dispatch (bf16 combine is the only combine), capacity exactly T.
  ep::Config config() const noexcept {
    return {.num_experts = num_experts,
            .max_tokens_per_rank = num_tokens,
            .hidden = hidden,
            .num_topk = num_topk,
            .precision = ep::DispatchPrecision::int8,
            .combine_source = combine_source};
  }

  friend bool operator==(const EpShape&, const EpShape&) = default;
};

/// Bytes of one (token, selected expert) message as DeepEP's test counts them: dispatch moves
/// the INT8 row and its one fp32 per-token scale (H + 4 bytes), combine the bf16 row (2H bytes).
/// Padding and metadata that an implementation adds are not counted.
inline std::size_t message_bytes(Kernel kernel, int hidden) noexcept {
  const std::size_t h = static_cast<std::size_t>(hidden);
  return kernel == Kernel::dispatch ? h * sizeof(std::int8_t) + sizeof(float) : h * sizeof(bf16);
}

/// One rank's inputs to a dispatch/combine round.
struct RankInputs {
  std::vector<bf16> x;  // [num_tokens, hidden]
  std::vector<std::int32_t>
      topk_idx;                     // [num_tokens, num_topk] global expert ids, distinct per token
  std::vector<float> topk_weights;  // [num_tokens, num_topk] in [0.01, 1)

  /// Messages this rank sends per call: (token, expert) choices that name an expert.
  std::size_t num_messages() const noexcept {
    std::size_t count = 0;
    for (const std::int32_t expert : topk_idx) count += expert >= 0 ? 1 : 0;
    return count;
  }
};

/// Uniform random routing, as DeepEP's test draws it: every token picks K distinct experts of
/// E uniformly, none masked, so every rank sends exactly T * K messages. x ~ N(0, 1). Seeded by
/// the rank: every run and every repetition routes the same tokens to the same experts.
inline RankInputs make_rank_inputs(const EpShape& shape, int rank) {
  const std::size_t num_tokens = static_cast<std::size_t>(shape.num_tokens);
  const std::size_t num_topk = static_cast<std::size_t>(shape.num_topk);
  std::mt19937_64 random(0x5eed0000u + static_cast<std::uint64_t>(rank));
  RankInputs inputs;

  inputs.x.resize(num_tokens * static_cast<std::size_t>(shape.hidden));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (bf16& value : inputs.x) value = bf16::from_float(normal(random));

  inputs.topk_idx.resize(num_tokens * num_topk);
  std::vector<std::int32_t> experts(static_cast<std::size_t>(shape.num_experts));
  std::iota(experts.begin(), experts.end(), 0);
  for (std::size_t t = 0; t < num_tokens; ++t) {
    // A partial Fisher-Yates shuffle: experts[0 .. K) become K distinct uniform draws.
    for (std::size_t k = 0; k < num_topk; ++k) {
      std::uniform_int_distribution<std::size_t> pick(k, experts.size() - 1);
      std::swap(experts[k], experts[pick(random)]);
      inputs.topk_idx[t * num_topk + k] = experts[k];
    }
  }

  inputs.topk_weights.resize(num_tokens * num_topk);
  std::uniform_real_distribution<float> weight(0.01f, 1.0f);
  for (float& w : inputs.topk_weights) w = weight(random);
  return inputs;
}

}  // namespace cmx::bench
