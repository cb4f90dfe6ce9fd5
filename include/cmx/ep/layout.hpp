// SPDX-License-Identifier: Apache-2.0
// cmx::ep::Layout: the byte layout of an expert-parallel buffer, the one source of every offset
// that dispatch, combine and the receive views use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

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
  std::int32_t row;     ///< the message's row in the receive area of the expert's rank
                        ///< (Layout::message(row)); -1 = masked
};
static_assert(sizeof(Route) == 8, "two int32, no padding");

/// Where everything lives in the symmetric part of each rank (identical on every rank). All
/// offsets are in bytes from the start of the part, and 32-byte aligned.
///
///   +---------------------+------------------------------------------------------------+
///   | dispatch_flags      | [num_local_experts][num_ranks] flags: payload = rows that  |
///   |                     |   source rank sent to that local expert in this call       |
///   | combine_flags       | [num_ranks] flags: payload = rows that rank returned here  |
///   | messages            | [num_ranks][rows_per_source] messages (the receive area):  |
///   |                     |   row_bytes of data (H int8, or H bf16), padded to 32 B,   |
///   |                     |   then one MessageMeta (32 B)                              |
///   | combine_rows        | [max_tokens_per_rank][num_topk] rows of H bf16: expert     |
///   |                     |   outputs that come back, at (source token, k).            |
///   |                     |   CombineSource::caller_memory only                        |
///   | expert_out          | [num_ranks][rows_per_source] rows of H bf16: this rank's   |
///   |                     |   expert outputs, row i for message i, read by the         |
///   |                     |   message's source rank. CombineSource::buffer only        |
///   | routes              | [max_tokens_per_rank][num_topk] Route: the dispatch plan   |
///   | topk_weights        | [max_tokens_per_rank][num_topk] float: combine's weights   |
///   | received_counts     | [num_local_experts][num_ranks] int32: rows dispatch        |
///   |                     |   received per segment                                     |
///   | received_first_rows | [num_local_experts][num_ranks] int32: where each segment   |
///   |                     |   starts (both for combine's blocks and an engine's        |
///   |                     |   expert kernels)                                          |
///   +---------------------+------------------------------------------------------------+
///
/// The receive area is packed: source rank s owns rows [s * rows_per_source, (s + 1) *
/// rows_per_source) of it on every rank, and fills them from the first, segment (local expert
/// e, s) after segment (e - 1, s), each in s's token order (place_segments). A token names an
/// expert at most once, so it sends one rank at most min(num_topk, num_local_experts) rows, and
/// rows_per_source = max_tokens_per_rank * that is enough. Packing matters for speed where
/// experts per rank outnumber top-k: at DeepSeek's shape on 8 ranks (256 experts, top-8, 128
/// tokens) a rank receives about 1,000 rows, contiguous per source in a 59 MB area; a segment
/// of max_tokens_per_rank rows per (expert, source) would scatter them over 236 MB (3% of it
/// written): in alternating runs on a 2-core VM, dispatch ran 0.67-0.97x memcpy that way,
/// 0.80-1.16x packed. From 32 ranks on (E / W <= K) both layouts are the same size.
///
/// NOTES: the rows of source rank s are written only by rank s, so no two ranks ever write the
/// same bytes, and a segment's rows are ordered by (source rank, source token) by construction.
/// A source computes where its segments start from its own routing; the receiver computes the
/// same from the counts it is sent. Row (t, k) of `combine_rows` is written only by the rank
/// hosting expert topk_idx[t, k]; `expert_out` only by its own rank. The last four regions are
/// private to their rank: its host writes them (Device::write_local) before the launch whose
/// blocks read them.
struct Layout {
  /// The layout of a valid `config` (see validate()) on `num_ranks` ranks.
  Layout(const Config& config, int num_ranks) noexcept
      : num_ranks(num_ranks),
        num_local_experts(config.num_experts / num_ranks),
        max_tokens_per_rank(config.max_tokens_per_rank),
        hidden(config.hidden),
        num_topk(config.num_topk),
        rows_per_source(static_cast<int>(receive_rows_per_source(config, num_ranks))),
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
    const std::size_t num_segments =
        static_cast<std::size_t>(num_local_experts) * static_cast<std::size_t>(num_ranks);
    dispatch_flags_offset = carve(num_segments * kFlagBytes);
    combine_flags_offset = carve(static_cast<std::size_t>(num_ranks) * kFlagBytes);
    messages_offset = carve(num_messages() * message_bytes);
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
    received_counts_offset = carve(num_segments * sizeof(std::int32_t));
    received_first_rows_offset = carve(num_segments * sizeof(std::int32_t));
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
  /// Message `row` of the receive area (0 ... num_messages() - 1); its MessageMeta is at
  /// + row_bytes.
  std::size_t message(std::int64_t row) const noexcept {
    return messages_offset + static_cast<std::size_t>(row) * message_bytes;
  }
  /// The returned expert output for choice `k` of source token `token`.
  std::size_t combine_row(int token, int k) const noexcept {
    return combine_rows_offset + choice(token, k) * combine_row_bytes;
  }
  /// The expert output of message `row` in this rank's expert_out region
  /// (CombineSource::buffer).
  std::size_t expert_out_row(std::int64_t row) const noexcept {
    return expert_out_offset + static_cast<std::size_t>(row) * combine_row_bytes;
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
  /// Messages (rows) in the whole receive area: num_ranks * rows_per_source. Also the rows of
  /// an expert-output tensor (CombineArgs::expert_out, Buffer::expert_out()).
  std::size_t num_messages() const noexcept {
    return static_cast<std::size_t>(num_ranks) * static_cast<std::size_t>(rows_per_source);
  }
  /// The first row of the receive area that source rank `src_rank` owns.
  std::int64_t source_first_row(int src_rank) const noexcept {
    return static_cast<std::int64_t>(src_rank) * rows_per_source;
  }

  /// Where source rank `src_rank`'s segments start in one rank's receive area, from their row
  /// counts: segment e starts at source_first_row(src_rank) + counts[0] + ... + counts[e - 1].
  /// counts[e] and first_rows[e] are the e-th of num_local_experts elements `stride` apart. The
  /// one placement rule: a source plans with it (dispatch), and a receiver follows it.
  void place_segments(int src_rank, const std::int32_t* counts, std::int32_t* first_rows,
                      std::size_t stride) const noexcept {
    std::int64_t row = source_first_row(src_rank);
    for (std::size_t e = 0; e < static_cast<std::size_t>(num_local_experts); ++e) {
      first_rows[e * stride] = static_cast<std::int32_t>(row);
      row += counts[e * stride];
    }
  }
  /// place_segments for every source: `starts` gets the first row of every segment. Both spans
  /// are [num_local_experts][num_ranks], indexed by segment(e, s). The counts of one source add
  /// up to at most rows_per_source (the caller checks, with rows_from).
  void first_rows(std::span<const std::int32_t> counts,
                  std::span<std::int32_t> starts) const noexcept {
    for (int src = 0; src < num_ranks; ++src)
      place_segments(src, counts.data() + src, starts.data() + src,
                     static_cast<std::size_t>(num_ranks));
  }
  /// Rows that source rank `src_rank` sent to one rank, from that rank's counts
  /// [num_local_experts][num_ranks].
  std::int64_t rows_from(std::span<const std::int32_t> counts, int src_rank) const noexcept {
    std::int64_t rows = 0;
    for (int e = 0; e < num_local_experts; ++e) rows += counts[segment(e, src_rank)];
    return rows;
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
  int rows_per_source;            // receive rows each source rank owns on each rank
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
  std::size_t received_first_rows_offset = 0;
  std::size_t total_bytes = 0;  // per rank
};

}  // namespace cmx::ep
