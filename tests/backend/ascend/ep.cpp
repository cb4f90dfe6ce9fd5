// SPDX-License-Identifier: Apache-2.0
// FusedDispatch and FusedCombine on the Ascend backend, run by the clean-room simulation: 2, 4
// and 8 emulated NPUs, every AIV core a thread, UB bounded, DMA and cache rules checked. The
// kernels are the same templates as on the CPU backends and must match the same scalar
// reference bit for bit. This checks the backend's logic against the rules the simulation
// models (include/cmx/backend/ascend/README.md), not that it compiles with CANN or runs on an
// NPU.
#include "cmx/ep/ep.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "cmx/backend/ascend.hpp"
#include "ep_harness.hpp"
#include "sim_harness.hpp"

namespace {

namespace ep = cmx::ep;
using cmx::bf16;
using cmx::ascend::Device;
using cmx::ascend_sim::Machine;
using cmx::test::GmTensor;
using cmx::test::Routing;
using namespace std::chrono_literals;

constexpr int kCores = 4;  // AIV cores per emulated NPU

/// One dispatch, stand-in experts and combine on this NPU, checked against the reference.
/// The tokens, expert outputs and y live in GM; the host reads the receive area through a
/// copy (Device::read_local), as a host on an NPU must. Returns "" or the first mismatch.
template <class Pause>
std::string checked_round(Device& device, ep::Buffer<Device>& buffer,
                          const std::vector<cmx::reference::EpRankInput>& inputs,
                          const cmx::reference::DispatchedRows& expected, Pause&& pause) {
  const int rank = device.rank();
  const ep::Config& config = buffer.config();
  const ep::Layout& layout = buffer.layout();
  const auto& input = inputs[static_cast<std::size_t>(rank)];
  const GmTensor<bf16> x(input.x);
  pause(0);
  const ep::Received received = ep::dispatch(
      device, buffer, {.x = x.span(), .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});

  // The receive area, copied to the host, viewed with the segments' counts and first rows
  // that dispatch wrote into the buffer for the NPU's kernels (an engine's expert kernel reads
  // them there).
  std::vector<std::byte> part(layout.total_bytes);
  device.read_local(buffer.symmetric(), 0, part);
  const ep::Received host_view(
      layout, config.precision, part.data(),
      reinterpret_cast<const std::int32_t*>(part.data() + layout.received_counts_offset),
      reinterpret_cast<const std::int32_t*>(part.data() + layout.received_first_rows_offset),
      received.sequence());
  std::string mismatch = cmx::test::compare_received(host_view, rank, expected);

  pause(1);
  // The experts' outputs, computed on the host and copied into GM: the caller's tensor, or
  // in place into the buffer (zero-copy).
  const bool in_buffer = config.combine_source == ep::CombineSource::buffer;
  std::vector<bf16> expert_out(layout.num_messages() * static_cast<std::size_t>(config.hidden));
  cmx::test::run_stand_in_experts(host_view, layout, rank, expert_out);
  const GmTensor<bf16> caller_expert_out(in_buffer ? 0 : expert_out.size());
  GmTensor<bf16>::upload(expert_out,
                         in_buffer ? buffer.expert_out().data() : caller_expert_out.span().data());
  const GmTensor<bf16> y(input.x.size());
  pause(2);
  ep::combine(
      device, buffer,
      {.expert_out = caller_expert_out.span(), .topk_weights = input.topk_weights, .y = y.span()});
  if (mismatch.empty())
    mismatch = cmx::test::compare_y(y.download(), cmx::test::expected_y(config, rank, input), rank,
                                    config.hidden);
  return mismatch;
}

struct Case {
  int num_npus;
  int experts_per_rank;
  int hidden;
  int num_topk;
  int capacity;
  ep::DispatchPrecision precision = ep::DispatchPrecision::int8;
  ep::CombineSource combine_source = ep::CombineSource::caller_memory;
};

ep::Config config_of(const Case& c) {
  return {.num_experts = c.experts_per_rank * c.num_npus,
          .max_tokens_per_rank = c.capacity,
          .hidden = c.hidden,
          .num_topk = c.num_topk,
          .precision = c.precision,
          .combine_source = c.combine_source};
}

/// `num_rounds` rounds on a machine of c.num_npus NPUs, inputs changing every round; with
/// `skewed`, every NPU sleeps a random 0-2 ms before some stages.
void check_rounds(const Case& c, Routing routing, int num_rounds, bool skewed) {
  INFO("npus ", c.num_npus, " experts/rank ", c.experts_per_rank, " hidden ", c.hidden, " topk ",
       c.num_topk, " capacity ", c.capacity, " ",
       std::string(c.precision == ep::DispatchPrecision::int8 ? "int8" : "bf16"), " ",
       std::string(c.combine_source == ep::CombineSource::buffer ? "zero-copy" : "push"), " ",
       std::string(cmx::test::to_string(routing)));
  const ep::Config config = config_of(c);
  std::vector<std::vector<cmx::reference::EpRankInput>> inputs;
  std::vector<cmx::reference::DispatchedRows> expected;
  for (int round = 0; round < num_rounds; ++round) {
    inputs.push_back(cmx::test::make_inputs(
        config, c.num_npus, cmx::test::random_token_counts(c.num_npus, c.capacity, 100u + round),
        routing, 200u + round));
    expected.push_back(cmx::reference::dispatch(config, c.num_npus, inputs.back()));
  }
  std::vector<std::string> mismatches(static_cast<std::size_t>(c.num_npus));
  Machine machine({.num_npus = c.num_npus, .cores_per_npu = kCores, .timeout = 60'000ms});
  machine.run([&](int npu) {
    cmx::ascend::World world({.max_blocks = kCores});
    Device device = world.device();
    ep::Buffer<Device> buffer(device, config);
    std::mt19937 random(static_cast<unsigned>(npu) * 7919u + 1u);
    const auto pause = [&](int) {
      if (skewed && random() % 2 == 0)
        std::this_thread::sleep_for(std::chrono::microseconds(random() % 2000));
    };
    std::string& mismatch = mismatches[static_cast<std::size_t>(npu)];
    for (int round = 0; round < num_rounds; ++round) {
      const std::string m = checked_round(device, buffer, inputs[static_cast<std::size_t>(round)],
                                          expected[static_cast<std::size_t>(round)], pause);
      // Keep going on a mismatch: the other NPUs need this one's flags to finish their rounds.
      if (!m.empty() && mismatch.empty()) mismatch = "round " + std::to_string(round) + ": " + m;
    }
  });
  for (const std::string& mismatch : mismatches) CHECK_MESSAGE(mismatch.empty(), mismatch);
}

}  // namespace

TEST_CASE("Ascend (simulated): dispatch and combine match the reference on 2, 4 and 8 NPUs") {
  for (const int npus : {2, 4, 8})
    for (const auto precision : {ep::DispatchPrecision::int8, ep::DispatchPrecision::bf16})
      for (const auto source : {ep::CombineSource::caller_memory, ep::CombineSource::buffer})
        check_rounds({.num_npus = npus,
                      .experts_per_rank = 3,
                      .hidden = 80,  // int8 rows carry 16 bytes of padding
                      .num_topk = 5,
                      .capacity = 6,
                      .precision = precision,
                      .combine_source = source},
                     Routing::uniform, 2, false);
}

TEST_CASE("Ascend (simulated): every routing pattern, DeepSeek's hidden size, and top-16") {
  for (const Routing routing :
       {Routing::uniform, Routing::one_expert, Routing::all_masked, Routing::same_rank})
    check_rounds({.num_npus = 4, .experts_per_rank = 2, .hidden = 64, .num_topk = 4, .capacity = 5},
                 routing, 2, false);
  check_rounds({.num_npus = 2,
                .experts_per_rank = 4,
                .hidden = 7168,
                .num_topk = 8,
                .capacity = 3,
                .combine_source = ep::CombineSource::buffer},
               Routing::uniform, 1, false);
  // Top-16 of 16 experts, 1 in 8 choices masked: combine's reduction stages up to 16 rows per
  // token, in two unequal chunks of columns (3584 + 3568) within the core's Unified Buffer.
  check_rounds(
      {.num_npus = 2, .experts_per_rank = 8, .hidden = 7152, .num_topk = 16, .capacity = 2},
      Routing::uniform, 1, false);
}

TEST_CASE("Ascend (simulated): skewed NPU speeds over back-to-back rounds on the same buffer") {
  for (const auto source : {ep::CombineSource::caller_memory, ep::CombineSource::buffer})
    check_rounds({.num_npus = 4,
                  .experts_per_rank = 2,
                  .hidden = 32,
                  .num_topk = 3,
                  .capacity = 4,
                  .combine_source = source},
                 Routing::uniform, 12, true);
}

TEST_CASE("Ascend (simulated): a bad input fails its NPU at once and its peers with peer_failed") {
  const ep::Config config{.num_experts = 4, .max_tokens_per_rank = 2, .hidden = 32, .num_topk = 2};
  std::vector<cmx::ErrorCode> codes(2, cmx::ErrorCode::state);
  Machine machine({.num_npus = 2, .cores_per_npu = kCores, .timeout = 20'000ms});
  machine.run([&](int npu) {
    cmx::ascend::World world({.max_blocks = kCores});
    Device device = world.device();
    ep::Buffer<Device> buffer(device, config);
    const GmTensor<bf16> x(std::vector<bf16>(64, bf16::from_float(1.0f)));
    // NPU 0 names expert 4 of 4: out of range.
    const std::vector<std::int32_t> topk_idx =
        npu == 0 ? std::vector<std::int32_t>{0, 4, 1, 2} : std::vector<std::int32_t>{0, 1, 2, 3};
    try {
      (void)ep::dispatch(device, buffer, {.x = x.span(), .topk_idx = topk_idx, .num_tokens = 2});
    } catch (const cmx::Error& error) {
      codes[static_cast<std::size_t>(npu)] = error.code();
    }
  });
  CHECK(codes[0] == cmx::ErrorCode::invalid_argument);
  CHECK(codes[1] == cmx::ErrorCode::peer_failed);
}

TEST_CASE(
    "Ascend (simulated): an NPU that never calls dispatch makes the others time out naming it") {
  // The world's timeout (the NPU's own, in system cycles) ends the waits; the simulation's
  // longer one would only catch a hang.
  const ep::Config config{.num_experts = 3, .max_tokens_per_rank = 2, .hidden = 32, .num_topk = 1};
  Machine machine({.num_npus = 3, .cores_per_npu = kCores, .timeout = 60'000ms});
  std::string message;
  try {
    machine.run([&](int npu) {
      cmx::ascend::World world({.max_blocks = kCores, .timeout = 500ms});
      Device device = world.device();
      ep::Buffer<Device> buffer(device, config);
      if (npu == 2) return;  // never dispatches
      const GmTensor<bf16> x(std::vector<bf16>(32, bf16::from_float(1.0f)));
      const std::vector<std::int32_t> topk_idx{2};
      (void)ep::dispatch(device, buffer, {.x = x.span(), .topk_idx = topk_idx, .num_tokens = 1});
    });
  } catch (const cmx::Error& error) {
    CHECK(error.code() == cmx::ErrorCode::timeout);
    message = error.what();
  }
  INFO(message);
  CHECK(message.find("dispatch waited for rank 2") != std::string::npos);
  // The first dispatch of a buffer waits for sequence 1; rank 2's flag was never raised.
  CHECK(message.find("which never signalled: expected sequence 1, flag holds 0") !=
        std::string::npos);
  CHECK(message.find("(timed out after 500 ms)") != std::string::npos);
}
