// SPDX-License-Identifier: Apache-2.0
// Shared by the gemm tests: random operands, a run on every instruction-set tier this CPU has,
// and comparisons that name the first differing coordinate.
#pragma once

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cmx/cmx.hpp"
#include "cmx/reference/gemm.hpp"

namespace cmx::test {

using Device = tbb_backend::Device;

/// How int8 codes are drawn.
enum class Codes {
  uniform,  // uniform over [-128, 127]
  extreme,  // only -128 and 127: the largest products and sums
};

inline std::vector<std::int8_t> random_codes(std::size_t count, Codes codes, std::mt19937& random) {
  std::uniform_int_distribution<int> any(-128, 127);
  std::bernoulli_distribution coin;
  std::vector<std::int8_t> values(count);
  for (std::int8_t& value : values)
    value = static_cast<std::int8_t>(codes == Codes::extreme ? (coin(random) ? 127 : -128)
                                                             : any(random));
  return values;
}

/// Scales in [lo, hi), log-uniform.
inline std::vector<float> random_scales(std::size_t count, float lo, float hi,
                                        std::mt19937& random) {
  std::uniform_real_distribution<float> exponent(std::log2(lo), std::log2(hi));
  std::vector<float> values(count);
  for (float& value : values) value = std::exp2(exponent(random));
  return values;
}

/// Runs body(Device&) on a 1-rank World of `blocks` blocks whose int8 tile products run `isa`.
template <class Body>
void run_on_tier(cpu::Isa isa, int blocks, Body&& body) {
  tbb_backend::World world({.num_ranks = 1, .blocks_per_rank = blocks});
  world.run([&](Device any_tier) {
    Device device = any_tier.with_int8_isa(isa);
    REQUIRE(device.int8_isa() == isa);
    body(device);
  });
}

/// Calls body(isa) for every tier of the int8 micro-kernels this CPU runs; says which it skips
/// and why (every tier the machine has runs in the test command).
template <class Body>
void for_each_tier(Body&& body) {
  for (const cpu::Isa isa : cpu::kAllIsas) {
    const cpu::Requirement needed =
        cpu::requirement(isa, cpu::KernelFamily::int8_matmul, cpu::features());
    if (!needed.met) {
      const std::string skipped = "tier " + std::string(cpu::to_string(isa)) +
                                  " skipped: it needs " + needed.needs + "; this CPU has " +
                                  cpu::describe(cpu::features());
      MESSAGE(skipped);
      continue;
    }
    const std::string tier = cpu::to_string(isa);
    INFO("tier ", tier);
    body(isa);
  }
}

/// "" if got == expected bitwise, else the first differing element as "[row, column]" of a
/// [rows][columns] array, with both values.
template <class T>
std::string first_difference(const std::vector<T>& got, const std::vector<T>& expected,
                             std::size_t columns) {
  if (got.size() != expected.size())
    return "sizes differ: " + std::to_string(got.size()) + " vs " + std::to_string(expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    bool same;
    double got_value, expected_value;
    if constexpr (std::is_same_v<T, bf16>) {
      same = got[i].bits == expected[i].bits;
      got_value = got[i].to_float();
      expected_value = expected[i].to_float();
    } else if constexpr (std::is_same_v<T, float>) {
      same = std::bit_cast<std::uint32_t>(got[i]) == std::bit_cast<std::uint32_t>(expected[i]);
      got_value = got[i];
      expected_value = expected[i];
    } else {
      same = got[i] == expected[i];
      got_value = static_cast<double>(got[i]);
      expected_value = static_cast<double>(expected[i]);
    }
    if (!same) {
      std::ostringstream text;
      text << "first difference at [" << i / columns << ", " << i % columns << "]: got "
           << got_value << ", expected " << expected_value;
      return text.str();
    }
  }
  return "";
}

/// Unpacked weights [n, k] with scales, and their packing for a device.
struct Weights {
  std::vector<std::int8_t> codes;  // [n, k]
  std::vector<float> scales;       // [n]
  int n = 0;
  int k = 0;

  gemm::PackedWeights pack(Device& device) const {
    return gemm::pack_weights(device, {.codes = codes, .scales = scales, .n = n, .k = k});
  }
};

inline Weights random_weights(int n, int k, Codes codes, std::mt19937& random) {
  return {random_codes(static_cast<std::size_t>(n) * static_cast<std::size_t>(k), codes, random),
          random_scales(static_cast<std::size_t>(n), 1e-3f, 1e-2f, random), n, k};
}

}  // namespace cmx::test
