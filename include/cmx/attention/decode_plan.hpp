// SPDX-License-Identifier: Apache-2.0
// cmx::attention::MlaDecodePlan: how one decode batch is cut into work (flash-decoding), made
// once per batch and reused by every layer, as FlashMLA's get_mla_metadata is.
//
//   1. Tiles: a work item holds M query rows (the s_q * h_q rows of a request, flattened
//      position-major, in tiles of M) and streams its keys n at a time; M and n are the largest
//      that fit a block's local memory (Dev::kLocalMemoryBytes), at most 32 and 64.
//   2. Chunks: every request's keys are cut into chunks of the same length, chosen so that the
//      batch makes at least `min_work_items` items (each chunk times each row tile) without a
//      chunk shorter than kMinChunkKeys: long sequences and small batches split (flash-decoding),
//      big batches do not. A request of length 0 is one empty chunk.
//   3. Items, ordered (request, chunk, row tile), are handed to the launch's blocks in
//      contiguous runs of equal cost (rows times keys, plus a fixed cost per item), as
//      FlashMLA's tile scheduler gives each SM an equal share of the batch's keys; a few
//      blocks per block the device runs at once, so that a slow core does not hold the rest.
//   4. A request cut into several chunks writes each chunk's partial result (unnormalized
//      output rows, their max and sum) to the plan's workspace; a merge combines them in chunk
//      order.
//
// NOTES: the chunks and tiles depend on the shapes, the lengths, min_work_items and the
// device's local memory only, never on how many blocks run: the outputs are bitwise the same
// for every block count. The block count only decides which block computes which item.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "cmx/attention/kv_cache.hpp"
#include "cmx/core/error.hpp"
#include "cmx/core/local_arena.hpp"
#include "cmx/device/device.hpp"

namespace cmx::attention {

/// The most attention heads per query (h_q), as FlashMLA.
inline constexpr int kMaxHeads = 128;
/// The most query positions per request (s_q; > 1 is multi-token prediction).
inline constexpr int kMaxQueriesPerRequest = 16;
/// No chunk of a split request is shorter than this many keys: below it, the per-item costs
/// (packing the queries, writing and merging a partial) stop being small.
inline constexpr std::int64_t kMinChunkKeys = 512;
/// The fixed cost of a work item, in keys, when blocks are given equal shares.
inline constexpr std::int64_t kItemOverheadKeys = 64;
/// Launch blocks per block the device runs at once (max_blocks, a core on the CPU): a few, so
/// that a core slowed by another program does not hold the launch back (the backend hands
/// blocks to whichever core is free).
inline constexpr int kBlocksPerCore = 4;

/// The shapes of one decode batch.
struct MlaDecodeShape {
  int batch = 0;        ///< B: requests, >= 1
  int num_queries = 0;  ///< s_q: query positions per request, 1 ... kMaxQueriesPerRequest
  int num_heads = 0;    ///< h_q: 1 ... kMaxHeads

  /// Query rows per request: s_q * h_q.
  int rows() const noexcept { return num_queries * num_heads; }
  friend bool operator==(const MlaDecodeShape&, const MlaDecodeShape&) = default;
};

/// How a batch is cut into work.
struct MlaDecodeOptions {
  /// The split aims at this many work items or more (step 2 above). The outputs depend on it,
  /// and on nothing about the machine: keep it fixed to get the same bits on every machine.
  /// Raise it for a machine with more cores than this.
  int min_work_items = 64;
};

/// The tile shape of a work item and what it takes of a block's local memory.
struct DecodeTiles {
  int rows = 0;  ///< M: query rows per work item, 1 ... 32
  int keys = 0;  ///< n: keys per tile, 16, 32 or 64

  /// Bytes of local memory a work item takes (see the kernel's ItemLocals).
  static std::size_t local_bytes(int rows, int keys) noexcept {
    const auto bytes = [](std::size_t count, std::size_t size) {
      return round_up(count * size, kTileAlignment);
    };
    const std::size_t m = static_cast<std::size_t>(rows);
    const std::size_t n = static_cast<std::size_t>(keys);
    return bytes(m * kKvDim, 2)             // query pairs
           + bytes(m * kLatentDim, 4)       // the output accumulator
           + 6 * bytes(m, 4) + bytes(m, 4)  // row statistics, visible keys
           + bytes(n * m, 4)                // scores
           + bytes((n + 1) / 2 * 2 * m, 2)  // probabilities
           + bytes(kKvDim, 2)               // a staged query row
           + bytes(kLatentDim, 2)           // an output row
           + bytes(n * kKvDim, 2);          // a staged key tile
  }

  /// The largest tiles for `local_memory_bytes` and `total_rows` query rows per request: n = 64
  /// and M = min(total_rows, 32) if they fit, else smaller. Throws cmx::Error(capacity) if not
  /// even one row and 16 keys fit.
  static DecodeTiles for_local_memory(std::size_t local_memory_bytes, int total_rows) {
    constexpr int kMaxRows = 32;
    const int wanted_rows = std::min(total_rows, kMaxRows);
    for (const int keys : {64, 32, 16}) {
      int rows = wanted_rows;
      while (rows > 0 && local_bytes(rows, keys) > local_memory_bytes) --rows;
      if (rows == wanted_rows || (keys == 16 && rows > 0)) return {rows, keys};
    }
    cmx::detail::fail(ErrorCode::capacity, "MLA decode needs ", local_bytes(1, 16),
                      " B of local memory per block for its smallest tile; the device has ",
                      local_memory_bytes);
  }
};

/// One work item: a tile of query rows of one request against one chunk of its keys.
struct DecodeWorkItem {
  int request = 0;
  int row_begin = 0;  ///< first query row of the tile: row = query position * h_q + head
  int num_rows = 0;
  std::int64_t key_begin = 0;  ///< the chunk: positions [key_begin, key_end) of the request
  std::int64_t key_end = 0;
  std::int64_t partial = -1;  ///< the workspace slot of its partial result; -1: not split
};

/// The rows of one request's row tile that were split: their partials, in chunk order, are
/// slots first_partial ... first_partial + num_chunks - 1.
struct DecodeMergeGroup {
  int request = 0;
  int row_begin = 0;
  int num_rows = 0;
  std::int64_t first_partial = 0;
  int num_chunks = 0;
};

/// What the decode kernels read of a plan (MlaDecodePlan::view): plain data, spans into the
/// plan, valid while it lives.
struct DecodePlanView {
  DecodeTiles tiles;
  std::span<const std::int32_t> cache_seqlens;  ///< [batch]
  std::span<const DecodeWorkItem> items;        ///< in order (request, chunk, row tile)
  /// [num_blocks + 1]: block k of the main launch computes items [block_begins[k],
  /// block_begins[k + 1]).
  std::span<const std::size_t> block_begins;
  std::span<float> partial_out;  ///< [num_partials][M][512] unnormalized output rows
  std::span<float> partial_max;  ///< [num_partials][M] their max (a base-2 exponent)
  std::span<float> partial_sum;  ///< [num_partials][M] their sum
};

/// A decode batch cut into work, and the workspace for the partial results of split requests.
/// Made once per batch (shape and cache_seqlens) and device kind; reused by every layer's
/// decode. One decode at a time per plan (the workspace is written).
class MlaDecodePlan {
 public:
  /// Plans `shape` with these cache lengths on `device` (its local memory sets the tiles, its
  /// max_blocks the number of blocks). Throws cmx::Error(invalid_argument) for a bad shape or
  /// a negative length.
  template <Device Dev>
  MlaDecodePlan(const Dev& device, const MlaDecodeShape& shape,
                std::span<const std::int32_t> cache_seqlens, const MlaDecodeOptions& options = {})
      : shape_(shape), cache_seqlens_(cache_seqlens.begin(), cache_seqlens.end()) {
    check_shape(shape, cache_seqlens, options);
    tiles_ = DecodeTiles::for_local_memory(Dev::kLocalMemoryBytes, shape.rows());
    cut(options.min_work_items);
    assign(kBlocksPerCore * std::max(1, device.max_blocks()));
  }

  const MlaDecodeShape& shape() const noexcept { return shape_; }
  const DecodeTiles& tiles() const noexcept { return tiles_; }
  /// The cache lengths the plan was made for: [batch].
  std::span<const std::int32_t> cache_seqlens() const noexcept { return cache_seqlens_; }
  /// Keys per chunk of a split request.
  std::int64_t chunk_keys() const noexcept { return chunk_keys_; }
  /// Work items in order (request, chunk, row tile).
  std::span<const DecodeWorkItem> items() const noexcept { return items_; }
  /// Row tiles whose request was split: what the merge combines.
  std::span<const DecodeMergeGroup> merge_groups() const noexcept { return merge_groups_; }
  /// Blocks of the main launch: block k computes items [block_begin(k), block_begin(k + 1)).
  int num_blocks() const noexcept { return static_cast<int>(block_begins_.size()) - 1; }
  std::size_t block_begin(int block) const noexcept {
    return block_begins_[static_cast<std::size_t>(block)];
  }

  /// Partial results: [num_partials][M][512] unnormalized output rows, and [num_partials][M]
  /// their max (base-2 exponent) and sum.
  std::span<float> partial_out() noexcept { return partial_out_; }
  std::span<float> partial_max() noexcept { return partial_max_; }
  std::span<float> partial_sum() noexcept { return partial_sum_; }

  /// The plan as the kernels read it.
  DecodePlanView view() noexcept {
    return {.tiles = tiles_,
            .cache_seqlens = cache_seqlens_,
            .items = items_,
            .block_begins = block_begins_,
            .partial_out = partial_out_,
            .partial_max = partial_max_,
            .partial_sum = partial_sum_};
  }

 private:
  static void check_shape(const MlaDecodeShape& shape, std::span<const std::int32_t> seqlens,
                          const MlaDecodeOptions& options) {
    using cmx::detail::require;
    constexpr ErrorCode kBad = ErrorCode::invalid_argument;
    require(shape.batch >= 1, kBad, "batch must be >= 1, got ", shape.batch);
    require(shape.num_queries >= 1 && shape.num_queries <= kMaxQueriesPerRequest, kBad,
            "num_queries (s_q) must be in [1, ", kMaxQueriesPerRequest, "], got ",
            shape.num_queries);
    require(shape.num_heads >= 1 && shape.num_heads <= kMaxHeads, kBad,
            "num_heads (h_q) must be in [1, ", kMaxHeads, "], got ", shape.num_heads);
    require(seqlens.size() == static_cast<std::size_t>(shape.batch), kBad, "cache_seqlens has ",
            seqlens.size(), " entries, expected batch = ", shape.batch);
    for (std::size_t b = 0; b < seqlens.size(); ++b)
      require(seqlens[b] >= 0, kBad, "request ", b, ": cache_seqlens is ", seqlens[b],
              ", must be >= 0");
    require(options.min_work_items >= 1, kBad, "min_work_items must be >= 1, got ",
            options.min_work_items);
  }

  // Steps 2 and 4: chunks, items, partial slots and merge groups.
  void cut(int min_work_items) {
    const int num_row_tiles = (shape_.rows() + tiles_.rows - 1) / tiles_.rows;
    std::int64_t total_keys = 0;
    for (const std::int32_t length : cache_seqlens_) total_keys += length;
    const std::int64_t keys_per_item =
        (total_keys * num_row_tiles + min_work_items - 1) / min_work_items;
    chunk_keys_ = round_up_to(std::max(kMinChunkKeys, keys_per_item), tiles_.keys);

    std::int64_t num_partials = 0;
    for (int b = 0; b < shape_.batch; ++b) {
      const std::int64_t length = cache_seqlens_[static_cast<std::size_t>(b)];
      const int num_chunks =
          static_cast<int>(std::max<std::int64_t>(1, (length + chunk_keys_ - 1) / chunk_keys_));
      const bool split = num_chunks > 1;
      for (int tile = 0; split && tile < num_row_tiles; ++tile)
        merge_groups_.push_back({.request = b,
                                 .row_begin = tile * tiles_.rows,
                                 .num_rows = rows_of_tile(tile),
                                 .first_partial = num_partials + tile * num_chunks,
                                 .num_chunks = num_chunks});
      for (int chunk = 0; chunk < num_chunks; ++chunk)
        for (int tile = 0; tile < num_row_tiles; ++tile)
          items_.push_back({.request = b,
                            .row_begin = tile * tiles_.rows,
                            .num_rows = rows_of_tile(tile),
                            .key_begin = chunk * chunk_keys_,
                            .key_end = std::min(length, (chunk + 1) * chunk_keys_),
                            .partial = split ? num_partials + tile * num_chunks + chunk : -1});
      if (split) num_partials += static_cast<std::int64_t>(num_row_tiles) * num_chunks;
    }
    const std::size_t slots = static_cast<std::size_t>(num_partials) * tiles_.rows;
    partial_out_.assign(slots * kLatentDim, 0.0f);
    partial_max_.assign(slots, 0.0f);
    partial_sum_.assign(slots, 0.0f);
  }

  // Step 3: contiguous runs of items of equal cost, one per block.
  void assign(int max_blocks) {
    const int num_blocks = static_cast<int>(std::min<std::size_t>(max_blocks, items_.size()));
    const auto cost = [](const DecodeWorkItem& item) {
      return static_cast<std::int64_t>(item.num_rows) *
             (item.key_end - item.key_begin + kItemOverheadKeys);
    };
    std::int64_t total_cost = 0;
    for (const DecodeWorkItem& item : items_) total_cost += cost(item);
    // An item goes to the block whose share holds the middle of its cost; a block whose share
    // holds no middle begins (and ends) where the next one does.
    block_begins_.assign(static_cast<std::size_t>(num_blocks) + 1, items_.size());
    block_begins_[0] = 0;
    std::int64_t cost_before = 0;
    int block = 0;
    for (std::size_t i = 0; i < items_.size(); ++i) {
      const std::int64_t middle = 2 * cost_before + cost(items_[i]);  // twice the middle
      while (block + 1 < num_blocks && middle >= 2 * total_cost * (block + 1) / num_blocks)
        block_begins_[static_cast<std::size_t>(++block)] = i;
      cost_before += cost(items_[i]);
    }
  }

  int rows_of_tile(int tile) const noexcept {
    return std::min(tiles_.rows, shape_.rows() - tile * tiles_.rows);
  }
  static std::int64_t round_up_to(std::int64_t value, std::int64_t multiple) noexcept {
    return (value + multiple - 1) / multiple * multiple;
  }

  MlaDecodeShape shape_;
  std::vector<std::int32_t> cache_seqlens_;  // [batch]
  DecodeTiles tiles_;
  std::int64_t chunk_keys_ = 0;
  std::vector<DecodeWorkItem> items_;
  std::vector<DecodeMergeGroup> merge_groups_;
  std::vector<std::size_t> block_begins_;  // [num_blocks + 1]
  std::vector<float> partial_out_;         // [num_partials][M][512]
  std::vector<float> partial_max_;         // [num_partials][M]
  std::vector<float> partial_sum_;         // [num_partials][M]
};

}  // namespace cmx::attention
