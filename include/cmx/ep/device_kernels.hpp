// SPDX-License-Identifier: Apache-2.0
// The kernel objects of FusedDispatch and FusedCombine that run on a device's blocks, for a
// backend whose blocks run from a kernel library compiled ahead of time (an NPU's AIV entries).
#pragma once

#include "cmx/ep/buffer.hpp"
#include "cmx/ep/combine.hpp"
#include "cmx/ep/dispatch.hpp"

/// X(entry name, kernel type) for every block kernel of ep:: on device type `Device`.
#define CMX_EP_DEVICE_KERNELS(X, Device)                                   \
  X(cmx_ep_copy_to_every_rank, ::cmx::ep::detail::CopyToEveryRank<Device>) \
  X(cmx_ep_send_tokens, ::cmx::ep::detail::SendTokens<Device>)             \
  X(cmx_ep_return_rows, ::cmx::ep::detail::ReturnRows<Device>)             \
  X(cmx_ep_reduce_tokens, ::cmx::ep::detail::ReduceTokens<Device>)
