// SPDX-License-Identifier: Apache-2.0
// Host side of an expert-parallel MoE custom operator on Ascend: cmx's FusedDispatch, the
// engine's expert kernel (expert_kernel.hpp) and cmx's zero-copy FusedCombine, on one NPU per
// rank. Built here against the clean-room simulation (4 emulated NPUs, the result checked bit
// for bit against cmx's reference); with the CANN toolkit the same operator class compiles
// unchanged, and main() shows the ACL and SHMEM start-up, which we have not run.
#include <cmx/backend/ascend.hpp>
#include <cmx/ep/ep.hpp>
#include <cmx/reference/ep.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "expert_kernel.hpp"

using cmx::bf16;
using Device = cmx::ascend::Device;

namespace {

/// Copies host memory into global memory (device memory on the NPU), and back.
template <class T>
T* to_device(const std::vector<T>& host) {
  void* device = nullptr;
  cmx::ascend::check_acl(aclrtMalloc(&device, std::max<std::size_t>(32, host.size() * sizeof(T)),
                                     ACL_MEM_MALLOC_HUGE_FIRST),
                         "aclrtMalloc", "to_device");
  if (!host.empty())
    cmx::ascend::check_acl(aclrtMemcpy(device, host.size() * sizeof(T), host.data(),
                                       host.size() * sizeof(T), ACL_MEMCPY_HOST_TO_DEVICE),
                           "aclrtMemcpy", "to_device");
  return static_cast<T*>(device);
}
template <class T>
std::vector<T> to_host(const T* device, std::size_t size) {
  std::vector<T> host(size);
  if (size > 0)
    cmx::ascend::check_acl(aclrtMemcpy(host.data(), size * sizeof(T), device, size * sizeof(T),
                                       ACL_MEMCPY_DEVICE_TO_HOST),
                           "aclrtMemcpy", "to_host");
  return host;
}

/// The operator: made once per rank at start-up, then called per layer.
class MoeOp {
 public:
  MoeOp(Device device, const cmx::ep::Config& config)
      : device_(device),
        buffer_(device, config) {}  // collective: every rank makes it, with the same config

  /// y = sum_k topk_weights[t, k] * expert_{topk_idx[t, k]}(x[t]). x and y in device memory,
  /// the routing on the host (cmx plans the peer writes there).
  void forward(const bf16* x, std::span<const std::int32_t> topk_idx,
               std::span<const float> topk_weights, int num_tokens, bf16* y) {
    const std::size_t hidden = static_cast<std::size_t>(buffer_.config().hidden);
    (void)cmx::ep::dispatch(
        device_, buffer_,
        {.x = {x, num_tokens * hidden}, .topk_idx = topk_idx, .num_tokens = num_tokens});

    // The experts: one launch of the engine's kernel over what arrived (it reads the row
    // counts and first rows dispatch left in the buffer).
    const cmx::ep::Layout& layout = buffer_.layout();
    device_.launch(std::min(device_.max_blocks(), layout.num_local_experts * layout.num_ranks),
                   engine::StandInExperts<Device>{device_, buffer_.symmetric(), layout});

    // Zero-copy combine: the peers read the expert outputs where the kernel wrote them.
    cmx::ep::combine(
        device_, buffer_,
        {.expert_out = {}, .topk_weights = topk_weights, .y = {y, num_tokens * hidden}});
  }

 private:
  Device device_;
  cmx::ep::Buffer<Device> buffer_;
};

}  // namespace

int main() {
  constexpr int kRanks = 4;
  const cmx::ep::Config config{.num_experts = 16,
                               .max_tokens_per_rank = 32,
                               .hidden = 256,
                               .num_topk = 2,
                               .precision = cmx::ep::DispatchPrecision::int8,
                               .combine_source = cmx::ep::CombineSource::buffer};

  // Every rank's tokens and routing (an engine's attention and router make them).
  std::vector<cmx::reference::EpRankInput> inputs(kRanks);
  std::mt19937 random(2026);
  std::normal_distribution<float> activation(0.0f, 1.0f);
  for (int rank = 0; rank < kRanks; ++rank) {
    auto& input = inputs[rank];
    input.num_tokens = 20 + rank;
    for (int i = 0; i < input.num_tokens * config.hidden; ++i)
      input.x.push_back(bf16::from_float(activation(random)));
    for (int t = 0; t < input.num_tokens; ++t) {
      const int first = static_cast<int>(random() % 16);
      input.topk_idx.insert(input.topk_idx.end(), {first, (first + 5) % 16});
      input.topk_weights.insert(input.topk_weights.end(), {0.75f, 0.25f});
    }
  }

  // One NPU per rank: its host thread makes a World (after ACL and SHMEM are up) and the op.
  std::vector<std::vector<bf16>> y(kRanks);
  const auto run_rank = [&](int rank) {
    cmx::ascend::World world({.max_blocks = 8});  // AIV cores per launch
    MoeOp op(world.device(), config);
    const auto& input = inputs[rank];
    bf16* x = to_device(input.x);
    bf16* y_device = to_device(std::vector<bf16>(input.x.size()));
    op.forward(x, input.topk_idx, input.topk_weights, input.num_tokens, y_device);
    y[rank] = to_host(y_device, input.x.size());
    (void)aclrtFree(x);
    (void)aclrtFree(y_device);
  };
#if defined(CMX_ASCEND_SIM)
  cmx::ascend_sim::Machine machine({.num_npus = kRanks, .cores_per_npu = 8});
  machine.run(run_rank);
#else
  // On the NPUs: one process per rank (RANK set by the launcher), SHMEM bootstrapped over TCP
  // from rank 0's address as the CANN SHMEM documentation shows. Not run by us.
  const int rank = std::atoi(std::getenv("RANK"));
  aclInit(nullptr);
  aclrtSetDevice(rank);
  aclshmemx_init_attr_t attributes{};
  attributes.my_rank = rank;
  attributes.n_ranks = kRanks;
  std::strncpy(attributes.ip_port, std::getenv("CMX_SHMEM_IP_PORT"),
               sizeof(attributes.ip_port) - 1);
  attributes.local_mem_size = 1ull << 30;  // the symmetric heap, per NPU
  aclshmemx_init_attr(&attributes);
  run_rank(rank);
  aclshmem_finalize();
  aclFinalize();
  if (rank != 0) return 0;  // the check below needs every rank's y: rank 0 checks its own
#endif

  // Check against the reference: the same stand-in expert on the reference's delivered rows.
  const auto delivered = cmx::reference::dispatch(config, kRanks, inputs);
  int mismatches = 0;
  for (int rank = 0; rank < kRanks; ++rank) {
    if (y[rank].empty()) continue;  // not this process's rank
    std::vector<bf16> row(config.hidden);
    const auto expected = cmx::reference::combine(config, inputs[rank], [&](int t, int k) {
      const int expert = inputs[rank].topk_idx[t * config.num_topk + k];
      const int experts_per_rank = config.num_experts / kRanks;
      for (const auto& sent : delivered[expert / experts_per_rank][expert % experts_per_rank][rank])
        if (sent.src_token == t && sent.topk_slot == k)
          for (int h = 0; h < config.hidden; ++h)
            row[h] = bf16::from_float(sent.codes[h] * sent.scale *
                                      (static_cast<float>(expert + 1) / 16.0f));
      return std::span<const bf16>(row);
    });
    for (std::size_t i = 0; i < expected.size(); ++i) mismatches += y[rank][i] != expected[i];
  }
  std::printf("ascend moe_op: %d NPUs, %d experts, top-%d, hidden %d: %s\n", kRanks,
              config.num_experts, config.num_topk, config.hidden,
              mismatches == 0 ? "y matches the reference bit for bit" : "MISMATCH");
  return mismatches == 0 ? 0 : 1;
}
