// SPDX-License-Identifier: Apache-2.0
// cmx::ep::Config: the static shapes of one expert-parallel buffer, and their validation.
#pragma once

#include <cstdint>
#include <limits>
#include <ostream>

#include "cmx/core/error.hpp"

namespace cmx::ep {

/// What dispatch sends: INT8 rows with a per-token scale (cmx::quantize_row_int8), or the bf16
/// rows unchanged.
enum class DispatchPrecision : std::int32_t { int8 = 0, bf16 = 1 };

/// Where combine finds the expert outputs, and so how they travel back.
enum class CombineSource : std::int32_t {
  /// CombineArgs::expert_out, in the caller's memory: combine puts each row into its source
  /// rank's buffer (a peer write), and the source rank then reduces the rows it received.
  caller_memory = 0,
  /// Buffer::expert_out(), in the buffer's symmetric memory, written there by the caller (the
  /// expert FFN writes its output in place): each source rank reads its rows straight from the
  /// expert ranks' buffers (a peer read) and reduces them as it reads. No copy: half the memory
  /// traffic of caller_memory (DeepEP's zero-copy combine), for a larger buffer.
  buffer = 1,
};

/// Largest supported hidden size, the largest tested: dispatch and the caller-memory combine
/// stage whole rows in a block's local memory (here a 32 KiB bf16 row beside its message, well
/// within 192 KiB); combine's reduction works in chunks of columns and sets no limit of its own.
inline constexpr int kMaxHidden = 16384;
/// Largest supported top-k.
inline constexpr int kMaxTopk = 16;

/// The static shapes of an expert-parallel buffer. Must be the same on every rank (checked when
/// the buffer is made). Experts r*E/W ... (r+1)*E/W - 1 live on rank r.
struct Config {
  int num_experts = 0;          ///< E, global; a multiple of the number of ranks W
  int max_tokens_per_rank = 0;  ///< capacity: tokens a rank may dispatch in one call (>= 1)
  int hidden = 0;               ///< H: a multiple of 16, at most kMaxHidden
  int num_topk = 0;             ///< K: experts per token, 1 ... kMaxTopk
  DispatchPrecision precision = DispatchPrecision::int8;
  CombineSource combine_source = CombineSource::caller_memory;

  friend bool operator==(const Config&, const Config&) = default;
};

/// Prints a config as "{num_experts 256, max_tokens_per_rank 128, ...}", as error messages do.
inline std::ostream& operator<<(std::ostream& out, const Config& config) {
  return out << "{num_experts " << config.num_experts << ", max_tokens_per_rank "
             << config.max_tokens_per_rank << ", hidden " << config.hidden << ", num_topk "
             << config.num_topk << ", precision "
             << (config.precision == DispatchPrecision::int8 ? "int8" : "bf16")
             << ", combine_source "
             << (config.combine_source == CombineSource::buffer ? "buffer" : "caller_memory")
             << "}";
}

/// Receive rows that each source rank owns on each rank (ep::Layout::rows_per_source): its
/// capacity in tokens times the most experts one token can name on one rank,
/// min(num_topk, num_experts / num_ranks). For a config valid on `num_ranks` ranks.
inline std::int64_t receive_rows_per_source(const Config& config, int num_ranks) noexcept {
  const int experts_per_rank = config.num_experts / num_ranks;
  return static_cast<std::int64_t>(config.max_tokens_per_rank) *
         (config.num_topk < experts_per_rank ? config.num_topk : experts_per_rank);
}

/// Throws cmx::Error(invalid_argument) unless `config` is usable on `num_ranks` ranks.
inline void validate(const Config& config, int num_ranks) {
  using cmx::detail::require;
  constexpr ErrorCode kBad = ErrorCode::invalid_argument;
  require(config.num_experts > 0 && config.num_experts % num_ranks == 0, kBad, "num_experts (",
          config.num_experts, ") must be a positive multiple of the ", num_ranks, " ranks");
  require(config.max_tokens_per_rank >= 1, kBad, "max_tokens_per_rank must be >= 1, got ",
          config.max_tokens_per_rank);
  require(config.hidden >= 16 && config.hidden <= kMaxHidden && config.hidden % 16 == 0, kBad,
          "hidden must be a multiple of 16 in [16, ", kMaxHidden, "], got ", config.hidden);
  require(config.num_topk >= 1 && config.num_topk <= kMaxTopk, kBad, "num_topk must be in [1, ",
          kMaxTopk, "], got ", config.num_topk);
  const std::int64_t receive_rows = num_ranks * receive_rows_per_source(config, num_ranks);
  require(receive_rows <= std::numeric_limits<std::int32_t>::max(), kBad, "a receive area of ",
          receive_rows,
          " rows (ranks * max_tokens_per_rank * min(num_topk, experts per rank)) does not fit "
          "the int32 row numbers of a route");
  require(
      config.precision == DispatchPrecision::int8 || config.precision == DispatchPrecision::bf16,
      kBad, "unknown dispatch precision ", static_cast<int>(config.precision));
  require(config.combine_source == CombineSource::caller_memory ||
              config.combine_source == CombineSource::buffer,
          kBad, "unknown combine source ", static_cast<int>(config.combine_source));
}

}  // namespace cmx::ep
