// SPDX-License-Identifier: Apache-2.0
// The cache write: appends new tokens' latent and RoPE rows to a paged latent KV cache.
//
//   1. Check everything before writing anything: the shapes, every request's block table over
//      the positions it will hold (cmx::Error(capacity) past its last column), and that no two
//      new rows land on one cached row (requests sharing a block they both write to).
//   2. Write, in blocks over the new rows: request b's row t goes to position
//      cache_seqlens[b] + t, its 512 latent elements then its 64 RoPE elements.
//
// The caller then adds num_new to each cache_seqlens: decode reads the new rows as the last
// num_new tokens of each request (the s_q positions of multi-token prediction).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "cmx/attention/kv_cache.hpp"
#include "cmx/core/bf16.hpp"
#include "cmx/core/error.hpp"
#include "cmx/device/device.hpp"

namespace cmx::attention {

/// The inputs of one cache write.
struct AppendKvArgs {
  std::span<const bf16> latent;  ///< [batch][num_new][512] the new tokens' compressed KV
  std::span<const bf16> rope;    ///< [batch][num_new][64] their RoPE keys, already rotated
  int batch = 0;                 ///< requests, >= 1
  int num_new = 0;               ///< new tokens per request, >= 1
  std::span<bf16> kv_cache;      ///< [num_blocks][block_size][576], written
  int block_size = 0;            ///< tokens per cache block (64 as FlashMLA, 128 as Ascend)
  std::span<const std::int32_t> block_table;    ///< [batch][max_blocks_per_seq]
  int max_blocks_per_seq = 0;                   ///< columns of the block table
  std::span<const std::int32_t> cache_seqlens;  ///< [batch] tokens cached before this call
};

namespace detail {

/// Throws cmx::Error unless `args` can be written as a whole; returns the cache layout.
inline PagedKvLayout check_append_args(const AppendKvArgs& args) {
  using cmx::detail::require;
  constexpr ErrorCode kBad = ErrorCode::invalid_argument;
  const PagedKvLayout layout(args.kv_cache.size(), args.block_size, args.block_table, args.batch,
                             args.max_blocks_per_seq);
  require(args.num_new >= 1, kBad, "num_new must be >= 1, got ", args.num_new);
  const std::size_t num_rows =
      static_cast<std::size_t>(args.batch) * static_cast<std::size_t>(args.num_new);
  require(args.latent.size() == num_rows * kLatentDim, kBad, "latent has ", args.latent.size(),
          " elements, expected batch * num_new * 512 = ", num_rows * kLatentDim);
  require(args.rope.size() == num_rows * kRopeDim, kBad, "rope has ", args.rope.size(),
          " elements, expected batch * num_new * 64 = ", num_rows * kRopeDim);
  require(args.cache_seqlens.size() == static_cast<std::size_t>(args.batch), kBad,
          "cache_seqlens has ", args.cache_seqlens.size(),
          " entries, expected batch = ", args.batch);
  // (cached row, request) of every new row: one writer per cached row.
  std::vector<std::pair<std::size_t, int>> targets;
  targets.reserve(num_rows);
  for (int b = 0; b < args.batch; ++b) {
    const std::int64_t cached = args.cache_seqlens[static_cast<std::size_t>(b)];
    layout.check_request(b, cached + args.num_new, "cache_seqlens + num_new");
    for (int t = 0; t < args.num_new; ++t)
      targets.emplace_back(layout.row_offset(b, cached + t), b);
  }
  std::sort(targets.begin(), targets.end());
  const auto twice = std::adjacent_find(targets.begin(), targets.end(),
                                        [](auto& a, auto& b) { return a.first == b.first; });
  if (twice != targets.end())
    cmx::detail::fail(kBad, "requests ", twice->second, " and ", (twice + 1)->second,
                      " would both write cache row ", twice->first / kKvDim,
                      " (block * block_size + slot): a block shared by requests is read-only");
  return layout;
}

/// The block kernel of append_kv (step 2): the `num_rows` new rows, split evenly among the
/// blocks; row r is request r / num_new's new position r % num_new.
template <Device Dev>
struct AppendRows {
  Dev device;
  AppendKvArgs args;
  PagedKvLayout layout;
  std::int64_t num_rows;

  void operator()(Block& block) {
    const std::int64_t begin = num_rows * block.index / block.count;
    const std::int64_t end = num_rows * (block.index + 1) / block.count;
    for (std::int64_t row = begin; row < end; ++row) {
      const int request = static_cast<int>(row / args.num_new);
      const std::int64_t position =
          args.cache_seqlens[static_cast<std::size_t>(request)] + row % args.num_new;
      bf16* cached = args.kv_cache.data() + layout.row_offset(request, position);  // [576]
      block.local.reset();
      const std::span<const bf16> latent = device.stage_in(
          block.local, args.latent.data() + static_cast<std::size_t>(row) * kLatentDim,
          kLatentDim);  // [512]
      const std::span<const bf16> rope =
          device.stage_in(block.local, args.rope.data() + static_cast<std::size_t>(row) * kRopeDim,
                          kRopeDim);  // [64]
      device.store(cached, latent);
      device.store(cached + kLatentDim, rope);
    }
  }
};

}  // namespace detail

/// Appends every request's num_new rows to the cache, at positions cache_seqlens[b] ...
/// cache_seqlens[b] + num_new - 1. Writes only those rows of kv_cache.
///
/// Errors (cmx::Error), raised before anything is written: invalid_argument (sizes, a block
/// index outside the cache, two rows aimed at one cached row), capacity (a request's block
/// table too short for its new length).
template <Device Dev>
void append_kv(Dev& device, const AppendKvArgs& args) {
  // 1. Check.
  const PagedKvLayout layout = detail::check_append_args(args);

  // 2. Write, the rows split evenly among blocks.
  const std::int64_t num_rows = static_cast<std::int64_t>(args.batch) * args.num_new;
  const int num_blocks = static_cast<int>(std::min<std::int64_t>(device.max_blocks(), num_rows));
  detail::AppendRows<Dev> append_rows{
      .device = device, .args = args, .layout = layout, .num_rows = num_rows};
  device.launch(num_blocks, append_rows);
}

}  // namespace cmx::attention
