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

namespace cmx::ep {

/// A view of this rank's receive area after dispatch: rows per (local expert, source rank)
/// segment, ordered by source token, each row followed by its MessageMeta. A grouped GEMM reads
/// it in place: segment (e, s) holds count(e, s) rows starting at message(e, s, 0), one every
/// message_bytes() bytes.
///
/// Valid until this rank calls combine on the same buffer (peers may overwrite it after that).
class Received {
 public:
  /// Made by dispatch: `part` is this rank's symmetric part, `counts` its received counts
  /// [num_local_experts][num_ranks], both owned by the buffer.
  Received(const Layout& layout, DispatchPrecision precision, const std::byte* part,
           const std::int32_t* counts, std::uint64_t sequence) noexcept
      : layout_(layout), precision_(precision), part_(part), counts_(counts), sequence_(sequence) {}

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

  /// The first byte of message (local_expert, src_rank, slot); rows of one segment are
  /// message_bytes() apart. For in-place readers (grouped GEMM).
  const std::byte* message(int local_expert, int src_rank, int slot) const {
    check_row(local_expert, src_rank, slot);
    return part_ + layout_.message(local_expert, src_rank, slot);
  }
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
  const std::byte* part_;       // this rank's symmetric part
  const std::int32_t* counts_;  // [num_local_experts][num_ranks]
  std::uint64_t sequence_;
};

}  // namespace cmx::ep
