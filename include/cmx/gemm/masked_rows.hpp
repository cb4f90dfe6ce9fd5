// SPDX-License-Identifier: Apache-2.0
// cmx::gemm::MaskedRows: the masked layout of a grouped GEMM's activations, a view of rows where
// they already are (FusedDispatch's receive area, or a DeepGEMM-style [groups, capacity, K]).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "cmx/core/error.hpp"

namespace cmx::gemm {

/// Rows in row slots, grouped: segment (g, s) holds count(g, s) valid rows in consecutive
/// slots; the other slots are never read. A group is one expert; its segments are the source
/// ranks that sent it rows (1 segment: DeepGEMM's masked layout). Where the segments are:
///   - static (first_slots empty): slots [num_groups][num_segments][capacity], segment (g, s)
///     from slot (g * num_segments + s) * capacity;
///   - packed (first_slots given, as FusedDispatch's receive area): segment (g, s) from slot
///     first_slots[g * num_segments + s], all within num_packed_slots slots.
///
/// Slot i = slot_index(g, s, slot) has its k int8 codes at codes + i * row_stride and its
/// float per-token scale at scales + i * scale_stride (bytes, any alignment). i is also the
/// row of the slot's output in a masked GEMM's [num_slots()][n] result.
struct MaskedRows {
  int num_groups = 0;                    ///< groups (local experts)
  int num_segments = 1;                  ///< segments per group (source ranks)
  int capacity = 0;                      ///< most valid rows of a segment (its slots if static)
  int k = 0;                             ///< codes per row
  std::span<const std::int32_t> counts;  ///< [num_groups][num_segments] valid rows, 0 ... capacity
  /// Packed layouts: [num_groups][num_segments] the slot of each segment's first row; empty
  /// for the static layout.
  std::span<const std::int32_t> first_slots = {};
  std::size_t num_packed_slots = 0;   ///< packed layouts: the slots in all; else unused
  const std::byte* codes = nullptr;   ///< slot 0's codes
  std::size_t row_stride = 0;         ///< bytes between slots' codes, >= k
  const std::byte* scales = nullptr;  ///< slot 0's scale
  std::size_t scale_stride = 0;       ///< bytes between slots' scales

  /// Index of segment (group, segment) in [num_groups][num_segments] arrays (counts,
  /// first_slots).
  std::size_t segment_index(int group, int segment) const noexcept {
    return static_cast<std::size_t>(group) * static_cast<std::size_t>(num_segments) +
           static_cast<std::size_t>(segment);
  }
  /// The slot (and output row) of row `slot` of segment (group, segment).
  std::size_t slot_index(int group, int segment, int slot) const noexcept {
    const std::size_t index = segment_index(group, segment);
    return (first_slots.empty() ? index * static_cast<std::size_t>(capacity)
                                : static_cast<std::size_t>(first_slots[index])) +
           static_cast<std::size_t>(slot);
  }
  /// Valid rows of segment (group, segment).
  int count(int group, int segment) const noexcept { return counts[segment_index(group, segment)]; }
  /// Valid rows of `group`, over its segments.
  int num_rows(int group) const noexcept {
    int total = 0;
    for (int s = 0; s < num_segments; ++s) total += count(group, s);
    return total;
  }
  /// Row slots in all (the rows of an output): num_groups * num_segments * capacity if
  /// static, num_packed_slots if packed.
  std::size_t num_slots() const noexcept {
    return first_slots.empty()
               ? static_cast<std::size_t>(num_groups) * static_cast<std::size_t>(num_segments) *
                     static_cast<std::size_t>(capacity)
               : num_packed_slots;
  }
  /// The codes of slot i.
  const std::int8_t* row_codes(std::size_t slot) const noexcept {
    return reinterpret_cast<const std::int8_t*>(codes + slot * row_stride);
  }
  /// The scale of slot i.
  float row_scale(std::size_t slot) const noexcept {
    float scale;
    std::memcpy(&scale, scales + slot * scale_stride, sizeof(scale));
    return scale;
  }
};

namespace detail {

/// Throws cmx::Error(invalid_argument) unless `rows` describes a valid masked layout. `what`
/// names the caller.
inline void check_masked_rows(const MaskedRows& rows, const char* what) {
  using cmx::detail::require;
  require(rows.num_groups >= 0 && rows.num_segments >= 1 && rows.capacity >= 0,
          ErrorCode::invalid_argument, what, ": masked rows of ", rows.num_groups, " groups x ",
          rows.num_segments, " segments x ", rows.capacity,
          " slots: need groups >= 0, segments >= 1, capacity >= 0");
  require(rows.counts.size() == static_cast<std::size_t>(rows.num_groups) *
                                    static_cast<std::size_t>(rows.num_segments),
          ErrorCode::invalid_argument, what, ": counts has ", rows.counts.size(),
          " elements, expected num_groups * num_segments = ", rows.num_groups, " * ",
          rows.num_segments);
  const bool packed = !rows.first_slots.empty();
  require(!packed || rows.first_slots.size() == rows.counts.size(), ErrorCode::invalid_argument,
          what, ": first_slots has ", rows.first_slots.size(), " elements, expected ",
          rows.counts.size());
  require(packed || rows.num_packed_slots == 0, ErrorCode::invalid_argument, what,
          ": num_packed_slots is ", rows.num_packed_slots, " without first_slots");
  std::vector<std::pair<std::size_t, std::size_t>> packed_segments;  // [first, end) slots
  bool any_row = false;
  for (int g = 0; g < rows.num_groups; ++g)
    for (int s = 0; s < rows.num_segments; ++s) {
      const int count = rows.count(g, s);
      require(count >= 0 && count <= rows.capacity, ErrorCode::invalid_argument, what,
              ": segment (group ", g, ", segment ", s, ") counts ", count, " rows, outside [0, ",
              rows.capacity, "]");
      // A packed segment's slots lie within the layout's (static ones do by construction).
      const std::int32_t first = packed ? rows.first_slots[rows.segment_index(g, s)] : 0;
      require(
          !packed ||
              (first >= 0 && static_cast<std::size_t>(first) + static_cast<std::size_t>(count) <=
                                 rows.num_packed_slots),
          ErrorCode::invalid_argument, what, ": segment (group ", g, ", segment ", s, ") of ",
          count, " rows from slot ", first, " is outside the ", rows.num_packed_slots, " slots");
      if (packed && count > 0)
        packed_segments.emplace_back(
            static_cast<std::size_t>(first),
            static_cast<std::size_t>(first) + static_cast<std::size_t>(count));
      any_row = any_row || count > 0;
    }
  // Packed segments must not share a slot: two blocks would write its output row.
  std::sort(packed_segments.begin(), packed_segments.end());
  for (std::size_t i = 1; i < packed_segments.size(); ++i)
    require(packed_segments[i - 1].second <= packed_segments[i].first, ErrorCode::invalid_argument,
            what, ": packed segments overlap at slot ", packed_segments[i].first);
  require(!any_row || (rows.codes != nullptr && rows.scales != nullptr),
          ErrorCode::invalid_argument, what, ": masked rows without codes or scales");
  require(rows.row_stride >= static_cast<std::size_t>(rows.k), ErrorCode::invalid_argument, what,
          ": row_stride ", rows.row_stride, " B is shorter than a row of k = ", rows.k, " codes");
  require(rows.scale_stride >= sizeof(float) || rows.num_slots() <= 1, ErrorCode::invalid_argument,
          what, ": scale_stride ", rows.scale_stride, " B is shorter than a float");
}

}  // namespace detail
}  // namespace cmx::gemm
