// SPDX-License-Identifier: Apache-2.0
// cmx::ascend::World: what one NPU's host keeps for the Ascend backend, and the Device it hands
// out.
#pragma once

#include <chrono>

#include "cmx/backend/ascend/device.hpp"
#include "cmx/backend/ascend/toolkit.hpp"
#include "cmx/core/error.hpp"

namespace cmx::ascend {

/// The backend's settings on one NPU.
struct WorldConfig {
  /// AIV cores a launch may use (Device::max_blocks): at most the NPU's vector cores, every one
  /// resident at once. Required (>= 1).
  int max_blocks = 0;
  /// How long a wait for a peer's flag may last before it is cmx::Error(timeout) naming the
  /// peer (measured on the NPU by its system cycle counter).
  std::chrono::milliseconds timeout{10'000};
};

/// One NPU's part of the backend: made on that NPU's host thread, after the engine has
/// initialized CANN SHMEM (aclshmemx_init_attr, with the ranks bootstrapped from HCCL root
/// info or its own communicator) and selected the device (aclrtSetDevice); one World per PE.
/// It creates a stream for its launches and allocates 4 KiB of GM for kernel objects and flag
/// payloads. Not copyable or movable: its
/// Devices point to it.
class World {
 public:
  /// Throws cmx::Error(invalid_argument) for max_blocks < 1 or a timeout <= 0, cmx::Error(state) if
  /// the GM cannot be allocated.
  explicit World(const WorldConfig& config) {
    cmx::detail::require(config.max_blocks >= 1, ErrorCode::invalid_argument,
                         "ascend::WorldConfig::max_blocks must be >= 1, got ", config.max_blocks);
    cmx::detail::require(config.timeout.count() > 0, ErrorCode::invalid_argument,
                         "ascend::WorldConfig::timeout must be positive");
    state_.rank = aclshmem_my_pe();
    state_.world_size = aclshmem_n_pes();
    state_.max_blocks = config.max_blocks;
    state_.timeout_cycles = config.timeout.count() * 50'000;  // 50 cycles per microsecond
    void* memory = nullptr;
    detail::check_acl(aclrtMalloc(&memory, kGmBytes, ACL_MEM_MALLOC_HUGE_FIRST),
                      "ascend::World: aclrtMalloc");
    gm_ = memory;
    detail::check_acl(aclrtCreateStream(&state_.stream), "ascend::World: aclrtCreateStream");
    state_.kernel_object = gm_;
    state_.awaited = reinterpret_cast<detail::AwaitResult*>(static_cast<std::byte*>(gm_) +
                                                            detail::kKernelObjectBytes);
  }
  World(const World&) = delete;
  World& operator=(const World&) = delete;
  ~World() {
    (void)aclrtDestroyStream(state_.stream);
    (void)aclrtFree(gm_);
  }

  /// This NPU's device. Valid while the World lives.
  Device device() noexcept { return Device(state_); }

 private:
  static constexpr std::size_t kGmBytes = 4096;
  static_assert(detail::kKernelObjectBytes + kFlagBytes <= kGmBytes);

  detail::HostState state_;
  void* gm_ = nullptr;
};

}  // namespace cmx::ascend
