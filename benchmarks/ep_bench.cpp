// SPDX-License-Identifier: Apache-2.0
// The EP benchmark loop: in every iteration each rank runs cmx's kernels, the unfused baseline and
// a memcpy of the same bytes; rank 0 drives Google Benchmark and reports the medians.
#include "ep_bench.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <exception>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cmx/cmx.hpp"
#include "ep_rank_bench.hpp"
#include "ep_summary.hpp"
#include "rank_timer.hpp"
#include "suite.hpp"
#include "unfused_baseline.hpp"

namespace cmx::bench {
namespace {

using Device = tbb_backend::Device;

/// Untimed iterations of each kernel when a World is built.
constexpr int kWarmupIterations = 3;
/// Every wait gives up after this long: 16 ranks on 2 busy cores can be slow, never this slow.
constexpr std::chrono::seconds kWaitTimeout{120};

using RankBench = EpRankBench<Device, UnfusedEp<Device>>;
using Section = EpSection;

/// Seconds per call, medians over the iterations of one run.
struct EpMeasurement {
  double fused_seconds = 0;
  double unfused_seconds = 0;
  double memcpy_seconds = 0;
  std::size_t bytes_per_rank = 0;  // DeepEP-counted bytes one rank moves per call
};

bool is_consequence_of_another_failure(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const Error& cmx_error) {
    return cmx_error.code() == ErrorCode::timeout || cmx_error.code() == ErrorCode::peer_failed;
  } catch (...) {
    return false;
  }
}

}  // namespace

/// A World of W ranks with each rank's RankBench, built and checked once per shape.
class EpWorldBench {
 public:
  explicit EpWorldBench(const EpShape& shape)
      : shape_(shape),
        // One block per rank: cmx's kernels, the unfused baseline and memcpy all get one
        // thread's worth of work per rank, on any machine.
        world_({.num_ranks = shape.num_ranks, .timeout = kWaitTimeout, .blocks_per_rank = 1}),
        ranks_(static_cast<std::size_t>(shape.num_ranks)) {
    SectionTimer<Section> timer(shape.num_ranks);  // warm-up times are not read
    run_on_every_rank([&](Device device) {
      auto rank = std::make_unique<RankBench>(device, shape_);
      rank->run_checked_first_round();
      // Warm-up, once per World: every page and code path that the timed loops of either
      // kernel touch is touched first. The state stays warm between Google Benchmark's runs.
      for (int i = 0; i < kWarmupIterations; ++i)
        for (const Kernel kernel : {Kernel::dispatch, Kernel::combine})
          run_iteration(device, *rank, kernel, timer);
      ranks_[static_cast<std::size_t>(device.rank())] = std::move(rank);
    });
  }

  const EpShape& shape() const noexcept { return shape_; }

  /// Runs Google Benchmark's loop for `kernel`: one iteration per KeepRunning, the cmx
  /// kernel's time as the iteration's manual time.
  EpMeasurement measure(Kernel kernel, benchmark::State& state) {
    LockstepLoop loop;
    SectionTimer<Section> timer(shape_.num_ranks);
    std::vector<double> fused_seconds, unfused_seconds, memcpy_seconds;  // per iteration
    run_on_every_rank([&](Device device) {
      RankBench& rank = *ranks_[static_cast<std::size_t>(device.rank())];
      benchmark::State* driver = device.rank() == 0 ? &state : nullptr;
      while (loop.next(device, driver)) {
        run_iteration(device, rank, kernel, timer);
        if (driver == nullptr) continue;
        driver->SetIterationTime(timer.seconds(Section::fused));
        fused_seconds.push_back(timer.seconds(Section::fused));
        unfused_seconds.push_back(timer.seconds(Section::unfused));
        memcpy_seconds.push_back(timer.seconds(Section::memcpy));
      }
    });
    // Every rank sends T * K messages (no masked choice), so rank 0's bytes are every rank's.
    return {.fused_seconds = median(fused_seconds),
            .unfused_seconds = median(unfused_seconds),
            .memcpy_seconds = median(memcpy_seconds),
            .bytes_per_rank = ranks_.front()->payload_bytes(kernel)};
  }

 private:
  // world_.run, except that the error reported is a root cause: one rank's failure makes its
  // peers time out waiting for it, and the lowest rank's timeout would hide why.
  template <class Body>
  void run_on_every_rank(Body&& body) {
    std::exception_ptr first_error;
    for (const std::exception_ptr& error : world_.run_collect(std::forward<Body>(body))) {
      if (!error) continue;
      if (!is_consequence_of_another_failure(error)) std::rethrow_exception(error);
      if (!first_error) first_error = error;
    }
    if (first_error) std::rethrow_exception(first_error);
  }

  EpShape shape_;
  tbb_backend::World world_;
  std::vector<std::unique_ptr<RankBench>> ranks_;  // [num_ranks], each made by its rank
};

EpBenchSession::EpBenchSession() = default;
EpBenchSession::~EpBenchSession() = default;

EpWorldBench& EpBenchSession::world_for(const EpShape& shape) {
  if (!world_ || world_->shape() != shape) {
    world_.reset();  // free the old World's memory before making the next one
    world_ = std::make_unique<EpWorldBench>(shape);
  }
  return *world_;
}

void EpBenchSession::discard() noexcept {
  world_.reset();
}

namespace {

void run_ep_benchmark(benchmark::State& state, Kernel kernel, EpShape shape,
                      EpBenchSession& session) {
  shape.num_ranks = static_cast<int>(state.range(0));
  shape.num_tokens = static_cast<int>(state.range(1));
  shape.hidden = static_cast<int>(state.range(2));
  shape.num_topk = static_cast<int>(state.range(3));
  try {
    const EpMeasurement measured = session.world_for(shape).measure(kernel, state);
    const double bytes = static_cast<double>(measured.bytes_per_rank);
    state.counters[counter::kLatencyUs] = measured.fused_seconds * 1e6;
    state.counters[counter::kGBps] = bytes / measured.fused_seconds / 1e9;
    state.counters[counter::kMemcpyGBps] = bytes / measured.memcpy_seconds / 1e9;
    state.counters[counter::kRatioMemcpy] = measured.memcpy_seconds / measured.fused_seconds;
    state.counters[counter::kRatioUnfused] = measured.unfused_seconds / measured.fused_seconds;
  } catch (const std::exception& error) {
    session.discard();  // a World in which a rank failed cannot run again
    state.SkipWithError(error.what());
  }
}

}  // namespace

void register_ep_benchmarks(EpBenchSession& session, const EpShape& shape,
                            std::span<const int> rank_counts) {
  EpShape zero_copy = shape;
  zero_copy.combine_source = ep::CombineSource::buffer;
  // (kernel, shape): dispatch and combine share a World; the zero-copy combine has its own.
  const std::pair<Kernel, EpShape> runs[] = {
      {Kernel::dispatch, shape}, {Kernel::combine, shape}, {Kernel::combine, zero_copy}};
  for (const int num_ranks : rank_counts)
    for (const auto& [kernel, run_shape] : runs)
      benchmark::RegisterBenchmark(
          benchmark_name(kernel, run_shape.combine_source),
          [&session, kernel = kernel, run_shape = run_shape](benchmark::State& state) {
            run_ep_benchmark(state, kernel, run_shape, session);
          })
          ->ArgNames({"ranks", "tokens", "hidden", "topk"})
          ->Args({num_ranks, shape.num_tokens, shape.hidden, shape.num_topk})
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
}

namespace {

/// The rank counts benchmarked (EP sizes).
constexpr std::array<int, 4> kRankCounts = {2, 4, 8, 16};

class EpSuite final : public Suite {
 public:
  void register_benchmarks() override {
    register_ep_benchmarks(session_, shape_, kRankCounts);
    std::string ranks;
    for (const int num_ranks : kRankCounts) {
      if (!ranks.empty()) ranks += ',';
      ranks += std::to_string(num_ranks);
    }
    benchmark::AddCustomContext("cmx_ep_backend", "tbb: each rank a thread, one block per rank");
    benchmark::AddCustomContext("cmx_ep_ranks", ranks);
    benchmark::AddCustomContext(
        "cmx_ep_workload", std::to_string(shape_.num_tokens) + " tokens/rank, hidden " +
                               std::to_string(shape_.hidden) + ", top-" +
                               std::to_string(shape_.num_topk) + " of " +
                               std::to_string(shape_.num_experts) +
                               " experts, uniform random routing; INT8 dispatch, bf16 combine");
    benchmark::AddCustomContext(
        "cmx_ep_bytes",
        "per (token, expert) message: dispatch H + 4, combine 2H (as DeepEP counts); "
        "GBps = one rank's bytes / latency, 1e9 B/s");
  }

  void print_summary(std::ostream& out, const std::vector<MeasuredRun>& runs,
                     const PublishedTable& published) const override {
    print_ep_summary(out, shape_, runs, published);
  }

  void finish() noexcept override { session_.discard(); }

 private:
  EpShape shape_;  // the DeepEP low-latency setting
  EpBenchSession session_;
};

}  // namespace

std::unique_ptr<Suite> make_ep_suite() {
  return std::make_unique<EpSuite>();
}

}  // namespace cmx::bench
