// SPDX-License-Identifier: Apache-2.0
// One expert-parallel round on the MPI backend, one rank per process, on one machine or many:
// route tokens, FusedDispatch them to the processes that host their experts, run the experts
// there, FusedCombine the outputs back, and check the result against cmx's scalar reference.
// The same calls as examples/dispatch_combine.cpp; only the backend differs.
//
//   mpirun -np 4 ./dispatch_combine_mpi                       # 4 processes on this machine
//   mpirun -np 16 --hostfile hosts ./dispatch_combine_mpi     # 16 processes on the hosts listed
//
// Processes on one machine write into each other's memory with plain stores (MPI shared
// memory); processes on different machines with MPI_Put. Build against cmx::mpi.
#include <cmx/backend/mpi.hpp>
#include <cmx/cmx.hpp>
#include <cmx/reference/ep.hpp>
#include <cstdio>
#include <random>
#include <vector>

using cmx::bf16;
using Device = cmx::mpi_backend::Device;

int main(int argc, char** argv) {
  // Initializes MPI (MPI_THREAD_MULTIPLE) and finalizes it at the end. An engine that has its own
  // MPI skips this and passes its communicator to World.
  cmx::mpi_backend::Environment mpi(argc, argv);
  // Every process of MPI_COMM_WORLD is a rank ("NPU"). Collective.
  cmx::mpi_backend::World world(MPI_COMM_WORLD);
  Device device = world.device();
  const int num_ranks = device.world_size();
  const int rank = device.rank();

  // 4 experts per rank, each token goes to its top-2 experts.
  const cmx::ep::Config config{
      .num_experts = 4 * num_ranks,
      .max_tokens_per_rank = 32,  // static capacity: buffers are sized once, never per call
      .hidden = 256,
      .num_topk = 2,
      .precision = cmx::ep::DispatchPrecision::int8,  // quantize once at the source
  };

  // Every rank's inputs, made the same way on every process so that each can run the reference
  // on all of them. In an engine each process has only its own, from the attention layer and the
  // router.
  std::vector<cmx::reference::EpRankInput> inputs(num_ranks);
  std::mt19937 random(2026);
  std::normal_distribution<float> activation(0.0f, 1.0f);
  for (auto& input : inputs) {
    input.num_tokens = 20 + static_cast<int>(random() % 13);  // up to max_tokens_per_rank
    for (int i = 0; i < input.num_tokens * config.hidden; ++i)
      input.x.push_back(bf16::from_float(activation(random)));
    for (int t = 0; t < input.num_tokens; ++t) {
      const int first = static_cast<int>(random() % config.num_experts);
      input.topk_idx.insert(input.topk_idx.end(), {first, (first + 5) % config.num_experts});
      input.topk_weights.insert(input.topk_weights.end(), {0.75f, 0.25f});
    }
  }
  const auto& input = inputs[rank];

  // The stand-in "expert": dequantizes its input row and scales it by (expert + 1) / 16. A real
  // engine runs the grouped INT8 GEMM here, reading the received rows in place.
  const auto expert_output = [](std::int8_t code, float scale, int expert) {
    return bf16::from_float(code * scale * static_cast<float>(expert + 1) / 16);
  };

  // Made once at start-up (collective: checks that every rank has the same config).
  cmx::ep::Buffer<Device> buffer(device, config);
  const cmx::ep::Layout& layout = buffer.layout();
  // [num_messages][hidden]: one row per row of the receive area.
  std::vector<bf16> expert_out(layout.num_messages() * config.hidden);
  std::vector<bf16> y(input.x.size());

  // Per layer: dispatch -> experts -> combine, every rank, in that order.
  const cmx::ep::Received received = cmx::ep::dispatch(
      device, buffer, {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
  for (int e = 0; e < received.num_local_experts(); ++e)
    for (int src = 0; src < received.num_ranks(); ++src)
      for (int slot = 0; slot < received.count(e, src); ++slot) {
        const auto codes = received.row_int8(e, src, slot);          // [hidden] int8
        const float scale = received.meta(e, src, slot).scale;       // per-token scale
        const int expert = rank * received.num_local_experts() + e;  // global id
        bf16* out = &expert_out[received.row_index(e, src, slot) * config.hidden];
        for (int h = 0; h < config.hidden; ++h) out[h] = expert_output(codes[h], scale, expert);
      }
  cmx::ep::combine(device, buffer,
                   {.expert_out = expert_out, .topk_weights = input.topk_weights, .y = y});

  // Check this rank's y: the reference dispatch gives each (token, k) its quantized row; the
  // same stand-in expert and the reference combine must give y bit for bit.
  const auto delivered = cmx::reference::dispatch(config, num_ranks, inputs);
  std::vector<bf16> row(config.hidden);
  const auto expected = cmx::reference::combine(config, input, [&](int t, int k) {
    const int expert = input.topk_idx[t * config.num_topk + k];
    const int experts_per_rank = config.num_experts / num_ranks;
    for (const auto& sent : delivered[expert / experts_per_rank][expert % experts_per_rank][rank])
      if (sent.src_token == t && sent.topk_slot == k)
        for (int h = 0; h < config.hidden; ++h)
          row[h] = expert_output(sent.codes[h], sent.scale, expert);
    return std::span<const bf16>(row);
  });
  int mismatches = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) mismatches += y[i] != expected[i];

  // Rank 0 reports for all.
  int total = 0;
  MPI_Reduce(&mismatches, &total, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0)
    std::printf(
        "dispatch_combine_mpi: %d processes (%d sharing memory with rank 0), %d experts, "
        "top-%d, hidden %d: %s\n",
        num_ranks, world.num_mapped_ranks(), config.num_experts, config.num_topk, config.hidden,
        total == 0 ? "y matches the reference bit for bit" : "MISMATCH");
  return mismatches == 0 ? 0 : 1;
}
