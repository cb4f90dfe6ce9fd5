// SPDX-License-Identifier: Apache-2.0
// FusedDispatch + FusedCombine on the MPI backend, one rank per process, against the scalar
// reference bit for bit: the TBB backend's reference comparisons, at the process count mpirun
// gives (2, 4 and 8 under ctest), on the shared-memory path or the MPI_Put path.
#include <doctest/doctest.h>

#include <chrono>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ep_harness.hpp"
#include "mpi_harness.hpp"

namespace {

using cmx::bf16;
using cmx::mpi_backend::Device;
using cmx::mpi_backend::World;
using cmx::test::Routing;
namespace ep = cmx::ep;

constexpr ep::CombineSource kCombineSources[] = {ep::CombineSource::caller_memory,
                                                 ep::CombineSource::buffer};

struct Case {
  int experts_per_rank;
  int hidden;
  int num_topk;
  int capacity;
  ep::DispatchPrecision precision = ep::DispatchPrecision::int8;
  Routing routing = Routing::uniform;
  int blocks_per_rank = 0;
  ep::CombineSource combine_source = ep::CombineSource::caller_memory;
};

std::string describe(const Case& c, int num_ranks) {
  std::ostringstream text;
  text << "ranks " << num_ranks << " experts " << c.experts_per_rank * num_ranks << " hidden "
       << c.hidden << " topk " << c.num_topk << " capacity " << c.capacity << " "
       << (c.precision == ep::DispatchPrecision::int8 ? "int8" : "bf16") << " "
       << to_string(c.routing) << " blocks " << c.blocks_per_rank << " combine from "
       << (c.combine_source == ep::CombineSource::buffer ? "buffer" : "caller memory") << " over "
       << cmx::test::intra_node_of_run();
  return text.str();
}

ep::Config config_of(const Case& c, int num_ranks) {
  return {.num_experts = c.experts_per_rank * num_ranks,
          .max_tokens_per_rank = c.capacity,
          .hidden = c.hidden,
          .num_topk = c.num_topk,
          .precision = c.precision,
          .combine_source = c.combine_source};
}

// One round on a fresh World, each rank checked against the reference.
void check_one_round(const Case& c, const std::vector<int>& tokens, std::uint64_t seed) {
  World world(MPI_COMM_WORLD, cmx::test::world_config(std::chrono::seconds(60), c.blocks_per_rank));
  Device device = world.device();
  INFO(describe(c, device.world_size()));
  const ep::Config config = config_of(c, device.world_size());
  const auto inputs = cmx::test::make_inputs(config, device.world_size(), tokens, c.routing, seed);
  const auto expected = cmx::reference::dispatch(config, device.world_size(), inputs);
  ep::Buffer<Device> buffer(device, config);
  const std::string mismatch =
      cmx::test::checked_round(device, buffer, inputs, expected, cmx::test::no_pause);
  CHECK_MESSAGE(mismatch.empty(), mismatch);
}

void check_one_round(const Case& c, std::uint64_t seed) {
  check_one_round(c, cmx::test::random_token_counts(cmx::test::world_size(), c.capacity, seed + 17),
                  seed);
}

}  // namespace

TEST_CASE("dispatch and combine match the reference for every top-k and hidden size") {
  const int hidden_sizes[] = {16, 80, 256, 2048, 7168};
  int index = 0;
  for (const int num_topk : {1, 2, 6, 8, 9}) {
    const int hidden = hidden_sizes[index % 5];
    check_one_round({.experts_per_rank = std::max(1, 16 / cmx::test::world_size()),
                     .hidden = hidden,
                     .num_topk = num_topk,
                     .capacity = 24,
                     .combine_source = kCombineSources[index % 2]},
                    1234u + static_cast<std::uint64_t>(index));
    ++index;
  }
}

TEST_CASE("every routing pattern, in int8 and bf16, with either combine source") {
  for (const auto precision : {ep::DispatchPrecision::int8, ep::DispatchPrecision::bf16})
    for (const Routing routing :
         {Routing::uniform, Routing::one_expert, Routing::all_masked, Routing::same_rank})
      for (const ep::CombineSource source : kCombineSources)
        check_one_round({.experts_per_rank = 4,
                         .hidden = 128,
                         .num_topk = 8,
                         .capacity = 16,
                         .precision = precision,
                         .routing = routing,
                         .combine_source = source},
                        99);
}

TEST_CASE("the size limits: top-16 with every choice taken, at hidden 7168 and 16384") {
  // same_rank with 16 experts per rank fills all 16 choices of every token.
  for (const int hidden : {7168, ep::kMaxHidden})
    for (const ep::CombineSource source : kCombineSources)
      check_one_round({.experts_per_rank = 16,
                       .hidden = hidden,
                       .num_topk = ep::kMaxTopk,
                       .capacity = 3,
                       .routing = Routing::same_rank,
                       .combine_source = source},
                      5);
}

TEST_CASE("ranks with no tokens, and every rank at full capacity") {
  const int num_ranks = cmx::test::world_size();
  for (const ep::CombineSource source : kCombineSources) {
    const Case c{.experts_per_rank = 4,
                 .hidden = 64,
                 .num_topk = 4,
                 .capacity = 12,
                 .combine_source = source};
    std::vector<int> some_empty(static_cast<std::size_t>(num_ranks));
    for (int r = 0; r < num_ranks; ++r) some_empty[static_cast<std::size_t>(r)] = r % 2 ? 0 : 5 + r;
    check_one_round(c, some_empty, 7);
    check_one_round(c, std::vector<int>(static_cast<std::size_t>(num_ranks), 0), 8);
    const std::vector<int> full(static_cast<std::size_t>(num_ranks), 12);
    check_one_round(c, full, 9);
    Case one_expert = c;
    one_expert.routing = Routing::one_expert;  // every token of every rank to expert 0
    check_one_round(one_expert, full, 10);
  }
}

TEST_CASE("block counts do not change a bit") {
  for (const int blocks : {1, 2, 3})
    for (const ep::CombineSource source : kCombineSources)
      check_one_round({.experts_per_rank = 3,
                       .hidden = 96,
                       .num_topk = 6,
                       .capacity = 20,
                       .blocks_per_rank = blocks,
                       .combine_source = source},
                      21);
}

namespace {

// Rounds with every rank sleeping a random 0-2 ms before some stages, so that arrival order
// changes every round; or none of that, back to back, many times over the same buffer.
void check_rounds(const Case& c, int num_rounds, bool skewed) {
  World world(MPI_COMM_WORLD, cmx::test::world_config(std::chrono::seconds(60), c.blocks_per_rank));
  Device device = world.device();
  const int num_ranks = device.world_size();
  INFO(describe(c, num_ranks));
  const ep::Config config = config_of(c, num_ranks);
  constexpr int kDistinctInputs = 10;  // inputs change every round; 10 sets keep memory small
  std::vector<std::vector<cmx::reference::EpRankInput>> inputs;
  std::vector<cmx::reference::DispatchedRows> expected;
  for (int i = 0; i < kDistinctInputs; ++i) {
    inputs.push_back(cmx::test::make_inputs(
        config, num_ranks, cmx::test::random_token_counts(num_ranks, c.capacity, 500u + i),
        i % 5 == 4 ? Routing::same_rank : Routing::uniform, 600u + i));
    expected.push_back(cmx::reference::dispatch(config, num_ranks, inputs.back()));
  }
  ep::Buffer<Device> buffer(device, config);
  std::mt19937 random(static_cast<unsigned>(device.rank()) * 7919u + 1u);
  const auto pause = [&](int) {
    if (skewed && random() % 2 == 0)
      std::this_thread::sleep_for(std::chrono::microseconds(random() % 2000));
  };
  std::string mismatch;
  for (int round = 0; round < num_rounds; ++round) {
    const int i = round % kDistinctInputs;
    const std::string m = cmx::test::checked_round(device, buffer, inputs[i], expected[i], pause);
    // Keep going on a mismatch: the other ranks need this one's flags to finish their rounds.
    if (!m.empty() && mismatch.empty()) mismatch = "round " + std::to_string(round) + ": " + m;
  }
  CHECK_MESSAGE(mismatch.empty(), mismatch);
  CHECK(buffer.sequence() == static_cast<std::uint64_t>(num_rounds));
}

}  // namespace

TEST_CASE("skewed rank speeds over many rounds") {
  for (const ep::CombineSource source : kCombineSources)
    check_rounds({.experts_per_rank = 4,
                  .hidden = 64,
                  .num_topk = 8,
                  .capacity = 16,
                  .blocks_per_rank = 2,
                  .combine_source = source},
                 12, true);
}

TEST_CASE("200 back-to-back rounds reuse the same buffers") {
  for (const ep::CombineSource source : kCombineSources)
    check_rounds({.experts_per_rank = 4,
                  .hidden = 32,
                  .num_topk = 4,
                  .capacity = 8,
                  .combine_source = source},
                 200, false);
}

TEST_CASE("the same input delivers the same bytes, padding included, after other rounds") {
  // hidden 80: int8 rows carry 16 bytes of padding, which must be defined too.
  for (const auto precision : {ep::DispatchPrecision::int8, ep::DispatchPrecision::bf16}) {
    World world(MPI_COMM_WORLD, cmx::test::world_config(std::chrono::seconds(60), 3));
    Device device = world.device();
    const int num_ranks = device.world_size();
    const ep::Config config = config_of({.experts_per_rank = 4,
                                         .hidden = 80,
                                         .num_topk = 6,
                                         .capacity = 16,
                                         .precision = precision},
                                        num_ranks);
    const auto first = cmx::test::make_inputs(
        config, num_ranks, cmx::test::random_token_counts(num_ranks, 16, 3), Routing::uniform, 77);
    const auto other = cmx::test::make_inputs(
        config, num_ranks, std::vector<int>(static_cast<std::size_t>(num_ranks), 16),
        Routing::same_rank, 78);
    const std::size_t data_bytes =
        80 * (precision == ep::DispatchPrecision::int8 ? 1 : sizeof(bf16));
    ep::Buffer<Device> buffer(device, config);
    const ep::Layout& layout = buffer.layout();
    std::vector<std::vector<std::byte>> snapshots;
    int nonzero_padding = 0;
    // Rounds: the input, another input, the input again; snapshot the receive area of 0 and 2.
    for (const auto* inputs : {&first, &other, &first}) {
      const auto& input = (*inputs)[static_cast<std::size_t>(device.rank())];
      const ep::Received received =
          ep::dispatch(device, buffer,
                       {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
      std::vector<std::byte> bytes;  // only received rows: later slots may hold older rounds'
      for (int e = 0; e < layout.num_local_experts; ++e)
        for (int src = 0; src < layout.num_ranks; ++src)
          for (int slot = 0; slot < received.count(e, src); ++slot) {
            const std::byte* message = received.message(e, src, slot);
            nonzero_padding += std::any_of(message + data_bytes, message + layout.row_bytes,
                                           [](std::byte b) { return b != std::byte{0}; });
            bytes.insert(bytes.end(), message, message + layout.message_bytes);
          }
      if (inputs == &first) snapshots.push_back(std::move(bytes));
      std::vector<bf16> expert_out(layout.num_messages() * 80);
      cmx::test::run_stand_in_experts(received, layout, device.rank(), expert_out);
      std::vector<bf16> y(input.x.size());
      ep::combine(device, buffer,
                  {.expert_out = expert_out, .topk_weights = input.topk_weights, .y = y});
    }
    CHECK(snapshots[0] == snapshots[1]);
    CHECK(nonzero_padding == 0);
  }
}
