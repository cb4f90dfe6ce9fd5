// SPDX-License-Identifier: Apache-2.0
// Timing collectives on emulated ranks: rank 0 drives Google Benchmark's loop and the other ranks
// follow in lockstep; a section's time runs from the earliest rank's start to the latest's end.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <vector>

namespace cmx::bench {

/// The benchmark loop of every rank, in lockstep with rank 0's benchmark::State:
///   while (loop.next(device, device.rank() == 0 ? &state : nullptr)) { ...one iteration... }
///
/// NOTES: rank 0 stores its decision before a barrier and the others load it after; the store
/// of the next decision must not overtake those loads, so every iteration must pass at least
/// one barrier of its own (SectionTimer::gather is one).
class LockstepLoop {
 public:
  /// Collective. Rank 0 passes its State and asks it whether to run another iteration; the
  /// others pass nullptr. Every rank returns rank 0's answer.
  template <class Dev>
  bool next(Dev& device, benchmark::State* state) {
    if (state != nullptr) keep_running_.store(state->KeepRunning(), std::memory_order_release);
    device.barrier();
    return keep_running_.load(std::memory_order_acquire);
  }

 private:
  std::atomic<bool> keep_running_{false};
};

/// Per-rank start and end stamps of the timed sections of one iteration. `Section` is an enum
/// whose last enumerator is `count`.
template <class Section>
class SectionTimer {
 public:
  using Clock = std::chrono::steady_clock;

  explicit SectionTimer(int num_ranks) : stamps_(static_cast<std::size_t>(num_ranks)) {}

  /// Collective: a barrier lines the ranks up, this rank runs `body` between two stamps, and a
  /// second barrier holds every rank until all have finished.
  ///
  /// NOTES: the closing barrier matters when ranks outnumber cores: without it, a rank that is
  /// done moves on to the iteration's next (untimed) work and takes CPU from the ranks still in
  /// the section, whose end stamps then measure that other work too.
  template <class Dev, class Body>
  void time(Dev& device, Section section, Body&& body) {
    RankStamps& mine = stamps_[static_cast<std::size_t>(device.rank())];
    device.barrier();
    mine.start[index(section)] = Clock::now();
    body();
    mine.end[index(section)] = Clock::now();
    device.barrier();
  }

  /// Collective: after it, seconds() sees every rank's stamps of this iteration, until the
  /// ranks time the next one.
  template <class Dev>
  void gather(Dev& device) {
    device.barrier();
  }

  /// Seconds from the earliest start to the latest end of `section` over all ranks.
  double seconds(Section section) const {
    Clock::time_point first_start = Clock::time_point::max();
    Clock::time_point last_end = Clock::time_point::min();
    for (const RankStamps& rank : stamps_) {
      first_start = std::min(first_start, rank.start[index(section)]);
      last_end = std::max(last_end, rank.end[index(section)]);
    }
    return std::chrono::duration<double>(last_end - first_start).count();
  }

 private:
  static constexpr std::size_t kNumSections = static_cast<std::size_t>(Section::count);
  static constexpr std::size_t index(Section section) noexcept {
    return static_cast<std::size_t>(section);
  }

  // One rank's stamps, on a cache line of their own: ranks write theirs concurrently.
  struct alignas(64) RankStamps {
    std::array<Clock::time_point, kNumSections> start{};
    std::array<Clock::time_point, kNumSections> end{};
  };
  std::vector<RankStamps> stamps_;  // [num_ranks]
};

/// The median of `samples` (the mean of the middle two for an even count); 0 if empty.
inline double median(std::vector<double> samples) {
  if (samples.empty()) return 0.0;
  const std::size_t middle = samples.size() / 2;
  std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(middle),
                   samples.end());
  const double upper = samples[middle];
  if (samples.size() % 2 == 1) return upper;
  const double lower =
      *std::max_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(middle));
  return (lower + upper) / 2.0;
}

}  // namespace cmx::bench
