// SPDX-License-Identifier: Apache-2.0
// wait_until: the one loop through which every wait of the TBB backend goes.
#pragma once

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>

#include "cmx/core/error.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace cmx::tbb_backend::detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_pause();
#endif
}

/// Returns once `done()` is true; throws cmx::Error(timeout, describe()) once `timeout` has
/// passed without it.
///
/// NOTES: ranks may outnumber cores many times over (320 ranks on 2 cores), so a waiter must
/// give its core away: it spins briefly (the peer is usually about to signal), then yields for
/// up to 200 us, then sleeps for an eighth of the time it has waited so far (50 us to 1 ms), so
/// a long wait costs at most 12.5% extra latency and hundreds of sleepers do not flood the
/// scheduler with wake-ups. `done` is evaluated with whatever memory order the caller gives it
/// (an acquire load for flags).
template <class Done, class Describe>
void wait_until(Done&& done, std::chrono::nanoseconds timeout, Describe&& describe) {
  constexpr int kSpins = 256;
  for (int i = 0; i < kSpins; ++i) {
    if (done()) return;
    cpu_relax();
  }
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  constexpr std::chrono::nanoseconds kYieldPhase = std::chrono::microseconds(200);
  constexpr std::chrono::nanoseconds kMinSleep = std::chrono::microseconds(50);
  constexpr std::chrono::nanoseconds kMaxSleep = std::chrono::milliseconds(1);
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
    } else {
      std::this_thread::sleep_for(std::clamp(waited / 8, kMinSleep, kMaxSleep));
    }
  }
}

}  // namespace cmx::tbb_backend::detail
