// SPDX-License-Identifier: Apache-2.0
// Bad shapes, unpacked weights and weights packed for another layout: each a clear cmx::Error,
// raised before the kernel writes anything.
#include <doctest/doctest.h>

#include <array>
#include <random>
#include <string>
#include <vector>

#include "cmx/gemm/gemm.hpp"
#include "gemm_harness.hpp"

namespace gemm = cmx::gemm;
using cmx::bf16;
using cmx::test::Codes;
using cmx::test::Device;

namespace {

/// Runs `call`, REQUIREs a cmx::Error of `code` whose message contains `needle`.
template <class Call>
void require_error(Call&& call, cmx::ErrorCode code, const std::string& needle) {
  try {
    call();
    FAIL("no error; expected one containing '", needle, "'");
  } catch (const cmx::Error& error) {
    const std::string what = error.what();
    CHECK_MESSAGE(error.code() == code, what);
    CHECK_MESSAGE(what.find(needle) != std::string::npos, "'", needle, "' not in: ", what);
  }
}

/// The TBB device with another packed layout: weights it packs are not the CPU layout.
struct OtherLayoutDevice : Device {
  explicit OtherLayoutDevice(const Device& device) : Device(device) {}
  std::string_view int8_panel_format() const noexcept { return "another layout"; }
};
static_assert(cmx::Int8MatmulDevice<OtherLayoutDevice>);

}  // namespace

TEST_CASE("pack_weights refuses shapes it cannot pack") {
  cmx::test::run_on_tier(cmx::cpu::Isa::scalar, 1, [](Device& device) {
    const std::vector<std::int8_t> codes(64 * 32);
    const std::vector<float> scales(64, 1.0f);
    const auto pack = [&](int n, int k, std::size_t num_codes, std::size_t num_scales) {
      return [&, n, k, num_codes, num_scales] {
        (void)gemm::pack_weights(device, {.codes = std::span(codes).first(num_codes),
                                          .scales = std::span(scales).first(num_scales),
                                          .n = n,
                                          .k = k});
      };
    };
    const auto bad = cmx::ErrorCode::invalid_argument;
    require_error(pack(0, 32, 0, 0), bad, "n = 0");
    require_error(pack(24, 32, 24 * 32, 24), bad, "multiple of 16");
    require_error(pack(64, 8, 64 * 8, 64), bad, "k = 8");
    require_error(pack(16, cmx::kInt8MaxDepth + 16, 16, 16), bad, "at most");
    require_error(pack(64, 32, 64 * 32 - 1, 64), bad, "codes has");
    require_error(pack(64, 32, 64 * 32, 63), bad, "scales has");
  });
}

TEST_CASE("the GEMMs refuse unpacked weights, weights of another layout, and bad shapes") {
  cmx::test::run_on_tier(cmx::cpu::Isa::scalar, 1, [](Device& device) {
    std::mt19937 random(1);
    const cmx::test::Weights weights = cmx::test::random_weights(32, 64, Codes::uniform, random);
    const gemm::PackedWeights packed = weights.pack(device);
    OtherLayoutDevice other(device);
    const gemm::PackedWeights foreign = gemm::pack_weights(
        other, {.codes = weights.codes, .scales = weights.scales, .n = 32, .k = 64});
    const gemm::PackedWeights unpacked;
    const std::vector<std::int8_t> a(4 * 64);
    const std::vector<float> a_scales(4, 1.0f);
    const bf16 sentinel = bf16::from_float(5.0f);
    std::vector<bf16> c(4 * 32, sentinel);
    const auto run = [&](const gemm::PackedWeights& b, std::size_t a_size, std::size_t c_size,
                         int m) {
      return [&, a_size, c_size, m] {
        gemm::gemm(device,
                   gemm::GemmArgs<bf16>{.a = std::span(a).first(a_size),
                                        .a_scales = std::span(a_scales).first(std::min<std::size_t>(
                                            4, static_cast<std::size_t>(std::max(m, 0)))),
                                        .b = b,
                                        .c = std::span(c).first(c_size),
                                        .m = m});
      };
    };
    const auto bad = cmx::ErrorCode::invalid_argument;
    require_error(run(unpacked, a.size(), c.size(), 4), bad, "not packed");
    require_error(run(foreign, a.size(), c.size(), 4), bad, "another layout");
    require_error(run(packed, a.size() - 64, c.size(), 4), bad, "a has");
    require_error(run(packed, a.size(), c.size() - 1, 4), bad, "c has");
    require_error(run(packed, 0, 0, -1), bad, "negative");
    for (const bf16 value : c) REQUIRE(value == sentinel);  // nothing was written

    // Grouped: offsets and weights that do not fit.
    std::vector<gemm::PackedWeights> groups;
    groups.push_back(weights.pack(device));
    groups.push_back(weights.pack(device));
    const auto contiguous = [&](std::vector<std::int32_t> offsets) {
      return [&, offsets] {
        gemm::grouped_gemm_contiguous(
            device,
            gemm::ContiguousGemmArgs<bf16>{
                .a = a, .a_scales = a_scales, .group_offsets = offsets, .weights = groups, .c = c});
      };
    };
    require_error(contiguous({0, 4}), bad, "group_offsets has");
    require_error(contiguous({1, 2, 4}), bad, "run from 1");
    require_error(contiguous({0, 3, 2}), bad, "run from 0 to 2");
    require_error(contiguous({0, 5, 4}), bad, "decrease at group 1");
    require_error(contiguous({0, 3, 1, 4}), bad, "group_offsets has");
    groups.push_back(gemm::PackedWeights());
    require_error(contiguous({0, 1, 2, 4}), bad, "not packed");
    for (const bf16 value : c) REQUIRE(value == sentinel);

    // Masked: counts past the capacity, weights of another depth.
    std::vector<std::int32_t> counts = {1, 3};
    const gemm::MaskedRows rows{.num_groups = 2,
                                .num_segments = 1,
                                .capacity = 2,
                                .k = 64,
                                .counts = counts,
                                .codes = reinterpret_cast<const std::byte*>(a.data()),
                                .row_stride = 64,
                                .scales = reinterpret_cast<const std::byte*>(a_scales.data()),
                                .scale_stride = sizeof(float)};
    groups.pop_back();
    const auto masked = [&](const gemm::MaskedRows& view, std::size_t c_size) {
      return [&, c_size] {
        gemm::grouped_gemm_masked(
            device, gemm::MaskedGemmArgs<bf16>{
                        .a = view, .weights = groups, .c = std::span(c).first(c_size)});
      };
    };
    require_error(masked(rows, c.size()), bad, "outside [0, 2]");
    counts[1] = 2;
    require_error(masked(rows, c.size() - 32), bad, "c has");
    gemm::MaskedRows deeper = rows;
    deeper.k = 128;
    deeper.row_stride = 128;
    require_error(masked(deeper, c.size()), bad, "depth k = 64");
    // Packed (counts {1, 2} in 4 slots): first_slots of the wrong size, a segment past the
    // slots, a negative first slot.
    std::array<std::int32_t, 2> first_slots = {0, 3};
    gemm::MaskedRows packed_rows = rows;
    packed_rows.num_packed_slots = 4;
    packed_rows.first_slots = std::span(first_slots).first(1);
    require_error(masked(packed_rows, c.size()), bad, "first_slots has 1 elements");
    packed_rows.first_slots = first_slots;
    require_error(masked(packed_rows, c.size()), bad,
                  "of 2 rows from slot 3 is outside the 4 slots");
    first_slots = {-1, 0};
    require_error(masked(packed_rows, c.size()), bad, "from slot -1");
    first_slots = {1, 0};  // segment 1's slots 0 and 1, segment 0's slot 1
    require_error(masked(packed_rows, c.size()), bad, "packed segments overlap at slot 1");
    gemm::MaskedRows no_first_slots = rows;
    no_first_slots.num_packed_slots = 4;
    require_error(masked(no_first_slots, c.size()), bad, "num_packed_slots is 4 without");
    for (const bf16 value : c) REQUIRE(value == sentinel);
  });
}

TEST_CASE(
    "expert_ffn refuses weights of the wrong shapes and an intermediate too big for local memory") {
  cmx::test::run_on_tier(cmx::cpu::Isa::scalar, 1, [](Device& device) {
    std::mt19937 random(2);
    const auto pack = [&](int n, int k) {
      return cmx::test::random_weights(n, k, Codes::uniform, random).pack(device);
    };
    const std::vector<std::int8_t> x(64);
    const std::vector<float> x_scales(1, 1.0f);
    const std::vector<std::int32_t> counts = {1};
    const gemm::MaskedRows rows{.num_groups = 1,
                                .num_segments = 1,
                                .capacity = 1,
                                .k = 64,
                                .counts = counts,
                                .codes = reinterpret_cast<const std::byte*>(x.data()),
                                .row_stride = 64,
                                .scales = reinterpret_cast<const std::byte*>(x_scales.data()),
                                .scale_stride = sizeof(float)};
    std::vector<bf16> out(64);
    const auto run = [&](int intermediate, int down_n, int down_k) {
      std::vector<gemm::ExpertWeights> experts;
      experts.push_back({pack(intermediate, 64), pack(intermediate, 64), pack(down_n, down_k)});
      gemm::ExpertFfnWorkspace workspace(rows.num_slots(), intermediate);
      gemm::expert_ffn(device, {.x = rows, .experts = experts, .out = out, .workspace = workspace});
    };
    const auto bad = cmx::ErrorCode::invalid_argument;
    require_error([&] { run(32, 64, 48); }, bad, "expert_ffn (down)");
    require_error([&] { run(32, 48, 32); }, bad, "expert_ffn (down)");
    // 2 bytes per row and intermediate channel (h in bf16): 100000 channels need 200 KB > 192 KiB.
    require_error([&] { run(100000, 64, 100000); }, cmx::ErrorCode::capacity, "local memory");
    // A workspace for fewer slots or another intermediate size.
    std::vector<gemm::ExpertWeights> experts;
    experts.push_back({pack(32, 64), pack(32, 64), pack(64, 32)});
    gemm::ExpertFfnWorkspace no_slots(0, 32), wrong_width(1, 48);
    for (gemm::ExpertFfnWorkspace* workspace : {&no_slots, &wrong_width})
      require_error(
          [&] {
            gemm::expert_ffn(device,
                             {.x = rows, .experts = experts, .out = out, .workspace = *workspace});
          },
          bad, "the workspace holds");
  });
}
