// SPDX-License-Identifier: Apache-2.0
// The Ascend device's row operations (quantize, accumulate, round on the vector unit, a chunk
// at a time) against the CPU definitions, bit for bit, on the rows that decide rounding and
// poisoning: ties, zeros, rows under the flush threshold, Inf, NaN, lengths across chunks. Run
// in the simulation, by a test kernel launched through its own AIV entry, as an engine's would.
#include <doctest/doctest.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "cmx/backend/ascend.hpp"
#include "cmx/core/quantize.hpp"
#include "sim_harness.hpp"

namespace test_kernels {

/// One block: for each of `num_rows` rows of `hidden` bf16 at `rows` (GM), quantizes it into
/// `codes` and `scales`, accumulates it and the next row with `weights[r][0]` and `[1]` into
/// `acc` and rounds `acc` into `rounded`, all through the device's row operations.
struct RowOps {
  cmx::ascend::Device device;
  const cmx::bf16* rows;  // [num_rows][hidden]
  const float* weights;   // [num_rows][8]: [0] and [1] used (32 B aligned rows of 8)
  float* acc;             // [num_rows][hidden], in: the accumulator, out: after accumulate
  std::int8_t* codes;     // [num_rows][hidden]
  float* scales;          // [num_rows][8]: the scale in [0]
  cmx::bf16* rounded;     // [num_rows][hidden]
  int num_rows;
  int hidden;

  void operator()(cmx::Block& block) {
    const auto n = static_cast<std::size_t>(hidden);
    for (int r = 0; r < num_rows; ++r) {
      block.local.reset();
      const std::size_t at = static_cast<std::size_t>(r) * n;
      const auto row = device.stage_in(block.local, rows + at, n);
      const std::size_t after_row = block.local.mark();
      const std::span<std::int8_t> row_codes = block.local.take<std::int8_t>(n);
      const std::span<float> scale = block.local.take<float>(8);
      scale[0] = device.quantize_row_int8(row, row_codes);
      device.store(codes + at, std::span<const std::int8_t>(row_codes));
      device.store(scales + 8 * r, std::span<const float>(scale));
      block.local.rewind(after_row);  // (at hidden 16384 the Unified Buffer holds no more)
      const std::span<float> sums = block.local.take<float>(n);
      device.load(sums, acc + at);
      // This row and the next, with weights [0] and [1] of its eight: two additions in order.
      const auto row_weights = device.stage_in(block.local, weights + 8 * r, 8).first(2);
      const std::size_t before_next = block.local.mark();
      const std::size_t next_at = static_cast<std::size_t>((r + 1) % num_rows) * n;
      const std::array<std::span<const cmx::bf16>, 2> pair{
          row, device.stage_in(block.local, rows + next_at, n)};
      device.accumulate_weighted_rows(sums, pair, row_weights);
      device.store(acc + at, std::span<const float>(sums));
      block.local.rewind(before_next);
      const std::span<cmx::bf16> out = block.local.take<cmx::bf16>(n);
      device.round_row_to_bf16(sums, out);
      device.store(rounded + at, std::span<const cmx::bf16>(out));
    }
  }
};

}  // namespace test_kernels

CMX_ASCEND_DECLARE_ENTRY(test_ascend_row_ops, ::test_kernels::RowOps)
CMX_ASCEND_DEFINE_KERNEL(test_ascend_row_ops, ::test_kernels::RowOps)

namespace {

using cmx::bf16;

bf16 from_bits(std::uint16_t bits) {
  return bf16{bits};
}

/// Rows that decide the quantization: random, exact ties of x * 127 / amax, zeros, a row under
/// the flush threshold, one at it, one with Inf and one with NaN (each beside large values).
std::vector<bf16> edge_rows(int hidden, int& num_rows) {
  std::mt19937 random(static_cast<unsigned>(hidden));
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<std::vector<bf16>> rows;
  const auto n = static_cast<std::size_t>(hidden);
  std::vector<bf16> row(n);
  for (bf16& v : row) v = bf16::from_float(normal(random));
  rows.push_back(row);
  // amax 127: x * 127 / 127 = x, so x = k + 1/2 is a tie for every k.
  for (std::size_t i = 0; i < n; ++i)
    row[i] = bf16::from_float(i == 0 ? 127.0f : static_cast<float>(i % 100) - 49.5f);
  rows.push_back(row);
  rows.push_back(std::vector<bf16>(n, from_bits(0x8000)));  // -0
  std::fill(row.begin(), row.end(), from_bits(0x0280));     // under 2^-121
  rows.push_back(row);
  row[n / 2] = from_bits(0x0300);  // exactly 2^-121, the rest subnormal-scale
  rows.push_back(row);
  for (std::size_t i = 0; i < n; ++i) row[i] = bf16::from_float(normal(random));
  row[n - 1] = from_bits(0x7f80);  // +Inf, in the last chunk
  rows.push_back(row);
  row[n - 1] = bf16::from_float(1.0f);
  row[n / 3] = from_bits(0x7fc1);  // NaN
  rows.push_back(row);
  num_rows = static_cast<int>(rows.size());
  std::vector<bf16> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return flat;
}

}  // namespace

TEST_CASE("Ascend (simulated): the vector row operations are the CPU's, bit for bit") {
  for (const int hidden : {16, 48, 2048, 2064, 7168, 16384}) {
    INFO("hidden ", hidden);
    int num_rows = 0;
    const std::vector<bf16> rows = edge_rows(hidden, num_rows);
    const auto n = static_cast<std::size_t>(hidden);
    std::vector<float> weights(8 * static_cast<std::size_t>(num_rows));
    std::vector<float> acc(rows.size());
    std::mt19937 random(7);
    std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
    for (float& a : acc) a = uniform(random);
    acc[0] = -0.0f;
    for (int r = 0; r < num_rows; ++r)
      for (const std::size_t k : {0u, 1u})
        weights[8 * static_cast<std::size_t>(r) + k] = uniform(random);
    weights[0] = weights[1] = 0.0f;  // acc[0] = -0 plus two products 0 * x: a zero's sign

    std::vector<std::int8_t> codes;
    std::vector<float> scales;
    std::vector<float> acc_after;
    std::vector<bf16> rounded;
    cmx::ascend_sim::Machine machine({.num_npus = 1, .cores_per_npu = 1});
    machine.run([&](int) {
      cmx::ascend::World world({.max_blocks = 1});
      const cmx::test::GmTensor<bf16> rows_gm(rows);
      const cmx::test::GmTensor<float> weights_gm(weights);
      const cmx::test::GmTensor<float> acc_gm(acc);
      const cmx::test::GmTensor<std::int8_t> codes_gm(rows.size());
      const cmx::test::GmTensor<float> scales_gm(weights.size());
      const cmx::test::GmTensor<bf16> rounded_gm(rows.size());
      world.device().launch(
          1, test_kernels::RowOps{world.device(), rows_gm.data(), weights_gm.data(), acc_gm.data(),
                                  codes_gm.data(), scales_gm.data(), rounded_gm.data(), num_rows,
                                  hidden});
      codes = codes_gm.download();
      scales = scales_gm.download();
      acc_after = acc_gm.download();
      rounded = rounded_gm.download();
    });

    for (int r = 0; r < num_rows; ++r) {
      INFO("row ", r);
      const std::size_t at = static_cast<std::size_t>(r) * n;
      const std::span<const bf16> row(rows.data() + at, n);
      std::vector<std::int8_t> want_codes(n);
      const float want_scale = cmx::quantize_row_int8(row, want_codes);
      CHECK(std::bit_cast<std::uint32_t>(scales[8 * static_cast<std::size_t>(r)]) ==
            std::bit_cast<std::uint32_t>(want_scale));
      CHECK(std::equal(want_codes.begin(), want_codes.end(), codes.begin() + at));
      std::vector<float> want_acc(acc.begin() + at, acc.begin() + at + n);
      const std::size_t next_at = static_cast<std::size_t>((r + 1) % num_rows) * n;
      const std::array<std::span<const bf16>, 2> pair{
          row, std::span<const bf16>(rows.data() + next_at, n)};
      cmx::accumulate_weighted_rows(
          want_acc, pair,
          std::span<const float>(weights).subspan(8 * static_cast<std::size_t>(r), 2));
      std::vector<bf16> want_rounded(n);
      cmx::round_row_to_bf16(want_acc, want_rounded);
      bool same_acc = true;
      bool same_rounded = true;
      for (std::size_t i = 0; i < n; ++i) {
        same_acc = same_acc && std::bit_cast<std::uint32_t>(acc_after[at + i]) ==
                                   std::bit_cast<std::uint32_t>(want_acc[i]);
        same_rounded = same_rounded && rounded[at + i].bits == want_rounded[i].bits;
      }
      CHECK(same_acc);
      CHECK(same_rounded);
    }
    // The rows do reach the cases they are for.
    CHECK(std::isnan(scales[8 * 5]));                      // Inf
    CHECK(std::isnan(scales[8 * 6]));                      // NaN
    CHECK(scales[8 * 3] == 0.0f);                          // flushed
    CHECK(scales[8 * 4] == std::ldexp(1.0f, -121) / 127);  // at the threshold: kept
  }
}
