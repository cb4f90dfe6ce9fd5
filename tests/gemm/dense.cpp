// SPDX-License-Identifier: Apache-2.0
// The dense W8A8 GEMM on every tier this CPU runs: its int32 sums against the scalar reference
// and against Eigen (bitwise, through the defined epilogue), its float output against fp64
// within the documented tolerance, and the same bytes whatever the block count.
#include "cmx/gemm/dense.hpp"

#include <doctest/doctest.h>

#include <Eigen/Core>
#include <cmath>
#include <random>
#include <vector>

#include "gemm_harness.hpp"

namespace gemm = cmx::gemm;
using cmx::bf16;
using cmx::test::Codes;
using cmx::test::Device;

namespace {

struct Shape {
  int m, n, k;
};

// M = 0, 1, odd; N and K at the edges of panels (16), register blocks (64 columns), work items
// (tuning::kRowsPerItem = 120 rows, kPanelsPerItem * 16 = 256 columns) and depth steps
// (kDepthBlock = 8192: K = 8208 takes two tile products per item, the second adding).
const Shape kShapes[] = {{0, 16, 16},   {1, 16, 16},     {1, 64, 1040}, {3, 48, 80},
                         {7, 144, 208}, {17, 32, 528},   {61, 160, 64}, {64, 128, 512},
                         {125, 16, 32}, {33, 272, 1024}, {5, 32, 8208}};
static_assert(cmx::gemm::tuning::kDepthBlock < 8208, "a shape must take two depth steps");

/// Eigen's int32 product of the same codes: a second reference for the sums.
std::vector<std::int32_t> eigen_sums(const std::vector<std::int8_t>& a,
                                     const std::vector<std::int8_t>& b, int m, int n, int k) {
  using Matrix = Eigen::Matrix<std::int32_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Codes8 = Eigen::Matrix<std::int8_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Matrix a32 = Eigen::Map<const Codes8>(a.data(), m, k).cast<std::int32_t>();
  const Matrix b32 = Eigen::Map<const Codes8>(b.data(), n, k).cast<std::int32_t>();
  const Matrix c = a32 * b32.transpose();
  return std::vector<std::int32_t>(c.data(), c.data() + c.size());
}

}  // namespace

TEST_CASE(
    "gemm on every tier: bitwise the reference (int32 sums, then the epilogue), float and bf16") {
  cmx::test::for_each_tier([](cmx::cpu::Isa isa) {
    cmx::test::run_on_tier(isa, 2, [](Device& device) {
      std::mt19937 random(5);
      for (const Shape& shape : kShapes)
        for (const Codes codes : {Codes::uniform, Codes::extreme}) {
          CAPTURE(shape.m);
          CAPTURE(shape.n);
          CAPTURE(shape.k);
          const auto a =
              cmx::test::random_codes(static_cast<std::size_t>(shape.m) * shape.k, codes, random);
          const auto a_scales =
              cmx::test::random_scales(static_cast<std::size_t>(shape.m), 1e-3f, 1e-1f, random);
          const cmx::test::Weights b = cmx::test::random_weights(shape.n, shape.k, codes, random);
          const gemm::PackedWeights packed = b.pack(device);

          const auto sums = cmx::reference::matmul_int8(a, b.codes, shape.m, shape.n, shape.k);
          REQUIRE(sums == eigen_sums(a, b.codes, shape.m, shape.n, shape.k));
          const std::vector<float> expected = cmx::reference::dequantize(sums, a_scales, b.scales);

          std::vector<float> c(static_cast<std::size_t>(shape.m) * shape.n, -1.0f);
          gemm::gemm(device, gemm::GemmArgs<float>{
                                 .a = a, .a_scales = a_scales, .b = packed, .c = c, .m = shape.m});
          const std::string float_difference =
              cmx::test::first_difference(c, expected, static_cast<std::size_t>(shape.n));
          CHECK_MESSAGE(float_difference.empty(), "float output: ", float_difference);

          std::vector<bf16> c_bf16(c.size());
          gemm::gemm(device,
                     gemm::GemmArgs<bf16>{
                         .a = a, .a_scales = a_scales, .b = packed, .c = c_bf16, .m = shape.m});
          const std::string bf16_difference = cmx::test::first_difference(
              c_bf16, cmx::reference::to_bf16(expected), static_cast<std::size_t>(shape.n));
          CHECK_MESSAGE(bf16_difference.empty(), "bf16 output: ", bf16_difference);
        }
    });
  });
}

TEST_CASE(
    "gemm's float output is within 3 ulp of float of the fp64 product, bf16 within 1 bf16 ulp") {
  // The sums are exact; only float(sum) (exact below 2^24), the two scale products and the
  // final rounding err: |c - exact| <= 3 * 2^-24 * |exact| for float (plus one bf16 rounding,
  // 2^-9 relative, for bf16). Checked with the codes of every shape.
  cmx::test::run_on_tier(
      cmx::cpu::best_isa(cmx::cpu::KernelFamily::int8_matmul), 2, [](Device& device) {
        std::mt19937 random(9);
        for (const Shape& shape : kShapes) {
          CAPTURE(shape.m);
          const auto a = cmx::test::random_codes(static_cast<std::size_t>(shape.m) * shape.k,
                                                 Codes::uniform, random);
          const auto a_scales =
              cmx::test::random_scales(static_cast<std::size_t>(shape.m), 1e-4f, 1e2f, random);
          const cmx::test::Weights b =
              cmx::test::random_weights(shape.n, shape.k, Codes::uniform, random);
          const gemm::PackedWeights packed = b.pack(device);
          const auto exact = cmx::reference::matmul_fp64(a, a_scales, b.codes, b.scales, shape.m,
                                                         shape.n, shape.k);
          std::vector<float> c(exact.size());
          std::vector<bf16> c_bf16(exact.size());
          gemm::gemm(device, gemm::GemmArgs<float>{
                                 .a = a, .a_scales = a_scales, .b = packed, .c = c, .m = shape.m});
          gemm::gemm(device,
                     gemm::GemmArgs<bf16>{
                         .a = a, .a_scales = a_scales, .b = packed, .c = c_bf16, .m = shape.m});
          for (std::size_t i = 0; i < exact.size(); ++i) {
            const double bound = 3.0 * std::ldexp(std::fabs(exact[i]), -24) + 1e-30;
            REQUIRE_MESSAGE(std::fabs(c[i] - exact[i]) <= bound, "[", i / shape.n, ", ",
                            i % shape.n, "]: ", c[i], " vs ", exact[i]);
            const double bf16_bound = std::ldexp(std::fabs(exact[i]), -8) + bound;
            REQUIRE_MESSAGE(std::fabs(c_bf16[i].to_float() - exact[i]) <= bf16_bound, "[",
                            i / shape.n, ", ", i % shape.n, "] bf16: ", c_bf16[i].to_float(),
                            " vs ", exact[i]);
          }
        }
      });
}

TEST_CASE("gemm writes the same bytes whatever the block count") {
  std::mt19937 random(21);
  const Shape shape{131, 400, 1104};
  const auto a =
      cmx::test::random_codes(static_cast<std::size_t>(shape.m) * shape.k, Codes::uniform, random);
  const auto a_scales =
      cmx::test::random_scales(static_cast<std::size_t>(shape.m), 1e-3f, 1e-1f, random);
  const cmx::test::Weights b = cmx::test::random_weights(shape.n, shape.k, Codes::uniform, random);
  std::vector<bf16> first;
  for (const int blocks : {1, 2, 3, 8}) {
    CAPTURE(blocks);
    cmx::test::run_on_tier(
        cmx::cpu::best_isa(cmx::cpu::KernelFamily::int8_matmul), blocks, [&](Device& device) {
          const gemm::PackedWeights packed = b.pack(device);
          std::vector<bf16> c(static_cast<std::size_t>(shape.m) * shape.n);
          gemm::gemm(device, gemm::GemmArgs<bf16>{
                                 .a = a, .a_scales = a_scales, .b = packed, .c = c, .m = shape.m});
          if (first.empty()) first = c;
          const std::string difference =
              cmx::test::first_difference(c, first, static_cast<std::size_t>(shape.n));
          CHECK_MESSAGE(difference.empty(), difference);
        });
  }
}
