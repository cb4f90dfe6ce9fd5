// SPDX-License-Identifier: Apache-2.0
// The EP suite's summary: cmx's dispatch and combine per EP size beside the published figures
// of the same kernel and EP size.
#include "ep_summary.hpp"

#include <algorithm>
#include <array>
#include <thread>
#include <utility>

#include "ep_bench.hpp"

namespace cmx::bench {
namespace {

/// A published system's figures for one kernel and EP size: "-" where a metric is missing.
struct PublishedEntry {
  std::string source;
  std::string system;
  std::string latency = "-";
  std::string bandwidth = "-";
};

// Column widths of the summary table, in characters (negative: left-aligned).
constexpr std::array<int, 4> kWidths = {-22, 4, -36, 16};

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

/// The lines every EP summary opens with: the workload and how its bytes are counted.
void print_workload(std::ostream& out, const EpShape& shape) {
  out << "\n=== cmx expert-parallel kernels beside published figures ===\n"
      << "Workload: " << shape.num_tokens << " tokens per rank, hidden " << shape.hidden << ", top-"
      << shape.num_topk << " of " << shape.num_experts
      << " experts, uniform random routing (DeepEP's low-latency test); INT8 dispatch, bf16 "
         "combine.\n"
      << "Bytes per (token, expert) message, as DeepEP counts them: dispatch "
      << message_bytes(Kernel::dispatch, shape.hidden) << " B (H + 4), combine "
      << message_bytes(Kernel::combine, shape.hidden)
      << " B (2H). GB/s = one rank's bytes / latency, GB = 1e9 B. cmx figures are medians.\n"
      << "combine: expert outputs in the caller's memory, copied back to each source rank, "
         "which reduces them; combine_zero_copy: written in place into the buffer, each source\n"
      << "rank reads its rows from the expert ranks as it reduces them (DeepEP's zero-copy "
         "combine). The same bytes are counted for both.\n";
}

/// The link limits the published sources state (rows of a link's maximum bandwidth).
void print_link_limits(std::ostream& out, const std::vector<PublishedFigure>& published,
                       Footnotes& footnotes) {
  bool printed_title = false;
  for (const PublishedFigure& limit : published) {
    if (limit.ep_kernel() || limit.metric.find("maximum bandwidth") == std::string::npos) continue;
    if (!std::exchange(printed_title, true))
      out << "\nStated link limits of the published machines:\n";
    out << "  " << limit.kernel << ": " << limit.value << ' ' << limit.unit << " (" << limit.metric
        << ") " << footnotes.cite(limit.source) << '\n';
  }
}

/// How one suite's table reads: which benchmarks make its rows and which counters its columns.
struct TableStyle {
  std::string ranks_arg;  // the benchmark argument that holds W
  // A cmx row per path: (suffix of the benchmark's name, system label).
  std::vector<std::pair<std::string, std::string>> paths;
  std::vector<std::string> headings;                  // of the counter columns
  std::vector<std::pair<const char*, int>> counters;  // (counter, decimals), one per heading
};

/// The table: per kernel and W measured in `runs`, cmx's rows (per path; combine from the
/// caller's memory, then zero-copy), then the published figures of that kernel and EP size; then
/// the link limits and the sources. Calls `preamble()` first, and prints nothing if no EP
/// benchmark ran.
template <class Preamble>
void print_table(std::ostream& out, const std::vector<MeasuredRun>& runs,
                 const PublishedTable& published, const TableStyle& style, Preamble&& preamble) {
  // The EP sizes measured, in increasing order.
  std::vector<int> rank_counts;
  for (const MeasuredRun& run : runs)
    for (const auto& [suffix, label] : style.paths)
      for (const Kernel kernel : {Kernel::dispatch, Kernel::combine})
        for (const auto source : {ep::CombineSource::caller_memory, ep::CombineSource::buffer})
          if (run.name == benchmark_name(kernel, source) + suffix)
            rank_counts.push_back(static_cast<int>(run.arg(style.ranks_arg)));
  std::sort(rank_counts.begin(), rank_counts.end());
  rank_counts.erase(std::unique(rank_counts.begin(), rank_counts.end()), rank_counts.end());
  if (rank_counts.empty()) return;

  preamble();
  Footnotes footnotes;
  std::vector<std::string> headings = {"kernel", "EP", "  system"};
  headings.insert(headings.end(), style.headings.begin(), style.headings.end());
  print_row(out, kWidths, headings);
  for (const Kernel kernel : {Kernel::dispatch, Kernel::combine})
    for (const int num_ranks : rank_counts) {
      for (const auto source : {ep::CombineSource::caller_memory, ep::CombineSource::buffer}) {
        if (kernel == Kernel::dispatch && source == ep::CombineSource::buffer) continue;
        for (const auto& [suffix, label] : style.paths) {
          const std::string name = benchmark_name(kernel, source) + suffix;
          const auto row = std::find_if(runs.begin(), runs.end(), [&](const MeasuredRun& run) {
            return run.name == name && run.arg(style.ranks_arg) == num_ranks;
          });
          if (row == runs.end()) continue;
          std::vector<std::string> cells = {name, std::to_string(num_ranks), "  " + label};
          if (!row->error.empty()) {
            cells.back() += ": failed";
            print_row(out, kWidths, cells);
            out << "    " << row->error << '\n';
            continue;
          }
          for (const auto& [key, decimals] : style.counters)
            cells.push_back(fixed(row->counter(key), decimals));
          print_row(out, kWidths, cells);
        }
      }
      for (const PublishedEntry& entry : published_entries(published.figures, kernel, num_ranks)) {
        std::string system = "  ";  // (built with +=: GCC 12 warns falsely on chained + here)
        system += entry.system;
        system += ' ';
        system += footnotes.cite(entry.source);
        print_row(out, kWidths, {"", "", system, entry.latency, entry.bandwidth});
      }
    }
  print_link_limits(out, published.figures, footnotes);
  footnotes.print(out, published);
}

}  // namespace

void print_ep_summary(std::ostream& out, const EpShape& shape, const std::vector<MeasuredRun>& runs,
                      const PublishedTable& published) {
  const TableStyle style{
      .ranks_arg = "ranks",
      .paths = {{"", "cmx (this machine)"}},
      .headings = {"latency_us", "GB/s", "memcpy GB/s", "ratio_memcpy", "ratio_unfused"},
      .counters = {{counter::kLatencyUs, 1},
                   {counter::kGBps, 2},
                   {counter::kMemcpyGBps, 2},
                   {counter::kRatioMemcpy, 2},
                   {counter::kRatioUnfused, 2}}};
  print_table(out, runs, published, style, [&] {
    print_workload(out, shape);
    out << "This machine is a CPU with " << std::thread::hardware_concurrency()
        << " hardware threads emulating each rank as a thread (tbb backend, one block per "
           "rank);\n"
        << "the published systems are 8-16 accelerators on dedicated links. So compare each "
           "figure's ratio to its own machine's limit, not absolute speed.\n"
        << "memcpy GB/s: the same bytes per rank copied by memcpy, all ranks at once: this "
           "machine's limit.\n"
        << "ratio_memcpy = GB/s / memcpy GB/s. ratio_unfused = unfused baseline time / cmx "
           "time.\n\n";
  });
}

void print_ep_mpi_summary(std::ostream& out, const EpShape& shape,
                          const std::vector<MeasuredRun>& runs, const PublishedTable& published) {
  const TableStyle style{
      .ranks_arg = "procs",
      .paths = {{"", "cmx, shared memory"}, {"_rma", "cmx, MPI_Put"}},
      .headings = {"latency_us", "GB/s", "alltoallv_us", "ratio_alltoallv", "ratio_memcpy"},
      .counters = {{counter::kLatencyUs, 1},
                   {counter::kGBps, 2},
                   {counter::kAlltoallvUs, 1},
                   {counter::kRatioAlltoallv, 2},
                   {counter::kRatioMemcpy, 2}}};
  print_table(out, runs, published, style, [&] {
    print_workload(out, shape);
    out << "This machine is a CPU with " << std::thread::hardware_concurrency()
        << " hardware threads running each rank as a process (mpi backend, one block per rank):\n"
        << "'shared memory' rows: peers on one node write each other's memory with plain stores; "
           "'MPI_Put' rows: every peer is reached by MPI_Put/MPI_Get, as across nodes.\n"
        << "alltoallv_us: the pipeline users write with MPI, in the same iterations: quantize, "
           "permute by destination, MPI_Alltoall of the counts + MPI_Alltoallv, unpermute\n"
        << "(combine: the reverse, then the weighted reduction); checked to deliver the same "
           "bytes as cmx. ratio_alltoallv = its time / cmx time.\n"
        << "ratio_memcpy = memcpy time of the same bytes per rank / cmx time: this machine's "
           "limit. The published systems are accelerators on dedicated links: compare ratios.\n\n";
  });
}

}  // namespace cmx::bench
