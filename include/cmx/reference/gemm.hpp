// SPDX-License-Identifier: Apache-2.0
// Scalar, obviously-correct versions of cmx's INT8 GEMMs, on unpacked weights [N, K] (no panel
// layout, no tiling): triple loops in int64, the epilogue written out, and an fp64 version of
// each for tolerance checks.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <vector>

#include "cmx/core/bf16.hpp"
#include "cmx/gemm/swiglu.hpp"
#include "cmx/reference/quantize.hpp"

namespace cmx::reference {

/// acc [m][n] = sum_k a[i][k] * b[j][k], summed in int64 and checked to fit int32.
/// a: [m, k] int8, b: [n, k] int8 (one row per output channel).
inline std::vector<std::int32_t> matmul_int8(std::span<const std::int8_t> a,
                                             std::span<const std::int8_t> b, int m, int n, int k) {
  std::vector<std::int32_t> acc(static_cast<std::size_t>(m) * static_cast<std::size_t>(n));
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      std::int64_t sum = 0;
      for (int d = 0; d < k; ++d)
        sum += std::int64_t{a[static_cast<std::size_t>(i) * k + d]} *
               std::int64_t{b[static_cast<std::size_t>(j) * k + d]};
      if (sum > std::numeric_limits<std::int32_t>::max() ||
          sum < std::numeric_limits<std::int32_t>::min())
        throw std::overflow_error("reference::matmul_int8: a sum does not fit int32");
      acc[static_cast<std::size_t>(i) * n + j] = static_cast<std::int32_t>(sum);
    }
  return acc;
}

/// The GEMM epilogue as cmx defines it (cmx/gemm/epilogue.hpp), element by element:
/// c = (float(acc) * a_scale) * b_scale in binary32. acc: [m][n].
inline std::vector<float> dequantize(std::span<const std::int32_t> acc,
                                     std::span<const float> a_scales,
                                     std::span<const float> b_scales) {
  const std::size_t n = b_scales.size();
  std::vector<float> c(acc.size());
  for (std::size_t i = 0; i < a_scales.size(); ++i)
    for (std::size_t j = 0; j < n; ++j) {
      const float row_scaled = static_cast<float>(acc[i * n + j]) * a_scales[i];
      c[i * n + j] = row_scaled * b_scales[j];
    }
  return c;
}

/// Each value rounded to the nearest bf16, ties to even (reference::round_to_bf16).
inline std::vector<bf16> to_bf16(std::span<const float> values) {
  std::vector<bf16> out(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) out[i] = round_to_bf16(values[i]);
  return out;
}

/// The real-valued product in fp64, what the int8 GEMM approximates: c[i][j] = sum_k (a[i][k] *
/// a_scales[i]) * (b[j][k] * b_scales[j]) = (sum_k a[i][k] * b[j][k]) * a_scales[i] *
/// b_scales[j], the integer sum exact in double, then two roundings of 2^-53.
inline std::vector<double> matmul_fp64(std::span<const std::int8_t> a,
                                       std::span<const float> a_scales,
                                       std::span<const std::int8_t> b,
                                       std::span<const float> b_scales, int m, int n, int k) {
  std::vector<double> c(static_cast<std::size_t>(m) * static_cast<std::size_t>(n));
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double sum = 0;
      for (int d = 0; d < k; ++d)
        sum += static_cast<double>(a[static_cast<std::size_t>(i) * k + d]) *
               static_cast<double>(b[static_cast<std::size_t>(j) * k + d]);
      c[static_cast<std::size_t>(i) * n + j] =
          sum * static_cast<double>(a_scales[static_cast<std::size_t>(i)]) *
          static_cast<double>(b_scales[static_cast<std::size_t>(j)]);
    }
  return c;
}

/// One expert's weights, unpacked: gate and up [intermediate, hidden], down [hidden,
/// intermediate], each with per-output-channel scales.
struct ExpertWeightsView {
  std::span<const std::int8_t> gate, up, down;
  std::span<const float> gate_scales, up_scales, down_scales;
  int hidden = 0;
  int intermediate = 0;
};

/// One token (codes [hidden] with its scale) through one expert, by cmx's definition
/// (cmx/gemm/expert_ffn.hpp): exact integer products, the GEMM epilogue, silu_mul (the defined
/// binary32 sequence of cmx/gemm/swiglu.hpp) rounded to bf16, the per-row re-quantization (this
/// file's independent reference::quantize_row_int8), the down product, the output rounded to
/// bf16.
inline std::vector<bf16> expert_ffn_int8(std::span<const std::int8_t> x, float x_scale,
                                         const ExpertWeightsView& w) {
  const std::vector<float> x_scales{x_scale};
  const std::vector<float> gate =
      dequantize(matmul_int8(x, w.gate, 1, w.intermediate, w.hidden), x_scales, w.gate_scales);
  const std::vector<float> up =
      dequantize(matmul_int8(x, w.up, 1, w.intermediate, w.hidden), x_scales, w.up_scales);
  std::vector<bf16> h(gate.size());
  for (std::size_t i = 0; i < h.size(); ++i)
    h[i] = bf16::from_float(gemm::silu_mul(gate[i], up[i]));
  std::vector<std::int8_t> h_codes(h.size());
  const std::vector<float> h_scales{
      reference::quantize_row_int8(std::span<const bf16>(h), std::span<std::int8_t>(h_codes))};
  const std::vector<float> y = dequantize(matmul_int8(h_codes, w.down, 1, w.hidden, w.intermediate),
                                          h_scales, w.down_scales);
  return to_bf16(y);
}

/// The same token through the same expert with real arithmetic in fp64 and no re-quantization
/// of the intermediate: y = (silu(x Wg^T) * (x Wu^T)) Wd^T on the dequantized x and weights,
/// silu(g) = g / (1 + exp(-g)). What the INT8 FFN approximates.
inline std::vector<double> expert_ffn_fp64(std::span<const std::int8_t> x, float x_scale,
                                           const ExpertWeightsView& w) {
  const std::vector<float> x_scales{x_scale};
  const std::vector<double> gate =
      matmul_fp64(x, x_scales, w.gate, w.gate_scales, 1, w.intermediate, w.hidden);
  const std::vector<double> up =
      matmul_fp64(x, x_scales, w.up, w.up_scales, 1, w.intermediate, w.hidden);
  std::vector<double> y(static_cast<std::size_t>(w.hidden), 0.0);
  for (int j = 0; j < w.hidden; ++j)
    for (int i = 0; i < w.intermediate; ++i) {
      const double g = gate[static_cast<std::size_t>(i)];
      const double h = g / (1.0 + std::exp(-g)) * up[static_cast<std::size_t>(i)];
      y[static_cast<std::size_t>(j)] +=
          h * static_cast<double>(w.down[static_cast<std::size_t>(j) * w.intermediate + i]) *
          w.down_scales[static_cast<std::size_t>(j)];
    }
  return y;
}

}  // namespace cmx::reference
