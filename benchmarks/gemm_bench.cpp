// SPDX-License-Identifier: Apache-2.0
// The GEMM suite: every iteration runs cmx's kernel and oneDNN's on the same operands, each
// timed on its own, in alternating order; cmx runs on a 1-rank World with a block per hardware
// thread, oneDNN with its default OpenMP team (every hardware thread).
#include "gemm_bench.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cmx/cmx.hpp"
#include "gemm_summary.hpp"
#include "gemm_workload.hpp"
#include "machine_limits.hpp"
#include "onednn_baseline.hpp"
#include "rank_timer.hpp"
#include "suite.hpp"

namespace cmx::bench {
namespace {

using Device = tbb_backend::Device;
using Clock = std::chrono::steady_clock;

int hardware_threads() {
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

/// Why oneDNN is no baseline on this CPU, or null. Its int8 matmul sums exactly only with
/// VPDPBUSD (AVX512_VNNI, AVX-VNNI, AMX); without, it multiplies with VPMADDUBSW, whose int16
/// pair sums saturate on full-range codes, while cmx's sums are exact int32 (the tests check
/// them against a scalar reference). Decided by the CPU's features, not by the results, so that
/// where oneDNN is exact a difference from it is still an error.
const char* onednn_omitted_because() {
  if (!have_onednn()) return nullptr;  // the baseline is absent, and the context says why
  const cpu::Features& f = cpu::features();
  if (f.avx512_vnni || f.avx_vnni || f.amx_int8) return nullptr;
  return "oneDNN is not exact on this CPU (no VNNI: int16 saturation); ratio_onednn omitted";
}

/// True if oneDNN is run and checked beside cmx; else says why not, once.
bool use_onednn() {
  static const bool use = [] {
    const char* reason = onednn_omitted_because();
    if (reason != nullptr) std::cerr << "cmx_bench: " << reason << '\n';
    return have_onednn() && reason == nullptr;
  }();
  return use;
}

/// Seconds `body` takes.
template <class Body>
double seconds_of(Body&& body) {
  const Clock::time_point start = Clock::now();
  body();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// The two timed sections of an iteration.
enum class Section { cmx, onednn };

/// After oneDNN's section: OpenMP's threads spin a while before they sleep (unless
/// OMP_WAIT_POLICY=passive, read when the program starts) and would take cores from the next
/// section, so it waits for them; likewise, more briefly, for oneTBB's workers after cmx.
void settle_after(Section section) {
  static const bool passive = [] {
    const char* policy = std::getenv("OMP_WAIT_POLICY");
    return policy != nullptr &&
           (std::string(policy) == "passive" || std::string(policy) == "PASSIVE");
  }();
  std::this_thread::sleep_for(
      std::chrono::milliseconds(section == Section::onednn && !passive ? 20 : 2));
}

/// Runs Google Benchmark's loop: each iteration times cmx and oneDNN, in alternating order;
/// the iteration's time is cmx's. Returns the medians in seconds.
struct Medians {
  double cmx = 0;
  double onednn = 0;
};
template <class Cmx, class OneDnn>
Medians measure(benchmark::State& state, Cmx&& cmx, OneDnn&& onednn) {
  std::vector<double> cmx_seconds, onednn_seconds;
  bool cmx_first = true;
  for (auto _ : state) {
    double cmx_time = 0, onednn_time = 0;
    for (int turn = 0; turn < 2; ++turn)
      if ((turn == 0) == cmx_first) {
        cmx_time = seconds_of(cmx);
        settle_after(Section::cmx);
      } else {
        onednn_time = seconds_of(onednn);
        settle_after(Section::onednn);
      }
    cmx_first = !cmx_first;
    state.SetIterationTime(cmx_time);
    cmx_seconds.push_back(cmx_time);
    onednn_seconds.push_back(onednn_time);
  }
  return {median(cmx_seconds), median(onednn_seconds)};
}

/// Throws unless `got` is within a bf16 rounding of `expected` everywhere (the two sides round
/// the same exact sum with their scales applied in another order).
void require_close(std::span<const bf16> got, std::span<const bf16> expected,
                   std::span<const std::size_t> rows, std::size_t width, const char* what) {
  for (const std::size_t row : rows)
    for (std::size_t j = 0; j < width; ++j) {
      const float a = got[row * width + j].to_float();
      const float b = expected[row * width + j].to_float();
      if (std::fabs(a - b) > std::ldexp(std::fabs(b), -7) + 1e-30f) {
        std::ostringstream text;
        text << what << ": cmx and oneDNN differ at [" << row << ", " << j << "]: " << a << " vs "
             << b;
        throw std::runtime_error(text.str());
      }
    }
}

// ---- dense ----------------------------------------------------------------------------------

/// The operands of one dense shape, cmx's and oneDNN's, built on the rank's thread.
struct DenseProblem {
  DenseShape shape;
  std::vector<std::int8_t> a;   // [m, k]
  std::vector<float> a_scales;  // [m]
  gemm::PackedWeights b;        // [n, k], packed by cmx
  std::optional<OneDnnMatmul> onednn;
  std::vector<bf16> c;            // [m, n] cmx's output
  std::vector<float> onednn_c;    // [m, n] oneDNN's f32 output
  std::vector<bf16> onednn_out;   // [m, n] after the per-token scales
  std::vector<std::size_t> rows;  // 0 ... m-1: the output rows of scale_rows

  DenseProblem(Device& device, const DenseShape& dense) : shape(dense) {
    const std::size_t m = static_cast<std::size_t>(shape.m), n = static_cast<std::size_t>(shape.n),
                      k = static_cast<std::size_t>(shape.k);
    a = random_codes(m * k, 0xa11ceu + m);
    a_scales = random_scales(m, 0.02f, 0xa5ca1eu + m);
    const std::vector<std::int8_t> b_codes = random_codes(n * k, 0xb0bu + n * 31 + k);
    const std::vector<float> b_scales = random_scales(n, 0.003f, 0xb5ca1eu + n);
    b = gemm::pack_weights(device,
                           {.codes = b_codes, .scales = b_scales, .n = shape.n, .k = shape.k});
    c.resize(m * n);
    onednn_out.resize(m * n);
    for (std::size_t i = 0; i < m; ++i) rows.push_back(i);
    if (use_onednn()) {
      onednn.emplace(shape.m, shape.n, shape.k, b_codes, b_scales);
      onednn_c.resize(m * n);
    }
    run_cmx(device);
    check_exact_samples(b_codes, b_scales);
    if (onednn) {
      run_onednn();
      require_close(c, onednn_out, rows, n, "dense GEMM");
    }
  }

  void run_cmx(Device& device) {
    gemm::gemm(device,
               gemm::GemmArgs<bf16>{.a = a, .a_scales = a_scales, .b = b, .c = c, .m = shape.m});
  }
  void run_onednn() {
    onednn->run(a.data(), onednn_c.data());
    scale_rows(onednn_c.data(), a_scales, shape.n, rows, onednn_out.data());
  }

  /// 256 sampled elements of cmx's output against the exact sums and the defined epilogue.
  void check_exact_samples(const std::vector<std::int8_t>& b_codes,
                           const std::vector<float>& b_scales) {
    std::mt19937_64 random(7);
    for (int sample = 0; sample < 256; ++sample) {
      const std::size_t i = random() % static_cast<std::size_t>(shape.m);
      const std::size_t j = random() % static_cast<std::size_t>(shape.n);
      std::int64_t sum = 0;
      for (std::size_t d = 0; d < static_cast<std::size_t>(shape.k); ++d)
        sum += std::int64_t{a[i * shape.k + d]} * std::int64_t{b_codes[j * shape.k + d]};
      const bf16 want = bf16::from_float(
          gemm::dequantize(static_cast<std::int32_t>(sum), a_scales[i], b_scales[j]));
      if (c[i * shape.n + j] != want)
        throw std::runtime_error("dense GEMM: cmx differs from the exact sum at a sampled element");
    }
  }
};

// ---- the expert-parallel rank: grouped masked GEMMs and the expert FFN ----------------------

/// The expert projection a grouped benchmark multiplies by: gate and up together [2I, H] on
/// the tokens, or down [H, I] on rows of the intermediate's size.
enum class Projection { gate_up, down };

/// One local expert as oneDNN runs it: gather its rows, multiply, scale, scatter.
struct OneDnnExpert {
  int rows = 0;
  std::vector<std::size_t> slots;       // [rows] the slot (output row) of each of its rows
  std::optional<OneDnnMatmul> gate_up;  // [rows] x [2I, H]
  std::optional<OneDnnMatmul> down;     // [rows] x [H, I]
};

/// Everything the grouped and FFN benchmarks of one MoE shape use.
struct MoeProblem {
  MoeShape shape;
  DispatchedRows x;       // the receive area's rows of H codes: gate/up input
  DispatchedRows x_down;  // the same slots, rows of I codes: the down-shaped GEMM's input
  std::vector<gemm::PackedWeights> gate_up;  // [E_local] [2I, H]
  std::vector<gemm::PackedWeights> down;     // [E_local] [H, I]
  std::vector<gemm::ExpertWeights> ffn;      // [E_local] gate, up [I, H], down [H, I]
  gemm::ExpertFfnWorkspace ffn_workspace;    // the FFN's INT8 intermediate
  std::vector<OneDnnExpert> onednn;          // [E_local]
  // Outputs [slots][N]: cmx's, oneDNN's.
  std::vector<bf16> c, onednn_out;
  // oneDNN's work buffers, sized for the largest expert.
  std::vector<std::int8_t> gathered;  // [rows][max(H, I)]
  std::vector<float> gathered_scales, h_scales, onednn_c, h;
  std::vector<std::int8_t> h_codes;

  MoeProblem(Device& device, const MoeShape& moe)
      : shape(moe),
        x(moe, moe.hidden, skewed_counts(moe)),
        x_down(moe, moe.intermediate, skewed_counts(moe)),
        ffn_workspace(x.rows().num_slots(), moe.intermediate) {
    const std::size_t hidden = static_cast<std::size_t>(shape.hidden);
    const std::size_t inter = static_cast<std::size_t>(shape.intermediate);
    int max_rows = 0;
    for (int e = 0; e < shape.local_experts; ++e) {
      const std::vector<std::int8_t> gate_up_codes = random_codes(2 * inter * hidden, 0x6a7eu + e);
      const std::vector<float> gate_up_scales = random_scales(2 * inter, 0.003f, 0x6a7e5u + e);
      const std::vector<std::int8_t> down_codes = random_codes(hidden * inter, 0xd0e7u + e);
      const std::vector<float> down_scales = random_scales(hidden, 0.003f, 0xd0e75u + e);
      const std::span<const std::int8_t> codes(gate_up_codes);
      const std::span<const float> scales(gate_up_scales);
      gate_up.push_back(gemm::pack_weights(
          device,
          {.codes = codes, .scales = scales, .n = 2 * shape.intermediate, .k = shape.hidden}));
      down.push_back(gemm::pack_weights(device, {.codes = down_codes,
                                                 .scales = down_scales,
                                                 .n = shape.hidden,
                                                 .k = shape.intermediate}));
      ffn.push_back({gemm::pack_weights(device, {.codes = codes.first(inter * hidden),
                                                 .scales = scales.first(inter),
                                                 .n = shape.intermediate,
                                                 .k = shape.hidden}),
                     gemm::pack_weights(device, {.codes = codes.subspan(inter * hidden),
                                                 .scales = scales.subspan(inter),
                                                 .n = shape.intermediate,
                                                 .k = shape.hidden}),
                     gemm::pack_weights(device, {.codes = down_codes,
                                                 .scales = down_scales,
                                                 .n = shape.hidden,
                                                 .k = shape.intermediate})});
      OneDnnExpert expert;
      const gemm::MaskedRows rows = x.rows();
      for (int s = 0; s < rows.num_segments; ++s)
        for (int slot = 0; slot < rows.count(e, s); ++slot)
          expert.slots.push_back(rows.slot_index(e, s, slot));
      expert.rows = static_cast<int>(expert.slots.size());
      max_rows = std::max(max_rows, expert.rows);
      if (use_onednn() && expert.rows > 0) {
        expert.gate_up.emplace(expert.rows, 2 * shape.intermediate, shape.hidden, gate_up_codes,
                               gate_up_scales);
        expert.down.emplace(expert.rows, shape.hidden, shape.intermediate, down_codes, down_scales);
      }
      onednn.push_back(std::move(expert));
    }
    const std::size_t slots = x.rows().num_slots();
    c.resize(slots * std::max(hidden, 2 * inter));
    onednn_out.resize(c.size());
    const std::size_t rows = static_cast<std::size_t>(max_rows);
    gathered.resize(rows * std::max(hidden, inter));
    gathered_scales.resize(rows);
    h_scales.resize(rows);
    onednn_c.resize(rows * std::max(hidden, 2 * inter));
    h.resize(rows * inter);
    h_codes.resize(rows * inter);
  }

  /// The valid slots of every expert, in expert order.
  std::vector<std::size_t> valid_slots() const {
    std::vector<std::size_t> all;
    for (const OneDnnExpert& expert : onednn)
      all.insert(all.end(), expert.slots.begin(), expert.slots.end());
    return all;
  }

  /// Gathers `expert`'s rows of `rows` into `gathered` and `gathered_scales`.
  void gather(const gemm::MaskedRows& rows, const OneDnnExpert& expert) {
    const std::size_t k = static_cast<std::size_t>(rows.k);
    for (std::size_t i = 0; i < expert.slots.size(); ++i) {
      std::memcpy(gathered.data() + i * k, rows.row_codes(expert.slots[i]), k);
      gathered_scales[i] = rows.row_scale(expert.slots[i]);
    }
  }

  /// The grouped masked GEMM of `weights` (gate_up or down) on `input`, with cmx.
  void cmx_grouped(Device& device, const DispatchedRows& input,
                   const std::vector<gemm::PackedWeights>& weights) {
    const gemm::MaskedRows rows = input.rows();
    const std::size_t n = static_cast<std::size_t>(weights.front().n());
    gemm::grouped_gemm_masked(
        device, gemm::MaskedGemmArgs<bf16>{
                    .a = rows, .weights = weights, .c = std::span(c).first(rows.num_slots() * n)});
  }
  /// The same with oneDNN, once per expert as a user calls it.
  void onednn_grouped(const DispatchedRows& input, Projection projection) {
    const gemm::MaskedRows rows = input.rows();
    for (OneDnnExpert& expert : onednn) {
      if (expert.rows == 0) continue;
      gather(rows, expert);
      OneDnnMatmul& matmul = projection == Projection::gate_up ? *expert.gate_up : *expert.down;
      matmul.run(gathered.data(), onednn_c.data());
      const int n = projection == Projection::gate_up ? 2 * shape.intermediate : shape.hidden;
      scale_rows(onednn_c.data(), gathered_scales, n, expert.slots, onednn_out.data());
    }
  }

  void cmx_ffn(Device& device) {
    const gemm::MaskedRows rows = x.rows();
    gemm::expert_ffn(device, {.x = rows,
                              .experts = ffn,
                              .out = std::span(c).first(rows.num_slots() *
                                                        static_cast<std::size_t>(shape.hidden)),
                              .workspace = ffn_workspace});
  }
  /// The unfused FFN with oneDNN: per expert, gather; gate+up in one matmul; SwiGLU and the
  /// per-token re-quantization (cmx's own row functions); down; scale and scatter.
  void onednn_ffn() {
    const gemm::MaskedRows rows = x.rows();
    const std::size_t inter = static_cast<std::size_t>(shape.intermediate);
    for (OneDnnExpert& expert : onednn) {
      if (expert.rows == 0) continue;
      gather(rows, expert);
      expert.gate_up->run(gathered.data(), onednn_c.data());
      for (std::size_t r = 0; r < expert.slots.size(); ++r) {
        const float* gu = onednn_c.data() + r * 2 * inter;
        float* h_row = h.data() + r * inter;
        const float scale = gathered_scales[r];
        for (std::size_t i = 0; i < inter; ++i)
          h_row[i] = gemm::silu_mul(gu[i] * scale, gu[inter + i] * scale);
        h_scales[r] = quantize_row_int8(std::span<const float>(h_row, inter),
                                        std::span(h_codes).subspan(r * inter, inter));
      }
      expert.down->run(h_codes.data(), onednn_c.data());
      scale_rows(onednn_c.data(), h_scales, shape.hidden, expert.slots, onednn_out.data());
    }
  }

  std::size_t total_rows() const noexcept { return static_cast<std::size_t>(x.total_rows()); }
};

// ---- the suite ------------------------------------------------------------------------------

/// Keeps the World and the operands of the shape being benchmarked between Google Benchmark's
/// runs of a benchmark (weights are packed once per shape, as an engine packs them at load).
class GemmSession {
 public:
  /// Runs body(device, problem) on the rank's thread, with the dense problem of `shape`.
  template <class Body>
  void with_dense(const DenseShape& shape, Body&& body) {
    world().run([&](Device device) {
      if (!dense_ || dense_->shape != shape) {
        dense_.reset();
        dense_ = std::make_unique<DenseProblem>(device, shape);
      }
      body(device, *dense_);
    });
  }
  /// Runs body(device, problem) on the rank's thread, with the MoE problem of `shape`.
  template <class Body>
  void with_moe(const MoeShape& shape, Body&& body) {
    world().run([&](Device device) {
      dense_.reset();
      if (!moe_ || moe_->shape != shape) {
        moe_.reset();
        moe_ = std::make_unique<MoeProblem>(device, shape);
      }
      body(device, *moe_);
    });
  }
  /// Frees the operands; after an error, also the World, which a failed run leaves unusable
  /// (the next benchmark gets a new one).
  void discard() noexcept {
    dense_.reset();
    moe_.reset();
    world_.reset();
  }

 private:
  tbb_backend::World& world() {
    if (!world_)
      world_ = std::make_unique<tbb_backend::World>(
          tbb_backend::WorldConfig{.num_ranks = 1, .blocks_per_rank = hardware_threads()});
    return *world_;
  }

  std::unique_ptr<tbb_backend::World> world_;
  std::unique_ptr<DenseProblem> dense_;
  std::unique_ptr<MoeProblem> moe_;
};

/// Sets the counters of a benchmark that ran `operations` int8 operations per call.
void set_counters(benchmark::State& state, double operations, const Medians& medians) {
  state.counters[gemm_counter::kTops] = operations / medians.cmx / 1e12;
  if (use_onednn()) {
    state.counters[gemm_counter::kOnednnTops] = operations / medians.onednn / 1e12;
    state.counters[gemm_counter::kRatioOnednn] = medians.onednn / medians.cmx;
  }
}

class GemmSuite final : public Suite {
 public:
  void register_benchmarks() override {
    // The best of 5 measurements: other programs on a shared machine only lower a peak.
    benchmark::RegisterBenchmark(
        "machine_limits",
        [](benchmark::State& state) {
          double peak = 0, copy = 0;
          for (auto _ : state) {
            peak = std::max(peak, int8_peak_ops_per_second(hardware_threads(), 0.2));
            copy = std::max(copy, memcpy_bytes_per_second(hardware_threads(), 0.2));
          }
          // Without AVX2 there is no peak to measure: util is then left out, not an error.
          if (peak > 0) state.counters[gemm_counter::kPeakTops] = peak / 1e12;
          state.counters[gemm_counter::kMemcpyGBps] = copy / 1e9;
        })
        ->Iterations(5)
        ->Repetitions(1)
        ->Unit(benchmark::kMillisecond);

    for (const DenseShape& projection : kDenseProjections)
      for (const int m : kDenseRows)
        benchmark::RegisterBenchmark("gemm",
                                     [this, projection, m](benchmark::State& state) {
                                       run_dense(state,
                                                 {.m = m, .n = projection.n, .k = projection.k});
                                     })
            ->ArgNames({"m", "n", "k"})
            ->Args({m, projection.n, projection.k})
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);

    for (const Projection projection : {Projection::gate_up, Projection::down}) {
      const bool gate_up = projection == Projection::gate_up;
      const int n = gate_up ? 2 * moe_.intermediate : moe_.hidden;
      const int k = gate_up ? moe_.hidden : moe_.intermediate;
      benchmark::RegisterBenchmark(
          "grouped_masked",
          [this, projection](benchmark::State& state) { run_grouped(state, projection); })
          ->ArgNames({"experts", "ranks", "tokens", "n", "k"})
          ->Args({moe_.local_experts, moe_.num_ranks, moe_.tokens_per_rank, n, k})
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
    benchmark::RegisterBenchmark("expert_ffn", [this](benchmark::State& state) { run_ffn(state); })
        ->ArgNames({"experts", "ranks", "tokens", "hidden", "intermediate"})
        ->Args({moe_.local_experts, moe_.num_ranks, moe_.tokens_per_rank, moe_.hidden,
                moe_.intermediate})
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);

    benchmark::AddCustomContext(
        "cmx_gemm_backend",
        "tbb: 1 rank, " + std::to_string(hardware_threads()) + " blocks (one per hardware thread)");
    const char* omitted = onednn_omitted_because();
    benchmark::AddCustomContext(
        "cmx_gemm_baseline", onednn_description() + (omitted ? std::string("; ") + omitted : ""));
    const char* policy = std::getenv("OMP_WAIT_POLICY");
    benchmark::AddCustomContext("cmx_gemm_omp_wait_policy",
                                policy ? policy : "(unset: 20 ms pause after each oneDNN section)");
    benchmark::AddCustomContext(
        "cmx_gemm_workload",
        "A, B int8 uniform in [-127, 127], per-token and per-channel scales, bf16 output; "
        "MoE: 8 local experts of 64, 8 ranks x 128 tokens, top-8, Zipf-skewed routing, rows in "
        "FusedDispatch's layout (message stride H + 32 B)");
  }

  void print_summary(std::ostream& out, const std::vector<MeasuredRun>& runs,
                     const PublishedTable& published) const override {
    print_gemm_summary(out, moe_, expert_rows_, runs, published);
  }

  void finish() noexcept override { session_.discard(); }

 private:
  void run_dense(benchmark::State& state, const DenseShape& shape) {
    try {
      session_.with_dense(shape, [&](Device& device, DenseProblem& problem) {
        const Medians medians = measure(
            state, [&] { problem.run_cmx(device); },
            [&] {
              if (problem.onednn) problem.run_onednn();
            });
        const double operations = 2.0 * shape.m * shape.n * static_cast<double>(shape.k);
        set_counters(state, operations, medians);
        state.counters[gemm_counter::kWeightGBps] =
            static_cast<double>(shape.n) * shape.k / medians.cmx / 1e9;
      });
    } catch (const std::exception& error) {
      session_.discard();
      state.SkipWithError(error.what());
    }
  }

  void run_grouped(benchmark::State& state, Projection projection) {
    const bool gate_up = projection == Projection::gate_up;
    try {
      session_.with_moe(moe_, [&](Device& device, MoeProblem& problem) {
        remember_expert_rows(problem);
        const DispatchedRows& input = gate_up ? problem.x : problem.x_down;
        const auto& weights = gate_up ? problem.gate_up : problem.down;
        problem.cmx_grouped(device, input, weights);
        if (use_onednn()) {
          problem.onednn_grouped(input, projection);
          require_close(problem.c, problem.onednn_out, problem.valid_slots(),
                        static_cast<std::size_t>(weights.front().n()), "grouped masked GEMM");
        }
        const Medians medians = measure(
            state, [&] { problem.cmx_grouped(device, input, weights); },
            [&] {
              if (use_onednn()) problem.onednn_grouped(input, projection);
            });
        const double operations = 2.0 * static_cast<double>(problem.total_rows()) *
                                  weights.front().n() * static_cast<double>(weights.front().k());
        set_counters(state, operations, medians);
      });
    } catch (const std::exception& error) {
      session_.discard();
      state.SkipWithError(error.what());
    }
  }

  void run_ffn(benchmark::State& state) {
    try {
      session_.with_moe(moe_, [&](Device& device, MoeProblem& problem) {
        remember_expert_rows(problem);
        problem.cmx_ffn(device);
        if (use_onednn()) {
          problem.onednn_ffn();
          check_ffn_agreement(problem);
        }
        const Medians medians = measure(
            state, [&] { problem.cmx_ffn(device); },
            [&] {
              if (use_onednn()) problem.onednn_ffn();
            });
        const double operations = 6.0 * static_cast<double>(problem.total_rows()) * moe_.hidden *
                                  static_cast<double>(moe_.intermediate);
        set_counters(state, operations, medians);
      });
    } catch (const std::exception& error) {
      session_.discard();
      state.SkipWithError(error.what());
    }
  }

  /// The fused and the unfused FFN round their scales in another order, so a code of the
  /// re-quantized intermediate may differ by one: they must agree to a relative L2 of 1e-2.
  static void check_ffn_agreement(const MoeProblem& problem) {
    double difference = 0, norm = 0;
    const std::size_t hidden = static_cast<std::size_t>(problem.shape.hidden);
    for (const std::size_t slot : problem.valid_slots())
      for (std::size_t j = 0; j < hidden; ++j) {
        const double a = problem.c[slot * hidden + j].to_float();
        const double b = problem.onednn_out[slot * hidden + j].to_float();
        difference += (a - b) * (a - b);
        norm += b * b;
      }
    if (!(difference <= 1e-4 * norm))
      throw std::runtime_error(
          "expert FFN: cmx and the unfused oneDNN sequence differ by a relative L2 of " +
          std::to_string(std::sqrt(difference / norm)));
  }

  void remember_expert_rows(const MoeProblem& problem) {
    expert_rows_.clear();
    for (int e = 0; e < problem.shape.local_experts; ++e)
      expert_rows_.push_back(problem.x.expert_rows(e));
  }

  MoeShape moe_;
  GemmSession session_;
  std::vector<int> expert_rows_;  // rows per local expert of the MoE workload, for the summary
};

}  // namespace

std::unique_ptr<Suite> make_gemm_suite() {
  return std::make_unique<GemmSuite>();
}

}  // namespace cmx::bench
