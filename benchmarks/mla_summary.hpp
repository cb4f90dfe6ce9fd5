// SPDX-License-Identifier: Apache-2.0
// The MLA suite's summary: each grid point's figures and utilizations beside FlashMLA's and
// CloudMatrix384's published utilizations, and whether the targets are met.
#pragma once

#include <ostream>
#include <vector>

#include "published.hpp"
#include "report.hpp"

namespace cmx::bench {

/// Prints the summary of the mla_decode runs among `runs`; nothing if there are none.
void print_mla_summary(std::ostream& out, const std::vector<MeasuredRun>& runs,
                       const PublishedTable& published);

}  // namespace cmx::bench
