// SPDX-License-Identifier: Apache-2.0
// MLA decode: DeepSeek-V3/R1 multi-head latent attention for decode, in the weight-absorbed
// form FlashMLA and CANN use, over a paged latent KV cache (cmx/attention/kv_cache.hpp).
//
// Every head of a request attends to the same cached rows: K is the whole 576-wide row, V its
// first 512 elements. So per request, QK^T is a [s_q * h_q, 576] x [576, n] product per tile of
// n keys, and PV a [s_q * h_q, n] x [n, 512] one.
//
//   1. Check every input before writing anything (shapes, lengths against the block table,
//      block indices, the plan).
//   2. Attend, in blocks over the plan's work items (a tile of query rows of one request against
//      one chunk of its keys; see decode_plan.hpp):
//      a. pack the item's query rows by pairs of elements (Bf16ScoresTile's layout);
//      b. per row: running max m = -inf (a base-2 exponent), running sum l = 0, output O = 0;
//      c. for each tile of n keys of the chunk, inside one cache block (staged once):
//           s = QK^T masked, and each row's max (device);
//           m' = max(m, max * scale_log2); p = bf16(2^(s * scale_log2 - m')) and its fp32 sum
//           (device); l = l * 2^(m - m') + sum; O = O * 2^(m - m') + P V (device); m = m';
//      d. a request in one chunk: finish its rows (below); else store O, m and l as the chunk's
//         partial result.
//   3. Merge, in blocks over the rows of split requests: finish each row from its partials.
//
// Finishing a row from its chunks' (O_c, m_c, l_c), in chunk order c = 0, 1, ...:
//   m = max_c m_c,  L = sum_c l_c 2^(m_c - m),  o = bf16(sum_c O_c * (2^(m_c - m) / L)),
//   lse = (m + log2 L) ln 2 = log sum_j exp(softmax_scale * s_j)
// A row that sees no key (a request of length 0, or a query position before every cached key)
// gives o = 0 and lse = -inf (the log of an empty sum; FlashMLA's reference writes +inf).
//
// NOTES: the work is cut by the plan independently of the block count and every sum runs in a
// fixed order (keys within a tile by the device, tiles in order, chunks in order), so the output
// is bitwise the same for every block count and run, for a given device tier.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numbers>
#include <span>

#include "cmx/attention/decode_plan.hpp"
#include "cmx/attention/kv_cache.hpp"
#include "cmx/core/bf16.hpp"
#include "cmx/core/error.hpp"
#include "cmx/device/bf16_attention.hpp"
#include "cmx/device/bf16_attention_portable.hpp"
#include "cmx/device/device.hpp"

namespace cmx::attention {

/// Which cached keys a query position sees.
enum class Masking {
  /// Query position i of s_q sees positions < cache_seqlens - (s_q - 1 - i): the last s_q
  /// cached tokens are the new ones, each seeing itself and those before it (FlashMLA's
  /// convention).
  causal,
  /// Every query position sees all cache_seqlens positions.
  none,
};

/// The inputs and outputs of one MLA decode.
struct MlaDecodeArgs {
  MlaDecodeShape shape;            ///< B, s_q, h_q
  std::span<const bf16> q;         ///< [batch][s_q][h_q][576] absorbed queries: latent, then RoPE
  std::span<const bf16> kv_cache;  ///< [num_blocks][block_size][576]
  int block_size = 0;              ///< tokens per cache block
  std::span<const std::int32_t> block_table;    ///< [batch][max_blocks_per_seq]
  int max_blocks_per_seq = 0;                   ///< columns of the block table
  std::span<const std::int32_t> cache_seqlens;  ///< [batch] cached tokens, the s_q new included
  float softmax_scale = 0;                      ///< multiplies q.k; positive and finite
  Masking masking = Masking::causal;
  std::span<bf16> o = {};     ///< [batch][s_q][h_q][512] out
  std::span<float> lse = {};  ///< [batch][h_q][s_q] out: natural log of each row's softmax sum
};

namespace detail {

inline constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();

/// Throws cmx::Error unless `args` fits `plan` and the cache, and the plan's tiles fit a block's
/// `local_memory_bytes`; returns the cache layout.
inline PagedKvLayout check_decode_args(const MlaDecodeArgs& args, const MlaDecodePlan& plan,
                                       std::size_t local_memory_bytes) {
  using cmx::detail::require;
  constexpr ErrorCode kBad = ErrorCode::invalid_argument;
  const std::size_t plan_bytes = DecodeTiles::local_bytes(plan.tiles().rows, plan.tiles().keys);
  require(plan_bytes <= local_memory_bytes, kBad, "the plan's tiles take ", plan_bytes,
          " B of local memory, this device's blocks have ", local_memory_bytes,
          ": make the plan with this device");
  const MlaDecodeShape& shape = args.shape;
  require(shape == plan.shape(), kBad, "the arguments' shape (batch ", shape.batch, ", s_q ",
          shape.num_queries, ", h_q ", shape.num_heads, ") is not the plan's (batch ",
          plan.shape().batch, ", s_q ", plan.shape().num_queries, ", h_q ", plan.shape().num_heads,
          ")");
  const PagedKvLayout layout(args.kv_cache.size(), args.block_size, args.block_table, shape.batch,
                             args.max_blocks_per_seq);
  const std::size_t rows = static_cast<std::size_t>(shape.batch) * shape.rows();
  require(args.q.size() == rows * kKvDim, kBad, "q has ", args.q.size(),
          " elements, expected batch * s_q * h_q * 576 = ", rows * kKvDim);
  require(args.o.size() == rows * kLatentDim, kBad, "o has ", args.o.size(),
          " elements, expected batch * s_q * h_q * 512 = ", rows * kLatentDim);
  require(args.lse.size() == rows, kBad, "lse has ", args.lse.size(),
          " elements, expected batch * h_q * s_q = ", rows);
  require(std::isfinite(args.softmax_scale) && args.softmax_scale > 0, kBad,
          "softmax_scale must be positive and finite, got ", args.softmax_scale);
  require(args.masking == Masking::causal || args.masking == Masking::none, kBad,
          "unknown masking ", static_cast<int>(args.masking));
  require(args.cache_seqlens.size() == static_cast<std::size_t>(shape.batch), kBad,
          "cache_seqlens has ", args.cache_seqlens.size(),
          " entries, expected batch = ", shape.batch);
  for (int b = 0; b < shape.batch; ++b) {
    const std::int32_t length = args.cache_seqlens[static_cast<std::size_t>(b)];
    require(length == plan.cache_seqlens()[static_cast<std::size_t>(b)], kBad, "request ", b,
            ": cache_seqlens is ", length, " but the plan was made for ",
            plan.cache_seqlens()[static_cast<std::size_t>(b)], "; make a plan for this batch");
    layout.check_request(b, length, "cache_seqlens");
  }
  return layout;
}

template <Device Dev>
void scores(Dev& device, const Bf16ScoresTile& tile) {
  if constexpr (Bf16AttentionDevice<Dev>)
    device.bf16_scores(tile);
  else
    portable::bf16_scores(tile);
}
template <Device Dev>
void exp_scores(Dev& device, const Bf16ExpTile& tile) {
  if constexpr (Bf16AttentionDevice<Dev>)
    device.bf16_exp_scores(tile);
  else
    portable::bf16_exp_scores(tile);
}
template <Device Dev>
void accumulate_values(Dev& device, const Bf16ValuesTile& tile) {
  if constexpr (Bf16AttentionDevice<Dev>)
    device.bf16_accumulate_values(tile);
  else
    portable::bf16_accumulate_values(tile);
}

/// What a work item keeps in local memory, taken in the order DecodeTiles::local_bytes counts.
struct ItemLocals {
  ItemLocals(LocalArena& local, int rows, int keys) {
    const std::size_t m = static_cast<std::size_t>(rows);
    const std::size_t n = static_cast<std::size_t>(keys);
    query_pairs = local.take<bf16>(m * kKvDim);
    out = local.take<float>(m * kLatentDim);
    running_max = local.take<float>(m);
    running_sum = local.take<float>(m);
    tile_max = local.take<float>(m);
    tile_sum = local.take<float>(m);
    shift = local.take<float>(m);
    rescale = local.take<float>(m);
    visible_keys = local.take<int>(m);
    scores = local.take<float>(n * m);
    probabilities = local.take<bf16>((n + 1) / 2 * 2 * m);
    out_row = local.take<bf16>(kLatentDim);
  }
  std::span<bf16> query_pairs;    // [288][rows][2]
  std::span<float> out;           // [rows][512] O, unnormalized
  std::span<float> running_max;   // [rows] m, a base-2 exponent
  std::span<float> running_sum;   // [rows] l
  std::span<float> tile_max;      // [rows] max of the tile's raw scores
  std::span<float> tile_sum;      // [rows]
  std::span<float> shift;         // [rows] the exponent subtracted in this tile
  std::span<float> rescale;       // [rows] 2^(m - m')
  std::span<int> visible_keys;    // [rows] of the tile
  std::span<float> scores;        // [keys][rows]
  std::span<bf16> probabilities;  // [keys / 2][rows][2]
  std::span<bf16> out_row;        // [512] a finished row
};

/// Weighs a row's chunk partials: factors[c] = 2^(maxes[c] - m) / L (see the file comment);
/// returns the row's lse. A row that saw no key gets factors 0 and lse -inf.
inline float chunk_factors(std::span<const float> maxes, std::span<const float> sums,
                           std::span<float> factors) {
  float max = kNegativeInfinity;
  for (const float chunk_max : maxes) max = std::max(max, chunk_max);
  if (max == kNegativeInfinity) {
    std::fill(factors.begin(), factors.end(), 0.0f);
    return kNegativeInfinity;
  }
  float total = 0.0f;
  for (std::size_t c = 0; c < maxes.size(); ++c) total += sums[c] * std::exp2(maxes[c] - max);
  const float inverse = 1.0f / total;
  for (std::size_t c = 0; c < maxes.size(); ++c) factors[c] = std::exp2(maxes[c] - max) * inverse;
  return (max + std::log2(total)) * std::numbers::ln2_v<float>;
}

/// Where request `request`'s query row `row` (= position * h_q + head) writes its outputs.
struct RowOutput {
  std::size_t o;    // element offset of the row in o
  std::size_t lse;  // index in lse
};
inline RowOutput row_output(const MlaDecodeShape& shape, int request, int row) noexcept {
  const int position = row / shape.num_heads;
  const int head = row % shape.num_heads;
  const std::size_t request_rows = static_cast<std::size_t>(request) * shape.rows();
  return {.o = (request_rows + static_cast<std::size_t>(row)) * kLatentDim,
          .lse = request_rows + static_cast<std::size_t>(head) * shape.num_queries +
                 static_cast<std::size_t>(position)};
}

/// Writes a finished row: o = bf16(acc), and its lse.
template <Device Dev>
void store_row(Dev& device, const MlaDecodeArgs& args, int request, int row,
               std::span<const float> acc, std::span<bf16> out_row, float lse) {
  device.round_row_to_bf16(acc, out_row);
  const RowOutput at = row_output(args.shape, request, row);
  device.store(args.o.data() + at.o, std::span<const bf16>(out_row));
  device.store(args.lse.data() + at.lse, std::span<const float>(&lse, 1));
}

/// A tile of keys: its first cached row, and how many rows (consecutive in the cache).
struct KeyTile {
  const bf16* rows = nullptr;  // [num_keys][576]
  int num_keys = 0;
};

/// The tile of `item` that starts at `key`: at most the tile size, inside one cache block;
/// empty at the item's end.
inline KeyTile key_tile(const MlaDecodeArgs& args, const DecodePlanView& plan,
                        const PagedKvLayout& layout, const DecodeWorkItem& item,
                        std::int64_t key) noexcept {
  if (key >= item.key_end) return {};
  return {.rows = args.kv_cache.data() + layout.row_offset(item.request, key),
          .num_keys = static_cast<int>(std::min<std::int64_t>(
              {plan.tiles.keys, item.key_end - key, layout.rows_left_in_block(key)}))};
}

/// Step 2 for one work item; `next` is the item its block computes after it, if any.
template <Device Dev>
void attend(Dev& device, LocalArena& local, const MlaDecodeArgs& args, const PagedKvLayout& layout,
            const DecodePlanView& plan, const DecodeWorkItem& item, const DecodeWorkItem* next) {
  local.reset();
  const int rows = item.num_rows;
  const std::size_t m = static_cast<std::size_t>(rows);
  const ItemLocals tiles(local, rows, plan.tiles.keys);
  const std::size_t mark = local.mark();

  // a. Pack the queries: the pair (q[i][2p], q[i][2p + 1]) goes to word p * rows + i.
  const std::size_t request_rows = static_cast<std::size_t>(item.request) * args.shape.rows();
  for (std::size_t i = 0; i < m; ++i) {
    local.rewind(mark);
    const std::span<const bf16> query = device.stage_in(
        local, args.q.data() + (request_rows + item.row_begin + i) * kKvDim, kKvDim);  // [576]
    for (std::size_t p = 0; p < kKvDim / 2; ++p)
      std::memcpy(&tiles.query_pairs[(p * m + i) * 2], &query[2 * p], 2 * sizeof(bf16));
  }

  // b. Start every row empty; its last visible position from the masking.
  std::fill(tiles.out.begin(), tiles.out.end(), 0.0f);
  std::fill(tiles.running_max.begin(), tiles.running_max.end(), kNegativeInfinity);
  std::fill(tiles.running_sum.begin(), tiles.running_sum.end(), 0.0f);
  const std::int64_t length = plan.cache_seqlens[static_cast<std::size_t>(item.request)];
  const auto visible_end = [&](std::size_t i) {  // keys [0, visible_end) are seen by row i
    if (args.masking == Masking::none) return length;
    const int position = (item.row_begin + static_cast<int>(i)) / args.shape.num_heads;
    return length - (args.shape.num_queries - 1 - position);
  };
  const float scale_log2 = args.softmax_scale * std::numbers::log2e_v<float>;

  // c. Stream the chunk's keys, a tile at a time, never across a cache block; the device may
  //    start fetching the tile after each (this item's next, or the next item's first).
  for (std::int64_t key = item.key_begin; key < item.key_end;) {
    const KeyTile tile = key_tile(args, plan, layout, item, key);
    KeyTile after = key_tile(args, plan, layout, item, key + tile.num_keys);
    if (after.num_keys == 0 && next != nullptr)
      after = key_tile(args, plan, layout, *next, next->key_begin);
    local.rewind(mark);
    const std::span<const bf16> kv = device.stage_in(
        local, tile.rows, static_cast<std::size_t>(tile.num_keys) * kKvDim);  // [num_keys][576]
    for (std::size_t i = 0; i < m; ++i)
      tiles.visible_keys[i] =
          static_cast<int>(std::clamp<std::int64_t>(visible_end(i) - key, 0, tile.num_keys));
    scores(device, {.query_pairs = tiles.query_pairs,
                    .keys = kv.data(),
                    .key_stride = kKvDim,
                    .num_queries = rows,
                    .num_keys = tile.num_keys,
                    .depth = kKvDim,
                    .visible_keys = tiles.visible_keys,
                    .scores = tiles.scores,
                    .row_max = tiles.tile_max,
                    .next_keys = after.rows,
                    .next_num_keys = after.num_keys});
    for (std::size_t i = 0; i < m; ++i) {
      const float previous = tiles.running_max[i];
      const float updated = std::max(previous, tiles.tile_max[i] * scale_log2);
      tiles.shift[i] = updated == kNegativeInfinity ? 0.0f : updated;  // all masked so far: p = 0
      tiles.rescale[i] = previous == kNegativeInfinity ? 0.0f : std::exp2(previous - updated);
      tiles.running_max[i] = updated;
    }
    exp_scores(device, {.scores = tiles.scores,
                        .num_queries = rows,
                        .num_keys = tile.num_keys,
                        .scale_log2 = scale_log2,
                        .shift = tiles.shift,
                        .probabilities = tiles.probabilities,
                        .row_sum = tiles.tile_sum});
    for (std::size_t i = 0; i < m; ++i)
      tiles.running_sum[i] = tiles.running_sum[i] * tiles.rescale[i] + tiles.tile_sum[i];
    accumulate_values(device, {.probabilities = tiles.probabilities,
                               .values = kv.data(),
                               .value_stride = kKvDim,
                               .num_queries = rows,
                               .num_keys = tile.num_keys,
                               .width = kLatentDim,
                               .rescale = tiles.rescale,
                               .out = tiles.out});
    key += tile.num_keys;
  }

  // d. Finish the rows, or keep them as this chunk's partial.
  for (std::size_t i = 0; i < m; ++i) {
    const std::span<float> out = tiles.out.subspan(i * kLatentDim, kLatentDim);  // [512]
    if (item.partial < 0) {
      float factor = 0.0f;
      const float lse = chunk_factors(std::span<const float>(&tiles.running_max[i], 1),
                                      std::span<const float>(&tiles.running_sum[i], 1),
                                      std::span<float>(&factor, 1));
      for (float& value : out) value *= factor;
      store_row(device, args, item.request, item.row_begin + static_cast<int>(i), out,
                tiles.out_row, lse);
    } else {
      const std::size_t slot = static_cast<std::size_t>(item.partial) * plan.tiles.rows + i;
      device.store(plan.partial_out.data() + slot * kLatentDim, std::span<const float>(out));
      device.store(plan.partial_max.data() + slot,
                   std::span<const float>(&tiles.running_max[i], 1));
      device.store(plan.partial_sum.data() + slot,
                   std::span<const float>(&tiles.running_sum[i], 1));
    }
  }
}

/// Step 3 for one row of a merge group.
template <Device Dev>
void merge_row(Dev& device, LocalArena& local, const MlaDecodeArgs& args,
               const DecodePlanView& plan, const DecodeMergeGroup& group, int row_in_group) {
  local.reset();
  const std::size_t num_chunks = static_cast<std::size_t>(group.num_chunks);
  const std::span<float> maxes = local.take<float>(num_chunks);    // [chunks]
  const std::span<float> sums = local.take<float>(num_chunks);     // [chunks]
  const std::span<float> factors = local.take<float>(num_chunks);  // [chunks]
  const std::span<float> acc = local.take<float>(kLatentDim);      // [512]
  const std::span<bf16> out_row = local.take<bf16>(kLatentDim);    // [512]
  const std::size_t mark = local.mark();
  const auto slot = [&](std::size_t chunk) {
    return (static_cast<std::size_t>(group.first_partial) + chunk) * plan.tiles.rows +
           static_cast<std::size_t>(row_in_group);
  };
  for (std::size_t c = 0; c < num_chunks; ++c) {
    device.load(maxes.subspan(c, 1), plan.partial_max.data() + slot(c));
    device.load(sums.subspan(c, 1), plan.partial_sum.data() + slot(c));
  }
  const float lse = chunk_factors(maxes, sums, factors);
  std::fill(acc.begin(), acc.end(), 0.0f);
  for (std::size_t c = 0; c < num_chunks; ++c) {
    local.rewind(mark);
    const std::span<const float> partial =
        device.stage_in(local, plan.partial_out.data() + slot(c) * kLatentDim,
                        static_cast<std::size_t>(kLatentDim));  // [512]
    for (std::size_t d = 0; d < kLatentDim; ++d) acc[d] += partial[d] * factors[c];
  }
  store_row(device, args, group.request, group.row_begin + row_in_group, acc, out_row, lse);
}

/// The block kernel of step 2: block k computes the plan's k-th run of items.
template <Device Dev>
struct AttendItems {
  Dev device;
  MlaDecodeArgs args;
  PagedKvLayout layout;
  DecodePlanView plan;

  void operator()(Block& block) {
    const std::size_t index = static_cast<std::size_t>(block.index);
    const std::size_t end = plan.block_begins[index + 1];
    for (std::size_t i = plan.block_begins[index]; i < end; ++i)
      attend(device, block.local, args, layout, plan, plan.items[i],
             i + 1 < end ? &plan.items[i + 1] : nullptr);
  }
};

/// The block kernel of step 3: the `num_rows` split rows of `groups`, split evenly among the
/// blocks.
template <Device Dev>
struct MergeRows {
  Dev device;
  MlaDecodeArgs args;
  DecodePlanView plan;
  std::span<const DecodeMergeGroup> groups;
  std::int64_t num_rows;

  void operator()(Block& block) {
    const std::int64_t begin = num_rows * block.index / block.count;
    const std::int64_t end = num_rows * (block.index + 1) / block.count;
    std::size_t g = 0;
    std::int64_t group_begin = 0;  // the first row of groups[g]
    for (std::int64_t row = begin; row < end; ++row) {
      while (row >= group_begin + groups[g].num_rows) group_begin += groups[g++].num_rows;
      merge_row(device, block.local, args, plan, groups[g], static_cast<int>(row - group_begin));
    }
  }
};

}  // namespace detail

/// MLA decode attention over a paged latent KV cache (the algorithm is described at the top of
/// this file). Writes o and lse; reads q, the cache rows of each request's first cache_seqlens
/// positions, and the block table. `plan` must have been made for this shape and these
/// cache_seqlens; its workspace is written.
///
/// Precision: products of bf16 inputs accumulated in fp32, the softmax in fp32 with its
/// probabilities rounded to bf16 for the PV product (as FlashMLA), o rounded once to bf16.
/// Against an exact reference, each output element is within
///   2^-8 * (|o_ref| + sum_j softmax_j |v_j|)
/// and each lse within 2^-10 (for sequences up to 16K keys, on every device tier): the bf16
/// probabilities account for 2^-9 of the weighted |v|, the bf16 output for 2^-9 |o|, the rest
/// is the fp32 sums' rounding in whatever order a tier uses.
///
/// q and the cache rows read must be finite: a NaN or an infinity gives unspecified values (the
/// tiers differ), never a write out of bounds.
///
/// Errors (cmx::Error), raised before anything is written: invalid_argument (sizes, a shape or
/// lengths that differ from the plan's, a block index outside the cache, a bad softmax_scale),
/// capacity (a request longer than its block table holds).
template <Device Dev>
void mla_decode(Dev& device, MlaDecodePlan& plan, const MlaDecodeArgs& args) {
  // 1. Check.
  const PagedKvLayout layout = detail::check_decode_args(args, plan, Dev::kLocalMemoryBytes);

  // 2. Attend: block k computes the plan's k-th run of items.
  detail::AttendItems<Dev> attend_items{
      .device = device, .args = args, .layout = layout, .plan = plan.view()};
  device.launch(plan.num_blocks(), attend_items);

  // 3. Merge the split rows, split evenly among blocks.
  const std::span<const DecodeMergeGroup> groups = plan.merge_groups();
  std::int64_t num_rows = 0;
  for (const DecodeMergeGroup& group : groups) num_rows += group.num_rows;
  if (num_rows == 0) return;
  detail::MergeRows<Dev> merge_rows{
      .device = device, .args = args, .plan = plan.view(), .groups = groups, .num_rows = num_rows};
  device.launch(static_cast<int>(std::min<std::int64_t>(plan.num_blocks(), num_rows)), merge_rows);
}

/// mla_decode with a plan made for this call (a plan reused across layers saves its making).
template <Device Dev>
void mla_decode(Dev& device, const MlaDecodeArgs& args) {
  MlaDecodePlan plan(device, args.shape, args.cache_seqlens);
  mla_decode(device, plan, args);
}

}  // namespace cmx::attention
