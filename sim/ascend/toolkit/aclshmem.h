// SPDX-License-Identifier: Apache-2.0
// The simulation's stand-in for CANN's <aclshmem.h>: CANN SHMEM (sim/ascend/shim/aclshmem.hpp).
#pragma once

#include "sim/ascend/shim/aclshmem.hpp"
