// SPDX-License-Identifier: Apache-2.0
// This machine's limits, measured in the same run as the kernels they bound: the int8 peak of
// its cores and the bandwidth memcpy gets from its memory.
#pragma once

namespace cmx::bench {

/// The int8 multiply-accumulate peak of `threads` cores together, in operations per second (a
/// multiply and an add count 2): each thread runs independent chains of VPDPBUSD on zmm
/// registers (64 multiply-adds each) from registers only, for about `seconds`, and its rate is
/// taken over the CPU time it ran (CLOCK_THREAD_CPUTIME_ID), so that other programs sharing the
/// cores do not lower it; the threads' rates are summed. Without AVX512_VNNI, chains of
/// VPMADDWD ymm (16 multiply-adds each), the exact product cmx's avx2 tier is made of; 0
/// without AVX2 either.
double int8_peak_ops_per_second(int threads, double seconds);

/// The instruction int8_peak_ops_per_second measures on this CPU, for the summary ("" if none).
const char* int8_peak_instruction();

/// Bytes per second that `threads` threads copy together with memcpy between buffers of
/// 64 MiB each (counting the bytes copied once, as a kernel's traffic is counted).
double memcpy_bytes_per_second(int threads, double seconds);

}  // namespace cmx::bench
