// SPDX-License-Identifier: Apache-2.0
// The cmx kernels compiled for the AIV cores: one entry per kernel type, defined in the kernel
// translation unit src/ascend/kernels.cpp and declared here for the host, so that
// Device::launch can start them. A kernel run on the Ascend backend must be listed here.
#pragma once

#include "cmx/backend/ascend/device.hpp"
#include "cmx/backend/ascend/kernel_entry.hpp"
#include "cmx/ep/ep.hpp"

/// X(entry name, kernel type) for the blocks of FusedDispatch and FusedCombine.
#define CMX_ASCEND_EP_KERNELS(X)                                                          \
  X(cmx_ep_copy_to_every_rank, ::cmx::ep::detail::CopyToEveryRank<::cmx::ascend::Device>) \
  X(cmx_ep_send_tokens, ::cmx::ep::detail::SendTokens<::cmx::ascend::Device>)             \
  X(cmx_ep_return_rows, ::cmx::ep::detail::ReturnRows<::cmx::ascend::Device>)             \
  X(cmx_ep_reduce_tokens, ::cmx::ep::detail::ReduceTokens<::cmx::ascend::Device>)
CMX_ASCEND_EP_KERNELS(CMX_ASCEND_DECLARE_ENTRY)

/// X(entry name, kernel type) for every kernel that runs on the AIV cores (the backend's flag
/// kernels, declared by device.hpp, and cmx's).
#define CMX_ASCEND_KERNELS(X) \
  CMX_ASCEND_FLAG_KERNELS(X)  \
  CMX_ASCEND_EP_KERNELS(X)
