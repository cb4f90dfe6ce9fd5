// SPDX-License-Identifier: Apache-2.0
// Every tier of the bf16 attention tile operations this CPU runs agrees with the scalar tier,
// on ragged tiles; the device forwards to the tier it was given.
#include <doctest/doctest.h>

#include <utility>

#include "attention/mla_harness.hpp"

namespace {

namespace cpu = cmx::cpu;

TEST_CASE("each tier's tile operations agree with the scalar tier on ragged tiles") {
  const std::pair<int, int> shapes[] = {{1, 1},   {1, 64},  {5, 7},   {16, 16}, {17, 2},
                                        {32, 64}, {33, 37}, {48, 13}, {64, 64}, {3, 63}};
  for (const cpu::Isa isa : cmx::test::runnable_tiers()) {
    if (isa == cpu::Isa::scalar) continue;
    std::uint32_t seed = 1;
    for (const auto& [num_queries, num_keys] : shapes) {
      const int queries = num_queries, keys = num_keys;  // (clang 14 captures no bindings)
      INFO("tier ", cpu::to_string(isa), ", ", queries, " queries, ", keys, " keys");
      const std::string mismatch = cpu::bf16_attention::compare_with_scalar(
          cpu::bf16_attention::tile_operations(isa), queries, keys, seed++);
      CHECK_MESSAGE(mismatch.empty(), mismatch);
    }
  }
}

TEST_CASE("the TBB device runs the tier it is given, and refuses one this CPU lacks") {
  cmx::tbb_backend::World world({.num_ranks = 1});
  world.run([](cmx::tbb_backend::Device device) {
    for (const cpu::Isa isa : cpu::kAllIsas) {
      if (cpu::runs(isa, cpu::KernelFamily::bf16_matmul)) {
        CHECK(device.with_bf16_isa(isa).bf16_isa() == isa);
      } else {
        CHECK_THROWS_AS((void)device.with_bf16_isa(isa), cmx::Error);
      }
    }
    CHECK(device.bf16_isa() == cpu::resolve_isa(cpu::KernelFamily::bf16_matmul));
  });
}

}  // namespace
