// SPDX-License-Identifier: Apache-2.0
// The clean-room CANN SHMEM (aclshmem) shim: the symmetric-memory names the cmx Ascend backend
// uses, declared by us from the library's public documentation and implemented on the emulated
// machine of cmx::ascend_sim. A PE is an emulated NPU; the symmetric heap is one GM block per
// NPU; a peer pointer is the same offset in the peer's block.
//
// Documentation used (names, parameters, semantics; no text or code copied):
//   memory and PE queries (aclshmem_malloc, aclshmem_free, aclshmem_ptr, aclshmem_my_pe,
//   aclshmem_n_pes): https://aclshmem-docs.pages.dev/python_api.html and the API demo
//   https://shmem-doc.pages.dev/_sources/example/api_demo.md.txt
//   signals (aclshmemx_signal_op, ACLSHMEM_SIGNAL_SET/ADD):
//   https://aclshmem-docs.pages.dev/api_05_signal.html
//   point-to-point sync (aclshmem_signal_wait_until, ACLSHMEM_CMP_*):
//   https://aclshmem-docs.pages.dev/_sources/device_api_p2p_sync.rst.txt
//   (OpenSHMEM 1.5's shmem_signal_wait_until, of which it is the Ascend form:
//   https://cray-openshmemx.readthedocs.io/en/latest/shmem_signal_wait_until.html)
// The documentation shows 32-bit and 64-bit signal words in different releases; this shim
// follows the int32_t form.
//
// Initialization (aclshmemx_init_attr and its attributes, HCCL root info) is not declared: in
// the simulation, Machine::run makes every NPU a PE of one world.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "cmx/core/error.hpp"
#include "sim/ascend/core.hpp"
#include "sim/ascend/machine.hpp"
#include "sim/ascend/shim/kernel_operator.hpp"

/// Signal operations of aclshmemx_signal_op.
enum : int {
  ACLSHMEM_SIGNAL_SET = 0,  ///< the signal word becomes `signal`
  ACLSHMEM_SIGNAL_ADD = 1,  ///< `signal` is added to the signal word, atomically
};

/// Comparisons of aclshmem_signal_wait_until: the wait ends when (word <cmp> cmp_val).
enum : int {
  ACLSHMEM_CMP_EQ = 0,
  ACLSHMEM_CMP_NE,
  ACLSHMEM_CMP_GT,
  ACLSHMEM_CMP_GE,
  ACLSHMEM_CMP_LT,
  ACLSHMEM_CMP_LE,
};

// ---- Host and device: PEs and the symmetric heap ---------------------------------------------

/// This PE's number in [0, aclshmem_n_pes()): the emulated NPU of the calling host thread or
/// core. Throws cmx::Error(state) on a thread of no emulated NPU.
inline int aclshmem_my_pe() {
  return cmx::ascend_sim::detail::require_machine("aclshmem_my_pe").npu;
}

/// The number of PEs: the emulated machine's NPUs. Throws as aclshmem_my_pe.
inline int aclshmem_n_pes() {
  return cmx::ascend_sim::detail::require_machine("aclshmem_n_pes").machine->num_npus();
}

/// Host, collective: `size` bytes of this PE's symmetric heap, at the same offset on every PE,
/// zero-filled (the real library leaves it uninitialized: do not rely on the zeros), aligned
/// to 4096 B. Every PE makes the same calls with the same sizes in the same order. Throws
/// cmx::Error(config_mismatch) if a PE's size differs from another's for the same call,
/// cmx::Error(capacity) if the heap (MachineConfig::symmetric_heap_bytes) is exhausted,
/// cmx::Error(state) from a kernel or a thread of no emulated NPU.
inline void* aclshmem_malloc(size_t size) {
  auto& context = cmx::ascend_sim::detail::require_machine("aclshmem_malloc");
  cmx::detail::require(context.core == nullptr, cmx::ErrorCode::state,
                       "aclshmem_malloc: a host call, made from a kernel");
  return context.machine->symmetric_allocate(context.npu, size);
}

/// Host, collective: releases a symmetric allocation. The simulation never reuses heap
/// memory; it checks that `ptr` is in this PE's heap (cmx::Error(invalid_argument) otherwise).
/// A null pointer is ignored.
inline void aclshmem_free(void* ptr) {
  if (ptr == nullptr) return;
  auto& context = cmx::ascend_sim::detail::require_machine("aclshmem_free");
  (void)context.machine->symmetric_peer(ptr, context.npu, context.npu);
}

/// Host and device: the address at which this PE reaches the symmetric object `ptr` (an
/// address in this PE's heap) on PE `pe`: a plain GM address a core may DataCopy to or from
/// (the AIV-Direct peer write). Throws cmx::Error(invalid_argument) if `pe` is outside
/// [0, n_pes) or `ptr` is not in this PE's symmetric heap (where the library returns null).
inline void* aclshmem_ptr(void* ptr, int pe) {
  auto& context = cmx::ascend_sim::detail::require_machine("aclshmem_ptr");
  return context.machine->symmetric_peer(ptr, context.npu, pe);
}

/// Host, collective: returns once every PE has called it, with every PE's earlier stores and
/// puts to symmetric memory complete and visible (OpenSHMEM's shmem_barrier_all, of which it is
/// the CANN form: https://aclshmem-docs.pages.dev/python_api.html). In the simulation kernels
/// are synchronous, so their puts are complete when the host calls it. Throws
/// cmx::Error(timeout) past the machine's timeout, cmx::Error(peer_failed) if another PE
/// failed, cmx::Error(state) from a kernel or a thread of no emulated NPU.
inline void aclshmem_barrier_all() {
  auto& context = cmx::ascend_sim::detail::require_machine("aclshmem_barrier_all");
  cmx::detail::require(context.core == nullptr, cmx::ErrorCode::state,
                       "aclshmem_barrier_all: the host form, called from a kernel");
  context.machine->host_barrier(context.npu);
}

// ---- Device: signals ---------------------------------------------------------------------------

namespace cmx::ascend_sim::detail {

/// The signal word `sig_addr` (a symmetric address of this PE) as seen on `pe`, checked: an
/// aligned int32 of GM.
inline int32_t* signal_word(int32_t* sig_addr, int pe, const char* what) {
  cmx::detail::require(reinterpret_cast<std::uintptr_t>(sig_addr) % alignof(int32_t) == 0,
                       ErrorCode::invalid_argument, what, ": the signal word ",
                       static_cast<void*>(sig_addr), " is not 4-byte aligned");
  return static_cast<int32_t*>(aclshmem_ptr(sig_addr, pe));
}

inline bool signal_satisfies(int32_t value, int cmp, int32_t cmp_val) {
  switch (cmp) {
    case ACLSHMEM_CMP_EQ:
      return value == cmp_val;
    case ACLSHMEM_CMP_NE:
      return value != cmp_val;
    case ACLSHMEM_CMP_GT:
      return value > cmp_val;
    case ACLSHMEM_CMP_GE:
      return value >= cmp_val;
    case ACLSHMEM_CMP_LT:
      return value < cmp_val;
    case ACLSHMEM_CMP_LE:
      return value <= cmp_val;
  }
  cmx::detail::fail(ErrorCode::invalid_argument, "aclshmem_signal_wait_until: cmp ", cmp,
                    " is not an ACLSHMEM_CMP_* value");
}

}  // namespace cmx::ascend_sim::detail

/// Device: completes every put (UB -> GM DataCopy) this core issued, so that a signal raised
/// after it publishes them.
inline void aclshmem_quiet() {
  cmx::ascend_sim::detail::current_core("aclshmem_quiet").complete_dma_writes();
}

/// Device: updates the signal word `sig_addr` (a symmetric address) on PE `pe` with `signal`:
/// ACLSHMEM_SIGNAL_SET stores it (a scalar store and a clean of its cache line, as the
/// hardware needs), ACLSHMEM_SIGNAL_ADD adds it atomically. It does not complete this core's
/// earlier puts: call aclshmem_quiet() (or PipeBarrier<PIPE_ALL>) first, or a peer may see the
/// signal before the data. Throws cmx::Error(invalid_argument) for a bad pe, sig_op or
/// address, cmx::Error(state) outside a kernel.
inline void aclshmemx_signal_op(__gm__ int32_t* sig_addr, int32_t signal, int sig_op, int pe) {
  auto& core = cmx::ascend_sim::detail::current_core("aclshmemx_signal_op");
  int32_t* word = cmx::ascend_sim::detail::signal_word(sig_addr, pe, "aclshmemx_signal_op");
  if (sig_op == ACLSHMEM_SIGNAL_SET) {
    core.scalar_write(word, &signal, sizeof(signal));
    core.clean_invalidate_line(word);
  } else {
    cmx::detail::require(sig_op == ACLSHMEM_SIGNAL_ADD, cmx::ErrorCode::invalid_argument,
                         "aclshmemx_signal_op: sig_op ", sig_op,
                         " is not ACLSHMEM_SIGNAL_SET or ACLSHMEM_SIGNAL_ADD");
    core.clean_invalidate_line(word);  // this core's own view of it must not go stale
    std::atomic_ref<int32_t>(*word).fetch_add(signal, std::memory_order_acq_rel);
  }
}

/// Device: blocks until the local signal word `sig_addr` satisfies (word <cmp> cmp_val) and
/// returns its value; the data published before the signal that satisfied it is then visible
/// to this core's DataCopy. Each look invalidates the word's cache line first (a poll without
/// it would spin on a stale copy). Throws cmx::Error(timeout) past the machine's timeout,
/// cmx::Error(peer_failed) if another kernel failed, cmx::Error(invalid_argument) for a bad
/// cmp or address.
inline int32_t aclshmem_signal_wait_until(__gm__ int32_t* sig_addr, int cmp, int32_t cmp_val) {
  auto& core = cmx::ascend_sim::detail::current_core("aclshmem_signal_wait_until");
  int32_t* word = cmx::ascend_sim::detail::signal_word(sig_addr, aclshmem_my_pe(),
                                                       "aclshmem_signal_wait_until");
  for (;;) {
    core.clean_invalidate_line(word);
    int32_t value;
    core.scalar_read(&value, word, sizeof(value));
    if (cmx::ascend_sim::detail::signal_satisfies(value, cmp, cmp_val)) return value;
  }
}
