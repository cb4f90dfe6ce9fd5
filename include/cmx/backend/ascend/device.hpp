// SPDX-License-Identifier: Apache-2.0
// cmx::ascend::Device: the device trait on an Ascend NPU. A rank is an NPU (a CANN SHMEM PE),
// a block an AIV core, local memory the core's Unified Buffer, symmetric memory the SHMEM heap,
// and a peer write an AIV-Direct DMA into the address aclshmem_ptr gives for the peer.
//
// The hardware's rules live here, not in the kernels:
//   - every DMA is whole 32-byte units at 32-byte-aligned addresses (DataCopy), except the
//     host's plan copies and staged tiles of other sizes, which go through DataCopyPad;
//   - a block's local memory is kLocalMemoryBytes of UB, taken from the core's 192 KB;
//   - the vector and scalar writes of a tile are complete before a DMA reads it
//     (PipeBarrier<PIPE_ALL>), and a DMA out completes before the tile may be rewritten
//     (PipeBarrier<PIPE_MTE3>); a DMA in completes before the tile is read;
//   - a flag is one 32-byte slot {int32 sequence, int32 payload, zeros}, written by one DMA
//     after the data it publishes is complete, polled through the data cache with
//     DataCacheCleanAndInvalid before every look, for at most the world's timeout (counted in
//     system cycles), never cleared: sequences only grow.
//
// Host and cores: a Device is a small trivially copyable object. The host calls allocate,
// write_local, read_local, signal, wait, barrier and launch; a launch copies the kernel object
// (which holds a copy of the Device) into global memory, and each core runs it from a copy.
// The row operations, staging and puts run on the cores. Signals and waits, which the trait
// makes the host's, are one-core kernels here (RaiseFlag, AwaitFlag): correct, but a launch
// each; publishing from inside the send kernel is the step that makes it fast.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "cmx/backend/ascend/kernel_entry.hpp"
#include "cmx/backend/ascend/status.hpp"
#include "cmx/backend/ascend/toolkit.hpp"
#include "cmx/core/bf16.hpp"
#include "cmx/core/error.hpp"
#include "cmx/core/local_arena.hpp"
#include "cmx/core/quantize.hpp"
#include "cmx/device/device.hpp"

namespace cmx::ascend {

class Device;
class World;

namespace detail {

/// UB of one core: the kernel object's copy, then the block's local memory.
inline constexpr std::size_t kUbBytes = 192 * 1024;
/// GetSystemCycle's rate on Atlas A2 and A3 (50 MHz): an assumption for other NPUs.
inline constexpr std::int64_t kCyclesPerMillisecond = 50'000;
/// UB a kernel object may take (its copy from global memory).
inline constexpr std::size_t kKernelObjectBytes = 1024;
/// Elements of a row the row operations widen to float at once (their scratch is sized by it).
inline constexpr std::size_t kRowChunk = 2048;
/// UB of the row operations' scratch: a float chunk (the row widened, then scaled, then int32
/// codes), a second float chunk (|row|, row * 0, the weight), the half codes, the reductions'
/// work (two results per 64-element repeat) and their results.
inline constexpr std::size_t kScratchBytes =
    2 * kRowChunk * sizeof(float) + kRowChunk * 2 + 2 * (kRowChunk / 64) * sizeof(float) + 64;

/// What AwaitFlag leaves for the host.
struct AwaitResult {
  std::int32_t arrived;   // 1: the flag reached the sequence; 0: the timeout passed first
  std::int32_t payload;   // the flag's payload, if it arrived
  std::int32_t observed;  // the flag's sequence at the last look
};

/// What an NPU's host keeps for its Device: owned by cmx::ascend::World, never touched by a
/// core (a core's copy of the Device carries the pointer without following it).
struct HostState {
  int rank = 0;
  int world_size = 1;
  int max_blocks = 1;
  aclrtStream stream = nullptr;        // where launches are queued
  void* kernel_object = nullptr;       // GM: the copy of the kernel object a launch runs
  std::int64_t timeout_cycles = 0;     // of a wait, in system cycles (kCyclesPerMillisecond)
  AwaitResult* awaited = nullptr;      // GM, 32 B: what AwaitFlag saw
  std::byte* barrier_flags = nullptr;  // symmetric, [world_size] flags: rank r raises slot r
  std::uint64_t barrier_epoch = 0;     // barriers passed
};

}  // namespace detail

/// One NPU of a cmx::ascend::World, as the kernels see it (cmx::Device; each member's contract
/// is documented in cmx/device/device.hpp). Trivially copyable; valid while its World lives.
class Device {
 public:
  /// Bytes of a block's local memory: the UB left after the kernel object's copy and the row
  /// operations' scratch, rounded down to 32 KiB steps (combine's reduction needs 128 KiB at
  /// hidden 16384).
  static constexpr std::size_t kLocalMemoryBytes = 160 * 1024;
  static_assert(kLocalMemoryBytes + detail::kKernelObjectBytes + detail::kScratchBytes <=
                detail::kUbBytes);

  /// A symmetric allocation: this NPU's address of it in the SHMEM heap (the same offset on
  /// every PE; aclshmem_ptr gives a peer's).
  struct Symmetric {
    std::byte* base = nullptr;
    std::size_t bytes = 0;  // per rank
  };

  int rank() const noexcept { return rank_; }
  int world_size() const noexcept { return world_size_; }
  /// The AIV cores a launch may use (WorldConfig::max_blocks).
  int max_blocks() const noexcept { return max_blocks_; }

  // ---- Host ------------------------------------------------------------------------------

  /// aclshmem_malloc, zero-filled (the library leaves it uninitialized), then a barrier so no
  /// peer writes into it before the zeros.
  Symmetric allocate_symmetric(std::size_t bytes) {
    auto* base = static_cast<std::byte*>(aclshmem_malloc(bytes == 0 ? kTileAlignment : bytes));
    cmx::detail::require(base != nullptr, ErrorCode::capacity, "rank ", rank_,
                         ": aclshmem_malloc of ", bytes, " B failed (the SHMEM heap is full)");
    const Symmetric sym{base, bytes};
    const std::vector<std::byte> zeros(bytes);
    write_local(sym, 0, zeros);
    barrier();
    return sym;
  }

  std::byte* local(const Symmetric& sym) const noexcept { return sym.base; }

  void write_local(const Symmetric& sym, std::size_t offset, std::span<const std::byte> source) {
    check_range(sym, offset, source.size(), "write_local");
    if (source.empty()) return;
    check_acl(aclrtMemcpy(sym.base + offset, sym.bytes - offset, source.data(), source.size(),
                          ACL_MEMCPY_HOST_TO_DEVICE),
              "aclrtMemcpy", "ascend::Device::write_local");
  }

  void read_local(const Symmetric& sym, std::size_t offset, std::span<std::byte> out) const {
    check_range(sym, offset, out.size(), "read_local");
    if (out.empty()) return;
    check_acl(aclrtMemcpy(out.data(), out.size(), sym.base + offset, out.size(),
                          ACL_MEMCPY_DEVICE_TO_HOST),
              "aclrtMemcpy", "ascend::Device::read_local");
  }

  /// A one-core kernel that writes the flag slot {seq, payload} into `dst_rank`'s part with
  /// one DMA. Every earlier launch of this NPU has completed, so its puts precede the flag.
  /// The sequence and the payload must fit int32 (cmx::Error(invalid_argument) otherwise).
  void signal(const Symmetric& sym, int dst_rank, std::size_t offset, std::uint64_t sequence,
              std::int64_t payload);

  /// A one-core kernel that polls the flag (each look invalidates its cache line first) and
  /// leaves the payload for the host. Past WorldConfig::timeout, cmx::Error(timeout) naming
  /// this rank and `site`.
  std::int64_t wait(const Symmetric& sym, std::size_t offset, std::uint64_t sequence,
                    const WaitSite& site);

  /// Every NPU raises its slot of the world's barrier flags on every NPU, then waits for every
  /// NPU's: their earlier launches (puts included) have completed when they signal. Bounded like
  /// wait (not aclshmem_barrier_all, which waits without a limit): cmx::Error(timeout) names
  /// the first NPU that did not arrive. 2 * world_size one-core launches.
  void barrier();

  /// Copies `kernel` (trivially copyable: it reaches memory only through the Device it holds
  /// as its member `device`, global memory and Block::local) into global memory and runs it on
  /// `num_blocks` AIV cores (1 ... max_blocks()), returning when all are done.
  template <class Kernel>
  void launch(int num_blocks, const Kernel& kernel);

  // ---- Cores -----------------------------------------------------------------------------

  /// The peer write: one DMA from this core's UB into `dst_rank`'s part, complete on return.
  void put(const Symmetric& sym, int dst_rank, std::size_t offset,
           std::span<const std::byte> source) {
    check_dma_range(sym, dst_rank, offset, source.size(), "put");
    copy_out(aclshmem_ptr(sym.base + offset, dst_rank), source);
  }

  /// The peer read: one DMA from `src_rank`'s part into a tile of UB.
  template <class T>
  std::span<const T> stage_in_peer(LocalArena& local, const Symmetric& sym, int src_rank,
                                   std::size_t offset, std::size_t count) {
    check_dma_range(sym, src_rank, offset, count * sizeof(T), "stage_in_peer");
    const std::span<T> tile = local.take<T>(count);
    copy_in(std::as_writable_bytes(tile), aclshmem_ptr(sym.base + offset, src_rank));
    return tile;
  }

  /// A tile of `count` elements of T copied from global memory at `ptr` into UB.
  template <class T>
  std::span<const T> stage_in(LocalArena& local, const T* ptr, std::size_t count) {
    const std::span<T> tile = local.take<T>(count);
    copy_in(std::as_writable_bytes(tile), ptr);
    return tile;
  }

  /// Nothing: stage_in's DMA into UB is synchronous here, so there is nothing to start early.
  /// (On the NPU, a kernel overlaps a row's DMA with work by double-buffering its tiles.)
  template <class T>
  void prefetch(const T*, std::size_t) noexcept {}

  /// Copies tile.size() elements of global memory at `ptr` into `tile` (UB).
  template <class T>
  void load(std::span<T> tile, const T* ptr) {
    copy_in(std::as_writable_bytes(tile), ptr);
  }

  /// Copies `tile` (UB) to global memory at `ptr`.
  template <class T>
  void store(T* ptr, std::span<const T> tile) {
    copy_out(ptr, std::as_bytes(tile));
  }

  /// cmx::quantize_row_int8, bit for bit, on the vector unit, a chunk of kRowChunk at a time:
  /// widen exactly (Cast), amax = ReduceMax(Abs(x)), and Inf/NaN detected as a NaN in
  /// ReduceSum(x * 0) (what ReduceMax does with NaN is not documented); then one multiply by
  /// 127 / amax (computed by the scalar unit as on the CPU), round half to even into int32, and
  /// two exact casts to int8 (float -> half -> int8 would round twice).
  /// Like every row operation here, it starts after the scalar unit's and the DMA's earlier
  /// writes (the caller may have zeroed or staged the tiles) and returns with its vector work
  /// done (the caller may read or move the result at once): PipeBarrier<PIPE_ALL> at both ends.
  float quantize_row_int8(std::span<const bf16> row, std::span<std::int8_t> out) {
    const VectorSection section;
    const Scratch scratch = row_scratch();
    float amax = 0.0f;
    float poison = 0.0f;  // NaN iff an element is Inf or NaN
    for (std::size_t begin = 0; begin < row.size(); begin += detail::kRowChunk) {
      const auto count = static_cast<int32_t>(std::min(detail::kRowChunk, row.size() - begin));
      AscendC::Cast(scratch.x, ub_tensor(row.subspan(begin)), AscendC::RoundMode::CAST_NONE,
                    static_cast<uint32_t>(count));
      AscendC::Abs(scratch.y, scratch.x, count);
      AscendC::ReduceMax(scratch.result, scratch.y, scratch.work, count);
      AscendC::Muls(scratch.y, scratch.x, 0.0f, count);
      AscendC::ReduceSum(scratch.result[8], scratch.y, scratch.work, count);
      AscendC::SetFlag<AscendC::HardEvent::V_S>(EVENT_ID0);
      AscendC::WaitFlag<AscendC::HardEvent::V_S>(EVENT_ID0);
      amax = std::max(amax, scratch.result.GetValue(0));
      poison += scratch.result.GetValue(8);
    }
    const AscendC::LocalTensor<std::int8_t> codes = ub_tensor(out);
    if (std::isnan(poison) || amax < 0x1p-121f) {  // 127 / amax would overflow: flushed
      AscendC::Duplicate(codes.ReinterpretCast<std::int16_t>(), std::int16_t{0},
                         static_cast<int32_t>(out.size() / 2));  // no int8 Duplicate
      return std::isnan(poison) ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
    }
    const float inverse_scale = static_cast<float>(kInt8Max) / amax;
    const AscendC::LocalTensor<std::int32_t> integers = scratch.x.ReinterpretCast<std::int32_t>();
    for (std::size_t begin = 0; begin < row.size(); begin += detail::kRowChunk) {
      const auto count = static_cast<uint32_t>(std::min(detail::kRowChunk, row.size() - begin));
      AscendC::Cast(scratch.x, ub_tensor(row.subspan(begin)), AscendC::RoundMode::CAST_NONE, count);
      AscendC::Muls(scratch.x, scratch.x, inverse_scale, static_cast<int32_t>(count));
      AscendC::Cast(integers, scratch.x, AscendC::RoundMode::CAST_RINT, count);
      AscendC::Cast(scratch.codes, integers, AscendC::RoundMode::CAST_NONE, count);
      AscendC::Cast(codes[static_cast<uint32_t>(begin)], scratch.codes,
                    AscendC::RoundMode::CAST_NONE, count);
    }
    return amax / static_cast<float>(kInt8Max);
  }

  /// cmx::accumulate_weighted_rows, bit for bit: row after row, per chunk, widen the row (Cast),
  /// then FusedMulAdd(x, weight, acc) = weight * x + acc rounded once (assumed: the
  /// instruction's documentation does not say), and x copied back into acc by Muls(1), exact.
  void accumulate_weighted_rows(std::span<float> acc, std::span<const std::span<const bf16>> rows,
                                std::span<const float> weights) {
    const VectorSection section;
    const Scratch scratch = row_scratch();
    for (std::size_t k = 0; k < rows.size(); ++k)
      for (std::size_t begin = 0; begin < acc.size(); begin += detail::kRowChunk) {
        const auto count = static_cast<int32_t>(std::min(detail::kRowChunk, acc.size() - begin));
        const AscendC::LocalTensor<float> sums = ub_tensor(acc.subspan(begin));
        AscendC::Cast(scratch.x, ub_tensor(rows[k].subspan(begin)), AscendC::RoundMode::CAST_NONE,
                      static_cast<uint32_t>(count));
        AscendC::Duplicate(scratch.y, weights[k], count);
        AscendC::FusedMulAdd(scratch.x, scratch.y, sums, count);
        AscendC::Muls(sums, scratch.x, 1.0f, count);
      }
  }

  /// cmx::round_row_to_bf16, bit for bit: a Cast per chunk, round half to even.
  void round_row_to_bf16(std::span<const float> in, std::span<bf16> out) {
    const VectorSection section;
    for (std::size_t begin = 0; begin < in.size(); begin += detail::kRowChunk)
      AscendC::Cast(ub_tensor(out.subspan(begin)), ub_tensor(in.subspan(begin)),
                    AscendC::RoundMode::CAST_RINT,
                    static_cast<uint32_t>(std::min(detail::kRowChunk, in.size() - begin)));
  }

 private:
  friend class World;
  template <class Kernel>
  friend void detail::run_kernel(GM_ADDR kernel_object);

  explicit Device(detail::HostState& host) noexcept
      : rank_(host.rank),
        world_size_(host.world_size),
        max_blocks_(host.max_blocks),
        host_(&host) {}

  void check_range(const Symmetric& sym, std::size_t offset, std::size_t bytes,
                   const char* what) const {
    cmx::detail::require(sym.base != nullptr, ErrorCode::invalid_argument, what,
                         ": symmetric allocation is empty");
    cmx::detail::require(offset <= sym.bytes && bytes <= sym.bytes - offset, ErrorCode::capacity,
                         what, ": [", offset, ", ", offset + bytes,
                         ") is outside the symmetric part of ", sym.bytes, " B");
  }
  void check_dma_range(const Symmetric& sym, int rank, std::size_t offset, std::size_t bytes,
                       const char* what) const {
    check_range(sym, offset, bytes, what);
    cmx::detail::require(rank >= 0 && rank < world_size_, ErrorCode::invalid_argument, what,
                         ": rank ", rank, " out of range [0, ", world_size_, ")");
    cmx::detail::require(offset % kTileAlignment == 0 && bytes % kTileAlignment == 0,
                         ErrorCode::invalid_argument, what, ": offset ", offset, " and size ",
                         bytes, " must be multiples of ", kTileAlignment, " B");
  }

  /// `tile` (in this core's local memory) as a UB tensor of its element type. Throws
  /// cmx::Error(invalid_argument) for memory that is not the block's local memory.
  template <class T>
  AscendC::LocalTensor<std::remove_const_t<T>> ub_tensor(std::span<T> tile) const {
    const auto* first = reinterpret_cast<const std::byte*>(tile.data());
    const std::ptrdiff_t offset = first - local_base_;
    cmx::detail::require(
        local_base_ != nullptr && offset >= 0 &&
            static_cast<std::size_t>(offset) + tile.size_bytes() <= kLocalMemoryBytes,
        ErrorCode::invalid_argument,
        "ascend::Device: a tile the NPU moves or computes on must be in the block's local memory");
    return local_.Get<uint8_t>()[static_cast<uint32_t>(offset)]
        .template ReinterpretCast<std::remove_const_t<T>>();
  }
  AscendC::LocalTensor<uint8_t> ub_bytes(std::span<const std::byte> tile) const {
    return ub_tensor(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(tile.data()), tile.size()));
  }

  /// Brackets a row operation's vector work with PipeBarrier<PIPE_ALL>: what the scalar unit
  /// or a DMA wrote to its tiles before is visible to it, and its results are complete when it
  /// returns.
  struct VectorSection {
    VectorSection() { AscendC::PipeBarrier<PIPE_ALL>(); }
    ~VectorSection() { AscendC::PipeBarrier<PIPE_ALL>(); }
    VectorSection(const VectorSection&) = delete;
    VectorSection& operator=(const VectorSection&) = delete;
  };

  /// The row operations' UB scratch, carved from its buffer (detail::kScratchBytes).
  struct Scratch {
    AscendC::LocalTensor<float> x;       // [kRowChunk]
    AscendC::LocalTensor<float> y;       // [kRowChunk]
    AscendC::LocalTensor<half> codes;    // [kRowChunk]
    AscendC::LocalTensor<float> work;    // [2 * kRowChunk / 64]
    AscendC::LocalTensor<float> result;  // [16]: [0] a maximum, [8] a sum
  };
  Scratch row_scratch() const {
    const AscendC::LocalTensor<uint8_t> bytes = scratch_.Get<uint8_t>();
    constexpr uint32_t kFloats = detail::kRowChunk * sizeof(float);
    constexpr uint32_t kWork = 2 * (detail::kRowChunk / 64) * sizeof(float);
    return {bytes.ReinterpretCast<float>(), bytes[kFloats].ReinterpretCast<float>(),
            bytes[2 * kFloats].ReinterpretCast<half>(),
            bytes[2 * kFloats + detail::kRowChunk * 2].ReinterpretCast<float>(),
            bytes[2 * kFloats + detail::kRowChunk * 2 + kWork].ReinterpretCast<float>()};
  }

  /// GM -> UB, complete on return, after every earlier use of the tile. DataCopy for whole 32-byte
  /// units at an aligned address, DataCopyPad otherwise.
  void copy_in(std::span<std::byte> tile, const void* global) {
    if (tile.empty()) return;
    AscendC::GlobalTensor<uint8_t> source;
    source.SetGlobalBuffer(static_cast<__gm__ uint8_t*>(const_cast<void*>(global)), tile.size());
    const AscendC::LocalTensor<uint8_t> destination = ub_bytes(tile);
    const auto bytes = static_cast<uint32_t>(tile.size());
    AscendC::PipeBarrier<PIPE_ALL>();  // earlier vector and scalar reads of the tile are done
    if (bytes % kTileAlignment == 0 &&
        reinterpret_cast<std::uintptr_t>(global) % kTileAlignment == 0)
      AscendC::DataCopy(destination, source, bytes);
    else
      AscendC::DataCopyPad(destination, source, AscendC::DataCopyExtParams{1, bytes, 0, 0, 0},
                           AscendC::DataCopyPadExtParams<uint8_t>{});
    AscendC::PipeBarrier<PIPE_ALL>();  // the DMA in is complete before the tile is read
  }

  /// UB -> GM, after every earlier write of the tile, complete on return (the tile may be
  /// rewritten at once).
  void copy_out(void* global, std::span<const std::byte> tile) {
    if (tile.empty()) return;
    AscendC::GlobalTensor<uint8_t> destination;
    destination.SetGlobalBuffer(static_cast<__gm__ uint8_t*>(global), tile.size());
    const AscendC::LocalTensor<uint8_t> source = ub_bytes(tile);
    const auto bytes = static_cast<uint32_t>(tile.size());
    AscendC::PipeBarrier<PIPE_ALL>();  // the tile's vector and scalar writes are complete
    if (bytes % kTileAlignment == 0 &&
        reinterpret_cast<std::uintptr_t>(global) % kTileAlignment == 0)
      AscendC::DataCopy(destination, source, bytes);
    else
      AscendC::DataCopyPad(destination, source, AscendC::DataCopyExtParams{1, bytes, 0, 0, 0});
    // Complete, and every pipe past it: PIPE_MTE3 alone orders only later DMAs out, and the
    // scalar or vector unit could rewrite the tile while the DMA still reads it.
    AscendC::PipeBarrier<PIPE_ALL>();
  }

  int rank_;
  int world_size_;
  int max_blocks_;
  detail::HostState* host_;  // host only
  // Set on a core by run_kernel: the UB buffers of the block's local memory and of the row
  // operations' scratch.
  AscendC::TBuf<AscendC::TPosition::VECCALC> local_{};
  AscendC::TBuf<AscendC::TPosition::VECCALC> scratch_{};
  const std::byte* local_base_ = nullptr;
};

namespace detail {

/// A flag slot as one DMA writes it.
struct FlagSlot {
  std::int32_t sequence;
  std::int32_t payload;
  std::int32_t zeros[6];
};
static_assert(sizeof(FlagSlot) == kFlagBytes);

/// One core: writes {sequence, payload} into the flag at `offset` of `dst_rank`'s part.
struct RaiseFlag {
  Device device;
  Device::Symmetric symmetric;
  std::size_t offset;
  int dst_rank;
  std::int32_t sequence;
  std::int32_t payload;

  void operator()(Block& block) {
    const std::span<FlagSlot> slot = block.local.take<FlagSlot>(1);
    slot[0] = FlagSlot{sequence, payload, {}};
    device.put(symmetric, dst_rank, offset, std::as_bytes(slot));
  }
};

/// One core: polls this rank's flag at `flag` until its sequence is >= `sequence`, each look
/// through the data cache after invalidating the flag's line (a look without it could see a
/// stale line for ever), for at most `timeout_cycles` system cycles; then leaves an AwaitResult
/// at `result` for the host. A bounded poll rather than aclshmem_signal_wait_until, which waits
/// without a limit: a peer that never signals must become an error, not a hung NPU.
struct AwaitFlag {
  Device device;
  std::byte* flag;  // GM of this rank
  std::int32_t sequence;
  std::int64_t timeout_cycles;
  AwaitResult* result;  // GM

  void operator()(Block&) {
    AscendC::GlobalTensor<std::int32_t> slot;
    slot.SetGlobalBuffer(reinterpret_cast<__gm__ std::int32_t*>(flag),
                         kFlagBytes / sizeof(std::int32_t));
    const std::int64_t start = AscendC::GetSystemCycle();
    AwaitResult seen{0, 0, 0};
    for (;;) {
      AscendC::DataCacheCleanAndInvalid<std::int32_t, AscendC::CacheLine::SINGLE_CACHE_LINE>(slot);
      seen.observed = slot.GetValue(0);  // the sequence; the payload is in the same line
      if (seen.observed >= sequence) {
        seen.arrived = 1;
        seen.payload = slot.GetValue(1);
        break;
      }
      if (AscendC::GetSystemCycle() - start > timeout_cycles) break;
    }
    AscendC::GlobalTensor<std::int32_t> out;
    out.SetGlobalBuffer(reinterpret_cast<__gm__ std::int32_t*>(result), 3);
    out.SetValue(0, seen.arrived);
    out.SetValue(1, seen.payload);
    out.SetValue(2, seen.observed);
    AscendC::DataCacheCleanAndInvalid<std::int32_t, AscendC::CacheLine::SINGLE_CACHE_LINE>(out);
  }
};

/// The body of every cmx kernel on a core: copies the kernel object from global memory into
/// UB, gives the core's Device its local memory, and runs the block.
template <class Kernel>
void run_kernel(GM_ADDR kernel_object) {
  AscendC::TPipe pipe;
  AscendC::TBuf<AscendC::TPosition::VECCALC> object_buffer;
  AscendC::TBuf<AscendC::TPosition::VECCALC> local_buffer;
  pipe.InitBuffer(object_buffer, static_cast<uint32_t>(kKernelObjectBytes));
  pipe.InitBuffer(local_buffer, static_cast<uint32_t>(Device::kLocalMemoryBytes));
  AscendC::TBuf<AscendC::TPosition::VECCALC> scratch_buffer;
  pipe.InitBuffer(scratch_buffer, static_cast<uint32_t>(kScratchBytes));

  AscendC::GlobalTensor<uint8_t> source;
  source.SetGlobalBuffer(kernel_object, sizeof(Kernel));
  const AscendC::LocalTensor<uint8_t> staged = object_buffer.Get<uint8_t>();
  AscendC::DataCopyPad(
      staged, source, AscendC::DataCopyExtParams{1, static_cast<uint32_t>(sizeof(Kernel)), 0, 0, 0},
      AscendC::DataCopyPadExtParams<uint8_t>{});
  AscendC::PipeBarrier<PIPE_ALL>();
  std::array<std::byte, sizeof(Kernel)> bytes;
  std::memcpy(bytes.data(), staged.GetPhyAddr(), sizeof(Kernel));
  Kernel kernel = std::bit_cast<Kernel>(bytes);

  const AscendC::LocalTensor<uint8_t> local_tensor = local_buffer.Get<uint8_t>();
  auto* local_base = reinterpret_cast<std::byte*>(local_tensor.GetPhyAddr());
  kernel.device.local_ = local_buffer;
  kernel.device.scratch_ = scratch_buffer;
  kernel.device.local_base_ = local_base;
  LocalArena local(std::span<std::byte>(local_base, Device::kLocalMemoryBytes));
  Block block{static_cast<int>(AscendC::GetBlockIdx()), static_cast<int>(AscendC::GetBlockNum()),
              local};
  kernel(block);
}

}  // namespace detail
}  // namespace cmx::ascend

/// The backend's own kernels, compiled for the AIV cores with cmx's (see CMX_ASCEND_KERNELS).
#define CMX_ASCEND_FLAG_KERNELS(X)                           \
  X(cmx_ascend_raise_flag, ::cmx::ascend::detail::RaiseFlag) \
  X(cmx_ascend_await_flag, ::cmx::ascend::detail::AwaitFlag)
CMX_ASCEND_FLAG_KERNELS(CMX_ASCEND_DECLARE_ENTRY)

namespace cmx::ascend {

template <class Kernel>
void Device::launch(int num_blocks, const Kernel& kernel) {
  static_assert(BlockKernel<Kernel>,
                "an Ascend kernel runs from a byte copy: a plain-data object (cmx::BlockKernel)");
  static_assert(sizeof(Kernel) <= detail::kKernelObjectBytes, "kernel object too large");
  cmx::detail::require(num_blocks >= 1 && num_blocks <= max_blocks_, ErrorCode::invalid_argument,
                       "rank ", rank_, ": launch of ", num_blocks, " blocks, outside [1, ",
                       max_blocks_, "] (the AIV cores this world uses)");
  check_acl(aclrtMemcpy(host_->kernel_object, detail::kKernelObjectBytes, &kernel, sizeof(Kernel),
                        ACL_MEMCPY_HOST_TO_DEVICE),
            "aclrtMemcpy of the kernel object", "ascend::Device::launch");
  auto* object = static_cast<GM_ADDR>(host_->kernel_object);
  detail::KernelEntry<Kernel>::launch(static_cast<std::uint32_t>(num_blocks), host_->stream,
                                      object);
}

inline void Device::signal(const Symmetric& sym, int dst_rank, std::size_t offset,
                           std::uint64_t sequence, std::int64_t payload) {
  using Limits = std::numeric_limits<std::int32_t>;
  cmx::detail::require(sequence <= static_cast<std::uint64_t>(Limits::max()) &&
                           payload >= Limits::min() && payload <= Limits::max(),
                       ErrorCode::invalid_argument, "rank ", rank_, ": signal of sequence ",
                       sequence, " payload ", payload, ": an Ascend flag holds two int32");
  check_dma_range(sym, dst_rank, offset, kFlagBytes, "signal");
  launch(1, detail::RaiseFlag{*this, sym, offset, dst_rank, static_cast<std::int32_t>(sequence),
                              static_cast<std::int32_t>(payload)});
}

inline std::int64_t Device::wait(const Symmetric& sym, std::size_t offset, std::uint64_t sequence,
                                 const WaitSite& site) {
  cmx::detail::require(
      sequence <= static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max()),
      ErrorCode::invalid_argument, "rank ", rank_, ": wait for sequence ", sequence,
      ": an Ascend flag holds an int32");
  check_dma_range(sym, rank_, offset, kFlagBytes, "wait");
  launch(1, detail::AwaitFlag{*this, sym.base + offset, static_cast<std::int32_t>(sequence),
                              host_->timeout_cycles, host_->awaited});
  detail::AwaitResult result{};
  check_acl(aclrtMemcpy(&result, sizeof(result), host_->awaited, sizeof(result),
                        ACL_MEMCPY_DEVICE_TO_HOST),
            "aclrtMemcpy of the flag's payload", "ascend::Device::wait");
  if (result.arrived != 1)
    cmx::detail::fail(ErrorCode::timeout,
                      cmx::detail::wait_timeout_message(
                          rank_, site, sequence, static_cast<std::uint64_t>(result.observed)),
                      " (timed out after ", host_->timeout_cycles / detail::kCyclesPerMillisecond,
                      " ms)");
  return result.payload;
}

inline void Device::barrier() {
  const Symmetric flags{host_->barrier_flags, static_cast<std::size_t>(world_size_) * kFlagBytes};
  const std::uint64_t epoch = ++host_->barrier_epoch;
  const std::size_t mine = static_cast<std::size_t>(rank_) * kFlagBytes;
  for (int peer = 0; peer < world_size_; ++peer) signal(flags, peer, mine, epoch, 0);
  for (int peer = 0; peer < world_size_; ++peer)
    (void)wait(flags, static_cast<std::size_t>(peer) * kFlagBytes, epoch,
               WaitSite{"barrier", peer, -1});
}

static_assert(std::is_trivially_copyable_v<Device>, "a Device is copied onto the cores");
static_assert(cmx::Device<Device>, "the Ascend backend must satisfy the device concept");

}  // namespace cmx::ascend
