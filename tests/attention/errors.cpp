// SPDX-License-Identifier: Apache-2.0
// MLA decode's bad inputs: clear errors, raised before anything is written.
#include <doctest/doctest.h>

#include <functional>
#include <string>

#include "mla_harness.hpp"

namespace {

namespace attention = cmx::attention;
using cmx::ErrorCode;
using cmx::test::MlaProblem;

/// Makes a valid problem, breaks it with `mutate`, and checks that decode raises `code` with
/// `needle` in its message and leaves o and lse as they were.
void check_rejected(const std::function<void(MlaProblem&, attention::MlaDecodeArgs&)>& mutate,
                    ErrorCode code, const char* needle) {
  MlaProblem problem =
      cmx::test::make_problem({.batch = 2, .num_queries = 2, .num_heads = 16, .seqlens = {100, 3}});
  attention::MlaDecodeArgs args = problem.args();
  mutate(problem, args);
  const std::vector<cmx::bf16> o_before = problem.o;
  const std::vector<float> lse_before = problem.lse;
  cmx::tbb_backend::World world({.num_ranks = 1});
  try {
    world.run([&](cmx::tbb_backend::Device device) { attention::mla_decode(device, args); });
    FAIL("mla_decode accepted a bad input (expected: ", needle, ")");
  } catch (const cmx::Error& error) {
    CHECK(error.code() == code);
    CHECK_MESSAGE(std::string(error.what()).find(needle) != std::string::npos, error.what());
  }
  CHECK(problem.o == o_before);
  CHECK(problem.lse == lse_before);
}

TEST_CASE("MLA decode rejects bad inputs before writing anything") {
  SUBCASE("a block index out of range") {
    check_rejected([](MlaProblem& p, auto&) { p.block_table[1] = 1 << 20; },
                   ErrorCode::invalid_argument, "outside the cache's");
  }
  SUBCASE("a negative block index") {
    check_rejected([](MlaProblem& p, auto&) { p.block_table[0] = -1; }, ErrorCode::invalid_argument,
                   "outside the cache's");
  }
  SUBCASE("a sequence longer than the blocks given") {
    check_rejected(
        [](MlaProblem& p, auto&) { p.seqlens[1] = p.max_blocks_per_seq * p.c.block_size + 1; },
        ErrorCode::capacity, "block-table columns");
  }
  SUBCASE("a negative sequence length") {
    check_rejected([](MlaProblem& p, auto&) { p.seqlens[1] = -1; }, ErrorCode::invalid_argument,
                   "must be >= 0");
  }
  SUBCASE("q of the wrong size") {
    check_rejected([](MlaProblem&, auto& args) { args.q = args.q.first(args.q.size() - 1); },
                   ErrorCode::invalid_argument, "q has");
  }
  SUBCASE("o of the wrong size") {
    check_rejected([](MlaProblem&, auto& args) { args.o = args.o.first(args.o.size() - 512); },
                   ErrorCode::invalid_argument, "o has");
  }
  SUBCASE("lse of the wrong size") {
    check_rejected([](MlaProblem&, auto& args) { args.lse = args.lse.first(1); },
                   ErrorCode::invalid_argument, "lse has");
  }
  SUBCASE("a block table of the wrong size") {
    check_rejected([](MlaProblem&, auto& args) { args.max_blocks_per_seq += 1; },
                   ErrorCode::invalid_argument, "block_table has");
  }
  SUBCASE("a cache that is not whole blocks") {
    check_rejected([](MlaProblem&, auto& args) { args.block_size = 100; },
                   ErrorCode::invalid_argument, "whole number of blocks");
  }
  SUBCASE("h_q past 128") {
    check_rejected([](MlaProblem&, auto& args) { args.shape.num_heads = 129; },
                   ErrorCode::invalid_argument, "num_heads");
  }
  SUBCASE("s_q of 0") {
    check_rejected([](MlaProblem&, auto& args) { args.shape.num_queries = 0; },
                   ErrorCode::invalid_argument, "num_queries");
  }
  SUBCASE("a softmax scale that is not positive") {
    check_rejected([](MlaProblem&, auto& args) { args.softmax_scale = 0.0f; },
                   ErrorCode::invalid_argument, "softmax_scale");
  }
}

TEST_CASE("MLA decode rejects a plan made for other lengths or shapes") {
  MlaProblem problem =
      cmx::test::make_problem({.batch = 2, .num_queries = 1, .num_heads = 16, .seqlens = {90, 7}});
  cmx::tbb_backend::World world({.num_ranks = 1});
  world.run([&](cmx::tbb_backend::Device device) {
    attention::MlaDecodePlan plan(device, problem.shape(), std::vector<std::int32_t>{90, 8});
    CHECK_THROWS_WITH_AS(attention::mla_decode(device, plan, problem.args()),
                         doctest::Contains("the plan was made for 8"), cmx::Error);
    attention::MlaDecodePlan other(device, {.batch = 2, .num_queries = 2, .num_heads = 16},
                                   problem.seqlens);
    CHECK_THROWS_WITH_AS(attention::mla_decode(device, other, problem.args()),
                         doctest::Contains("is not the plan's"), cmx::Error);
  });
}

}  // namespace
