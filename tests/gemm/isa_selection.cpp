// SPDX-License-Identifier: Apache-2.0
// Which tier the GEMMs run: the best this CPU has, the one CMX_ISA names (ctest runs this test
// once per tier with CMX_ISA set), or a clear error for a tier the CPU lacks.
#include <doctest/doctest.h>

#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cmx/gemm/gemm.hpp"
#include "gemm_harness.hpp"

namespace cpu = cmx::cpu;
namespace gemm = cmx::gemm;

TEST_CASE("the GEMM runs the tier CMX_ISA names (else the best), or refuses a tier the CPU lacks") {
  const char* forced = std::getenv(cpu::kIsaEnvironmentVariable);
  const std::optional<cpu::Isa> named = forced && *forced ? cpu::parse_isa(forced) : std::nullopt;
  const cpu::Isa expected = named ? *named : cpu::best_isa(cpu::KernelFamily::int8_matmul);
  const std::string expecting = "CMX_ISA=" + std::string(forced ? forced : "(unset)") +
                                ": expecting the " + cpu::to_string(expected) + " tier";
  MESSAGE(expecting);
  std::mt19937 random(101);
  const auto a = cmx::test::random_codes(9 * 96, cmx::test::Codes::uniform, random);
  const auto a_scales = cmx::test::random_scales(9, 1e-3f, 1e-1f, random);
  const auto b = cmx::test::random_weights(48, 96, cmx::test::Codes::extreme, random);
  cmx::tbb_backend::World world({.num_ranks = 1, .blocks_per_rank = 2});  // no tier requested
  world.run([&](cmx::test::Device device) {
    if (!cpu::runs(expected, cpu::KernelFamily::int8_matmul)) {
      std::vector<float> c(9 * 48);
      const gemm::PackedWeights packed = b.pack(device);  // packing is the layout's: no tier
      try {
        gemm::gemm(device, gemm::GemmArgs<float>{
                               .a = a, .a_scales = a_scales, .b = packed, .c = c, .m = 9});
        FAIL("the GEMM ran a tier this CPU lacks");
      } catch (const cmx::Error& error) {
        CHECK(error.code() == cmx::ErrorCode::invalid_argument);
        CHECK(std::string(error.what()).find("micro-kernels need") != std::string::npos);
      }
      return;
    }
    CHECK(device.int8_isa() == expected);
    const gemm::PackedWeights packed = b.pack(device);
    std::vector<float> c(9 * 48);
    gemm::gemm(device,
               gemm::GemmArgs<float>{.a = a, .a_scales = a_scales, .b = packed, .c = c, .m = 9});
    const auto want = cmx::reference::dequantize(cmx::reference::matmul_int8(a, b.codes, 9, 48, 96),
                                                 a_scales, b.scales);
    CHECK(cmx::test::first_difference(c, want, 48).empty());
  });
}
