// SPDX-License-Identifier: Apache-2.0
// The paged latent KV cache of DeepSeek's multi-head latent attention: its row format and the
// one place that maps a request's token position to its cached row.
//
// The cache is memory the engine owns, laid out as FlashMLA and CANN lay it out:
//
//   kv_cache     [num_blocks][block_size][576] bf16   a row per token: 512 latent (the
//                                                     compressed KV, also V), then 64 RoPE key
//   block_table  [batch][max_blocks_per_seq] int32    request b's token at position t lives in
//                                                     block block_table[b][t / block_size],
//                                                     slot t % block_size
//   cache_seqlens [batch] int32                       tokens cached per request
//
// Blocks may be shared between requests (a common prefix) and appear in any order; the columns
// of the block table past a request's length are never read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "cmx/core/bf16.hpp"
#include "cmx/core/error.hpp"

namespace cmx::attention {

/// Elements of the latent part of a cached row: the compressed KV, which is also V (dv).
inline constexpr int kLatentDim = 512;
/// Elements of the RoPE part of a cached row (the decoupled key).
inline constexpr int kRopeDim = 64;
/// Elements of a cached row and of a query row (d): latent, then RoPE.
inline constexpr int kKvDim = kLatentDim + kRopeDim;

/// A paged cache's geometry and a block table, validated once: maps (request, position) to a
/// cached row. Holds views; the arrays must outlive it.
class PagedKvLayout {
 public:
  /// Throws cmx::Error(invalid_argument) unless the cache holds whole blocks of block_size
  /// rows and the block table is [batch][max_blocks_per_seq]. The table's entries are checked
  /// per request, by check_request.
  PagedKvLayout(std::size_t cache_elements, int block_size,
                std::span<const std::int32_t> block_table, int batch, int max_blocks_per_seq)
      : block_table_(block_table),
        block_size_(block_size),
        max_blocks_per_seq_(max_blocks_per_seq) {
    using cmx::detail::require;
    constexpr ErrorCode kBad = ErrorCode::invalid_argument;
    require(block_size >= 1, kBad, "block_size must be >= 1, got ", block_size);
    const std::size_t block_elements = static_cast<std::size_t>(block_size) * kKvDim;
    require(cache_elements % block_elements == 0, kBad, "kv_cache has ", cache_elements,
            " elements, not a whole number of blocks of block_size * 576 = ", block_elements);
    num_blocks_ = static_cast<std::int64_t>(cache_elements / block_elements);
    require(batch >= 1, kBad, "batch must be >= 1, got ", batch);
    require(max_blocks_per_seq >= 1, kBad, "max_blocks_per_seq must be >= 1, got ",
            max_blocks_per_seq);
    require(block_table.size() ==
                static_cast<std::size_t>(batch) * static_cast<std::size_t>(max_blocks_per_seq),
            kBad, "block_table has ", block_table.size(),
            " entries, expected batch * max_blocks_per_seq = ", batch, " * ", max_blocks_per_seq);
  }

  std::int64_t num_blocks() const noexcept { return num_blocks_; }
  int block_size() const noexcept { return block_size_; }
  /// Tokens one request can hold: max_blocks_per_seq * block_size.
  std::int64_t capacity() const noexcept {
    return static_cast<std::int64_t>(max_blocks_per_seq_) * block_size_;
  }

  /// Checks that request `request`'s positions [0, num_tokens) fit its block table
  /// (cmx::Error(capacity) if not) and lie in blocks of the cache (invalid_argument if not).
  /// `what` names the caller's argument in the message, e.g. "cache_seqlens".
  void check_request(int request, std::int64_t num_tokens, const char* what) const {
    using cmx::detail::require;
    require(num_tokens >= 0, ErrorCode::invalid_argument, "request ", request, ": ", what, " is ",
            num_tokens, ", must be >= 0");
    require(num_tokens <= capacity(), ErrorCode::capacity, "request ", request, ": ", what,
            " needs ", num_tokens, " tokens, but its ", max_blocks_per_seq_,
            " block-table columns of ", block_size_, " tokens hold ", capacity());
    const std::int64_t num_used_blocks = (num_tokens + block_size_ - 1) / block_size_;
    for (std::int64_t column = 0; column < num_used_blocks; ++column) {
      const std::int32_t block = block_of(request, column);
      require(block >= 0 && block < num_blocks_, ErrorCode::invalid_argument, "request ", request,
              ": block_table[", request, "][", column, "] = ", block, " is outside the cache's ",
              num_blocks_, " blocks");
    }
  }

  /// The cache block of request `request`'s block-table column `column`.
  std::int32_t block_of(int request, std::int64_t column) const noexcept {
    return block_table_[static_cast<std::size_t>(request) *
                            static_cast<std::size_t>(max_blocks_per_seq_) +
                        static_cast<std::size_t>(column)];
  }

  /// Element offset in the cache of request `request`'s row at `position` (checked by
  /// check_request).
  std::size_t row_offset(int request, std::int64_t position) const noexcept {
    const std::int64_t block = block_of(request, position / block_size_);
    return (static_cast<std::size_t>(block) * static_cast<std::size_t>(block_size_) +
            static_cast<std::size_t>(position % block_size_)) *
           kKvDim;
  }

  /// Positions from `position` to the end of its block: rows contiguous in the cache.
  std::int64_t rows_left_in_block(std::int64_t position) const noexcept {
    return block_size_ - position % block_size_;
  }

 private:
  std::span<const std::int32_t> block_table_;  // [batch][max_blocks_per_seq]
  std::int64_t num_blocks_ = 0;
  int block_size_;
  int max_blocks_per_seq_;
};

}  // namespace cmx::attention
