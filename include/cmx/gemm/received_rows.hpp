// SPDX-License-Identifier: Apache-2.0
// cmx::gemm::ReceivedRows: what FusedDispatch delivered, as the masked rows of a grouped GEMM,
// read in place (no copy of a row).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cmx/core/error.hpp"
#include "cmx/ep/layout.hpp"
#include "cmx/ep/received.hpp"
#include "cmx/gemm/masked_rows.hpp"

namespace cmx::gemm {

/// MaskedRows over an ep::Received: group = local expert, segment = source rank, packed as the
/// receive area is (slot = its row, so slot_index(e, s, slot) == received.row_index(e, s,
/// slot), the row FusedCombine reads an expert output from). Each row's codes are its
/// message's first `hidden` bytes and its scale is the MessageMeta after the row.
///
/// Holds a copy of the received counts and first rows (2 * num_local_experts * num_ranks
/// int32); the rows stay where dispatch wrote them, valid until this rank's combine on the
/// buffer.
class ReceivedRows {
 public:
  /// `layout` is the buffer's (ep::Buffer::layout()), `received` what its dispatch returned.
  /// Errors: cmx::Error(invalid_argument) for a bf16 dispatch or a layout of another shape.
  ReceivedRows(const ep::Layout& layout, const ep::Received& received) {
    using cmx::detail::require;
    require(received.precision() == ep::DispatchPrecision::int8, ErrorCode::invalid_argument,
            "ReceivedRows: the dispatch was bf16; the INT8 GEMM needs an int8 dispatch");
    require(layout.num_local_experts == received.num_local_experts() &&
                layout.num_ranks == received.num_ranks() && layout.hidden == received.hidden() &&
                layout.message_bytes == received.message_bytes(),
            ErrorCode::invalid_argument, "ReceivedRows: the layout is not the received buffer's");
    const std::size_t num_segments = static_cast<std::size_t>(layout.num_local_experts) *
                                     static_cast<std::size_t>(layout.num_ranks);
    counts_.resize(num_segments);
    first_slots_.resize(num_segments);
    for (int e = 0; e < layout.num_local_experts; ++e)
      for (int s = 0; s < layout.num_ranks; ++s) {
        counts_[layout.segment(e, s)] = received.count(e, s);
        first_slots_[layout.segment(e, s)] = static_cast<std::int32_t>(received.first_row(e, s));
      }
    rows_ = {.num_groups = layout.num_local_experts,
             .num_segments = layout.num_ranks,
             .capacity = layout.max_tokens_per_rank,
             .k = layout.hidden,
             .counts = counts_,
             .first_slots = first_slots_,
             .num_packed_slots = layout.num_messages(),
             .codes = received.messages(),
             .row_stride = layout.message_bytes,
             .scales = received.messages() + layout.row_bytes + offsetof(ep::MessageMeta, scale),
             .scale_stride = layout.message_bytes};
  }
  ReceivedRows(const ReceivedRows&) = delete;
  ReceivedRows& operator=(const ReceivedRows&) = delete;

  /// The masked view; valid while this object lives and the received rows do.
  const MaskedRows& rows() const noexcept { return rows_; }

 private:
  std::vector<std::int32_t> counts_;       // [num_local_experts][num_ranks]
  std::vector<std::int32_t> first_slots_;  // [num_local_experts][num_ranks]
  MaskedRows rows_;
};

}  // namespace cmx::gemm
