// SPDX-License-Identifier: Apache-2.0
// cmx: MoE inference kernels over a pluggable device trait. Umbrella header: the kernels and
// the default (oneTBB) backend.
#pragma once

#include "cmx/attention/attention.hpp"
#include "cmx/backend/tbb.hpp"
#include "cmx/core/bf16.hpp"
#include "cmx/core/error.hpp"
#include "cmx/core/quantize.hpp"
#include "cmx/device/bf16_attention.hpp"
#include "cmx/device/device.hpp"
#include "cmx/ep/ep.hpp"
#include "cmx/gemm/gemm.hpp"
