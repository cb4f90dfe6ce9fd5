// SPDX-License-Identifier: Apache-2.0
// copy_streaming: a memcpy whose stores bypass the caches, for data written for another rank.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "cmx/backend/cpu/isa.hpp"

#if CMX_CPU_X86_64
#include <immintrin.h>
#endif

namespace cmx::cpu::detail {

#if CMX_CPU_X86_64
/// How far ahead of the bytes being copied the source is prefetched: the rows a put copies come
/// from memory (combine's expert outputs are scattered over a capacity-sized tensor), and each
/// row's first lines would otherwise wait for the hardware prefetcher to notice the stream.
inline constexpr std::size_t kStreamingPrefetchBytes = 2048;

/// copy_streaming with AVX-512: whole 64-byte lines, each one load and one non-temporal store,
/// after a 32-byte half line where the destination starts mid-line. On Zen 5 it took the
/// caller-memory combine, whose puts copy 14 KiB rows from scattered memory, from 0.40-0.46x to
/// 0.48-0.62x memcpy at W = 8 (against the SSE2 loop below, in alternating runs).
__attribute__((target("avx512f"))) inline void copy_streaming_avx512(std::byte* destination,
                                                                     const std::byte* source,
                                                                     std::size_t bytes) {
  std::size_t offset = 0;
  if (reinterpret_cast<std::uintptr_t>(destination) % 64 != 0 && bytes >= 32) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(destination),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(source)));
    offset = 32;
  }
  for (; offset + 64 <= bytes; offset += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(source + offset) + kStreamingPrefetchBytes,
                 _MM_HINT_T0);  // past the end is harmless: a prefetch never faults
    _mm512_stream_si512(reinterpret_cast<__m512i*>(destination + offset),
                        _mm512_loadu_si512(source + offset));
  }
  if (offset < bytes)  // the last half line
    _mm256_stream_si256(reinterpret_cast<__m256i*>(destination + offset),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(source + offset)));
}
#endif

/// Copies `bytes` from `source` to `destination` (32-byte aligned, `bytes` a multiple of 32)
/// with non-temporal stores where the CPU has them (x86-64: AVX-512 where present, else SSE2
/// MOVNTDQ, in every x86-64), else with memcpy. The stores are weakly ordered: before anything
/// publishes them (a flag), the thread that stored calls fence_streaming_stores.
///
/// NOTES: the fence is not in here, because one per copy costs: each SFENCE waits for the
/// copy's lines to drain to memory before the next copy starts. The CPU backends fence once
/// where puts become publishable (DeviceBase::fence_puts: at the end of each block, and before
/// a signal or a barrier): a fence per put cost dispatch 3-7% at W = 8 in paired runs.
inline void copy_streaming(std::byte* destination, const std::byte* source, std::size_t bytes) {
#if CMX_CPU_X86_64
  static const bool has_avx512 = cpu::features().avx512;
  if (has_avx512) return copy_streaming_avx512(destination, source, bytes);
  for (std::size_t offset = 0; offset < bytes; offset += 32) {
    const __m128i low = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source + offset));
    const __m128i high = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source + offset + 16));
    _mm_stream_si128(reinterpret_cast<__m128i*>(destination + offset), low);
    _mm_stream_si128(reinterpret_cast<__m128i*>(destination + offset + 16), high);
  }
#else
  std::memcpy(destination, source, bytes);
#endif
}

/// Orders every streaming store this thread issued (copy_streaming) before its later stores:
/// after it, a release store that publishes them is seen after them. (SFENCE on x86-64; plain
/// stores need nothing more than the release itself.)
///
/// NOTES: non-temporal stores are weakly ordered, even on x86: without the fence a peer that
/// acquires the flag could still read stale lines of the destination. The fence is on the
/// thread that stored, which is the only place it orders anything.
inline void fence_streaming_stores() noexcept {
#if CMX_CPU_X86_64
  _mm_sfence();
#endif
}

}  // namespace cmx::cpu::detail
