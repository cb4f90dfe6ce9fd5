// SPDX-License-Identifier: Apache-2.0
// A user's MPI program: one EP round, one rank per process; exits non-zero unless y is what the
// experts made.
#include <cmx/backend/mpi.hpp>
#include <cmx/ep/ep.hpp>
#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  cmx::mpi_backend::Environment mpi(argc, argv);
  cmx::mpi_backend::World world;
  cmx::mpi_backend::Device device = world.device();
  const cmx::ep::Config config{.num_experts = 2 * device.world_size(),
                               .max_tokens_per_rank = 2,
                               .hidden = 16,
                               .num_topk = 1};
  cmx::ep::Buffer<cmx::mpi_backend::Device> buffer(device, config);
  const std::vector<cmx::bf16> x(2 * 16, cmx::bf16::from_float(1.0f));
  // Token 0 to this rank's first expert, token 1 to the next rank's.
  const std::vector<std::int32_t> topk_idx = {2 * device.rank(),
                                              (2 * device.rank() + 2) % config.num_experts};
  const std::vector<float> weights = {1.0f, 0.5f};
  cmx::ep::dispatch(device, buffer, {.x = x, .topk_idx = topk_idx, .num_tokens = 2});
  // The "expert" outputs 2.0 for every row it received.
  std::vector<cmx::bf16> expert_out(buffer.layout().num_messages() * 16,
                                    cmx::bf16::from_float(2.0f));
  std::vector<cmx::bf16> y(2 * 16);
  cmx::ep::combine(device, buffer, {.expert_out = expert_out, .topk_weights = weights, .y = y});
  const bool right = y[0].to_float() == 2.0f && y[16].to_float() == 1.0f;
  std::printf("consumer_mpi rank %d: %s\n", device.rank(), right ? "ok" : "WRONG");
  return right ? 0 : 1;
}
