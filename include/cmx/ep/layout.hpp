// SPDX-License-Identifier: Apache-2.0
// cmx::ep::Layout: the byte layout of an expert-parallel buffer, the one source of every offset
// that dispatch, combine and the receive views use.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cmx/core/bf16.hpp"
#include "cmx/core/local_arena.hpp"
#include "cmx/device/device.hpp"
#include "cmx/ep/config.hpp"

namespace cmx::ep {

/// The 32 bytes that follow every dispatched row: what the receiver needs to dequantize the row
/// and to send its expert output back.
struct MessageMeta {
  float scale;             ///< per-token scale (int8); 1 in bf16 mode
  std::int32_t src_token;  ///< the token's index on its source rank
  std::int32_t topk_slot;  ///< which of the token's K choices this message is (k)
  std::int32_t reserved[5];
};
static_assert(sizeof(MessageMeta) == kTileAlignment, "the metadata is one 32-byte DMA unit");

/// Where choice (t, k) of a rank's dispatch went: the plan the host makes, copied into the
/// buffer so that the blocks (an NPU's cores on Ascend) read it from global memory.
struct Route {
  std::int32_t expert;  ///< global expert id; -1 = no expert (masked)
  std::int32_t slot;    ///< row of segment (expert, this rank) on the expert's rank; -1 = masked
};
static_assert(sizeof(Route) == 8, "two int32, no padding");

/// Where everything lives in the symmetric part of each rank (identical on every rank). All
/// offsets are in bytes from the start of the part, and 32-byte aligned.
///
///   +----------------+--------------------------------------------------------------------+
///   | dispatch_flags | [num_local_experts][num_ranks] flags: payload = rows that source    |
///   |                |   rank sent to that local expert in this call (its count)           |
///   | combine_flags  | [num_ranks] flags: payload = rows that rank returned to this one    |
///   | messages       | [num_local_experts][num_ranks][max_tokens_per_rank] messages:       |
///   |                |   row_bytes of data (H int8, or H bf16), padded to 32 B,            |
///   |                |   then one MessageMeta (32 B)                                       |
///   | combine_rows   | [max_tokens_per_rank][num_topk] rows of H bf16: expert outputs that |
///   |                |   come back, at (source token, k). CombineSource::caller_memory only |
///   | expert_out     | [num_local_experts][num_ranks][max_tokens_per_rank] rows of H bf16: |
///   |                |   this rank's expert outputs, at message_index(e, s, slot), read by  |
///   |                |   their source rank s. CombineSource::buffer only                    |
///   | routes         | [max_tokens_per_rank][num_topk] Route: this rank's dispatch plan     |
///   | topk_weights   | [max_tokens_per_rank][num_topk] float: this rank's combine weights   |
///   | received_counts| [num_local_experts][num_ranks] int32: rows dispatch received per     |
///   |                |   segment (for combine's blocks and an engine's expert kernels)      |
///   +----------------+--------------------------------------------------------------------+
///
/// NOTES: segment (local expert e, source rank s) of `messages` is written only by rank s, in
/// its token order, so no two ranks ever write the same bytes and the receive order is
/// (source rank, source token) by construction. Row (t, k) of `combine_rows` is written only
/// by the rank hosting expert topk_idx[t, k]; `expert_out` only by its own rank. The last three
/// regions are private to their rank: its host writes them (Device::write_local) before the
/// launch whose blocks read them.
struct Layout {
  /// The layout of a valid `config` (see validate()) on `num_ranks` ranks.
  Layout(const Config& config, int num_ranks) noexcept
      : num_ranks(num_ranks),
        num_local_experts(config.num_experts / num_ranks),
        max_tokens_per_rank(config.max_tokens_per_rank),
        hidden(config.hidden),
        num_topk(config.num_topk),
        row_bytes(round_up(static_cast<std::size_t>(config.hidden) *
                               (config.precision == DispatchPrecision::int8 ? 1 : sizeof(bf16)),
                           kTileAlignment)),
        message_bytes(row_bytes + sizeof(MessageMeta)),
        combine_row_bytes(static_cast<std::size_t>(config.hidden) * sizeof(bf16)),
        combine_source(config.combine_source) {
    std::size_t offset = 0;
    const auto carve = [&offset](std::size_t bytes) {
      const std::size_t start = offset;
      offset += round_up(bytes, kTileAlignment);
      return start;
    };
    dispatch_flags_offset = carve(static_cast<std::size_t>(num_local_experts) *
                                  static_cast<std::size_t>(num_ranks) * kFlagBytes);
    combine_flags_offset = carve(static_cast<std::size_t>(num_ranks) * kFlagBytes);
    messages_offset =
        carve(static_cast<std::size_t>(num_local_experts) * static_cast<std::size_t>(num_ranks) *
              static_cast<std::size_t>(max_tokens_per_rank) * message_bytes);
    const bool rows_come_back = combine_source == CombineSource::caller_memory;
    combine_rows_offset =
        carve(rows_come_back ? static_cast<std::size_t>(max_tokens_per_rank) *
                                   static_cast<std::size_t>(num_topk) * combine_row_bytes
                             : 0);
    expert_out_offset = carve(rows_come_back ? 0 : num_messages() * combine_row_bytes);
    const std::size_t num_choices =
        static_cast<std::size_t>(max_tokens_per_rank) * static_cast<std::size_t>(num_topk);
    routes_offset = carve(num_choices * sizeof(Route));
    topk_weights_offset = carve(num_choices * sizeof(float));
    received_counts_offset = carve(static_cast<std::size_t>(num_local_experts) *
                                   static_cast<std::size_t>(num_ranks) * sizeof(std::int32_t));
    total_bytes = offset;
  }

  /// The flag that source rank `src_rank` raises for `local_expert` of this rank.
  std::size_t dispatch_flag(int local_expert, int src_rank) const noexcept {
    return dispatch_flags_offset + segment(local_expert, src_rank) * kFlagBytes;
  }
  /// The flag that rank `peer_rank` raises when it has returned its rows to this rank.
  std::size_t combine_flag(int peer_rank) const noexcept {
    return combine_flags_offset + static_cast<std::size_t>(peer_rank) * kFlagBytes;
  }
  /// Message `slot` of segment (local_expert, src_rank); its MessageMeta is at + row_bytes.
  std::size_t message(int local_expert, int src_rank, int slot) const noexcept {
    return messages_offset + message_index(local_expert, src_rank, slot) * message_bytes;
  }
  /// Index of message `slot` of segment (local_expert, src_rank) among all messages, which is
  /// also its row index in an expert-output tensor of the same layout.
  std::size_t message_index(int local_expert, int src_rank, int slot) const noexcept {
    return segment(local_expert, src_rank) * static_cast<std::size_t>(max_tokens_per_rank) +
           static_cast<std::size_t>(slot);
  }
  /// The returned expert output for choice `k` of source token `token`.
  std::size_t combine_row(int token, int k) const noexcept {
    return combine_rows_offset + choice(token, k) * combine_row_bytes;
  }
  /// Expert output `slot` of segment (local_expert, src_rank) in this rank's expert_out region
  /// (CombineSource::buffer).
  std::size_t expert_out_row(int local_expert, int src_rank, int slot) const noexcept {
    return expert_out_offset + message_index(local_expert, src_rank, slot) * combine_row_bytes;
  }
  /// The Route of choice `k` of token `token` (this rank's dispatch).
  std::size_t route(int token, int k) const noexcept {
    return routes_offset + choice(token, k) * sizeof(Route);
  }
  /// The combine weight of choice `k` of token `token`.
  std::size_t topk_weight(int token, int k) const noexcept {
    return topk_weights_offset + choice(token, k) * sizeof(float);
  }
  /// Index of choice (token, k) in [max_tokens_per_rank][num_topk] arrays.
  std::size_t choice(int token, int k) const noexcept {
    return static_cast<std::size_t>(token) * static_cast<std::size_t>(num_topk) +
           static_cast<std::size_t>(k);
  }
  /// Messages (rows) in the whole receive area: num_local_experts * num_ranks * capacity.
  std::size_t num_messages() const noexcept {
    return static_cast<std::size_t>(num_local_experts) * static_cast<std::size_t>(num_ranks) *
           static_cast<std::size_t>(max_tokens_per_rank);
  }

  /// Index of segment (local_expert, src_rank) in [num_local_experts][num_ranks] arrays (the
  /// dispatch flags, the received counts).
  std::size_t segment(int local_expert, int src_rank) const noexcept {
    return static_cast<std::size_t>(local_expert) * static_cast<std::size_t>(num_ranks) +
           static_cast<std::size_t>(src_rank);
  }
  /// The rank that hosts global expert `expert`.
  int home_rank(int expert) const noexcept { return expert / num_local_experts; }
  /// The index of global expert `expert` among its home rank's experts.
  int local_expert(int expert) const noexcept { return expert % num_local_experts; }
  /// The global id of `local_expert` of `rank`.
  int global_expert(int rank, int local_expert) const noexcept {
    return rank * num_local_experts + local_expert;
  }

  int num_ranks;
  int num_local_experts;
  int max_tokens_per_rank;
  int hidden;
  int num_topk;
  std::size_t row_bytes;          // data bytes of one message, padded to 32
  std::size_t message_bytes;      // row_bytes + sizeof(MessageMeta)
  std::size_t combine_row_bytes;  // hidden * 2 (a multiple of 32, since hidden % 16 == 0)
  CombineSource combine_source;
  std::size_t dispatch_flags_offset = 0;
  std::size_t combine_flags_offset = 0;
  std::size_t messages_offset = 0;
  std::size_t combine_rows_offset = 0;  // an empty region unless CombineSource::caller_memory
  std::size_t expert_out_offset = 0;    // an empty region unless CombineSource::buffer
  std::size_t routes_offset = 0;
  std::size_t topk_weights_offset = 0;
  std::size_t received_counts_offset = 0;
  std::size_t total_bytes = 0;  // per rank
};

}  // namespace cmx::ep
