// SPDX-License-Identifier: Apache-2.0
// A user's program: one EP round on 2 ranks; exits non-zero unless y is what the experts made.
#include <cmx/cmx.hpp>
#include <cstdio>
#include <vector>

int main() {
  const cmx::ep::Config config{
      .num_experts = 4, .max_tokens_per_rank = 2, .hidden = 16, .num_topk = 1};
  cmx::tbb_backend::World world({.num_ranks = 2});
  int wrong = 0;
  world.run([&](cmx::tbb_backend::Device device) {
    cmx::ep::Buffer<cmx::tbb_backend::Device> buffer(device, config);
    const std::vector<cmx::bf16> x(2 * 16, cmx::bf16::from_float(1.0f));
    const std::vector<std::int32_t> topk_idx = {0, 3};  // token 0 -> rank 0, token 1 -> rank 1
    const std::vector<float> weights = {1.0f, 0.5f};
    cmx::ep::dispatch(device, buffer, {.x = x, .topk_idx = topk_idx, .num_tokens = 2});
    // The "expert" outputs 2.0 for every row it received.
    std::vector<cmx::bf16> expert_out(buffer.layout().num_messages() * 16,
                                      cmx::bf16::from_float(2.0f));
    std::vector<cmx::bf16> y(2 * 16);
    cmx::ep::combine(device, buffer, {.expert_out = expert_out, .topk_weights = weights, .y = y});
    if (y[0].to_float() != 2.0f || y[16].to_float() != 1.0f) ++wrong;
  });
  std::printf("consumer: %s\n", wrong == 0 ? "ok" : "WRONG");
  return wrong == 0 ? 0 : 1;
}
