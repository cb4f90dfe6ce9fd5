// SPDX-License-Identifier: Apache-2.0
// The simulation's stand-in for CANN's <acl/acl.h>: the ACL runtime (sim/ascend/shim/acl.hpp).
#pragma once

#include "sim/ascend/shim/acl.hpp"
