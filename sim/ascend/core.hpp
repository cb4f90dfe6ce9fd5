// SPDX-License-Identifier: Apache-2.0
// cmx::ascend_sim: one emulated AIV core (its Unified Buffer, its scalar data cache, its queue
// of DMA writes not yet complete) and launch(), which runs a kernel with one thread per core.
#pragma once

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
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cmx/core/error.hpp"
#include "sim/ascend/machine.hpp"

namespace cmx::ascend_sim {
namespace detail {

/// The state one launch's cores share: the cross-core barrier (SyncAll), and the start time
/// the timeout counts from.
class LaunchState {
 public:
  LaunchState(Machine& machine, int npu, int block_num)
      : machine_(machine),
        npu_(npu),
        block_num_(block_num),
        start_(std::chrono::steady_clock::now()) {}

  Machine& machine() const noexcept { return machine_; }
  int npu() const noexcept { return npu_; }
  int block_num() const noexcept { return block_num_; }

  /// Throws cmx::Error(peer_failed) if the machine failed, cmx::Error(timeout) if this launch
  /// has run past the machine's timeout; `core` and `doing` name the caller in the message.
  void check_alive(int core, const char* doing) const {
    machine_.check_not_failed("core ", core, " of npu ", npu_, " (", doing, ")");
    if (std::chrono::steady_clock::now() - start_ > machine_.config().timeout)
      cmx::detail::fail(ErrorCode::timeout, "ascend_sim: core ", core, " of npu ", npu_,
                        " ran past the timeout of ", machine_.config().timeout.count(),
                        " ms while ", doing,
                        " (a flag nobody raises, or polled without DataCacheCleanAndInvalid?)");
  }

  /// SyncAll: returns once every core of the launch has arrived.
  void sync_all(int core) {
    std::unique_lock lock(mutex_);
    const std::uint64_t generation = generation_;
    if (++arrived_ == block_num_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    while (generation_ == generation) {
      cv_.wait_for(lock, std::chrono::milliseconds(5));
      if (generation_ != generation) break;
      lock.unlock();
      check_alive(core, "waiting in SyncAll");
      lock.lock();
    }
  }

 private:
  Machine& machine_;
  int npu_;
  int block_num_;
  std::chrono::steady_clock::time_point start_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int arrived_ = 0;
  std::uint64_t generation_ = 0;
};

/// One AIV core during a launch. Used only by its own thread.
///
/// The data cache: the scalar unit reads and writes GM through a per-core write-back cache of
/// kCacheLineBytes lines, with a valid and a dirty bit per byte. A read fills only the bytes
/// that are not valid, from GM; a write stays in the cache until DataCacheCleanAndInvalid (or
/// the end of the kernel) writes the dirty bytes back. Nothing is ever evicted, so a line read
/// once stays stale until invalidated: what real hardware does sometimes, this does always.
///
/// DMA: a GM->UB copy reads GM at once (bypassing the cache: dirty scalar writes of this core
/// are not seen). A UB->GM copy takes its bytes from UB at once but reaches GM only when the
/// core completes its MTE3 queue (PipeBarrier<PIPE_MTE3 or PIPE_ALL>, a WaitFlag whose event
/// starts at MTE3, SyncAll, aclshmem_quiet, the end of the kernel): a flag written before
/// that is seen by peers before the data it publishes.
class Core {
 public:
  Core(LaunchState& launch, int index)
      : launch_(launch),
        index_(index),
        ub_(static_cast<std::byte*>(::operator new[](kUbBytes, std::align_val_t{kDmaAlignment}))) {
    std::memset(ub_.get(), 0xCD, kUbBytes);  // UB content is undefined at the kernel's start
  }

  int index() const noexcept { return index_; }
  int block_num() const noexcept { return launch_.block_num(); }
  int npu() const noexcept { return launch_.npu(); }
  Machine& machine() const noexcept { return launch_.machine(); }
  LaunchState& launch() const noexcept { return launch_; }

  // ---- Unified Buffer -------------------------------------------------------------------

  /// `bytes` (rounded up to 32) of this core's UB, 32-byte aligned. Throws
  /// cmx::Error(capacity) if the UB (kUbBytes) cannot hold them with what is allocated.
  std::byte* ub_allocate(std::size_t bytes, const char* what) {
    const std::size_t rounded = (bytes + kDmaAlignment - 1) / kDmaAlignment * kDmaAlignment;
    cmx::detail::require(rounded <= kUbBytes - ub_used_, ErrorCode::capacity, what, ": core ",
                         index_, " of npu ", npu(), " asks ", bytes, " B of UB with ", ub_used_,
                         " B of ", kUbBytes, " B in use");
    std::byte* memory = ub_.get() + ub_used_;
    ub_used_ += rounded;
    return memory;
  }
  /// Frees every UB allocation (a TPipe's end).
  void ub_release_all() noexcept { ub_used_ = 0; }
  /// True if [address, address + bytes) lies in this core's UB.
  bool in_ub(const void* address, std::size_t bytes) const noexcept {
    const auto* begin = static_cast<const std::byte*>(address);
    return begin >= ub_.get() && bytes <= kUbBytes &&
           begin - ub_.get() <= static_cast<std::ptrdiff_t>(kUbBytes - bytes);
  }
  /// Whether a TPipe is alive on this core (AscendC allows one per kernel).
  bool& pipe_alive() noexcept { return pipe_alive_; }

  // ---- scalar access to GM, through the data cache ------------------------------------

  /// Reads `bytes` (within one line) of GM at `gm` through the cache.
  void scalar_read(void* out, const void* gm, std::size_t bytes) {
    check_within_line(gm, bytes);
    poll_point("reading GM by scalar");
    CacheLine& line = line_of(gm);
    const std::size_t first = offset_in_line(gm);
    const std::uint64_t wanted = byte_mask(first, bytes);
    if ((line.valid & wanted) != wanted) {  // fill the bytes not valid (stale ones stay)
      unsigned char fresh[kCacheLineBytes];
      gm_read(fresh, line_base(gm), kCacheLineBytes);
      for (std::size_t b = 0; b < kCacheLineBytes; ++b)
        if (!(line.valid >> b & 1)) line.bytes[b] = fresh[b];
      line.valid = ~std::uint64_t{0};
    }
    std::memcpy(out, line.bytes + first, bytes);
  }

  /// Writes `bytes` (within one line) at GM `gm` into the cache; GM sees them only after a
  /// clean (DataCacheCleanAndInvalid).
  void scalar_write(void* gm, const void* in, std::size_t bytes) {
    check_within_line(gm, bytes);
    CacheLine& line = line_of(gm);
    const std::size_t first = offset_in_line(gm);
    std::memcpy(line.bytes + first, in, bytes);
    line.valid |= byte_mask(first, bytes);
    line.dirty |= byte_mask(first, bytes);
  }

  /// DataCacheCleanAndInvalid of one line: writes back the dirty bytes of [gm, end of its
  /// line) and invalidates them. Bytes of the line before `gm` are left as they are (the
  /// documented behaviour for an address that is not 64-byte aligned).
  void clean_invalidate_line(const void* gm) {
    const auto found = lines_.find(reinterpret_cast<std::uintptr_t>(line_base(gm)));
    if (found == lines_.end()) return;
    const std::uint64_t range = byte_mask(offset_in_line(gm), kCacheLineBytes - offset_in_line(gm));
    write_back(found->first, found->second, range);
    found->second.valid &= ~range;
    if (found->second.valid == 0) lines_.erase(found);
  }

  /// DataCacheCleanAndInvalid of the whole cache.
  void clean_invalidate_all() {
    for (auto& [base, line] : lines_) write_back(base, line, ~std::uint64_t{0});
    lines_.clear();
  }

  // ---- DMA ----------------------------------------------------------------------------

  /// A GM->UB transfer (MTE2): complete at once.
  void dma_gm_to_ub(void* ub, const void* gm, std::size_t bytes) { gm_read(ub, gm, bytes); }

  /// A UB->GM transfer (MTE3): queued until complete_dma_writes().
  void dma_ub_to_gm(void* gm, const void* ub, std::size_t bytes) {
    const auto* source = static_cast<const std::byte*>(ub);
    pending_.push_back(PendingWrite{gm, std::vector<std::byte>(source, source + bytes)});
  }

  /// Completes every queued UB->GM transfer, in issue order.
  void complete_dma_writes() {
    for (const PendingWrite& write : pending_)
      gm_write(write.gm, write.bytes.data(), write.bytes.size());
    pending_.clear();
  }
  /// UB->GM transfers issued and not yet complete.
  std::size_t pending_dma_writes() const noexcept { return pending_.size(); }

  // ---- events (SetFlag / WaitFlag) ----------------------------------------------------

  /// Records SetFlag(event, id).
  void set_event(int event, int id) { ++events_[{event, id}]; }
  /// Consumes a SetFlag(event, id); throws cmx::Error(state) if none is outstanding (on the
  /// hardware the WaitFlag would block forever).
  void wait_event(int event, int id, const char* name) {
    int& outstanding = events_[{event, id}];
    cmx::detail::require(outstanding > 0, ErrorCode::state, "WaitFlag<", name, ">(", id, "): core ",
                         index_, " of npu ", npu(),
                         " waits for an event no SetFlag raised (the core would hang)");
    --outstanding;
  }

  /// A point where a polling kernel may be stopped: throws if the machine failed or the
  /// launch ran past its timeout, and lets other threads run now and then (cores outnumber
  /// the host's CPUs).
  void poll_point(const char* doing) {
    launch_.check_alive(index_, doing);
    if (++polls_ % 16 == 0) std::this_thread::yield();
  }

  /// The kernel's end: completes the DMA queue and writes back the dirty cache lines.
  void finish() {
    complete_dma_writes();
    clean_invalidate_all();
  }

 private:
  struct CacheLine {
    unsigned char bytes[kCacheLineBytes];
    std::uint64_t valid = 0;  // bit b: bytes[b] holds a value
    std::uint64_t dirty = 0;  // bit b: bytes[b] was written and not yet cleaned
  };
  struct PendingWrite {
    void* gm;
    std::vector<std::byte> bytes;
  };
  struct UbDelete {
    void operator()(std::byte* memory) const noexcept {
      ::operator delete[](memory, std::align_val_t{kDmaAlignment});
    }
  };

  static_assert(kCacheLineBytes == 64, "one valid/dirty bit per byte of a line in a uint64_t");

  static const std::byte* line_base(const void* gm) noexcept {
    return reinterpret_cast<const std::byte*>(reinterpret_cast<std::uintptr_t>(gm) &
                                              ~std::uintptr_t{kCacheLineBytes - 1});
  }
  static std::size_t offset_in_line(const void* gm) noexcept {
    return reinterpret_cast<std::uintptr_t>(gm) & (kCacheLineBytes - 1);
  }
  static std::uint64_t byte_mask(std::size_t first, std::size_t count) noexcept {
    const std::uint64_t ones = count >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << count) - 1;
    return ones << first;
  }
  /// A scalar access moves at most 8 bytes within one cache line (cmx::Error(invalid_argument)
  /// otherwise: an element type too large, or an address not aligned to it).
  static void check_within_line(const void* gm, std::size_t bytes) {
    cmx::detail::require(bytes <= 8 && offset_in_line(gm) + bytes <= kCacheLineBytes,
                         ErrorCode::invalid_argument, "scalar access of ", bytes, " B at GM ", gm,
                         ": at most 8 B within one 64-byte cache line");
  }
  CacheLine& line_of(const void* gm) {
    return lines_[reinterpret_cast<std::uintptr_t>(line_base(gm))];
  }
  static void write_back(std::uintptr_t base, CacheLine& line, std::uint64_t range) {
    const std::uint64_t dirty = line.dirty & range;
    for (std::size_t b = 0; b < kCacheLineBytes; ++b)
      if (dirty >> b & 1) gm_write(reinterpret_cast<std::byte*>(base) + b, line.bytes + b, 1);
    line.dirty &= ~range;
  }

  LaunchState& launch_;
  int index_;
  std::unique_ptr<std::byte[], UbDelete> ub_;
  std::size_t ub_used_ = 0;
  bool pipe_alive_ = false;
  std::map<std::uintptr_t, CacheLine> lines_;  // by line address
  std::vector<PendingWrite> pending_;
  std::map<std::pair<int, int>, int> events_;  // (event, id) -> SetFlags not yet waited
  std::uint64_t polls_ = 0;
};

/// The calling AIV core; throws cmx::Error(state) naming `what` if the thread is not one
/// (kernel-side calls made from host code).
inline Core& current_core(const char* what) {
  Core* core = thread_context().core;
  cmx::detail::require(core != nullptr, ErrorCode::state, what,
                       ": a kernel-side call made outside a kernel launched by ascend_sim::launch");
  return *core;
}

}  // namespace detail

/// Runs `kernel(args...)` on `block_dim` emulated AIV cores of the calling NPU, each on its own
/// thread, all resident at once (so cores may wait on each other), and returns when all have
/// finished: the simulation's `kernel<<<block_dim, nullptr, stream>>>(args...)`, synchronous.
/// Arguments are copied to every core (GM_ADDR pointers, scalars, a tiling struct).
///
/// Call it from an NPU host thread of Machine::run. Throws cmx::Error(state) from any other
/// thread, cmx::Error(invalid_argument) unless 1 <= block_dim <= cores_per_npu. If a core
/// throws, the machine is failed (every other core stops at its next poll) and the exception
/// of the lowest core that failed first-hand (not ErrorCode::peer_failed) is rethrown.
template <class Kernel, class... Args>
void launch(std::uint32_t block_dim, Kernel&& kernel, Args&&... args) {
  detail::ThreadContext& host = detail::require_machine("ascend_sim::launch");
  cmx::detail::require(host.core == nullptr, ErrorCode::state,
                       "ascend_sim::launch: called from a kernel (launch from the host thread)");
  Machine& machine = *host.machine;
  cmx::detail::require(
      block_dim >= 1 && block_dim <= static_cast<std::uint32_t>(machine.cores_per_npu()),
      ErrorCode::invalid_argument, "ascend_sim::launch: block_dim ", block_dim, " outside [1, ",
      machine.cores_per_npu(), "]: every core of a kernel must be resident at once");
  const int num_cores = static_cast<int>(block_dim);
  detail::LaunchState state(machine, host.npu, num_cores);
  std::vector<std::exception_ptr> errors(block_dim);
  std::vector<std::thread> threads;
  threads.reserve(block_dim);
  for (int index = 0; index < num_cores; ++index)
    threads.emplace_back([&, index, arguments = std::make_tuple(std::decay_t<Args>(args)...)] {
      detail::Core core(state, index);
      detail::thread_context() = {&machine, host.npu, &core};
      try {
        std::apply(kernel, arguments);
        core.finish();
      } catch (...) {
        errors[static_cast<std::size_t>(index)] = std::current_exception();
        machine.fail();
      }
      detail::thread_context() = {};
    });
  for (std::thread& thread : threads) thread.join();
  detail::rethrow_first(errors);
}

}  // namespace cmx::ascend_sim
