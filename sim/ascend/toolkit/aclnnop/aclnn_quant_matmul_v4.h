// SPDX-License-Identifier: Apache-2.0
// The simulation's stand-in for CANN's <aclnnop/aclnn_quant_matmul_v4.h>: aclnnQuantMatmulV4
// (sim/ascend/shim/aclnn.hpp).
#pragma once

#include "sim/ascend/shim/aclnn.hpp"
