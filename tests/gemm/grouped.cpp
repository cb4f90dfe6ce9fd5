// SPDX-License-Identifier: Apache-2.0
// The grouped GEMMs on every tier this CPU runs, bitwise against the reference group by group:
// contiguous (with empty groups, one group taking every row) and masked (segments with empty
// ones, scales inline after each row or in their own array, slots left unwritten).
#include "cmx/gemm/grouped.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "gemm_harness.hpp"

namespace gemm = cmx::gemm;
using cmx::bf16;
using cmx::test::Codes;
using cmx::test::Device;

namespace {

constexpr int kN = 80;
constexpr int kK = 592;  // past one 512-deep step, not a multiple of 64

std::vector<cmx::test::Weights> random_experts(int num_groups, std::mt19937& random) {
  std::vector<cmx::test::Weights> experts;
  for (int g = 0; g < num_groups; ++g)
    experts.push_back(cmx::test::random_weights(kN, kK, Codes::uniform, random));
  return experts;
}

std::vector<gemm::PackedWeights> pack_all(Device& device,
                                          const std::vector<cmx::test::Weights>& experts) {
  std::vector<gemm::PackedWeights> packed;
  for (const auto& expert : experts) packed.push_back(expert.pack(device));
  return packed;
}

/// The expected bf16 output row of `codes` (k codes) with `scale` through `weights`.
std::vector<bf16> expected_row(const std::int8_t* codes, float scale,
                               const cmx::test::Weights& weights) {
  const std::vector<std::int8_t> row(codes, codes + kK);
  const std::vector<float> scales{scale};
  return cmx::reference::to_bf16(cmx::reference::dequantize(
      cmx::reference::matmul_int8(row, weights.codes, 1, kN, kK), scales, weights.scales));
}

}  // namespace

TEST_CASE("contiguous grouped gemm: every group's rows against its own weights, empty groups too") {
  // Rows per group: mixed with empties, one group taking every row, all empty.
  const std::vector<std::vector<int>> layouts = {
      {5, 0, 61, 1, 0, 17}, {0, 0, 130, 0}, {0, 0, 0}, {1}};
  cmx::test::for_each_tier([&](cmx::cpu::Isa isa) {
    cmx::test::run_on_tier(isa, 2, [&](Device& device) {
      std::mt19937 random(31);
      for (const std::vector<int>& group_rows : layouts) {
        const int num_groups = static_cast<int>(group_rows.size());
        const auto experts = random_experts(num_groups, random);
        const auto packed = pack_all(device, experts);
        std::vector<std::int32_t> offsets = {0};
        for (const int rows : group_rows) offsets.push_back(offsets.back() + rows);
        const std::size_t total = static_cast<std::size_t>(offsets.back());
        const auto a = cmx::test::random_codes(total * kK, Codes::uniform, random);
        const auto a_scales = cmx::test::random_scales(total, 1e-3f, 1e-1f, random);
        std::vector<bf16> c(total * kN);
        gemm::grouped_gemm_contiguous(
            device,
            gemm::ContiguousGemmArgs<bf16>{
                .a = a, .a_scales = a_scales, .group_offsets = offsets, .weights = packed, .c = c});
        std::vector<bf16> expected;
        for (int g = 0; g < num_groups; ++g)
          for (std::int32_t i = offsets[static_cast<std::size_t>(g)];
               i < offsets[static_cast<std::size_t>(g) + 1]; ++i) {
            const auto row = expected_row(a.data() + static_cast<std::size_t>(i) * kK,
                                          a_scales[static_cast<std::size_t>(i)],
                                          experts[static_cast<std::size_t>(g)]);
            expected.insert(expected.end(), row.begin(), row.end());
          }
        const std::string difference = cmx::test::first_difference(c, expected, kN);
        CHECK_MESSAGE(difference.empty(), "groups of ", group_rows.size(), ": ", difference);
      }
    });
  });
}

TEST_CASE(
    "masked grouped gemm reads rows in place, static or packed, and writes exactly the valid "
    "slots") {
  constexpr int kGroups = 4, kSegments = 3, kCapacity = 24;
  constexpr std::size_t kRowStride = kK + 32 + 32;  // codes, padding, then a 32-byte "meta"
  constexpr std::size_t kScaleOffset = kK + 32;
  const std::vector<std::vector<int>> count_layouts = {
      {3, 0, 7, 0, 0, 0, 24, 1, 19, 2, 0, 5},     // mixed, empty segments and an empty group
      {0, 0, 0, 24, 24, 24, 0, 0, 0, 0, 0, 0},    // one group takes every row
      std::vector<int>(kGroups * kSegments, 0)};  // nothing at all
  cmx::test::for_each_tier([&](cmx::cpu::Isa isa) {
    cmx::test::run_on_tier(isa, 3, [&](Device& device) {
      std::mt19937 random(41);
      const auto experts = random_experts(kGroups, random);
      const auto packed = pack_all(device, experts);
      for (const bool inline_scales : {true, false})
        for (const bool packed_layout : {false, true})
          for (const std::vector<int>& counts : count_layouts) {
            CAPTURE(inline_scales);
            CAPTURE(packed_layout);
            // Packed: the segments one after another in reverse order, as no static layout has
            // them (the last segment at slot 0), each followed by an unused slot, as dispatch's
            // receive area leaves some.
            std::vector<std::int32_t> first_slots;
            std::size_t packed_slots = 0;
            if (packed_layout) {
              first_slots.resize(counts.size());
              for (std::size_t segment = counts.size(); segment-- > 0;) {
                first_slots[segment] = static_cast<std::int32_t>(packed_slots);
                packed_slots += static_cast<std::size_t>(counts[segment]) + 1;
              }
            }
            // The slot of row `slot` of segment (g, s), computed here, not by MaskedRows.
            const auto slot_of = [&](int g, int s, int slot) {
              const std::size_t segment = static_cast<std::size_t>(g * kSegments + s);
              return (packed_layout ? static_cast<std::size_t>(first_slots[segment])
                                    : segment * kCapacity) +
                     static_cast<std::size_t>(slot);
            };
            const std::size_t slots = static_cast<std::size_t>(kGroups) * kSegments * kCapacity;
            // Every slot filled, valid or not: reading an invalid slot would show.
            std::vector<std::byte> buffer(slots * kRowStride);
            const auto codes = cmx::test::random_codes(buffer.size(), Codes::uniform, random);
            std::memcpy(buffer.data(), codes.data(), buffer.size());
            const auto scales = cmx::test::random_scales(slots, 1e-3f, 1e-1f, random);
            for (std::size_t i = 0; i < slots; ++i)
              std::memcpy(buffer.data() + i * kRowStride + kScaleOffset, &scales[i], sizeof(float));
            const gemm::MaskedRows rows{
                .num_groups = kGroups,
                .num_segments = kSegments,
                .capacity = kCapacity,
                .k = kK,
                .counts = counts,
                .first_slots = first_slots,
                .num_packed_slots = packed_slots,
                .codes = buffer.data(),
                .row_stride = kRowStride,
                .scales = inline_scales ? buffer.data() + kScaleOffset
                                        : reinterpret_cast<const std::byte*>(scales.data()),
                .scale_stride = inline_scales ? kRowStride : sizeof(float)};
            const bf16 sentinel = bf16::from_float(-777.0f);
            std::vector<bf16> c(rows.num_slots() * kN, sentinel);
            gemm::grouped_gemm_masked(
                device, gemm::MaskedGemmArgs<bf16>{.a = rows, .weights = packed, .c = c});
            std::vector<bf16> expected(c.size(), sentinel);
            for (int g = 0; g < kGroups; ++g)
              for (int s = 0; s < kSegments; ++s)
                for (int slot = 0; slot < rows.count(g, s); ++slot) {
                  const std::size_t i = slot_of(g, s, slot);
                  const auto row = expected_row(
                      reinterpret_cast<const std::int8_t*>(buffer.data() + i * kRowStride),
                      scales[i], experts[static_cast<std::size_t>(g)]);
                  std::copy(row.begin(), row.end(),
                            expected.begin() + static_cast<std::ptrdiff_t>(i * kN));
                }
            const std::string difference = cmx::test::first_difference(c, expected, kN);
            CHECK_MESSAGE(difference.empty(), difference);
          }
    });
  });
}
