// SPDX-License-Identifier: Apache-2.0
// What cmx's Ascend host wrappers (gemm.hpp, mla.hpp) share: status checks that raise
// cmx::Error naming the call and its code, owners for device memory and aclTensor objects, and
// the two-phase operator call (GetWorkspaceSize, aclrtMalloc'd workspace, run on a stream).
// Compiled against the clean-room shim (no CANN here); the same calls are CANN's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <utility>
#include <vector>

#include "cmx/backend/ascend/status.hpp"
#include "cmx/backend/ascend/toolkit.hpp"
#include "cmx/core/error.hpp"

namespace cmx::ascend::detail {

/// Throws unless `status` is ACLNN_SUCCESS: cmx::Error(invalid_argument) for
/// ACLNN_ERR_PARAM_NULLPTR / _INVALID (an argument the operator does not support), else
/// cmx::Error(transport); the message names the operator call and the code.
inline void check_aclnn(aclnnStatus status, const char* call, const char* what) {
  if (status == ACLNN_SUCCESS) return;
  const bool argument = status == ACLNN_ERR_PARAM_NULLPTR || status == ACLNN_ERR_PARAM_INVALID;
  cmx::detail::fail(argument ? ErrorCode::invalid_argument : ErrorCode::transport, what, ": ", call,
                    " returned aclnn status ", status,
                    argument ? " (an argument outside what the operator supports)" : "");
}

/// Device memory from aclrtMalloc, freed (aclrtFree) with the object. Empty for 0 bytes.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  /// Allocates `bytes` of device memory (none for 0). Throws cmx::Error(transport) naming
  /// `what` if aclrtMalloc fails.
  DeviceBuffer(std::size_t bytes, const char* what) {
    if (bytes > 0)
      check_acl(aclrtMalloc(&data_, bytes, ACL_MEM_MALLOC_HUGE_FIRST), "aclrtMalloc", what);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept : data_(other.data_) { other.data_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    return *this;
  }
  ~DeviceBuffer() {
    if (data_ != nullptr) (void)aclrtFree(data_);
  }
  void* get() const noexcept { return data_; }

 private:
  void* data_ = nullptr;
};

/// A device-to-device aclrtMemcpy of `bytes`; throws cmx::Error(transport) naming `what`.
inline void copy_device(void* dst, const void* src, std::size_t bytes, const char* what) {
  check_acl(aclrtMemcpy(dst, bytes, src, bytes, ACL_MEMCPY_DEVICE_TO_DEVICE), "aclrtMemcpy", what);
}

/// A host-to-device aclrtMemcpy of `bytes`; throws cmx::Error(transport) naming `what`.
inline void copy_to_device(void* dst, const void* src, std::size_t bytes, const char* what) {
  check_acl(aclrtMemcpy(dst, bytes, src, bytes, ACL_MEMCPY_HOST_TO_DEVICE), "aclrtMemcpy", what);
}

struct TensorDelete {
  void operator()(aclTensor* tensor) const noexcept { (void)aclDestroyTensor(tensor); }
};
struct TensorListDelete {
  void operator()(aclTensorList* list) const noexcept { (void)aclDestroyTensorList(list); }
};
struct IntArrayDelete {
  void operator()(aclIntArray* array) const noexcept { (void)aclDestroyIntArray(array); }
};
using Tensor = std::unique_ptr<aclTensor, TensorDelete>;
using TensorList = std::unique_ptr<aclTensorList, TensorListDelete>;
using IntArray = std::unique_ptr<aclIntArray, IntArrayDelete>;

/// A contiguous ND tensor of `dtype` with view `shape` at device address `data` (offset 0,
/// storage = view). Throws cmx::Error(transport) naming `what` if aclCreateTensor fails.
inline Tensor make_tensor(const void* data, aclDataType dtype, std::vector<std::int64_t> shape,
                          const char* what) {
  std::vector<std::int64_t> strides(shape.size(), 1);
  for (std::size_t d = shape.size(); d-- > 1;) strides[d - 1] = strides[d] * shape[d];
  Tensor tensor(aclCreateTensor(shape.data(), shape.size(), dtype, strides.data(), 0, ACL_FORMAT_ND,
                                shape.data(), shape.size(), const_cast<void*>(data)));
  cmx::detail::require(tensor != nullptr, ErrorCode::transport, what,
                       ": aclCreateTensor returned null");
  return tensor;
}

/// A list owning `tensors` (aclDestroyTensorList destroys them with it).
inline TensorList make_list(std::initializer_list<aclTensor*> tensors, const char* what) {
  std::vector<const aclTensor*> items(tensors.begin(), tensors.end());
  TensorList list(aclCreateTensorList(items.data(), items.size()));
  if (list == nullptr) {
    for (aclTensor* tensor : tensors) (void)aclDestroyTensor(tensor);
    cmx::detail::fail(ErrorCode::transport, what, ": aclCreateTensorList returned null");
  }
  return list;
}

/// The second half of every two-phase call: allocates the workspace the first phase asked for,
/// runs `run(workspace, size, executor, stream)` (the operator's second phase), and waits for
/// the stream, so that the workspace and the tensors the caller holds outlive the operator.
/// Throws as check_aclnn / check_acl, naming `call` and `what`.
template <class Run>
void run_operator(std::uint64_t workspace_size, aclOpExecutor* executor, aclrtStream stream,
                  Run&& run, const char* call, const char* what) {
  DeviceBuffer workspace(workspace_size, what);
  check_aclnn(run(workspace.get(), workspace_size, executor, stream), call, what);
  check_acl(aclrtSynchronizeStream(stream), "aclrtSynchronizeStream", what);
}

}  // namespace cmx::ascend::detail
