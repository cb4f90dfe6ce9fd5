// SPDX-License-Identifier: Apache-2.0
// Timing collectives on ranks that share nothing but cmx's symmetric memory (processes, on one
// machine or many): rank 0 drives Google Benchmark's loop and the others follow in lockstep; a
// section's time is the longest any rank spent in it, every rank starting it at a barrier.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <span>

#include "cmx/device/device.hpp"

namespace cmx::bench {

/// rank_timer.hpp's LockstepLoop and SectionTimer for ranks in separate processes, through the
/// device alone. `Section` is an enum whose last enumerator is `count`.
///
///   while (timer.next(device, device.rank() == 0 ? &state : nullptr)) {
///     timer.time(device, Section::a, [&] { ... });  // as many sections as needed
///     timer.gather(device);
///     if (device.rank() == 0) ... timer.seconds(Section::a) ...
///   }
///
/// NOTES: the time is the longest rank's, not the span from the earliest start to the latest
/// end (clocks of different machines are not comparable); the barrier before a section lines
/// the starts up. Rank 0 puts its decision into every rank's slot before a barrier and the
/// others read it after; each iteration passes the barriers of time() and gather() before the
/// next decision is put, so no slot is overwritten before it is read. Likewise the durations put
/// into rank 0's part by gather() are read by rank 0 before it enters the next iteration.
template <Device Dev, class Section>
class SymmetricRankTimer {
 public:
  /// Collective: a symmetric allocation for the decision and every rank's durations.
  explicit SymmetricRankTimer(Dev device)
      : slots_(device.allocate_symmetric(
            kFlagBytes + static_cast<std::size_t>(device.world_size()) * kDurationsBytes)) {}

  /// Collective. Rank 0 passes its State and asks it whether to run another iteration; the
  /// others pass nullptr. Every rank returns rank 0's answer.
  bool next(Dev& device, benchmark::State* state) {
    if (state != nullptr) {
      alignas(kTileAlignment) std::array<std::byte, kFlagBytes> decision{};
      decision[0] = std::byte{state->KeepRunning() ? std::uint8_t{1} : std::uint8_t{0}};
      for (int rank = 0; rank < device.world_size(); ++rank) device.put(slots_, rank, 0, decision);
    }
    device.barrier();
    return device.local(slots_)[0] == std::byte{1};
  }

  /// Collective: a barrier lines the ranks up, this rank runs `body` between two stamps, and a
  /// second barrier holds every rank until all have finished.
  template <class Body>
  void time(Dev& device, Section section, Body&& body) {
    device.barrier();
    const Clock::time_point start = Clock::now();
    body();
    durations_[index(section)] = std::chrono::duration<double>(Clock::now() - start).count();
    device.barrier();
  }

  /// Collective: after it, seconds() on rank 0 sees every rank's durations of this iteration.
  void gather(Dev& device) {
    device.put(slots_, 0, durations_offset(device.rank()), std::as_bytes(std::span(durations_)));
    device.barrier();
  }

  /// Rank 0: seconds of the slowest rank in `section` this iteration.
  double seconds(const Dev& device, Section section) const {
    double longest = 0;
    for (int rank = 0; rank < device.world_size(); ++rank) {
      double seconds = 0;
      std::memcpy(&seconds,
                  device.local(slots_) + durations_offset(rank) + index(section) * sizeof(double),
                  sizeof(double));
      longest = std::max(longest, seconds);
    }
    return longest;
  }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kNumSections = static_cast<std::size_t>(Section::count);
  static constexpr std::size_t kDurationsBytes =
      round_up(kNumSections * sizeof(double), kTileAlignment);
  static constexpr std::size_t index(Section section) noexcept {
    return static_cast<std::size_t>(section);
  }
  // Where `rank`'s durations are in rank 0's part, after the decision slot.
  static std::size_t durations_offset(int rank) noexcept {
    return kFlagBytes + static_cast<std::size_t>(rank) * kDurationsBytes;
  }

  typename Dev::Symmetric slots_;
  alignas(kTileAlignment) std::array<double, kDurationsBytes / sizeof(double)> durations_{};
};

}  // namespace cmx::bench
