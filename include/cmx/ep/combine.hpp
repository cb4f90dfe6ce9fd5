// SPDX-License-Identifier: Apache-2.0
// FusedCombine: every expert output goes back to its source rank, which reduces a token's K
// outputs with its top-k weights. Config::combine_source picks how the rows travel:
//   caller_memory (push): the expert rank copies each row into its source rank's buffer;
//   buffer (pull, zero-copy): the rows already are in the expert rank's buffer (the caller wrote
//     them into Buffer::expert_out()), and the source rank reads them from there as it reduces.
//
// On every rank, for the call `seq` of the dispatch it follows:
//   1. Check the inputs, before writing anything. If this or step 2 fails, raise this rank's
//      combine flag on every rank with the failure payload, so that peers fail at once.
//   2. Push only. Return rows, in blocks over all received rows (detail::ReturnRows): read the
//      row's MessageMeta (source token t, choice k), stage the expert output row and put it at
//      (t, k) of the source rank's combine rows.
//   3. Publish, after the launch has joined: signal every source rank with the number of rows
//      returned to it (push) or waiting for it in this rank's expert_out (pull).
//   4. Wait for every rank's flag; its count must equal the rows this rank sent it in dispatch.
//   5. Reduce, in blocks over tokens (detail::ReduceTokens): y[t] = sum over unmasked k, in k
//      order, of fma(topk_weights[t, k], row(t, k), acc) in fp32, rounded once to bf16. row(t, k)
//      is staged from this rank's combine rows (push), or from the expert_out of the rank hosting
//      expert topk_idx[t, k], at the row dispatch gave the choice (pull). A token's rows are
//      staged and added together, a chunk of columns at a time, so that the fp32 sums are read
//      and written once per chunk, not once per row (a CPU with AVX-512 keeps them in
//      registers). A token with no expert gives zeros.
//
// NOTES: the reduction order is fixed by k, never by arrival, and each (t, k) row has one
// writer, so y is bitwise the same whatever the rank speeds, block counts or combine source.
// Pull reuse: a source rank reads a peer's expert_out of call seq until its own combine
// returns; the peer writes expert_out for seq+1 only after its dispatch seq+1 has returned,
// which waited for this rank's dispatch-seq+1 flags, raised after this rank's combine seq
// returned. So no row is overwritten while it is read.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "cmx/core/bf16.hpp"
#include "cmx/core/error.hpp"
#include "cmx/device/device.hpp"
#include "cmx/ep/buffer.hpp"
#include "cmx/ep/layout.hpp"
#include "cmx/ep/protocol.hpp"

namespace cmx::ep {

/// The inputs and output of one combine on one rank.
struct CombineArgs {
  /// [Layout::num_messages()][hidden] expert outputs, one row per received row, at the row of
  /// the receive area where dispatch delivered it (Received::row_index). Only received rows
  /// are read. With CombineSource::buffer the outputs are in Buffer::expert_out(): leave this
  /// empty (or pass that span).
  std::span<const bf16> expert_out;
  std::span<const float> topk_weights;  ///< [num_tokens, num_topk] of this rank's dispatch
  std::span<bf16> y;                    ///< [num_tokens, hidden] output
};

namespace detail {

/// Throws cmx::Error(invalid_argument) unless `args` fits the buffer's pending dispatch.
/// `buffer_expert_out` is Buffer::expert_out() with CombineSource::buffer, else empty.
inline void check_combine_args(const CombineArgs& args, const Layout& layout, int num_tokens,
                               int rank, std::span<const bf16> buffer_expert_out) {
  using cmx::detail::require;
  const std::size_t hidden = static_cast<std::size_t>(layout.hidden);
  if (layout.combine_source == CombineSource::buffer) {
    require(args.expert_out.empty() || (args.expert_out.data() == buffer_expert_out.data() &&
                                        args.expert_out.size() == buffer_expert_out.size()),
            ErrorCode::invalid_argument, "rank ", rank,
            ": the buffer's combine_source is buffer, so combine reads Buffer::expert_out(); "
            "CombineArgs::expert_out must be empty or that span");
  } else {
    require(args.expert_out.size() == layout.num_messages() * hidden, ErrorCode::invalid_argument,
            "rank ", rank, ": expert_out has ", args.expert_out.size(),
            " elements, expected Layout::num_messages() * hidden = ", layout.num_messages(), " * ",
            hidden);
  }
  require(args.topk_weights.size() ==
              static_cast<std::size_t>(num_tokens) * static_cast<std::size_t>(layout.num_topk),
          ErrorCode::invalid_argument, "rank ", rank, ": topk_weights has ",
          args.topk_weights.size(), " elements, expected num_tokens * num_topk = ", num_tokens,
          " * ", layout.num_topk);
  require(args.y.size() == static_cast<std::size_t>(num_tokens) * hidden,
          ErrorCode::invalid_argument, "rank ", rank, ": y has ", args.y.size(),
          " elements, expected num_tokens * hidden = ", num_tokens, " * ", hidden);
}

/// Step 2 of combine (push only), one block's share of the received rows: read the row's
/// MessageMeta (source token t, choice k), stage the expert output row and put it at (t, k) of
/// the source rank's combine rows. The rows from source s are the first ones of the rows it
/// owns (Layout::source_first_row), as many as its segments' counts add up to; all received
/// rows, source after source, are split evenly among blocks. The counts are read from global
/// memory (Layout::received_counts, written there by dispatch).
template <Device Dev>
struct ReturnRows {
  Dev device;
  typename Dev::Symmetric symmetric;
  Layout layout;
  const bf16* expert_out;  // [num_messages][hidden], global memory
  std::int64_t num_rows;   // received rows from all sources

  void operator()(Block& block) {
    const auto [begin, end] = block_range(num_rows, block.index, block.count);
    const std::byte* part = device.local(symmetric);
    const std::span<const std::int32_t> counts = device.stage_in(
        block.local, reinterpret_cast<const std::int32_t*>(part + layout.received_counts_offset),
        static_cast<std::size_t>(layout.num_local_experts) *
            static_cast<std::size_t>(layout.num_ranks));
    const std::size_t row_mark = block.local.mark();
    const std::size_t hidden = static_cast<std::size_t>(layout.hidden);
    // Received rows [source_begin, source_begin + source_rows) come from `src`.
    int src = 0;
    std::int64_t source_begin = 0;
    std::int64_t source_rows = layout.rows_from(counts, src);
    for (std::int64_t received = begin; received < end; ++received) {
      while (received >= source_begin + source_rows) {
        source_begin += source_rows;
        source_rows = layout.rows_from(counts, ++src);
      }
      const std::int64_t row = layout.source_first_row(src) + (received - source_begin);
      block.local.rewind(row_mark);
      const MessageMeta meta = device.stage_in(
          block.local,
          reinterpret_cast<const MessageMeta*>(part + layout.message(row) + layout.row_bytes),
          1)[0];
      const std::span<const bf16> out =
          device.stage_in(block.local, expert_out + static_cast<std::size_t>(row) * hidden, hidden);
      device.put(symmetric, src, layout.combine_row(meta.src_token, meta.topk_slot),
                 std::as_bytes(out));
    }
  }
};

/// Columns (elements) per chunk of step 5 with `local_bytes` of local memory free, a multiple
/// of 16 (a 32-byte bf16 tile): the widest at which a token's routes and weights, the fp32 sums
/// and bf16 result of the chunk, and the chunk of each of num_topk rows all fit (what
/// ReduceTokens takes and stages), then narrowed to the width that cuts a row into chunks of
/// near-equal widths; the last may be narrower. All of H on the DeepSeek shape (7168 columns,
/// 8 rows: 154 KiB). Throws cmx::Error(capacity) if not even 16 columns fit.
inline std::size_t reduce_chunk_columns(std::size_t local_bytes, const Layout& layout) {
  constexpr std::size_t kColumnStep = kTileAlignment / sizeof(bf16);
  const std::size_t hidden = static_cast<std::size_t>(layout.hidden);
  const std::size_t num_topk = static_cast<std::size_t>(layout.num_topk);
  // As ReduceTokens stages them: the token's routes and weights, then per column its sum,
  // its result and one element of each row.
  const std::size_t token_bytes = round_up(num_topk * sizeof(Route), kTileAlignment) +
                                  round_up(num_topk * sizeof(float), kTileAlignment);
  const std::size_t column_bytes = sizeof(float) + sizeof(bf16) + num_topk * sizeof(bf16);
  const std::size_t widest =
      local_bytes > token_bytes
          ? (local_bytes - token_bytes) / column_bytes / kColumnStep * kColumnStep
          : 0;
  cmx::detail::require(widest > 0, ErrorCode::capacity, "combine: ", local_bytes,
                       " B of local memory hold no chunk of ", num_topk, " rows");
  const std::size_t num_chunks = (hidden + widest - 1) / widest;
  return round_up((hidden + num_chunks - 1) / num_chunks, kColumnStep);
}

/// Step 5 of combine, one block's share of the tokens: y[t] = sum over unmasked k, in k order,
/// of fma(topk_weights[t, k], row(t, k), acc) in fp32, rounded once to bf16. A token's rows are
/// added together (Device::accumulate_weighted_rows), a chunk of columns at a time
/// (reduce_chunk_columns): the chunk of every unmasked row is staged, summed into fp32 in local
/// memory, rounded and stored. The routes and weights are read from global memory (written
/// there by the host).
template <Device Dev>
struct ReduceTokens {
  Dev device;
  typename Dev::Symmetric symmetric;
  Layout layout;
  bf16* y;  // [num_tokens][hidden], global memory
  int num_tokens;

  void operator()(Block& block) {
    const auto [begin, end] = block_range(num_tokens, block.index, block.count);
    const std::size_t hidden = static_cast<std::size_t>(layout.hidden);
    const std::size_t num_topk = static_cast<std::size_t>(layout.num_topk);
    const std::byte* part = device.local(symmetric);
    const std::size_t columns =
        reduce_chunk_columns(block.local.capacity() - block.local.mark(), layout);
    const std::span<float> acc = block.local.take<float>(columns);  // [columns] fp32 sums
    const std::span<bf16> out = block.local.take<bf16>(columns);    // [columns] the result
    const std::size_t token_mark = block.local.mark();
    for (std::int64_t t = begin; t < end; ++t) {
      const int token = static_cast<int>(t);
      block.local.rewind(token_mark);
      const std::span<const Route> routes = device.stage_in(
          block.local, reinterpret_cast<const Route*>(part + layout.route(token, 0)), num_topk);
      const std::span<const float> weights = device.stage_in(
          block.local, reinterpret_cast<const float*>(part + layout.topk_weight(token, 0)),
          num_topk);
      // The unmasked choices, in k order, with their weights.
      std::array<int, kMaxTopk> choices{};
      std::array<float, kMaxTopk> choice_weights{};
      std::size_t num_rows = 0;
      for (std::size_t k = 0; k < num_topk; ++k) {
        if (routes[k].expert < 0) continue;
        choices[num_rows] = static_cast<int>(k);
        choice_weights[num_rows++] = weights[k];
      }
      const std::size_t chunk_mark = block.local.mark();
      for (std::size_t first = 0; first < hidden; first += columns) {
        const std::size_t width = std::min(columns, hidden - first);
        block.local.rewind(chunk_mark);
        std::array<std::span<const bf16>, kMaxTopk> rows;  // columns [first, first + width)
        for (std::size_t row = 0; row < num_rows; ++row) {
          const int k = choices[row];
          rows[row] =
              stage_row(block.local, token, k, routes[static_cast<std::size_t>(k)], first, width);
        }
        const std::span<float> sums = acc.first(width);
        std::fill(sums.begin(), sums.end(), 0.0f);
        device.accumulate_weighted_rows(sums, std::span(rows).first(num_rows),
                                        std::span<const float>(choice_weights).first(num_rows));
        device.round_row_to_bf16(sums, out.first(width));
        device.store(y + static_cast<std::size_t>(t) * hidden + first,
                     std::span<const bf16>(out.first(width)));
      }
    }
  }

 private:
  // Columns [first, first + width) of row (token, k): from this rank's combine rows (push), or
  // from the expert_out of the rank hosting the route's expert, at the row dispatch gave the
  // choice (pull).
  std::span<const bf16> stage_row(LocalArena& local, int token, int k, Route route,
                                  std::size_t first, std::size_t width) {
    const std::size_t column_offset = first * sizeof(bf16);
    if (layout.combine_source == CombineSource::buffer)
      return device.template stage_in_peer<bf16>(local, symmetric, layout.home_rank(route.expert),
                                                 layout.expert_out_row(route.row) + column_offset,
                                                 width);
    return device.stage_in(
        local,
        reinterpret_cast<const bf16*>(device.local(symmetric) + layout.combine_row(token, k) +
                                      column_offset),
        width);
  }
};

}  // namespace detail

/// FusedCombine. Collective: every rank calls it after its dispatch on the same buffer. Writes
/// y on this rank; deterministic bit for bit.
///
/// `device` must be the device the buffer was made with (this rank). `args.expert_out` and
/// `args.y` are global memory (device memory on an NPU backend), `args.topk_weights` host
/// memory (copied into the buffer).
///
/// Errors (cmx::Error): invalid_argument (sizes, raised before anything is written; another
/// rank's device), state (no dispatch before it), timeout (names the rank that never
/// signalled), peer_failed. Any error leaves the buffer failed.
template <Device Dev>
void combine(Dev& device, Buffer<Dev>& buffer, const CombineArgs& args) {
  detail::run_call(device, buffer, [&] {
    const Layout& layout = buffer.layout();
    const auto& symmetric = buffer.symmetric();
    const int rank = device.rank();
    const int num_ranks = layout.num_ranks;
    const bool pull = layout.combine_source == CombineSource::buffer;
    detail::CallState& state = detail::BufferAccess::state(buffer);
    const std::uint64_t sequence = state.begin_combine(rank);
    const int num_tokens = state.num_tokens;
    const std::vector<std::int32_t>& counts = state.received_counts;  // [E_local][W]

    // Raises this rank's combine flag on every rank, with payload_of(that rank).
    const auto publish = [&](auto&& payload_of) {
      for (int src = 0; src < num_ranks; ++src)
        device.signal(symmetric, src, layout.combine_flag(rank), sequence, payload_of(src));
    };

    // Steps 1-2 are published by step 3; if one fails, the peers get the failure payload.
    detail::before_publish(publish, [&] {
      // 1. Check, then copy the weights where step 5's blocks read them.
      detail::check_combine_args(
          args, layout, num_tokens, rank,
          pull ? std::span<const bf16>(buffer.expert_out()) : std::span<const bf16>());
      device.write_local(symmetric, layout.topk_weights_offset, std::as_bytes(args.topk_weights));
      if (pull) return;  // the rows stay where the caller wrote them

      // 2. Return rows.
      std::int64_t num_rows = 0;
      for (const std::int32_t count : counts) num_rows += count;
      device.launch(
          detail::num_blocks_for(device, num_rows),
          detail::ReturnRows<Dev>{device, symmetric, layout, args.expert_out.data(), num_rows});
    });

    // 3. Publish: each source rank learns how many of its rows this rank returned (push) or
    //    holds ready in its expert_out (pull).
    publish([&](int src) { return layout.rows_from(counts, src); });

    // 4. Wait for every rank's rows; each must return exactly what it was sent.
    const std::vector<std::int32_t>& sent = state.sent_per_expert;  // [num_experts]
    for (int peer = 0; peer < num_ranks; ++peer) {
      std::int64_t expected = 0;
      for (int e = 0; e < layout.num_local_experts; ++e)
        expected += sent[static_cast<std::size_t>(layout.global_expert(peer, e))];
      const std::int32_t returned = detail::wait_count(
          device, symmetric, layout.combine_flag(peer), sequence, WaitSite{"combine", peer, -1},
          static_cast<std::int64_t>(num_tokens) * layout.num_topk);
      cmx::detail::require(returned == expected, ErrorCode::state, "rank ", rank, ": rank ", peer,
                           " returned ", returned, " rows, ", expected, " were sent to it");
    }

    // 5. Reduce each token's rows in k order.
    device.launch(detail::num_blocks_for(device, num_tokens),
                  detail::ReduceTokens<Dev>{device, symmetric, layout, args.y.data(), num_tokens});

    state.phase = Phase::idle;
  });
}

}  // namespace cmx::ep
