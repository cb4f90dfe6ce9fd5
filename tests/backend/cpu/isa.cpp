// SPDX-License-Identifier: Apache-2.0
// cmx::cpu: tier names, selection and the errors for a tier this CPU cannot run.
#include "cmx/backend/cpu/isa.hpp"

#include <doctest/doctest.h>

namespace cpu = cmx::cpu;

TEST_CASE("ISA tiers round-trip through their names, unknown names are rejected") {
  for (const cpu::Isa isa : cpu::kAllIsas) CHECK(cpu::parse_isa(cpu::to_string(isa)) == isa);
  CHECK_FALSE(cpu::parse_isa("sse9").has_value());
  CHECK_FALSE(cpu::parse_isa("").has_value());
}

TEST_CASE("the best tier runs, scalar always runs, and the tiers are nested") {
  for (const auto family : {cpu::KernelFamily::int8_matmul, cpu::KernelFamily::bf16_matmul}) {
    CHECK(cpu::runs(cpu::Isa::scalar, family));
    CHECK(cpu::runs(cpu::best_isa(family), family));
    // A CPU with a tier has every tier below it (the micro-kernels assume it).
    for (const cpu::Isa isa : cpu::kAllIsas)
      if (cpu::runs(isa, family))
        for (const cpu::Isa lower : cpu::kAllIsas)
          if (lower < isa) CHECK(cpu::runs(lower, family));
  }
}

TEST_CASE("requesting a tier this CPU cannot run is an error that names what is missing") {
  for (const auto family : {cpu::KernelFamily::int8_matmul, cpu::KernelFamily::bf16_matmul})
    for (const cpu::Isa isa : cpu::kAllIsas) {
      if (cpu::runs(isa, family)) {
        CHECK(cpu::resolve_isa(family, isa) == isa);
      } else {
        try {
          (void)cpu::resolve_isa(family, isa);
          FAIL("resolve_isa accepted ", cpu::to_string(isa), " on a CPU without it");
        } catch (const cmx::Error& error) {
          CHECK(error.code() == cmx::ErrorCode::invalid_argument);
          CHECK(std::string(error.what()).find("need") != std::string::npos);
        }
      }
    }
}
