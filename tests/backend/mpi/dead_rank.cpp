// SPDX-License-Identifier: Apache-2.0
// A rank that dies: the last rank kills itself (SIGKILL) once its buffer is made; every survivor's
// dispatch must fail within the timeout with an error naming it, and its World must come down
// without hanging. Run by mpirun with recovery enabled (a dead process does not abort the job),
// and so without doctest: mpirun then ignores exit codes, so rank 0 collects the survivors'
// verdicts and prints one line, which ctest matches. The survivors then leave without
// MPI_Finalize, as an engine would abort: Open MPI 4.1 has no fault tolerance, and its finalize
// waits forever for a dead member of a window.
#include <chrono>
#define DOCTEST_CONFIG_IMPLEMENT  // ep_harness.hpp's checks, without doctest's runner
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ep_harness.hpp"
#include "mpi_harness.hpp"

namespace {

using cmx::mpi_backend::Device;
namespace ep = cmx::ep;

// This survivor's verdict: "ok: <its error>", or what went wrong.
std::string survive_the_death_of(int dead_rank) {
  const auto started = std::chrono::steady_clock::now();
  constexpr auto kTimeout = cmx::test::kMissingRankTimeout;
  cmx::test::Outcome outcome;
  {
    cmx::mpi_backend::World world(MPI_COMM_WORLD, cmx::test::world_config(kTimeout));
    Device device = world.device();
    const ep::Config config{.num_experts = 4 * device.world_size(),
                            .max_tokens_per_rank = 8,
                            .hidden = 64,
                            .num_topk = 4};
    const auto inputs =
        cmx::test::make_inputs(config, device.world_size(),
                               std::vector<int>(static_cast<std::size_t>(device.world_size()), 8),
                               cmx::test::Routing::uniform, 11);
    ep::Buffer<Device> buffer(device, config);
    device.barrier();  // every buffer is made
    if (device.rank() == dead_rank) std::raise(SIGKILL);
    const auto& input = inputs[static_cast<std::size_t>(device.rank())];
    outcome = cmx::test::outcome_of([&] {
      ep::dispatch(device, buffer,
                   {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
    });
  }  // the World comes down
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const std::string names = "rank " + std::to_string(dead_rank);
  if (!outcome.failed) return "dispatch succeeded without the dead rank";
  if (outcome.code != cmx::ErrorCode::timeout && outcome.code != cmx::ErrorCode::transport)
    return "unexpected error: " + outcome.message;
  if (!cmx::test::contains(outcome.message, names))
    return "error does not name " + names + ": " + outcome.message;
  if (seconds > 4 * std::chrono::duration<double>(kTimeout).count())
    return "took " + std::to_string(seconds) + " s: " + outcome.message;
  return "ok: " + outcome.message;
}

}  // namespace

int main(int argc, char** argv) {
  cmx::mpi_backend::Environment mpi(argc, argv);
  const int rank = cmx::test::world_rank();
  const int dead_rank = cmx::test::world_size() - 1;
  std::string verdict = survive_the_death_of(dead_rank);
  verdict.resize(std::min<std::size_t>(verdict.size(), 1000));
  // Point to point: a collective would wait for the dead rank.
  constexpr int kTag = 77;
  if (rank != 0) {
    MPI_Ssend(verdict.data(), static_cast<int>(verdict.size()), MPI_CHAR, 0, kTag, MPI_COMM_WORLD);
    std::_Exit(0);
  }
  const auto passed = [](const std::string& text) { return text.starts_with("ok: "); };
  int failures = passed(verdict) ? 0 : 1;
  std::printf("rank 0: %s\n", verdict.c_str());
  for (int peer = 1; peer < dead_rank; ++peer) {
    std::vector<char> text(1000);
    MPI_Status status;
    MPI_Recv(text.data(), static_cast<int>(text.size()), MPI_CHAR, peer, kTag, MPI_COMM_WORLD,
             &status);
    int length = 0;
    MPI_Get_count(&status, MPI_CHAR, &length);
    const std::string theirs(text.data(), static_cast<std::size_t>(length));
    std::printf("rank %d: %s\n", peer, theirs.c_str());
    failures += passed(theirs) ? 0 : 1;
  }
  std::printf("%s: %d survivors of rank %d's death, %d failed\n",
              failures == 0 ? "PASSED" : "FAILED", dead_rank, dead_rank, failures);
  std::fflush(stdout);
  std::_Exit(failures == 0 ? 0 : 1);
}
