// SPDX-License-Identifier: Apache-2.0
// The state one TBB world shares among its ranks: the symmetric heap, the barrier, the arenas.
#pragma once

#include <oneapi/tbb/task_arena.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "cmx/backend/cpu/wait.hpp"
#include "cmx/core/error.hpp"
#include "cmx/device/device.hpp"

namespace cmx::tbb_backend {

/// How a World runs its ranks.
struct WorldConfig {
  int num_ranks = 1;  ///< ranks, each a thread of its own (1 ... any; 320 is tested)
  /// Every wait and barrier gives up after this long with cmx::Error(timeout).
  std::chrono::nanoseconds timeout = std::chrono::seconds(10);
  /// Blocks of one rank that run at once (its oneTBB arena's concurrency). 0 picks
  /// max(1, hardware threads / num_ranks), so ranks do not oversubscribe the machine further.
  int blocks_per_rank = 0;
};

namespace detail {

/// Huge page size for large symmetric parts (x86-64 and most Linux platforms).
inline constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

/// One symmetric allocation: a part per rank, each allocated and first touched by its rank.
struct SymmetricAllocation {
  explicit SymmetricAllocation(int num_ranks) : parts(num_ranks, nullptr), sizes(num_ranks, 0) {}
  std::vector<std::byte*> parts;   // [num_ranks], part of rank r
  std::vector<std::size_t> sizes;  // [num_ranks], bytes each rank asked for
};

/// Everything the ranks of one world share. Owned by World; Device holds a pointer to it.
class WorldState {
 public:
  explicit WorldState(const WorldConfig& config)
      : num_ranks_(config.num_ranks),
        timeout_(config.timeout),
        blocks_per_rank_(config.blocks_per_rank > 0
                             ? config.blocks_per_rank
                             : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) /
                                               std::max(1, config.num_ranks))),
        ranks_(static_cast<std::size_t>(std::max(config.num_ranks, 0))) {
    cmx::detail::require(config.num_ranks >= 1, ErrorCode::invalid_argument,
                         "WorldConfig::num_ranks must be >= 1, got ", config.num_ranks);
    cmx::detail::require(config.timeout.count() > 0, ErrorCode::invalid_argument,
                         "WorldConfig::timeout must be positive");
  }

  ~WorldState() {
    for (auto& allocation : allocations_)
      for (std::byte* part : allocation->parts) std::free(part);
  }

  WorldState(const WorldState&) = delete;
  WorldState& operator=(const WorldState&) = delete;

  int num_ranks() const noexcept { return num_ranks_; }
  std::chrono::nanoseconds timeout() const noexcept { return timeout_; }
  int blocks_per_rank() const noexcept { return blocks_per_rank_; }

  /// The arena in which `rank`'s blocks run; created on first use by that rank's thread.
  oneapi::tbb::task_arena& arena(int rank) {
    RankState& state = ranks_[static_cast<std::size_t>(rank)];
    // More slots than hardware threads buys nothing and makes oneTBB warn; surplus blocks run
    // one after another on the threads there are.
    const int hardware = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    if (!state.arena)
      state.arena = std::make_unique<oneapi::tbb::task_arena>(std::min(blocks_per_rank_, hardware));
    return *state.arena;
  }

  /// Collective: allocates `rank`'s part of the next symmetric allocation and returns the table
  /// of all parts once every rank has allocated its own.
  const SymmetricAllocation& allocate_symmetric(int rank, std::size_t bytes) {
    RankState& state = ranks_[static_cast<std::size_t>(rank)];
    const std::size_t index = state.num_allocations++;
    SymmetricAllocation* allocation = nullptr;
    {
      std::lock_guard<std::mutex> lock(allocations_mutex_);
      while (allocations_.size() <= index)
        allocations_.push_back(std::make_unique<SymmetricAllocation>(num_ranks_));
      allocation = allocations_[index].get();
    }
    // Parts of 2 MiB or more are 2 MiB-aligned and asked to be backed by huge pages: peer
    // writes land megabytes apart (one segment per expert and source), and with 4 KiB pages
    // nearly every row would miss the TLB.
    const std::size_t alignment = bytes >= kHugePageBytes ? kHugePageBytes : kSymmetricAlignment;
    const std::size_t rounded = round_up(std::max<std::size_t>(bytes, 1), alignment);
    void* part = std::aligned_alloc(alignment, rounded);
    cmx::detail::require(part != nullptr, ErrorCode::capacity, "rank ", rank,
                         ": out of memory allocating ", rounded, " B of symmetric memory");
#if defined(MADV_HUGEPAGE)
    if (alignment == kHugePageBytes) madvise(part, rounded, MADV_HUGEPAGE);  // a hint: may fail
#endif
    std::memset(part, 0, rounded);  // zero-filled, and first touched by the rank that owns it
    allocation->parts[static_cast<std::size_t>(rank)] = static_cast<std::byte*>(part);
    allocation->sizes[static_cast<std::size_t>(rank)] = bytes;
    barrier(rank);  // publishes every part to every rank
    for (int peer = 0; peer < num_ranks_; ++peer) {
      cmx::detail::require(allocation->sizes[static_cast<std::size_t>(peer)] == bytes,
                           ErrorCode::config_mismatch, "symmetric allocation #", index, ": rank ",
                           rank, " asked for ", bytes, " B but rank ", peer, " asked for ",
                           allocation->sizes[static_cast<std::size_t>(peer)], " B");
    }
    return *allocation;
  }

  /// Every rank arrives before any leaves. Times out naming the ranks that did not arrive.
  void barrier(int rank) {
    RankState& state = ranks_[static_cast<std::size_t>(rank)];
    const std::uint64_t generation = ++state.barrier_generation;
    state.arrived_generation.store(generation, std::memory_order_relaxed);
    const cpu::detail::WakeSite released{&barrier_released_, &barrier_sleepers_};
    if (barrier_count_.fetch_add(1, std::memory_order_acq_rel) + 1 == num_ranks_) {
      barrier_count_.store(0, std::memory_order_relaxed);
      cpu::detail::store_and_wake(released,
                                  generation);  // seq_cst: releases what every rank wrote before
      return;
    }
    cpu::detail::wait_until(
        [&] {
          return std::atomic_ref<std::uint64_t>(barrier_released_)
                     .load(std::memory_order_acquire) >= generation;
        },
        released, timeout_,
        [&] {
          std::ostringstream missing;
          for (int peer = 0; peer < num_ranks_; ++peer)
            if (ranks_[static_cast<std::size_t>(peer)].arrived_generation.load(
                    std::memory_order_relaxed) < generation)
              missing << (missing.tellp() > 0 ? ", " : "") << peer;
          std::ostringstream text;
          text << "rank " << rank << " waited at barrier #" << generation << " for rank(s) "
               << missing.str() << ", which never arrived";
          return text.str();
        });
  }

 private:
  struct RankState {
    std::unique_ptr<oneapi::tbb::task_arena> arena;
    std::size_t num_allocations = 0;                   // symmetric allocations made by this rank
    std::uint64_t barrier_generation = 0;              // barriers this rank entered
    std::atomic<std::uint64_t> arrived_generation{0};  // read by waiters to name the missing
  };

  int num_ranks_;
  std::chrono::nanoseconds timeout_;
  int blocks_per_rank_;
  std::vector<RankState> ranks_;  // [num_ranks]
  std::mutex allocations_mutex_;
  std::vector<std::unique_ptr<SymmetricAllocation>> allocations_;
  std::atomic<int> barrier_count_{0};
  // The last barrier generation released, and the ranks asleep waiting for the next one; plain
  // words, accessed through std::atomic_ref, because a futex sleeps on their address.
  alignas(8) std::uint64_t barrier_released_ = 0;
  std::uint32_t barrier_sleepers_ = 0;
};

}  // namespace detail
}  // namespace cmx::tbb_backend
