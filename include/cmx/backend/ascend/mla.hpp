// SPDX-License-Identifier: Apache-2.0
// cmx's MLA decode on Ascend (cmx::attention::mla_decode), through CANN's
// aclnnFusedInferAttentionScoreV4 in its MLA form (query d = 512 with a separate RoPE part of
// d = 64, one KV head, a paged cache). The README's "GEMM and MLA on Ascend" table maps every
// tensor.
//
// cmx's paged cache interleaves each token's 512 latent and 64 RoPE elements in one 576-wide
// row ([num_blocks][block_size][576] bf16, attention/kv_cache.hpp). The operator takes them as
// two contiguous tensors, key/value [num_blocks][block_size][512] (the layout its page calls
// BnBsH, with H = KV_N * D = 512) and keyRope [num_blocks][block_size][64]. So on Ascend the
// cache is kept split (MlaDeviceCache); split_kv_cache converts an interleaved cache once, and
// mla_decode splits the (small) queries per call. The latent part is both key and value, as in
// cmx (V is the first 512 elements of K).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "cmx/attention/decode_plan.hpp"
#include "cmx/attention/kv_cache.hpp"
#include "cmx/attention/mla_decode.hpp"
#include "cmx/backend/ascend/aclnn_host.hpp"
#include "cmx/core/bf16.hpp"
#include "cmx/core/error.hpp"

namespace cmx::ascend {

/// Side of the optimized causal mask of the operator's sparseMode 3 (its documented shape is
/// [2048, 2048]).
inline constexpr std::int64_t kCausalMaskSide = 2048;

/// A paged MLA cache on the device, split as the operator takes it.
struct MlaDeviceCache {
  void* latent = nullptr;  ///< device [num_blocks][block_size][512] bf16: key and value
  void* rope = nullptr;    ///< device [num_blocks][block_size][64] bf16: keyRope
  int num_blocks = 0;      ///< >= 1
  int block_size = 0;      ///< tokens per block: a multiple of 16, <= 1024 (the operator's rule)
};

/// Splits cmx's interleaved cache `kv_cache` (device [num_blocks][block_size][576] bf16, the
/// geometry of `cache`) into cache.latent and cache.rope: one device-to-device aclrtMemcpy per
/// cached row and part. A conversion done once (or kept up to date by writing new tokens to
/// both parts), not per decode call.
///
/// Errors: cmx::Error(invalid_argument) for null pointers or a non-positive geometry;
/// cmx::Error(transport) if a copy fails.
inline void split_kv_cache(const void* kv_cache, const MlaDeviceCache& cache) {
  using attention::kKvDim;
  using attention::kLatentDim;
  using attention::kRopeDim;
  constexpr const char* kWhat = "cmx::ascend::split_kv_cache";
  cmx::detail::require(kv_cache != nullptr && cache.latent != nullptr && cache.rope != nullptr &&
                           cache.num_blocks >= 1 && cache.block_size >= 1,
                       ErrorCode::invalid_argument, kWhat,
                       ": null pointers or a geometry of no block");
  const std::size_t rows =
      static_cast<std::size_t>(cache.num_blocks) * static_cast<std::size_t>(cache.block_size);
  const auto* source = static_cast<const std::byte*>(kv_cache);
  for (std::size_t row = 0; row < rows; ++row) {
    detail::copy_device(static_cast<std::byte*>(cache.latent) + row * kLatentDim * sizeof(bf16),
                        source + row * kKvDim * sizeof(bf16), kLatentDim * sizeof(bf16), kWhat);
    detail::copy_device(static_cast<std::byte*>(cache.rope) + row * kRopeDim * sizeof(bf16),
                        source + (row * kKvDim + kLatentDim) * sizeof(bf16),
                        kRopeDim * sizeof(bf16), kWhat);
  }
}

/// The inputs and outputs of one MLA decode on the device (cmx::attention::MlaDecodeArgs).
struct MlaDecodeArgs {
  attention::MlaDecodeShape shape;    ///< B, s_q, h_q (h_q a power of two <= 128, the operator's)
  const void* q = nullptr;            ///< device [B][s_q][h_q][576] bf16: latent, then RoPE
  MlaDeviceCache cache;               ///< the split paged cache
  const void* block_table = nullptr;  ///< device [B][max_blocks_per_seq] int32
  int max_blocks_per_seq = 0;         ///< columns of the block table
  /// host [B]: cached tokens per request, the s_q new ones included; >= s_q (causal) or >= 1
  std::span<const std::int32_t> cache_seqlens;
  float softmax_scale = 0;  ///< multiplies q.k; positive and finite
  attention::Masking masking = attention::Masking::causal;
  void* o = nullptr;    ///< device [B][s_q][h_q][512] bf16 out
  void* lse = nullptr;  ///< device [B][h_q][s_q] float out: natural log of each softmax sum
};

/// MLA decode by aclnnFusedInferAttentionScoreV4:
///   1. q is split into query [B, s_q, h_q, 512] and queryRope [B, s_q, h_q, 64] (contiguous
///      device copies, one aclrtMemcpy per row and part: the operator's query is contiguous);
///   2. key = value = {cache.latent as [num_blocks, block_size, 512]}, keyRope = cache.rope
///      [num_blocks, block_size, 64], blockTable = block_table [B, max_blocks_per_seq] int32,
///      actualSeqLengthsKv = cache_seqlens (a host int64 array), blockSize = cache.block_size;
///   3. inputLayout "BSND", numHeads h_q, numKeyValueHeads 1, scaleValue softmax_scale,
///      preTokens = nextTokens = 2147483647, innerPrecise 0; masking: s_q = 1 or
///      Masking::none -> sparseMode 0 without mask; causal with s_q > 1 -> sparseMode 3
///      (rightDownCausal, the same rule as cmx's: query i sees keys < L - (s_q - 1 - i)) with
///      the optimized [2048, 2048] int8 mask (1 above the diagonal), built on the device per
///      call (4 MiB; an engine would keep one);
///   4. attentionOut = o [B, s_q, h_q, 512] bf16 and softmaxLse = lse [B, h_q, s_q, 1] float,
///      softmaxLseFlag true: both in place, cmx's layouts are the operator's.
///
/// Errors (before anything is called): cmx::Error(invalid_argument) for a shape the operator
/// does not take (h_q not a power of two <= 128, block_size not a multiple of 16 or > 1024),
/// s_q > 2048 with causal masking, a request whose rows would see no key (cache_seqlens < s_q
/// when causal, < 1 otherwise: cmx gives such rows o = 0 and lse = -inf, the operator's
/// handling of them is not specified numerically), null pointers, sizes that do not match; an
/// ACLNN_ERR_PARAM_* status from the operator. cmx::Error(transport) for any other failure.
inline void mla_decode(const MlaDecodeArgs& args, aclrtStream stream) {
  using attention::kKvDim;
  using attention::kLatentDim;
  using attention::kRopeDim;
  using cmx::detail::require;
  constexpr ErrorCode kBad = ErrorCode::invalid_argument;
  constexpr const char* kWhat = "cmx::ascend::mla_decode";
  const attention::MlaDecodeShape& shape = args.shape;
  const int heads = shape.num_heads;
  require(shape.batch >= 1 && shape.num_queries >= 1 && heads >= 1 && heads <= 128 &&
              (heads & (heads - 1)) == 0,
          kBad, kWhat, ": batch ", shape.batch, ", s_q ", shape.num_queries, ", h_q ", heads,
          "; the operator takes batch >= 1, s_q >= 1, h_q in {1, 2, 4, ..., 128}");
  require(args.cache.block_size >= 16 && args.cache.block_size % 16 == 0 &&
              args.cache.block_size <= 1024 && args.cache.num_blocks >= 1,
          kBad, kWhat, ": block_size ", args.cache.block_size,
          " (the operator takes multiples of 16 up to 1024) or no cache block");
  require(args.q != nullptr && args.cache.latent != nullptr && args.cache.rope != nullptr &&
              args.block_table != nullptr && args.o != nullptr && args.lse != nullptr,
          kBad, kWhat, ": a null device pointer");
  require(args.max_blocks_per_seq >= 1, kBad, kWhat, ": max_blocks_per_seq ",
          args.max_blocks_per_seq, " < 1");
  require(std::isfinite(args.softmax_scale) && args.softmax_scale > 0, kBad, kWhat,
          ": softmax_scale must be positive and finite, got ", args.softmax_scale);
  require(args.cache_seqlens.size() == static_cast<std::size_t>(shape.batch), kBad, kWhat,
          ": cache_seqlens has ", args.cache_seqlens.size(),
          " entries, expected batch = ", shape.batch);
  const bool causal = args.masking == attention::Masking::causal && shape.num_queries > 1;
  require(!causal || shape.num_queries <= 2048, kBad, kWhat, ": s_q ", shape.num_queries,
          " exceeds the 2048 of the operator's causal mask");
  const std::int64_t capacity =
      std::int64_t{args.max_blocks_per_seq} * std::int64_t{args.cache.block_size};
  std::vector<std::int64_t> lengths(args.cache_seqlens.begin(), args.cache_seqlens.end());
  for (int b = 0; b < shape.batch; ++b) {
    const std::int64_t length = lengths[static_cast<std::size_t>(b)];
    const std::int64_t least = args.masking == attention::Masking::causal ? shape.num_queries : 1;
    require(length >= least && length <= capacity, kBad, kWhat, ": request ", b, " caches ", length,
            " tokens; need ", least, " (every query row sees a key) to ", capacity,
            " (its block table)");
  }

  // 1. The query split.
  const std::int64_t batch = shape.batch, seq = shape.num_queries, h = heads;
  const std::size_t rows = static_cast<std::size_t>(batch * seq * h);
  detail::DeviceBuffer query(rows * kLatentDim * sizeof(bf16), kWhat);     // [B, S, N, 512]
  detail::DeviceBuffer query_rope(rows * kRopeDim * sizeof(bf16), kWhat);  // [B, S, N, 64]
  const auto* q = static_cast<const std::byte*>(args.q);
  for (std::size_t row = 0; row < rows; ++row) {
    detail::copy_device(static_cast<std::byte*>(query.get()) + row * kLatentDim * sizeof(bf16),
                        q + row * kKvDim * sizeof(bf16), kLatentDim * sizeof(bf16), kWhat);
    detail::copy_device(static_cast<std::byte*>(query_rope.get()) + row * kRopeDim * sizeof(bf16),
                        q + (row * kKvDim + kLatentDim) * sizeof(bf16), kRopeDim * sizeof(bf16),
                        kWhat);
  }
  std::optional<detail::DeviceBuffer> mask;  // [2048, 2048] int8, only when causal
  if (causal) {
    constexpr auto kSide = static_cast<std::size_t>(kCausalMaskSide);
    std::vector<std::int8_t> host(kSide * kSide);  // [2048][2048]: 1 above the diagonal
    for (std::size_t i = 0; i < kSide; ++i)
      for (std::size_t j = 0; j < kSide; ++j) host[i * kSide + j] = j > i ? 1 : 0;
    mask.emplace(host.size(), kWhat);
    detail::copy_to_device(mask->get(), host.data(), host.size(), kWhat);
  }

  // 2-4. The operator.
  const std::int64_t num_blocks = args.cache.num_blocks, block_size = args.cache.block_size;
  const detail::Tensor query_tensor =
      detail::make_tensor(query.get(), ACL_BF16, {batch, seq, h, kLatentDim}, kWhat);
  const detail::Tensor query_rope_tensor =
      detail::make_tensor(query_rope.get(), ACL_BF16, {batch, seq, h, kRopeDim}, kWhat);
  const detail::TensorList key = detail::make_list(
      {detail::make_tensor(args.cache.latent, ACL_BF16, {num_blocks, block_size, kLatentDim}, kWhat)
           .release()},
      kWhat);
  const detail::TensorList value = detail::make_list(
      {detail::make_tensor(args.cache.latent, ACL_BF16, {num_blocks, block_size, kLatentDim}, kWhat)
           .release()},
      kWhat);
  const detail::Tensor key_rope =
      detail::make_tensor(args.cache.rope, ACL_BF16, {num_blocks, block_size, kRopeDim}, kWhat);
  const detail::Tensor block_table = detail::make_tensor(
      args.block_table, ACL_INT32, {batch, std::int64_t{args.max_blocks_per_seq}}, kWhat);
  const detail::Tensor out =
      detail::make_tensor(args.o, ACL_BF16, {batch, seq, h, kLatentDim}, kWhat);
  const detail::Tensor lse = detail::make_tensor(args.lse, ACL_FLOAT, {batch, h, seq, 1}, kWhat);
  detail::Tensor mask_tensor;
  if (causal)
    mask_tensor =
        detail::make_tensor(mask->get(), ACL_INT8, {kCausalMaskSide, kCausalMaskSide}, kWhat);
  const detail::IntArray seq_lengths_kv(aclCreateIntArray(lengths.data(), lengths.size()));
  require(seq_lengths_kv != nullptr, ErrorCode::transport, kWhat,
          ": aclCreateIntArray returned null");
  char layout[] = "BSND";
  std::uint64_t workspace_size = 0;
  aclOpExecutor* executor = nullptr;
  detail::check_aclnn(
      aclnnFusedInferAttentionScoreV4GetWorkspaceSize(
          query_tensor.get(), key.get(), value.get(), nullptr, mask_tensor.get(), nullptr,
          seq_lengths_kv.get(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
          block_table.get(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
          nullptr, query_rope_tensor.get(), key_rope.get(), nullptr, nullptr, nullptr,
          /*numHeads=*/h, /*scaleValue=*/args.softmax_scale, /*preTokens=*/2147483647,
          /*nextTokens=*/2147483647, layout, /*numKeyValueHeads=*/1,
          /*sparseMode=*/causal ? 3 : 0, /*innerPrecise=*/0, /*blockSize=*/block_size,
          /*antiquantMode=*/0, /*softmaxLseFlag=*/true, /*keyAntiquantMode=*/0,
          /*valueAntiquantMode=*/0, /*queryQuantMode=*/0, out.get(), lse.get(), &workspace_size,
          &executor),
      "aclnnFusedInferAttentionScoreV4GetWorkspaceSize", kWhat);
  detail::run_operator(workspace_size, executor, stream, aclnnFusedInferAttentionScoreV4,
                       "aclnnFusedInferAttentionScoreV4", kWhat);
}

}  // namespace cmx::ascend
