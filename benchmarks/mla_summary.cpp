// SPDX-License-Identifier: Apache-2.0
// The MLA suite's summary: each grid point beside the published utilizations and the targets.
#include "mla_summary.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <thread>

#include "mla_bench.hpp"
#include "mla_machine.hpp"

namespace cmx::bench {
namespace {

// Column widths of the table, in characters.
constexpr std::array<int, 11> kWidths = {6, 7, 5, 4, 9, 9, 10, 9, 13, 9, -1};

/// The targets of the MLA issue, as same-run ratios.
constexpr double kComputeTarget = 0.70;    // util_peak where h_q * s_q >= 128
constexpr double kBandwidthTarget = 0.85;  // util_bw where h_q * s_q <= 16
constexpr double kBaselineTarget = 2.0;    // ratio_onednn everywhere

/// The first published figure whose kernel and metric are these, or null.
const PublishedFigure* find_figure(const PublishedTable& published, const std::string& kernel,
                                   const std::string& metric) {
  const auto found = std::find_if(published.figures.begin(), published.figures.end(),
                                  [&](const PublishedFigure& figure) {
                                    return figure.kernel == kernel && figure.metric == metric;
                                  });
  return found == published.figures.end() ? nullptr : &*found;
}

/// "value unit [n]" of a figure, or "-".
std::string cite(const PublishedFigure* figure, Footnotes& footnotes) {
  if (figure == nullptr) return "-";
  std::string text = figure->value;
  text += ' ';
  text += figure->unit;
  text += ' ';
  text += footnotes.cite(figure->source);
  return text;
}

std::string verdict(double value, double target) {
  return value >= target ? "met" : "NOT met";
}

void print_published(std::ostream& out, const PublishedTable& published, Footnotes& footnotes) {
  const PublishedFigure* flashmla_bw = find_figure(published, "FlashMLA dense decode (new kernel)",
                                                   "memory-bound bandwidth (up to)");
  const PublishedFigure* flashmla_flops = find_figure(
      published, "FlashMLA dense decode (new kernel)", "compute-bound throughput (up to)");
  const PublishedFigure* h800_bw =
      find_figure(published, "H800 SXM5 hardware", "peak memory bandwidth");
  const PublishedFigure* h800_flops =
      find_figure(published, "H800 SXM5 hardware", "peak FLOPs (BF16 dense)");
  const PublishedFigure* cm_flops =
      find_figure(published, "CloudMatrix384 MLA (MLAProlog+FusedAttention)", "TFLOPS utilization");
  const PublishedFigure* cm_bw =
      find_figure(published, "CloudMatrix384 MLA", "memory bandwidth utilization");
  out << "\nPublished utilizations, each of its own machine's limits:\n"
      << "  FlashMLA on H800 SXM5: memory-bound " << cite(flashmla_bw, footnotes) << " of "
      << cite(h800_bw, footnotes) << " (89.6%); compute-bound " << cite(flashmla_flops, footnotes)
      << " of " << cite(h800_flops, footnotes) << " (66.7%)\n"
      << "  CloudMatrix384 MLA, per Ascend 910C die: memory-bound " << cite(cm_bw, footnotes)
      << " of bandwidth; compute-bound " << cite(cm_flops, footnotes) << " of peak\n";
}

}  // namespace

void print_mla_summary(std::ostream& out, const std::vector<MeasuredRun>& runs,
                       const PublishedTable& published) {
  std::vector<const MeasuredRun*> rows;
  for (const MeasuredRun& run : runs)
    if (run.name == "mla_decode") rows.push_back(&run);
  if (rows.empty()) return;

  std::vector<double> peaks, bandwidths;
  for (const MeasuredRun* row : rows)
    if (row->error.empty()) {
      peaks.push_back(row->counter(mla_counter::kPeakTflops));
      bandwidths.push_back(row->counter(mla_counter::kReadGBps));
    }
  const auto middle = [](std::vector<double> values) {
    if (values.empty()) return 0.0;
    std::nth_element(values.begin(), values.begin() + values.size() / 2, values.end());
    return values[values.size() / 2];
  };
  const double peak_tflops = middle(peaks), read_gbps = middle(bandwidths);

  out << "\n=== cmx MLA decode beside published figures ===\n"
      << "Workload: FlashMLA's benchmark grid (b=128, mean seqlen 4096-16384, h_q 16-128, s_q "
         "1-2)\n"
      << "scaled to this machine: batch 1/8/32, mean seqlen 1024/4096 with lengths drawn\n"
      << "max(N(mean, mean/2), s_q) as FlashMLA draws them, block 64, causal. Caches evicted\n"
      << "before each timed call. TFLOPS and GB/s by FlashMLA's formulas: FLOPs = s_q * sum(len)\n"
      << "* h_q * 1088 * 2, bytes = (sum(len) * 576 + b * s_q * h_q * 1088) * 2. Medians.\n"
      << "Every time is in core-seconds, the process's CPU time over its cores: the wall time on "
         "a\n"
      << "machine of its own (this one is shared; another program's threads stretch wall times).\n"
      << "This machine, measured in the same iterations on " << std::thread::hardware_concurrency()
      << " hardware threads: bf16 matrix peak " << fixed(peak_tflops, 3) << " TFLOPS ("
      << kPeakInstruction.name << "), read bandwidth " << fixed(read_gbps, 1) << " GB/s.\n"
      << "util_peak = TFLOPS / peak, util_bw = GB/s / read bandwidth; ratio_onednn = oneDNN\n"
      << "(gather + bf16 matmul + softmax + bf16 matmul, per request) time / cmx time.\n\n";

  print_row(out, kWidths,
            {"batch", "seqlen", "h_q", "s_q", "TFLOPS", "GB/s", "util_peak", "util_bw",
             "ratio_onednn", "bound", "  target"});
  for (const MeasuredRun* row : rows) {
    const long heads = row->arg("heads"), queries = row->arg("sq");
    const std::vector<std::string> shape = {std::to_string(row->arg("batch")),
                                            std::to_string(row->arg("seqlen")),
                                            std::to_string(heads), std::to_string(queries)};
    if (!row->error.empty()) {
      std::vector<std::string> cells = shape;
      cells.push_back("  failed: " + row->error);
      print_row(out, std::array<int, 5>{6, 7, 5, 4, -1}, cells);
      continue;
    }
    const long rows_per_request = heads * queries;
    const double util_peak = row->counter(mla_counter::kUtilPeak);
    const double util_bw = row->counter(mla_counter::kUtilBw);
    const double ratio = row->counter(mla_counter::kRatioOnednn);
    std::string bound = "between", target;
    if (rows_per_request >= 128) {
      bound = "compute";
      target = "util_peak >= 0.70: " + verdict(util_peak, kComputeTarget);
    } else if (rows_per_request <= 16) {
      bound = "memory";
      target = "util_bw >= 0.85: " + verdict(util_bw, kBandwidthTarget);
    }
    if (ratio > 0)
      target += (target.empty() ? "" : "; ") + std::string("2x oneDNN: ") +
                verdict(ratio, kBaselineTarget);
    std::vector<std::string> cells = shape;
    for (const std::string& cell :
         {fixed(row->counter(mla_counter::kTflops), 3), fixed(row->counter(mla_counter::kGBps), 1),
          fixed(util_peak, 2), fixed(util_bw, 2), ratio > 0 ? fixed(ratio, 2) : "-", bound,
          "  " + target})
      cells.push_back(cell);
    print_row(out, kWidths, cells);
  }

  // Where the kernel is memory-bound on a GPU (h_q * s_q <= 16) it does 2 * 16 * 1088 FLOPs
  // per 1152-byte row: if this machine's peak / bandwidth is below that, it is compute-bound
  // here and its bandwidth utilization cannot pass peak / bandwidth / intensity. (Both are
  // measured in the mla_decode runs: none if every one failed.)
  const double intensity = 2.0 * 16 * 1088 / 1152;  // FLOP per byte at h_q * s_q = 16
  const double balance = peak_tflops * 1e12 / (read_gbps * 1e9);
  if (read_gbps > 0)
    out << "\nAt h_q * s_q = 16 MLA decode does " << fixed(intensity, 1)
        << " FLOP per byte read; this machine does " << fixed(balance, 1)
        << " bf16 FLOP per byte of read bandwidth, so there the attainable util_bw is "
        << fixed(std::min(1.0, balance / intensity), 2) << " at full peak.\n";

  Footnotes footnotes;
  print_published(out, published, footnotes);
  footnotes.print(out, published);
}

}  // namespace cmx::bench
