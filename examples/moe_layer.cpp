// SPDX-License-Identifier: Apache-2.0
// A whole expert-parallel MoE layer on the TBB backend, as an engine runs it on each of 8 ranks:
// router top-k, FusedDispatch (INT8 rows, per-token scales), the fused INT8 expert FFN reading
// the received rows in place, FusedCombine. DeepSeek-V3's structure (256 routed experts of
// 7168 -> 2048 -> 7168, top-8) scaled to fit a small machine. Checked against an fp32
// single-process reference of the same layer; prints each stage's time.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cmx/cmx.hpp>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

using cmx::bf16;
using Device = cmx::tbb_backend::Device;

namespace {

constexpr int kRanks = 8;
constexpr int kExperts = 32;  // 4 per rank
constexpr int kTopk = 4;
constexpr int kTokens = 32;  // per rank
constexpr int kHidden = 1024;
constexpr int kIntermediate = 256;

/// An expert's weights as the model has them (float) and as cmx runs them: INT8 per output
/// channel, scale = amax / 127 (cmx::quantize_row_int8).
struct QuantizedMatrix {
  int n = 0, k = 0;
  std::vector<std::int8_t> codes;        // [n, k]
  std::vector<float> scales;             // [n]
  float at(int row, int column) const {  // the dequantized weight, what the reference uses
    return codes[static_cast<std::size_t>(row) * k + column] *
           scales[static_cast<std::size_t>(row)];
  }
};
QuantizedMatrix random_matrix(int n, int k, std::mt19937& random) {
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(k)));
  QuantizedMatrix matrix{n, k, std::vector<std::int8_t>(static_cast<std::size_t>(n) * k),
                         std::vector<float>(static_cast<std::size_t>(n))};
  std::vector<float> row(static_cast<std::size_t>(k));
  for (int j = 0; j < n; ++j) {
    for (float& value : row) value = normal(random);
    matrix.scales[j] =
        cmx::quantize_row_int8(std::span<const float>(row),
                               std::span(matrix.codes).subspan(static_cast<std::size_t>(j) * k, k));
  }
  return matrix;
}
struct Expert {
  QuantizedMatrix gate, up, down;  // [I, H], [I, H], [H, I]
};

/// The router: softmax over the experts' logits, top-k, weights renormalized over the k.
void route(const std::vector<bf16>& x, const std::vector<float>& router,
           std::vector<std::int32_t>& topk_idx, std::vector<float>& topk_weights) {
  std::vector<float> probability(kExperts);
  std::vector<int> order(kExperts);
  for (int t = 0; t < kTokens; ++t) {
    for (int e = 0; e < kExperts; ++e) {
      float logit = 0;
      for (int h = 0; h < kHidden; ++h)
        logit += x[static_cast<std::size_t>(t) * kHidden + h].to_float() *
                 router[static_cast<std::size_t>(e) * kHidden + h];
      probability[e] = logit;
    }
    const float largest = *std::max_element(probability.begin(), probability.end());
    for (float& p : probability) p = std::exp(p - largest);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + kTopk, order.end(),
                      [&](int a, int b) { return probability[a] > probability[b]; });
    float total = 0;
    for (int k = 0; k < kTopk; ++k) total += probability[order[k]];
    for (int k = 0; k < kTopk; ++k) {
      topk_idx[static_cast<std::size_t>(t) * kTopk + k] = order[k];
      topk_weights[static_cast<std::size_t>(t) * kTopk + k] = probability[order[k]] / total;
    }
  }
}

/// The layer in fp32 (double accumulation) on one process: y[t] = sum_k w_k * FFN_e(x[t]),
/// FFN(x) = (silu(x Wg^T) * (x Wu^T)) Wd^T on the bf16 input and the dequantized weights.
std::vector<float> reference_layer(const std::vector<bf16>& x,
                                   const std::vector<std::int32_t>& topk_idx,
                                   const std::vector<float>& topk_weights,
                                   const std::vector<Expert>& experts) {
  std::vector<float> y(x.size(), 0.0f);
  std::vector<double> h(kIntermediate);
  for (int t = 0; t < kTokens; ++t)
    for (int k = 0; k < kTopk; ++k) {
      const Expert& expert = experts[topk_idx[static_cast<std::size_t>(t) * kTopk + k]];
      const float weight = topk_weights[static_cast<std::size_t>(t) * kTopk + k];
      for (int i = 0; i < kIntermediate; ++i) {
        double gate = 0, up = 0;
        for (int d = 0; d < kHidden; ++d) {
          const double value = x[static_cast<std::size_t>(t) * kHidden + d].to_float();
          gate += value * expert.gate.at(i, d);
          up += value * expert.up.at(i, d);
        }
        h[i] = gate / (1.0 + std::exp(-gate)) * up;
      }
      for (int j = 0; j < kHidden; ++j) {
        double out = 0;
        for (int i = 0; i < kIntermediate; ++i) out += h[i] * expert.down.at(j, i);
        y[static_cast<std::size_t>(t) * kHidden + j] += static_cast<float>(weight * out);
      }
    }
  return y;
}

using Clock = std::chrono::steady_clock;
double milliseconds_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

int main() {
  // The model: router weights and every expert, the same on every rank (in an engine each rank
  // loads only its own experts).
  std::mt19937 random(7);
  std::vector<float> router(static_cast<std::size_t>(kExperts) * kHidden);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& w : router) w = normal(random) / std::sqrt(static_cast<float>(kHidden));
  std::vector<Expert> experts;
  for (int e = 0; e < kExperts; ++e)
    experts.push_back({random_matrix(kIntermediate, kHidden, random),
                       random_matrix(kIntermediate, kHidden, random),
                       random_matrix(kHidden, kIntermediate, random)});
  // Every rank's tokens (the attention layer's output).
  std::vector<std::vector<bf16>> x(kRanks,
                                   std::vector<bf16>(static_cast<std::size_t>(kTokens) * kHidden));
  for (auto& tokens : x)
    for (bf16& value : tokens) value = bf16::from_float(normal(random));

  const cmx::ep::Config config{.num_experts = kExperts,
                               .max_tokens_per_rank = kTokens,
                               .hidden = kHidden,
                               .num_topk = kTopk,
                               .precision = cmx::ep::DispatchPrecision::int8,
                               // The FFN writes its outputs into the buffer, where combine
                               // reads them from the peers: no copy of the expert outputs.
                               .combine_source = cmx::ep::CombineSource::buffer};
  enum Stage { kRouter, kDispatch, kExpertFfn, kCombine, kNumStages };
  const char* const stage_names[kNumStages] = {"router top-k", "FusedDispatch", "INT8 expert FFN",
                                               "FusedCombine"};
  std::vector<std::array<double, kNumStages>> stage_ms(kRanks);  // the last round's, per rank
  std::vector<std::vector<bf16>> y(kRanks);
  std::vector<std::vector<std::int32_t>> topk_idx(kRanks);
  std::vector<std::vector<float>> topk_weights(kRanks);

  cmx::tbb_backend::World world({.num_ranks = kRanks});
  world.run([&](Device device) {
    const int rank = device.rank();
    // Start-up, once: the EP buffer (collective) and this rank's experts, packed for the device.
    cmx::ep::Buffer<Device> buffer(device, config);
    const cmx::ep::Layout& layout = buffer.layout();
    std::vector<cmx::gemm::ExpertWeights> local_experts;
    for (int e = 0; e < layout.num_local_experts; ++e) {
      const Expert& expert = experts[layout.global_expert(rank, e)];
      const auto pack = [&](const QuantizedMatrix& m) {
        return cmx::gemm::pack_weights(device,
                                       {.codes = m.codes, .scales = m.scales, .n = m.n, .k = m.k});
      };
      local_experts.push_back({pack(expert.gate), pack(expert.up), pack(expert.down)});
    }
    // [num_messages][hidden]: the expert outputs, one per received row, in the buffer, where
    // the source ranks' combine reads them.
    const std::span<bf16> expert_out = buffer.expert_out();
    // Where the FFN keeps its INT8 intermediate between its two launches: one row per message.
    cmx::gemm::ExpertFfnWorkspace ffn_workspace(layout.num_messages(), kIntermediate);
    topk_idx[rank].resize(kTokens * kTopk);
    topk_weights[rank].resize(kTokens * kTopk);
    y[rank].resize(x[rank].size());

    // Per layer (3 rounds: the first warms up): router -> dispatch -> experts -> combine.
    for (int round = 0; round < 3; ++round) {
      auto& ms = stage_ms[rank];
      device.barrier();
      Clock::time_point start = Clock::now();
      route(x[rank], router, topk_idx[rank], topk_weights[rank]);
      ms[kRouter] = milliseconds_since(start);

      start = Clock::now();
      const cmx::ep::Received received = cmx::ep::dispatch(
          device, buffer, {.x = x[rank], .topk_idx = topk_idx[rank], .num_tokens = kTokens});
      ms[kDispatch] = milliseconds_since(start);

      start = Clock::now();
      cmx::gemm::expert_ffn(device, {.x = received,  // the received rows, read in place
                                     .experts = local_experts,
                                     .out = expert_out,
                                     .workspace = ffn_workspace});
      ms[kExpertFfn] = milliseconds_since(start);

      start = Clock::now();
      cmx::ep::combine(
          device, buffer,
          {.expert_out = expert_out, .topk_weights = topk_weights[rank], .y = y[rank]});
      ms[kCombine] = milliseconds_since(start);
    }
  });

  // Check every rank's y against the fp32 layer: relative L2 error and cosine similarity. The
  // error is the INT8 quantization of the tokens and of the intermediate, and bf16 outputs.
  double error = 0, norm = 0, dot = 0, y_norm = 0;
  for (int rank = 0; rank < kRanks; ++rank) {
    const std::vector<float> expected =
        reference_layer(x[rank], topk_idx[rank], topk_weights[rank], experts);
    for (std::size_t i = 0; i < expected.size(); ++i) {
      const double got = y[rank][i].to_float();
      error += (got - expected[i]) * (got - expected[i]);
      norm += static_cast<double>(expected[i]) * expected[i];
      dot += got * expected[i];
      y_norm += got * got;
    }
  }
  const double relative_l2 = std::sqrt(error / norm);
  const double cosine = dot / std::sqrt(norm * y_norm);
  const bool ok = relative_l2 < 0.03 && cosine > 0.999;

  std::printf(
      "moe_layer: %d ranks, %d experts (%d per rank), top-%d, %d tokens/rank, hidden %d, "
      "intermediate %d, INT8 GEMMs on the %s tier\n",
      kRanks, kExperts, kExperts / kRanks, kTopk, kTokens, kHidden, kIntermediate,
      cmx::cpu::to_string(cmx::cpu::resolve_isa(cmx::cpu::KernelFamily::int8_matmul)));
  for (int stage = 0; stage < kNumStages; ++stage) {
    double slowest = 0;
    for (const auto& ms : stage_ms) slowest = std::max(slowest, ms[stage]);
    std::printf("  %-16s %8.3f ms (slowest rank)\n", stage_names[stage], slowest);
  }
  std::printf("  y vs the fp32 layer: relative L2 %.4f, cosine %.6f (need < 0.03, > 0.999): %s\n",
              relative_l2, cosine, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
