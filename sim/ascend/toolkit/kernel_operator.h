// SPDX-License-Identifier: Apache-2.0
// The simulation's stand-in for CANN's <kernel_operator.h>: AscendC on the CPU
// (sim/ascend/shim/kernel_operator.hpp), and the one thing the toolkit's build makes that no
// header declares: the host launcher of each AIV entry.
#pragma once

#include <cstdint>

#include "sim/ascend/core.hpp"
#include "sim/ascend/shim/acl.hpp"
#include "sim/ascend/shim/kernel_operator.hpp"

/// With the toolkit, ascendc_library generates `aclrtlaunch_<name>(blockDim, stream, args...)`
/// for every `__global__` entry of the kernel translation unit. The simulation defines it beside
/// the entry (CMX_ASCEND_DEFINE_KERNEL expands this after the entry): it runs the entry on
/// `blockDim` emulated cores of the calling NPU, one thread each, and returns when all are done.
#define CMX_ASCEND_TOOLKIT_LAUNCHER(name)                                                     \
  extern "C" std::uint32_t aclrtlaunch_##name(std::uint32_t blockDim, aclrtStream /*stream*/, \
                                              void* kernel_object) {                          \
    ::cmx::ascend_sim::launch(blockDim, &name, static_cast<GM_ADDR>(kernel_object));          \
    return 0;                                                                                 \
  }

/// AscendC's kernel-type declaration: the simulation runs every entry on vector cores.
#define KERNEL_TASK_TYPE_DEFAULT(type)
