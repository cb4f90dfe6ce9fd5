// SPDX-License-Identifier: Apache-2.0
// The GEMM suite's baseline: oneDNN's int8 matmul, as a user of oneDNN 2.6 writes W8A8 with
// it. Used by the benchmarks only, and only when CMake found oneDNN (CMX_BENCH_HAVE_ONEDNN).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "cmx/core/bf16.hpp"

namespace cmx::bench {

/// True if this cmx_bench was built with oneDNN.
bool have_onednn() noexcept;

/// "oneDNN 2.6.3 (CPU runtime: OpenMP, max threads 2)", or why there is none.
std::string onednn_description();

/// One oneDNN matmul primitive, c [m, n] f32 = (a [m, k] s8 x b [n, k]^T s8) * b_scales[n],
/// made once (outside any timed loop) for its shape, with the weights reordered once into the
/// layout the primitive asks for (oneDNN's own prepacking).
///
/// NOTES: oneDNN 2.6's optimized int8 matmul (brgemm) takes per-channel output scales but no
/// per-row scale: a binary multiply post-op by an [m, 1] tensor (or per-row output scales)
/// makes it fall back to its reference kernel. So the per-token scales of A are applied by
/// scale_rows after it, the way a user of oneDNN 2.6 does.
class OneDnnMatmul {
 public:
  /// Throws std::runtime_error without oneDNN.
  OneDnnMatmul(int m, int n, int k, std::span<const std::int8_t> b,
               std::span<const float> b_scales);
  ~OneDnnMatmul();
  OneDnnMatmul(OneDnnMatmul&&) noexcept;
  OneDnnMatmul& operator=(OneDnnMatmul&&) noexcept;

  /// c [m][n] = (a x b^T) * b_scales, a [m][k] row-major. Waits for the result.
  void run(const std::int8_t* a, float* c);
  /// The implementation oneDNN picked (e.g. "brg:avx512_core_vnni").
  std::string implementation() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// out row out_rows[i] (of n bf16) = bf16(c[i][j] * a_scales[i]) for i < rows: the per-token
/// scales of A and the rounding to bf16, after OneDnnMatmul.
void scale_rows(const float* c, std::span<const float> a_scales, int n,
                std::span<const std::size_t> out_rows, bf16* out);

}  // namespace cmx::bench
