// SPDX-License-Identifier: Apache-2.0
// The CANN names the Ascend backend uses, from the toolkit's own headers: CANN (ASCEND_HOME_PATH)
// and CANN SHMEM, or the clean-room simulation's headers of the same names (sim/ascend/toolkit,
// not installed), which cmx's own build puts on the include path to check the backend on the
// CPU (sim/ascend/README.md says what that simulation checks and what it does not).
#pragma once

#include <acl/acl.h>
#include <aclnnop/aclnn_fused_infer_attention_score_v4.h>
#include <aclnnop/aclnn_grouped_matmul_v4.h>
#include <aclnnop/aclnn_quant_matmul_v4.h>

#include "aclshmem.h"
#include "kernel_operator.h"
