// SPDX-License-Identifier: Apache-2.0
// The EP benchmarks: cmx's dispatch and combine on W emulated ranks, with memcpy of the same
// bytes and the unfused baseline timed in the same iterations, on the same World.
#pragma once

#include <memory>
#include <span>

#include "ep_workload.hpp"

namespace cmx::bench {

/// The counters every EP benchmark reports: medians over the iterations of one run.
namespace counter {
inline constexpr char kLatencyUs[] = "latency_us";        // cmx kernel, microseconds per call
inline constexpr char kGBps[] = "GBps";                   // one rank's bytes / latency, 1e9 B/s
inline constexpr char kMemcpyGBps[] = "memcpy_GBps";      // the same bytes by memcpy, 1e9 B/s
inline constexpr char kRatioMemcpy[] = "ratio_memcpy";    // memcpy time / cmx time
inline constexpr char kRatioUnfused[] = "ratio_unfused";  // unfused time / cmx time
// cmx_bench_mpi's baseline: quantize, permute, MPI_Alltoallv, unpermute.
inline constexpr char kAlltoallvUs[] = "alltoallv_us";        // microseconds per call
inline constexpr char kRatioAlltoallv[] = "ratio_alltoallv";  // its time / cmx time
}  // namespace counter

class EpWorldBench;  // one World and its ranks' buffers (ep_bench.cpp)

/// Keeps the World of the shape being benchmarked between Google Benchmark's runs of it (one
/// per repetition and per iteration-count trial): building its gigabytes of buffers once per
/// shape, not once per run, keeps the program's time in the timed loops.
class EpBenchSession {
 public:
  EpBenchSession();
  ~EpBenchSession();
  EpBenchSession(const EpBenchSession&) = delete;
  EpBenchSession& operator=(const EpBenchSession&) = delete;

  /// The World for `shape`, built (collectively, checked) if the kept one has another shape.
  EpWorldBench& world_for(const EpShape& shape);
  /// Frees the kept World (after a failure, which leaves a World unusable, or at the end).
  void discard() noexcept;

 private:
  std::unique_ptr<EpWorldBench> world_;
};

/// Registers, for each W in `rank_counts`, the benchmarks
///   dispatch/ranks:W/tokens:T/hidden:H/topk:K  and  combine/ranks:W/...
/// of `shape` with W ranks (Google Benchmark appends /manual_time). W is the outer loop, so the
/// session builds each World once.
void register_ep_benchmarks(EpBenchSession& session, const EpShape& shape,
                            std::span<const int> rank_counts);

}  // namespace cmx::bench
