// SPDX-License-Identifier: Apache-2.0
// One decode step of DeepSeek's multi-head latent attention (MLA) on the TBB backend: a paged
// latent KV cache holding a few requests of different lengths, the new tokens' rows appended to
// it, decode attention over it, and a check against cmx's fp32 reference. The first thing to
// copy into an engine's attention layer.
#include <algorithm>
#include <cmath>
#include <cmx/cmx.hpp>
#include <cmx/reference/mla.hpp>
#include <cstdio>
#include <random>
#include <vector>

using cmx::bf16;
namespace attention = cmx::attention;
using Device = cmx::tbb_backend::Device;

int main() {
  // The cache: blocks of 64 tokens (FlashMLA's block size; Ascend uses 128), each token one
  // 576-wide bf16 row shared by every head: 512 latent elements (the compressed KV, which is
  // also V), then 64 RoPE key elements. The engine owns this memory and sizes it once.
  constexpr int kBlockSize = 64;
  constexpr int kNumBlocks = 40;
  std::vector<bf16> kv_cache(std::size_t{kNumBlocks} * kBlockSize * attention::kKvDim);

  // Three requests, already prefilled with 37, 300 and 1000 tokens. Each gets blocks from a
  // free list in whatever order they come (a block table maps its positions to blocks); the
  // table has room for each request to grow to 20 blocks (1280 tokens).
  constexpr int kBatch = 3;
  constexpr int kMaxBlocksPerSeq = 20;
  std::vector<std::int32_t> cache_seqlens = {37, 300, 1000};
  std::vector<std::int32_t> block_table(kBatch * kMaxBlocksPerSeq, -1);  // -1: not yet used
  std::mt19937 random(2026);
  std::vector<std::int32_t> free_blocks;
  for (int block = kNumBlocks - 1; block >= 0; --block) free_blocks.push_back(block);
  std::shuffle(free_blocks.begin(), free_blocks.end(), random);
  // Hands request b the blocks its first `tokens` positions need.
  const auto reserve = [&](int b, int tokens) {
    for (int column = 0; column * kBlockSize < tokens; ++column)
      if (block_table[b * kMaxBlocksPerSeq + column] < 0) {
        block_table[b * kMaxBlocksPerSeq + column] = free_blocks.back();
        free_blocks.pop_back();
      }
  };

  // The prefill's rows. In an engine they come from the prefill's MLA down-projection; here,
  // random, written straight into each request's blocks.
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int b = 0; b < kBatch; ++b) {
    reserve(b, cache_seqlens[b]);
    for (int t = 0; t < cache_seqlens[b]; ++t) {
      const int block = block_table[b * kMaxBlocksPerSeq + t / kBlockSize];
      bf16* row = &kv_cache[(static_cast<std::size_t>(block) * kBlockSize + t % kBlockSize) *
                            attention::kKvDim];
      for (int c = 0; c < attention::kKvDim; ++c) row[c] = bf16::from_float(normal(random));
    }
  }

  // One decode step with multi-token prediction: s_q = 2 new tokens per request, 16 heads (a
  // tensor-parallel slice of DeepSeek-V3's 128).
  const attention::MlaDecodeShape shape{.batch = kBatch, .num_queries = 2, .num_heads = 16};
  // The new tokens' compressed KV (after its RMSNorm) and RoPE key (after the rotation):
  // [batch][s_q][512] and [batch][s_q][64].
  std::vector<bf16> latent(kBatch * shape.num_queries * attention::kLatentDim);
  std::vector<bf16> rope(kBatch * shape.num_queries * attention::kRopeDim);
  for (bf16& value : latent) value = bf16::from_float(normal(random));
  for (bf16& value : rope) value = bf16::from_float(normal(random));
  // The absorbed queries (q_nope times W_UK, then q_pe): [batch][s_q][h_q][576].
  std::vector<bf16> q(kBatch * shape.rows() * attention::kKvDim);
  for (bf16& value : q) value = bf16::from_float(normal(random));
  // Outputs: [batch][s_q][h_q][512] (still to be multiplied by W_UV) and [batch][h_q][s_q].
  std::vector<bf16> o(kBatch * shape.rows() * attention::kLatentDim);
  std::vector<float> lse(kBatch * shape.rows());

  for (int b = 0; b < kBatch; ++b) reserve(b, cache_seqlens[b] + shape.num_queries);
  // Decode's arguments: views of the arrays above (cache_seqlens as it will be after the write).
  const attention::MlaDecodeArgs args{
      .shape = shape,
      .q = q,
      .kv_cache = kv_cache,
      .block_size = kBlockSize,
      .block_table = block_table,
      .max_blocks_per_seq = kMaxBlocksPerSeq,
      .cache_seqlens = cache_seqlens,
      .softmax_scale = 1.0f / std::sqrt(192.0f),  // DeepSeek-V3: (128 + 64)^-1/2
      .masking = attention::Masking::causal,
      .o = o,
      .lse = lse};

  cmx::tbb_backend::World world({.num_ranks = 1});  // one rank; its blocks on every core
  world.run([&](Device device) {
    // 1. The cache write: the new rows land at positions cache_seqlens[b] .. + s_q - 1.
    attention::append_kv(device, {.latent = latent,
                                  .rope = rope,
                                  .batch = kBatch,
                                  .num_new = shape.num_queries,
                                  .kv_cache = kv_cache,
                                  .block_size = kBlockSize,
                                  .block_table = block_table,
                                  .max_blocks_per_seq = kMaxBlocksPerSeq,
                                  .cache_seqlens = cache_seqlens});
    for (std::int32_t& length : cache_seqlens) length += shape.num_queries;

    // 2. The plan: how the batch is cut into work (FlashMLA's get_mla_metadata). Made once per
    //    decode step, reused by every layer: the lengths are the same in all of them.
    attention::MlaDecodePlan plan(device, shape, cache_seqlens);

    // 3. Decode attention, per layer. The last s_q cached tokens are this step's: query
    //    position i sees the cache up to and including its own token (causal).
    attention::mla_decode(device, plan, args);
  });

  // Check against the fp32 reference, within mla_decode's documented tolerance:
  // |o - o_ref| <= 2^-8 (|o_ref| + sum_j p_j |v_j|), |lse - lse_ref| <= 2^-10.
  const cmx::reference::MlaDecodeResult expected = cmx::reference::mla_decode(args);
  int outside = 0;
  for (std::size_t i = 0; i < o.size(); ++i)
    outside += !(std::abs(o[i].to_float() - expected.o[i]) <=
                 0x1p-8f * (std::abs(expected.o[i]) + expected.weighted_abs_v[i]));
  for (std::size_t i = 0; i < lse.size(); ++i)
    outside += !(std::abs(lse[i] - expected.lse[i]) <= 0x1p-10f);
  std::printf("mla_decode: %d requests of %d, %d and %d tokens, s_q %d, h_q %d: %s\n", kBatch,
              cache_seqlens[0], cache_seqlens[1], cache_seqlens[2], shape.num_queries,
              shape.num_heads,
              outside == 0 ? "o and lse match the reference within tolerance" : "MISMATCH");
  return outside == 0 ? 0 : 1;
}
