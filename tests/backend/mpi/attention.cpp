// SPDX-License-Identifier: Apache-2.0
// MLA decode is rank-local: on the MPI backend every process decodes its own batch with the same
// kernel and the bf16 tiles of the shared CPU device. Each must match the reference, on every
// tier this CPU runs, and be bitwise what the TBB backend computes from the same inputs.
#include <doctest/doctest.h>

#include <string>

#include "mla_harness.hpp"
#include "mpi_harness.hpp"

namespace {

namespace attention = cmx::attention;
namespace cpu = cmx::cpu;

/// Decodes `problem` on `device` (any backend), planning as an engine does.
template <class Dev>
void decode(Dev& device, cmx::test::MlaProblem& problem) {
  attention::MlaDecodePlan plan(device, problem.shape(), problem.seqlens);
  attention::mla_decode(device, plan, problem.args());
}

}  // namespace

TEST_CASE("MLA decode on the MPI backend matches the reference and the TBB backend bitwise") {
  const int rank = cmx::test::world_rank();
  // Each process its own batch: a ragged pair whose first request crosses several blocks.
  const cmx::test::MlaCase batch{.batch = 2,
                                 .num_queries = 2,
                                 .num_heads = 16,
                                 .seqlens = {130 + 37 * rank, 5},
                                 .seed = 100u + static_cast<unsigned>(rank)};
  INFO("rank ", rank, ": ", cmx::test::describe(batch));
  cmx::mpi_backend::World world(MPI_COMM_WORLD, cmx::test::world_config());
  for (const cpu::Isa isa : cmx::test::runnable_tiers()) {
    INFO("tier ", cpu::to_string(isa));
    cmx::test::MlaProblem on_mpi = cmx::test::make_problem(batch);
    cmx::mpi_backend::Device device = world.device().with_bf16_isa(isa);
    decode(device, on_mpi);
    const std::string mismatch =
        cmx::test::check_against_reference(on_mpi, cmx::reference::mla_decode(on_mpi.args()));
    CHECK_MESSAGE(mismatch.empty(), mismatch);

    cmx::test::MlaProblem on_tbb = cmx::test::make_problem(batch);
    cmx::tbb_backend::World tbb_world({.num_ranks = 1, .blocks_per_rank = 3});
    tbb_world.run([&](cmx::tbb_backend::Device any_tier) {
      cmx::tbb_backend::Device tbb_device = any_tier.with_bf16_isa(isa);
      decode(tbb_device, on_tbb);
    });
    const std::string difference = cmx::test::check_same_bits(on_mpi, on_tbb);
    CHECK_MESSAGE(difference.empty(), difference);
  }
}
