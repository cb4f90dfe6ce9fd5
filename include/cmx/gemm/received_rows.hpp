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

/// MaskedRows over an ep::Received: group = local expert, segment = source rank, capacity =
/// max_tokens_per_rank, so slot_index(e, s, slot) == layout.message_index(e, s, slot), the row
/// FusedCombine reads an expert output from. Each row's codes are its message's first
/// `hidden` bytes and its scale is the MessageMeta after the row.
///
/// Holds a copy of the received counts (num_local_experts * num_ranks int32); the rows stay
/// where dispatch wrote them, valid until this rank's combine on the buffer.
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
    counts_.resize(static_cast<std::size_t>(layout.num_local_experts) *
                   static_cast<std::size_t>(layout.num_ranks));
    const std::byte* first_slot = nullptr;  // message (0, 0, 0), found from any received row
    for (int e = 0; e < layout.num_local_experts; ++e)
      for (int s = 0; s < layout.num_ranks; ++s) {
        const int count = received.count(e, s);
        counts_[layout.segment(e, s)] = count;
        if (count > 0 && first_slot == nullptr)
          first_slot =
              received.message(e, s, 0) - layout.message_index(e, s, 0) * layout.message_bytes;
      }
    rows_ = {.num_groups = layout.num_local_experts,
             .num_segments = layout.num_ranks,
             .capacity = layout.max_tokens_per_rank,
             .k = layout.hidden,
             .counts = counts_,
             .codes = first_slot,
             .row_stride = layout.message_bytes,
             .scales = first_slot == nullptr
                           ? nullptr
                           : first_slot + layout.row_bytes + offsetof(ep::MessageMeta, scale),
             .scale_stride = layout.message_bytes};
  }
  ReceivedRows(const ReceivedRows&) = delete;
  ReceivedRows& operator=(const ReceivedRows&) = delete;

  /// The masked view; valid while this object lives and the received rows do.
  const MaskedRows& rows() const noexcept { return rows_; }

 private:
  std::vector<std::int32_t> counts_;  // [num_local_experts][num_ranks]
  MaskedRows rows_;
};

}  // namespace cmx::gemm
