// SPDX-License-Identifier: Apache-2.0
// Kernel side of the example operator: the engine's own kernel, written like cmx's against the
// device trait, so it runs on the AIV cores (and on the CPU backends unchanged). A stand-in
// expert: it dequantizes each received row in place and scales it by (expert + 1) / 16, writing
// the result straight into the buffer's expert_out for a zero-copy combine. A real engine runs
// its grouped INT8 GEMM here.
#pragma once

#include <cmx/backend/ascend.hpp>
#include <cmx/ep/ep.hpp>
#include <cstdint>
#include <span>

namespace engine {

/// Blocks over the received segments (local expert, source rank). Plain data: an Ascend
/// launch runs each core on a byte copy of it.
template <cmx::Device Dev>
struct StandInExperts {
  Dev device;                         // the rank's device (a copy runs on each core)
  typename Dev::Symmetric symmetric;  // the cmx::ep::Buffer's memory
  cmx::ep::Layout layout;             // ... and where everything is in it (each segment's
                                      // rows and where they start included:
                                      // Layout::received_counts, received_first_rows)

  void operator()(cmx::Block& block) {
    const int num_segments = layout.num_local_experts * layout.num_ranks;
    const std::size_t hidden = static_cast<std::size_t>(layout.hidden);
    const std::byte* part = device.local(symmetric);
    const std::span<const std::int32_t> rows = device.stage_in(
        block.local, reinterpret_cast<const std::int32_t*>(part + layout.received_counts_offset),
        static_cast<std::size_t>(num_segments));
    const std::span<const std::int32_t> first_rows = device.stage_in(
        block.local,
        reinterpret_cast<const std::int32_t*>(part + layout.received_first_rows_offset),
        static_cast<std::size_t>(num_segments));
    const std::size_t mark = block.local.mark();
    for (int segment = block.index; segment < num_segments; segment += block.count) {
      const int expert = segment / layout.num_ranks;  // local expert (Layout::segment)
      const float gain =
          static_cast<float>(layout.global_expert(device.rank(), expert) + 1) / 16.0f;
      for (int slot = 0; slot < rows[static_cast<std::size_t>(segment)]; ++slot) {
        block.local.rewind(mark);  // one row's tiles at a time in the bounded local memory
        const std::int64_t row = first_rows[static_cast<std::size_t>(segment)] + slot;
        const std::byte* message = part + layout.message(row);
        const auto codes =
            device.stage_in(block.local, reinterpret_cast<const std::int8_t*>(message), hidden);
        const float scale =
            device
                .stage_in(block.local,
                          reinterpret_cast<const cmx::ep::MessageMeta*>(message + layout.row_bytes),
                          1)[0]
                .scale;
        const std::span<cmx::bf16> out = block.local.take<cmx::bf16>(hidden);
        for (std::size_t h = 0; h < hidden; ++h)
          out[h] = cmx::bf16::from_float(codes[h] * scale * gain);
        device.store(
            reinterpret_cast<cmx::bf16*>(device.local(symmetric) + layout.expert_out_row(row)),
            std::span<const cmx::bf16>(out));
      }
    }
  }
};

}  // namespace engine

// Host side: the entry of the kernel above (defined in kernels.cpp), so that Device::launch
// can start it.
CMX_ASCEND_DECLARE_ENTRY(engine_stand_in_experts, ::engine::StandInExperts<::cmx::ascend::Device>)
