// SPDX-License-Identifier: Apache-2.0
// MLA decode against the fp32 reference on every tier this CPU runs, over batches with empty,
// one-token, ragged and long sequences, both block sizes and every s_q and h_q; and the
// split/merge path bitwise the same on every run and block count.
#include <doctest/doctest.h>

#include <random>

#include "mla_harness.hpp"

namespace {

namespace attention = cmx::attention;
namespace cpu = cmx::cpu;
using cmx::tbb_backend::Device;
using cmx::tbb_backend::World;
using cmx::test::MlaCase;

/// Runs mla_decode on `problem` with tier `isa` on one rank of `blocks` blocks.
void run_decode(cmx::test::MlaProblem& problem, cpu::Isa isa, int blocks,
                attention::MlaDecodeOptions options = {}) {
  World world({.num_ranks = 1, .blocks_per_rank = blocks});
  world.run([&](Device device) {
    Device tier = device.with_bf16_isa(isa);
    attention::MlaDecodePlan plan(tier, problem.shape(), problem.seqlens, options);
    attention::mla_decode(tier, plan, problem.args());
  });
}

/// Hand-picked cases: every s_q and h_q of the issue, lengths 0, 1, shorter than s_q, not a
/// multiple of the block size, crossing many blocks; both block sizes and maskings.
std::vector<MlaCase> listed_cases() {
  using attention::Masking;
  return {
      {.batch = 1, .num_queries = 1, .num_heads = 1, .seqlens = {1}},
      {.batch = 3, .num_queries = 1, .num_heads = 16, .seqlens = {0, 1, 200}},
      {.batch = 2, .num_queries = 2, .num_heads = 16, .seqlens = {65, 130}, .block_size = 128},
      {.batch = 2, .num_queries = 4, .num_heads = 16, .seqlens = {3, 257}},
      {.batch = 1, .num_queries = 1, .num_heads = 128, .seqlens = {300}},
      {.batch = 2, .num_queries = 2, .num_heads = 128, .seqlens = {77, 1}, .block_size = 128},
      {.batch = 1, .num_queries = 4, .num_heads = 128, .seqlens = {129}},
      {.batch = 2,
       .num_queries = 2,
       .num_heads = 1,
       .seqlens = {1000, 37},
       .masking = Masking::none},
      {.batch = 2, .num_queries = 2, .num_heads = 16, .seqlens = {190, 64}, .softmax_scale = 0.3f},
      {.batch = 1, .num_queries = 4, .num_heads = 1, .seqlens = {2}, .block_size = 128},
  };
}

/// Random cases: batch 1-4, s_q in {1, 2, 4}, h_q in {1, 16, 128}, lengths up to 700 (some 0
/// and 1), block size 64 or 128, each kept to a few million multiply-adds.
std::vector<MlaCase> random_cases(int count, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  const auto pick = [&](std::initializer_list<int> values) {
    return *(values.begin() + random() % values.size());
  };
  std::vector<MlaCase> cases;
  while (static_cast<int>(cases.size()) < count) {
    MlaCase c{.batch = 1 + static_cast<int>(random() % 4),
              .num_queries = pick({1, 2, 4}),
              .num_heads = pick({1, 16, 128}),
              .block_size = pick({64, 128}),
              .seed = random()};
    long work = 0;
    for (int b = 0; b < c.batch; ++b) {
      const int length =
          pick({0, 1, 1000}) == 1000 ? static_cast<int>(random() % 700) : pick({0, 1});
      c.seqlens.push_back(length);
      work += static_cast<long>(length) * c.num_queries * c.num_heads;
    }
    if (work <= 150'000) cases.push_back(c);
  }
  return cases;
}

void check_case(const MlaCase& c, const std::vector<cpu::Isa>& tiers) {
  cmx::test::MlaProblem problem = cmx::test::make_problem(c);
  const cmx::reference::MlaDecodeResult expected = cmx::reference::mla_decode(problem.args());
  for (const cpu::Isa isa : tiers) {
    INFO(cmx::test::describe(c), " tier ", cpu::to_string(isa));
    run_decode(problem, isa, 2);
    const std::string mismatch = cmx::test::check_against_reference(problem, expected);
    CHECK_MESSAGE(mismatch.empty(), mismatch);
  }
}

TEST_CASE("MLA decode matches the reference on every tier: listed shapes") {
  const std::vector<cpu::Isa> tiers = cmx::test::runnable_tiers();
  for (const MlaCase& c : listed_cases()) check_case(c, tiers);
}

TEST_CASE("MLA decode matches the reference on every tier: random shapes") {
  const std::vector<cpu::Isa> tiers = cmx::test::runnable_tiers();
  for (const MlaCase& c : random_cases(12, 20260)) check_case(c, tiers);
}

TEST_CASE("MLA decode matches the reference on every tier: 16K keys, split and merged") {
  const std::vector<cpu::Isa> tiers = cmx::test::runnable_tiers();
  check_case({.batch = 2, .num_queries = 2, .num_heads = 1, .seqlens = {16384, 5}}, tiers);
  check_case({.batch = 1, .num_queries = 1, .num_heads = 16, .seqlens = {16383}, .block_size = 128},
             tiers);
}

TEST_CASE("the split/merge path is bitwise the same on every run and every block count") {
  // Split into chunks by the plan (a small batch of long sequences), run on 1, 2, 3 and 7
  // blocks, twice each.
  const MlaCase c{.batch = 3, .num_queries = 2, .num_heads = 16, .seqlens = {3000, 700, 1}};
  for (const cpu::Isa isa : cmx::test::runnable_tiers()) {
    INFO("tier ", cpu::to_string(isa));
    cmx::test::MlaProblem first = cmx::test::make_problem(c);
    run_decode(first, isa, 1);
    for (const int blocks : {1, 2, 3, 7})
      for (int run = 0; run < 2; ++run) {
        cmx::test::MlaProblem again = cmx::test::make_problem(c);
        run_decode(again, isa, blocks);
        const std::string difference = cmx::test::check_same_bits(first, again);
        CHECK_MESSAGE(difference.empty(), blocks, " blocks, run ", run, ": ", difference);
      }
  }
}

TEST_CASE("more work items (a finer split) changes only the rounding, within the tolerance") {
  const MlaCase c{.batch = 1, .num_queries = 1, .num_heads = 16, .seqlens = {5000}};
  cmx::test::MlaProblem problem = cmx::test::make_problem(c);
  const cmx::reference::MlaDecodeResult expected = cmx::reference::mla_decode(problem.args());
  for (const int items : {1, 4, 64, 1000}) {
    run_decode(problem, cpu::best_isa(cpu::KernelFamily::bf16_matmul), 2,
               {.min_work_items = items});
    const std::string mismatch = cmx::test::check_against_reference(problem, expected);
    CHECK_MESSAGE(mismatch.empty(), items, " work items: ", mismatch);
  }
}

}  // namespace
