// SPDX-License-Identifier: Apache-2.0
// The CPU simulation behind the clean-room aclnn shim (shim/aclnn.hpp): aclTensor and its
// lists as plain descriptions, and the three CANN operators cmx calls (QuantMatmulV4,
// GroupedMatmulV4, FusedInferAttentionScoreV4), each for the subset of arguments cmx uses,
// computed by the formula their public documentation states. Written by us; no CANN header
// or source was copied.
//
// What this is: a check that cmx's host wrappers (backend/ascend/gemm.hpp, mla.hpp) pass the
// layouts, dtypes, shapes and modes the documentation asks for, and read back what the
// documented formula gives. What it is not: the real operators. Their rounding, their tiling,
// their behaviour outside the subset, and every constraint we did not read are not modelled;
// an argument outside the subset is refused with ACLNN_ERR_PARAM_INVALID (or _NULLPTR), never
// computed as something else.
//
// GM is read and written only through detail::gm_read / gm_write (sim/machine.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "cmx/core/bf16.hpp"
#include "sim/ascend/machine.hpp"

namespace cmx::ascend_sim {

/// The aclDataType values the simulation knows (the enumerators' values as the public
/// aclDataType page lists them; shim/aclnn.hpp names them ACL_*).
enum class AclDType : int {
  float32 = 0,
  float16 = 1,
  int8 = 2,
  int32 = 3,
  uint8 = 4,
  int64 = 9,
  uint64 = 10,
  boolean = 12,
  bf16 = 27,
};

/// The aclFormat values the simulation knows: ND (plain row-major with strides) and
/// FRACTAL_NZ (the matmul weight format, which the simulation always refuses).
enum class AclFormatKind : int { nd = 2, fractal_nz = 29 };

/// aclnnStatus codes (the aclnn return-code page): success, a required pointer was null, an
/// argument is outside what the operator (here: the simulated subset) supports, the runtime
/// failed.
inline constexpr int kAclnnSuccess = 0;
inline constexpr int kAclnnErrParamNullptr = 161001;
inline constexpr int kAclnnErrParamInvalid = 161002;
inline constexpr int kAclnnErrRuntime = 361001;

/// What aclCreateTensor records: a view (shape, element strides, element offset) of storage at
/// `data` (device memory, GM in the simulation).
struct AclTensor {
  std::vector<std::int64_t> view;
  std::vector<std::int64_t> strides;
  std::int64_t offset = 0;
  AclDType dtype = AclDType::float32;
  int format = 0;
  std::vector<std::int64_t> storage;
  void* data = nullptr;
};

/// What aclCreateTensorList records.
struct AclTensorList {
  std::vector<const AclTensor*> tensors;
};

/// What aclCreateIntArray records: a host array of int64.
struct AclIntArray {
  std::vector<std::int64_t> values;
};

/// The executor a first-phase call returns: the checked computation, run by the second phase
/// with the workspace. One use (the documented default); the second phase deletes it.
struct AclOpExecutor {
  std::uint64_t workspace_bytes = 0;
  std::function<int(std::byte* workspace)> run;
};

namespace aclnn_detail {

using detail::gm_read;
using detail::gm_write;
using detail::thread_context;
using detail::ThreadContext;

inline std::size_t element_bytes(AclDType dtype) noexcept {
  switch (dtype) {
    case AclDType::int8:
    case AclDType::uint8:
    case AclDType::boolean:
      return 1;
    case AclDType::float16:
    case AclDType::bf16:
      return 2;
    case AclDType::float32:
    case AclDType::int32:
      return 4;
    case AclDType::int64:
    case AclDType::uint64:
      return 8;
  }
  return 0;
}

/// True if `t` is an ND tensor of `dtype` with exactly the view `shape`.
inline bool is(const AclTensor* t, AclDType dtype, std::initializer_list<std::int64_t> shape) {
  return t != nullptr && t->dtype == dtype && t->format == static_cast<int>(AclFormatKind::nd) &&
         std::equal(t->view.begin(), t->view.end(), shape.begin(), shape.end());
}

/// Row-major strides of `shape`.
inline std::vector<std::int64_t> row_major(const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> strides(shape.size(), 1);
  for (std::size_t d = shape.size(); d-- > 1;) strides[d - 1] = strides[d] * shape[d];
  return strides;
}

/// True if `t`'s view is contiguous row-major from its first element.
inline bool contiguous(const AclTensor& t) {
  return t.strides == row_major(t.view);
}

/// True if `t`'s view is its storage with the last two axes swapped (a "transposed" tensor of
/// the aclnn pages: view [..., a, b] with strides [..., 1, a] over storage [..., b, a]).
inline bool transposed_last_two(const AclTensor& t) {
  const std::size_t n = t.view.size();
  if (n < 2) return false;
  std::vector<std::int64_t> swapped = t.view;
  std::swap(swapped[n - 1], swapped[n - 2]);
  std::vector<std::int64_t> expected = row_major(swapped);
  std::swap(expected[n - 1], expected[n - 2]);
  return t.strides == expected;
}

/// Elements the view spans in storage, from its first element: 1 + sum (view[d] - 1) *
/// strides[d] (0 for an empty view).
inline std::size_t span_elements(const AclTensor& t) {
  std::int64_t last = 0;
  for (std::size_t d = 0; d < t.view.size(); ++d) {
    if (t.view[d] == 0) return 0;
    last += (t.view[d] - 1) * t.strides[d];
  }
  return static_cast<std::size_t>(last + 1);
}

/// True if `t`'s data is 32-byte aligned (aclCreateTensor's page asks it) and the span of its
/// view lies in GM of the emulated machine.
inline bool in_gm(const AclTensor& t) {
  const ThreadContext& context = thread_context();
  if (context.machine == nullptr || t.data == nullptr) return false;
  if (reinterpret_cast<std::uintptr_t>(t.data) % kDmaAlignment != 0) return false;
  const std::size_t bytes =
      (static_cast<std::size_t>(t.offset) + span_elements(t)) * element_bytes(t.dtype);
  return context.machine->gm_bytes_after(t.data) >= std::max<std::size_t>(bytes, 1);
}

/// The elements of `t`'s view in row-major view order, read from GM (T matches the dtype's size).
template <class T>
std::vector<T> read(const AclTensor& t) {
  const std::size_t span = span_elements(t);
  std::vector<T> storage(span);
  gm_read(storage.data(), static_cast<const T*>(t.data) + t.offset, span * sizeof(T));
  std::size_t count = 1;
  for (std::int64_t extent : t.view) count *= static_cast<std::size_t>(extent);
  std::vector<T> out(count);
  std::vector<std::int64_t> index(t.view.size(), 0);
  for (std::size_t i = 0; i < count; ++i) {
    std::int64_t at = 0;
    for (std::size_t d = 0; d < index.size(); ++d) at += index[d] * t.strides[d];
    out[i] = storage[static_cast<std::size_t>(at)];
    for (std::size_t d = index.size(); d-- > 0;) {
      if (++index[d] < t.view[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

/// Writes `values` to a contiguous tensor `t`.
template <class T>
void write(const AclTensor& t, const std::vector<T>& values) {
  gm_write(static_cast<T*>(t.data) + t.offset, values.data(), values.size() * sizeof(T));
}

/// The single tensor of a list of one, or null.
inline const AclTensor* single(const AclTensorList* list) {
  return list != nullptr && list->tensors.size() == 1 ? list->tensors.front() : nullptr;
}

inline float to_float(std::uint16_t bf16_bits) {
  return bf16{bf16_bits}.to_float();
}

/// True if `workspace` holds `bytes` of GM (or no workspace is needed).
inline bool workspace_ok(const std::byte* workspace, std::uint64_t bytes) {
  if (bytes == 0) return true;
  const ThreadContext& context = thread_context();
  return context.machine != nullptr && workspace != nullptr &&
         context.machine->gm_bytes_after(workspace) >= bytes;
}

}  // namespace aclnn_detail

/// The simulated aclnnQuantMatmulV4 subset: x1 int8 [m, k]; x2 int8 [n, k] with transposeX2
/// (or [k, n] without); scale float32 or bf16 [n]; pertokenScaleOptional float32 [m]; offset
/// and bias null; transposeX1 false; out bf16 [m, n]; every tensor ND, contiguous, in GM.
/// The documented formula "out = x1 @ x2 * scale * pertokenScaleOptional", computed as: the
/// int32 sum of x1 @ x2 (exact; kept in the workspace, m * n int32), then in binary32, left to
/// right, float(sum) * scale[j] * pertoken[i], each product rounded to nearest even, then
/// rounded to bf16 (nearest even). That order is our reading of the formula, not a claim about
/// the hardware's rounding.
inline int quant_matmul_v4(const AclTensor* x1, const AclTensor* x2, const AclTensor* scale,
                           const AclTensor* offset, const AclTensor* pertoken,
                           const AclTensor* bias, bool transpose_x1, bool transpose_x2,
                           const AclTensor* out, std::uint64_t* workspace_size,
                           AclOpExecutor** executor) {
  using namespace aclnn_detail;
  if (x1 == nullptr || x2 == nullptr || scale == nullptr || out == nullptr ||
      workspace_size == nullptr || executor == nullptr)
    return kAclnnErrParamNullptr;
  if (offset != nullptr || bias != nullptr || pertoken == nullptr || transpose_x1)
    return kAclnnErrParamInvalid;
  if (x1->view.size() != 2 || x2->view.size() != 2) return kAclnnErrParamInvalid;
  const std::int64_t m = x1->view[0], k = x1->view[1];
  const std::int64_t n = transpose_x2 ? x2->view[0] : x2->view[1];
  const bool x2_ok = transpose_x2 ? is(x2, AclDType::int8, {n, k}) : is(x2, AclDType::int8, {k, n});
  const bool scale_ok = is(scale, AclDType::float32, {n}) || is(scale, AclDType::bf16, {n});
  if (!is(x1, AclDType::int8, {m, k}) || !x2_ok || !scale_ok ||
      !is(pertoken, AclDType::float32, {m}) || !is(out, AclDType::bf16, {m, n}))
    return kAclnnErrParamInvalid;
  for (const AclTensor* t : {x1, x2, scale, pertoken, out})
    if (!contiguous(*t) || !in_gm(*t)) return kAclnnErrParamInvalid;
  if (m < 1 || n < 1 || k < 1 || k > 65535 || (!transpose_x2 && n > 65535))
    return kAclnnErrParamInvalid;  // empty tensors are refused; last dims < 65536
  const std::uint64_t bytes = static_cast<std::uint64_t>(m * n) * sizeof(std::int32_t);
  *workspace_size = bytes;
  *executor = new AclOpExecutor{
      bytes, [=](std::byte* workspace) {
        if (!workspace_ok(workspace, bytes)) return kAclnnErrParamInvalid;
        const std::vector<std::int8_t> a = read<std::int8_t>(*x1);
        const std::vector<std::int8_t> b = read<std::int8_t>(*x2);
        std::vector<std::int32_t> acc(static_cast<std::size_t>(m * n));
        for (std::int64_t i = 0; i < m; ++i)
          for (std::int64_t j = 0; j < n; ++j) {
            std::int32_t sum = 0;
            for (std::int64_t d = 0; d < k; ++d)
              sum += std::int32_t{a[static_cast<std::size_t>(i * k + d)]} *
                     b[static_cast<std::size_t>(transpose_x2 ? j * k + d : d * n + j)];
            acc[static_cast<std::size_t>(i * n + j)] = sum;
          }
        gm_write(workspace, acc.data(), bytes);
        gm_read(acc.data(), workspace, bytes);
        std::vector<float> column_scale(static_cast<std::size_t>(n));
        if (scale->dtype == AclDType::float32) {
          column_scale = read<float>(*scale);
        } else {
          const std::vector<std::uint16_t> bits = read<std::uint16_t>(*scale);
          for (std::size_t j = 0; j < bits.size(); ++j) column_scale[j] = to_float(bits[j]);
        }
        const std::vector<float> row_scale = read<float>(*pertoken);
        std::vector<std::uint16_t> y(acc.size());
        for (std::int64_t i = 0; i < m; ++i)
          for (std::int64_t j = 0; j < n; ++j) {
            const std::size_t at = static_cast<std::size_t>(i * n + j);
            const float scaled =
                static_cast<float>(acc[at]) * column_scale[static_cast<std::size_t>(j)];
            y[at] = bf16::from_float(scaled * row_scale[static_cast<std::size_t>(i)]).bits;
          }
        write(*out, y);
        return kAclnnSuccess;
      }};
  return kAclnnSuccess;
}

/// The simulated aclnnGroupedMatmulV4 subset, m-axis grouping with single tensors ("单单单"):
/// x {int8 [M, K]}; weight {int8 [g, K, N]}, contiguous or transposed in its last two axes
/// (storage [g, N, K]); scaleOptional {bf16 [g, N]}; perTokenScaleOptional {float32 [M]};
/// groupListOptional int64 [g]; splitItem 2 or 3; groupType 0; groupListType 0 (cumulative
/// ends, nondecreasing, last = M) or 1 (counts, sum = M); actType 0; out {bf16 [M, N]}; every
/// other optional argument null. Group i is rows [start_i, end_i) of x and out against
/// weight[i]. The documented formula y_i = (x_i @ weight_i) * scale_i * per_token_scale_i,
/// computed as in quant_matmul_v4 (exact int32 sum kept in the workspace, M * N int32; then
/// binary32 float(sum) * scale * per_token, left to right; bf16 nearest even). The group list
/// is device data: it is checked when the operator runs (an invalid one: 161002, nothing
/// written).
inline int grouped_matmul_v4(
    const AclTensorList* x, const AclTensorList* weight, const AclTensorList* bias,
    const AclTensorList* scale, const AclTensorList* offset, const AclTensorList* antiquant_scale,
    const AclTensorList* antiquant_offset, const AclTensorList* per_token_scale,
    const AclTensor* group_list, const AclTensorList* activation_input,
    const AclTensorList* activation_quant_scale, const AclTensorList* activation_quant_offset,
    std::int64_t split_item, std::int64_t group_type, std::int64_t group_list_type,
    std::int64_t act_type, const AclTensorList* out, const AclTensorList* activation_feature_out,
    const AclTensorList* dyn_quant_scale_out, std::uint64_t* workspace_size,
    AclOpExecutor** executor) {
  using namespace aclnn_detail;
  if (x == nullptr || weight == nullptr || out == nullptr || workspace_size == nullptr ||
      executor == nullptr)
    return kAclnnErrParamNullptr;
  if (bias != nullptr || offset != nullptr || antiquant_scale != nullptr ||
      antiquant_offset != nullptr || activation_input != nullptr ||
      activation_quant_scale != nullptr || activation_quant_offset != nullptr ||
      activation_feature_out != nullptr || dyn_quant_scale_out != nullptr)
    return kAclnnErrParamInvalid;
  if ((split_item != 2 && split_item != 3) || group_type != 0 ||
      (group_list_type != 0 && group_list_type != 1) || act_type != 0)
    return kAclnnErrParamInvalid;
  const AclTensor* xs = single(x);
  const AclTensor* w = single(weight);
  const AclTensor* s = single(scale);
  const AclTensor* pt = single(per_token_scale);
  const AclTensor* y = single(out);
  if (xs == nullptr || w == nullptr || s == nullptr || pt == nullptr || y == nullptr ||
      group_list == nullptr || xs->view.size() != 2 || w->view.size() != 3)
    return kAclnnErrParamInvalid;
  const std::int64_t rows = xs->view[0], k = xs->view[1];
  const std::int64_t groups = w->view[0], n = w->view[2];
  if (!is(xs, AclDType::int8, {rows, k}) || !is(w, AclDType::int8, {groups, k, n}) ||
      !is(s, AclDType::bf16, {groups, n}) || !is(pt, AclDType::float32, {rows}) ||
      !is(group_list, AclDType::int64, {groups}) || !is(y, AclDType::bf16, {rows, n}))
    return kAclnnErrParamInvalid;
  const bool weight_transposed = transposed_last_two(*w);
  if (!contiguous(*w) && !weight_transposed) return kAclnnErrParamInvalid;
  for (const AclTensor* t : {xs, s, pt, group_list, y})
    if (!contiguous(*t)) return kAclnnErrParamInvalid;
  for (const AclTensor* t : {xs, w, s, pt, group_list, y})
    if (!in_gm(*t)) return kAclnnErrParamInvalid;
  if (rows < 1 || k < 1 || n < 1 || groups < 1 || groups > 1024 || k > 65535 ||
      (weight_transposed ? k : n) > 65535)
    return kAclnnErrParamInvalid;
  const std::uint64_t bytes = static_cast<std::uint64_t>(rows * n) * sizeof(std::int32_t);
  *workspace_size = bytes;
  *executor = new AclOpExecutor{
      bytes, [=](std::byte* workspace) {
        if (!workspace_ok(workspace, bytes)) return kAclnnErrParamInvalid;
        const std::vector<std::int64_t> list = read<std::int64_t>(*group_list);
        std::vector<std::int64_t> ends(list.size());
        std::int64_t total = 0;
        for (std::size_t i = 0; i < list.size(); ++i) {
          if (list[i] < 0) return kAclnnErrParamInvalid;
          if (group_list_type == 0 && list[i] < total) return kAclnnErrParamInvalid;
          total = group_list_type == 0 ? list[i] : total + list[i];
          ends[i] = total;
        }
        if (total != rows) return kAclnnErrParamInvalid;
        const std::vector<std::int8_t> a = read<std::int8_t>(*xs);
        const std::vector<std::int8_t> b = read<std::int8_t>(*w);  // [g][K][N], view order
        const std::vector<std::uint16_t> scale_bits = read<std::uint16_t>(*s);
        const std::vector<float> row_scale = read<float>(*pt);
        std::vector<std::int32_t> acc(static_cast<std::size_t>(rows * n));
        std::int64_t start = 0;
        for (std::int64_t g = 0; g < groups; ++g) {
          for (std::int64_t i = start; i < ends[static_cast<std::size_t>(g)]; ++i)
            for (std::int64_t j = 0; j < n; ++j) {
              std::int32_t sum = 0;
              for (std::int64_t d = 0; d < k; ++d)
                sum += std::int32_t{a[static_cast<std::size_t>(i * k + d)]} *
                       b[static_cast<std::size_t>((g * k + d) * n + j)];
              acc[static_cast<std::size_t>(i * n + j)] = sum;
            }
          start = ends[static_cast<std::size_t>(g)];
        }
        gm_write(workspace, acc.data(), bytes);
        gm_read(acc.data(), workspace, bytes);
        std::vector<std::uint16_t> result(acc.size());
        start = 0;
        for (std::int64_t g = 0; g < groups; ++g) {
          for (std::int64_t i = start; i < ends[static_cast<std::size_t>(g)]; ++i)
            for (std::int64_t j = 0; j < n; ++j) {
              const std::size_t at = static_cast<std::size_t>(i * n + j);
              const float scaled = static_cast<float>(acc[at]) *
                                   to_float(scale_bits[static_cast<std::size_t>(g * n + j)]);
              result[at] = bf16::from_float(scaled * row_scale[static_cast<std::size_t>(i)]).bits;
            }
          start = ends[static_cast<std::size_t>(g)];
        }
        write(*y, result);
        return kAclnnSuccess;
      }};
  return kAclnnSuccess;
}

/// The arguments of aclnnFusedInferAttentionScoreV4, in the documented order, for the
/// simulation (shim/aclnn.hpp passes them through).
struct FusedInferAttentionArgs {
  const AclTensor* query;
  const AclTensorList* key;
  const AclTensorList* value;
  const AclTensor* pse_shift;
  const AclTensor* atten_mask;
  const AclIntArray* actual_seq_lengths;
  const AclIntArray* actual_seq_lengths_kv;
  std::vector<const void*> quant_and_prefix;  // every argument from deqScale1 to
                                              // actualSharedPrefixLen but the block table
  const AclTensor* block_table;
  const AclTensor* query_rope;
  const AclTensor* key_rope;
  const AclTensor* key_rope_antiquant_scale;
  const AclTensor* dequant_scale_query;
  const AclTensor* learnable_sink;
  std::int64_t num_heads;
  double scale_value;
  std::int64_t pre_tokens;
  std::int64_t next_tokens;
  const char* input_layout;
  std::int64_t num_key_value_heads;
  std::int64_t sparse_mode;
  std::int64_t inner_precise;
  std::int64_t block_size;
  std::int64_t antiquant_mode;
  bool softmax_lse_flag;
  std::int64_t key_antiquant_mode;
  std::int64_t value_antiquant_mode;
  std::int64_t query_quant_mode;
  const AclTensor* attention_out;
  const AclTensor* softmax_lse;
};

/// Side of the optimized causal mask that sparseMode 3 takes: [2048, 2048], 1 above the
/// diagonal (masked), 0 on and below it.
inline constexpr std::int64_t kCausalMaskSide = 2048;

/// The simulated aclnnFusedInferAttentionScoreV4 subset: MLA (query d = 512 with queryRope
/// d = 64) over a paged cache, for decode and multi-token prediction.
///   query bf16 [B, S, N, 512] and queryRope bf16 [B, S, N, 64], inputLayout "BSND";
///   key = value lists of one bf16 [blockNum, blockSize, 512] (BnBsH, KV_N = 1), keyRope bf16
///   [blockNum, blockSize, 64]; blockTable int32 [B, maxBlocks]; actualSeqLengthsKv (host)
///   of length 1 or >= B; actualSeqLengths null; numHeads = N in {1, 2, 4, ..., 128};
///   numKeyValueHeads 1; blockSize = the cache's, a multiple of 16, <= 1024;
///   sparseMode 0 (no mask, attenMask null: every query position sees all L_b keys) or 3
///   (rightDownCausal: query position s sees keys j < L_b - (S - 1 - s); attenMask int8,
///   uint8 or bool [2048, 2048], the documented optimized mask, checked to be exactly
///   mask[i][j] = (j > i)); preTokens = nextTokens = 2147483647; innerPrecise 0; every quant
///   mode 0, every quant, prefix, padding, pse and sink tensor null; attentionOut bf16
///   [B, S, N, 512]; softmaxLse float32 [B, N, S, 1] if softmaxLseFlag (null otherwise).
/// Every query row must see at least one key (L_b >= S under sparseMode 3, >= 1 under 0): the
/// documented handling of rows that see none ("invalid rows") is not numerically specified,
/// so the simulation refuses them.
/// The documented formula, per row: s_j = scaleValue * (q . k_j + q_rope . k_rope_j);
/// lse = max_j s_j + log sum_j exp(s_j - max); out = sum_j exp(s_j - lse) v_j. Computed in
/// binary64; out rounded to binary32 then to bf16 (nearest even), lse to binary32. Our
/// choice, not the hardware's rounding. The workspace holds the lse rows (B * N * S float).
inline int fused_infer_attention_score_v4(const FusedInferAttentionArgs& args,
                                          std::uint64_t* workspace_size, AclOpExecutor** executor) {
  using namespace aclnn_detail;
  constexpr std::int64_t kNope = 512, kRope = 64;
  if (args.query == nullptr || args.key == nullptr || args.value == nullptr ||
      args.attention_out == nullptr || workspace_size == nullptr || executor == nullptr)
    return kAclnnErrParamNullptr;
  if (args.pse_shift != nullptr || args.actual_seq_lengths != nullptr ||
      args.key_rope_antiquant_scale != nullptr || args.dequant_scale_query != nullptr ||
      args.learnable_sink != nullptr || args.actual_seq_lengths_kv == nullptr ||
      args.block_table == nullptr || args.query_rope == nullptr || args.key_rope == nullptr)
    return kAclnnErrParamInvalid;
  for (const void* p : args.quant_and_prefix)
    if (p != nullptr) return kAclnnErrParamInvalid;
  if (args.input_layout == nullptr || std::string(args.input_layout) != "BSND" ||
      args.num_key_value_heads != 1 || (args.sparse_mode != 0 && args.sparse_mode != 3) ||
      args.inner_precise != 0 || args.antiquant_mode != 0 || args.key_antiquant_mode != 0 ||
      args.value_antiquant_mode != 0 || args.query_quant_mode != 0 ||
      args.pre_tokens != 2147483647 || args.next_tokens != 2147483647 ||
      !std::isfinite(args.scale_value))
    return kAclnnErrParamInvalid;
  const AclTensor* q = args.query;
  const AclTensor* k = single(args.key);
  const AclTensor* v = single(args.value);
  if (k == nullptr || v == nullptr || q->view.size() != 4 || k->view.size() != 3)
    return kAclnnErrParamInvalid;
  const std::int64_t batch = q->view[0], seq = q->view[1], heads = q->view[2];
  const std::int64_t num_blocks = k->view[0], block_size = k->view[1];
  const bool heads_ok = heads >= 1 && heads <= 128 && (heads & (heads - 1)) == 0;
  if (!heads_ok || heads != args.num_heads || block_size != args.block_size ||
      block_size % 16 != 0 || block_size < 16 || block_size > 1024 || batch < 1 || seq < 1 ||
      num_blocks < 1)
    return kAclnnErrParamInvalid;
  const AclTensor* table = args.block_table;
  if (table->view.size() != 2) return kAclnnErrParamInvalid;
  const std::int64_t max_blocks = table->view[1];
  if (!is(q, AclDType::bf16, {batch, seq, heads, kNope}) ||
      !is(args.query_rope, AclDType::bf16, {batch, seq, heads, kRope}) ||
      !is(k, AclDType::bf16, {num_blocks, block_size, kNope}) ||
      !is(v, AclDType::bf16, {num_blocks, block_size, kNope}) ||
      !is(args.key_rope, AclDType::bf16, {num_blocks, block_size, kRope}) ||
      !is(table, AclDType::int32, {batch, max_blocks}) ||
      !is(args.attention_out, AclDType::bf16, {batch, seq, heads, kNope}))
    return kAclnnErrParamInvalid;
  const AclTensor* lse = args.softmax_lse;
  if (args.softmax_lse_flag ? !is(lse, AclDType::float32, {batch, heads, seq, 1}) : lse != nullptr)
    return kAclnnErrParamInvalid;
  const AclTensor* mask = args.atten_mask;
  if (args.sparse_mode == 0 && mask != nullptr) return kAclnnErrParamInvalid;
  if (args.sparse_mode == 3 && !(is(mask, AclDType::int8, {kCausalMaskSide, kCausalMaskSide}) ||
                                 is(mask, AclDType::uint8, {kCausalMaskSide, kCausalMaskSide}) ||
                                 is(mask, AclDType::boolean, {kCausalMaskSide, kCausalMaskSide})))
    return kAclnnErrParamInvalid;
  for (const AclTensor* t :
       {q, args.query_rope, k, v, args.key_rope, table, args.attention_out, lse, mask})
    if (t != nullptr && (!contiguous(*t) || !in_gm(*t))) return kAclnnErrParamInvalid;
  const std::vector<std::int64_t>& lengths_in = args.actual_seq_lengths_kv->values;
  if (lengths_in.size() != 1 && lengths_in.size() < static_cast<std::size_t>(batch))
    return kAclnnErrParamInvalid;
  std::vector<std::int64_t> lengths(static_cast<std::size_t>(batch));
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t length =
        lengths_in[lengths_in.size() == 1 ? 0 : static_cast<std::size_t>(b)];
    if (length < (args.sparse_mode == 3 ? seq : 1) || length > max_blocks * block_size)
      return kAclnnErrParamInvalid;
    lengths[static_cast<std::size_t>(b)] = length;
  }
  const std::uint64_t bytes = static_cast<std::uint64_t>(batch * heads * seq) * sizeof(float);
  *workspace_size = bytes;
  const double scale = args.scale_value;
  const std::int64_t sparse_mode = args.sparse_mode;
  const AclTensor* q_rope = args.query_rope;
  const AclTensor* k_rope = args.key_rope;
  const AclTensor* out = args.attention_out;
  *executor = new AclOpExecutor{
      bytes, [=](std::byte* workspace) {
        if (!workspace_ok(workspace, bytes)) return kAclnnErrParamInvalid;
        if (mask != nullptr) {
          const std::vector<std::uint8_t> m = read<std::uint8_t>(*mask);
          for (std::int64_t i = 0; i < kCausalMaskSide; ++i)
            for (std::int64_t j = 0; j < kCausalMaskSide; ++j)
              if (m[static_cast<std::size_t>(i * kCausalMaskSide + j)] != (j > i ? 1 : 0))
                return kAclnnErrParamInvalid;
        }
        const std::vector<std::int32_t> blocks = read<std::int32_t>(*table);
        for (std::int64_t b = 0; b < batch; ++b)
          for (std::int64_t c = 0; c * block_size < lengths[static_cast<std::size_t>(b)]; ++c) {
            const std::int32_t block = blocks[static_cast<std::size_t>(b * max_blocks + c)];
            if (block < 0 || block >= num_blocks) return kAclnnErrParamInvalid;
          }
        const std::vector<std::uint16_t> qn = read<std::uint16_t>(*q);
        const std::vector<std::uint16_t> qr = read<std::uint16_t>(*q_rope);
        const std::vector<std::uint16_t> kn = read<std::uint16_t>(*k);
        const std::vector<std::uint16_t> vn = read<std::uint16_t>(*v);
        const std::vector<std::uint16_t> kr = read<std::uint16_t>(*k_rope);
        std::vector<std::uint16_t> o(qn.size());
        std::vector<float> row_lse(static_cast<std::size_t>(batch * heads * seq));
        std::vector<double> scores, acc(kNope);
        for (std::int64_t b = 0; b < batch; ++b)
          for (std::int64_t s = 0; s < seq; ++s)
            for (std::int64_t h = 0; h < heads; ++h) {
              const std::int64_t length = lengths[static_cast<std::size_t>(b)];
              const std::int64_t visible = sparse_mode == 3 ? length - (seq - 1 - s) : length;
              const std::size_t row = static_cast<std::size_t>(((b * seq + s) * heads + h));
              const auto cache_row = [&](std::int64_t j) {
                const std::int32_t block =
                    blocks[static_cast<std::size_t>(b * max_blocks + j / block_size)];
                return static_cast<std::size_t>(std::int64_t{block} * block_size + j % block_size);
              };
              scores.assign(static_cast<std::size_t>(visible), 0.0);
              double max = -std::numeric_limits<double>::infinity();
              for (std::int64_t j = 0; j < visible; ++j) {
                const std::size_t at = cache_row(j);
                double dot = 0;
                for (std::int64_t c = 0; c < kNope; ++c)
                  dot += double{to_float(qn[row * kNope + static_cast<std::size_t>(c)])} *
                         to_float(kn[at * kNope + static_cast<std::size_t>(c)]);
                for (std::int64_t c = 0; c < kRope; ++c)
                  dot += double{to_float(qr[row * kRope + static_cast<std::size_t>(c)])} *
                         to_float(kr[at * kRope + static_cast<std::size_t>(c)]);
                scores[static_cast<std::size_t>(j)] = scale * dot;
                max = std::max(max, scale * dot);
              }
              double sum = 0;
              for (double& score : scores) sum += (score = std::exp(score - max));
              std::fill(acc.begin(), acc.end(), 0.0);
              for (std::int64_t j = 0; j < visible; ++j) {
                const std::size_t at = cache_row(j);
                const double p = scores[static_cast<std::size_t>(j)] / sum;
                for (std::int64_t d = 0; d < kNope; ++d)
                  acc[static_cast<std::size_t>(d)] +=
                      p * to_float(vn[at * kNope + static_cast<std::size_t>(d)]);
              }
              for (std::int64_t d = 0; d < kNope; ++d)
                o[row * kNope + static_cast<std::size_t>(d)] =
                    bf16::from_float(static_cast<float>(acc[static_cast<std::size_t>(d)])).bits;
              row_lse[static_cast<std::size_t>((b * heads + h) * seq + s)] =
                  static_cast<float>(max + std::log(sum));
            }
        gm_write(workspace, row_lse.data(), bytes);
        write(*out, o);
        if (lse != nullptr) {
          gm_read(row_lse.data(), workspace, bytes);
          write(*lse, row_lse);
        }
        return kAclnnSuccess;
      }};
  return kAclnnSuccess;
}

/// The second phase of every simulated operator: runs `executor` with `workspace` (which must
/// hold workspace_size bytes of GM, the first phase's figure) and deletes it. Returns
/// ACLNN_ERR_PARAM_NULLPTR for a null executor, ACLNN_ERR_PARAM_INVALID for a workspace size
/// other than the first phase's or a workspace that is not that much GM.
inline int run_executor(void* workspace, std::uint64_t workspace_size, AclOpExecutor* executor) {
  if (executor == nullptr) return kAclnnErrParamNullptr;
  const std::uint64_t expected = executor->workspace_bytes;
  std::function<int(std::byte*)> run = std::move(executor->run);
  delete executor;
  if (workspace_size != expected) return kAclnnErrParamInvalid;
  return run(static_cast<std::byte*>(workspace));
}

}  // namespace cmx::ascend_sim
