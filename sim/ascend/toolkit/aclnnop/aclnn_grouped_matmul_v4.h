// SPDX-License-Identifier: Apache-2.0
// The simulation's stand-in for CANN's <aclnnop/aclnn_grouped_matmul_v4.h>: aclnnGroupedMatmulV4
// (sim/ascend/shim/aclnn.hpp).
#pragma once

#include "sim/ascend/shim/aclnn.hpp"
