// SPDX-License-Identifier: Apache-2.0
// cmx::Device: the concept every backend implements, and the small types it speaks in.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include "cmx/core/bf16.hpp"
#include "cmx/core/local_arena.hpp"

namespace cmx {

/// Bytes of one flag in symmetric memory: one 32-byte slot, the unit an Ascend core moves and
/// maintains in cache at once. Layouts reserve this much per flag; the slot's content is the
/// backend's.
inline constexpr std::size_t kFlagBytes = 32;

/// Alignment of every symmetric allocation, in bytes.
inline constexpr std::size_t kSymmetricAlignment = 4096;

/// One block of a launch: an AIV core of an NPU, a oneTBB task on the CPU.
struct Block {
  int index;          ///< 0 <= index < count
  int count;          ///< blocks in this launch
  LocalArena& local;  ///< this block's bounded local memory, empty at the start of the block
};

/// What a timed-out wait reports (detail::wait_timeout_message): "<what> waited for rank
/// <peer_rank> (flag <index>)", with the expected and the observed sequence.
struct WaitSite {
  const char* what;  ///< the waiting call, e.g. "dispatch"
  int peer_rank;     ///< the rank expected to signal
  int index;         ///< which of that rank's flags (e.g. the local expert), -1 if none
};

namespace detail {

/// What every backend's timed-out wait says, so that the message reads the same on every
/// machine: "rank <rank>: <what> waited for rank <peer> (flag <index>), which never signalled:
/// expected sequence <expected>, flag holds <observed>".
inline std::string wait_timeout_message(int rank, const WaitSite& site, std::uint64_t expected,
                                        std::uint64_t observed) {
  std::string text = "rank " + std::to_string(rank) + ": " + site.what + " waited for rank " +
                     std::to_string(site.peer_rank);
  if (site.index >= 0) text += " (flag " + std::to_string(site.index) + ")";
  return text + ", which never signalled: expected sequence " + std::to_string(expected) +
         ", flag holds " + std::to_string(observed);
}

}  // namespace detail

/// A kernel every backend can launch: a plain-data object called as kernel(Block&), which a
/// backend may copy byte for byte onto another processor (see d.launch below). It reaches
/// memory only through the device it holds, the global memory it points to and Block::local;
/// the blocks of one launch may run on one object concurrently, so a call changes none of its
/// members.
template <class K>
concept BlockKernel = std::is_trivially_copyable_v<K> && std::invocable<K&, Block&>;

namespace detail {
/// The kernel the Device concept launches to check d.launch.
struct EmptyKernel {
  void operator()(Block&) const noexcept {}
};
}  // namespace detail

/// Requires: what a backend supplies. Every kernel is a template over this concept.
///
/// Ranks
///   d.rank(), d.world_size()                 this rank in [0, world_size), and the rank count.
///   d.max_blocks()                           blocks this rank runs at once (>= 1): a tuning
///                                            hint; any block count is correct.
///   D::kLocalMemoryBytes                     bytes of local memory per block (Block::local).
/// Symmetric memory (global memory, the same layout on every rank)
///   D::Symmetric                             a copyable handle to one allocation.
///   d.allocate_symmetric(bytes)              collective: every rank calls it with the same size
///                                            in the same order; the part is zero-filled,
///                                            kSymmetricAlignment-aligned, and lives as long as
///                                            the backend's world.
///   d.local(sym)                             this rank's part, as global memory of this rank
///                                            (an address for the blocks and for pointer
///                                            arithmetic; the host may not be able to read it).
///   d.write_local(sym, offset, source)       host: copies `source` (host memory, any size) into
///                                            this rank's part at byte `offset`. Visible to
///                                            the blocks of a later launch and, like a write
///                                            through d.local, published by a later signal.
///   d.read_local(sym, offset, out)           host: copies this rank's part at byte `offset`
///                                            into `out` (host memory, any size); sees what a
///                                            finished launch wrote and what the signals this
///                                            rank waited for published.
///   d.put(sym, rank, offset, bytes)          copies `bytes` (a tile of the calling block's
///                                            local memory: an NPU's DMA moves from there) into
///                                            `rank`'s part at byte `offset`: the peer write
///                                            (AIV-Direct). Called by blocks. offset and size
///                                            are multiples of 32. Not visible to the peer
///                                            until a later signal to it. May bypass this
///                                            rank's caches (the data is for the peer).
///   d.stage_in_peer<T>(local, sym, rank,     a read-only tile of `count` elements of T at byte
///                      offset, count)        `offset` of `rank`'s part: the peer read (an AIV
///                                            DMA from a peer's global memory; a copy into local
///                                            memory, or a zero-copy view that still counts
///                                            against it). offset and count * sizeof(T) are
///                                            multiples of 32. Called by blocks; sees what
///                                            `rank` published by a signal this rank waited for.
/// Signals (a flag is one kFlagBytes slot at a 32-byte-aligned offset of a symmetric part)
///   d.signal(sym, rank, offset, seq, payload) release: every put this rank issued before the
///                                            call, and every write to its own parts of
///                                            symmetric memory (through d.local), on its own
///                                            thread or in a finished launch, is visible to
///                                            `rank` before the flag reads `seq`. Called by the
///                                            rank, outside launches. Never clears.
///   d.wait(sym, offset, seq, site) -> payload acquire: blocks until the local flag's sequence
///                                            is >= seq; returns the payload signalled with it;
///                                            the data published before that signal is then
///                                            visible. Never spins forever: past the backend's
///                                            timeout it throws cmx::Error(timeout) naming this
///                                            rank and site. Outside launches only.
///   d.barrier()                              every rank arrives before any leaves, and what
///                                            any rank wrote before it (puts included) is
///                                            visible to every rank after it. Times out like
///                                            wait, naming the ranks that did not arrive.
/// Launch
///   d.launch(num_blocks, kernel)             runs kernel(Block&) for index 0..num_blocks-1 and
///                                            returns when all are done (a join: their writes
///                                            are then visible to the caller). Blocks must not
///                                            wait on each other or on peers. A backend whose
///                                            blocks run on another processor (Ascend) runs
///                                            each block on a byte copy of `kernel`: kernels
///                                            that run there are trivially copyable objects
///                                            that reach memory only through the device they
///                                            hold, global memory and Block::local.
/// Memory spaces: host memory is the rank's own (what its host code reads and writes: kernel
/// arguments documented as host memory, such as routing); global memory is what the blocks
/// read and write (symmetric parts, and the tensors documented as global memory). On the CPU
/// backends they are the same memory; on an NPU, host code reaches global memory only through
/// d.write_local and d.read_local.
/// Row operations (each block computes on tiles in its local memory)
///   (T in stage_in, stage_in_peer, prefetch, load and store is any trivially copyable element
///   type.)
///   d.stage_in(local, ptr, count)            a read-only tile with count elements of global
///                                            memory at ptr (copied into local memory, or a
///                                            zero-copy view that still counts against it).
///   d.prefetch(ptr, count)                   a hint: a block will stage `count` elements of
///                                            global memory at ptr soon, so the machine may
///                                            start reading them (a CPU's cache prefetch).
///                                            Returns at once, changes nothing a kernel can
///                                            see; may do nothing.
///   d.load(tile, ptr)                        copies tile.size() elements of global memory at
///                                            ptr into a tile of local memory.
///   d.store(ptr, tile)                       writes a tile to global memory of this rank.
///   d.quantize_row_int8(row, out) -> scale   cmx::quantize_row_int8, bit for bit.
///   d.accumulate_weighted_rows(acc, rows, w) cmx::accumulate_weighted_rows, bit for bit: the
///                                            rows (tiles) added in order, weight w[k] for
///                                            rows[k] (w.size() == rows.size(); w in any memory
///                                            the block reads, such as its own variables).
///   d.round_row_to_bf16(in, out)             cmx::round_row_to_bf16, bit for bit.
// clang-format off  (clang-format 14 flattens requires-expressions)
template <class D>
concept Device = std::copy_constructible<D> &&
    requires(D d, const D cd, typename D::Symmetric sym, std::size_t bytes, int rank,
             std::uint64_t seq, std::int64_t payload, LocalArena& local, detail::EmptyKernel kernel,
             const bf16* global_bf16, bf16* global_bf16_out, std::span<const bf16> row,
             std::span<std::int8_t> codes, std::span<float> acc, std::span<const float> values,
             std::span<bf16> rounded, std::span<const std::byte> source,
             std::span<const std::span<const bf16>> tiles) {
  { cd.rank() } -> std::same_as<int>;
  { cd.world_size() } -> std::same_as<int>;
  { cd.max_blocks() } -> std::same_as<int>;
  { D::kLocalMemoryBytes } -> std::convertible_to<std::size_t>;
  { d.allocate_symmetric(bytes) } -> std::same_as<typename D::Symmetric>;
  { cd.local(sym) } -> std::same_as<std::byte*>;
  { d.write_local(sym, bytes, source) } -> std::same_as<void>;
  { cd.read_local(sym, bytes, std::span<std::byte>()) } -> std::same_as<void>;
  { d.put(sym, rank, bytes, source) } -> std::same_as<void>;
  {
    d.template stage_in_peer<bf16>(local, sym, rank, bytes, bytes)
    } -> std::same_as<std::span<const bf16>>;
  { d.signal(sym, rank, bytes, seq, payload) } -> std::same_as<void>;
  { d.wait(sym, bytes, seq, WaitSite{}) } -> std::same_as<std::int64_t>;
  { d.barrier() } -> std::same_as<void>;
  { d.launch(rank, kernel) } -> std::same_as<void>;
  { d.stage_in(local, global_bf16, bytes) } -> std::same_as<std::span<const bf16>>;
  { d.prefetch(global_bf16, bytes) } -> std::same_as<void>;
  { d.load(rounded, global_bf16) } -> std::same_as<void>;
  { d.store(global_bf16_out, row) } -> std::same_as<void>;
  { d.quantize_row_int8(row, codes) } -> std::same_as<float>;
  { d.accumulate_weighted_rows(acc, tiles, values) } -> std::same_as<void>;
  { d.round_row_to_bf16(values, rounded) } -> std::same_as<void>;
};
// clang-format on

}  // namespace cmx
