// SPDX-License-Identifier: Apache-2.0
// The exact INT8 per-token quantization cmx uses, and the other row operations kernels share.
//
// These are the portable versions of the device trait's row operations: written as plain loops
// that compilers vectorize, bitwise equal to the scalar references in cmx/reference/, and used
// by every backend that has nothing faster.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>

#include "cmx/core/bf16.hpp"

namespace cmx {

/// The largest magnitude an INT8 code takes; the code range is symmetric, [-127, 127].
inline constexpr int kInt8Max = 127;

namespace detail {

/// The scale of a row in quantize_row_int8, from the row's amax.
struct Int8RowScale {
  bool codes_are_zero;  ///< the row is flushed (tiny amax) or poisoned (Inf or NaN)
  float scale;          ///< the scale quantize_row_int8 returns
  float inverse_scale;  ///< 127 / amax, what each value is multiplied by (if !codes_are_zero)
};

/// The scale of a row whose largest magnitude has the binary32 bits `amax_bits` (sign clear;
/// a bf16's bits shifted left by 16), by the definition of quantize_row_int8. Every CPU
/// implementation of it, portable or vectorized, goes through this.
inline Int8RowScale int8_row_scale(std::uint32_t amax_bits) noexcept {
  constexpr std::uint32_t kInfBits = 0x7f800000u;             // exponent all ones: Inf or NaN
  constexpr std::uint32_t kSmallestScaledBits = 0x03000000u;  // 2^-121: 127 / 2^-121 < FLT_MAX
  if (amax_bits >= kInfBits) return {true, std::numeric_limits<float>::quiet_NaN(), 0.0f};
  if (amax_bits < kSmallestScaledBits) return {true, 0.0f, 0.0f};
  const float amax = std::bit_cast<float>(amax_bits);
  return {false, amax / static_cast<float>(kInt8Max), static_cast<float>(kInt8Max) / amax};
}

/// The code of `value` in a row with `inverse_scale`: rne(value * inverse_scale).
///
/// NOTES: no clamp is needed: |value| <= amax and inverse_scale <= (127 / amax)(1 + 2^-24), so
/// the product is at most 127 + 1 ulp and rounds to at most 127. std::nearbyint rounds to
/// nearest, ties to even, in the default mode and raises nothing; with SSE4.1 or later it
/// vectorizes (roundps / vrndscaleps), without it each element is a libm call.
inline std::int8_t int8_code(float value, float inverse_scale) noexcept {
  return static_cast<std::int8_t>(static_cast<int>(std::nearbyint(value * inverse_scale)));
}

}  // namespace detail

/// Quantizes one bf16 row to INT8 with one scale for the row (per-token quantization).
///
/// The definition, which every fast path matches bit for bit:
///   amax   = max_i |row[i]|                           (exact: a bf16 value)
///   if amax < 2^-121 (0 and subnormals too): scale = 0,  q[i] = 0      (flushed: a zero row;
///                                            below 2^-121, 127 / amax overflows binary32)
///   if any row[i] is Inf or NaN:            scale = NaN, q[i] = 0      (the row is poisoned:
///                                            dequantizing gives NaN, never a silent number)
///   otherwise: scale = amax / 127            (binary32 division, round to nearest even)
///              q[i]  = clamp(rne(row[i] * (127 / amax)), -127, 127)
/// where 127 / amax and the product are binary32 operations rounded to nearest even, and rne
/// rounds to the nearest integer, ties to even. Dequantize with row[i] ~= q[i] * scale.
/// -128 is never produced, so negation and the symmetric GEMM stay exact.
///
/// Requires out.size() == row.size(). Returns the scale.
inline float quantize_row_int8(std::span<const bf16> row, std::span<std::int8_t> out) noexcept {
  // |x| of a bf16 is its bits without the sign, and for finite values the magnitude order is
  // the integer order of those bits: the reduction is an exact integer max that vectorizes.
  // (An index loop over .bits: GCC does not vectorize a range-for that copies each bf16.)
  std::uint16_t amax_bits = 0;
  for (std::size_t i = 0; i < row.size(); ++i)
    amax_bits = std::max<std::uint16_t>(amax_bits, row[i].bits & 0x7fffu);
  const detail::Int8RowScale scale = detail::int8_row_scale(std::uint32_t{amax_bits} << 16);
  if (scale.codes_are_zero) {
    for (std::int8_t& code : out) code = 0;  // (std::fill trips a GCC 12 -Wstringop-overflow)
    return scale.scale;
  }
  for (std::size_t i = 0; i < row.size(); ++i)
    out[i] = detail::int8_code(row[i].to_float(), scale.inverse_scale);
  return scale.scale;
}

/// Quantizes one float row to INT8, by the same definition as the bf16 overload above with
/// the row's values read as binary32 (amax = max |row[i]|, exact; the same flush threshold
/// 2^-121, the same poisoning by Inf or NaN, the same rounding): for rows computed in float,
/// such as weights quantized at load time. Returns the scale.
///
/// Requires out.size() == row.size().
inline float quantize_row_int8(std::span<const float> row, std::span<std::int8_t> out) noexcept {
  // As above, on the binary32 bits: the magnitude order of finite floats is the integer order
  // of their bits without the sign, and Inf and NaN are above every finite value.
  std::uint32_t amax_bits = 0;
  for (std::size_t i = 0; i < row.size(); ++i)
    amax_bits =
        std::max<std::uint32_t>(amax_bits, std::bit_cast<std::uint32_t>(row[i]) & 0x7fffffffu);
  const detail::Int8RowScale scale = detail::int8_row_scale(amax_bits);
  if (scale.codes_are_zero) {
    for (std::int8_t& code : out) code = 0;
    return scale.scale;
  }
  for (std::size_t i = 0; i < row.size(); ++i)
    out[i] = detail::int8_code(row[i], scale.inverse_scale);
  return scale.scale;
}

/// acc[i] = fma(weight, row[i], acc[i]) for every i: one fused multiply-add per element, one
/// rounding, in binary32. Requires acc.size() == row.size().
///
/// NOTES: std::fma is used (not a*b+c) so the result does not depend on whether the compiler
/// contracts; build with FMA enabled (-mfma or -march=...) or it runs in software, slowly.
inline void accumulate_weighted_row(std::span<float> acc, std::span<const bf16> row,
                                    float weight) noexcept {
  for (std::size_t i = 0; i < acc.size(); ++i) acc[i] = std::fma(weight, row[i].to_float(), acc[i]);
}

/// accumulate_weighted_row(acc, rows[k], weights[k]) for k = 0, 1, ... in order: each element
/// takes one fma per row, in row order. Requires rows.size() == weights.size() and every row
/// acc.size() long.
///
/// NOTES: only the order per element is fixed, so an implementation may sweep the rows
/// together, a few elements at a time, with the sums in registers (what the CPU backends do).
inline void accumulate_weighted_rows(std::span<float> acc,
                                     std::span<const std::span<const bf16>> rows,
                                     std::span<const float> weights) noexcept {
  for (std::size_t k = 0; k < rows.size(); ++k) accumulate_weighted_row(acc, rows[k], weights[k]);
}

/// out[i] = bf16 nearest to in[i] (ties to even). Requires out.size() == in.size().
inline void round_row_to_bf16(std::span<const float> in, std::span<bf16> out) noexcept {
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = bf16::from_float(in[i]);
}

}  // namespace cmx
