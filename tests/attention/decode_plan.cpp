// SPDX-License-Identifier: Apache-2.0
// MlaDecodePlan: the chunks cover every key once, do not depend on the block count, split
// small batches of long sequences and not big batches; blocks get equal shares.
#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "mla_harness.hpp"

namespace {

namespace attention = cmx::attention;
using attention::MlaDecodePlan;
using attention::MlaDecodeShape;

/// Runs body(device) on one rank of a world with `blocks` blocks.
template <class Body>
void on_device(int blocks, Body&& body) {
  cmx::tbb_backend::World world({.num_ranks = 1, .blocks_per_rank = blocks});
  world.run([&](cmx::tbb_backend::Device device) { body(device); });
}

std::int64_t cost(const attention::DecodeWorkItem& item) {
  return static_cast<std::int64_t>(item.num_rows) *
         (item.key_end - item.key_begin + attention::kItemOverheadKeys);
}

bool same_items(const MlaDecodePlan& a, const MlaDecodePlan& b) {
  return std::equal(a.items().begin(), a.items().end(), b.items().begin(), b.items().end(),
                    [](const auto& x, const auto& y) {
                      return x.request == y.request && x.row_begin == y.row_begin &&
                             x.num_rows == y.num_rows && x.key_begin == y.key_begin &&
                             x.key_end == y.key_end && x.partial == y.partial;
                    });
}

TEST_CASE("the tiles fill the TBB device's local memory: 32 rows by 64 keys") {
  on_device(1, [](auto device) {
    const MlaDecodePlan plan(device, {.batch = 1, .num_queries = 2, .num_heads = 128},
                             std::vector<std::int32_t>{10});
    CHECK(plan.tiles().rows == 32);
    CHECK(plan.tiles().keys == 64);
    CHECK(attention::DecodeTiles::local_bytes(32, 64) <=
          cmx::tbb_backend::Device::kLocalMemoryBytes);
  });
  const auto small = attention::DecodeTiles::for_local_memory(64 * 1024, 256);
  CHECK(small.rows >= 1);
  CHECK(attention::DecodeTiles::local_bytes(small.rows, small.keys) <= 64 * 1024);
  CHECK_THROWS_AS(attention::DecodeTiles::for_local_memory(4096, 16), cmx::Error);
}

TEST_CASE("every key of every request is in exactly one chunk per row tile, chunks in order") {
  const std::vector<std::int32_t> lengths = {0, 1, 255, 256, 257, 5000, 16384};
  for (const int heads : {1, 16, 128})
    on_device(2, [&](auto device) {
      const MlaDecodeShape shape{
          .batch = static_cast<int>(lengths.size()), .num_queries = 2, .num_heads = heads};
      const MlaDecodePlan plan(device, shape, lengths);
      for (int b = 0; b < shape.batch; ++b)
        for (int row = 0; row < shape.rows(); row += plan.tiles().rows) {
          std::int64_t next_key = 0;
          int chunks = 0;
          for (const auto& item : plan.items())
            if (item.request == b && item.row_begin == row) {
              CHECK(item.key_begin == next_key);
              next_key = item.key_end;
              ++chunks;
            }
          CHECK(next_key == lengths[static_cast<std::size_t>(b)]);
          CHECK(chunks >= 1);
        }
    });
}

TEST_CASE("the chunks do not depend on the block count, and the blocks get equal shares") {
  const std::vector<std::int32_t> lengths = {4000, 17, 900, 0, 12000, 64};
  const MlaDecodeShape shape{.batch = 6, .num_queries = 1, .num_heads = 16};
  std::vector<MlaDecodePlan> plans;
  for (const int blocks : {1, 2, 3, 8})
    on_device(blocks, [&](auto device) { plans.emplace_back(device, shape, lengths); });
  for (const MlaDecodePlan& plan : plans) {
    CHECK(same_items(plan, plans.front()));
    std::int64_t total = 0, largest_item = 0;
    for (const auto& item : plan.items())
      total += cost(item), largest_item = std::max(largest_item, cost(item));
    for (int block = 0; block < plan.num_blocks(); ++block) {
      std::int64_t share = 0;
      for (std::size_t i = plan.block_begin(block); i < plan.block_begin(block + 1); ++i)
        share += cost(plan.items()[i]);
      CHECK(share <= total / plan.num_blocks() + largest_item);
    }
    CHECK(plan.block_begin(0) == 0);
    CHECK(plan.block_begin(plan.num_blocks()) == plan.items().size());
  }
}

TEST_CASE("a small batch of long sequences is split, and a batch that fills the machine is not") {
  on_device(2, [](auto device) {
    const MlaDecodePlan small(device, {.batch = 1, .num_queries = 1, .num_heads = 16},
                              std::vector<std::int32_t>{16384});
    CHECK(small.items().size() >= 32);
    CHECK(small.merge_groups().size() == 1);
    const MlaDecodePlan big(device, {.batch = 64, .num_queries = 2, .num_heads = 128},
                            std::vector<std::int32_t>(64, 4096));
    CHECK(big.merge_groups().empty());
    CHECK(big.items().size() == 64 * 8);
  });
}

}  // namespace
