// SPDX-License-Identifier: Apache-2.0
// The published figures cmx_bench prints beside its own: rows of published_numbers.csv (copied
// from the project's reference table, sources verbatim), read at run time.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ep_workload.hpp"

namespace cmx::bench {

/// One row of published_numbers.csv: one figure, with the columns of the reference table.
struct PublishedFigure {
  std::string source;   ///< repository, path and commit, or the notes on a paper; verbatim
  std::string kernel;   ///< e.g. "DeepEP V1 low-latency dispatch", or a link ("H800 NVLink")
  std::string setting;  ///< "EP8; <machine>; <workload>" for kernel figures
  std::string metric;   ///< e.g. "latency", "RDMA bandwidth", "NVLink maximum bandwidth (...)"
  std::string value;    ///< as printed there, e.g. "163" or "~50"
  std::string unit;     ///< e.g. "us", "GB/s", "GB/s (HCCS)"
  std::string notes;

  /// The EP kernel the figure is of; none for a link's limit.
  std::optional<Kernel> ep_kernel() const;
  /// The system, the kernel column without its dispatch/combine word: "DeepEP V1 low-latency".
  std::string system() const;
  /// W of an "EP<W>; ..." setting, else 0.
  int num_ranks() const;
  /// The machine part of the setting ("H800 + CX7 IB 400Gb/s (~50 GB/s max)"), or "".
  std::string machine() const;
  bool is_latency() const;
  bool is_bandwidth() const;
  /// The project's reference table marks second-hand sources (third-party notes on the
  /// CloudMatrix384 paper) "SECONDARY" at the start of the source; the rest are the DeepSeek
  /// and sgl-project repositories' own files, PRIMARY.
  bool is_primary() const;
};

/// The published figures cmx_bench compares against, and the file they were read from.
struct PublishedTable {
  std::vector<PublishedFigure> figures;
  std::string path;
};

/// Reads every figure of a CSV file with the header
///   source,kernel,setting,metric,value,unit,notes
/// (RFC 4180 quoting). Throws std::runtime_error naming the file and line on a malformed one.
std::vector<PublishedFigure> load_published_figures(const std::string& path);

}  // namespace cmx::bench
