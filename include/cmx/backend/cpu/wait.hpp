// SPDX-License-Identifier: Apache-2.0
// wait_until: the one loop through which every wait of the TBB backend goes, and wake_sleepers,
// its counterpart on the signalling side.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <climits>
#include <cstdint>
#include <ctime>
#include <string>
#include <thread>

#include "cmx/core/error.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace cmx::cpu::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#endif
}

/// How a waiter learns that a WakeSite's word changed.
enum class Wakeup {
  process_futex,  ///< the signaller wakes it through a futex private to this process
  shared_futex,   ///< the signaller wakes it through a futex shared by the processes that map
                  ///< the word (shared memory between processes)
  polling,        ///< nobody wakes it (a remote write changes the word): it polls, sleeping
};

/// Where waiters sleep and a signaller wakes them: a 64-bit word that changes with every signal
/// (a flag's sequence, the barrier's generation) and the number of waiters asleep on it. Both
/// are only ever accessed atomically (std::atomic_ref).
struct WakeSite {
  std::uint64_t* word;
  std::uint32_t* sleepers;
  Wakeup wakeup = Wakeup::process_futex;
};

// Sleeping on the word: a futex on its low 32 bits, which change with every signal (the word
// only grows, by small steps), where the platform has one; else a bounded sleep.
#if defined(__linux__)
inline constexpr bool kHasFutex = std::endian::native == std::endian::little;
inline int futex_op(const WakeSite& site, int op) noexcept {
  return site.wakeup == Wakeup::shared_futex ? op : op | FUTEX_PRIVATE_FLAG;
}
inline void sleep_on(const WakeSite& site, std::uint64_t seen, std::chrono::nanoseconds limit) {
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(limit);
  const timespec relative{static_cast<std::time_t>(seconds.count()),
                          static_cast<long>((limit - seconds).count())};
  // Returns at once if the word no longer holds `seen`: no wake-up is lost.
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(site.word), futex_op(site, FUTEX_WAIT),
          static_cast<std::uint32_t>(seen), &relative, nullptr, 0);
}
inline void wake_all(const WakeSite& site) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(site.word), futex_op(site, FUTEX_WAKE),
          INT_MAX, nullptr, nullptr, 0);
}
#else
inline constexpr bool kHasFutex = false;
inline void sleep_on(const WakeSite&, std::uint64_t, std::chrono::nanoseconds limit) {
  std::this_thread::sleep_for(limit);
}
inline void wake_all(const WakeSite&) {}
#endif

/// The signalling side: stores `value` into the site's word and wakes whoever sleeps on it.
///
/// NOTES: the store and the sleepers load are seq_cst, as are the waiter's increment of
/// sleepers and its load of the word (in wait_until): in their single total order either the
/// waiter sees the new value and does not sleep, or this sees the sleeper and wakes it; a
/// sleeper that has not reached the futex yet returns from it at once, as the word changed.
inline void store_and_wake(const WakeSite& site, std::uint64_t value) {
  std::atomic_ref<std::uint64_t>(*site.word).store(value, std::memory_order_seq_cst);
  if (std::atomic_ref<std::uint32_t>(*site.sleepers).load(std::memory_order_seq_cst) != 0)
    wake_all(site);
}

/// Returns once `done()` is true; throws cmx::Error(timeout, describe()) once `timeout` has
/// passed without it. Unless the site is Wakeup::polling, `done()` must become true only through
/// a store_and_wake on `site`.
///
/// NOTES: ranks may outnumber cores many times over (320 ranks on 2 cores), so a waiter gives
/// its core away: it spins briefly (the peer is usually about to signal), yields for up to
/// 50 us, then sleeps until the site's word changes (a futex: no core is used and the wake-up
/// is immediate), waking every 10 ms to check the timeout. A polling site, or a platform
/// without a futex, sleeps for an eighth of the time waited so far (50 us to 1 ms) instead.
template <class Done, class Describe>
void wait_until(Done&& done, const WakeSite& site, std::chrono::nanoseconds timeout,
                Describe&& describe) {
  constexpr int kSpins = 256;
  for (int i = 0; i < kSpins; ++i) {
    if (done()) return;
    cpu_relax();
  }
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  constexpr std::chrono::nanoseconds kYieldPhase = std::chrono::microseconds(50);
  constexpr std::chrono::nanoseconds kFutexSlice = std::chrono::milliseconds(10);
  constexpr std::chrono::nanoseconds kMinSleep = std::chrono::microseconds(50);
  constexpr std::chrono::nanoseconds kMaxSleep = std::chrono::milliseconds(1);
  const bool futex = kHasFutex && site.wakeup != Wakeup::polling;
  for (;;) {
    if (done()) return;
    const std::chrono::nanoseconds waited = Clock::now() - start;
    if (waited > timeout) {
      if (done()) return;  // the last chance: the signal may have landed while we checked
      cmx::detail::fail(ErrorCode::timeout, describe(), " (timed out after ",
                        std::chrono::duration<double>(timeout).count(), " s)");
    }
    if (waited < kYieldPhase) {
      std::this_thread::yield();
      continue;
    }
    if (!futex) {
      std::this_thread::sleep_for(std::clamp(waited / 8, kMinSleep, kMaxSleep));
      continue;
    }
    std::atomic_ref<std::uint32_t> sleepers(*site.sleepers);
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    const std::uint64_t seen =
        std::atomic_ref<std::uint64_t>(*site.word).load(std::memory_order_seq_cst);
    if (!done()) sleep_on(site, seen, std::min(timeout - waited, kFutexSlice));
    sleepers.fetch_sub(1, std::memory_order_seq_cst);
  }
}

}  // namespace cmx::cpu::detail
