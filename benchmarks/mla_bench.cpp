// SPDX-License-Identifier: Apache-2.0
// The MLA suite: cmx's MLA decode on FlashMLA's grid scaled to this machine, each iteration
// beside this machine's bf16 peak, its read bandwidth and the oneDNN-composed baseline, all
// measured in the same run.
#include "mla_bench.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cmx/cmx.hpp"
#include "mla_machine.hpp"
#include "mla_onednn_baseline.hpp"
#include "mla_summary.hpp"
#include "suite.hpp"

namespace cmx::bench {
namespace {

using Device = tbb_backend::Device;

/// FlashMLA's inputs for `shape` (tests/test_flash_mla.py): lengths max(N(mean, mean / 2), s_q)
/// truncated, from a fixed seed; every request's table padded to a multiple of 256 tokens and
/// its blocks consecutive (torch.arange); q and the cache drawn from a normal distribution;
/// softmax_scale 576^-1/2 (FlashMLA's default).
MlaInputs make_inputs(const MlaShape& shape) {
  MlaInputs inputs;
  inputs.shape = {
      .batch = shape.batch, .num_queries = shape.num_queries, .num_heads = shape.num_heads};
  std::mt19937_64 random(0);
  std::normal_distribution<double> length(shape.mean_seqlen, shape.mean_seqlen / 2.0);
  for (int b = 0; b < shape.batch; ++b)
    inputs.seqlens.push_back(
        static_cast<std::int32_t>(std::max<double>(length(random), shape.num_queries)));
  const std::int32_t longest = *std::max_element(inputs.seqlens.begin(), inputs.seqlens.end());
  inputs.block_size = kMlaBlockSize;
  inputs.max_blocks_per_seq = (longest + 255) / 256 * 256 / kMlaBlockSize;
  const std::size_t num_blocks = static_cast<std::size_t>(shape.batch) * inputs.max_blocks_per_seq;
  inputs.block_table.resize(num_blocks);
  for (std::size_t i = 0; i < num_blocks; ++i) inputs.block_table[i] = static_cast<std::int32_t>(i);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto fill = [&](std::vector<bf16>& values, std::size_t count) {
    values.resize(count);
    for (bf16& value : values) value = bf16::from_float(normal(random));
  };
  fill(inputs.q, static_cast<std::size_t>(shape.batch) * shape.num_queries * shape.num_heads *
                     attention::kKvDim);
  fill(inputs.kv_cache, num_blocks * kMlaBlockSize * attention::kKvDim);
  inputs.softmax_scale = 1.0f / std::sqrt(static_cast<float>(attention::kKvDim));
  return inputs;
}

/// FlashMLA's check (tests/test_flash_mla.py, cal_diff): 1 - 2 x.y / (x.x + y.y).
double cosine_difference(std::span<const bf16> x, std::span<const bf16> y) {
  double xy = 0, xx = 0, yy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double a = x[i].to_float(), b = y[i].to_float();
    xy += a * b, xx += a * a, yy += b * b;
  }
  return 1.0 - 2.0 * xy / (xx + yy);
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t middle = values.size() / 2;
  return values.size() % 2 ? values[middle] : 0.5 * (values[middle - 1] + values[middle]);
}

/// True if this build has the oneDNN baseline and oneDNN can run it here; else says why not,
/// once. oneDNN (2.6) has bf16 matmul only from AVX-512 (avx512_core, bf16 emulated there) on:
/// below, its primitive descriptors cannot be made. Decided by the CPU's features, so that
/// where oneDNN has bf16 a failure to make the baseline is still an error.
bool use_onednn_baseline() {
#if defined(CMX_BENCH_HAVE_ONEDNN)
  static const bool use = [] {
    if (cpu::features().avx512) return true;
    std::cerr << "cmx_bench: oneDNN has no bf16 matmul on this CPU; ratio_onednn omitted\n";
    return false;
  }();
  return use;
#else
  return false;
#endif
}

/// One grid point: its inputs, cmx's plan and output, and the baseline with its own output.
class MlaWorkload {
 public:
  MlaWorkload(Device& device, const MlaShape& shape)
      : shape_(shape),
        inputs_(make_inputs(shape)),
        plan_(device, inputs_.shape, inputs_.seqlens),
        o_(inputs_.q.size() / attention::kKvDim * attention::kLatentDim),
        lse_(inputs_.q.size() / attention::kKvDim) {
    for (const std::int32_t length : inputs_.seqlens) total_seqlens_ += length;
#if defined(CMX_BENCH_HAVE_ONEDNN)
    if (use_onednn_baseline()) {
      baseline_ = std::make_unique<OnednnMlaBaseline>(inputs_);
      baseline_o_.resize(o_.size());
    }
#endif
  }

  const MlaShape& shape() const noexcept {
    return shape_;
  }
  double total_seqlens() const noexcept {
    return total_seqlens_;
  }

  void run_cmx(Device& device) {
    attention::mla_decode(device, plan_,
                          {.shape = inputs_.shape,
                           .q = inputs_.q,
                           .kv_cache = inputs_.kv_cache,
                           .block_size = inputs_.block_size,
                           .block_table = inputs_.block_table,
                           .max_blocks_per_seq = inputs_.max_blocks_per_seq,
                           .cache_seqlens = inputs_.seqlens,
                           .softmax_scale = inputs_.softmax_scale,
                           .o = o_,
                           .lse = lse_});
  }

  /// False when cmx_bench was built without oneDNN, or oneDNN cannot run it here.
  bool has_baseline() const noexcept {
#if defined(CMX_BENCH_HAVE_ONEDNN)
    return baseline_ != nullptr;
#else
    return false;
#endif
  }
  void run_baseline() {
#if defined(CMX_BENCH_HAVE_ONEDNN)
    baseline_->run(baseline_o_);
#endif
  }

  /// Runs both once and checks that they compute the same attention (FlashMLA's tolerance).
  void check(Device& device) {
    run_cmx(device);
    if (!has_baseline()) return;
    run_baseline();
    const double difference = cosine_difference(o_, baseline_o_);
    if (!(difference < 1e-5)) {
      std::ostringstream text;
      text << "cmx and the oneDNN baseline disagree: 1 - cos = " << difference
           << " (FlashMLA allows 1e-5)";
      throw std::runtime_error(text.str());
    }
  }

 private:
  MlaShape shape_;
  MlaInputs inputs_;
  attention::MlaDecodePlan plan_;
  std::vector<bf16> o_;     // [batch][s_q][h_q][512]
  std::vector<float> lse_;  // [batch][h_q][s_q]
  double total_seqlens_ = 0;
#if defined(CMX_BENCH_HAVE_ONEDNN)
  std::unique_ptr<OnednnMlaBaseline> baseline_;
  std::vector<bf16> baseline_o_;  // [batch][s_q][h_q][512]
#endif
};

/// What the suite keeps between benchmarks: one World (one rank, every hardware thread a
/// block), the read-bandwidth buffer, and the current grid point's workload.
class MlaSession {
 public:
  tbb_backend::World& world() {
    if (!world_)
      world_ = std::make_unique<tbb_backend::World>(tbb_backend::WorldConfig{.num_ranks = 1});
    return *world_;
  }
  ReadBandwidth& bandwidth() {
    if (!bandwidth_) bandwidth_ = std::make_unique<ReadBandwidth>();
    return *bandwidth_;
  }
  MlaWorkload& workload_for(Device& device, const MlaShape& shape) {
    if (!workload_ || workload_->shape() != shape) {
      workload_.reset();  // free the old one first
      workload_ = std::make_unique<MlaWorkload>(device, shape);
      workload_->check(device);
    }
    return *workload_;
  }
  /// Frees everything; after an error, also the World, which a failed run leaves unusable.
  void discard() noexcept {
    workload_.reset();
    bandwidth_.reset();
    world_.reset();
  }

 private:
  std::unique_ptr<tbb_backend::World> world_;
  std::unique_ptr<ReadBandwidth> bandwidth_;
  std::unique_ptr<MlaWorkload> workload_;
};

/// Iterations per repetition: fixed, because an iteration also measures the peak, the bandwidth
/// and the baseline, which on a small batch take far longer than cmx's call (Google
/// Benchmark's --benchmark_min_time counts cmx's time only).
constexpr int kMlaIterations = 4;

/// Lets oneDNN's OpenMP threads go to sleep: libgomp's workers spin for a few milliseconds after
/// each parallel region (GOMP_SPINCOUNT), taking a core and CPU time from whatever runs next.
void settle() {
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

/// One iteration: the baseline, the peak, the read bandwidth (which also evicts the caches),
/// cmx, the read bandwidth again. cmx's wall time is the iteration's time; every figure is
/// computed from core-seconds (SectionTime), which another program's load does not inflate.
void run_mla_benchmark(benchmark::State& state, MlaSession& session) {
  const MlaShape shape{.batch = static_cast<int>(state.range(0)),
                       .mean_seqlen = static_cast<int>(state.range(1)),
                       .num_heads = static_cast<int>(state.range(2)),
                       .num_queries = static_cast<int>(state.range(3))};
  std::vector<double> cmx_seconds, baseline_seconds, peak_flops, read_bytes_per_second;
  double total_seqlens = 0;
  bool has_baseline = false;
  try {
    session.world().run([&](Device device) {
      MlaWorkload& workload = session.workload_for(device, shape);
      ReadBandwidth& bandwidth = session.bandwidth();
      total_seqlens = workload.total_seqlens();
      has_baseline = workload.has_baseline();
      const int cores = device.max_blocks();
      bandwidth.measure(device);  // evicts what the check left in the caches
      for (auto _ : state) {
        if (has_baseline) {
          baseline_seconds.push_back(
              time_section(cores, [&] { workload.run_baseline(); }).core_seconds);
          settle();
        }
        peak_flops.push_back(measure_peak_flops(device));
        read_bytes_per_second.push_back(bandwidth.measure(device));
        const SectionTime cmx = time_section(cores, [&] { workload.run_cmx(device); });
        cmx_seconds.push_back(cmx.core_seconds);
        state.SetIterationTime(cmx.wall_seconds);
        read_bytes_per_second.push_back(bandwidth.measure(device));
      }
    });
  } catch (const std::exception& error) {
    session.discard();
    state.SkipWithError(error.what());
    return;
  }
  const double seconds = median(cmx_seconds);
  const double tflops =
      mla_flops(shape.num_queries, shape.num_heads, total_seqlens) / seconds / 1e12;
  const double gbps =
      mla_bytes(shape.batch, shape.num_queries, shape.num_heads, total_seqlens) / seconds / 1e9;
  const double peak_tflops = median(peak_flops) / 1e12;
  const double read_gbps = median(read_bytes_per_second) / 1e9;
  state.counters[mla_counter::kTflops] = tflops;
  state.counters[mla_counter::kGBps] = gbps;
  state.counters[mla_counter::kPeakTflops] = peak_tflops;
  state.counters[mla_counter::kReadGBps] = read_gbps;
  state.counters[mla_counter::kUtilPeak] = tflops / peak_tflops;
  state.counters[mla_counter::kUtilBw] = gbps / read_gbps;
  if (has_baseline) state.counters[mla_counter::kRatioOnednn] = median(baseline_seconds) / seconds;
}

class MlaSuite final : public Suite {
 public:
  void register_benchmarks() override {
    for (const int batch : kMlaBatches)
      for (const int seqlen : kMlaMeanSeqlens)
        for (const int heads : kMlaHeads)
          for (const int queries : kMlaQueries)
            benchmark::RegisterBenchmark(
                "mla_decode",
                [this](benchmark::State& state) { run_mla_benchmark(state, session_); })
                ->ArgNames({"batch", "seqlen", "heads", "sq"})
                ->Args({batch, seqlen, heads, queries})
                ->UseManualTime()
                ->Iterations(kMlaIterations)
                ->Unit(benchmark::kMillisecond);
    benchmark::AddCustomContext("cmx_mla_backend", "tbb: one rank, every hardware thread a block");
    benchmark::AddCustomContext("cmx_mla_tier",
                                cpu::to_string(cpu::resolve_isa(cpu::KernelFamily::bf16_matmul)));
    benchmark::AddCustomContext(
        "cmx_mla_workload",
        "FlashMLA's grid scaled: batch 1/8/32, mean seqlen 1024/4096 drawn max(N(mean, mean/2), "
        "s_q), h_q 16/128, s_q 1/2, block 64, causal; caches evicted before each timed call");
    benchmark::AddCustomContext(
        "cmx_mla_counters",
        "TFLOPS and GBps by FlashMLA's formulas; util_peak and util_bw against this machine's bf16 "
        "peak and read bandwidth measured in the same iterations; ratio_onednn = oneDNN-composed "
        "baseline time / cmx time");
  }

  void print_summary(std::ostream& out, const std::vector<MeasuredRun>& runs,
                     const PublishedTable& published) const override {
    print_mla_summary(out, runs, published);
  }

  void finish() noexcept override { session_.discard(); }

 private:
  MlaSession session_;
};

}  // namespace

std::unique_ptr<Suite> make_mla_suite() {
  return std::make_unique<MlaSuite>();
}

}  // namespace cmx::bench
