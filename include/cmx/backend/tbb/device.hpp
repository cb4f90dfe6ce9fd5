// SPDX-License-Identifier: Apache-2.0
// cmx::tbb_backend::Device: the device trait on one CPU process, a rank per thread.
//
// Symmetric memory is one heap part per rank; a peer write is a plain store into the peer's
// part, published by a release store of the flag and seen through an acquire load. Blocks run
// as oneTBB tasks in the rank's own arena; they never wait, so oneTBB's lack of a concurrency
// guarantee cannot deadlock them. Waits run on the rank's thread.
#pragma once

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <sstream>
#include <string_view>

#include "cmx/backend/tbb/wait.hpp"
#include "cmx/backend/tbb/world_state.hpp"
#include "cmx/core/error.hpp"
#include "cmx/core/quantize.hpp"
#include "cmx/device/device.hpp"
#include "cmx/device/int8_matmul.hpp"

namespace cmx::tbb_backend {

/// One rank of a World, as the kernels see it. Cheap to copy; valid while its World lives. Its
/// members implement cmx::Device: their contracts are documented in cmx/device/device.hpp.
class Device {
 public:
  /// Local memory per block: an Ascend 910 AIV core's Unified Buffer, so a kernel that fits
  /// here fits there.
  static constexpr std::size_t kLocalMemoryBytes = 192 * 1024;

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
    std::memcpy(part(sym, dst_rank) + offset, source.data(), source.size());
  }

  void signal(const Symmetric& sym, int dst_rank, std::size_t offset, std::uint64_t sequence,
              std::int64_t payload) {
    check_access(sym, dst_rank, offset, kFlagBytes, "signal");
    FlagSlot flag = flag_at(sym, dst_rank, offset);
    // The payload is written before the (seq_cst, so also release) store of the sequence, so a
    // waiter that acquires the sequence reads this payload. A peer overwrites it only for a
    // later sequence, which the protocol starts after this one was consumed.
    std::atomic_ref<std::int64_t>(*flag.payload).store(payload, std::memory_order_relaxed);
    detail::store_and_wake(flag.wake, sequence);
  }

  std::int64_t wait(const Symmetric& sym, std::size_t offset, std::uint64_t sequence,
                    const WaitSite& site) {
    check_access(sym, rank_, offset, kFlagBytes, "wait");
    FlagSlot flag = flag_at(sym, rank_, offset);
    std::atomic_ref<std::uint64_t> seen(*flag.wake.word);
    detail::wait_until(
        [&] { return seen.load(std::memory_order_acquire) >= sequence; }, flag.wake,
        world_->timeout(), [&] {
          std::ostringstream text;
          text << "rank " << rank_ << ": " << site.what << " waited for rank " << site.peer_rank;
          if (site.index >= 0) text << " (flag " << site.index << ")";
          text << ", which never signalled: expected sequence " << sequence << ", flag holds "
               << seen.load(std::memory_order_relaxed);
          return text.str();
        });
    return std::atomic_ref<std::int64_t>(*flag.payload).load(std::memory_order_relaxed);
  }

  void barrier() { world_->barrier(rank_); }

  template <class Body>
  void launch(int num_blocks, Body&& body) {
    if (num_blocks <= 0) return;
    if (num_blocks == 1 || detail::kThreadSanitizer) {  // no task overhead for one block
      for (int index = 0; index < num_blocks; ++index) run_block(index, num_blocks, body);
      return;
    }
    world_->arena(rank_).execute([&] {
      oneapi::tbb::parallel_for(oneapi::tbb::blocked_range<int>(0, num_blocks, 1),
                                [&](const oneapi::tbb::blocked_range<int>& blocks) {
                                  for (int b = blocks.begin(); b != blocks.end(); ++b)
                                    run_block(b, num_blocks, body);
                                });
    });
  }

  /// Zero-copy on the CPU: global memory is already cached memory. The tile still counts
  /// against the block's local memory, as it would on a backend that copies.
  template <class T>
  std::span<const T> stage_in(LocalArena& local, const T* global, std::size_t count) {
    local.reserve<T>(count);
    return {global, count};
  }

  template <class T>
  void load(std::span<T> tile, const T* global) {
    std::memcpy(tile.data(), global, tile.size_bytes());
  }

  template <class T>
  void store(T* global, std::span<const T> tile) {
    std::memcpy(global, tile.data(), tile.size_bytes());
  }

  float quantize_row_int8(std::span<const bf16> row, std::span<std::int8_t> out) noexcept {
    return cmx::quantize_row_int8(row, out);
  }
  void accumulate_weighted_row(std::span<float> acc, std::span<const bf16> row,
                               float weight) noexcept {
    cmx::accumulate_weighted_row(acc, row, weight);
  }
  void round_row_to_bf16(std::span<const float> in, std::span<bf16> out) noexcept {
    cmx::round_row_to_bf16(in, out);
  }

  // ---- cmx::Int8MatmulDevice (cmx/device/int8_matmul.hpp): the CPU's int8 tile product -----
  // Forwarded to the World's gemm::CpuInt8Matmul, whose tier is WorldConfig::int8_isa, else
  // CMX_ISA, else the best this CPU runs.

  static constexpr int kInt8PanelColumns = gemm::CpuInt8Matmul::kPanelColumns;
  std::size_t int8_panel_bytes(int k) const noexcept {
    return world_->int8_matmul().panel_bytes(k);
  }
  std::string_view int8_panel_format() const noexcept {
    return world_->int8_matmul().panel_format();
  }
  void pack_int8_panel(std::span<const std::int8_t> rows, int k, std::span<std::byte> panel) {
    world_->int8_matmul().pack_panel(rows, k, panel);
  }
  void int8_tile_product(const Int8TileProduct& product) {
    world_->int8_matmul().tile_product(product);
  }
  /// The tier this rank's int8 tile products run (resolved on first use).
  cpu::Isa int8_isa() const { return world_->int8_matmul().isa(); }
  // ---- end of cmx::Int8MatmulDevice ------------------------------------------------------------

 private:
  // A flag slot: the sequence at byte 0, the payload at byte 8, the count of the owner's
  // threads asleep on it at byte 16; the rest of the 32 B unused.
  struct FlagSlot {
    detail::WakeSite wake;  // the sequence, and its sleepers
    std::int64_t* payload;
  };

  static std::byte* part(const Symmetric& sym, int rank) noexcept {
    return sym.allocation->parts[static_cast<std::size_t>(rank)];
  }

  static FlagSlot flag_at(const Symmetric& sym, int rank, std::size_t offset) noexcept {
    std::byte* slot = part(sym, rank) + offset;
    return {{reinterpret_cast<std::uint64_t*>(slot), reinterpret_cast<std::uint32_t*>(slot + 16)},
            reinterpret_cast<std::int64_t*>(slot + 8)};
  }

  // The Ascend DMA rules, enforced here too so that a layout bug shows on the CPU: every access
  // is 32-byte aligned and sized, and stays inside the part.
  void check_access(const Symmetric& sym, int rank, std::size_t offset, std::size_t bytes,
                    const char* what) const {
    cmx::detail::require(sym.allocation != nullptr, ErrorCode::invalid_argument, what,
                         ": symmetric allocation is empty");
    cmx::detail::require(rank >= 0 && rank < world_size(), ErrorCode::invalid_argument, what,
                         ": rank ", rank, " out of range [0, ", world_size(), ")");
    cmx::detail::require(offset % kTileAlignment == 0 && bytes % kTileAlignment == 0,
                         ErrorCode::invalid_argument, what, ": offset ", offset, " and size ",
                         bytes, " must be multiples of ", kTileAlignment, " B");
    cmx::detail::require(offset <= sym.bytes && bytes <= sym.bytes - offset, ErrorCode::capacity,
                         what, ": [", offset, ", ", offset + bytes,
                         ") is outside the symmetric part of ", sym.bytes, " B");
  }

  // Each thread owns one block-sized local memory, whatever kernel it runs (so it lives in a
  // function that is not a template); a block has it to itself while it runs.
  static std::span<std::byte> thread_local_memory() {
    struct alignas(kTileAlignment) LocalMemory {
      std::byte bytes[kLocalMemoryBytes];
    };
    thread_local const std::unique_ptr<LocalMemory> memory = std::make_unique<LocalMemory>();
    return {memory->bytes, kLocalMemoryBytes};
  }

  template <class Body>
  static void run_block(int index, int count, Body& body) {
    LocalArena local(thread_local_memory());
    Block block{index, count, local};
    body(block);
  }

  detail::WorldState* world_;
  int rank_;
};

static_assert(cmx::Device<Device>, "the TBB backend must satisfy the device concept");
static_assert(cmx::Int8MatmulDevice<Device>, "the TBB backend runs the INT8 GEMM kernels");

}  // namespace cmx::tbb_backend
