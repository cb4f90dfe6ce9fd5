// SPDX-License-Identifier: Apache-2.0
// cmx::gemm::MaskedRows: the masked layout of a grouped GEMM's activations, a view of rows where
// they already are (FusedDispatch's receive area, or a DeepGEMM-style [groups, capacity, K]).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "cmx/core/error.hpp"

namespace cmx::gemm {

/// Rows in row slots [num_groups][num_segments][capacity]: segment (g, s) holds count(g, s)
/// valid rows in its first slots; the other slots are never read. A group is one expert; its
/// segments are the source ranks that sent it rows (1 segment: DeepGEMM's masked layout).
///
/// Slot i = slot_index(g, s, slot) has its k int8 codes at codes + i * row_stride and its
/// float per-token scale at scales + i * scale_stride (bytes, any alignment). i is also the
/// row of the slot's output in a masked GEMM's [num_groups][num_segments][capacity][n] result.
struct MaskedRows {
  int num_groups = 0;                    ///< groups (local experts)
  int num_segments = 1;                  ///< segments per group (source ranks)
  int capacity = 0;                      ///< row slots per segment
  int k = 0;                             ///< codes per row
  std::span<const std::int32_t> counts;  ///< [num_groups][num_segments] valid rows, 0 ... capacity
  const std::byte* codes = nullptr;      ///< slot 0's codes
  std::size_t row_stride = 0;            ///< bytes between slots' codes, >= k
  const std::byte* scales = nullptr;     ///< slot 0's scale
  std::size_t scale_stride = 0;          ///< bytes between slots' scales

  /// The slot (and output row) of row `slot` of segment (group, segment).
  std::size_t slot_index(int group, int segment, int slot) const noexcept {
    return (static_cast<std::size_t>(group) * static_cast<std::size_t>(num_segments) +
            static_cast<std::size_t>(segment)) *
               static_cast<std::size_t>(capacity) +
           static_cast<std::size_t>(slot);
  }
  /// Valid rows of segment (group, segment).
  int count(int group, int segment) const noexcept {
    return counts[static_cast<std::size_t>(group) * static_cast<std::size_t>(num_segments) +
                  static_cast<std::size_t>(segment)];
  }
  /// Valid rows of `group`, over its segments.
  int num_rows(int group) const noexcept {
    int total = 0;
    for (int s = 0; s < num_segments; ++s) total += count(group, s);
    return total;
  }
  /// Row slots in all: num_groups * num_segments * capacity.
  std::size_t num_slots() const noexcept { return slot_index(num_groups, 0, 0); }
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
  bool any_row = false;
  for (int g = 0; g < rows.num_groups; ++g)
    for (int s = 0; s < rows.num_segments; ++s) {
      const int count = rows.count(g, s);
      require(count >= 0 && count <= rows.capacity, ErrorCode::invalid_argument, what,
              ": segment (group ", g, ", segment ", s, ") counts ", count, " rows, outside [0, ",
              rows.capacity, "]");
      any_row = any_row || count > 0;
    }
  require(!any_row || (rows.codes != nullptr && rows.scales != nullptr),
          ErrorCode::invalid_argument, what, ": masked rows without codes or scales");
  require(rows.row_stride >= static_cast<std::size_t>(rows.k), ErrorCode::invalid_argument, what,
          ": row_stride ", rows.row_stride, " B is shorter than a row of k = ", rows.k, " codes");
  require(rows.scale_stride >= sizeof(float) || rows.num_slots() <= 1, ErrorCode::invalid_argument,
          what, ": scale_stride ", rows.scale_stride, " B is shorter than a float");
}

}  // namespace detail
}  // namespace cmx::gemm
