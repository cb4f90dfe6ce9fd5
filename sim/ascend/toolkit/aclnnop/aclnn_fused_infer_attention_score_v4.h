// SPDX-License-Identifier: Apache-2.0
// The simulation's stand-in for CANN's <aclnnop/aclnn_fused_infer_attention_score_v4.h>:
// aclnnFusedInferAttentionScoreV4 (sim/ascend/shim/aclnn.hpp).
#pragma once

#include "sim/ascend/shim/aclnn.hpp"
