// SPDX-License-Identifier: Apache-2.0
// The measured limits of this machine (see machine_limits.hpp).
#include "machine_limits.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <thread>
#include <vector>

#include "cmx/backend/cpu/isa.hpp"

#if CMX_CPU_X86_64
#include <immintrin.h>
#endif

namespace cmx::bench {
namespace {

using Clock = std::chrono::steady_clock;

/// CPU seconds the calling thread has run (not the time it waited for a core).
double thread_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

/// Runs body(thread) on `threads` threads started together; returns the wall seconds.
template <class Body>
double run_together(int threads, Body&& body) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      body(t);
    });
  while (ready.load() < threads) std::this_thread::yield();
  const Clock::time_point start = Clock::now();
  go.store(true);
  for (std::thread& worker : workers) worker.join();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

#if CMX_CPU_X86_64
/// 12 independent VPDPBUSD chains (enough to cover its latency at 2 per cycle), `rounds` times.
constexpr int kChains = 12;
__attribute__((target("avx512f,avx512vnni"), noinline)) std::int32_t vpdpbusd_chains(
    std::int64_t rounds) {
  __m512i c0 = _mm512_set1_epi32(1), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0,
          c8 = c0, c9 = c0, c10 = c0, c11 = c0;
  const __m512i a = _mm512_set1_epi32(0x01020304), b = _mm512_set1_epi32(0x05060708);
  for (std::int64_t i = 0; i < rounds; ++i) {
    c0 = _mm512_dpbusd_epi32(c0, a, b);
    c1 = _mm512_dpbusd_epi32(c1, a, b);
    c2 = _mm512_dpbusd_epi32(c2, a, b);
    c3 = _mm512_dpbusd_epi32(c3, a, b);
    c4 = _mm512_dpbusd_epi32(c4, a, b);
    c5 = _mm512_dpbusd_epi32(c5, a, b);
    c6 = _mm512_dpbusd_epi32(c6, a, b);
    c7 = _mm512_dpbusd_epi32(c7, a, b);
    c8 = _mm512_dpbusd_epi32(c8, a, b);
    c9 = _mm512_dpbusd_epi32(c9, a, b);
    c10 = _mm512_dpbusd_epi32(c10, a, b);
    c11 = _mm512_dpbusd_epi32(c11, a, b);
    // Keeps the chains in registers and every round's work live.
    __asm__ volatile(""
                     : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5), "+v"(c6),
                       "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
  }
  const __m512i sum = _mm512_add_epi32(_mm512_add_epi32(c0, c11), c5);
  return _mm512_cvtsi512_si32(sum);
}

/// Without VNNI: 12 independent chains of VPMADDWD ymm into VPADDD, the exact int8 product of
/// cmx's avx2 tier (codes widened to int16; VPMADDUBSW would saturate), `rounds` times.
__attribute__((target("avx2"), noinline)) std::int32_t vpmaddwd_chains(std::int64_t rounds) {
  __m256i c[kChains];
  for (__m256i& chain : c) chain = _mm256_set1_epi32(1);
  __m256i a = _mm256_set1_epi32(0x00010002);
  const __m256i b = _mm256_set1_epi32(0x00030004);
  for (std::int64_t i = 0; i < rounds; ++i)
    for (int chain = 0; chain < kChains; ++chain) {
      c[chain] = _mm256_add_epi32(c[chain], _mm256_madd_epi16(a, b));
      // Each product counted: the compiler may not reuse one product for the 12 chains.
      __asm__ volatile("" : "+v"(a));
    }
  // Keeps every chain live.
  __asm__ volatile(""
                   : "+v"(c[0]), "+v"(c[1]), "+v"(c[2]), "+v"(c[3]), "+v"(c[4]), "+v"(c[5]),
                     "+v"(c[6]), "+v"(c[7]), "+v"(c[8]), "+v"(c[9]), "+v"(c[10]), "+v"(c[11]));
  const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(c[0], c[11]), c[5]);
  return _mm256_cvtsi256_si32(sum);
}
#endif

}  // namespace

const char* int8_peak_instruction() {
#if CMX_CPU_X86_64
  if (cpu::features().avx512_vnni) return "VPDPBUSD zmm, 128 ops each";
  if (cpu::features().avx2) return "VPMADDWD ymm into VPADDD (no VNNI), 32 ops each";
#endif
  return "";
}

double int8_peak_ops_per_second(int threads, double seconds) {
#if CMX_CPU_X86_64
  const bool vnni = cpu::features().avx512_vnni;
  if (!vnni && !cpu::features().avx2) return 0;
  // Rounds for about `seconds` at 2 instructions per cycle and 4 GHz; timed, not assumed.
  const std::int64_t rounds = static_cast<std::int64_t>(seconds * 4e9 * 2 / kChains);
  // VPDPBUSD zmm: 16 lanes x 4 byte products; VPMADDWD ymm: 8 lanes x 2 int16 products; a
  // multiply and an add each.
  const double ops_per_instruction = vnni ? 64 * 2 : 16 * 2;
  std::vector<double> rates(static_cast<std::size_t>(threads));  // ops per CPU second, per thread
  std::atomic<std::int32_t> sink{0};
  (void)run_together(threads, [&](int t) {
    const double start = thread_cpu_seconds();
    sink += vnni ? vpdpbusd_chains(rounds) : vpmaddwd_chains(rounds);
    rates[static_cast<std::size_t>(t)] = static_cast<double>(rounds) * kChains *
                                         ops_per_instruction / (thread_cpu_seconds() - start);
  });
  double total = 0;
  for (const double rate : rates) total += rate;
  return total;
#else
  (void)threads;
  (void)seconds;
  return 0;
#endif
}

double memcpy_bytes_per_second(int threads, double seconds) {
  constexpr std::size_t kBytes = std::size_t{64} << 20;
  std::vector<std::vector<char>> sources, destinations;
  for (int t = 0; t < threads; ++t) {
    sources.emplace_back(kBytes, 1);
    destinations.emplace_back(kBytes, 0);
  }
  const auto copy = [&](int t) {
    std::memcpy(destinations[static_cast<std::size_t>(t)].data(),
                sources[static_cast<std::size_t>(t)].data(), kBytes);
  };
  (void)run_together(threads, copy);  // first touch of the destinations
  int rounds = 0;
  double elapsed = 0;
  while (elapsed < seconds || rounds == 0) {
    elapsed += run_together(threads, copy);
    ++rounds;
  }
  return static_cast<double>(threads) * static_cast<double>(rounds) * kBytes / elapsed;
}

}  // namespace cmx::bench
