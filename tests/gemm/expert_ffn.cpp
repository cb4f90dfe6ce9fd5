// SPDX-License-Identifier: Apache-2.0
// The fused expert FFN and its SwiGLU: bitwise against the reference that follows the same
// definition (every tier, any block count), and its error against the real-valued FFN in fp64
// (relative L2 and cosine similarity, the figures the README quotes).
#include "cmx/gemm/expert_ffn.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gemm_harness.hpp"

namespace gemm = cmx::gemm;
using cmx::bf16;
using cmx::test::Device;

namespace {

/// Weights as a model has them: normal values, quantized per output channel (scale = amax / 127).
cmx::test::Weights model_weights(int n, int k, std::mt19937& random) {
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(k)));
  cmx::test::Weights weights{.codes = std::vector<std::int8_t>(static_cast<std::size_t>(n) * k),
                             .scales = std::vector<float>(static_cast<std::size_t>(n)),
                             .n = n,
                             .k = k};
  std::vector<float> row(static_cast<std::size_t>(k));
  for (int j = 0; j < n; ++j) {
    for (float& value : row) value = normal(random);
    weights.scales[static_cast<std::size_t>(j)] = cmx::quantize_row_int8(
        std::span<const float>(row),
        std::span(weights.codes)
            .subspan(static_cast<std::size_t>(j) * k, static_cast<std::size_t>(k)));
  }
  return weights;
}

struct Expert {
  cmx::test::Weights gate, up, down;
  cmx::reference::ExpertWeightsView view() const {
    return {.gate = gate.codes,
            .up = up.codes,
            .down = down.codes,
            .gate_scales = gate.scales,
            .up_scales = up.scales,
            .down_scales = down.scales,
            .hidden = gate.k,
            .intermediate = gate.n};
  }
  gemm::ExpertWeights pack(Device& device) const {
    return {gate.pack(device), up.pack(device), down.pack(device)};
  }
};

/// The FFN's output [slots][hidden] of `rows` through `experts`.
std::vector<bf16> run_ffn(Device& device, const gemm::MaskedRows& rows,
                          std::span<const gemm::ExpertWeights> experts, bf16 fill) {
  std::vector<bf16> out(rows.num_slots() * static_cast<std::size_t>(rows.k), fill);
  gemm::ExpertFfnWorkspace workspace(rows.num_slots(), experts.front().gate.n());
  gemm::expert_ffn(device, {.x = rows, .experts = experts, .out = out, .workspace = workspace});
  return out;
}

/// Tokens in the masked layout, as dispatch delivers them: each row of `hidden` codes quantized
/// per token from normal values, its scale in its own array.
struct MaskedTokens {
  int groups, segments, capacity, hidden;
  std::vector<std::int32_t> counts;  // [groups][segments]
  std::vector<std::int8_t> codes;    // [slots][hidden]
  std::vector<float> scales;         // [slots]

  MaskedTokens(int groups, int segments, int capacity, int hidden, std::vector<std::int32_t> counts,
               std::mt19937& random)
      : groups(groups),
        segments(segments),
        capacity(capacity),
        hidden(hidden),
        counts(std::move(counts)) {
    const std::size_t slots = static_cast<std::size_t>(groups) * segments * capacity;
    codes.resize(slots * static_cast<std::size_t>(hidden));
    scales.resize(slots);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> row(static_cast<std::size_t>(hidden));
    for (std::size_t i = 0; i < slots; ++i) {
      for (float& value : row) value = normal(random);
      scales[i] = cmx::quantize_row_int8(
          std::span<const float>(row),
          std::span(codes).subspan(i * hidden, static_cast<std::size_t>(hidden)));
    }
  }
  gemm::MaskedRows rows() const {
    return {.num_groups = groups,
            .num_segments = segments,
            .capacity = capacity,
            .k = hidden,
            .counts = counts,
            .codes = reinterpret_cast<const std::byte*>(codes.data()),
            .row_stride = static_cast<std::size_t>(hidden),
            .scales = reinterpret_cast<const std::byte*>(scales.data()),
            .scale_stride = sizeof(float)};
  }
};

}  // namespace

TEST_CASE("silu_mul is within 4 ulp of silu(g) * u computed in double, and saturates like silu") {
  std::mt19937 random(2);
  std::uniform_real_distribution<float> wide(-100.0f, 100.0f);
  std::normal_distribution<float> narrow(0.0f, 3.0f);
  double worst = 0;
  for (int i = 0; i < 200000; ++i) {
    const float g = i % 2 == 0 ? wide(random) : narrow(random);
    const float u = narrow(random);
    const double exact = static_cast<double>(g) / (1.0 + std::exp(-static_cast<double>(g))) * u;
    const float got = gemm::silu_mul(g, u);
    const double ulp = std::ldexp(1.0, std::ilogb(std::fabs(exact)) - 23);
    if (std::fabs(exact) > 1e-30) worst = std::max(worst, std::fabs(got - exact) / ulp);
  }
  MESSAGE("silu_mul: largest error ", worst, " ulp over 200000 random (g, u)");
  CHECK(worst <= 4.0);
  CHECK(gemm::silu_mul(200.0f, 2.0f) == 400.0f);
  CHECK(std::fabs(gemm::silu_mul(-200.0f, 2.0f)) < 1e-30f);
  CHECK(std::isnan(gemm::silu_mul(std::nanf(""), 1.0f)));
  CHECK(std::isnan(gemm::silu_mul(1.0f, std::nanf(""))));
}

TEST_CASE(
    "expert_ffn on every tier: bitwise the reference of its definition, only valid slots written") {
  constexpr int kHidden = 256, kIntermediate = 208, kCapacity = 20;
  // Counts per (expert, segment): mixed with empties, one expert taking everything, nothing.
  const std::vector<std::vector<std::int32_t>> layouts = {
      {3, 0, 20, 1, 0, 0, 7, 12}, {0, 0, 20, 20, 0, 0, 0, 0}, {0, 0, 0, 0, 0, 0, 0, 0}};
  cmx::test::for_each_tier([&](cmx::cpu::Isa isa) {
    cmx::test::run_on_tier(isa, 2, [&](Device& device) {
      std::mt19937 random(51);
      std::vector<Expert> experts;
      std::vector<gemm::ExpertWeights> packed;
      for (int e = 0; e < 4; ++e) {
        experts.push_back({model_weights(kIntermediate, kHidden, random),
                           model_weights(kIntermediate, kHidden, random),
                           model_weights(kHidden, kIntermediate, random)});
        packed.push_back(experts.back().pack(device));
      }
      for (const auto& counts : layouts) {
        const MaskedTokens tokens(4, 2, kCapacity, kHidden, counts, random);
        const gemm::MaskedRows rows = tokens.rows();
        const bf16 sentinel = bf16::from_float(-777.0f);
        const std::vector<bf16> out = run_ffn(device, rows, packed, sentinel);
        std::vector<bf16> expected(out.size(), sentinel);
        for (int e = 0; e < 4; ++e)
          for (int s = 0; s < 2; ++s)
            for (int slot = 0; slot < rows.count(e, s); ++slot) {
              const std::size_t i = rows.slot_index(e, s, slot);
              const auto y = cmx::reference::expert_ffn_int8(
                  std::span(tokens.codes).subspan(i * kHidden, kHidden), tokens.scales[i],
                  experts[static_cast<std::size_t>(e)].view());
              std::copy(y.begin(), y.end(),
                        expected.begin() + static_cast<std::ptrdiff_t>(i * kHidden));
            }
        const std::string difference = cmx::test::first_difference(out, expected, kHidden);
        CHECK_MESSAGE(difference.empty(), difference);
      }
    });
  });
}

TEST_CASE("expert_ffn writes the same bytes whatever the block count") {
  // I large enough that the fused launch cuts the 86 rows into several items, H large enough
  // that the down projection has two column blocks: the blocks really share the work.
  constexpr int kHidden = 512, kIntermediate = 4096;
  REQUIRE(gemm::detail::ffn_rows_per_item(Device::kLocalMemoryBytes, kIntermediate,
                                          Device::kInt8PanelColumns) < 40);
  REQUIRE(kHidden / Device::kInt8PanelColumns > gemm::tuning::kPanelsPerItem);
  std::mt19937 random(61);
  const Expert expert{model_weights(kIntermediate, kHidden, random),
                      model_weights(kIntermediate, kHidden, random),
                      model_weights(kHidden, kIntermediate, random)};
  const MaskedTokens tokens(1, 3, 40, kHidden, {40, 13, 33}, random);
  std::vector<bf16> first;
  for (const int blocks : {1, 2, 5}) {
    CAPTURE(blocks);
    cmx::test::run_on_tier(
        cmx::cpu::best_isa(cmx::cpu::KernelFamily::int8_matmul), blocks, [&](Device& device) {
          const gemm::ExpertWeights packed[] = {expert.pack(device)};
          const std::vector<bf16> out = run_ffn(device, tokens.rows(), packed, bf16{});
          if (first.empty()) first = out;
          const std::string difference = cmx::test::first_difference(out, first, kHidden);
          CHECK_MESSAGE(difference.empty(), difference);
        });
  }
}

TEST_CASE("expert_ffn against the real-valued FFN in fp64: relative L2 < 2%, cosine > 0.9998") {
  // DeepSeek-like proportions scaled down (H = 1024, I = 256): weights N(0, 1/K) quantized per
  // channel, tokens N(0, 1) quantized per token. The error is the INT8 re-quantization of the
  // intermediate plus the bf16 output; the reference keeps the intermediate in fp64.
  constexpr int kHidden = 1024, kIntermediate = 256;
  std::mt19937 random(71);
  const Expert expert{model_weights(kIntermediate, kHidden, random),
                      model_weights(kIntermediate, kHidden, random),
                      model_weights(kHidden, kIntermediate, random)};
  const MaskedTokens tokens(1, 1, 64, kHidden, {64}, random);
  cmx::test::run_on_tier(
      cmx::cpu::best_isa(cmx::cpu::KernelFamily::int8_matmul), 2, [&](Device& device) {
        const gemm::ExpertWeights packed[] = {expert.pack(device)};
        const std::vector<bf16> out = run_ffn(device, tokens.rows(), packed, bf16{});
        double error_squared = 0, reference_squared = 0, dot = 0, out_squared = 0;
        for (int t = 0; t < 64; ++t) {
          const auto exact = cmx::reference::expert_ffn_fp64(
              std::span(tokens.codes).subspan(static_cast<std::size_t>(t) * kHidden, kHidden),
              tokens.scales[static_cast<std::size_t>(t)], expert.view());
          for (int j = 0; j < kHidden; ++j) {
            const double got = out[static_cast<std::size_t>(t) * kHidden + j].to_float();
            const double want = exact[static_cast<std::size_t>(j)];
            error_squared += (got - want) * (got - want);
            reference_squared += want * want;
            dot += got * want;
            out_squared += got * got;
          }
        }
        const double relative_l2 = std::sqrt(error_squared / reference_squared);
        const double cosine = dot / std::sqrt(out_squared * reference_squared);
        MESSAGE("expert_ffn vs fp64 (H 1024, I 256, 64 tokens): relative L2 ", relative_l2,
                ", cosine similarity ", cosine);
        CHECK(relative_l2 < 0.02);
        CHECK(cosine > 0.9998);
      });
}
