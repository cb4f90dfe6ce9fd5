// SPDX-License-Identifier: Apache-2.0
// The Ascend backend: cmx::ascend::World and Device, the AIV entries of cmx's kernels, and the
// INT8 GEMM and MLA decode through CANN's operators. Link cmx::ascend: built against the CANN
// toolkit, or, with CMX_ASCEND_SIM, against the clean-room shim that runs it on the CPU.
#pragma once

#include "cmx/backend/ascend/device.hpp"
#include "cmx/backend/ascend/gemm.hpp"
#include "cmx/backend/ascend/kernels.hpp"
#include "cmx/backend/ascend/mla.hpp"
#include "cmx/backend/ascend/world.hpp"
