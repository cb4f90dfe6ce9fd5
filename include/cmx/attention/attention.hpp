// SPDX-License-Identifier: Apache-2.0
// Attention: DeepSeek's multi-head latent attention (MLA) decode over a paged latent KV cache,
// and the cache write.
#pragma once

#include "cmx/attention/append_kv.hpp"
#include "cmx/attention/decode_plan.hpp"
#include "cmx/attention/kv_cache.hpp"
#include "cmx/attention/mla_decode.hpp"
