// SPDX-License-Identifier: Apache-2.0
// cmx's INT8 GEMMs on Ascend, through CANN's operators from the host: the dense W8A8 GEMM
// (cmx::gemm::gemm) as aclnnQuantMatmulV4, the masked grouped GEMM over FusedDispatch's
// received rows (cmx::gemm::grouped_gemm_masked) as aclnnGroupedMatmulV4. The README's "GEMM
// and MLA on Ascend" table maps every tensor.
//
// Weights on Ascend are not cmx's packed CPU panels (cmx::gemm::pack_weights is for the CPU
// micro-kernel): they are the unpacked row-major codes [n, k] int8 (per group [g][n][k]) that
// pack_weights takes, in device memory, which the operators read as x2 (n, k) with
// transposeX2 = true, and as weight (g, k, n) viewed transposed over storage (g, n, k). The ND
// format is used; FRACTAL_NZ (aclnnTransMatmulWeight) is not. Every pointer named "device" is
// device memory (aclrtMalloc), 32-byte aligned as aclCreateTensor asks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "cmx/backend/ascend/aclnn_host.hpp"
#include "cmx/core/bf16.hpp"
#include "cmx/core/error.hpp"
#include "cmx/gemm/masked_rows.hpp"

namespace cmx::ascend {

/// One weight matrix on the device: the codes of n output channels of k inputs, row-major,
/// with a float scale per channel.
struct DeviceWeights {
  const void* codes = nullptr;   ///< device [n, k] int8
  const void* scales = nullptr;  ///< device [n] float
  int n = 0;                     ///< output channels, >= 1
  int k = 0;                     ///< inputs per channel, 1 ... 65535
};

/// The operands of one dense GEMM on the device (cmx::gemm::GemmArgs with device pointers).
struct GemmArgs {
  const void* a = nullptr;         ///< device [m, k] int8 activations, row-major
  const void* a_scales = nullptr;  ///< device [m] float per-token scales
  DeviceWeights b;                 ///< [n, k] weights and their [n] scales
  void* c = nullptr;               ///< device [m, n] bf16 output
  int m = 0;                       ///< rows, >= 0 (0: nothing is called)
};

/// C = A x B^T with per-token and per-channel scales, bf16 output, by aclnnQuantMatmulV4:
/// x1 = a (m, k) int8; x2 = b.codes (n, k) int8 with transposeX2 = true; scale = b.scales (n)
/// float32; pertokenScaleOptional = a_scales (m) float32; offset, bias null; out = c (m, n)
/// bf16. No copy: every operand is read and written in place. Documented formula:
/// c[i, j] = bf16(sum_k a[i, k] b[j, k] * b.scales[j] * a_scales[i]) (cmx's own epilogue
/// multiplies by a_scales first; the README says what that changes).
///
/// Errors: cmx::Error(invalid_argument) for a negative m, n or k out of range, a null pointer
/// with m > 0, or a status ACLNN_ERR_PARAM_* from the operator (the message names the call and
/// code); cmx::Error(transport) for any other ACL or aclnn failure.
inline void gemm(const GemmArgs& args, aclrtStream stream) {
  using cmx::detail::require;
  constexpr const char* kWhat = "cmx::ascend::gemm";
  require(args.m >= 0 && args.b.n >= 1 && args.b.k >= 1 && args.b.k <= 65535,
          ErrorCode::invalid_argument, kWhat, ": m = ", args.m, ", n = ", args.b.n,
          ", k = ", args.b.k, "; need m >= 0, n >= 1, 1 <= k <= 65535");
  if (args.m == 0) return;
  require(args.a != nullptr && args.a_scales != nullptr && args.b.codes != nullptr &&
              args.b.scales != nullptr && args.c != nullptr,
          ErrorCode::invalid_argument, kWhat, ": a null device pointer");
  const std::int64_t m = args.m, n = args.b.n, k = args.b.k;
  const detail::Tensor x1 = detail::make_tensor(args.a, ACL_INT8, {m, k}, kWhat);
  const detail::Tensor x2 = detail::make_tensor(args.b.codes, ACL_INT8, {n, k}, kWhat);
  const detail::Tensor scale = detail::make_tensor(args.b.scales, ACL_FLOAT, {n}, kWhat);
  const detail::Tensor per_token = detail::make_tensor(args.a_scales, ACL_FLOAT, {m}, kWhat);
  const detail::Tensor out = detail::make_tensor(args.c, ACL_BF16, {m, n}, kWhat);
  std::uint64_t workspace_size = 0;
  aclOpExecutor* executor = nullptr;
  detail::check_aclnn(aclnnQuantMatmulV4GetWorkspaceSize(x1.get(), x2.get(), scale.get(), nullptr,
                                                         per_token.get(), nullptr, false, true,
                                                         out.get(), &workspace_size, &executor),
                      "aclnnQuantMatmulV4GetWorkspaceSize", kWhat);
  detail::run_operator(workspace_size, executor, stream, aclnnQuantMatmulV4, "aclnnQuantMatmulV4",
                       kWhat);
}

/// Per-channel scales as aclnnGroupedMatmulV4 takes them for bf16 output: each float rounded
/// to the nearest bf16, ties to even. A one-time weight conversion (upload the result as
/// DeviceGroupedWeights::scales). It changes each scale by at most 2^-9 of itself.
inline std::vector<bf16> grouped_scales_bf16(std::span<const float> scales) {
  std::vector<bf16> out(scales.size());
  for (std::size_t i = 0; i < scales.size(); ++i) out[i] = bf16::from_float(scales[i]);
  return out;
}

/// The weights of a grouped GEMM on the device, one matrix per group (local expert).
struct DeviceGroupedWeights {
  const void* codes = nullptr;   ///< device [num_groups][n][k] int8, row-major
  const void* scales = nullptr;  ///< device [num_groups][n] bf16 (grouped_scales_bf16)
  int num_groups = 0;            ///< 1 ... 1024
  int n = 0;                     ///< output channels, >= 1
  int k = 0;                     ///< inputs per channel, 1 ... 65535
};

/// The operands of a masked grouped GEMM on the device (cmx::gemm::MaskedGemmArgs).
struct MaskedGemmArgs {
  /// The rows where they are: `codes` and `scales` are device addresses (FusedDispatch's
  /// receive area: slot i's int8 codes at codes + i * row_stride, its float scale at
  /// scales + i * scale_stride); `counts` is host memory. See cmx::gemm::MaskedRows.
  gemm::MaskedRows a;
  DeviceGroupedWeights weights;  ///< num_groups = a.num_groups, k = a.k
  /// device [a.num_slots()][n] bf16; only the rows of valid slots are written.
  void* c = nullptr;
};

/// The masked grouped GEMM by aclnnGroupedMatmulV4: for every valid row (g, s, slot) of a,
/// c[slot_index(g, s, slot)] = row x weights[g]^T, scaled by the row's and the channel's scales.
///
/// The operator takes the rows of all groups one after another, so the rows are gathered:
///   1. x [M, k] int8 and per_token [M] float, M = the valid rows, in (group, segment, slot)
///      order (the order of cmx's own masked GEMM): one device-to-device aclrtMemcpy per row
///      for its codes and one for its scale (FusedDispatch's messages are strided, with the
///      scale inside each message's metadata: the operator's x and perTokenScale must be
///      contiguous);
///   2. groupListOptional int64 [num_groups] = rows per group (groupListType 1, counts);
///   3. aclnnGroupedMatmulV4 with x {x}, weight {codes viewed (g, k, n), transposed over
///      (g, n, k)}, scaleOptional {scales (g, n) bf16}, perTokenScaleOptional {per_token (M)},
///      splitItem 3, groupType 0, actType 0, out {y [M, n] bf16}; every other argument null;
///   4. y's rows scattered to their slots of c (one aclrtMemcpy each), after the stream is
///      synchronized.
/// The copies are the cost of the operator's layout (2 M + M small copies); a fused gather
/// kernel would do them in one launch. Nothing is called when M = 0.
///
/// Errors: cmx::Error(invalid_argument) for a bad masked layout (check_masked_rows), weights
/// of another group count or k, sizes out of the operator's range, null pointers, or an
/// ACLNN_ERR_PARAM_* status; cmx::Error(transport) for any other ACL or aclnn failure.
inline void grouped_gemm_masked(const MaskedGemmArgs& args, aclrtStream stream) {
  using cmx::detail::require;
  constexpr const char* kWhat = "cmx::ascend::grouped_gemm_masked";
  const gemm::MaskedRows& rows = args.a;
  const DeviceGroupedWeights& w = args.weights;
  gemm::detail::check_masked_rows(rows, kWhat);
  require(w.num_groups == rows.num_groups && w.k == rows.k, ErrorCode::invalid_argument, kWhat,
          ": weights of ", w.num_groups, " groups of k = ", w.k, " for rows of ", rows.num_groups,
          " groups of k = ", rows.k);
  require(w.num_groups >= 1 && w.num_groups <= 1024 && w.n >= 1 && w.k >= 1 && w.k <= 65535,
          ErrorCode::invalid_argument, kWhat, ": ", w.num_groups, " groups, n = ", w.n,
          ", k = ", w.k, "; need 1 ... 1024 groups, n >= 1, 1 <= k <= 65535");
  std::vector<std::int64_t> group_rows(static_cast<std::size_t>(rows.num_groups));
  std::int64_t total = 0;
  for (int g = 0; g < rows.num_groups; ++g)
    total += group_rows[static_cast<std::size_t>(g)] = rows.num_rows(g);
  if (total == 0) return;
  require(w.codes != nullptr && w.scales != nullptr && args.c != nullptr,
          ErrorCode::invalid_argument, kWhat, ": a null device pointer");
  const std::int64_t k = w.k, n = w.n, groups = w.num_groups;
  const std::size_t row_bytes = static_cast<std::size_t>(k);
  const std::size_t out_row_bytes = static_cast<std::size_t>(n) * sizeof(bf16);

  // 1-2. The gather, and the group list.
  detail::DeviceBuffer x(static_cast<std::size_t>(total) * row_bytes, kWhat);  // [M, k] int8
  detail::DeviceBuffer per_token(static_cast<std::size_t>(total) * sizeof(float), kWhat);  // [M]
  detail::DeviceBuffer group_list(group_rows.size() * sizeof(std::int64_t), kWhat);  // [g] int64
  detail::DeviceBuffer y(static_cast<std::size_t>(total) * out_row_bytes, kWhat);    // [M, n] bf16
  std::vector<std::size_t> slots;  // [M] the slot of each gathered row
  slots.reserve(static_cast<std::size_t>(total));
  for (int g = 0; g < rows.num_groups; ++g)
    for (int s = 0; s < rows.num_segments; ++s)
      for (int slot = 0; slot < rows.count(g, s); ++slot) {
        const std::size_t index = rows.slot_index(g, s, slot);
        const std::size_t r = slots.size();
        detail::copy_device(static_cast<std::byte*>(x.get()) + r * row_bytes,
                            rows.codes + index * rows.row_stride, row_bytes, kWhat);
        detail::copy_device(static_cast<std::byte*>(per_token.get()) + r * sizeof(float),
                            rows.scales + index * rows.scale_stride, sizeof(float), kWhat);
        slots.push_back(index);
      }
  detail::copy_to_device(group_list.get(), group_rows.data(),
                         group_rows.size() * sizeof(std::int64_t), kWhat);

  // 3. The operator. The weight is the view (g, k, n) with strides (n k, 1, k) of storage
  // (g, n, k): a tensor transposed in its last two axes, as the operator's page allows.
  const std::int64_t weight_view[] = {groups, k, n};
  const std::int64_t weight_strides[] = {n * k, 1, k};
  const std::int64_t weight_storage[] = {groups, n, k};
  aclTensor* weight_tensor =
      aclCreateTensor(weight_view, 3, ACL_INT8, weight_strides, 0, ACL_FORMAT_ND, weight_storage, 3,
                      const_cast<void*>(w.codes));
  require(weight_tensor != nullptr, ErrorCode::transport, kWhat, ": aclCreateTensor returned null");
  const detail::TensorList weight_list = detail::make_list({weight_tensor}, kWhat);
  const detail::TensorList x_list = detail::make_list(
      {detail::make_tensor(x.get(), ACL_INT8, {total, k}, kWhat).release()}, kWhat);
  const detail::TensorList scale_list = detail::make_list(
      {detail::make_tensor(w.scales, ACL_BF16, {groups, n}, kWhat).release()}, kWhat);
  const detail::TensorList per_token_list = detail::make_list(
      {detail::make_tensor(per_token.get(), ACL_FLOAT, {total}, kWhat).release()}, kWhat);
  const detail::TensorList out_list = detail::make_list(
      {detail::make_tensor(y.get(), ACL_BF16, {total, n}, kWhat).release()}, kWhat);
  const detail::Tensor group_list_tensor =
      detail::make_tensor(group_list.get(), ACL_INT64, {groups}, kWhat);
  std::uint64_t workspace_size = 0;
  aclOpExecutor* executor = nullptr;
  detail::check_aclnn(
      aclnnGroupedMatmulV4GetWorkspaceSize(
          x_list.get(), weight_list.get(), nullptr, scale_list.get(), nullptr, nullptr, nullptr,
          per_token_list.get(), group_list_tensor.get(), nullptr, nullptr, nullptr,
          /*splitItem=*/3, /*groupType=*/0, /*groupListType=*/1, /*actType=*/0, out_list.get(),
          nullptr, nullptr, &workspace_size, &executor),
      "aclnnGroupedMatmulV4GetWorkspaceSize", kWhat);
  detail::run_operator(workspace_size, executor, stream, aclnnGroupedMatmulV4,
                       "aclnnGroupedMatmulV4", kWhat);

  // 4. The scatter back to the slots.
  for (std::size_t r = 0; r < slots.size(); ++r)
    detail::copy_device(static_cast<std::byte*>(args.c) + slots[r] * out_row_bytes,
                        static_cast<const std::byte*>(y.get()) + r * out_row_bytes, out_row_bytes,
                        kWhat);
}

}  // namespace cmx::ascend
