// SPDX-License-Identifier: Apache-2.0
// FusedDispatch and FusedCombine on the Ascend backend, run by the clean-room simulation: up to
// 8 emulated NPUs, every AIV core a thread, UB bounded, DMA and cache rules checked. The
// kernels are the same templates as on the CPU backends and must match the same scalar
// reference bit for bit: the EP conformance suite (tests/conformance/ep.hpp), with the tokens,
// expert outputs and y in the NPUs' global memory; and the failure paths. This checks the
// backend's logic against the rules the simulation models (include/cmx/backend/ascend/README.md),
// not that it compiles with CANN or runs on an NPU.
#include "../../conformance/ep.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "cmx/backend/ascend.hpp"
#include "cmx/ep/ep.hpp"
#include "sim_harness.hpp"

namespace cmx::test {

/// The Ascend backend, simulated, as the conformance suite makes its ranks: one emulated NPU
/// per rank, each a host thread with its AIV cores as threads.
struct AscendRanks {
  using Device = ascend::Device;
  static constexpr int kCores = 4;              // AIV cores per emulated NPU, unless more blocks
  static constexpr int kMaxNpus = 8;            // 8 NPUs of 4 cores: 40 threads on 2 cores
  static constexpr int kBackToBackRounds = 50;  // each signal and wait is a kernel launch

  static std::string name() { return "ascend (simulated)"; }
  /// The wanted counts the simulation runs (at most kMaxNpus): a property asking only for more
  /// NPUs is skipped here.
  static std::vector<int> rank_counts(std::initializer_list<int> wanted) {
    std::vector<int> counts;
    std::copy_if(wanted.begin(), wanted.end(), std::back_inserter(counts),
                 [](int count) { return count <= kMaxNpus; });
    return counts;
  }

  /// The round with its tensors in GM; the host reads the receive area through a copy
  /// (Device::read_local), as a host on an NPU must, and views it with the segments' counts and
  /// first rows that dispatch wrote into the buffer for the NPU's kernels (an engine's expert
  /// kernel reads them there).
  template <class Look, class Pause>
  static std::vector<bf16> round(Device& device, ep::Buffer<Device>& buffer,
                                 const EpRankInput& input, Look&& look, Pause&& pause) {
    const ep::Config& config = buffer.config();
    const ep::Layout& layout = buffer.layout();
    const GmTensor<bf16> x(input.x);
    pause(0);
    const ep::Received received =
        ep::dispatch(device, buffer,
                     {.x = x.span(), .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
    std::vector<std::byte> part(layout.total_bytes);
    device.read_local(buffer.symmetric(), 0, part);
    const ep::Received host_view(
        layout, config.precision, part.data(),
        reinterpret_cast<const std::int32_t*>(part.data() + layout.received_counts_offset),
        reinterpret_cast<const std::int32_t*>(part.data() + layout.received_first_rows_offset),
        received.sequence());
    look(host_view);
    pause(1);
    // The experts' outputs, computed on the host and copied into GM: the caller's tensor, or
    // in place into the buffer (zero-copy).
    const bool in_buffer = config.combine_source == ep::CombineSource::buffer;
    std::vector<bf16> expert_out(layout.num_messages() * static_cast<std::size_t>(config.hidden));
    run_stand_in_experts(host_view, layout, device.rank(), expert_out);
    const GmTensor<bf16> caller_expert_out(in_buffer ? 0 : expert_out.size());
    GmTensor<bf16>::upload(
        expert_out, in_buffer ? buffer.expert_out().data() : caller_expert_out.span().data());
    const GmTensor<bf16> y(input.x.size());
    pause(2);
    ep::combine(device, buffer,
                {.expert_out = caller_expert_out.span(),
                 .topk_weights = input.topk_weights,
                 .y = y.span()});
    return y.download();
  }

  template <class Body>
  static std::vector<std::string> run(const RanksOptions& options, Body&& body) {
    const int cores = std::max(kCores, options.blocks_per_rank);
    std::vector<std::string> messages(static_cast<std::size_t>(options.num_ranks));
    // The world's timeout ends a wait; the simulation's longer one would only catch a hang.
    ascend_sim::Machine machine({.num_npus = options.num_ranks,
                                 .cores_per_npu = cores,
                                 .timeout = std::chrono::minutes(2)});
    machine.run([&](int npu) {
      ascend::World world(
          {.max_blocks = options.blocks_per_rank > 0 ? options.blocks_per_rank : kCores,
           .timeout = std::chrono::duration_cast<std::chrono::milliseconds>(options.timeout)});
      Device device = world.device();
      messages[static_cast<std::size_t>(npu)] = body(device);
    });
    return messages;
  }
};

}  // namespace cmx::test

TYPE_TO_STRING(cmx::test::AscendRanks);
CMX_EP_CONFORMANCE(cmx::test::AscendRanks);

namespace {

namespace ep = cmx::ep;
using cmx::bf16;
using cmx::ascend::Device;
using cmx::ascend_sim::Machine;
using cmx::test::GmTensor;
using namespace std::chrono_literals;

constexpr int kCores = cmx::test::AscendRanks::kCores;

}  // namespace

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
