// SPDX-License-Identifier: Apache-2.0
// cmx::gemm::gemm: the dense W8A8 GEMM, C [m, n] = A [m, k] x B [n, k]^T with per-token scales
// of A and per-channel scales of B, accumulated exactly in int32 (cmx/gemm/tiling.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "cmx/core/error.hpp"
#include "cmx/device/int8_matmul.hpp"
#include "cmx/gemm/epilogue.hpp"
#include "cmx/gemm/packed_weights.hpp"
#include "cmx/gemm/tiling.hpp"

namespace cmx::gemm {

/// The operands of one dense GEMM. Out is float or bf16.
template <GemmOutput Out>
struct GemmArgs {
  std::span<const std::int8_t> a;   ///< [m, k] int8 activations, row-major
  std::span<const float> a_scales;  ///< [m] per-token (per-row) scales
  const PackedWeights& b;           ///< [n, k] weights, packed for the device, with scales [n]
  std::span<Out> c;                 ///< [m, n] output
  int m = 0;                        ///< rows of A: 0 or more
};

namespace detail {

/// The rows of a row-major [m, k] matrix with its scales: one group.
class DenseRows {
 public:
  DenseRows(std::span<const std::int8_t> a, std::span<const float> scales, int m, int k) noexcept
      : a_(a), scales_(scales), m_(m), k_(k) {}

  int num_groups() const noexcept { return 1; }
  int num_rows(int) const noexcept { return m_; }
  void rows(int, int first, std::span<RowRef> refs) const noexcept {
    for (std::size_t i = 0; i < refs.size(); ++i) {
      const std::size_t row = static_cast<std::size_t>(first) + i;
      refs[i] = {a_.data() + row * static_cast<std::size_t>(k_), scales_[row], row};
    }
  }

 private:
  std::span<const std::int8_t> a_;
  std::span<const float> scales_;
  int m_;
  int k_;
};

}  // namespace detail

/// C = A x B^T, each element by the definition of cmx/gemm/epilogue.hpp:
///   C[i, j] = round((float(sum_k A[i, k] * B[j, k]) * a_scales[i]) * b.scales()[j])
/// with the sum exact in int32. Bitwise the same output for every instruction-set tier and
/// block count. k and n are the packed weights' (k, n multiples of 16, k <= kInt8MaxDepth).
///
/// Errors (cmx::Error(invalid_argument), raised before anything is written): weights not
/// packed (or packed for another device layout), negative m, sizes that do not match m, n, k.
template <Int8MatmulDevice Dev, GemmOutput Out>
void gemm(Dev& device, const GemmArgs<Out>& args) {
  using cmx::detail::require;
  detail::require_packed_for(device, args.b, args.b.k(), -1, "gemm");
  const std::size_t m = static_cast<std::size_t>(args.m);
  const std::size_t n = static_cast<std::size_t>(args.b.n());
  const std::size_t k = static_cast<std::size_t>(args.b.k());
  require(args.m >= 0, ErrorCode::invalid_argument, "gemm: m = ", args.m, " is negative");
  require(args.a.size() == m * k, ErrorCode::invalid_argument, "gemm: a has ", args.a.size(),
          " elements, expected m * k = ", m, " * ", k);
  require(args.a_scales.size() == m, ErrorCode::invalid_argument, "gemm: a_scales has ",
          args.a_scales.size(), " elements, expected m = ", m);
  require(args.c.size() == m * n, ErrorCode::invalid_argument, "gemm: c has ", args.c.size(),
          " elements, expected m * n = ", m, " * ", n);
  const detail::DenseRows rows(args.a, args.a_scales, args.m, args.b.k());
  detail::run_grouped_product(device, rows, detail::GroupWeights{{&args.b, 1}}, args.b.n(), args.c);
}

}  // namespace cmx::gemm
