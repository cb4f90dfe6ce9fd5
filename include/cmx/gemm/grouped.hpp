// SPDX-License-Identifier: Apache-2.0
// Grouped W8A8 GEMMs over experts, in the two layouts engines use: contiguous (the rows of all
// experts one after another, with group offsets) and masked (row slots per expert and source
// rank, FusedDispatch's receive area read in place). One product per group, each against the
// group's own packed weights; the tiling is cmx/gemm/tiling.hpp's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "cmx/core/error.hpp"
#include "cmx/device/int8_matmul.hpp"
#include "cmx/gemm/epilogue.hpp"
#include "cmx/gemm/masked_rows.hpp"
#include "cmx/gemm/packed_weights.hpp"
#include "cmx/gemm/tiling.hpp"

namespace cmx::gemm {

/// The operands of a contiguous grouped GEMM: group g is rows [group_offsets[g],
/// group_offsets[g + 1]) of a and c, multiplied by weights[g].
template <GemmOutput Out>
struct ContiguousGemmArgs {
  std::span<const std::int8_t> a;               ///< [total rows, k] int8, groups one after another
  std::span<const float> a_scales;              ///< [total rows] per-token scales
  std::span<const std::int32_t> group_offsets;  ///< [num_groups + 1]: 0, nondecreasing, total rows
  std::span<const PackedWeights> weights;       ///< [num_groups], all of the same n and k
  std::span<Out> c;                             ///< [total rows, n] output
};

/// The operands of a masked grouped GEMM: the valid rows of group g (its segments' rows)
/// multiplied by weights[g]; each output row at the slot of its input row.
template <GemmOutput Out>
struct MaskedGemmArgs {
  MaskedRows a;  ///< the rows, in place (see MaskedRows; an ep::Received converts to it)
  std::span<const PackedWeights> weights;  ///< [a.num_groups], all of the same n and k = a.k
  /// [a.num_slots()][n] output, row slot_index(g, s, slot) for each valid row; rows of slots
  /// without a valid row are not written.
  std::span<Out> c;
};

namespace detail {

/// Checks that every group's weights are packed for `device` with depth k and the n of the
/// first; returns that n (0 if there are no groups).
template <Int8MatmulDevice Dev>
int check_group_weights(const Dev& device, std::span<const PackedWeights> weights, int k,
                        const char* what) {
  const int n = weights.empty() || weights.front().empty() ? 0 : weights.front().n();
  for (const PackedWeights& w : weights) require_packed_for(device, w, k, n, what);
  return n;
}

/// Rows of a contiguous grouped GEMM.
class ContiguousRows {
 public:
  ContiguousRows(std::span<const std::int8_t> a, std::span<const float> scales,
                 std::span<const std::int32_t> offsets, int k) noexcept
      : a_(a), scales_(scales), offsets_(offsets), k_(k) {}

  int num_groups() const noexcept { return static_cast<int>(offsets_.size()) - 1; }
  int num_rows(int group) const noexcept {
    return offsets_[static_cast<std::size_t>(group) + 1] -
           offsets_[static_cast<std::size_t>(group)];
  }
  void rows(int group, int first, std::span<RowRef> refs) const noexcept {
    const std::size_t start =
        static_cast<std::size_t>(offsets_[static_cast<std::size_t>(group)] + first);
    for (std::size_t i = 0; i < refs.size(); ++i)
      refs[i] = {a_.data() + (start + i) * static_cast<std::size_t>(k_), scales_[start + i],
                 start + i};
  }

 private:
  std::span<const std::int8_t> a_;
  std::span<const float> scales_;
  std::span<const std::int32_t> offsets_;
  int k_;
};

/// Rows of a masked grouped GEMM: group g's rows are its segments' valid rows, in segment
/// order.
class MaskedSource {
 public:
  explicit MaskedSource(const MaskedRows& rows) noexcept : rows_(rows) {}

  int num_groups() const noexcept { return rows_.num_groups; }
  int num_rows(int group) const noexcept { return rows_.num_rows(group); }
  void rows(int group, int first, std::span<RowRef> refs) const noexcept {
    int segment = 0;
    int slot = first;  // the first row's slot within `segment`
    while (slot >= rows_.count(group, segment)) slot -= rows_.count(group, segment++);
    for (RowRef& ref : refs) {
      while (slot == rows_.count(group, segment)) {
        slot = 0;
        ++segment;
      }
      const std::size_t index = rows_.slot_index(group, segment, slot++);
      ref = {rows_.row_codes(index), rows_.row_scale(index), index};
    }
  }

 private:
  MaskedRows rows_;  // a copy of the view: a kernel holding it is plain data
};

}  // namespace detail

/// The contiguous grouped GEMM: c[i] = a[i] x weights[g]^T for the rows i of group g, each
/// element by the definition of cmx/gemm/epilogue.hpp (exact int32 sums, then
/// (float(sum) * a_scales[i]) * weights[g].scales()[j]). Empty groups are allowed.
///
/// Errors (cmx::Error(invalid_argument), raised before anything is written): weights not
/// packed for this device or of different shapes, offsets that do not start at 0, decrease or
/// end at the row count, sizes that do not match.
template <Int8MatmulDevice Dev, GemmOutput Out>
void grouped_gemm_contiguous(Dev& device, const ContiguousGemmArgs<Out>& args) {
  using cmx::detail::require;
  constexpr const char* kWhat = "grouped_gemm_contiguous";
  require(!args.weights.empty() && args.group_offsets.size() == args.weights.size() + 1,
          ErrorCode::invalid_argument, kWhat, ": group_offsets has ", args.group_offsets.size(),
          " elements for ", args.weights.size(),
          " groups of weights; expected groups + 1, and at "
          "least one group");
  const int k = args.weights.front().k();
  const int n = detail::check_group_weights(device, args.weights, k, kWhat);
  const std::size_t total_rows = args.a_scales.size();
  require(args.group_offsets.front() == 0 &&
              static_cast<std::size_t>(args.group_offsets.back()) == total_rows,
          ErrorCode::invalid_argument, kWhat, ": group_offsets run from ",
          args.group_offsets.front(), " to ", args.group_offsets.back(), ", expected 0 to ",
          total_rows, " (the rows of a_scales)");
  for (std::size_t g = 0; g + 1 < args.group_offsets.size(); ++g)
    require(args.group_offsets[g] <= args.group_offsets[g + 1], ErrorCode::invalid_argument, kWhat,
            ": group_offsets decrease at group ", g, " (from ", args.group_offsets[g], " to ",
            args.group_offsets[g + 1], ")");
  require(args.a.size() == total_rows * static_cast<std::size_t>(k), ErrorCode::invalid_argument,
          kWhat, ": a has ", args.a.size(), " elements, expected rows * k = ", total_rows, " * ",
          k);
  require(args.c.size() == total_rows * static_cast<std::size_t>(n), ErrorCode::invalid_argument,
          kWhat, ": c has ", args.c.size(), " elements, expected rows * n = ", total_rows, " * ",
          n);
  const detail::ContiguousRows rows(args.a, args.a_scales, args.group_offsets, k);
  detail::run_grouped_product(device, rows, detail::GroupWeights{args.weights}, n, args.c);
}

/// The masked grouped GEMM: for every valid row (g, s, slot) of args.a,
/// c[slot_index(g, s, slot)] = row x weights[g]^T, each element by the definition of
/// cmx/gemm/epilogue.hpp. Reads the rows in place; writes only the output rows of valid rows.
/// Empty groups and segments are allowed.
///
/// Errors (cmx::Error(invalid_argument), raised before anything is written): weights not
/// packed for this device, of different shapes or of another k than a.k, a bad masked layout
/// (counts outside [0, capacity], ...), sizes that do not match.
template <Int8MatmulDevice Dev, GemmOutput Out>
void grouped_gemm_masked(Dev& device, const MaskedGemmArgs<Out>& args) {
  using cmx::detail::require;
  constexpr const char* kWhat = "grouped_gemm_masked";
  detail::check_masked_rows(args.a, kWhat);
  require(args.weights.size() == static_cast<std::size_t>(args.a.num_groups),
          ErrorCode::invalid_argument, kWhat, ": ", args.weights.size(), " groups of weights for ",
          args.a.num_groups, " groups of rows");
  const int n = detail::check_group_weights(device, args.weights, args.a.k, kWhat);
  require(args.c.size() == args.a.num_slots() * static_cast<std::size_t>(n),
          ErrorCode::invalid_argument, kWhat, ": c has ", args.c.size(),
          " elements, expected a.num_slots() * n = ", args.a.num_slots(), " * ", n);
  const detail::MaskedSource rows(args.a);
  detail::run_grouped_product(device, rows, detail::GroupWeights{args.weights}, n, args.c);
}

}  // namespace cmx::gemm
