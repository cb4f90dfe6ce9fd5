// SPDX-License-Identifier: Apache-2.0
// INT8 (W8A8) GEMMs: weight packing, the dense GEMM, the grouped GEMMs (contiguous and masked,
// the latter reading FusedDispatch's output in place) and the fused expert FFN.
#pragma once

#include "cmx/device/int8_matmul.hpp"
#include "cmx/gemm/dense.hpp"
#include "cmx/gemm/epilogue.hpp"
#include "cmx/gemm/expert_ffn.hpp"
#include "cmx/gemm/grouped.hpp"
#include "cmx/gemm/masked_rows.hpp"
#include "cmx/gemm/packed_weights.hpp"
#include "cmx/gemm/swiglu.hpp"
