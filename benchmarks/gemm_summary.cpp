// SPDX-License-Identifier: Apache-2.0
// The GEMM suite's summary: cmx and oneDNN per shape, as shares of this machine's measured int8
// peak, beside DeepGEMM's published H800 figures as shares of the H800's FP8 peak.
#include "gemm_summary.hpp"

#include <array>
#include <charconv>
#include <optional>
#include <string>
#include <thread>

#include "cmx/backend/cpu/isa.hpp"
#include "gemm_bench.hpp"
#include "machine_limits.hpp"

namespace cmx::bench {
namespace {

// Column widths of the table, in characters (negative: left-aligned).
constexpr std::array<int, 7> kWidths = {-46, 10, 8, 12, 14, 10, 10};

/// The suite's targets for ratio_onednn: dense at least 1.0x on the large shapes (M >= 512),
/// grouped masked at least 1.5x oneDNN called once per expert, the fused expert FFN at least
/// 1.3x the unfused sequence of oneDNN calls.
std::optional<double> target_of(const MeasuredRun& run) {
  if (run.name == "gemm") return run.arg("m") >= 512 ? std::optional<double>(1.0) : std::nullopt;
  if (run.name == "grouped_masked") return 1.5;
  if (run.name == "expert_ffn") return 1.3;
  return std::nullopt;
}

/// The value of "<key>=<digits>" in `text`, or -1.
long value_after(const std::string& text, const std::string& key) {
  const std::size_t at = text.find(key + "=");
  if (at == std::string::npos) return -1;
  long value = -1;
  const char* begin = text.data() + at + key.size() + 1;
  std::from_chars(begin, text.data() + text.size(), value);
  return value;
}

/// H800's FP8 dense peak in TFLOPS: twice the BF16 dense peak of the published table (Hopper's
/// FP8 tensor-core rate is twice its BF16 rate), and the row it comes from.
std::optional<std::pair<double, const PublishedFigure*>> h800_fp8_peak(
    const PublishedTable& published) {
  for (const PublishedFigure& figure : published.figures)
    if (figure.kernel == "H800 SXM5 hardware" && figure.metric == "peak FLOPs (BF16 dense)")
      return std::pair{2.0 * std::stod(figure.value), &figure};
  return std::nullopt;
}

/// DeepGEMM's latest published figures (TFLOPS) for the shape of `run`.
std::vector<const PublishedFigure*> deepgemm_figures(const MeasuredRun& run,
                                                     const PublishedTable& published) {
  std::vector<const PublishedFigure*> figures;
  for (const PublishedFigure& figure : published.figures) {
    if (figure.metric != "computation" || figure.notes != "latest published table") continue;
    const bool dense = figure.kernel == "DeepGEMM FP8 GEMM (dense)";
    const bool masked = figure.kernel == "DeepGEMM FP8 grouped GEMM (masked)";
    if (run.name == "gemm" && dense && value_after(figure.setting, "M") == run.arg("m") &&
        value_after(figure.setting, "N") == run.arg("n") &&
        value_after(figure.setting, "K") == run.arg("k"))
      figures.push_back(&figure);
    if (run.name == "grouped_masked" && masked &&
        value_after(figure.setting, "N") == run.arg("n") &&
        value_after(figure.setting, "K") == run.arg("k"))
      figures.push_back(&figure);
  }
  return figures;
}

std::string percent(double share) {
  return fixed(100.0 * share, 1) + "%";
}

std::string title_of(const MeasuredRun& run) {
  std::string title = run.name + " " + run.args;
  const std::size_t suffix = title.find("/manual_time");
  if (suffix != std::string::npos) title.erase(suffix);
  return title;
}

}  // namespace

void print_gemm_summary(std::ostream& out, const MoeShape& moe, const std::vector<int>& expert_rows,
                        const std::vector<MeasuredRun>& runs, const PublishedTable& published) {
  const MeasuredRun* limits = nullptr;
  std::vector<const MeasuredRun*> rows;
  for (const MeasuredRun& run : runs) {
    if (run.name == "machine_limits") limits = &run;
    if (run.name == "gemm" || run.name == "grouped_masked" || run.name == "expert_ffn")
      rows.push_back(&run);
  }
  if (rows.empty() && limits == nullptr) return;
  const double peak_tops = limits ? limits->counter(gemm_counter::kPeakTops) : 0;
  const double memcpy_gbps = limits ? limits->counter(gemm_counter::kMemcpyGBps) : 0;
  const auto h800 = h800_fp8_peak(published);
  Footnotes footnotes;

  out << "\n=== cmx INT8 GEMMs beside oneDNN and DeepGEMM's published H800 figures ===\n"
      << "This machine: " << std::thread::hardware_concurrency() << " hardware threads ("
      << cpu::describe(cpu::features()) << ").\n"
      << "Its int8 peak, measured in this run: " << fixed(peak_tops, 3)
      << " TOPS (independent chains of " << int8_peak_instruction()
      << ", from registers on every core, per second of each core's CPU time, best of 5);"
      << " memcpy: " << fixed(memcpy_gbps, 1) << " GB/s.\n";
  if (h800)
    out << "H800 FP8 dense peak: " << fixed(h800->first, 0) << " TFLOPS, derived as twice its BF16 "
        << "dense peak " << h800->second->value << " TFLOPS "
        << footnotes.cite(h800->second->source)
        << " (Hopper's FP8 tensor-core rate is twice its BF16 rate).\n";
  out << "util = throughput / its own machine's peak (here: wall-clock throughput on cores other "
         "programs share, so lower than on an idle machine); ratio_onednn = oneDNN time / cmx "
         "time, same iterations, alternating order. TOPS count a multiply-add as 2 ops, as "
         "DeepGEMM's TFLOPS.\n"
      << "MoE workload: " << moe.local_experts << " local experts of "
      << moe.local_experts * moe.num_ranks << ", " << moe.num_ranks << " ranks x "
      << moe.tokens_per_rank << " tokens, top-" << moe.num_topk << ", Zipf-skewed routing, H "
      << moe.hidden << ", I " << moe.intermediate;
  if (!expert_rows.empty()) {
    out << "; rows per local expert:";
    for (const int count : expert_rows) out << ' ' << count;
  }
  out << "\n\n";

  print_row(out, kWidths,
            {"benchmark", "cmx TOPS", "util", "oneDNN TOPS", "ratio_onednn", "target", "met"});
  for (const MeasuredRun* run : rows) {
    if (!run->error.empty()) {
      print_row(out, kWidths, {title_of(*run), "failed"});
      out << "    " << run->error << '\n';
      continue;
    }
    const double tops = run->counter(gemm_counter::kTops);
    const double ratio = run->counter(gemm_counter::kRatioOnednn);
    const std::optional<double> target = target_of(*run);
    print_row(out, kWidths,
              {title_of(*run), fixed(tops, 3), peak_tops > 0 ? percent(tops / peak_tops) : "-",
               ratio > 0 ? fixed(run->counter(gemm_counter::kOnednnTops), 3) : "-",
               ratio > 0 ? fixed(ratio, 2) + "x" : "-", target ? fixed(*target, 1) + "x" : "-",
               target && ratio > 0 ? (ratio >= *target ? "yes" : "NO") : "-"});
    if (run->name == "gemm" && run->arg("m") <= 128 && memcpy_gbps > 0)
      out << "    weights read at " << fixed(run->counter(gemm_counter::kWeightGBps), 2)
          << " GB/s, " << percent(run->counter(gemm_counter::kWeightGBps) / memcpy_gbps)
          << " of memcpy: bound by compute here, not by reading B\n";
    for (const PublishedFigure* figure : deepgemm_figures(*run, published)) {
      std::string setting = figure->setting.substr(0, figure->setting.find(';'));
      std::string label = "  DeepGEMM H800: ";
      label += setting;
      label += ' ';
      label += footnotes.cite(figure->source);
      const double tflops = std::stod(figure->value);
      print_row(out, kWidths,
                {label, fixed(tflops, 0), h800 ? percent(tflops / h800->first) : "-"});
    }
  }
  footnotes.print(out, published);
}

}  // namespace cmx::bench
