// SPDX-License-Identifier: Apache-2.0
// The masked GEMM and the expert FFN on FusedDispatch's output, read in place on every rank of
// a World (ep::Received read as gemm::MaskedRows), with uniform and skewed routing; their outputs
// land where combine reads them, and combine completes the round.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "../ep/ep_harness.hpp"
#include "cmx/gemm/gemm.hpp"
#include "gemm_harness.hpp"

namespace ep = cmx::ep;
namespace gemm = cmx::gemm;
using cmx::bf16;
using cmx::test::Device;

namespace {

constexpr int kRanks = 4;
constexpr int kIntermediate = 96;

const ep::Config kConfig{.num_experts = 8, .max_tokens_per_rank = 24, .hidden = 256, .num_topk = 3};

struct ExpertCodes {
  cmx::test::Weights gate, up, down;
};

}  // namespace

TEST_CASE("masked GEMM and expert FFN read dispatch's rows in place and write combine's layout") {
  std::mt19937 random(81);
  std::vector<ExpertCodes> experts;  // global experts
  for (int e = 0; e < kConfig.num_experts; ++e)
    experts.push_back({cmx::test::random_weights(kIntermediate, kConfig.hidden,
                                                 cmx::test::Codes::uniform, random),
                       cmx::test::random_weights(kIntermediate, kConfig.hidden,
                                                 cmx::test::Codes::uniform, random),
                       cmx::test::random_weights(kConfig.hidden, kIntermediate,
                                                 cmx::test::Codes::uniform, random)});
  for (const auto routing : {cmx::test::Routing::uniform, cmx::test::Routing::one_expert}) {
    CAPTURE(cmx::test::to_string(routing));
    const auto inputs = cmx::test::make_inputs(kConfig, kRanks, {24, 17, 0, 24}, routing, 7);
    std::vector<std::string> mismatch(kRanks);  // the first of each rank, checked after the run
    cmx::tbb_backend::World world({.num_ranks = kRanks});
    world.run([&](Device device) {
      const int rank = device.rank();
      ep::Buffer<Device> buffer(device, kConfig);
      const ep::Layout& layout = buffer.layout();
      // This rank's experts: gate weights for the masked GEMM, all three for the FFN.
      std::vector<gemm::PackedWeights> gates;
      std::vector<gemm::ExpertWeights> ffn;
      for (int e = 0; e < layout.num_local_experts; ++e) {
        const ExpertCodes& expert =
            experts[static_cast<std::size_t>(layout.global_expert(rank, e))];
        gates.push_back(expert.gate.pack(device));
        ffn.push_back({expert.gate.pack(device), expert.up.pack(device), expert.down.pack(device)});
      }
      const auto& input = inputs[static_cast<std::size_t>(rank)];
      const ep::Received received =
          ep::dispatch(device, buffer,
                       {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});

      std::vector<float> gate_out(layout.num_messages() * kIntermediate);
      gemm::grouped_gemm_masked(
          device, gemm::MaskedGemmArgs<float>{.a = received, .weights = gates, .c = gate_out});
      std::vector<bf16> expert_out(layout.num_messages() *
                                   static_cast<std::size_t>(kConfig.hidden));
      gemm::ExpertFfnWorkspace workspace(layout.num_messages(), kIntermediate);
      gemm::expert_ffn(device,
                       {.x = received, .experts = ffn, .out = expert_out, .workspace = workspace});

      for (int e = 0; e < layout.num_local_experts; ++e) {
        const ExpertCodes& expert =
            experts[static_cast<std::size_t>(layout.global_expert(rank, e))];
        const cmx::reference::ExpertWeightsView view{.gate = expert.gate.codes,
                                                     .up = expert.up.codes,
                                                     .down = expert.down.codes,
                                                     .gate_scales = expert.gate.scales,
                                                     .up_scales = expert.up.scales,
                                                     .down_scales = expert.down.scales,
                                                     .hidden = kConfig.hidden,
                                                     .intermediate = kIntermediate};
        std::string& first = mismatch[static_cast<std::size_t>(rank)];
        for (int src = 0; src < kRanks; ++src)
          for (int slot = 0; slot < received.count(e, src) && first.empty(); ++slot) {
            const auto codes = received.row_int8(e, src, slot);
            const float scale = received.meta(e, src, slot).scale;
            const auto row = static_cast<std::size_t>(received.row_index(e, src, slot));
            const std::string where = "rank " + std::to_string(rank) + " segment (" +
                                      std::to_string(e) + ", " + std::to_string(src) + ") slot " +
                                      std::to_string(slot) + ": ";
            const std::vector<float> x_scale{scale};
            const auto gate = cmx::reference::dequantize(
                cmx::reference::matmul_int8(codes, expert.gate.codes, 1, kIntermediate,
                                            kConfig.hidden),
                x_scale, expert.gate.scales);
            const std::vector<float> got_gate(
                gate_out.begin() + static_cast<std::ptrdiff_t>(row * kIntermediate),
                gate_out.begin() + static_cast<std::ptrdiff_t>((row + 1) * kIntermediate));
            const std::string gate_difference =
                cmx::test::first_difference(got_gate, gate, kIntermediate);
            if (!gate_difference.empty()) first = where + "masked GEMM: " + gate_difference;
            const auto y = cmx::reference::expert_ffn_int8(codes, scale, view);
            const std::vector<bf16> got_y(
                expert_out.begin() + static_cast<std::ptrdiff_t>(row * kConfig.hidden),
                expert_out.begin() + static_cast<std::ptrdiff_t>((row + 1) * kConfig.hidden));
            const std::string ffn_difference =
                cmx::test::first_difference(got_y, y, kConfig.hidden);
            if (!ffn_difference.empty() && first.empty())
              first = where + "expert FFN: " + ffn_difference;
          }
      }
      std::vector<bf16> y(input.x.size());
      ep::combine(device, buffer,
                  {.expert_out = expert_out, .topk_weights = input.topk_weights, .y = y});
    });
    for (const std::string& m : mismatch) CHECK_MESSAGE(m.empty(), m);
  }
}

TEST_CASE("the rows of a bf16 dispatch are refused by the INT8 GEMM before anything is written") {
  ep::Config config = kConfig;
  config.precision = ep::DispatchPrecision::bf16;
  const auto inputs = cmx::test::make_inputs(config, 2, {5, 3}, cmx::test::Routing::uniform, 3);
  std::vector<std::string> errors(2);
  cmx::tbb_backend::World world({.num_ranks = 2});
  world.run([&](Device device) {
    ep::Buffer<Device> buffer(device, config);
    const auto& input = inputs[static_cast<std::size_t>(device.rank())];
    const ep::Received received = ep::dispatch(
        device, buffer, {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
    const std::vector<gemm::PackedWeights> no_weights(
        static_cast<std::size_t>(buffer.layout().num_local_experts));
    std::vector<float> c(buffer.layout().num_messages() * kIntermediate, 7.0f);
    try {
      gemm::grouped_gemm_masked(
          device, gemm::MaskedGemmArgs<float>{.a = received, .weights = no_weights, .c = c});
    } catch (const cmx::Error& error) {
      if (error.code() == cmx::ErrorCode::invalid_argument)
        errors[static_cast<std::size_t>(device.rank())] = error.what();
    }
    CHECK(std::count(c.begin(), c.end(), 7.0f) == static_cast<std::ptrdiff_t>(c.size()));
    // Combine completes the round, so that no peer waits for this rank.
    const std::vector<bf16> expert_out(buffer.layout().num_messages() *
                                       static_cast<std::size_t>(config.hidden));
    std::vector<bf16> y(input.x.size());
    ep::combine(device, buffer,
                {.expert_out = expert_out, .topk_weights = input.topk_weights, .y = y});
  });
  for (const std::string& error : errors)
    CHECK(error.find("needs an int8 dispatch") != std::string::npos);
}
