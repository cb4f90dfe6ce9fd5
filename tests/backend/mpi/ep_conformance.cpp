// SPDX-License-Identifier: Apache-2.0
// The EP conformance suite (tests/conformance/ep.hpp) on the MPI backend: one rank per process,
// at the process count mpirun gives (2, 4 and 8 under ctest), on the shared-memory path or the
// MPI_Put path.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "../../conformance/ep.hpp"
#include "mpi_harness.hpp"

namespace cmx::test {

/// The MPI backend as the conformance suite makes its ranks: every property runs at the
/// process count, whatever counts it would choose.
struct MpiRanks : HostMemoryRound {
  using Device = mpi_backend::Device;
  static constexpr int kBackToBackRounds = 200;  // 8 processes on 2 cores: 1000 take minutes

  static std::string name() {
    std::ostringstream text;
    text << "mpi over " << intra_node_of_run();
    return text.str();
  }
  static std::vector<int> rank_counts(std::initializer_list<int>) { return {world_size()}; }

  template <class Body>
  static std::vector<std::string> run(const RanksOptions& options, Body&& body) {
    REQUIRE(options.num_ranks == world_size());
    // 8 processes on 2 busy cores are slow, never a minute slow.
    const std::chrono::nanoseconds timeout =
        std::max<std::chrono::nanoseconds>(options.timeout, std::chrono::seconds(60));
    mpi_backend::World world(MPI_COMM_WORLD, world_config(timeout, options.blocks_per_rank));
    Device device = world.device();
    return {body(device)};
  }
};

}  // namespace cmx::test

TYPE_TO_STRING(cmx::test::MpiRanks);
CMX_EP_CONFORMANCE(cmx::test::MpiRanks);
