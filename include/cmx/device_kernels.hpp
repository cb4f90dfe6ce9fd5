// SPDX-License-Identifier: Apache-2.0
// Every kernel family's block kernels, for a backend that compiles them ahead of time (an NPU's
// kernel library). Each family lists its own; adding a block kernel is one line in its family's
// list, with nothing to change in a backend.
#pragma once

#include "cmx/ep/device_kernels.hpp"

/// X(entry name, kernel type) for every block kernel of cmx on device type `Device`.
#define CMX_DEVICE_KERNELS(X, Device) CMX_EP_DEVICE_KERNELS(X, Device)
