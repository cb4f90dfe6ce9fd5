// SPDX-License-Identifier: Apache-2.0
// The CANN names the Ascend backend uses: the toolkit's own headers when built with it, or, with
// CMX_ASCEND_SIM, the clean-room shim that declares the same names and runs them on the CPU
// (include/cmx/backend/ascend/README.md says what that simulation checks and what it does not).
#pragma once

#if defined(CMX_ASCEND_SIM)
#include "cmx/backend/ascend/shim/acl.hpp"
#include "cmx/backend/ascend/shim/aclnn.hpp"
#include "cmx/backend/ascend/shim/aclshmem.hpp"
#include "cmx/backend/ascend/shim/kernel_operator.hpp"
#include "cmx/backend/ascend/sim/core.hpp"
#else
// The CANN toolkit (ASCEND_HOME_PATH) and the CANN SHMEM library: not available to us, so this
// branch has never been compiled (see the README's section on the Ascend backend).
#include <acl/acl.h>
#include <aclnnop/aclnn_fused_infer_attention_score_v4.h>
#include <aclnnop/aclnn_grouped_matmul_v4.h>
#include <aclnnop/aclnn_quant_matmul_v4.h>

#include "aclshmem.h"
#include "kernel_operator.h"
#endif
