// SPDX-License-Identifier: Apache-2.0
// cmx_bench_mpi: FusedDispatch and FusedCombine on the MPI backend, one rank per process, at the
// DeepEP low-latency setting, beside the pipeline users write today with MPI (quantize, permute
// by destination, MPI_Alltoallv, unpermute; the reverse for combine), timed in the same
// iterations and checked to deliver the same bytes, then summarized beside the published figures.
//
//   mpirun -np 8 cmx_bench_mpi [--published_numbers=PATH] [Google Benchmark flags]
//   mpirun -np 16 --hostfile hosts cmx_bench_mpi
//
// Every benchmark runs on the first W processes (W = 2, 4, 8, ... up to the process count; the
// others sleep), with the ranks of a node on its shared memory and, in the "_rma" rows, every
// rank reached by MPI_Put/MPI_Get as if on a node of its own (IntraNode::rma). Rank 0 runs Google
// Benchmark and reports (the flags and defaults of cmx_bench); the others follow its commands.
#include <benchmark/benchmark.h>
#include <mpi.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "alltoallv_exchange.hpp"
#include "cmx/backend/mpi.hpp"
#include "cmx/cmx.hpp"
#include "ep_bench.hpp"
#include "ep_rank_bench.hpp"
#include "ep_summary.hpp"
#include "ep_workload.hpp"
#include "published.hpp"
#include "rank_timer.hpp"
#include "report.hpp"
#include "symmetric_rank_timer.hpp"
#include "unfused_baseline.hpp"

namespace cmx::bench {
namespace {

using Device = mpi_backend::Device;
using mpi_backend::IntraNode;
using RankBench = EpRankBench<Device, UnfusedEp<Device, AlltoallvExchange>>;
using Timer = SymmetricRankTimer<Device, EpSection>;

/// The process counts benchmarked (EP sizes), those up to the number of processes.
constexpr std::array<int, 3> kProcessCounts = {2, 4, 8};
/// Untimed iterations of each kernel when a World is built.
constexpr int kWarmupIterations = 3;
/// Every wait of a benchmark's World gives up after this long.
constexpr std::chrono::seconds kWaitTimeout{120};
/// Followers wait this long for rank 0's next command (Google Benchmark's own work included).
constexpr std::chrono::minutes kCommandTimeout{10};

/// The suffix of the names of the benchmarks on the MPI_Put path.
constexpr char kRmaSuffix[] = "_rma";

/// One benchmark: a kernel on the first `num_processes` processes, over a path.
struct MpiEpRun {
  Kernel kernel;
  ep::CombineSource combine_source;
  IntraNode intra_node;
  int num_processes;

  /// "dispatch", "combine" or "combine_zero_copy", with "_rma" on the MPI_Put path.
  std::string name() const {
    return std::string(benchmark_name(kernel, combine_source)) +
           (intra_node == IntraNode::rma ? kRmaSuffix : "");
  }
  /// The DeepEP setting of `base` on this run's processes and combine source.
  EpShape shape(EpShape base) const {
    base.num_ranks = num_processes;
    base.combine_source = combine_source;
    return base;
  }
  /// Runs that share a World (and its buffers): dispatch and combine from the caller's memory.
  bool shares_world_with(const MpiEpRun& other) const {
    return combine_source == other.combine_source && intra_node == other.intra_node &&
           num_processes == other.num_processes;
  }
};

/// The benchmarks, the same list on every process, grouped so that consecutive runs share a World.
std::vector<MpiEpRun> plan_runs(int num_processes) {
  std::vector<MpiEpRun> runs;
  for (const int processes : kProcessCounts) {
    if (processes > num_processes) continue;
    for (const IntraNode intra_node : {IntraNode::shared_memory, IntraNode::rma}) {
      runs.push_back({Kernel::dispatch, ep::CombineSource::caller_memory, intra_node, processes});
      runs.push_back({Kernel::combine, ep::CombineSource::caller_memory, intra_node, processes});
      runs.push_back({Kernel::combine, ep::CombineSource::buffer, intra_node, processes});
    }
  }
  return runs;
}

/// Rank 0's commands to the other processes: which run next (an index into plan_runs), or the
/// end (-1). Over a World of every process, so that followers sleep while they wait.
class Driver {
 public:
  /// Collective over MPI_COMM_WORLD.
  Driver()
      : world_(MPI_COMM_WORLD, {.timeout = kCommandTimeout}),
        device_(world_.device()),
        commands_(device_.allocate_symmetric(kFlagBytes)) {}

  /// Rank 0: every process runs `run` next.
  void send(int run) {
    ++sequence_;
    for (int rank = 1; rank < device_.world_size(); ++rank)
      device_.signal(commands_, rank, 0, sequence_, run);
    device_.barrier();  // every follower has read it: the next command may overwrite it
  }

  /// The other ranks: the next command.
  int receive() {
    ++sequence_;
    const auto run = device_.wait(commands_, 0, sequence_, {"cmx_bench_mpi's next command", 0, -1});
    device_.barrier();
    return static_cast<int>(run);
  }

 private:
  mpi_backend::World world_;
  Device device_;
  Device::Symmetric commands_;
  std::uint64_t sequence_ = 0;
};

/// What one process keeps of the World being benchmarked.
struct Participant {
  Participant(MPI_Comm communicator, const MpiEpRun& run, const EpShape& shape)
      : world(communicator,
              {.timeout = kWaitTimeout, .blocks_per_rank = 1, .intra_node = run.intra_node}),
        device(world.device()),
        bench(device, shape),
        timer(device) {}

  // One block per rank: cmx's kernels, the baseline and memcpy all get one thread's worth of
  // work per rank, on any machine.
  mpi_backend::World world;
  Device device;
  RankBench bench;
  Timer timer;
};

/// Keeps the World of the run being benchmarked between Google Benchmark's runs of it, and
/// between the runs that share it.
class MpiEpSession {
 public:
  explicit MpiEpSession(const EpShape& shape) : shape_(shape) {}
  MpiEpSession(const MpiEpSession&) = delete;
  MpiEpSession& operator=(const MpiEpSession&) = delete;
  ~MpiEpSession() { discard(); }

  /// Collective over every process: the World of `run` on its first num_processes processes,
  /// built, checked and warmed up unless the kept one serves it. Null on the others.
  Participant* prepare(const MpiEpRun& run) {
    if (kept_ && kept_->shares_world_with(run)) return participant_.get();
    discard();
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const bool takes_part = rank < run.num_processes;
    mpi_backend::detail::check_mpi(
        MPI_Comm_split(MPI_COMM_WORLD, takes_part ? 0 : MPI_UNDEFINED, rank, &communicator_),
        "MPI_Comm_split");
    kept_ = std::make_unique<MpiEpRun>(run);
    if (!takes_part) return nullptr;
    participant_ = std::make_unique<Participant>(communicator_, run, run.shape(shape_));
    Participant& me = *participant_;
    me.bench.run_checked_first_round();
    // Every page and code path that the timed loops of either kernel touch is touched first.
    for (int i = 0; i < kWarmupIterations; ++i)
      for (const Kernel kernel : {Kernel::dispatch, Kernel::combine})
        run_iteration(me.device, me.bench, kernel, me.timer);
    return participant_.get();
  }

  /// Collective among the kept World's processes: frees it.
  void discard() noexcept {
    participant_.reset();
    if (communicator_ != MPI_COMM_NULL) MPI_Comm_free(&communicator_);
    kept_.reset();
  }

 private:
  EpShape shape_;
  std::unique_ptr<MpiEpRun> kept_;  // the run whose World is kept
  MPI_Comm communicator_ = MPI_COMM_NULL;
  std::unique_ptr<Participant> participant_;
};

/// Seconds per call, medians over the iterations of one run (rank 0's; zeros elsewhere).
struct EpMeasurement {
  double fused_seconds = 0;
  double alltoallv_seconds = 0;
  double memcpy_seconds = 0;
};

/// Google Benchmark's loop for `kernel`, in lockstep with rank 0 (which passes its State).
EpMeasurement measure(Participant& me, Kernel kernel, benchmark::State* state) {
  std::vector<double> fused, alltoallv, copy;  // per iteration
  while (me.timer.next(me.device, state)) {
    run_iteration(me.device, me.bench, kernel, me.timer);
    if (state == nullptr) continue;
    state->SetIterationTime(me.timer.seconds(me.device, EpSection::fused));
    fused.push_back(me.timer.seconds(me.device, EpSection::fused));
    alltoallv.push_back(me.timer.seconds(me.device, EpSection::unfused));
    copy.push_back(me.timer.seconds(me.device, EpSection::memcpy));
  }
  return {median(fused), median(alltoallv), median(copy)};
}

/// A failure on any process ends the run: a World is not reused after an error, and the other
/// processes may be waiting for this one.
[[noreturn]] void abort_run(const std::exception& error) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  std::fprintf(stderr, "cmx_bench_mpi: rank %d: %s\n", rank, error.what());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();
}

void run_benchmark(benchmark::State& state, int index, const std::vector<MpiEpRun>& runs,
                   Driver& driver, MpiEpSession& session) {
  try {
    driver.send(index);
    Participant& me = *session.prepare(runs[static_cast<std::size_t>(index)]);
    const Kernel kernel = runs[static_cast<std::size_t>(index)].kernel;
    const EpMeasurement measured = measure(me, kernel, &state);
    // Every rank sends T * K messages (no masked choice), so rank 0's bytes are every rank's.
    const double bytes = static_cast<double>(me.bench.payload_bytes(kernel));
    state.counters[counter::kLatencyUs] = measured.fused_seconds * 1e6;
    state.counters[counter::kGBps] = bytes / measured.fused_seconds / 1e9;
    state.counters[counter::kAlltoallvUs] = measured.alltoallv_seconds * 1e6;
    state.counters[counter::kRatioAlltoallv] = measured.alltoallv_seconds / measured.fused_seconds;
    state.counters[counter::kMemcpyGBps] = bytes / measured.memcpy_seconds / 1e9;
    state.counters[counter::kRatioMemcpy] = measured.memcpy_seconds / measured.fused_seconds;
  } catch (const std::exception& error) {
    abort_run(error);
  }
}

// The other processes: run what rank 0 says until it says stop.
void follow(Driver& driver, const std::vector<MpiEpRun>& runs, MpiEpSession& session) {
  try {
    for (int index = driver.receive(); index >= 0; index = driver.receive())
      if (Participant* me = session.prepare(runs[static_cast<std::size_t>(index)]))
        measure(*me, runs[static_cast<std::size_t>(index)].kernel, nullptr);
    session.discard();
  } catch (const std::exception& error) {
    abort_run(error);
  }
}

void register_benchmarks(const std::vector<MpiEpRun>& runs, const EpShape& shape, Driver& driver,
                         MpiEpSession& session) {
  for (std::size_t index = 0; index < runs.size(); ++index)
    benchmark::RegisterBenchmark(runs[index].name().c_str(),
                                 [&, index = static_cast<int>(index)](benchmark::State& state) {
                                   run_benchmark(state, index, runs, driver, session);
                                 })
        ->ArgNames({"procs", "tokens", "hidden", "topk"})
        ->Args({runs[index].num_processes, shape.num_tokens, shape.hidden, shape.num_topk})
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
  int num_processes = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &num_processes);
  benchmark::AddCustomContext(
      "cmx_ep_backend",
      "mpi: one rank per process, one block per rank; shared memory within a node, MPI_Put "
      "between nodes (forced between every pair in the _rma rows)");
  benchmark::AddCustomContext("cmx_ep_processes", std::to_string(num_processes));
  benchmark::AddCustomContext(
      "cmx_ep_baseline",
      "quantize, permute by destination, MPI_Alltoall of counts + MPI_Alltoallv, unpermute "
      "(combine: the reverse, then the weighted reduction)");
}

}  // namespace
}  // namespace cmx::bench

int main(int argc, char** argv) {
  using namespace cmx::bench;
  cmx::mpi_backend::Environment mpi(argc, argv);
  int rank = 0;
  int num_processes = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &num_processes);
  const EpShape shape;  // the DeepEP low-latency setting
  const std::vector<MpiEpRun> runs = plan_runs(num_processes);
  try {
    Driver driver;
    MpiEpSession session(shape);
    if (rank != 0) {
      follow(driver, runs, session);
      return 0;
    }
    const auto published = initialize(argc, argv, CMX_BENCH_PUBLISHED_NUMBERS);
    if (!published) {
      driver.send(-1);
      return 1;
    }
    add_common_context();
    register_benchmarks(runs, shape, driver, session);
    // Owned by Google Benchmark; it follows --benchmark_format.
    benchmark::BenchmarkReporter* display = benchmark::CreateDefaultDisplayReporter();
    RunCollector collector(*display);
    benchmark::RunSpecifiedBenchmarks(&collector);
    driver.send(-1);
    session.discard();
    print_ep_mpi_summary(summary_stream(*display), shape, collector.runs(), *published);
    benchmark::Shutdown();
  } catch (const std::exception& error) {
    abort_run(error);
  }
  return 0;
}
