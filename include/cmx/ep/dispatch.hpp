// SPDX-License-Identifier: Apache-2.0
// FusedDispatch: each token is quantized once and written straight into the receive buffer of
// every rank that hosts one of its top-k experts (a peer write), then counts are signalled.
//
// On every rank, for call number `seq` of a buffer:
//   1. Check the inputs. A bad one is reported before anything is written. If this or any
//      later step before 4 fails, the rank raises every flag it owes its peers with a failure
//      payload, so they fail at once instead of timing out.
//   2. Plan: count the rows for each expert, then give choice (t, k) the next row of segment
//      (expert, this rank) in the expert rank's receive area. This rank's rows there are
//      packed from Layout::source_first_row(this rank), segment after segment in expert order,
//      each in token order. A row depends on this rank's routing only: no rank waits to plan,
//      and rows arrive ordered by (source rank, source token) by construction. The plan is
//      copied into the buffer (Layout::routes), where the blocks of step 3 and combine read it.
//   3. Send, in blocks over tokens (detail::SendTokens): stage the bf16 row, quantize it once
//      into a message tile in local memory (row, then MessageMeta), and put that tile into
//      each chosen expert's segment on its rank, rewriting only the meta's k between copies;
//      between the puts, ask for the next token's row (Device::prefetch).
//   4. Publish, after the launch has joined: signal flag (expert, this rank) on every rank for
//      every expert, with the count sent (also 0), sequence seq.
//   5. Receive: wait for the flag of every (local expert, source rank); the payload is the
//      segment's row count. From the counts follow where the segments start
//      (Layout::first_rows), as the sources placed them; both are also copied into the buffer
//      (Layout::received_counts, received_first_rows).
//
// NOTES (why buffers are reused without clearing): rank A writes into rank B for call seq+1 only
// after A's combine seq returned. That needed B's combine-seq signal to A, which B raises after
// its dispatch seq waited for all flags and after B read its received rows into expert outputs.
// So B's flags, counts and messages of call seq are consumed before A overwrites them, and a
// flag never shows a sequence beyond the one waited for. The same argument covers combine's
// rows and flags one phase later.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "cmx/core/bf16.hpp"
#include "cmx/core/error.hpp"
#include "cmx/device/device.hpp"
#include "cmx/ep/buffer.hpp"
#include "cmx/ep/layout.hpp"
#include "cmx/ep/protocol.hpp"
#include "cmx/ep/received.hpp"

namespace cmx::ep {

/// The inputs of one dispatch on one rank.
struct DispatchArgs {
  std::span<const bf16> x;                 ///< [num_tokens, hidden] tokens
  std::span<const std::int32_t> topk_idx;  ///< [num_tokens, num_topk] global expert ids;
                                           ///< -1 = no expert; an id at most once per token
  int num_tokens = 0;                      ///< 0 ... max_tokens_per_rank
};

namespace detail {

/// Throws cmx::Error(invalid_argument or capacity) unless `args` fits `config`.
inline void check_dispatch_args(const DispatchArgs& args, const Config& config, int rank) {
  using cmx::detail::require;
  require(args.num_tokens >= 0, ErrorCode::invalid_argument, "rank ", rank, ": num_tokens is ",
          args.num_tokens);
  require(args.num_tokens <= config.max_tokens_per_rank, ErrorCode::capacity, "rank ", rank,
          ": dispatch of ", args.num_tokens, " tokens, capacity (max_tokens_per_rank) is ",
          config.max_tokens_per_rank);
  const std::size_t num_tokens = static_cast<std::size_t>(args.num_tokens);
  const std::size_t num_topk = static_cast<std::size_t>(config.num_topk);
  require(args.x.size() == num_tokens * static_cast<std::size_t>(config.hidden),
          ErrorCode::invalid_argument, "rank ", rank, ": x has ", args.x.size(),
          " elements, expected num_tokens * hidden = ", num_tokens, " * ", config.hidden);
  require(args.topk_idx.size() == num_tokens * num_topk, ErrorCode::invalid_argument, "rank ", rank,
          ": topk_idx has ", args.topk_idx.size(),
          " elements, expected num_tokens * num_topk = ", num_tokens, " * ", num_topk);
  for (std::size_t t = 0; t < num_tokens; ++t) {
    const std::int32_t* choices = args.topk_idx.data() + t * num_topk;
    for (std::size_t k = 0; k < num_topk; ++k) {
      require(choices[k] >= -1 && choices[k] < config.num_experts, ErrorCode::invalid_argument,
              "rank ", rank, ": topk_idx[", t, ", ", k, "] = ", choices[k], " is outside [-1, ",
              config.num_experts, ")");
      for (std::size_t j = 0; j < k; ++j)
        require(choices[k] < 0 || choices[j] != choices[k], ErrorCode::invalid_argument, "rank ",
                rank, ": token ", t, " names expert ", choices[k], " twice (k = ", j, " and ", k,
                "); a token's experts must be distinct");
    }
  }
}

/// Step 3 of dispatch, one block's share of the tokens: stage each token's bf16 row, quantize
/// it once into a message tile in local memory (row, then MessageMeta), and put that tile into
/// each chosen expert's segment on its rank, rewriting only the meta's k between copies.
/// Plain data: the tokens and the plan are read from global memory (the plan, Layout::routes,
/// was written there by the host), so a backend may run it on an NPU's cores.
template <Device Dev>
struct SendTokens {
  Dev device;
  typename Dev::Symmetric symmetric;
  Layout layout;
  DispatchPrecision precision;
  const bf16* x;  // [num_tokens][hidden], global memory
  int num_tokens;

  void operator()(Block& block) {
    const auto [begin, end] = block_range(num_tokens, block.index, block.count);
    const std::size_t hidden = static_cast<std::size_t>(layout.hidden);
    const std::size_t data_bytes =
        hidden * (precision == DispatchPrecision::int8 ? 1 : sizeof(bf16));
    // [row_bytes | MessageMeta]; the row's padding is zeroed once, so every byte sent is
    // defined and the receive area is the same whatever ran on this core before.
    const std::span<std::byte> message = block.local.take<std::byte>(layout.message_bytes);
    std::fill(message.begin() + static_cast<std::ptrdiff_t>(data_bytes),
              message.begin() + static_cast<std::ptrdiff_t>(layout.row_bytes), std::byte{0});
    const std::size_t tile_mark = block.local.mark();
    const std::byte* part = device.local(symmetric);
    for (std::int64_t t = begin; t < end; ++t) {
      block.local.rewind(tile_mark);
      const int token = static_cast<int>(t);
      const std::span<const Route> routes = device.stage_in(
          block.local, reinterpret_cast<const Route*>(part + layout.route(token, 0)),
          static_cast<std::size_t>(layout.num_topk));
      const bf16* row = x + static_cast<std::size_t>(t) * hidden;
      MessageMeta meta{};
      meta.src_token = token;
      if (precision == DispatchPrecision::int8) {
        meta.scale = device.quantize_row_int8(
            device.stage_in(block.local, row, hidden),
            std::span<std::int8_t>(reinterpret_cast<std::int8_t*>(message.data()), hidden));
      } else {
        device.load(std::span<bf16>(reinterpret_cast<bf16*>(message.data()), hidden), row);
        meta.scale = 1.0f;
      }
      // The next token's row is asked for in num_topk parts, one before each put: its reads
      // from memory then overlap this token's puts instead of stalling its quantization (4-6%
      // of dispatch at W = 8 in paired runs; 2-4% when the whole row is asked for at once).
      const bf16* next_row = t + 1 < end ? row + hidden : nullptr;
      const std::size_t prefetch_part = (hidden + layout.num_topk - 1) / layout.num_topk;
      for (int k = 0; k < layout.num_topk; ++k) {
        const std::size_t part_begin = static_cast<std::size_t>(k) * prefetch_part;
        if (next_row != nullptr && part_begin < hidden)
          device.prefetch(next_row + part_begin, std::min(prefetch_part, hidden - part_begin));
        const Route route = routes[static_cast<std::size_t>(k)];
        if (route.expert < 0) continue;
        meta.topk_slot = k;
        std::memcpy(message.data() + layout.row_bytes, &meta, sizeof(meta));
        device.put(symmetric, layout.home_rank(route.expert), layout.message(route.row), message);
      }
    }
  }
};

}  // namespace detail

/// FusedDispatch. Collective: every rank of the buffer's world calls it, then combine. Returns
/// a view of what this rank received (valid until its combine). Deterministic: the received
/// bytes do not depend on thread counts, rank speeds or arrival order.
///
/// `device` must be the device the buffer was made with (this rank). `args.x` is global memory
/// (device memory on an NPU backend), `args.topk_idx` host memory (the host plans from it).
///
/// Errors (cmx::Error), all raised before this rank writes anything: capacity (num_tokens >
/// max_tokens_per_rank), invalid_argument (sizes, negative num_tokens, expert id outside
/// [-1, num_experts), an expert named twice by one token, another rank's device), state (out
/// of order, or a buffer an earlier error left failed). Afterwards: timeout (a peer never
/// signalled; names it), peer_failed (a peer reported its own error). Any error leaves the
/// buffer failed.
template <Device Dev>
Received dispatch(Dev& device, Buffer<Dev>& buffer, const DispatchArgs& args) {
  return detail::run_call(device, buffer, [&] {
    const Config& config = buffer.config();
    const Layout& layout = buffer.layout();
    const auto& symmetric = buffer.symmetric();
    const int rank = device.rank();
    const int num_topk = config.num_topk;
    detail::CallState& state = detail::BufferAccess::state(buffer);
    const std::uint64_t sequence = state.begin_dispatch(rank, args.num_tokens);
    std::vector<Route>& routes = state.routes;                // [T][K]
    std::vector<std::int32_t>& sent = state.sent_per_expert;  // [num_experts]

    // Raises flag (e, this rank) on every rank for every expert e, with payload_of(e).
    const auto publish = [&](auto&& payload_of) {
      for (int expert = 0; expert < config.num_experts; ++expert)
        device.signal(symmetric, layout.home_rank(expert),
                      layout.dispatch_flag(layout.local_expert(expert), rank), sequence,
                      payload_of(expert));
    };

    // Steps 1-3 write nothing a peer reads until step 4 publishes; if any of them fails, the
    // peers get the failure payload instead of a count.
    detail::before_publish(publish, [&] {
      // 1. Check.
      detail::check_dispatch_args(args, config, rank);

      // 2. Plan: the rows for each expert, where its segment starts on its rank, then the row
      //    of each choice; then copy the plan where the blocks read it.
      std::fill(sent.begin(), sent.end(), 0);
      const std::size_t num_choices = static_cast<std::size_t>(args.num_tokens) * num_topk;
      for (std::size_t choice = 0; choice < num_choices; ++choice)
        if (args.topk_idx[choice] >= 0) ++sent[static_cast<std::size_t>(args.topk_idx[choice])];
      std::vector<std::int32_t>& next_row = state.next_row;  // [num_experts]
      for (int home = 0; home < layout.num_ranks; ++home) {
        const auto first_expert = static_cast<std::size_t>(layout.global_expert(home, 0));
        layout.place_segments(rank, sent.data() + first_expert, next_row.data() + first_expert, 1);
      }
      for (std::size_t choice = 0; choice < num_choices; ++choice) {
        const std::int32_t expert = args.topk_idx[choice];
        routes[choice] = {expert, expert < 0 ? -1 : next_row[static_cast<std::size_t>(expert)]++};
      }
      device.write_local(symmetric, layout.routes_offset,
                         std::as_bytes(std::span<const Route>(routes.data(), num_choices)));

      // 3. Send: one quantization per token, one put per chosen expert.
      device.launch(detail::num_blocks_for(device, args.num_tokens),
                    detail::SendTokens<Dev>{device, symmetric, layout, config.precision,
                                            args.x.data(), args.num_tokens});
    });

    // 4. Publish every count, zeros included, now that all rows are written.
    publish([&](int expert) { return sent[static_cast<std::size_t>(expert)]; });

    // 5. Receive every segment's count; a source's rows must fit the rows it owns.
    std::vector<std::int32_t>& counts = state.received_counts;  // [E_local][W]
    for (int src = 0; src < layout.num_ranks; ++src) {
      for (int e = 0; e < layout.num_local_experts; ++e)
        counts[layout.segment(e, src)] =
            detail::wait_count(device, symmetric, layout.dispatch_flag(e, src), sequence,
                               WaitSite{"dispatch", src, e}, config.max_tokens_per_rank);
      const std::int64_t from_source = layout.rows_from(counts, src);
      cmx::detail::require(from_source <= layout.rows_per_source, ErrorCode::state, "rank ", rank,
                           ": rank ", src, " sent ", from_source, " rows, more than the ",
                           layout.rows_per_source, " it owns here");
    }
    std::vector<std::int32_t>& first_rows = state.received_first_rows;  // [E_local][W]
    layout.first_rows(counts, first_rows);

    // Both also go where the blocks of combine, and an engine's expert kernels, read them.
    device.write_local(symmetric, layout.received_counts_offset,
                       std::as_bytes(std::span<const std::int32_t>(counts)));
    device.write_local(symmetric, layout.received_first_rows_offset,
                       std::as_bytes(std::span<const std::int32_t>(first_rows)));

    state.phase = Phase::dispatched;
    return Received(layout, config.precision, device.local(symmetric), counts.data(),
                    first_rows.data(), sequence);
  });
}

}  // namespace cmx::ep
