// SPDX-License-Identifier: Apache-2.0
// How a cmx kernel object becomes an AIV kernel: an `extern "C" __global__ __aicore__` entry
// per kernel type, defined in the kernel translation unit (src/ascend/kernels.cpp, compiled by
// the toolkit's ascendc_library, or by g++ against the shim), and a host-side KernelEntry that
// launches it. Device::launch finds a kernel type's entry through KernelEntry; a kernel type
// without one is a compile error.
#pragma once

#include <cstdint>

#include "cmx/backend/ascend/status.hpp"
#include "cmx/backend/ascend/toolkit.hpp"

namespace cmx::ascend::detail {

/// The AIV entry of kernel type `Kernel`: specialized by CMX_ASCEND_DECLARE_ENTRY.
template <class Kernel>
struct KernelEntry {
  static_assert(sizeof(Kernel) == 0,
                "no AIV entry for this kernel type: add it to its family's device kernels "
                "(e.g. CMX_EP_DEVICE_KERNELS in cmx/ep/device_kernels.hpp)");
};

template <class Kernel>
void run_kernel(GM_ADDR kernel_object);

}  // namespace cmx::ascend::detail

/// Tells the toolkit the kernel runs on the vector cores only (no cube, no mix).
#define CMX_ASCEND_AIV_ONLY() KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY)

#ifndef CMX_ASCEND_TOOLKIT_LAUNCHER
/// With the CANN toolkit, ascendc_library generates the host launcher of every entry
/// (aclrtlaunch_<name>); a toolkit that does not (the clean-room simulation) defines this macro
/// to define it beside the entry.
#define CMX_ASCEND_TOOLKIT_LAUNCHER(name)
#endif

/// Kernel translation unit: defines the AIV entry `name`, which runs a copy of the kernel
/// object of type `...` (at kernel_object, in GM) on each core of the launch.
#define CMX_ASCEND_DEFINE_KERNEL(name, ...)                           \
  extern "C" __global__ __aicore__ void name(GM_ADDR kernel_object) { \
    CMX_ASCEND_AIV_ONLY();                                            \
    ::cmx::ascend::detail::run_kernel<__VA_ARGS__>(kernel_object);    \
  }                                                                   \
  CMX_ASCEND_TOOLKIT_LAUNCHER(name)

/// Host: declares the launcher that ascendc_library generates for the entry `name`
/// (aclrtlaunch_<name>, the kernel's GM arguments as void*) and launches it on `stream`.
#define CMX_ASCEND_DECLARE_ENTRY(name, ...)                                               \
  extern "C" std::uint32_t aclrtlaunch_##name(std::uint32_t blockDim, aclrtStream stream, \
                                              void* kernel_object);                       \
  template <>                                                                             \
  struct cmx::ascend::detail::KernelEntry<__VA_ARGS__> {                                  \
    static void launch(std::uint32_t blocks, aclrtStream stream, GM_ADDR object) {        \
      ::cmx::detail::require(aclrtlaunch_##name(blocks, stream, object) == 0,             \
                             ::cmx::ErrorCode::state, "launch of " #name " failed");      \
      ::cmx::ascend::check_acl(aclrtSynchronizeStream(stream), "aclrtSynchronizeStream",  \
                               "the launch of " #name);                                   \
    }                                                                                     \
  };
