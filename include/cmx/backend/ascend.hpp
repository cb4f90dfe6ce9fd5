// SPDX-License-Identifier: Apache-2.0
// The Ascend backend: cmx::ascend::World and Device, the AIV entries of cmx's kernels, and the
// INT8 GEMM and MLA decode through CANN's operators. Link cmx::ascend: built against the CANN
// toolkit, or, in cmx's own build, against the clean-room simulation that runs it on the CPU.
#pragma once

#include "cmx/backend/ascend/device.hpp"
#include "cmx/backend/ascend/gemm.hpp"
#include "cmx/backend/ascend/kernel_entry.hpp"
#include "cmx/backend/ascend/mla.hpp"
#include "cmx/backend/ascend/world.hpp"
#include "cmx/device_kernels.hpp"

/// X(entry name, kernel type) for every kernel that runs on the AIV cores: the backend's flag
/// kernels (device.hpp) and every kernel family's block kernels (cmx/device_kernels.hpp). The
/// kernel translation unit (src/ascend/kernels.cpp) defines an entry for each.
#define CMX_ASCEND_KERNELS(X) \
  CMX_ASCEND_FLAG_KERNELS(X)  \
  CMX_DEVICE_KERNELS(X, ::cmx::ascend::Device)

// The host side of each family kernel's entry (the flag kernels' are declared by device.hpp).
CMX_DEVICE_KERNELS(CMX_ASCEND_DECLARE_ENTRY, ::cmx::ascend::Device)
