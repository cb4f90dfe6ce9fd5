// SPDX-License-Identifier: Apache-2.0
// Expert parallelism: FusedDispatch and FusedCombine over an ep::Buffer.
#pragma once

#include "cmx/ep/buffer.hpp"
#include "cmx/ep/combine.hpp"
#include "cmx/ep/config.hpp"
#include "cmx/ep/dispatch.hpp"
#include "cmx/ep/layout.hpp"
#include "cmx/ep/received.hpp"
