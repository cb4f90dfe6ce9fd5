// SPDX-License-Identifier: Apache-2.0
// cmx::bf16: the bfloat16 storage type, with exact conversions to and from float.
#pragma once

#include <bit>
#include <cstdint>

namespace cmx {

/// bfloat16 as stored: the upper 16 bits of an IEEE-754 binary32. Arithmetic is done in float.
struct bf16 {
  std::uint16_t bits = 0;

  /// Widens exactly (every bf16 is a float).
  constexpr float to_float() const noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
  }

  /// Rounds a float to the nearest bf16, ties to even. NaN stays NaN (quiet, sign kept);
  /// values past the largest bf16 become +-Inf, as IEEE round-to-nearest does.
  static constexpr bf16 from_float(float value) noexcept {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(value);
    if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep sign, force the quiet bit
      return bf16{static_cast<std::uint16_t>((u >> 16) | 0x0040u)};
    }
    const std::uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);
    return bf16{static_cast<std::uint16_t>((u + rounding_bias) >> 16)};
  }

  friend constexpr bool operator==(bf16 a, bf16 b) noexcept { return a.bits == b.bits; }
};

static_assert(sizeof(bf16) == 2, "bf16 must be two bytes: buffers are laid out in bf16 elements");

}  // namespace cmx
