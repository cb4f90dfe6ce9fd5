// SPDX-License-Identifier: Apache-2.0
// Kernel translation unit of the example operator: the AIV entry of the engine's kernel. cmx's
// own kernels come from cmx::ascend (cmx_ascend_kernels); an engine that prefers one kernel
// library adds CMX_ASCEND_KERNELS(CMX_ASCEND_DEFINE_KERNEL) here and links cmx::cmx instead.
// Compiled by ascendc_library with the toolkit, by the host compiler in the simulation.
#include "expert_kernel.hpp"

CMX_ASCEND_DEFINE_KERNEL(engine_stand_in_experts, ::engine::StandInExperts<::cmx::ascend::Device>)
