// SPDX-License-Identifier: Apache-2.0
// The oneTBB shared-memory backend: include this to run cmx kernels on a CPU.
#pragma once

#include "cmx/backend/tbb/device.hpp"
#include "cmx/backend/tbb/world.hpp"
