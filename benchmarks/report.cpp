// SPDX-License-Identifier: Apache-2.0
// cmx_bench's context block, the reporter that keeps the medians, and the summary table.
#include "report.hpp"

#include <algorithm>
#include <charconv>
#include <iomanip>
#include <optional>
#include <sstream>
#include <string_view>
#include <thread>
#include <utility>

#include "ep_bench.hpp"

namespace cmx::bench {
namespace {

/// Appends `item` to a `separator`-separated list.
void append_item(std::string& list, std::string_view item, std::string_view separator) {
  if (!list.empty()) list += separator;
  list += item;
}

/// The instruction sets this binary was compiled for (-march=native picks them).
std::string compiled_isa() {
  constexpr const char* kFeatures[] = {
#if defined(__x86_64__)
    "x86-64",
#elif defined(__aarch64__)
    "aarch64",
#else
    "unknown architecture",
#endif
#if defined(__AVX2__)
    "avx2",
#endif
#if defined(__FMA__)
    "fma",
#endif
#if defined(__AVX512F__)
    "avx512f",
#endif
#if defined(__AVX512BW__)
    "avx512bw",
#endif
#if defined(__AVX512BF16__)
    "avx512bf16",
#endif
#if defined(__ARM_NEON)
    "neon",
#endif
  };
  std::string isa;
  for (const char* feature : kFeatures) append_item(isa, feature, " ");
  return isa;
}

/// (kernel, W) of a run of register_ep_benchmarks ("dispatch" with args "ranks:8/..."), or
/// none for another benchmark.
std::optional<std::pair<Kernel, int>> identify(const benchmark::BenchmarkReporter::Run& run) {
  const std::string& name = run.run_name.function_name;
  const std::string& args = run.run_name.args;
  constexpr std::string_view kRanks = "ranks:";
  if (!args.starts_with(kRanks)) return std::nullopt;
  int num_ranks = 0;
  std::from_chars(args.data() + kRanks.size(), args.data() + args.size(), num_ranks);
  for (const Kernel kernel : {Kernel::dispatch, Kernel::combine})
    if (name == to_string(kernel)) return std::pair{kernel, num_ranks};
  return std::nullopt;
}

double counter_value(const benchmark::BenchmarkReporter::Run& run, const char* name) {
  const auto found = run.counters.find(name);
  return found == run.counters.end() ? 0.0 : found->second.value;
}

/// A published system's figures for one kernel and EP size: "-" where a metric is missing.
struct PublishedEntry {
  std::string source;
  std::string system;
  std::string latency = "-";
  std::string bandwidth = "-";
};

// Column widths of the summary table, in characters.
constexpr int kKernelWidth = 9;
constexpr int kRanksWidth = 4;
constexpr int kSystemWidth = 34;
constexpr int kNumberWidth = 14;

void print_row(std::ostream& out, std::string_view kernel, std::string_view ranks,
               std::string_view system, const std::vector<std::string>& numbers) {
  out << std::left << std::setw(kKernelWidth) << kernel << std::right << std::setw(kRanksWidth)
      << ranks << "  " << std::left << std::setw(kSystemWidth) << system << std::right;
  for (const std::string& number : numbers) out << std::setw(kNumberWidth) << number;
  out << '\n';
}

std::string fixed(double value, int decimals) {
  std::ostringstream text;
  text << std::fixed << std::setprecision(decimals) << value;
  return text.str();
}

/// The footnote number of `source`, numbering sources in order of first use from 1.
std::size_t footnote(std::vector<std::string>& sources, const std::string& source) {
  const auto found = std::find(sources.begin(), sources.end(), source);
  if (found != sources.end()) return static_cast<std::size_t>(found - sources.begin()) + 1;
  sources.push_back(source);
  return sources.size();
}

/// The published figures of `kernel` at EP size `num_ranks`, a latency and a bandwidth per
/// (source, system), in file order.
std::vector<PublishedEntry> published_entries(const std::vector<PublishedFigure>& published,
                                              Kernel kernel, int num_ranks) {
  std::vector<PublishedEntry> entries;
  for (const PublishedFigure& figure : published) {
    if (figure.ep_kernel() != kernel || figure.num_ranks() != num_ranks) continue;
    auto entry = std::find_if(entries.begin(), entries.end(), [&](const PublishedEntry& e) {
      return e.source == figure.source && e.system == figure.system();
    });
    if (entry == entries.end())
      entry = entries.insert(entries.end(), {.source = figure.source, .system = figure.system()});
    if (figure.is_latency()) entry->latency = figure.value;
    if (figure.is_bandwidth()) entry->bandwidth = figure.value;
  }
  return entries;
}

void print_preamble(std::ostream& out, const EpShape& shape) {
  out << "\n=== cmx expert-parallel kernels beside published figures ===\n"
      << "Workload: " << shape.num_tokens << " tokens per rank, hidden " << shape.hidden << ", top-"
      << shape.num_topk << " of " << shape.num_experts
      << " experts, uniform random routing (DeepEP's low-latency test); INT8 dispatch, bf16 "
         "combine.\n"
      << "Bytes per (token, expert) message, as DeepEP counts them: dispatch "
      << message_bytes(Kernel::dispatch, shape.hidden) << " B (H + 4), combine "
      << message_bytes(Kernel::combine, shape.hidden)
      << " B (2H). GB/s = one rank's bytes / latency, GB = 1e9 B. cmx figures are medians.\n"
      << "This machine is a CPU with " << std::thread::hardware_concurrency()
      << " hardware threads emulating each rank as a thread (tbb backend, one block per rank);\n"
      << "the published systems are 8-16 accelerators on dedicated links. So compare each "
         "figure's ratio to its own machine's limit, not absolute speed.\n"
      << "memcpy GB/s: the same bytes per rank copied by memcpy, all ranks at once: this "
         "machine's limit.\n"
      << "ratio_memcpy = GB/s / memcpy GB/s. ratio_unfused = unfused baseline time / cmx time.\n\n";
}

/// One row per kernel and W measured, with the published figures of the same kernel and EP
/// size beneath it; their sources are appended to `sources`.
void print_table(std::ostream& out, const std::vector<MeasuredRow>& rows,
                 const std::vector<PublishedFigure>& published, std::vector<std::string>& sources) {
  print_row(out, "kernel", "EP", "system",
            {"latency_us", "GB/s", "memcpy GB/s", "ratio_memcpy", "ratio_unfused"});
  for (const MeasuredRow& row : rows) {
    const std::string ranks = std::to_string(row.num_ranks);
    if (!row.error.empty()) {
      print_row(out, to_string(row.kernel), ranks, "cmx (this machine): failed", {});
      out << "    " << row.error << '\n';
      continue;
    }
    print_row(out, to_string(row.kernel), ranks, "cmx (this machine)",
              {fixed(row.latency_us, 1), fixed(row.gbps, 2), fixed(row.memcpy_gbps, 2),
               fixed(row.ratio_memcpy, 2), fixed(row.ratio_unfused, 2)});
    for (const PublishedEntry& entry : published_entries(published, row.kernel, row.num_ranks))
      print_row(out, "", "",
                entry.system + " [" + std::to_string(footnote(sources, entry.source)) + "]",
                {entry.latency, entry.bandwidth});
  }
}

/// The link limits the published sources state (rows with no EP kernel).
void print_link_limits(std::ostream& out, const std::vector<PublishedFigure>& published,
                       std::vector<std::string>& sources) {
  bool printed_title = false;
  for (const PublishedFigure& limit : published) {
    if (limit.ep_kernel()) continue;
    if (!std::exchange(printed_title, true))
      out << "\nStated link limits of the published machines:\n";
    out << "  " << limit.kernel << ": " << limit.value << ' ' << limit.unit << " (" << limit.metric
        << ") [" << footnote(sources, limit.source) << "]\n";
  }
}

/// The footnotes: each source verbatim with its weight, the machine and notes of its first
/// figure.
void print_sources(std::ostream& out, const std::vector<PublishedFigure>& published,
                   const std::vector<std::string>& sources, const std::string& published_path) {
  out << "\nSources (rows of " << published_path << "):\n";
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const PublishedFigure& first =
        *std::find_if(published.begin(), published.end(),
                      [&](const PublishedFigure& figure) { return figure.source == sources[i]; });
    // A SECONDARY source says so at its start; a PRIMARY one does not.
    out << '[' << i + 1 << "] " << (first.is_primary() ? "PRIMARY: " : "") << sources[i] << '\n';
    if (!first.machine().empty()) out << "    machine: " << first.machine() << '\n';
    if (!first.notes.empty()) out << "    notes: " << first.notes << '\n';
  }
}

}  // namespace

void add_benchmark_context(const EpShape& shape, std::span<const int> rank_counts) {
  std::string ranks;
  for (const int num_ranks : rank_counts) append_item(ranks, std::to_string(num_ranks), ",");
  benchmark::AddCustomContext("cmx_backend", "tbb: each rank a thread, one block per rank");
  benchmark::AddCustomContext("cmx_ranks", ranks);
  benchmark::AddCustomContext("cmx_hardware_threads",
                              std::to_string(std::thread::hardware_concurrency()));
  benchmark::AddCustomContext("cmx_isa", compiled_isa());
  benchmark::AddCustomContext(
      "cmx_workload", std::to_string(shape.num_tokens) + " tokens/rank, hidden " +
                          std::to_string(shape.hidden) + ", top-" + std::to_string(shape.num_topk) +
                          " of " + std::to_string(shape.num_experts) +
                          " experts, uniform random routing; INT8 dispatch, bf16 combine");
  benchmark::AddCustomContext(
      "cmx_bytes",
      "per (token, expert) message: dispatch H + 4, combine 2H (as DeepEP counts); "
      "GBps = one rank's bytes / latency, 1e9 B/s");
  benchmark::AddCustomContext(
      "cmx_statistics",
      "counters: medians over a run's iterations; Time: their mean; CPU: rank 0's thread");
}

bool SummaryCollector::ReportContext(const Context& context) {
  return display_.ReportContext(context);
}

void SummaryCollector::ReportRuns(const std::vector<Run>& runs) {
  display_.ReportRuns(runs);
  for (const Run& run : runs) {
    const bool is_median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
    const bool is_only_run = run.run_type == Run::RT_Iteration && run.repetitions <= 1;
    if (!is_median && !is_only_run && !run.error_occurred) continue;
    const auto key = identify(run);
    if (!key) continue;
    MeasuredRow& row = rows_[*key];
    row.kernel = key->first;
    row.num_ranks = key->second;
    if (run.error_occurred) {
      row.error = run.error_message;
      continue;
    }
    row.latency_us = counter_value(run, counter::kLatencyUs);
    row.gbps = counter_value(run, counter::kGBps);
    row.memcpy_gbps = counter_value(run, counter::kMemcpyGBps);
    row.ratio_memcpy = counter_value(run, counter::kRatioMemcpy);
    row.ratio_unfused = counter_value(run, counter::kRatioUnfused);
  }
}

void SummaryCollector::Finalize() {
  display_.Finalize();
}

std::vector<MeasuredRow> SummaryCollector::rows() const {
  std::vector<MeasuredRow> rows;
  for (const auto& [key, row] : rows_) rows.push_back(row);
  return rows;
}

void print_summary(std::ostream& out, const EpShape& shape, const std::vector<MeasuredRow>& rows,
                   const std::vector<PublishedFigure>& published,
                   const std::string& published_path) {
  if (rows.empty()) return;
  print_preamble(out, shape);
  std::vector<std::string> sources;  // of the figures printed: footnote i + 1 is sources[i]
  print_table(out, rows, published, sources);
  print_link_limits(out, published, sources);
  print_sources(out, published, sources, published_path);
}

}  // namespace cmx::bench
