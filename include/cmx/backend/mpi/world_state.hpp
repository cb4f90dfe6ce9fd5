// SPDX-License-Identifier: Apache-2.0
// The state of one MPI World on this process: its communicators, its symmetric windows, the
// flags (signal, wait, barrier) over shared memory and over MPI RMA, and its blocks' arena.
//
// Ranks on one node (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)) map each other's parts of every
// symmetric allocation, made by one MPI_Win_allocate_shared over the node: a peer write is a
// plain store, published by a release store of the flag in the peer's memory and a futex
// wake-up shared by the processes, exactly as the TBB backend does between threads. Ranks on
// other nodes reach the same memory through a second window over the world, MPI_Win_create on
// the shared part, under a passive-target epoch for the window's life (MPI_Win_lock_all): a put
// is MPI_Put (of a staged copy, completed by the next flush), a peer read MPI_Get, and a flag is
// published after MPI_Win_flush of the data by MPI_Put of its payload, then of its sequence, each
// flushed; its waiter polls its own slot (MPI_Win_sync before each look), sleeping between looks.
//
// MPI's collectives have no timeout, so every collective step of the backend (a symmetric
// allocation, a barrier, the World's teardown) first meets every rank through flags, which do:
// a rank that never arrives is named, within the timeout, by every rank that waited for it.
#pragma once

#include <mpi.h>
#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <ostream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "cmx/backend/cpu/flag.hpp"
#include "cmx/backend/cpu/wait.hpp"
#include "cmx/backend/mpi/error.hpp"
#include "cmx/backend/mpi/put_staging.hpp"
#include "cmx/core/error.hpp"
#include "cmx/core/local_arena.hpp"
#include "cmx/device/device.hpp"

namespace cmx::mpi_backend {

/// How ranks on one node reach each other's symmetric memory.
enum class IntraNode {
  /// Plain stores and loads: each maps the others' parts (MPI_Win_allocate_shared). The default.
  shared_memory,
  /// MPI_Put and MPI_Get, as between nodes: every rank as if alone on its node. For testing and
  /// measuring the internode path on one machine.
  rma,
};

/// How a World runs. Every rank must pass the same timeout and intra_node (checked).
struct WorldConfig {
  /// Every wait, barrier and collective step gives up after this long with cmx::Error(timeout).
  std::chrono::nanoseconds timeout = std::chrono::seconds(10);
  /// Blocks of this rank that run at once (its oneTBB arena's concurrency). 0 picks
  /// max(1, threads this process may use / ranks on this machine).
  int blocks_per_rank = 0;
  /// How ranks on one node reach each other's memory.
  IntraNode intra_node = IntraNode::shared_memory;
};

/// Prints "shared_memory" or "rma".
inline std::ostream& operator<<(std::ostream& out, IntraNode intra_node) {
  return out << (intra_node == IntraNode::rma ? "rma" : "shared_memory");
}

namespace detail {

using cpu::detail::FlagSlot;
using cpu::detail::Wakeup;

/// One symmetric allocation, as this process sees it.
struct SymmetricWindow {
  std::size_t bytes = 0;          // of each rank's part, as asked
  MPI_Win shared = MPI_WIN_NULL;  // over the node: the parts this process maps
  MPI_Win rma = MPI_WIN_NULL;     // over the world, on the same memory; none if no rank needs it
  std::vector<std::byte*> parts;  // [num_ranks] each rank's part, mapped here; null: by RMA only
  // True once this process has put into the window by RMA since its last flush.
  mutable std::atomic<bool> unflushed{false};
};

/// Everything one World keeps on this process. Owned by World; Device holds a pointer to it.
class WorldState {
 public:
  /// Collective over `communicator`: every rank makes its World with the same config.
  WorldState(MPI_Comm communicator, const WorldConfig& config) : config_(config) {
    int initialized = 0;
    check_mpi(MPI_Initialized(&initialized), "MPI_Initialized");
    cmx::detail::require(initialized != 0, ErrorCode::state,
                         "MPI is not initialized: make a cmx::mpi_backend::Environment (or call "
                         "MPI_Init_thread) before a World");
    cmx::detail::require(communicator != MPI_COMM_NULL, ErrorCode::invalid_argument,
                         "a World needs a communicator, got MPI_COMM_NULL");
    cmx::detail::require(config.timeout.count() > 0, ErrorCode::invalid_argument,
                         "WorldConfig::timeout must be positive");
    try {
      join(communicator);
      check_same_config();
      split_nodes();
      check_thread_support();
      // The flags start at sequence 0 on every rank before any rank raises one. (Open MPI
      // zero-fills a shared window, but not one over a single process.)
      const std::size_t control_bytes =
          kControlSlots * static_cast<std::size_t>(num_ranks_) * kFlagBytes;
      control_ = create_window(control_bytes);
      std::memset(control_->parts[static_cast<std::size_t>(rank_)], 0, control_bytes);
      MPI_Request request = MPI_REQUEST_NULL;
      check_mpi(MPI_Ibarrier(world_, &request), "rank ", rank_, ": MPI_Ibarrier");
      complete(request, [&] { return "rank " + std::to_string(rank_) + ": World setup"; });
    } catch (...) {
      release_communicators();
      throw;
    }
  }

  WorldState(const WorldState&) = delete;
  WorldState& operator=(const WorldState&) = delete;

  /// Collective. Frees the windows (MPI_Win_free synchronizes every rank) only if every rank
  /// gets here, within the timeout, with the same allocations and no failure; otherwise they
  /// are left to MPI_Finalize, so that no rank hangs in a teardown its peers never join.
  ~WorldState() {
    if (!agree_to_free()) {
      (void)staging_.release();  // puts may still read their staged sources
      return;
    }
    for (auto& window : allocations_) free_window(*window);
    free_window(*control_);
    release_communicators();
  }

  int rank() const noexcept { return rank_; }
  int num_ranks() const noexcept { return num_ranks_; }
  std::chrono::nanoseconds timeout() const noexcept { return config_.timeout; }
  int blocks_per_rank() const noexcept { return blocks_per_rank_; }
  /// Ranks whose memory this process maps: those on its node (itself alone with IntraNode::rma).
  int num_mapped_ranks() const noexcept { return num_mapped_ranks_; }
  /// The World's own communicator (a duplicate of the one it was made with).
  MPI_Comm communicator() const noexcept { return world_; }

  /// The arena in which this rank's blocks run; created on first use.
  oneapi::tbb::task_arena& arena() {
    // More slots than the threads this process may use (mpirun may bind it to one core) buys
    // nothing and makes oneTBB warn.
    if (!arena_)
      arena_ = std::make_unique<oneapi::tbb::task_arena>(
          std::min(blocks_per_rank_, oneapi::tbb::info::default_concurrency()));
    return *arena_;
  }

  /// Collective: the next symmetric allocation, every part zero-filled, `bytes` on every rank
  /// (a different size on any rank is cmx::Error(config_mismatch) on every rank).
  const SymmetricWindow& allocate_symmetric(std::size_t bytes) {
    const std::size_t index = allocations_.size();
    const std::string what = "symmetric allocation #" + std::to_string(index);
    // Every rank arrives, and agrees on the size, before the collective MPI calls.
    const std::vector<std::int64_t> sizes = exchange(static_cast<std::int64_t>(bytes), what);
    for (int peer = 0; peer < num_ranks_; ++peer)
      cmx::detail::require(
          sizes[static_cast<std::size_t>(peer)] == static_cast<std::int64_t>(bytes),
          ErrorCode::config_mismatch, what, ": rank ", rank_, " asked for ", bytes, " B but rank ",
          peer, " asked for ", sizes[static_cast<std::size_t>(peer)], " B");
    guarded([&] { allocations_.push_back(create_window(bytes)); });
    const SymmetricWindow& window = *allocations_.back();
    // First touched by the rank that owns it; published, and every rank's windows made, by the
    // barrier before any peer writes into it.
    std::memset(window.parts[static_cast<std::size_t>(rank_)], 0, bytes);
    barrier();
    return window;
  }

  /// The peer write by RMA (a rank this process does not map). Called by blocks, concurrently.
  void put(const SymmetricWindow& window, int dst_rank, std::size_t offset,
           std::span<const std::byte> source) {
    guarded([&] {
      // The caller may reuse its source (a block's local memory) when this returns; the copy
      // lives until the flush that completes this put (publish_before_rma_flag).
      const std::span<const std::byte> copy = staging_->local().stage(source);
      const auto lock = serialize();
      for_each_chunk(offset, copy.size(), [&](std::size_t at, int count) {
        check_mpi(MPI_Put(copy.data() + (at - offset), count, MPI_BYTE, dst_rank,
                          static_cast<MPI_Aint>(at), count, MPI_BYTE, window.rma),
                  "rank ", rank_, ": MPI_Put of ", count, " B to rank ", dst_rank);
      });
      window.unflushed.store(true, std::memory_order_relaxed);
    });
  }

  /// The peer read by RMA (a rank this process does not map). Called by blocks, concurrently.
  void get(const SymmetricWindow& window, int src_rank, std::size_t offset,
           std::span<std::byte> destination) {
    guarded([&] {
      const auto lock = serialize();
      for_each_chunk(offset, destination.size(), [&](std::size_t at, int count) {
        check_mpi(MPI_Get(destination.data() + (at - offset), count, MPI_BYTE, src_rank,
                          static_cast<MPI_Aint>(at), count, MPI_BYTE, window.rma),
                  "rank ", rank_, ": MPI_Get of ", count, " B from rank ", src_rank);
      });
      check_mpi(MPI_Win_flush_local(src_rank, window.rma), "rank ", rank_,
                ": MPI_Win_flush_local from rank ", src_rank);
    });
  }

  /// Release (cmx::Device::signal): the flag at `offset` of `dst_rank`'s part reads `sequence`
  /// and `payload` once every put of this rank and every write to its own parts is visible there.
  ///
  /// NOTES: to a mapped rank, the flag is raised with a release store (FlagSlot::raise), which
  /// orders this rank's plain and streaming stores (fenced by Device::fence_puts) before it,
  /// and blocks' stores before it through the launch's join. By RMA, the data is complete at the
  /// target (MPI_Win_flush_all of every window this rank put into) before the payload is put,
  /// and the payload before the sequence (each flushed), so a waiter that sees the sequence
  /// reads data and payload complete, even were the 8-byte put of the sequence seen torn.
  /// MPI_Win_sync orders this rank's stores to its own part before the flag (the unified
  /// memory model makes them visible to the peer's MPI_Get).
  void signal(const SymmetricWindow& window, int dst_rank, std::size_t offset,
              std::uint64_t sequence, std::int64_t payload) {
    guarded([&] {
      if (std::byte* part = window.parts[static_cast<std::size_t>(dst_rank)]) {
        FlagSlot(part + offset, Wakeup::shared_futex).raise(sequence, payload);
        return;
      }
      const auto lock = serialize();
      publish_before_rma_flag(window);
      put_word(window, dst_rank, offset + FlagSlot::kPayloadOffset, payload);
      put_word(window, dst_rank, offset + FlagSlot::kSequenceOffset, sequence);
    });
  }

  /// Acquire (cmx::Device::wait) on this rank's flag at `offset`, for at most `timeout`.
  /// `site.peer_rank` only picks how to sleep: woken through a shared futex if that rank is
  /// mapped here, polling otherwise; the result does not depend on it.
  std::int64_t wait(const SymmetricWindow& window, std::size_t offset, std::uint64_t sequence,
                    const WaitSite& site, std::chrono::nanoseconds timeout) {
    return guarded([&] {
      const bool woken = site.peer_rank >= 0 && site.peer_rank < num_ranks_ &&
                         window.parts[static_cast<std::size_t>(site.peer_rank)] != nullptr;
      const FlagSlot flag(window.parts[static_cast<std::size_t>(rank_)] + offset,
                          woken ? Wakeup::shared_futex : Wakeup::polling);
      return flag.await(sequence, timeout, rank_, site, [&] { sync(window); });
    });
  }

  /// Collective (cmx::Device::barrier): every rank arrives before any leaves, and what any rank
  /// wrote before it (puts included) is visible to every rank after it.
  void barrier() { exchange(0, "barrier #" + std::to_string(num_exchanges_ + 1)); }

  /// Collective: every rank contributes `value` and gets every rank's, [num_ranks]; a barrier.
  /// Past the timeout, cmx::Error(timeout) naming the ranks that never arrived at `what`.
  ///
  /// NOTES: exchange g uses the slot set g % 2. A rank overwrites its slot of set g % 2 on a
  /// peer only in exchange g + 2, which it enters after every rank has entered g + 1, so after
  /// that peer has read its slots of g.
  std::vector<std::int64_t> exchange(std::int64_t value, const std::string& what) {
    require_usable(what);
    const std::uint64_t generation = ++num_exchanges_;
    const std::size_t set = generation % 2;
    guarded([&] {
      const auto lock = serialize();
      for (const auto& window : allocations_) publish_before_rma_flag(*window);
    });
    for (int peer = 0; peer < num_ranks_; ++peer)
      signal(*control_, peer, exchange_slot(set, rank_), generation, value);
    std::vector<std::int64_t> values(static_cast<std::size_t>(num_ranks_));
    const auto deadline = Clock::now() + config_.timeout;
    for (int peer = 0; peer < num_ranks_; ++peer) {
      try {
        values[static_cast<std::size_t>(peer)] =
            wait(*control_, exchange_slot(set, peer), generation, {what.c_str(), peer, -1},
                 deadline - Clock::now());
      } catch (const Error& error) {
        if (error.code() != ErrorCode::timeout) throw;
        cmx::detail::fail(ErrorCode::timeout, "rank ", rank_, " waited at ", what, " for rank(s) ",
                          missing_from(set, generation), ", which never arrived (timed out after ",
                          std::chrono::duration<double>(config_.timeout).count(), " s)");
      }
    }
    return values;
  }

 private:
  using Clock = std::chrono::steady_clock;

  // The World's own flags, per rank: [2] sets of [num_ranks] exchange slots (one per source
  // rank), then [num_ranks] teardown slots.
  static constexpr std::size_t kControlSlots = 3;
  std::size_t exchange_slot(std::size_t set, int src_rank) const noexcept {
    return (set * static_cast<std::size_t>(num_ranks_) + static_cast<std::size_t>(src_rank)) *
           kFlagBytes;
  }
  std::size_t teardown_slot(int src_rank) const noexcept { return exchange_slot(2, src_rank); }

  // What each rank contributes to the config check.
  struct ConfigRecord {
    std::int64_t timeout_ns;
    std::int32_t intra_node;
    std::int32_t reserved;
  };

  // Meets every rank of `communicator` (a non-blocking duplicate, with the timeout).
  void join(MPI_Comm communicator) {
    int size = 0;
    check_mpi(MPI_Comm_size(communicator, &size), "MPI_Comm_size");
    check_mpi(MPI_Comm_rank(communicator, &rank_), "MPI_Comm_rank");
    MPI_Request request = MPI_REQUEST_NULL;
    check_mpi(MPI_Comm_idup(communicator, &world_, &request), "rank ", rank_, ": MPI_Comm_idup");
    try {
      complete(request, [&] {
        std::ostringstream text;
        text << "rank " << rank_ << " waited for every rank of its " << size
             << "-rank communicator to make its World; not all did";
        return text.str();
      });
    } catch (...) {
      world_ = MPI_COMM_NULL;  // not a communicator until the duplication completes
      throw;
    }
    check_mpi(MPI_Comm_set_errhandler(world_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check_mpi(MPI_Comm_size(world_, &num_ranks_), "MPI_Comm_size");
  }

  void check_same_config() {
    const ConfigRecord mine{.timeout_ns = config_.timeout.count(),
                            .intra_node = static_cast<std::int32_t>(config_.intra_node),
                            .reserved = 0};
    std::vector<ConfigRecord> all(static_cast<std::size_t>(num_ranks_));
    MPI_Request request = MPI_REQUEST_NULL;
    check_mpi(MPI_Iallgather(&mine, sizeof(mine), MPI_BYTE, all.data(), sizeof(mine), MPI_BYTE,
                             world_, &request),
              "rank ", rank_, ": MPI_Iallgather");
    complete(request, [&] { return "rank " + std::to_string(rank_) + ": World config check"; });
    for (int peer = 0; peer < num_ranks_; ++peer) {
      const ConfigRecord& theirs = all[static_cast<std::size_t>(peer)];
      cmx::detail::require(
          theirs.timeout_ns == mine.timeout_ns && theirs.intra_node == mine.intra_node,
          ErrorCode::config_mismatch, "rank ", rank_,
          ": mpi_backend::WorldConfig differs between ranks: rank ", rank_, " has {timeout ",
          mine.timeout_ns, " ns, intra_node ", config_.intra_node, "}, rank ", peer,
          " has {timeout ", theirs.timeout_ns, " ns, intra_node ",
          static_cast<IntraNode>(theirs.intra_node), "}");
    }
  }

  // The machine's ranks (for the default block count) and the ranks this process maps.
  void split_nodes() {
    MPI_Comm machine = MPI_COMM_NULL;
    check_mpi(MPI_Comm_split_type(world_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &machine),
              "MPI_Comm_split_type");
    int num_on_machine = 1;
    check_mpi(MPI_Comm_size(machine, &num_on_machine), "MPI_Comm_size");
    blocks_per_rank_ = config_.blocks_per_rank > 0
                           ? config_.blocks_per_rank
                           : std::max(1, oneapi::tbb::info::default_concurrency() / num_on_machine);
    if (config_.intra_node == IntraNode::shared_memory) {
      node_ = machine;
    } else {
      check_mpi(MPI_Comm_free(&machine), "MPI_Comm_free");
      check_mpi(MPI_Comm_dup(MPI_COMM_SELF, &node_), "MPI_Comm_dup");
    }
    check_mpi(MPI_Comm_set_errhandler(node_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check_mpi(MPI_Comm_size(node_, &num_mapped_ranks_), "MPI_Comm_size");

    // node_rank_of_[r]: rank r of the world in node_, or MPI_UNDEFINED.
    MPI_Group world_group = MPI_GROUP_NULL;
    MPI_Group node_group = MPI_GROUP_NULL;
    check_mpi(MPI_Comm_group(world_, &world_group), "MPI_Comm_group");
    check_mpi(MPI_Comm_group(node_, &node_group), "MPI_Comm_group");
    std::vector<int> world_ranks(static_cast<std::size_t>(num_ranks_));
    for (int r = 0; r < num_ranks_; ++r) world_ranks[static_cast<std::size_t>(r)] = r;
    node_rank_of_.assign(world_ranks.size(), MPI_UNDEFINED);
    const int translated = MPI_Group_translate_ranks(world_group, num_ranks_, world_ranks.data(),
                                                     node_group, node_rank_of_.data());
    MPI_Group_free(&world_group);
    MPI_Group_free(&node_group);
    check_mpi(translated, "MPI_Group_translate_ranks");
  }

  // Blocks call MPI_Put and MPI_Get when some rank is reached by RMA: from oneTBB's threads
  // with MPI_THREAD_MULTIPLE, one at a time (a mutex) with MPI_THREAD_SERIALIZED.
  void check_thread_support() {
    int provided = MPI_THREAD_SINGLE;
    check_mpi(MPI_Query_thread(&provided), "MPI_Query_thread");
    serialize_ = provided < MPI_THREAD_MULTIPLE;
    cmx::detail::require(!uses_rma() || provided >= MPI_THREAD_SERIALIZED, ErrorCode::transport,
                         "rank ", rank_,
                         ": ranks on other nodes (or IntraNode::rma) are reached by MPI_Put from "
                         "oneTBB threads, which needs MPI_THREAD_SERIALIZED or "
                         "MPI_THREAD_MULTIPLE; MPI was initialized with thread level ",
                         provided);
  }

  bool uses_rma() const noexcept { return num_mapped_ranks_ < num_ranks_; }

  // Collective over the node (and the world, for RMA): one allocation's windows.
  std::unique_ptr<SymmetricWindow> create_window(std::size_t bytes) {
    auto window = std::make_unique<SymmetricWindow>();
    window->bytes = bytes;
    const std::size_t rounded = round_up(std::max<std::size_t>(bytes, 1), kSymmetricAlignment);
    // Open MPI puts a header before the first part, so each part is allocated with room to
    // start at its next kSymmetricAlignment boundary. (Non-contiguous: each part is placed on
    // its own page, so that boundary is at the same offset of every part.)
    MPI_Info info = MPI_INFO_NULL;
    check_mpi(MPI_Info_create(&info), "MPI_Info_create");
    MPI_Info_set(info, "alloc_shared_noncontig", "true");
    void* own_segment = nullptr;  // also among those queried below
    const int allocated =
        MPI_Win_allocate_shared(static_cast<MPI_Aint>(rounded + kSymmetricAlignment), 1, info,
                                node_, &own_segment, &window->shared);
    MPI_Info_free(&info);
    check_mpi(allocated, "rank ", rank_, ": MPI_Win_allocate_shared of ", rounded, " B");
    check_mpi(MPI_Win_set_errhandler(window->shared, MPI_ERRORS_RETURN), "MPI_Win_set_errhandler");
    window->parts.assign(static_cast<std::size_t>(num_ranks_), nullptr);
    for (int r = 0; r < num_ranks_; ++r) {
      const int node_rank = node_rank_of_[static_cast<std::size_t>(r)];
      if (node_rank == MPI_UNDEFINED) continue;
      MPI_Aint size = 0;
      int displacement_unit = 0;
      void* segment = nullptr;
      check_mpi(
          MPI_Win_shared_query(window->shared, node_rank, &size, &displacement_unit, &segment),
          "MPI_Win_shared_query");
      const std::uintptr_t address = reinterpret_cast<std::uintptr_t>(segment);
      window->parts[static_cast<std::size_t>(r)] =
          static_cast<std::byte*>(segment) + (round_up(address, kSymmetricAlignment) - address);
    }
    if (uses_rma()) {
      check_mpi(
          MPI_Win_create(window->parts[static_cast<std::size_t>(rank_)],
                         static_cast<MPI_Aint>(rounded), 1, MPI_INFO_NULL, world_, &window->rma),
          "rank ", rank_, ": MPI_Win_create of ", rounded, " B");
      check_mpi(MPI_Win_set_errhandler(window->rma, MPI_ERRORS_RETURN), "MPI_Win_set_errhandler");
      check_mpi(MPI_Win_lock_all(MPI_MODE_NOCHECK, window->rma), "MPI_Win_lock_all");
    }
    return window;
  }

  static void free_window(SymmetricWindow& window) noexcept {
    if (window.rma != MPI_WIN_NULL) {
      MPI_Win_unlock_all(window.rma);
      MPI_Win_free(&window.rma);
    }
    if (window.shared != MPI_WIN_NULL) MPI_Win_free(&window.shared);
  }

  void release_communicators() noexcept {
    for (MPI_Comm* communicator : {&node_, &world_})
      if (*communicator != MPI_COMM_NULL) MPI_Comm_free(communicator);
  }

  // Every rank says whether it can free (how many allocations it has, or -1 after a failure);
  // they free only if all say the same. A failed rank says so and does not wait.
  bool agree_to_free() noexcept {
    if (!control_) return false;
    const std::int64_t mine = failed_ ? -1 : static_cast<std::int64_t>(allocations_.size());
    for (int peer = 0; peer < num_ranks_; ++peer) {
      try {
        signal(*control_, peer, teardown_slot(rank_), 1, mine);
      } catch (...) {
        failed_ = true;  // that peer will time out, and keep its windows too
      }
    }
    if (failed_) return false;
    const auto deadline = Clock::now() + config_.timeout;
    try {
      for (int peer = 0; peer < num_ranks_; ++peer)
        if (wait(*control_, teardown_slot(peer), 1, {"World teardown", peer, -1},
                 deadline - Clock::now()) != mine)
          return false;
    } catch (...) {
      return false;
    }
    return true;
  }

  // Runs an MPI request to completion, polling it; past the timeout, cmx::Error(timeout) with
  // describe().
  template <class Describe>
  void complete(MPI_Request& request, Describe&& describe) {
    int done = 0;
    cpu::detail::wait_until(
        [&] {
          check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "rank ", rank_, ": MPI_Test");
          return done != 0;
        },
        {nullptr, nullptr, Wakeup::polling}, config_.timeout, describe);
  }

  // Makes this rank's RMA puts complete at their targets, and its stores to its own part of
  // `window` ordered before what it puts next. Under serialize(), on the rank's thread outside
  // launches (no block is staging a put).
  void publish_before_rma_flag(const SymmetricWindow& window) {
    if (window.rma == MPI_WIN_NULL) return;
    bool flushed = false;
    for (const auto& allocation : allocations_)
      if (allocation->unflushed.exchange(false, std::memory_order_relaxed)) {
        check_mpi(MPI_Win_flush_all(allocation->rma), "rank ", rank_, ": MPI_Win_flush_all");
        flushed = true;
      }
    if (flushed)
      for (PutStaging& staging : *staging_) staging.reset();
    std::atomic_thread_fence(std::memory_order_seq_cst);
    check_mpi(MPI_Win_sync(window.rma), "rank ", rank_, ": MPI_Win_sync");
  }

  // One 8-byte word of a flag, put and flushed. Under serialize().
  template <class Word>
  void put_word(const SymmetricWindow& window, int dst_rank, std::size_t offset, Word word) {
    static_assert(sizeof(Word) == 8);
    check_mpi(MPI_Put(&word, 8, MPI_BYTE, dst_rank, static_cast<MPI_Aint>(offset), 8, MPI_BYTE,
                      window.rma),
              "rank ", rank_, ": MPI_Put of a flag to rank ", dst_rank);
    check_mpi(MPI_Win_flush(dst_rank, window.rma), "rank ", rank_, ": MPI_Win_flush to rank ",
              dst_rank);
  }

  // Before each look at a flag that RMA may write: the unified model's synchronization of this
  // process's view of its window (and MPI progress, for transports that need the target's).
  void sync(const SymmetricWindow& window) {
    if (window.rma == MPI_WIN_NULL) return;
    const auto lock = serialize();
    check_mpi(MPI_Win_sync(window.rma), "rank ", rank_, ": MPI_Win_sync");
  }

  // The ranks whose exchange-`generation` signal has not reached this rank's set `set`.
  std::string missing_from(std::size_t set, std::uint64_t generation) {
    sync(*control_);
    std::ostringstream missing;
    for (int peer = 0; peer < num_ranks_; ++peer) {
      const FlagSlot flag(
          control_->parts[static_cast<std::size_t>(rank_)] + exchange_slot(set, peer),
          Wakeup::polling);
      if (flag.sequence() < generation) missing << (missing.tellp() > 0 ? ", " : "") << peer;
    }
    return missing.str();
  }

  void require_usable(const std::string& what) const {
    cmx::detail::require(!failed_, ErrorCode::state, "rank ", rank_, ": ", what,
                         " on a World that an earlier timeout or MPI error left unusable; make a "
                         "new World");
  }

  // Runs `body`; a timeout or an MPI error leaves the World failed (its peers' state is
  // unknown), and is rethrown.
  template <class Body>
  auto guarded(Body&& body) -> decltype(body()) {
    try {
      return body();
    } catch (const Error& error) {
      if (error.code() == ErrorCode::timeout || error.code() == ErrorCode::transport)
        failed_ = true;
      throw;
    }
  }

  // MPI calls one at a time when MPI provides less than MPI_THREAD_MULTIPLE.
  std::unique_lock<std::mutex> serialize() {
    return serialize_ ? std::unique_lock<std::mutex>(mpi_mutex_) : std::unique_lock<std::mutex>();
  }

  // Splits [offset, offset + bytes) into MPI-sized pieces (an int count of bytes each).
  template <class Piece>
  static void for_each_chunk(std::size_t offset, std::size_t bytes, Piece&& piece) {
    constexpr std::size_t kMaxChunk = std::size_t{1} << 30;
    for (std::size_t done = 0; done < bytes; done += kMaxChunk)
      piece(offset + done, static_cast<int>(std::min(kMaxChunk, bytes - done)));
  }

  WorldConfig config_;
  MPI_Comm world_ = MPI_COMM_NULL;  // the World's duplicate of its communicator
  MPI_Comm node_ = MPI_COMM_NULL;   // the ranks this process maps
  int rank_ = 0;
  int num_ranks_ = 0;
  int num_mapped_ranks_ = 1;
  int blocks_per_rank_ = 1;
  std::vector<int> node_rank_of_;  // [num_ranks] rank in node_, or MPI_UNDEFINED
  bool serialize_ = false;
  std::mutex mpi_mutex_;
  std::atomic<bool> failed_{false};
  std::uint64_t num_exchanges_ = 0;
  std::unique_ptr<SymmetricWindow> control_;                   // the World's own flags
  std::vector<std::unique_ptr<SymmetricWindow>> allocations_;  // every allocate_symmetric
  std::unique_ptr<oneapi::tbb::task_arena> arena_;
  // Each thread's staged puts.
  std::unique_ptr<oneapi::tbb::enumerable_thread_specific<PutStaging>> staging_ =
      std::make_unique<oneapi::tbb::enumerable_thread_specific<PutStaging>>();
};

}  // namespace detail
}  // namespace cmx::mpi_backend
