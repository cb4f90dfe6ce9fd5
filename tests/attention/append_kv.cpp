// SPDX-License-Identifier: Apache-2.0
// The cache write: rows land at their paged positions and nowhere else; bad inputs are clear
// errors raised before anything is written.
#include <doctest/doctest.h>

#include <vector>

#include "mla_harness.hpp"

namespace {

namespace attention = cmx::attention;
using attention::kKvDim;
using cmx::bf16;

struct AppendFixture {
  int batch = 3, num_new = 2, block_size = 4, max_blocks_per_seq = 3, num_blocks = 9;
  std::vector<bf16> latent, rope, cache;
  std::vector<std::int32_t> block_table = {5, 0, -1, 2, 7, 3, 8, -1, -1};  // shuffled
  std::vector<std::int32_t> seqlens = {3, 8, 0};

  AppendFixture() {
    for (int i = 0; i < batch * num_new * attention::kLatentDim; ++i)
      latent.push_back(bf16::from_float(static_cast<float>(i % 251)));
    for (int i = 0; i < batch * num_new * attention::kRopeDim; ++i)
      rope.push_back(bf16::from_float(-static_cast<float>(i % 241)));
    cache.assign(static_cast<std::size_t>(num_blocks) * block_size * kKvDim,
                 bf16::from_float(7.0f));
  }
  attention::AppendKvArgs args() {
    return {.latent = latent,
            .rope = rope,
            .batch = batch,
            .num_new = num_new,
            .kv_cache = cache,
            .block_size = block_size,
            .block_table = block_table,
            .max_blocks_per_seq = max_blocks_per_seq,
            .cache_seqlens = seqlens};
  }
  void append() {
    cmx::tbb_backend::World world({.num_ranks = 1, .blocks_per_rank = 2});
    world.run([&](cmx::tbb_backend::Device device) { attention::append_kv(device, args()); });
  }
};

TEST_CASE("append_kv writes each new row at its paged position, latent then RoPE") {
  AppendFixture f;
  const std::vector<bf16> before = f.cache;
  f.append();
  std::vector<bool> written(f.cache.size() / kKvDim, false);
  for (int b = 0; b < f.batch; ++b)
    for (int t = 0; t < f.num_new; ++t) {
      const int position = f.seqlens[static_cast<std::size_t>(b)] + t;
      const int block = f.block_table[static_cast<std::size_t>(b * f.max_blocks_per_seq +
                                                               position / f.block_size)];
      const std::size_t cached_row =
          static_cast<std::size_t>(block * f.block_size + position % f.block_size);
      written[cached_row] = true;
      const std::size_t new_row = static_cast<std::size_t>(b * f.num_new + t);
      for (int c = 0; c < kKvDim; ++c) {
        const bf16 expected =
            c < attention::kLatentDim
                ? f.latent[new_row * attention::kLatentDim + c]
                : f.rope[new_row * attention::kRopeDim + c - attention::kLatentDim];
        REQUIRE_MESSAGE(f.cache[cached_row * kKvDim + c] == expected, "request ", b, " token ", t,
                        " element ", c);
      }
    }
  for (std::size_t row = 0; row < written.size(); ++row)
    if (!written[row])
      for (int c = 0; c < kKvDim; ++c)
        REQUIRE_MESSAGE(f.cache[row * kKvDim + c] == before[row * kKvDim + c], "row ", row,
                        " was not to be written");
}

void check_rejected(AppendFixture& f, cmx::ErrorCode code, const char* needle) {
  const std::vector<bf16> before = f.cache;
  try {
    f.append();
    FAIL("append_kv accepted a bad input (expected: ", needle, ")");
  } catch (const cmx::Error& error) {
    CHECK(error.code() == code);
    CHECK_MESSAGE(std::string(error.what()).find(needle) != std::string::npos, error.what());
  }
  CHECK(f.cache == before);
}

TEST_CASE("append_kv rejects bad inputs before writing anything") {
  SUBCASE("a request past its block table") {
    AppendFixture f;
    f.seqlens[1] = 11;
    check_rejected(f, cmx::ErrorCode::capacity, "block-table columns");
  }
  SUBCASE("a block index outside the cache") {
    AppendFixture f;
    f.block_table[6] = 9;
    check_rejected(f, cmx::ErrorCode::invalid_argument, "outside the cache");
  }
  SUBCASE("two requests writing one cached row") {
    AppendFixture f;
    f.block_table[6] = 5;  // request 2's first block is request 0's
    f.block_table[7] = 4;
    f.seqlens[2] = 3;
    check_rejected(f, cmx::ErrorCode::invalid_argument, "both write");
  }
  SUBCASE("wrong sizes") {
    AppendFixture f;
    f.rope.pop_back();
    check_rejected(f, cmx::ErrorCode::invalid_argument, "rope has");
  }
  SUBCASE("a cache that is not whole blocks") {
    AppendFixture f;
    f.cache.resize(f.cache.size() - kKvDim);
    check_rejected(f, cmx::ErrorCode::invalid_argument, "whole number of blocks");
  }
  SUBCASE("a negative length") {
    AppendFixture f;
    f.seqlens[0] = -3;
    check_rejected(f, cmx::ErrorCode::invalid_argument, "must be >= 0");
  }
}

}  // namespace
