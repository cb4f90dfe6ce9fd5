// SPDX-License-Identifier: Apache-2.0
// cmx::mpi_backend::Device: the device trait on MPI, one rank per process, on one or many
// machines.
//
// A rank's symmetric part is MPI shared memory: a peer on its node writes it with plain stores
// (the TBB backend's peer write, AIV-Direct's), a peer on another node with MPI_Put, and reads
// it with MPI_Get; flags follow the same two paths (world_state.hpp). A rank's blocks run on
// oneTBB inside its process, as on the TBB backend; waits run on the rank's own thread.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "cmx/backend/cpu/device_base.hpp"
#include "cmx/backend/mpi/world_state.hpp"
#include "cmx/core/local_arena.hpp"
#include "cmx/device/bf16_attention.hpp"
#include "cmx/device/device.hpp"
#include "cmx/device/int8_matmul.hpp"

namespace cmx::mpi_backend {

/// This process's rank of a World, as the kernels see it. Cheap to copy; valid while its World
/// lives. Its members implement cmx::Device: their contracts are documented in
/// cmx/device/device.hpp (the row operations, staging and local memory come from
/// cpu::DeviceBase, shared with the TBB backend).
class Device : public cpu::DeviceBase<Device> {
 public:
  /// A symmetric allocation: its windows, and the parts this process maps.
  struct Symmetric {
    const detail::SymmetricWindow* window = nullptr;
    std::size_t bytes = 0;  // per rank
  };

  explicit Device(detail::WorldState& world) noexcept : world_(&world) {}

  int rank() const noexcept { return world_->rank(); }
  int world_size() const noexcept { return world_->num_ranks(); }
  int max_blocks() const noexcept { return world_->blocks_per_rank(); }

  /// Not part of cmx::Device: the World's communicator (its own duplicate), for an engine's MPI
  /// calls among the same ranks.
  MPI_Comm communicator() const noexcept { return world_->communicator(); }

  Symmetric allocate_symmetric(std::size_t bytes) {
    return Symmetric{&world_->allocate_symmetric(bytes), bytes};
  }

  std::byte* local(const Symmetric& sym) const noexcept { return part(sym, rank()); }

  /// A plain (or streaming) store into a mapped peer's part; MPI_Put to any other.
  void put(const Symmetric& sym, int dst_rank, std::size_t offset,
           std::span<const std::byte> source) {
    check_access(sym, dst_rank, offset, source.size(), "put");
    if (std::byte* destination = part(sym, dst_rank))
      copy_to_peer(destination + offset, source);
    else
      world_->put(*sym.window, dst_rank, offset, source);
  }

  /// Zero-copy from a mapped peer, like stage_in; MPI_Get into local memory from any other.
  template <class T>
  std::span<const T> stage_in_peer(LocalArena& local, const Symmetric& sym, int src_rank,
                                   std::size_t offset, std::size_t count) {
    check_access(sym, src_rank, offset, count * sizeof(T), "stage_in_peer");
    if (const std::byte* source = part(sym, src_rank))
      return view_of_peer<T>(local, source, offset, count);
    const std::span<T> tile = local.take<T>(count);
    world_->get(*sym.window, src_rank, offset, std::as_writable_bytes(tile));
    return tile;
  }

  void signal(const Symmetric& sym, int dst_rank, std::size_t offset, std::uint64_t sequence,
              std::int64_t payload) {
    check_access(sym, dst_rank, offset, kFlagBytes, "signal");
    fence_puts();
    world_->signal(*sym.window, dst_rank, offset, sequence, payload);
  }

  std::int64_t wait(const Symmetric& sym, std::size_t offset, std::uint64_t sequence,
                    const WaitSite& site) {
    check_access(sym, rank(), offset, kFlagBytes, "wait");
    return world_->wait(*sym.window, offset, sequence, site, world_->timeout());
  }

  void barrier() {
    fence_puts();
    world_->barrier();
  }

  template <class Body>
  void launch(int num_blocks, Body&& body) {
    run_blocks(world_->arena(), num_blocks, body);
  }

 private:
  friend class cpu::DeviceBase<Device>;  // check_access

  // `rank`'s part if this process maps it, else null.
  static std::byte* part(const Symmetric& sym, int rank) noexcept {
    return sym.window->parts[static_cast<std::size_t>(rank)];
  }

  void check_access(const Symmetric& sym, int rank, std::size_t offset, std::size_t bytes,
                    const char* what, bool dma_granularity = true) const {
    check_part(sym.window != nullptr, sym.bytes, world_size(), rank, offset, bytes, what,
               dma_granularity);
  }

  detail::WorldState* world_;
};

static_assert(cmx::Device<Device>, "the MPI backend must satisfy the device concept");
static_assert(cmx::Bf16AttentionDevice<Device>,
              "the MPI backend supplies the bf16 attention tiles");
static_assert(cmx::Int8MatmulDevice<Device>, "the MPI backend runs the INT8 GEMM kernels");

}  // namespace cmx::mpi_backend
