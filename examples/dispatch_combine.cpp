// SPDX-License-Identifier: Apache-2.0
// One expert-parallel round on the TBB backend: route tokens, FusedDispatch them to the ranks
// that host their experts, run the experts there, FusedCombine the outputs back, and check the
// result against cmx's scalar reference. The first thing to copy into an engine.
#include <cmx/cmx.hpp>
#include <cmx/reference/ep.hpp>
#include <cstdio>
#include <random>
#include <vector>

using cmx::bf16;
using Device = cmx::tbb_backend::Device;

int main() {
  // 4 ranks ("NPUs"), 16 experts (4 per rank), each token goes to its top-2 experts.
  constexpr int kRanks = 4;
  const cmx::ep::Config config{
      .num_experts = 16,
      .max_tokens_per_rank = 32,  // static capacity: buffers are sized once, never per call
      .hidden = 256,
      .num_topk = 2,
      .precision = cmx::ep::DispatchPrecision::int8,  // quantize once at the source
  };

  // Every rank's inputs, made up front so the reference can see them all. In an engine these
  // come from the attention layer and the router of each rank.
  std::vector<cmx::reference::EpRankInput> inputs(kRanks);
  std::mt19937 random(2026);
  std::normal_distribution<float> activation(0.0f, 1.0f);
  for (int rank = 0; rank < kRanks; ++rank) {
    auto& input = inputs[rank];
    input.num_tokens = 20 + rank;  // any count up to max_tokens_per_rank, different per rank
    for (int i = 0; i < input.num_tokens * config.hidden; ++i)
      input.x.push_back(bf16::from_float(activation(random)));
    for (int t = 0; t < input.num_tokens; ++t) {
      const int first = static_cast<int>(random() % 16);
      input.topk_idx.insert(input.topk_idx.end(), {first, (first + 5) % 16});  // distinct
      input.topk_weights.insert(input.topk_weights.end(), {0.75f, 0.25f});
    }
  }

  // The stand-in "expert": dequantizes its input row and scales it by (expert + 1) / 16. A real
  // engine runs the grouped INT8 GEMM here, reading the received rows in place.
  const auto expert_output = [](std::int8_t code, float scale, int expert) {
    return bf16::from_float(code * scale * static_cast<float>(expert + 1) / 16);
  };
  const auto run_experts = [&](const cmx::ep::Received& received, int rank,
                               std::vector<bf16>& expert_out) {
    for (int e = 0; e < received.num_local_experts(); ++e)
      for (int src = 0; src < received.num_ranks(); ++src)
        for (int slot = 0; slot < received.count(e, src); ++slot) {
          const auto codes = received.row_int8(e, src, slot);          // [hidden] int8
          const float scale = received.meta(e, src, slot).scale;       // per-token scale
          const int expert = rank * received.num_local_experts() + e;  // global id
          bf16* out = &expert_out[received.row_index(e, src, slot) * config.hidden];
          for (int h = 0; h < config.hidden; ++h) out[h] = expert_output(codes[h], scale, expert);
        }
  };

  // Each rank is a thread; cmx's calls are collective, as on W NPUs.
  cmx::tbb_backend::World world({.num_ranks = kRanks});
  std::vector<std::vector<bf16>> y(kRanks);
  world.run([&](Device device) {
    const int rank = device.rank();
    const auto& input = inputs[rank];
    // Made once at start-up (collective: checks that every rank has the same config).
    cmx::ep::Buffer<Device> buffer(device, config);
    // [num_messages][hidden]: one row per row of the receive area.
    std::vector<bf16> expert_out(buffer.layout().num_messages() * config.hidden);
    y[rank].resize(input.x.size());

    // Per layer: dispatch -> experts -> combine, every rank, in that order.
    const cmx::ep::Received received = cmx::ep::dispatch(
        device, buffer, {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
    run_experts(received, rank, expert_out);
    cmx::ep::combine(device, buffer,
                     {.expert_out = expert_out, .topk_weights = input.topk_weights, .y = y[rank]});
  });

  // Check: the reference dispatch gives each (rank, token, k) its quantized row; the same
  // stand-in expert and the reference combine must give y bit for bit.
  const auto delivered = cmx::reference::dispatch(config, kRanks, inputs);
  int mismatches = 0;
  for (int rank = 0; rank < kRanks; ++rank) {
    std::vector<bf16> row(config.hidden);
    const auto expected = cmx::reference::combine(config, inputs[rank], [&](int t, int k) {
      const int expert = inputs[rank].topk_idx[t * config.num_topk + k];
      const int experts_per_rank = config.num_experts / kRanks;
      for (const auto& sent : delivered[expert / experts_per_rank][expert % experts_per_rank][rank])
        if (sent.src_token == t && sent.topk_slot == k)
          for (int h = 0; h < config.hidden; ++h)
            row[h] = expert_output(sent.codes[h], sent.scale, expert);
      return std::span<const bf16>(row);
    });
    for (std::size_t i = 0; i < expected.size(); ++i) mismatches += y[rank][i] != expected[i];
  }
  std::printf("dispatch_combine: %d ranks, %d experts, top-%d, hidden %d: %s\n", kRanks,
              config.num_experts, config.num_topk, config.hidden,
              mismatches == 0 ? "y matches the reference bit for bit" : "MISMATCH");
  return mismatches == 0 ? 0 : 1;
}
