// SPDX-License-Identifier: Apache-2.0
// This machine's limits for MLA decode, measured on all of a device's blocks: the bf16 matrix
// peak (independent chains of the widest bf16 product instruction, on registers only) and the
// memory read bandwidth (a streaming read of a buffer far larger than the caches).
#pragma once

#include <benchmark/benchmark.h>
#include <time.h>

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "cmx/cmx.hpp"
#include "lazy_array.hpp"

namespace cmx::bench {

/// The instruction the bf16 peak is measured with, the FLOPs it does, and how many independent
/// chains of it one step of the peak loop runs (enough to hide its latency at two per cycle).
struct PeakInstruction {
  const char* name;  ///< "" if this build has none
  double flops;
  int chains;
};

#if defined(__AVX512BF16__)
inline constexpr PeakInstruction kPeakInstruction{"VDPBF16PS zmm (32 bf16 pairs)", 64, 24};
#elif defined(__FMA__)
inline constexpr PeakInstruction kPeakInstruction{"VFMADD231PS ymm (fp32 on widened bf16)", 16, 12};
#else
inline constexpr PeakInstruction kPeakInstruction{"", 0, 0};
#endif

/// Runs `steps` steps of kPeakInstruction.chains independent chains on registers.
inline void run_product_chains(long steps) {
  for (long step = 0; step < steps; ++step) {
#if defined(__AVX512BF16__)
    __asm__ volatile(
        ".irp r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23\n\t"
        "vdpbf16ps %%zmm30, %%zmm31, %%zmm\\r\n\t"
        ".endr" ::
            : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
              "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18",
              "xmm19", "xmm20", "xmm21", "xmm22", "xmm23");
#elif defined(__FMA__)
    __asm__ volatile(
        ".irp r, 0,1,2,3,4,5,6,7,8,9,10,11\n\t"
        "vfmadd231ps %%ymm14, %%ymm15, %%ymm\\r\n\t"
        ".endr" ::
            : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
              "xmm10", "xmm11");
#else
    benchmark::ClobberMemory();
#endif
  }
}

/// How long a section took. The machine is shared: another program's threads take the cores
/// for a while, so the wall time swings; the CPU time this process spent, spread over the cores
/// it runs on, is the wall time the section would take on a machine of its own (threads that
/// spin or wait count, threads that sleep do not).
struct SectionTime {
  double wall_seconds = 0;
  double core_seconds = 0;  ///< this process's CPU time / cores
};

/// CPU seconds of every thread of this process so far.
inline double process_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

/// Runs `body` on a machine of `cores` cores and says how long it took.
template <class Body>
SectionTime time_section(int cores, Body&& body) {
  const double cpu_start = process_cpu_seconds();
  const auto wall_start = std::chrono::steady_clock::now();
  body();
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  return {.wall_seconds = wall, .core_seconds = (process_cpu_seconds() - cpu_start) / cores};
}

/// Blocks per block the device runs at once, in the measurements below: the device hands them
/// to whichever core is free, as it does the MLA plan's blocks, so that a core another program
/// takes for a while slows the measurement as it slows the kernel.
inline constexpr int kMeasurementBlocksPerCore = 8;

/// FLOP per core-second (SectionTime) of kPeakInstruction on every core of `device` at once
/// (0 if this build has none), over about 10 ms.
template <class Dev>
double measure_peak_flops(Dev& device) {
  constexpr long kSteps = 200'000;  // about 1 ms per block
  const int blocks = kMeasurementBlocksPerCore * device.max_blocks();
  const SectionTime time = time_section(device.max_blocks(), [&] {
    device.launch(blocks, [](Block&) { run_product_chains(kSteps); });
  });
  return kPeakInstruction.flops * kPeakInstruction.chains * kSteps * blocks / time.core_seconds;
}

/// A buffer far larger than the caches, read in slices by every core: its bytes per second.
/// A measurement also evicts what earlier work left in the caches.
class ReadBandwidth {
 public:
  static constexpr std::size_t kBytes = std::size_t{256} << 20;

  ReadBandwidth() : words_(kBytes / sizeof(std::uint64_t)) {
    for (std::size_t i = 0; i < words_.size(); ++i) words_.data()[i] = i;
  }

  /// Bytes per core-second (SectionTime).
  template <class Dev>
  double measure(Dev& device) {
    const std::size_t words = words_.size();
    const SectionTime time = time_section(device.max_blocks(), [&] {
      device.launch(kMeasurementBlocksPerCore * device.max_blocks(), [&](Block& block) {
        const std::size_t begin = words * block.index / block.count;
        const std::size_t end = words * (block.index + 1) / block.count;
        std::uint64_t sum = 0;
        for (std::size_t i = begin; i < end; ++i) sum += words_.data()[i];
        benchmark::DoNotOptimize(sum);
      });
    });
    return static_cast<double>(kBytes) / time.core_seconds;
  }

 private:
  LazyArray<std::uint64_t> words_;
};

}  // namespace cmx::bench
