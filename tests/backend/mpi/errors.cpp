// SPDX-License-Identifier: Apache-2.0
// Bad inputs, bad order and missing ranks on the MPI backend: clear errors on every rank,
// nothing written, no hang (the TBB backend's tests/ep/errors.cpp, one rank per process).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "ep_harness.hpp"
#include "mpi_harness.hpp"

namespace {

using cmx::bf16;
using cmx::ErrorCode;
using cmx::mpi_backend::Device;
using cmx::mpi_backend::World;
using cmx::test::contains;
using cmx::test::Outcome;
using cmx::test::outcome_of;
using namespace std::chrono_literals;
namespace ep = cmx::ep;

// 4 experts per rank, whatever the process count.
ep::Config config_for(int num_ranks) {
  return {.num_experts = 4 * num_ranks, .max_tokens_per_rank = 8, .hidden = 32, .num_topk = 4};
}

std::vector<cmx::reference::EpRankInput> inputs_for(const ep::Config& config, int num_ranks,
                                                    std::uint64_t seed) {
  std::vector<int> tokens(static_cast<std::size_t>(num_ranks));
  for (int r = 0; r < num_ranks; ++r) tokens[static_cast<std::size_t>(r)] = r % 2 ? 5 : 8;
  return cmx::test::make_inputs(config, num_ranks, tokens, cmx::test::Routing::uniform, seed);
}

// Every rank but `failing_rank` failed fast with peer_failed, naming it and `call`.
void check_peers_failed_fast(const Outcome& outcome, int rank, int failing_rank,
                             const std::string& call) {
  if (rank == failing_rank) return;
  CHECK(outcome.code == ErrorCode::peer_failed);
  CHECK_MESSAGE(
      contains(outcome.message, "rank " + std::to_string(failing_rank) + " failed its " + call),
      outcome.message);
}

}  // namespace

TEST_CASE("a bad dispatch input fails on its rank before writing, and fast on every peer") {
  struct BadInput {
    const char* name;
    std::function<void(ep::DispatchArgs&, std::vector<std::int32_t>&)> corrupt;
    ErrorCode code;
    std::string says;
  };
  static const std::vector<bf16> too_many(9 * 32);
  static const std::vector<std::int32_t> too_many_idx(9 * 4, 0);
  const int num_ranks = cmx::test::world_size();
  const std::string past_end = std::to_string(4 * num_ranks);
  const BadInput cases[] = {
      {"expert id past the end", [&](auto&, auto& idx) { idx[6] = 4 * num_ranks; },
       ErrorCode::invalid_argument, "topk_idx[1, 2] = " + past_end + " is outside [-1, "},
      {"negative expert id below -1", [](auto&, auto& idx) { idx[0] = -2; },
       ErrorCode::invalid_argument, "is outside [-1, "},
      {"an expert named twice by one token",
       [](auto&, auto& idx) {
         idx[4] = 3;
         idx[5] = -1;
         idx[7] = 3;
       },
       ErrorCode::invalid_argument, "token 1 names expert 3 twice (k = 0 and 3)"},
      {"more tokens than the capacity",
       [](auto& args, auto&) { args = {.x = too_many, .topk_idx = too_many_idx, .num_tokens = 9}; },
       ErrorCode::capacity, "dispatch of 9 tokens, capacity (max_tokens_per_rank) is 8"},
      {"a negative token count", [](auto& args, auto&) { args.num_tokens = -1; },
       ErrorCode::invalid_argument, "num_tokens is -1"},
      {"x of the wrong size", [](auto& args, auto&) { args.x = args.x.first(args.x.size() - 1); },
       ErrorCode::invalid_argument, "x has"},
      {"topk_idx of the wrong size",
       [](auto& args, auto&) { args.topk_idx = args.topk_idx.first(args.topk_idx.size() - 1); },
       ErrorCode::invalid_argument, "topk_idx has"},
  };
  const ep::Config config = config_for(num_ranks);
  const auto inputs = inputs_for(config, num_ranks, 5);
  for (const BadInput& bad : cases) {
    INFO(bad.name);
    World world(MPI_COMM_WORLD, cmx::test::world_config(20s));  // failures must be fast
    Device device = world.device();
    const int rank = device.rank();
    ep::Buffer<Device> buffer(device, config);
    const auto& input = inputs[static_cast<std::size_t>(rank)];
    std::vector<std::int32_t> topk_idx = input.topk_idx;
    ep::DispatchArgs args{.x = input.x, .topk_idx = topk_idx, .num_tokens = input.num_tokens};
    if (rank == 1) bad.corrupt(args, topk_idx);
    const Outcome outcome = outcome_of([&] { ep::dispatch(device, buffer, args); });
    if (rank == 1) {
      CHECK(outcome.code == bad.code);
      CHECK_MESSAGE(contains(outcome.message, bad.says), outcome.message);
    }
    check_peers_failed_fast(outcome, rank, 1, "dispatch");
    CHECK(cmx::test::nothing_received_from(buffer, 1));
    CHECK(buffer.phase() == ep::Phase::failed);
  }
}

TEST_CASE("a bad combine input fails on its rank before writing, and fast on every peer") {
  const int num_ranks = cmx::test::world_size();
  const int bad_rank = num_ranks - 1;
  const ep::Config config = config_for(num_ranks);
  const auto inputs = inputs_for(config, num_ranks, 6);
  const ep::Layout layout(config, num_ranks);
  for (const std::string which : {"expert_out", "topk_weights", "y"}) {
    INFO(which);
    World world(MPI_COMM_WORLD, cmx::test::world_config(20s));
    Device device = world.device();
    const auto& input = inputs[static_cast<std::size_t>(device.rank())];
    ep::Buffer<Device> buffer(device, config);
    ep::dispatch(device, buffer,
                 {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
    std::vector<bf16> expert_out(layout.num_messages() * 32);
    std::vector<bf16> y(input.x.size());
    ep::CombineArgs args{.expert_out = expert_out, .topk_weights = input.topk_weights, .y = y};
    if (device.rank() == bad_rank) {
      if (which == "expert_out") args.expert_out = args.expert_out.first(32);
      if (which == "topk_weights") args.topk_weights = args.topk_weights.first(1);
      if (which == "y") args.y = args.y.first(0);
    }
    const Outcome outcome = outcome_of([&] { ep::combine(device, buffer, args); });
    if (device.rank() == bad_rank) {
      CHECK(outcome.code == ErrorCode::invalid_argument);
      CHECK_MESSAGE(contains(outcome.message, which + " has"), outcome.message);
    }
    check_peers_failed_fast(outcome, device.rank(), bad_rank, "combine");
  }
}

TEST_CASE("zero-copy combine reads only the buffer's expert_out") {
  const int num_ranks = cmx::test::world_size();
  ep::Config zero_copy = config_for(num_ranks);
  zero_copy.combine_source = ep::CombineSource::buffer;
  const auto inputs = inputs_for(zero_copy, num_ranks, 7);
  World world(MPI_COMM_WORLD, cmx::test::world_config(20s));
  Device device = world.device();
  const auto& input = inputs[static_cast<std::size_t>(device.rank())];
  ep::Buffer<Device> buffer(device, zero_copy);
  ep::dispatch(device, buffer,
               {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
  // Rank 0 passes a tensor of its own, of the right size: combine would not read it.
  std::vector<bf16> elsewhere(buffer.expert_out().size());
  std::vector<bf16> y(input.x.size());
  const Outcome outcome = outcome_of([&] {
    ep::combine(device, buffer,
                {.expert_out = device.rank() == 0 ? std::span<const bf16>(elsewhere)
                                                  : std::span<const bf16>(buffer.expert_out()),
                 .topk_weights = input.topk_weights,
                 .y = y});
  });
  if (device.rank() == 0) {
    CHECK(outcome.code == ErrorCode::invalid_argument);
    CHECK_MESSAGE(contains(outcome.message, "must be empty or that span"), outcome.message);
  }
  check_peers_failed_fast(outcome, device.rank(), 0, "combine");
}

TEST_CASE("configs that differ between ranks are reported on every rank") {
  World world(MPI_COMM_WORLD, cmx::test::world_config(20s));
  Device device = world.device();
  ep::Config config = config_for(device.world_size());
  if (device.rank() == device.world_size() - 1) config.hidden = 48;
  const Outcome outcome = outcome_of([&] { ep::Buffer<Device> buffer(device, config); });
  if (device.world_size() > 1) {
    CHECK(outcome.code == ErrorCode::config_mismatch);
    CHECK_MESSAGE(contains(outcome.message, "ep::Config differs between ranks"), outcome.message);
    CHECK_MESSAGE(contains(outcome.message, "hidden 48"), outcome.message);
  }
}

TEST_CASE("an invalid config is reported on every rank") {
  const int num_ranks = cmx::test::world_size();
  const std::pair<ep::Config, const char*> cases[] = {
      {{.num_experts = 4 * num_ranks + 1, .max_tokens_per_rank = 8, .hidden = 32, .num_topk = 4},
       "num_experts ("},
      {{.num_experts = 4 * num_ranks, .max_tokens_per_rank = 0, .hidden = 32, .num_topk = 4},
       "max_tokens_per_rank"},
      {{.num_experts = 4 * num_ranks, .max_tokens_per_rank = 8, .hidden = 24, .num_topk = 4},
       "hidden must be a multiple of 16"},
      {{.num_experts = 4 * num_ranks, .max_tokens_per_rank = 8, .hidden = 32, .num_topk = 17},
       "num_topk"},
  };
  World world(MPI_COMM_WORLD, cmx::test::world_config(20s));
  Device device = world.device();
  for (const auto& [bad_config, says] : cases) {
    const ep::Config config = bad_config;
    const Outcome outcome = outcome_of([&] { ep::Buffer<Device> buffer(device, config); });
    CHECK(outcome.code == ErrorCode::invalid_argument);
    CHECK_MESSAGE(contains(outcome.message, says), outcome.message);
  }
}

TEST_CASE("a rank that never calls dispatch: the others time out naming it") {
  World world(MPI_COMM_WORLD, cmx::test::world_config(cmx::test::kMissingRankTimeout));
  Device device = world.device();
  const int missing = device.world_size() - 1;
  const ep::Config config = config_for(device.world_size());
  const auto inputs = inputs_for(config, device.world_size(), 8);
  ep::Buffer<Device> buffer(device, config);
  if (device.rank() == missing) return;  // never dispatches
  const auto& input = inputs[static_cast<std::size_t>(device.rank())];
  const Outcome outcome = outcome_of([&] {
    ep::dispatch(device, buffer,
                 {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
  });
  CHECK(outcome.code == ErrorCode::timeout);
  CHECK_MESSAGE(contains(outcome.message, "dispatch waited for rank " + std::to_string(missing)),
                outcome.message);
}

TEST_CASE("a rank that never calls combine: the others time out naming it") {
  World world(MPI_COMM_WORLD, cmx::test::world_config(cmx::test::kMissingRankTimeout));
  Device device = world.device();
  const ep::Config config = config_for(device.world_size());
  const auto inputs = inputs_for(config, device.world_size(), 9);
  const auto& input = inputs[static_cast<std::size_t>(device.rank())];
  ep::Buffer<Device> buffer(device, config);
  ep::dispatch(device, buffer,
               {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
  if (device.rank() == 0) return;  // never combines
  std::vector<bf16> expert_out(buffer.layout().num_messages() * 32), y(input.x.size());
  const Outcome outcome = outcome_of([&] {
    ep::combine(device, buffer,
                {.expert_out = expert_out, .topk_weights = input.topk_weights, .y = y});
  });
  CHECK(outcome.code == ErrorCode::timeout);
  CHECK_MESSAGE(contains(outcome.message, "combine waited for rank 0"), outcome.message);
}

namespace {

// The MPI device, except that once armed, every put of `failing_rank` throws: a failure inside
// a kernel after its input check (as a broken link or a full buffer would be).
class FaultyDevice : public Device {
 public:
  FaultyDevice(Device device, int failing_rank)
      : Device(device), failing_(device.rank() == failing_rank) {}

  void arm() noexcept { armed_ = true; }

  void put(const Symmetric& sym, int rank, std::size_t offset, std::span<const std::byte> bytes) {
    if (failing_ && armed_) cmx::detail::fail(ErrorCode::capacity, "injected put failure");
    Device::put(sym, rank, offset, bytes);
  }

 private:
  bool failing_;
  bool armed_ = false;  // set on the rank's thread before a launch: the blocks see it
};
static_assert(cmx::Device<FaultyDevice>);

}  // namespace

TEST_CASE("a failure inside a kernel, after its checks, still fails every peer fast") {
  for (const std::string phase : {"dispatch", "combine"}) {
    INFO(phase);
    World world(MPI_COMM_WORLD, cmx::test::world_config(20s));
    const int failing_rank = world.num_ranks() - 1;
    FaultyDevice device(world.device(), failing_rank);
    const ep::Config config = config_for(device.world_size());
    const auto inputs = inputs_for(config, device.world_size(), 10);
    const auto& input = inputs[static_cast<std::size_t>(device.rank())];
    ep::Buffer<FaultyDevice> buffer(device, config);
    std::vector<bf16> expert_out(buffer.layout().num_messages() * 32), y(input.x.size());
    const Outcome outcome = outcome_of([&] {
      if (phase == "dispatch") device.arm();
      ep::dispatch(device, buffer,
                   {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
      device.arm();
      ep::combine(device, buffer,
                  {.expert_out = expert_out, .topk_weights = input.topk_weights, .y = y});
    });
    if (device.rank() == failing_rank)
      CHECK_MESSAGE(contains(outcome.message, "injected put failure"), outcome.message);
    else
      check_peers_failed_fast(outcome, device.rank(), failing_rank, phase);
  }
}
