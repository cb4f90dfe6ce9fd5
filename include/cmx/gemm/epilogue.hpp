// SPDX-License-Identifier: Apache-2.0
// The epilogue of every INT8 GEMM in cmx: exact int32 sums to float or bf16, by one fixed
// sequence of binary32 operations, so that every tier (whose int32 sums are identical) writes
// bitwise the same output.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "cmx/core/bf16.hpp"

namespace cmx::gemm {

/// The output element types of the GEMMs.
template <class T>
concept GemmOutput = std::same_as<T, float> || std::same_as<T, bf16>;

/// One output element from its exact sum, the definition every path follows:
///
///   c = (float(acc) * row_scale) * column_scale
///
/// in binary32, round to nearest even at each step (float(acc) is exact below 2^24 in
/// magnitude); for bf16 output, c is then rounded once to the nearest bf16, ties to even. A
/// NaN scale (a poisoned row, see cmx::quantize_row_int8) gives NaN.
inline float dequantize(std::int32_t acc, float row_scale, float column_scale) noexcept {
  const float scaled_by_row = static_cast<float>(acc) * row_scale;
  return scaled_by_row * column_scale;
}

/// out[c] = dequantize(acc[c], row_scale, column_scales[c]) (rounded to bf16 for bf16 output)
/// for every c. Requires equal sizes.
template <GemmOutput Out>
void dequantize_row(std::span<const std::int32_t> acc, float row_scale,
                    std::span<const float> column_scales, std::span<Out> out) noexcept {
  for (std::size_t c = 0; c < out.size(); ++c) {
    const float value = dequantize(acc[c], row_scale, column_scales[c]);
    if constexpr (std::same_as<Out, bf16>)
      out[c] = bf16::from_float(value);
    else
      out[c] = value;
  }
}

}  // namespace cmx::gemm
