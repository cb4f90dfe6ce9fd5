// SPDX-License-Identifier: Apache-2.0
// cmx::cpu::DeviceBase: what every CPU backend's Device shares (the TBB backend's and the MPI
// backend's): blocks run on oneTBB, each with a bounded local memory; zero-copy staging and the
// row operations; the host's copies into and out of this rank's part; the peer write into mapped
// memory; the checks of the Ascend DMA rules on every access to symmetric memory; the tier
// choice of the tile products.
#pragma once

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>

#include "cmx/backend/cpu/bf16_attention.hpp"
#include "cmx/backend/cpu/int8_matmul.hpp"
#include "cmx/backend/cpu/isa.hpp"
#include "cmx/backend/cpu/row_ops.hpp"
#include "cmx/backend/cpu/streaming_copy.hpp"
#include "cmx/core/bf16.hpp"
#include "cmx/core/error.hpp"
#include "cmx/core/local_arena.hpp"
#include "cmx/core/quantize.hpp"
#include "cmx/device/bf16_attention.hpp"
#include "cmx/device/device.hpp"
#include "cmx/device/int8_matmul.hpp"

namespace cmx::cpu {
namespace detail {

// True in a ThreadSanitizer build. libtbb itself is not instrumented, so TSan cannot see how
// oneTBB hands tasks and pooled memory between threads and reports those hand-offs as races.
// Such a build runs each rank's blocks one after another on the rank's own thread, without
// oneTBB, so what TSan checks is the inter-rank protocol, where the concurrency is. The block
// partitioning is unchanged: max_blocks() still reports the configured count.
#if defined(__SANITIZE_THREAD__)
inline constexpr bool kThreadSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif
#else
inline constexpr bool kThreadSanitizer = false;
#endif

// Each thread owns one block-sized local memory, whatever kernel or device type it runs (so it
// lives in a function that is not a template); a block has it to itself while it runs.
template <std::size_t kBytes>
std::span<std::byte> thread_local_memory() {
  struct alignas(kTileAlignment) LocalMemory {
    std::byte bytes[kBytes];
  };
  thread_local const std::unique_ptr<LocalMemory> memory = std::make_unique<LocalMemory>();
  return {memory->bytes, kBytes};
}

}  // namespace detail

/// The members of cmx::Device that do not depend on how ranks are connected, for a CPU backend's
/// `Derived` (CRTP): it derives from DeviceBase<Derived> and adds ranks, symmetric memory,
/// signals and launch, and supplies
///   d.local(sym) -> std::byte*                      this rank's part (public, cmx::Device);
///   d.check_access(sym, rank, offset, bytes, what,  the DMA-rule check of an access to `rank`'s
///                  dma_granularity)                 part (check_part below, with its sizes).
/// Their contracts are documented in cmx/device/device.hpp.
template <class Derived>
class DeviceBase {
 public:
  /// Local memory per block: an Ascend 910 AIV core's Unified Buffer, so a kernel that fits
  /// here fits there.
  static constexpr std::size_t kLocalMemoryBytes = 192 * 1024;

  /// A put of at least kStreamingPutBytes bypasses this core's caches (streaming stores), as
  /// the NPU's DMA into a peer's memory does: the bytes are for the peer, and writing them
  /// through the cache would first read every line of the destination (read for ownership).
  static constexpr std::size_t kStreamingPutBytes = 4096;

  /// The unit prefetch() asks for: an x86-64 or Arm cache line.
  static constexpr std::size_t kPrefetchLineBytes = 64;

  /// Zero-copy on the CPU: global memory is already cached memory. The tile still counts
  /// against the block's local memory, as it would on a backend that copies.
  template <class T>
  std::span<const T> stage_in(LocalArena& local, const T* global, std::size_t count) {
    local.reserve<T>(count);
    return {global, count};
  }

  /// A cache prefetch (to L1) of every line that holds one of the `count` elements: what
  /// stage_in later views is then on its way from memory. Prefetching never faults.
  template <class T>
  void prefetch(const T* global, std::size_t count) noexcept {
    const auto begin = reinterpret_cast<std::uintptr_t>(global) / kPrefetchLineBytes;
    const auto end = (reinterpret_cast<std::uintptr_t>(global + count) + kPrefetchLineBytes - 1) /
                     kPrefetchLineBytes;
    for (std::uintptr_t line = begin; line < end; ++line)
      __builtin_prefetch(reinterpret_cast<const void*>(line * kPrefetchLineBytes));
  }

  void write_local(const auto& sym, std::size_t offset, std::span<const std::byte> source) {
    self().check_access(sym, self().rank(), offset, source.size(), "write_local", false);
    if (!source.empty()) std::memcpy(self().local(sym) + offset, source.data(), source.size());
  }

  void read_local(const auto& sym, std::size_t offset, std::span<std::byte> out) const {
    self().check_access(sym, self().rank(), offset, out.size(), "read_local", false);
    if (!out.empty()) std::memcpy(out.data(), self().local(sym) + offset, out.size());
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
    return detail::quantize_row_int8(row, out);
  }
  void accumulate_weighted_rows(std::span<float> acc, std::span<const std::span<const bf16>> rows,
                                std::span<const float> weights) noexcept {
    detail::accumulate_weighted_rows(acc, rows, weights);
  }
  void round_row_to_bf16(std::span<const float> in, std::span<bf16> out) noexcept {
    cmx::round_row_to_bf16(in, out);
  }

  /// A copy of this device whose bf16 attention tiles run tier `isa` (tests and benchmarks run
  /// every tier this CPU has). Throws cmx::Error(invalid_argument) if this CPU cannot run it.
  Derived with_bf16_isa(Isa isa) const {
    Derived copy = self();
    copy.bf16_ = Bf16Attention(isa);
    return copy;
  }

  /// A copy of this device whose int8 tile products run tier `isa` (tests and benchmarks run
  /// every tier this CPU has). Throws cmx::Error(invalid_argument) if this CPU cannot run it,
  /// cmx::Error(state) if its self-check fails.
  Derived with_int8_isa(Isa isa) const {
    Derived copy = self();
    copy.int8_ = Int8Matmul(isa);
    return copy;
  }

  // bf16 attention tiles (cmx::Bf16AttentionDevice): the CPU micro-kernels of
  // cmx/backend/cpu/bf16_attention.hpp, at the process's tier unless with_bf16_isa says.

  /// The tier this device's bf16 attention tiles run.
  Isa bf16_isa() const { return bf16_.isa(); }
  void bf16_scores(const Bf16ScoresTile& tile) const { bf16_.scores(tile); }
  void bf16_exp_scores(const Bf16ExpTile& tile) const { bf16_.exp_scores(tile); }
  void bf16_accumulate_values(const Bf16ValuesTile& tile) const { bf16_.accumulate_values(tile); }

  // The int8 tile product (cmx::Int8MatmulDevice): the CPU micro-kernels of
  // cmx/backend/cpu/int8_matmul.hpp, at the process's tier unless with_int8_isa says.

  static constexpr int kInt8PanelColumns = Int8Matmul::kPanelColumns;
  /// The tier this device's int8 tile products run.
  Isa int8_isa() const { return int8_.isa(); }
  std::size_t int8_panel_bytes(int k) const noexcept { return int8_.panel_bytes(k); }
  std::string_view int8_panel_format() const noexcept { return int8_.panel_format(); }
  void pack_int8_panel(std::span<const std::int8_t> rows, int k, std::span<std::byte> panel) {
    int8_.pack_panel(rows, k, panel);
  }
  void int8_tile_product(const Int8TileProduct& product) { int8_.tile_product(product); }

 protected:
  /// The peer write into memory this process maps: streaming stores for a put of
  /// kStreamingPutBytes or more (weakly ordered: see fence_puts), else memcpy.
  /// (Not under ThreadSanitizer, which does not see GCC's streaming-store builtins.)
  static void copy_to_peer(std::byte* destination, std::span<const std::byte> source) {
    if (source.size() >= kStreamingPutBytes && !detail::kThreadSanitizer)
      detail::copy_streaming(destination, source.data(), source.size());
    else
      std::memcpy(destination, source.data(), source.size());
  }

  /// Orders the streaming stores of every put this thread issued before its later stores, so
  /// that what publishes the puts is seen after them (fence_streaming_stores). Called where
  /// puts become publishable: at the end of each block (run_block), and at the start of a
  /// launch, a signal or a barrier (for puts a rank issued outside a launch).
  static void fence_puts() noexcept { detail::fence_streaming_stores(); }

  /// A zero-copy view of `count` elements of T at `part + offset` (a peer's part this process
  /// maps), counted against the block's local memory.
  template <class T>
  static std::span<const T> view_of_peer(LocalArena& local, const std::byte* part,
                                         std::size_t offset, std::size_t count) {
    local.reserve<T>(count);
    return {reinterpret_cast<const T*>(part + offset), count};
  }

  /// The Ascend DMA rules, enforced on the CPU too so that a layout bug shows there: an access
  /// of `bytes` at `offset` of `rank`'s part (`part_bytes` long) of a symmetric allocation
  /// (`allocated` false: an empty handle) is 32-byte aligned and sized, names a rank of the
  /// world, and stays inside the part. Throws cmx::Error naming `what` otherwise.
  /// `dma_granularity`: offset and size must be multiples of kTileAlignment (every access but
  /// the host's write_local and read_local).
  static void check_part(bool allocated, std::size_t part_bytes, int world_size, int rank,
                         std::size_t offset, std::size_t bytes, const char* what,
                         bool dma_granularity = true) {
    cmx::detail::require(allocated, ErrorCode::invalid_argument, what,
                         ": symmetric allocation is empty");
    cmx::detail::require(rank >= 0 && rank < world_size, ErrorCode::invalid_argument, what,
                         ": rank ", rank, " out of range [0, ", world_size, ")");
    cmx::detail::require(
        !dma_granularity || (offset % kTileAlignment == 0 && bytes % kTileAlignment == 0),
        ErrorCode::invalid_argument, what, ": offset ", offset, " and size ", bytes,
        " must be multiples of ", kTileAlignment, " B");
    cmx::detail::require(offset <= part_bytes && bytes <= part_bytes - offset, ErrorCode::capacity,
                         what, ": [", offset, ", ", offset + bytes,
                         ") is outside the symmetric part of ", part_bytes, " B");
  }

  /// Runs body(Block&) for blocks 0..num_blocks-1 in `arena` and returns when all are done.
  /// One block, or a ThreadSanitizer build, runs them on the calling thread (no task overhead).
  template <class Body>
  static void run_blocks(oneapi::tbb::task_arena& arena, int num_blocks, Body& body) {
    static_assert(BlockKernel<Body>,
                  "a kernel is a plain-data object (cmx::BlockKernel), as on an NPU");
    if (num_blocks <= 0) return;
    fence_puts();  // puts this thread issued before the launch, for the blocks to read
    if (num_blocks == 1 || detail::kThreadSanitizer) {
      for (int index = 0; index < num_blocks; ++index) run_block(index, num_blocks, body);
      return;
    }
    arena.execute([&] {
      oneapi::tbb::parallel_for(oneapi::tbb::blocked_range<int>(0, num_blocks, 1),
                                [&](const oneapi::tbb::blocked_range<int>& blocks) {
                                  for (int b = blocks.begin(); b != blocks.end(); ++b)
                                    run_block(b, num_blocks, body);
                                });
    });
  }

 private:
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
  Derived& self() noexcept { return static_cast<Derived&>(*this); }

  template <class Body>
  static void run_block(int index, int count, Body& body) {
    LocalArena local(detail::thread_local_memory<kLocalMemoryBytes>());
    Block block{index, count, local};
    body(block);
    fence_puts();  // before the launch's join, which the rank's next signal publishes
  }

  Bf16Attention bf16_;
  Int8Matmul int8_;
};

}  // namespace cmx::cpu
