// SPDX-License-Identifier: Apache-2.0
// The Ascend backend: cmx::ascend::World and Device, and the AIV entries of cmx's kernels. Link
// cmx::ascend. Built against the CANN toolkit, or, with
// CMX_ASCEND_SIM defined, against the clean-room shim that runs it on the CPU.
#pragma once

#include "cmx/backend/ascend/device.hpp"
#include "cmx/backend/ascend/kernels.hpp"
#include "cmx/backend/ascend/world.hpp"
