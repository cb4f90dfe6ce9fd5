// SPDX-License-Identifier: Apache-2.0
// cmx::ascend::World: what one NPU's host keeps for the Ascend backend, and the Device it hands
// out.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <type_traits>
#include <vector>

#include "cmx/backend/ascend/device.hpp"
#include "cmx/backend/ascend/status.hpp"
#include "cmx/backend/ascend/toolkit.hpp"
#include "cmx/core/error.hpp"

namespace cmx::ascend {

/// The backend's settings on one NPU.
struct WorldConfig {
  /// AIV cores a launch may use (Device::max_blocks): at most the NPU's vector cores, every one
  /// resident at once. Required (>= 1).
  int max_blocks = 0;
  /// How long a wait for a peer's flag (and a barrier) may last before it is
  /// cmx::Error(timeout) naming the peer, measured on the NPU by its system cycle counter.
  std::chrono::milliseconds timeout{10'000};
};

/// One NPU's part of the backend: made on that NPU's host thread, after the engine has
/// initialized CANN SHMEM (aclshmemx_init_attr, with the ranks bootstrapped from HCCL root
/// info or its own communicator) and selected the device (aclrtSetDevice); one World per PE,
/// made by every PE (collective: its barrier flags are symmetric memory, and the one
/// aclshmem_barrier_all that publishes their zeros is the only wait without a timeout). It
/// creates a stream for its launches and allocates 4 KiB of GM for kernel objects and flag
/// payloads. Not copyable or movable: its Devices point to it.
class World {
 public:
  /// Throws cmx::Error(invalid_argument) for max_blocks < 1 or a timeout <= 0,
  /// cmx::Error(transport) if an ACL call fails, cmx::Error(capacity) if the SHMEM heap is full.
  explicit World(const WorldConfig& config) {
    cmx::detail::require(config.max_blocks >= 1, ErrorCode::invalid_argument,
                         "ascend::WorldConfig::max_blocks must be >= 1, got ", config.max_blocks);
    cmx::detail::require(config.timeout.count() > 0, ErrorCode::invalid_argument,
                         "ascend::WorldConfig::timeout must be positive");
    state_.rank = aclshmem_my_pe();
    state_.world_size = aclshmem_n_pes();
    state_.max_blocks = config.max_blocks;
    state_.timeout_cycles = config.timeout.count() * detail::kCyclesPerMillisecond;

    void* memory = nullptr;
    check_acl(aclrtMalloc(&memory, kGmBytes, ACL_MEM_MALLOC_HUGE_FIRST), "aclrtMalloc",
              "ascend::World");
    gm_.reset(memory);
    state_.kernel_object = gm_.get();
    state_.awaited = reinterpret_cast<detail::AwaitResult*>(static_cast<std::byte*>(gm_.get()) +
                                                            detail::kKernelObjectBytes);
    aclrtStream stream = nullptr;
    check_acl(aclrtCreateStream(&stream), "aclrtCreateStream", "ascend::World");
    stream_.reset(stream);
    state_.stream = stream;

    const std::size_t flag_bytes = static_cast<std::size_t>(state_.world_size) * kFlagBytes;
    state_.barrier_flags = static_cast<std::byte*>(aclshmem_malloc(flag_bytes));
    cmx::detail::require(state_.barrier_flags != nullptr, ErrorCode::capacity, "rank ", state_.rank,
                         ": aclshmem_malloc of the barrier flags failed");
    const std::vector<std::byte> zeros(flag_bytes);
    check_acl(aclrtMemcpy(state_.barrier_flags, flag_bytes, zeros.data(), flag_bytes,
                          ACL_MEMCPY_HOST_TO_DEVICE),
              "aclrtMemcpy", "ascend::World");
    aclshmem_barrier_all();
  }
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  /// This NPU's device. Valid while the World lives.
  Device device() noexcept { return Device(state_); }

 private:
  static constexpr std::size_t kGmBytes = 4096;
  static_assert(detail::kKernelObjectBytes + kFlagBytes <= kGmBytes);

  struct FreeGm {
    void operator()(void* memory) const noexcept { (void)aclrtFree(memory); }
  };
  struct DestroyStream {
    void operator()(aclrtStream stream) const noexcept { (void)aclrtDestroyStream(stream); }
  };

  std::unique_ptr<void, FreeGm> gm_;
  std::unique_ptr<std::remove_pointer_t<aclrtStream>, DestroyStream> stream_;
  detail::HostState state_;
};

}  // namespace cmx::ascend
