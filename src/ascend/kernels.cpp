// SPDX-License-Identifier: Apache-2.0
// The kernel translation unit of the Ascend backend: the AIV entry of every cmx kernel
// (CMX_ASCEND_KERNELS). Compiled by the CANN toolkit's ascendc_library into cmx_ascend_kernels,
// or, in the simulation (sim/ascend), by the host compiler against the shim.
#include "cmx/backend/ascend.hpp"

CMX_ASCEND_KERNELS(CMX_ASCEND_DEFINE_KERNEL)
