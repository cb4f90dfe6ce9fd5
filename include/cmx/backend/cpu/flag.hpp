// SPDX-License-Identifier: Apache-2.0
// FlagSlot: a flag of symmetric memory (one kFlagBytes slot) as the CPU backends lay it out, its
// release (raise) and its acquire-wait with a timeout that names the missing rank.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "cmx/backend/cpu/wait.hpp"
#include "cmx/device/device.hpp"

namespace cmx::cpu::detail {

/// A flag slot: the sequence at byte 0, the payload at byte 8, the count of the owner's threads
/// asleep on it at byte 16; the rest of the 32 B unused.
struct FlagSlot {
  static constexpr std::size_t kSequenceOffset = 0;
  static constexpr std::size_t kPayloadOffset = 8;
  static constexpr std::size_t kSleepersOffset = 16;

  /// The slot at `slot` (32-byte aligned), whose waiters are woken as `wakeup` says.
  FlagSlot(std::byte* slot, Wakeup wakeup) noexcept
      : wake{reinterpret_cast<std::uint64_t*>(slot + kSequenceOffset),
             reinterpret_cast<std::uint32_t*>(slot + kSleepersOffset), wakeup},
        payload(reinterpret_cast<std::int64_t*>(slot + kPayloadOffset)) {}

  /// The sequence, with acquire: what was published before it is visible after.
  std::uint64_t sequence() const noexcept {
    return std::atomic_ref<std::uint64_t>(*wake.word).load(std::memory_order_acquire);
  }

  /// Release: the payload, then the sequence (seq_cst, so also release) and a wake-up of its
  /// sleepers. A waiter that acquires the sequence reads this payload: a peer overwrites it only
  /// for a later sequence, which the protocol starts after this one was consumed.
  void raise(std::uint64_t sequence, std::int64_t value) const {
    std::atomic_ref<std::int64_t>(*payload).store(value, std::memory_order_relaxed);
    store_and_wake(wake, sequence);
  }

  /// Acquire: returns the payload once the sequence is >= `sequence`, after calling `poll()`
  /// before each look (a backend's memory synchronization, or nothing). Past `timeout`, throws
  /// cmx::Error(timeout) saying that `rank`'s `site` waited for its peer.
  template <class Poll>
  std::int64_t await(std::uint64_t sequence, std::chrono::nanoseconds timeout, int rank,
                     const WaitSite& site, Poll&& poll) const {
    wait_until(
        [&] {
          poll();
          return this->sequence() >= sequence;
        },
        wake, timeout,
        [&] {
          return cmx::detail::wait_timeout_message(
              rank, site, sequence,
              std::atomic_ref<std::uint64_t>(*wake.word).load(std::memory_order_relaxed));
        });
    return std::atomic_ref<std::int64_t>(*payload).load(std::memory_order_relaxed);
  }

  WakeSite wake;  // the sequence, and its sleepers
  std::int64_t* payload;
};

}  // namespace cmx::cpu::detail
