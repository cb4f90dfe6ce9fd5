// SPDX-License-Identifier: Apache-2.0
// cmx::bf16 conversions against the independent reference rounding.
#include "cmx/core/bf16.hpp"

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "cmx/reference/quantize.hpp"

using cmx::bf16;

TEST_CASE("every bf16 widens exactly and narrows back to itself") {
  for (std::uint32_t bits = 0; bits <= 0xffff; ++bits) {
    const bf16 value{static_cast<std::uint16_t>(bits)};
    const float wide = value.to_float();
    if (std::isnan(wide)) {
      CHECK(std::isnan(bf16::from_float(wide).to_float()));
      continue;
    }
    REQUIRE_MESSAGE(bf16::from_float(wide).bits == bits, "bits ", bits);
  }
}

TEST_CASE("float to bf16 rounds to nearest, ties to even, as the reference does") {
  std::mt19937 random(42);
  const auto check = [](std::uint32_t float_bits) {
    const float value = std::bit_cast<float>(float_bits);
    const bf16 fast = bf16::from_float(value);
    const bf16 slow = cmx::reference::round_to_bf16(value);
    REQUIRE_MESSAGE(fast.bits == slow.bits, "float bits ", float_bits, " fast ", fast.bits,
                    " reference ", slow.bits);
  };
  for (int i = 0; i < 2'000'000; ++i) check(static_cast<std::uint32_t>(random()));
  // Exact ties (low half 0x8000) on both parities, the largest finite values and overflow.
  for (std::uint32_t high = 0; high <= 0xffff; ++high) {
    check((high << 16) | 0x8000u);
    check((high << 16) | 0x7fffu);
    check((high << 16) | 0x8001u);
  }
  CHECK(bf16::from_float(std::numeric_limits<float>::max()).bits == 0x7f80);  // rounds to Inf
  CHECK(bf16::from_float(-0.0f).bits == 0x8000);
  CHECK(bf16::from_float(1.0f).bits == 0x3f80);
  CHECK(std::isnan(bf16::from_float(std::numeric_limits<float>::quiet_NaN()).to_float()));
  // A signalling NaN whose payload sits in the low bits must not turn into Inf.
  CHECK(std::isnan(bf16::from_float(std::bit_cast<float>(0x7f800001u)).to_float()));
}
