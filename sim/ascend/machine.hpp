// SPDX-License-Identifier: Apache-2.0
// cmx::ascend_sim::Machine: the emulated NPUs behind the clean-room Ascend shim. Every NPU's
// global memory (GM) is host memory of this process, shared by all emulated NPUs; an NPU is
// driven by one host thread (Machine::run), and a kernel launch runs each AIV core as a thread
// (launch.hpp). Written by us; no CANN header was copied or consulted for its text.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "cmx/core/error.hpp"

namespace cmx::ascend_sim {

/// Bytes of one AIV core's Unified Buffer (UB), the bound of Ascend 910-class vector cores.
inline constexpr std::size_t kUbBytes = 192 * 1024;
/// Alignment and granularity of a DataCopy (the DMA unit), in bytes.
inline constexpr std::size_t kDmaAlignment = 32;
/// Bytes of one line of a core's scalar data cache (DataCacheCleanAndInvalid works per line).
inline constexpr std::size_t kCacheLineBytes = 64;
/// Alignment of every GM allocation (aclrtMalloc, the symmetric heap), in bytes.
inline constexpr std::size_t kGmAlignment = 4096;

/// The shape of an emulated machine.
struct MachineConfig {
  int num_npus = 1;       ///< emulated NPUs (CANN SHMEM PEs), each driven by one host thread
  int cores_per_npu = 8;  ///< AIV cores per NPU: a launch may use 1 ... cores_per_npu of them
  std::size_t symmetric_heap_bytes = std::size_t{16} << 20;  ///< per NPU, for aclshmem_malloc
  /// How long a kernel, a host barrier or a wait may run before the simulation reports
  /// cmx::Error(timeout): a kernel that polls a flag nobody raises (or reads it without the
  /// cache maintenance, so it never sees the raise) fails instead of hanging.
  std::chrono::milliseconds timeout{30'000};
};

class Machine;

namespace detail {

class Core;

/// What the calling thread is: an NPU's host thread (core == nullptr) or one of its AIV cores
/// during a launch. Set by Machine::run and launch(); empty on any other thread.
struct ThreadContext {
  Machine* machine = nullptr;
  int npu = -1;
  Core* core = nullptr;
};

inline ThreadContext& thread_context() noexcept {
  thread_local ThreadContext context;
  return context;
}

// GM is touched by simulated cores concurrently (a DMA write while a peer polls a flag in the
// same line), so every simulated access is atomic per byte (per 8-byte word where aligned):
// no data race in the C++ sense, and ThreadSanitizer stays quiet. Stores are release and loads
// acquire, so a reader that sees a value also sees what its writer wrote to GM before it (no
// fences: ThreadSanitizer does not model them).

/// Copies `bytes` from GM at `gm` to ordinary memory at `out`.
inline void gm_read(void* out, const void* gm, std::size_t bytes) noexcept {
  auto* destination = static_cast<unsigned char*>(out);
  auto* source = static_cast<unsigned char*>(const_cast<void*>(gm));
  std::size_t i = 0;
  if (reinterpret_cast<std::uintptr_t>(source) % 8 == 0) {
    for (; i + 8 <= bytes; i += 8) {
      const std::uint64_t word =
          std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(source + i))
              .load(std::memory_order_acquire);
      std::memcpy(destination + i, &word, 8);
    }
  }
  for (; i < bytes; ++i)
    destination[i] = std::atomic_ref<unsigned char>(source[i]).load(std::memory_order_acquire);
}

/// Copies `bytes` from ordinary memory at `in` to GM at `gm`.
inline void gm_write(void* gm, const void* in, std::size_t bytes) noexcept {
  auto* destination = static_cast<unsigned char*>(gm);
  const auto* source = static_cast<const unsigned char*>(in);
  std::size_t i = 0;
  if (reinterpret_cast<std::uintptr_t>(destination) % 8 == 0) {
    for (; i + 8 <= bytes; i += 8) {
      std::uint64_t word;
      std::memcpy(&word, source + i, 8);
      std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(destination + i))
          .store(word, std::memory_order_release);
    }
  }
  for (; i < bytes; ++i)
    std::atomic_ref<unsigned char>(destination[i]).store(source[i], std::memory_order_release);
}

struct AlignedDelete {
  void operator()(std::byte* memory) const noexcept {
    ::operator delete[](memory, std::align_val_t{kGmAlignment});
  }
};
using GmBlock = std::unique_ptr<std::byte[], AlignedDelete>;

/// A zero-filled, kGmAlignment-aligned block of `bytes` (rounded up to a cache line).
inline GmBlock allocate_gm_block(std::size_t bytes) {
  const std::size_t rounded = std::max<std::size_t>(
      kCacheLineBytes, (bytes + kCacheLineBytes - 1) / kCacheLineBytes * kCacheLineBytes);
  GmBlock block(static_cast<std::byte*>(::operator new[](rounded, std::align_val_t{kGmAlignment})));
  std::memset(block.get(), 0, rounded);
  return block;
}

/// Rethrows the first error of `errors` (ordered by NPU or core) that is not a consequence
/// of another's (ErrorCode::peer_failed), else the first error; returns if there is none.
inline void rethrow_first(const std::vector<std::exception_ptr>& errors) {
  std::exception_ptr first;
  for (const std::exception_ptr& error : errors) {
    if (!error) continue;
    if (!first) first = error;
    try {
      std::rethrow_exception(error);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::peer_failed) std::rethrow_exception(error);
    } catch (...) {
      std::rethrow_exception(error);
    }
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace detail

/// The emulated machine: NPUs, their GM, the symmetric heap, and the failure state shared by
/// every kernel. Thread-safe. Lives longer than every thread it runs.
///
/// NOTES: GM regions are whole cache lines, so a line a core caches never straddles the end
/// of a region. After any kernel or host body fails, the machine is failed: every later poll,
/// wait or barrier on any NPU stops with cmx::Error(peer_failed) instead of waiting for the
/// timeout.
class Machine {
 public:
  /// Throws cmx::Error(invalid_argument) unless 1 <= num_npus, 1 <= cores_per_npu, and the
  /// timeout is positive.
  explicit Machine(MachineConfig config) : config_(config) {
    cmx::detail::require(
        config.num_npus >= 1 && config.cores_per_npu >= 1 && config.timeout.count() > 0,
        ErrorCode::invalid_argument, "ascend_sim::Machine: num_npus ", config.num_npus,
        ", cores_per_npu ", config.cores_per_npu, " and timeout must be positive");
    for (int npu = 0; npu < config.num_npus; ++npu) {
      heaps_.push_back(detail::allocate_gm_block(config.symmetric_heap_bytes));
      register_region(heaps_.back().get(), config.symmetric_heap_bytes, npu);
    }
    heap_used_.assign(static_cast<std::size_t>(config.num_npus), 0);
    heap_calls_made_.assign(static_cast<std::size_t>(config.num_npus), 0);
  }

  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  const MachineConfig& config() const noexcept { return config_; }
  int num_npus() const noexcept { return config_.num_npus; }
  int cores_per_npu() const noexcept { return config_.cores_per_npu; }

  /// Runs body(npu) for every NPU, each on its own host thread (where aclrt*, aclshmem_* host
  /// calls and launch() are made), and returns when all have returned. If any threw, rethrows
  /// the exception of the lowest NPU whose error is not a consequence of another's
  /// (ErrorCode::peer_failed), else the lowest NPU's.
  void run(const std::function<void(int npu)>& body) {
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(num_npus()));
    std::vector<std::thread> threads;
    for (int npu = 0; npu < num_npus(); ++npu)
      threads.emplace_back([&, npu] {
        detail::thread_context() = {this, npu, nullptr};
        try {
          body(npu);
        } catch (...) {
          errors[static_cast<std::size_t>(npu)] = std::current_exception();
          fail();
        }
        detail::thread_context() = {};
      });
    for (std::thread& thread : threads) thread.join();
    detail::rethrow_first(errors);
  }

  /// Host-side barrier of the NPU host threads of run(): every NPU arrives before any leaves.
  /// Throws cmx::Error(timeout) past the machine's timeout, cmx::Error(peer_failed) if the
  /// machine failed meanwhile.
  void host_barrier(int npu) {
    std::unique_lock lock(barrier_mutex_);
    const std::uint64_t generation = barrier_generation_;
    if (++barrier_arrived_ == num_npus()) {
      barrier_arrived_ = 0;
      ++barrier_generation_;
      barrier_cv_.notify_all();
      return;
    }
    const auto deadline = std::chrono::steady_clock::now() + config_.timeout;
    while (barrier_generation_ == generation) {
      barrier_cv_.wait_for(lock, std::chrono::milliseconds(10));
      if (barrier_generation_ != generation) break;
      check_not_failed("host barrier of npu ", npu);
      if (std::chrono::steady_clock::now() > deadline)
        cmx::detail::fail(ErrorCode::timeout, "ascend_sim: npu ", npu,
                          " waited at the host barrier past the timeout of ",
                          config_.timeout.count(), " ms");
    }
  }

  /// Marks the machine failed (see the class NOTES).
  void fail() noexcept { failed_.store(true, std::memory_order_release); }
  /// True once any kernel or host body failed.
  bool failed() const noexcept { return failed_.load(std::memory_order_acquire); }

  /// Throws cmx::Error(peer_failed) naming `what...` if the machine failed.
  template <class... Parts>
  void check_not_failed(Parts&&... what) const {
    if (failed())
      cmx::detail::fail(ErrorCode::peer_failed, "ascend_sim: ", std::forward<Parts>(what)...,
                        " stopped: another kernel or NPU failed first");
  }

  /// GM of `npu` that no other allocation uses: `bytes` (rounded up to whole cache lines),
  /// zero-filled, kGmAlignment-aligned, valid until free_gm or the machine's end.
  std::byte* allocate_gm(int npu, std::size_t bytes) {
    detail::GmBlock block = detail::allocate_gm_block(bytes);
    std::byte* memory = block.get();
    std::lock_guard lock(mutex_);
    register_region_locked(memory, bytes, npu);
    blocks_.emplace(memory, std::move(block));
    return memory;
  }

  /// Frees memory from allocate_gm. Throws cmx::Error(invalid_argument) for anything else.
  void free_gm(void* memory) {
    std::lock_guard lock(mutex_);
    const auto block = blocks_.find(static_cast<std::byte*>(memory));
    cmx::detail::require(block != blocks_.end(), ErrorCode::invalid_argument,
                         "ascend_sim: free of ", memory, ", which no aclrtMalloc returned");
    regions_.erase(reinterpret_cast<std::uintptr_t>(memory));
    blocks_.erase(block);
  }

  /// Bytes of GM from `address` to the end of its region, or 0 if `address` is not GM.
  std::size_t gm_bytes_after(const void* address) const {
    const auto at = reinterpret_cast<std::uintptr_t>(address);
    std::lock_guard lock(mutex_);
    auto region = regions_.upper_bound(at);
    if (region == regions_.begin()) return 0;
    --region;
    return at < region->second.end ? region->second.end - at : 0;
  }

  /// The collective symmetric allocation of aclshmem_malloc, on `npu`: every NPU makes the
  /// same calls with the same sizes in the same order and gets the same offset in its heap.
  /// Throws cmx::Error(config_mismatch) if this NPU's n-th size differs from another NPU's
  /// n-th, cmx::Error(capacity) if the heap is exhausted.
  std::byte* symmetric_allocate(int npu, std::size_t bytes) {
    std::lock_guard lock(mutex_);
    const std::size_t call = heap_calls_made_[static_cast<std::size_t>(npu)]++;
    if (call == heap_call_sizes_.size()) heap_call_sizes_.push_back(bytes);
    cmx::detail::require(heap_call_sizes_[call] == bytes, ErrorCode::config_mismatch,
                         "aclshmem_malloc: npu ", npu, " asks ", bytes, " B in its call ", call,
                         ", another npu asked ", heap_call_sizes_[call],
                         " B: every PE must allocate the same sizes in the same order");
    std::size_t& used = heap_used_[static_cast<std::size_t>(npu)];
    const std::size_t rounded = (bytes + kGmAlignment - 1) / kGmAlignment * kGmAlignment;
    cmx::detail::require(rounded <= config_.symmetric_heap_bytes - used, ErrorCode::capacity,
                         "aclshmem_malloc: npu ", npu, " asks ", bytes, " B with ", used,
                         " B of its ", config_.symmetric_heap_bytes, " B symmetric heap in use");
    std::byte* memory = heaps_[static_cast<std::size_t>(npu)].get() + used;
    used += rounded;
    return memory;
  }

  /// The address on `pe` of the symmetric address `local` of `npu` (aclshmem_ptr). Throws
  /// cmx::Error(invalid_argument) if pe is out of range or `local` is not in npu's heap.
  std::byte* symmetric_peer(const void* local, int npu, int pe) const {
    cmx::detail::require(pe >= 0 && pe < num_npus(), ErrorCode::invalid_argument,
                         "aclshmem_ptr: pe ", pe, " is outside [0, ", num_npus(), ")");
    const std::byte* base = heaps_[static_cast<std::size_t>(npu)].get();
    const auto* address = static_cast<const std::byte*>(local);
    cmx::detail::require(address >= base && address < base + config_.symmetric_heap_bytes,
                         ErrorCode::invalid_argument, "aclshmem_ptr: ", local,
                         " is not in the symmetric heap of npu ", npu);
    return heaps_[static_cast<std::size_t>(pe)].get() + (address - base);
  }

 private:
  struct Region {
    std::uintptr_t end;
    int npu;
  };

  void register_region(std::byte* memory, std::size_t bytes, int npu) {
    std::lock_guard lock(mutex_);
    register_region_locked(memory, bytes, npu);
  }
  void register_region_locked(std::byte* memory, std::size_t bytes, int npu) {
    const std::size_t rounded = std::max<std::size_t>(
        kCacheLineBytes, (bytes + kCacheLineBytes - 1) / kCacheLineBytes * kCacheLineBytes);
    const auto begin = reinterpret_cast<std::uintptr_t>(memory);
    regions_[begin] = Region{begin + rounded, npu};
  }

  MachineConfig config_;
  std::atomic<bool> failed_{false};

  mutable std::mutex mutex_;                  // guards everything below except the barrier
  std::map<std::uintptr_t, Region> regions_;  // by first byte
  std::map<std::byte*, detail::GmBlock> blocks_;
  std::vector<detail::GmBlock> heaps_;        // [num_npus] symmetric heaps
  std::vector<std::size_t> heap_used_;        // [num_npus] bytes handed out
  std::vector<std::size_t> heap_calls_made_;  // [num_npus] aclshmem_malloc calls
  std::vector<std::size_t> heap_call_sizes_;  // size of the n-th call, by the first NPU to make it

  std::mutex barrier_mutex_;
  std::condition_variable barrier_cv_;
  int barrier_arrived_ = 0;
  std::uint64_t barrier_generation_ = 0;
};

namespace detail {

/// The thread's context; throws cmx::Error(state) naming `what` unless the thread belongs to
/// a Machine (an NPU host thread, or an AIV core).
inline ThreadContext& require_machine(const char* what) {
  ThreadContext& context = thread_context();
  cmx::detail::require(
      context.machine != nullptr, ErrorCode::state, what,
      ": called outside ascend_sim::Machine::run (no emulated NPU on this thread)");
  return context;
}

}  // namespace detail
}  // namespace cmx::ascend_sim
