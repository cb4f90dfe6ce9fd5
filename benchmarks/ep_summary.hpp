// SPDX-License-Identifier: Apache-2.0
// The EP suite's summary table.
#pragma once

#include <ostream>
#include <vector>

#include "ep_workload.hpp"
#include "published.hpp"
#include "report.hpp"

namespace cmx::bench {

/// Prints, per kernel and W measured in `runs`, latency, GB/s, this machine's limit (memcpy)
/// and the ratios, with the published figures of the same kernel and EP size beneath, then the
/// sources. Prints nothing if no EP benchmark ran.
void print_ep_summary(std::ostream& out, const EpShape& shape, const std::vector<MeasuredRun>& runs,
                      const PublishedTable& published);

/// cmx_bench_mpi's summary: per kernel and number of processes W measured in `runs`, cmx's
/// rows on the shared-memory and MPI_Put paths (latency, GB/s, the MPI_Alltoallv pipeline's
/// latency and ratio, memcpy), with the published figures of the same kernel and EP size beneath,
/// then the sources. Prints nothing if no EP benchmark ran.
void print_ep_mpi_summary(std::ostream& out, const EpShape& shape,
                          const std::vector<MeasuredRun>& runs, const PublishedTable& published);

}  // namespace cmx::bench
