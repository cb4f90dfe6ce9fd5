// SPDX-License-Identifier: Apache-2.0
// cmx::ep::Received: what FusedDispatch delivered to this rank, viewed in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "cmx/core/bf16.hpp"
#include "cmx/core/error.hpp"
#include "cmx/ep/layout.hpp"
#include "cmx/gemm/masked_rows.hpp"

namespace cmx::ep {

/// A view of this rank's receive area after dispatch: rows per (local expert, source rank)
/// segment, ordered by source token, each row followed by its MessageMeta. The INT8 grouped GEMM
/// and the expert FFN read it in place (it converts to their gemm::MaskedRows, copying no row
/// and no count): segment (e, s) holds count(e, s) rows, one every message_bytes() bytes, from
/// message(e, s, 0), which is row first_row(e, s) of the receive area (Layout::message).
///
/// Valid until this rank calls combine on the same buffer (peers may overwrite it after that).
class Received {
 public:
  /// Made by dispatch: `part` is this rank's symmetric part; `counts` and `first_rows`, the
  /// segments' row counts and first rows [num_local_experts][num_ranks], are owned by the
  /// buffer.
  Received(const Layout& layout, DispatchPrecision precision, const std::byte* part,
           const std::int32_t* counts, const std::int32_t* first_rows,
           std::uint64_t sequence) noexcept
      : layout_(layout),
        precision_(precision),
        part_(part),
        counts_(counts),
        first_rows_(first_rows),
        sequence_(sequence) {}

  int num_local_experts() const noexcept { return layout_.num_local_experts; }
  int num_ranks() const noexcept { return layout_.num_ranks; }
  int hidden() const noexcept { return layout_.hidden; }
  DispatchPrecision precision() const noexcept { return precision_; }
  /// The call this view belongs to (1 for the buffer's first dispatch, then 2, ...).
  std::uint64_t sequence() const noexcept { return sequence_; }

  /// Rows that `src_rank` sent to `local_expert` (0 ... max_tokens_per_rank).
  int count(int local_expert, int src_rank) const {
    check_segment(local_expert, src_rank);
    return counts_[layout_.segment(local_expert, src_rank)];
  }

  /// Rows received by `local_expert` from all ranks.
  int num_tokens(int local_expert) const {
    int total = 0;
    for (int src = 0; src < num_ranks(); ++src) total += count(local_expert, src);
    return total;
  }

  /// The receive-area row of segment (local_expert, src_rank)'s first row
  /// (Layout::first_rows); defined for an empty segment too.
  std::int64_t first_row(int local_expert, int src_rank) const {
    check_segment(local_expert, src_rank);
    return first_rows_[layout_.segment(local_expert, src_rank)];
  }
  /// The receive-area row of row `slot` of segment (local_expert, src_rank). It is also the
  /// row of that message's expert output in CombineArgs::expert_out or Buffer::expert_out().
  std::int64_t row_index(int local_expert, int src_rank, int slot) const {
    check_row(local_expert, src_rank, slot);
    return first_row(local_expert, src_rank) + slot;
  }

  /// The first byte of message (local_expert, src_rank, slot); rows of one segment are
  /// message_bytes() apart. For in-place readers (grouped GEMM).
  const std::byte* message(int local_expert, int src_rank, int slot) const {
    return part_ + layout_.message(row_index(local_expert, src_rank, slot));
  }
  /// Row 0 of the receive area: message(e, s, slot) is at messages() + row_index(e, s, slot) *
  /// message_bytes().
  const std::byte* messages() const noexcept { return part_ + layout_.messages_offset; }
  /// Stride between consecutive rows of a segment, in bytes.
  std::size_t message_bytes() const noexcept { return layout_.message_bytes; }

  /// The INT8 codes of a row [hidden]. Requires int8 precision.
  std::span<const std::int8_t> row_int8(int local_expert, int src_rank, int slot) const {
    cmx::detail::require(precision_ == DispatchPrecision::int8, ErrorCode::invalid_argument,
                         "row_int8 on a bf16 dispatch");
    return {reinterpret_cast<const std::int8_t*>(message(local_expert, src_rank, slot)),
            static_cast<std::size_t>(hidden())};
  }
  /// The bf16 values of a row [hidden]. Requires bf16 precision.
  std::span<const bf16> row_bf16(int local_expert, int src_rank, int slot) const {
    cmx::detail::require(precision_ == DispatchPrecision::bf16, ErrorCode::invalid_argument,
                         "row_bf16 on an int8 dispatch");
    return {reinterpret_cast<const bf16*>(message(local_expert, src_rank, slot)),
            static_cast<std::size_t>(hidden())};
  }
  /// The received rows as the masked layout of cmx/gemm/: group = local expert, segment =
  /// source rank, slot_index(e, s, slot) == row_index(e, s, slot) (so an expert FFN's output
  /// rows are where combine reads them); a row's codes are its message's first hidden() bytes,
  /// its scale the MessageMeta's. So `grouped_gemm_masked(dev, {.a = received, ...})` and
  /// `expert_ffn(dev, {.x = received, ...})` read the rows where dispatch wrote them. Valid as
  /// long as this view. cmx::Error(invalid_argument) for a bf16 dispatch.
  operator gemm::MaskedRows() const {
    cmx::detail::require(precision_ == DispatchPrecision::int8, ErrorCode::invalid_argument,
                         "the dispatch was bf16; the INT8 GEMM needs an int8 dispatch");
    const std::size_t num_segments = static_cast<std::size_t>(layout_.num_local_experts) *
                                     static_cast<std::size_t>(layout_.num_ranks);
    return {.num_groups = layout_.num_local_experts,
            .num_segments = layout_.num_ranks,
            .capacity = layout_.max_tokens_per_rank,
            .k = layout_.hidden,
            .counts = {counts_, num_segments},
            .first_slots = {first_rows_, num_segments},
            .num_packed_slots = layout_.num_messages(),
            .codes = messages(),
            .row_stride = layout_.message_bytes,
            .scales = messages() + layout_.row_bytes + offsetof(MessageMeta, scale),
            .scale_stride = layout_.message_bytes};
  }

  /// The metadata of a row: its scale, source token and top-k choice.
  MessageMeta meta(int local_expert, int src_rank, int slot) const {
    MessageMeta meta;
    std::memcpy(&meta, message(local_expert, src_rank, slot) + layout_.row_bytes, sizeof(meta));
    return meta;
  }

 private:
  void check_segment(int local_expert, int src_rank) const {
    cmx::detail::require(local_expert >= 0 && local_expert < num_local_experts() && src_rank >= 0 &&
                             src_rank < num_ranks(),
                         ErrorCode::invalid_argument, "segment (local expert ", local_expert,
                         ", source rank ", src_rank, ") out of range");
  }
  void check_row(int local_expert, int src_rank, int slot) const {
    cmx::detail::require(slot >= 0 && slot < count(local_expert, src_rank),
                         ErrorCode::invalid_argument, "slot ", slot, " of segment (local expert ",
                         local_expert, ", source rank ", src_rank, ") is not a received row");
  }

  Layout layout_;
  DispatchPrecision precision_;
  const std::byte* part_;           // this rank's symmetric part
  const std::int32_t* counts_;      // [num_local_experts][num_ranks]
  const std::int32_t* first_rows_;  // [num_local_experts][num_ranks]
  std::uint64_t sequence_;
};

}  // namespace cmx::ep
