// SPDX-License-Identifier: Apache-2.0
// The clean-room ACL (AscendCL runtime) shim: the host-side memory names the cmx Ascend
// backend uses, declared by us from Huawei's public AscendCL documentation and implemented on
// the emulated machine of cmx::ascend_sim. Device memory is GM of the calling NPU host
// thread's emulated NPU.
//
// Errors follow ACL's convention, a returned aclError: the simulation returns
// ACL_ERROR_INVALID_PARAM for every argument it rejects (a null pointer, a zero size, a copy
// larger than destMax, a "device" pointer that is not GM or a copy past its allocation's end)
// and ACL_ERROR_UNINITIALIZE on a thread of no emulated NPU; it never writes on error. Host
// memory exhaustion throws std::bad_alloc.
//
// Documentation used (names, parameters, values; no text copied):
//   aclError and its codes:
//   https://www.hiascend.com/document/detail/en/canncommercial/850/API/appdevgapi/aclcppdevg_03_1344.html
//   aclrtMalloc:
//   https://www.hiascend.com/doc_center/source/zh/canncommercial/5046/windowsversion/windowsug/aclcppdevg_03_0059.html
//   aclrtMemMallocPolicy:
//   https://www.hiascend.com/document/detail/zh/CANNCommunityEdition/920beta1/API/runtimeapi/aclcppdevg_03_1349.html
//   aclrtMemcpy, aclrtMemcpyKind:
//   https://www.hiascend.com/doc_center/source/zh/canncommercial/800/apiref/appdevgapi/aclcppdevg_03_0105.html
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "sim/ascend/core.hpp"
#include "sim/ascend/machine.hpp"

/// An ACL return code: 0 on success.
typedef int aclError;
static const int ACL_SUCCESS = 0;                   ///< success
static const int ACL_ERROR_INVALID_PARAM = 100000;  ///< an argument failed verification
static const int ACL_ERROR_UNINITIALIZE = 100001;   ///< no device on this thread

/// How aclrtMalloc chooses pages; the simulation accepts every value and ignores it.
typedef enum aclrtMemMallocPolicy {
  ACL_MEM_MALLOC_HUGE_FIRST,
  ACL_MEM_MALLOC_HUGE_ONLY,
  ACL_MEM_MALLOC_NORMAL_ONLY,
  ACL_MEM_MALLOC_HUGE_FIRST_P2P,
  ACL_MEM_MALLOC_HUGE_ONLY_P2P,
  ACL_MEM_MALLOC_NORMAL_ONLY_P2P,
} aclrtMemMallocPolicy;

/// The direction of an aclrtMemcpy. The simulation checks it: a device side must be GM.
typedef enum aclrtMemcpyKind {
  ACL_MEMCPY_HOST_TO_HOST,
  ACL_MEMCPY_HOST_TO_DEVICE,
  ACL_MEMCPY_DEVICE_TO_HOST,
  ACL_MEMCPY_DEVICE_TO_DEVICE,
} aclrtMemcpyKind;

/// Allocates `size` bytes of GM on the calling thread's NPU into *devPtr: zero-filled
/// (ACL leaves it uninitialized: do not rely on the zeros), 4096-byte aligned. Returns
/// ACL_ERROR_INVALID_PARAM if devPtr is null or size is 0, ACL_ERROR_UNINITIALIZE on a thread
/// that is no NPU host thread of Machine::run.
inline aclError aclrtMalloc(void** devPtr, size_t size, aclrtMemMallocPolicy policy) {
  (void)policy;
  const auto& context = cmx::ascend_sim::detail::thread_context();
  if (context.machine == nullptr || context.core != nullptr) return ACL_ERROR_UNINITIALIZE;
  if (devPtr == nullptr || size == 0) return ACL_ERROR_INVALID_PARAM;
  *devPtr = context.machine->allocate_gm(context.npu, size);
  return ACL_SUCCESS;
}

/// Frees GM from aclrtMalloc. Returns ACL_ERROR_INVALID_PARAM for any other pointer (a
/// double free included), ACL_ERROR_UNINITIALIZE as aclrtMalloc.
inline aclError aclrtFree(void* devPtr) {
  const auto& context = cmx::ascend_sim::detail::thread_context();
  if (context.machine == nullptr || context.core != nullptr) return ACL_ERROR_UNINITIALIZE;
  try {
    context.machine->free_gm(devPtr);
  } catch (const cmx::Error&) {
    return ACL_ERROR_INVALID_PARAM;
  }
  return ACL_SUCCESS;
}

/// Copies `count` bytes from `src` to `dst` (which holds `destMax` bytes), synchronously.
/// A device side (as `kind` names it) must be GM of the emulated machine with `count` bytes
/// before the end of its allocation. Returns ACL_ERROR_INVALID_PARAM (writing nothing) for a
/// null pointer, count > destMax, or a device side that is not such GM; ACL_ERROR_UNINITIALIZE
/// as aclrtMalloc.
inline aclError aclrtMemcpy(void* dst, size_t destMax, const void* src, size_t count,
                            aclrtMemcpyKind kind) {
  const auto& context = cmx::ascend_sim::detail::thread_context();
  if (context.machine == nullptr || context.core != nullptr) return ACL_ERROR_UNINITIALIZE;
  if (dst == nullptr || src == nullptr || count > destMax) return ACL_ERROR_INVALID_PARAM;
  const bool dst_device = kind == ACL_MEMCPY_HOST_TO_DEVICE || kind == ACL_MEMCPY_DEVICE_TO_DEVICE;
  const bool src_device = kind == ACL_MEMCPY_DEVICE_TO_HOST || kind == ACL_MEMCPY_DEVICE_TO_DEVICE;
  if (kind != ACL_MEMCPY_HOST_TO_HOST && !dst_device && !src_device) return ACL_ERROR_INVALID_PARAM;
  if (dst_device && context.machine->gm_bytes_after(dst) < count) return ACL_ERROR_INVALID_PARAM;
  if (src_device && context.machine->gm_bytes_after(src) < count) return ACL_ERROR_INVALID_PARAM;
  if (src_device && dst_device) {
    // Through a bounce buffer: both sides may be touched by running kernels of other NPUs.
    std::unique_ptr<std::byte[]> bounce(new std::byte[count]);
    cmx::ascend_sim::detail::gm_read(bounce.get(), src, count);
    cmx::ascend_sim::detail::gm_write(dst, bounce.get(), count);
  } else if (src_device) {
    cmx::ascend_sim::detail::gm_read(dst, src, count);
  } else if (dst_device) {
    cmx::ascend_sim::detail::gm_write(dst, src, count);
  } else {
    std::memcpy(dst, src, count);
  }
  return ACL_SUCCESS;
}

// ---- Streams ---------------------------------------------------------------------------------
// aclrtCreateStream (as the operator pages' call examples use it), aclrtDestroyStream,
// aclrtSynchronizeStream:
// https://www.hiascend.com/document/detail/en/canncommercial/800/apiref/appdevgapi/aclcppdevg_03_0076.html
// In the simulation every launch and operator is synchronous, so nothing is ever queued.

namespace cmx::ascend_sim::detail {
/// A stream of the simulation: the NPU it belongs to (operators run synchronously).
struct SimStream {
  Machine* machine;
  int npu;
};
}  // namespace cmx::ascend_sim::detail

/// A task queue on an NPU (opaque in ACL).
typedef cmx::ascend_sim::detail::SimStream* aclrtStream;

/// Creates a stream on the calling thread's NPU into *stream. ACL_ERROR_INVALID_PARAM for a
/// null pointer, ACL_ERROR_UNINITIALIZE on a thread that is no NPU host thread.
inline aclError aclrtCreateStream(aclrtStream* stream) {
  const auto& context = cmx::ascend_sim::detail::thread_context();
  if (context.machine == nullptr || context.core != nullptr) return ACL_ERROR_UNINITIALIZE;
  if (stream == nullptr) return ACL_ERROR_INVALID_PARAM;
  *stream = new cmx::ascend_sim::detail::SimStream{context.machine, context.npu};
  return ACL_SUCCESS;
}

/// Waits for every task of `stream` (none is pending in the simulation). ACL_ERROR_INVALID_PARAM
/// for a null stream or one of another NPU.
inline aclError aclrtSynchronizeStream(aclrtStream stream) {
  const auto& context = cmx::ascend_sim::detail::thread_context();
  if (context.machine == nullptr || context.core != nullptr) return ACL_ERROR_UNINITIALIZE;
  if (stream == nullptr || stream->machine != context.machine || stream->npu != context.npu)
    return ACL_ERROR_INVALID_PARAM;
  return ACL_SUCCESS;
}

/// Destroys a stream from aclrtCreateStream. ACL_ERROR_INVALID_PARAM for a null stream.
inline aclError aclrtDestroyStream(aclrtStream stream) {
  if (stream == nullptr) return ACL_ERROR_INVALID_PARAM;
  delete stream;
  return ACL_SUCCESS;
}
