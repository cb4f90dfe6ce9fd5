// SPDX-License-Identifier: Apache-2.0
// The clean-room aclnn shim: the names of CANN's single-operator API (aclnn) that cmx's
// Ascend host wrappers call, declared by us from Huawei's public documentation, and
// implemented by the CPU simulation of sim/aclnn_ops.hpp on the emulated machine of
// cmx::ascend_sim. No CANN header was copied or vendored (they are under the CANN Open Software
// License).
//
// Every operator is two-phase, as documented: XxxGetWorkspaceSize checks the arguments and
// returns the workspace size and an executor; Xxx(workspace, size, executor, stream) runs it.
// The simulation implements the subset of each operator's arguments that cmx uses (see
// sim/aclnn_ops.hpp for each subset and the formula computed); any other argument returns
// ACLNN_ERR_PARAM_INVALID (161002), a null required pointer ACLNN_ERR_PARAM_NULLPTR (161001).
// Operators run synchronously on the calling NPU host thread; the stream is only checked.
//
// Documentation used (names, parameters, values; no text copied):
//   aclCreateTensor (viewDims, stride, offset, format, storageDims; data 32-byte aligned):
//   https://www.hiascend.com/document/detail/zh/canncommercial/900/API/aolapi/operatorlist_00019.html
//   https://www.hiascend.com/document/detail/en/canncommercial/850/API/aolapi/operatorlist_00019.html
//   aclnnQuantMatmulV4 (prototype, formulas, x2 (n, k) with transposeX2, dtype combinations,
//   last dims < 65536, return codes):
//   https://www.hiascend.com/document/detail/zh/CANNCommunityEdition/82RC1alpha002/API/aolapi/context/aclnnQuantMatmulV4.md
//   https://www.hiascend.com/document/detail/zh/canncommercial/800/apiref/aolapi/context/aclnnQuantMatmulV4.md
//   aclnnGroupedMatmulV4 (prototype, groupListType, splitItem, groupType 0 with single x,
//   weight and out tensors, int8 x int8 with bf16 scale and float32 per-token scale to bf16,
//   weight (g, K, N) or transposed, at most 1024 groups):
//   https://www.hiascend.com/document/detail/zh/CANNCommunityEdition/83RC1alpha001/API/aolapi/context/aclnnGroupedMatmulV4.md
//   and the same page in a public mirror of CANN's ops-transformer repository
//   (gmm/grouped_matmul/docs/aclnnGroupedMatmulV4.md)
//   aclnnFusedInferAttentionScoreV4 (prototype; MLA: query d 512 + queryRope d 64, Q_N a power
//   of two <= 128, K_N 1, BnBsH paged cache, blockSize a multiple of 16 <= 1024, sparseMode
//   0/3/4 with the [2048, 2048] optimized mask, softmaxLse [B, N, Q_S, 1] float32, codes):
//   https://www.hiascend.com/document/detail/zh/CANNCommunityEdition/83RC1alpha001/API/aolapi/context/aclnnFusedInferAttentionScoreV4.md
//   https://www.hiascend.com/document/detail/zh/CANNCommunityEdition/850alpha002/API/aolapi/context/aclnnFusedInferAttentionScoreV4.md
//   (aclrtStream and its calls are ACL's: shim/acl.hpp.)
// Assumed, not read: the numeric values of aclDataType / aclFormat (only the names matter to a
// build against CANN, which uses its own header), aclCreateIntArray / aclDestroyIntArray /
// aclDestroyTensorList (named as the operator pages' examples use them),
// and that a tensor list owns its tensors (aclDestroyTensorList destroys them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "sim/ascend/aclnn_ops.hpp"
#include "sim/ascend/machine.hpp"
#include "sim/ascend/shim/acl.hpp"

/// The status every aclnn call returns: 0 on success.
typedef int aclnnStatus;
static const int ACLNN_SUCCESS = cmx::ascend_sim::kAclnnSuccess;
static const int ACLNN_ERR_PARAM_NULLPTR = cmx::ascend_sim::kAclnnErrParamNullptr;
static const int ACLNN_ERR_PARAM_INVALID = cmx::ascend_sim::kAclnnErrParamInvalid;
static const int ACLNN_ERR_RUNTIME_ERROR = cmx::ascend_sim::kAclnnErrRuntime;

/// Element types of an aclTensor (those cmx uses, and a few it refuses).
typedef enum aclDataType {
  ACL_FLOAT = static_cast<int>(cmx::ascend_sim::AclDType::float32),
  ACL_FLOAT16 = static_cast<int>(cmx::ascend_sim::AclDType::float16),
  ACL_INT8 = static_cast<int>(cmx::ascend_sim::AclDType::int8),
  ACL_INT32 = static_cast<int>(cmx::ascend_sim::AclDType::int32),
  ACL_UINT8 = static_cast<int>(cmx::ascend_sim::AclDType::uint8),
  ACL_INT64 = static_cast<int>(cmx::ascend_sim::AclDType::int64),
  ACL_UINT64 = static_cast<int>(cmx::ascend_sim::AclDType::uint64),
  ACL_BOOL = static_cast<int>(cmx::ascend_sim::AclDType::boolean),
  ACL_BF16 = static_cast<int>(cmx::ascend_sim::AclDType::bf16),
} aclDataType;

/// Data layout formats of an aclTensor: ND (row-major with strides) and FRACTAL_NZ (the
/// matmul weight format; refused by the simulation).
typedef enum aclFormat {
  ACL_FORMAT_ND = static_cast<int>(cmx::ascend_sim::AclFormatKind::nd),
  ACL_FORMAT_FRACTAL_NZ = static_cast<int>(cmx::ascend_sim::AclFormatKind::fractal_nz),
} aclFormat;

/// A device tensor description (opaque in CANN).
typedef cmx::ascend_sim::AclTensor aclTensor;
/// A list of tensors (opaque in CANN).
typedef cmx::ascend_sim::AclTensorList aclTensorList;
/// A host array of int64 (opaque in CANN).
typedef cmx::ascend_sim::AclIntArray aclIntArray;
/// What a first-phase call returns and the second phase runs (opaque in CANN).
typedef cmx::ascend_sim::AclOpExecutor aclOpExecutor;

/// Describes `viewDimsNum` dims `viewDims` of `dataType` elements, element strides `stride`,
/// first element at element `offset` of storage `storageDims` at device address `tensorData`.
/// Returns nullptr for a null dims or stride array with a nonzero count, or a negative value.
/// The address itself is checked (GM, 32-byte aligned) by the operator that reads it.
inline aclTensor* aclCreateTensor(const int64_t* viewDims, uint64_t viewDimsNum,
                                  aclDataType dataType, const int64_t* stride, int64_t offset,
                                  aclFormat format, const int64_t* storageDims,
                                  uint64_t storageDimsNum, void* tensorData) {
  if ((viewDimsNum > 0 && (viewDims == nullptr || stride == nullptr)) ||
      (storageDimsNum > 0 && storageDims == nullptr) || offset < 0)
    return nullptr;
  auto* tensor = new aclTensor;
  tensor->view.assign(viewDims, viewDims + viewDimsNum);
  tensor->strides.assign(stride, stride + viewDimsNum);
  tensor->storage.assign(storageDims, storageDims + storageDimsNum);
  for (const std::vector<int64_t>* values : {&tensor->view, &tensor->strides, &tensor->storage})
    for (int64_t value : *values)
      if (value < 0) {
        delete tensor;
        return nullptr;
      }
  tensor->offset = offset;
  tensor->dtype = static_cast<cmx::ascend_sim::AclDType>(dataType);
  tensor->format = static_cast<int>(format);
  tensor->data = tensorData;
  return tensor;
}

/// Destroys a tensor from aclCreateTensor (not one owned by a list). Null is accepted.
inline aclnnStatus aclDestroyTensor(const aclTensor* tensor) {
  delete tensor;
  return ACLNN_SUCCESS;
}

/// A list of `size` tensors; the list owns them from now on (aclDestroyTensorList destroys
/// them). Returns nullptr for a null array with a nonzero size.
inline aclTensorList* aclCreateTensorList(const aclTensor* const* value, uint64_t size) {
  if (size > 0 && value == nullptr) return nullptr;
  auto* list = new aclTensorList;
  list->tensors.assign(value, value + size);
  return list;
}

/// Destroys a list and the tensors it holds. Null is accepted.
inline aclnnStatus aclDestroyTensorList(const aclTensorList* list) {
  if (list == nullptr) return ACLNN_SUCCESS;
  for (const aclTensor* tensor : list->tensors) delete tensor;
  delete list;
  return ACLNN_SUCCESS;
}

/// A host array of `size` int64 values, copied. Returns nullptr for a null array with a
/// nonzero size.
inline aclIntArray* aclCreateIntArray(const int64_t* value, uint64_t size) {
  if (size > 0 && value == nullptr) return nullptr;
  auto* array = new aclIntArray;
  array->values.assign(value, value + size);
  return array;
}

/// Destroys an array from aclCreateIntArray. Null is accepted.
inline aclnnStatus aclDestroyIntArray(const aclIntArray* array) {
  delete array;
  return ACLNN_SUCCESS;
}

namespace cmx::ascend_sim::detail {
/// The second phase, with the stream checked: ACLNN_ERR_PARAM_NULLPTR for a null stream,
/// ACLNN_ERR_RUNTIME_ERROR for a stream of another NPU or a thread of none (the executor is
/// deleted either way).
inline aclnnStatus run_on_stream(void* workspace, uint64_t size, aclOpExecutor* executor,
                                 aclrtStream stream) {
  const ThreadContext& context = thread_context();
  if (stream == nullptr || executor == nullptr) {
    delete executor;
    return ACLNN_ERR_PARAM_NULLPTR;
  }
  if (context.machine == nullptr || context.core != nullptr || stream->machine != context.machine ||
      stream->npu != context.npu) {
    delete executor;
    return ACLNN_ERR_RUNTIME_ERROR;
  }
  return run_executor(workspace, size, executor);
}
}  // namespace cmx::ascend_sim::detail

/// W8A8 matmul, first phase (see cmx::ascend_sim::quant_matmul_v4 for the simulated subset).
inline aclnnStatus aclnnQuantMatmulV4GetWorkspaceSize(
    const aclTensor* x1, const aclTensor* x2, const aclTensor* scale, const aclTensor* offset,
    const aclTensor* pertokenScaleOptional, const aclTensor* bias, bool transposeX1,
    bool transposeX2, const aclTensor* out, uint64_t* workspaceSize, aclOpExecutor** executor) {
  return cmx::ascend_sim::quant_matmul_v4(x1, x2, scale, offset, pertokenScaleOptional, bias,
                                          transposeX1, transposeX2, out, workspaceSize, executor);
}

/// W8A8 matmul, second phase.
inline aclnnStatus aclnnQuantMatmulV4(void* workspace, uint64_t workspaceSize,
                                      aclOpExecutor* executor, aclrtStream stream) {
  return cmx::ascend_sim::detail::run_on_stream(workspace, workspaceSize, executor, stream);
}

/// Grouped matmul, first phase (see cmx::ascend_sim::grouped_matmul_v4 for the simulated
/// subset).
inline aclnnStatus aclnnGroupedMatmulV4GetWorkspaceSize(
    const aclTensorList* x, const aclTensorList* weight, const aclTensorList* biasOptional,
    const aclTensorList* scaleOptional, const aclTensorList* offsetOptional,
    const aclTensorList* antiquantScaleOptional, const aclTensorList* antiquantOffsetOptional,
    const aclTensorList* perTokenScaleOptional, const aclTensor* groupListOptional,
    const aclTensorList* activationInputOptional, const aclTensorList* activationQuantScaleOptional,
    const aclTensorList* activationQuantOffsetOptional, int64_t splitItem, int64_t groupType,
    int64_t groupListType, int64_t actType, aclTensorList* out,
    aclTensorList* activationFeatureOutOptional, aclTensorList* dynQuantScaleOutOptional,
    uint64_t* workspaceSize, aclOpExecutor** executor) {
  return cmx::ascend_sim::grouped_matmul_v4(
      x, weight, biasOptional, scaleOptional, offsetOptional, antiquantScaleOptional,
      antiquantOffsetOptional, perTokenScaleOptional, groupListOptional, activationInputOptional,
      activationQuantScaleOptional, activationQuantOffsetOptional, splitItem, groupType,
      groupListType, actType, out, activationFeatureOutOptional, dynQuantScaleOutOptional,
      workspaceSize, executor);
}

/// Grouped matmul, second phase.
inline aclnnStatus aclnnGroupedMatmulV4(void* workspace, uint64_t workspaceSize,
                                        aclOpExecutor* executor, aclrtStream stream) {
  return cmx::ascend_sim::detail::run_on_stream(workspace, workspaceSize, executor, stream);
}

/// Fused inference attention, first phase (see cmx::ascend_sim::fused_infer_attention_score_v4
/// for the simulated subset).
inline aclnnStatus aclnnFusedInferAttentionScoreV4GetWorkspaceSize(
    const aclTensor* query, const aclTensorList* key, const aclTensorList* value,
    const aclTensor* pseShiftOptional, const aclTensor* attenMaskOptional,
    const aclIntArray* actualSeqLengthsOptional, const aclIntArray* actualSeqLengthsKvOptional,
    const aclTensor* deqScale1Optional, const aclTensor* quantScale1Optional,
    const aclTensor* deqScale2Optional, const aclTensor* quantScale2Optional,
    const aclTensor* quantOffset2Optional, const aclTensor* antiquantScaleOptional,
    const aclTensor* antiquantOffsetOptional, const aclTensor* blockTableOptional,
    const aclTensor* queryPaddingSizeOptional, const aclTensor* kvPaddingSizeOptional,
    const aclTensor* keyAntiquantScaleOptional, const aclTensor* keyAntiquantOffsetOptional,
    const aclTensor* valueAntiquantScaleOptional, const aclTensor* valueAntiquantOffsetOptional,
    const aclTensor* keySharedPrefixOptional, const aclTensor* valueSharedPrefixOptional,
    const aclIntArray* actualSharedPrefixLenOptional, const aclTensor* queryRopeOptional,
    const aclTensor* keyRopeOptional, const aclTensor* keyRopeAntiquantScaleOptional,
    const aclTensor* dequantScaleQueryOptional, const aclTensor* learnableSinkOptional,
    int64_t numHeads, double scaleValue, int64_t preTokens, int64_t nextTokens, char* inputLayout,
    int64_t numKeyValueHeads, int64_t sparseMode, int64_t innerPrecise, int64_t blockSize,
    int64_t antiquantMode, bool softmaxLseFlag, int64_t keyAntiquantMode,
    int64_t valueAntiquantMode, int64_t queryQuantMode, const aclTensor* attentionOut,
    const aclTensor* softmaxLse, uint64_t* workspaceSize, aclOpExecutor** executor) {
  const cmx::ascend_sim::FusedInferAttentionArgs args{
      .query = query,
      .key = key,
      .value = value,
      .pse_shift = pseShiftOptional,
      .atten_mask = attenMaskOptional,
      .actual_seq_lengths = actualSeqLengthsOptional,
      .actual_seq_lengths_kv = actualSeqLengthsKvOptional,
      .quant_and_prefix = {deqScale1Optional, quantScale1Optional, deqScale2Optional,
                           quantScale2Optional, quantOffset2Optional, antiquantScaleOptional,
                           antiquantOffsetOptional, queryPaddingSizeOptional, kvPaddingSizeOptional,
                           keyAntiquantScaleOptional, keyAntiquantOffsetOptional,
                           valueAntiquantScaleOptional, valueAntiquantOffsetOptional,
                           keySharedPrefixOptional, valueSharedPrefixOptional,
                           actualSharedPrefixLenOptional},
      .block_table = blockTableOptional,
      .query_rope = queryRopeOptional,
      .key_rope = keyRopeOptional,
      .key_rope_antiquant_scale = keyRopeAntiquantScaleOptional,
      .dequant_scale_query = dequantScaleQueryOptional,
      .learnable_sink = learnableSinkOptional,
      .num_heads = numHeads,
      .scale_value = scaleValue,
      .pre_tokens = preTokens,
      .next_tokens = nextTokens,
      .input_layout = inputLayout,
      .num_key_value_heads = numKeyValueHeads,
      .sparse_mode = sparseMode,
      .inner_precise = innerPrecise,
      .block_size = blockSize,
      .antiquant_mode = antiquantMode,
      .softmax_lse_flag = softmaxLseFlag,
      .key_antiquant_mode = keyAntiquantMode,
      .value_antiquant_mode = valueAntiquantMode,
      .query_quant_mode = queryQuantMode,
      .attention_out = attentionOut,
      .softmax_lse = softmaxLse};
  return cmx::ascend_sim::fused_infer_attention_score_v4(args, workspaceSize, executor);
}

/// Fused inference attention, second phase.
inline aclnnStatus aclnnFusedInferAttentionScoreV4(void* workspace, uint64_t workspaceSize,
                                                   aclOpExecutor* executor,
                                                   const aclrtStream stream) {
  return cmx::ascend_sim::detail::run_on_stream(workspace, workspaceSize, executor, stream);
}
