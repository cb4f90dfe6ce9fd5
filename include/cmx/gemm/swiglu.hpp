// SPDX-License-Identifier: Apache-2.0
// SwiGLU as cmx's expert FFN computes it, h = silu(g) * u, defined as one fixed sequence of
// binary32 operations (its exponential included), so that it vectorizes and gives bitwise the
// same h in every build and on every path.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace cmx::gemm {

namespace detail {

/// e^x split as mantissa * scale, scale = 2^n exactly: Cephes' expf (range reduction by ln 2 in
/// two parts, a degree-6 polynomial on [-ln2/2, ln2/2]), with fused multiply-adds. Within 2
/// ulp of e^x for x in [-87.3, 88.3]; x is clamped to that range (a NaN stays NaN).
struct SplitExp {
  float mantissa;  ///< in [0.7, 1.42]
  float scale;     ///< 2^n, n in [-126, 127]
};
inline SplitExp split_exp(float x) noexcept {
  constexpr float kMax = 88.3762626647949f;  // ln(FLT_MAX) rounded down
  constexpr float kMin = -87.3365447504f;    // ln(FLT_MIN): 2^n stays normal
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2High = 0.693359375f;  // ln 2 = kLn2High + kLn2Low, kLn2High exact in 9 bits
  constexpr float kLn2Low = -2.12194440e-4f;
  constexpr float kRoundingShift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  x = x > kMax ? kMax : x;                       // (comparisons keep a NaN)
  x = x < kMin ? kMin : x;
  // n = rne(x * log2 e), as a float and as its integer bits (no float-to-int conversion, so a
  // NaN never reaches an undefined cast).
  const float shifted = std::fma(x, kLog2e, kRoundingShift);
  const float n = shifted - kRoundingShift;
  const std::int32_t n_int = static_cast<std::int32_t>(
      std::bit_cast<std::uint32_t>(shifted) - std::bit_cast<std::uint32_t>(kRoundingShift));
  float r = std::fma(n, -kLn2High, x);
  r = std::fma(n, -kLn2Low, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  const float r_squared = r * r;
  const float mantissa = std::fma(p, r_squared, r) + 1.0f;
  const float scale = std::bit_cast<float>(static_cast<std::uint32_t>(n_int + 127) << 23);
  return {mantissa, scale};
}

}  // namespace detail

/// h = silu(g) * u = (g / (1 + e^-g)) * u, computed as
///
///   d = fma(m, s, 1)  with e^-g = m * s from detail::split_exp(-g)
///   h = (g / d) * u
///
/// in binary32, each operation rounded to nearest even. Relative error against the exact
/// value: a few ulp (tested). Saturates like silu: g beyond -87 gives ~0, beyond 88 gives g*u.
/// A NaN in g or u gives NaN.
inline float silu_mul(float g, float u) noexcept {
  const detail::SplitExp e = detail::split_exp(-g);
  const float denominator = std::fma(e.mantissa, e.scale, 1.0f);
  return (g / denominator) * u;
}

}  // namespace cmx::gemm
