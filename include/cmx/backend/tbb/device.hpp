// SPDX-License-Identifier: Apache-2.0
// cmx::tbb_backend::Device: the device trait on one CPU process, a rank per thread.
//
// Symmetric memory is one heap part per rank; a peer write is a plain store into the peer's
// part, published by a release store of the flag and seen through an acquire load. Blocks run
// as oneTBB tasks in the rank's own arena; they never wait, so oneTBB's lack of a concurrency
// guarantee cannot deadlock them. Waits run on the rank's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "cmx/backend/cpu/device_base.hpp"
#include "cmx/backend/cpu/flag.hpp"
#include "cmx/backend/cpu/isa.hpp"
#include "cmx/backend/tbb/world_state.hpp"
#include "cmx/core/error.hpp"
#include "cmx/device/bf16_attention.hpp"
#include "cmx/device/device.hpp"
#include "cmx/device/int8_matmul.hpp"

namespace cmx::tbb_backend {

/// One rank of a World, as the kernels see it. Cheap to copy; valid while its World lives. Its
/// members implement cmx::Device: their contracts are documented in cmx/device/device.hpp (the
/// row operations, staging, local memory and the host copies come from cpu::DeviceBase).
class Device : public cpu::DeviceBase<Device> {
 public:
  /// A symmetric allocation: the table of every rank's part.
  struct Symmetric {
    const detail::SymmetricAllocation* allocation = nullptr;
    std::size_t bytes = 0;  // per rank
  };

  Device(detail::WorldState& world, int rank) noexcept : world_(&world), rank_(rank) {}

  int rank() const noexcept { return rank_; }
  int world_size() const noexcept { return world_->num_ranks(); }
  int max_blocks() const noexcept { return world_->blocks_per_rank(); }

  Symmetric allocate_symmetric(std::size_t bytes) {
    return Symmetric{&world_->allocate_symmetric(rank_, bytes), bytes};
  }

  std::byte* local(const Symmetric& sym) const noexcept { return part(sym, rank_); }

  void put(const Symmetric& sym, int dst_rank, std::size_t offset,
           std::span<const std::byte> source) {
    check_access(sym, dst_rank, offset, source.size(), "put");
    copy_to_peer(part(sym, dst_rank) + offset, source);
  }

  /// Zero-copy, like stage_in: the peer's part is plain memory of this process.
  template <class T>
  std::span<const T> stage_in_peer(LocalArena& local, const Symmetric& sym, int src_rank,
                                   std::size_t offset, std::size_t count) {
    check_access(sym, src_rank, offset, count * sizeof(T), "stage_in_peer");
    return view_of_peer<T>(local, part(sym, src_rank), offset, count);
  }

  void signal(const Symmetric& sym, int dst_rank, std::size_t offset, std::uint64_t sequence,
              std::int64_t payload) {
    check_access(sym, dst_rank, offset, kFlagBytes, "signal");
    fence_puts();
    flag_at(sym, dst_rank, offset).raise(sequence, payload);
  }

  std::int64_t wait(const Symmetric& sym, std::size_t offset, std::uint64_t sequence,
                    const WaitSite& site) {
    check_access(sym, rank_, offset, kFlagBytes, "wait");
    return flag_at(sym, rank_, offset).await(sequence, world_->timeout(), rank_, site, [] {});
  }

  void barrier() {
    fence_puts();
    world_->barrier(rank_);
  }

  template <class Body>
  void launch(int num_blocks, Body&& body) {
    run_blocks(world_->arena(rank_), num_blocks, body);
  }

 private:
  friend class cpu::DeviceBase<Device>;  // check_access

  static std::byte* part(const Symmetric& sym, int rank) noexcept {
    return sym.allocation->parts[static_cast<std::size_t>(rank)];
  }

  static cpu::detail::FlagSlot flag_at(const Symmetric& sym, int rank,
                                       std::size_t offset) noexcept {
    return {part(sym, rank) + offset, cpu::detail::Wakeup::process_futex};
  }

  void check_access(const Symmetric& sym, int rank, std::size_t offset, std::size_t bytes,
                    const char* what, bool dma_granularity = true) const {
    check_part(sym.allocation != nullptr, sym.bytes, world_size(), rank, offset, bytes, what,
               dma_granularity);
  }

  detail::WorldState* world_;
  int rank_;
};

static_assert(cmx::Device<Device>, "the TBB backend must satisfy the device concept");
static_assert(cmx::Bf16AttentionDevice<Device>,
              "the TBB backend supplies the bf16 attention tiles");
static_assert(cmx::Int8MatmulDevice<Device>, "the TBB backend runs the INT8 GEMM kernels");

}  // namespace cmx::tbb_backend
