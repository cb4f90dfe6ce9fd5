// SPDX-License-Identifier: Apache-2.0
// copy_streaming: a memcpy whose stores bypass the caches, for data written for another rank.
#pragma once

#include <cstddef>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>
#endif

namespace cmx::tbb_backend::detail {

/// Copies `bytes` from `source` to `destination` (32-byte aligned, `bytes` a multiple of 32)
/// with non-temporal stores where the CPU has them (x86-64: SSE2 MOVNTDQ, in every x86-64),
/// else with memcpy. Returns after an SFENCE: the stores are then ordered before any later
/// store of this thread, so a release store that publishes them (a flag) is seen after them.
///
/// NOTES: non-temporal stores are weakly ordered, even on x86: without the fence a peer that
/// acquires the flag could still read stale lines of the destination. The fence is on the
/// thread that stored, which is the only place it orders anything.
inline void copy_streaming(std::byte* destination, const std::byte* source, std::size_t bytes) {
#if defined(__x86_64__) || defined(_M_X64)
  for (std::size_t offset = 0; offset < bytes; offset += 32) {
    const __m128i low = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source + offset));
    const __m128i high = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source + offset + 16));
    _mm_stream_si128(reinterpret_cast<__m128i*>(destination + offset), low);
    _mm_stream_si128(reinterpret_cast<__m128i*>(destination + offset + 16), high);
  }
  _mm_sfence();
#else
  std::memcpy(destination, source, bytes);
#endif
}

}  // namespace cmx::tbb_backend::detail
