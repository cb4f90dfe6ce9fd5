// SPDX-License-Identifier: Apache-2.0
// ep::Layout: every region and row is 32-byte aligned, regions do not overlap, rows tile them;
// and the column chunks of combine's reduction, which the layout's shape decides.
#include "cmx/ep/layout.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "cmx/ep/combine.hpp"

namespace ep = cmx::ep;

TEST_CASE("layout regions are aligned, disjoint and sized by the config") {
  for (const int num_ranks : {1, 3, 8, 320})
    for (const int hidden : {16, 48, 7168})
      for (const auto precision : {ep::DispatchPrecision::int8, ep::DispatchPrecision::bf16}) {
        const ep::Config config{.num_experts = num_ranks * 2,
                                .max_tokens_per_rank = 5,
                                .hidden = hidden,
                                .num_topk = 3,
                                .precision = precision};
        const ep::Layout layout(config, num_ranks);
        INFO("ranks ", num_ranks, " hidden ", hidden);
        const std::size_t element = precision == ep::DispatchPrecision::int8 ? 1 : 2;
        CHECK(layout.row_bytes % 32 == 0);
        CHECK(layout.row_bytes >= static_cast<std::size_t>(hidden) * element);
        CHECK(layout.row_bytes < static_cast<std::size_t>(hidden) * element + 32);
        CHECK(layout.message_bytes == layout.row_bytes + 32);
        // Regions in order, each starting where the previous one's content ends (rounded to 32).
        CHECK(layout.dispatch_flags_offset == 0);
        CHECK(layout.combine_flags_offset ==
              layout.dispatch_flags_offset + 2u * num_ranks * cmx::kFlagBytes);
        CHECK(layout.messages_offset == layout.combine_flags_offset + num_ranks * cmx::kFlagBytes);
        CHECK(layout.combine_rows_offset ==
              layout.messages_offset + layout.num_messages() * layout.message_bytes);
        CHECK(layout.expert_out_offset == layout.combine_rows_offset + 5u * 3u * hidden * 2u);
        CHECK(layout.routes_offset == layout.expert_out_offset);  // no zero-copy region
        // The private regions: routes and weights [5][3], counts [2][num_ranks], each rounded.
        CHECK(layout.topk_weights_offset == layout.routes_offset + 128);          // 15 * 8 B
        CHECK(layout.received_counts_offset == layout.topk_weights_offset + 64);  // 15 * 4 B
        CHECK(layout.received_first_rows_offset ==
              layout.received_counts_offset + cmx::round_up(2u * num_ranks * 4u, 32));
        CHECK(layout.total_bytes ==
              layout.received_first_rows_offset + cmx::round_up(2u * num_ranks * 4u, 32));
        // Each source owns 5 tokens * min(3 choices, 2 experts here) rows on each rank.
        CHECK(layout.rows_per_source == 10);
        CHECK(layout.num_messages() == 10u * num_ranks);
        CHECK(layout.source_first_row(num_ranks - 1) == 10 * (num_ranks - 1));
        // The last row of each region ends at the region's end.
        CHECK(layout.message(static_cast<std::int64_t>(layout.num_messages()) - 1) +
                  layout.message_bytes ==
              layout.combine_rows_offset);
        CHECK(layout.combine_row(4, 2) + layout.combine_row_bytes == layout.expert_out_offset);
        CHECK(layout.route(4, 2) + sizeof(ep::Route) == layout.routes_offset + 15 * 8);
        CHECK(layout.topk_weight(4, 2) + sizeof(float) == layout.topk_weights_offset + 15 * 4);
        CHECK(layout.dispatch_flag(1, num_ranks - 1) + cmx::kFlagBytes ==
              layout.combine_flags_offset);
        // Consecutive rows are one message apart.
        CHECK(layout.message(1) - layout.message(0) == layout.message_bytes);
        CHECK(layout.message(7) % 32 == 0);
        CHECK(layout.combine_row(1, 0) - layout.combine_row(0, 2) == layout.combine_row_bytes);
      }
}

TEST_CASE("a zero-copy buffer holds the expert outputs instead of the returned rows") {
  for (const int num_ranks : {1, 3, 8})
    for (const int hidden : {16, 7168}) {
      const ep::Config config{.num_experts = num_ranks * 2,
                              .max_tokens_per_rank = 5,
                              .hidden = hidden,
                              .num_topk = 3,
                              .combine_source = ep::CombineSource::buffer};
      const ep::Layout layout(config, num_ranks);
      INFO("ranks ", num_ranks, " hidden ", hidden);
      const std::size_t messages_end =
          layout.messages_offset + layout.num_messages() * layout.message_bytes;
      CHECK(layout.combine_rows_offset == messages_end);  // empty
      CHECK(layout.expert_out_offset == messages_end);
      CHECK(layout.expert_out_offset % 32 == 0);
      CHECK(layout.routes_offset ==
            layout.expert_out_offset + layout.num_messages() * hidden * sizeof(cmx::bf16));
      // Output rows follow the message order and tile the region.
      CHECK(layout.expert_out_row(0) == layout.expert_out_offset);
      CHECK(layout.expert_out_row(1) - layout.expert_out_row(0) == layout.combine_row_bytes);
      CHECK(layout.expert_out_row(static_cast<std::int64_t>(layout.num_messages()) - 1) +
                layout.combine_row_bytes ==
            layout.routes_offset);
    }
}

TEST_CASE("a source owns tokens * min(topk, experts per rank) rows, its segments packed") {
  // Top-8 of 256 on 8 ranks (DeepSeek's shape): 8 rows per token at most on one rank.
  CHECK(
      ep::Layout({.num_experts = 256, .max_tokens_per_rank = 128, .hidden = 7168, .num_topk = 8}, 8)
          .rows_per_source == 128 * 8);
  // Top-8 of 16 on 8 ranks: a token reaches one rank at most twice.
  CHECK(ep::Layout({.num_experts = 16, .max_tokens_per_rank = 128, .hidden = 16, .num_topk = 8}, 8)
            .rows_per_source == 128 * 2);

  // 3 experts per rank on 2 ranks: segment (e, s) follows (e - 1, s) within the rows of s.
  const ep::Layout layout({.num_experts = 6, .max_tokens_per_rank = 4, .hidden = 16, .num_topk = 2},
                          2);
  REQUIRE(layout.rows_per_source == 8);
  // counts [3 experts][2 sources]
  const std::vector<std::int32_t> counts{2, 0, 0, 4, 3, 1};
  std::vector<std::int32_t> first_rows(6, -1);
  layout.first_rows(counts, first_rows);
  CHECK(first_rows == std::vector<std::int32_t>{0, 8, 2, 8, 2, 12});
}

TEST_CASE("a config whose receive rows overflow int32 is refused") {
  const ep::Config config{
      .num_experts = 1024, .max_tokens_per_rank = 1 << 22, .hidden = 16, .num_topk = 16};
  CHECK_THROWS_WITH_AS(ep::validate(config, 64), doctest::Contains("does not fit"), cmx::Error);
  CHECK_NOTHROW(ep::validate(
      {.num_experts = 1024, .max_tokens_per_rank = 1 << 16, .hidden = 16, .num_topk = 16}, 64));
}

TEST_CASE("combine's reduction chunks fit local memory and cut a row into near-equal parts") {
  for (const int num_topk : {1, 8, 16})
    for (const int hidden : {16, 48, 7152, 7168, 16384})
      for (const std::size_t local_bytes : {196608u, 163840u, 20000u, 1000u}) {
        const ep::Layout layout(
            {.num_experts = 16, .max_tokens_per_rank = 4, .hidden = hidden, .num_topk = num_topk},
            2);
        INFO("topk ", num_topk, " hidden ", hidden, " local ", local_bytes);
        const std::size_t k = static_cast<std::size_t>(num_topk);
        const std::size_t token_bytes = cmx::round_up(k * 8, 32) + cmx::round_up(k * 4, 32);
        const std::size_t column_bytes = 4 + 2 + 2 * k;
        if (token_bytes + 16 * column_bytes > local_bytes) {
          CHECK_THROWS_AS(ep::detail::reduce_chunk_columns(local_bytes, layout), cmx::Error);
          continue;
        }
        const std::size_t columns = ep::detail::reduce_chunk_columns(local_bytes, layout);
        const std::size_t h = static_cast<std::size_t>(hidden);
        CHECK(columns % 16 == 0);
        CHECK(columns >= 16);
        CHECK(columns <= h);
        CHECK(token_bytes + columns * column_bytes <= local_bytes);  // sums, result, k rows
        // As few chunks as fit, the last one no wider than the others and not empty.
        const std::size_t num_chunks = (h + columns - 1) / columns;
        const std::size_t widest = (local_bytes - token_bytes) / column_bytes / 16 * 16;
        CHECK(num_chunks == (h + widest - 1) / widest);
        const std::size_t last = h - (num_chunks - 1) * columns;
        CHECK(last > 0);
        CHECK(last <= columns);
        CHECK(last + 16 * num_chunks >= columns);  // each chunk within 16 of h / num_chunks
      }
  // The cases the tests of dispatch and combine run: one chunk on DeepSeek's shape; two
  // unequal ones for top-16 at hidden 7152, on the CPU (192 KiB) and on Ascend (160 KiB).
  const auto columns_for = [](int hidden, int num_topk, std::size_t local_bytes) {
    return ep::detail::reduce_chunk_columns(local_bytes, ep::Layout({.num_experts = 256,
                                                                     .max_tokens_per_rank = 128,
                                                                     .hidden = hidden,
                                                                     .num_topk = num_topk},
                                                                    8));
  };
  CHECK(columns_for(7168, 8, 196608) == 7168);
  CHECK(columns_for(7168, 8, 163840) == 7168);
  CHECK(columns_for(7152, 16, 196608) == 3584);  // 3584 + 3568
  CHECK(columns_for(7152, 16, 163840) == 3584);
}
