// SPDX-License-Identifier: Apache-2.0
// cmx::ep::Buffer: the symmetric memory and the call state that dispatch and combine share.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "cmx/core/bf16.hpp"
#include "cmx/core/error.hpp"
#include "cmx/device/device.hpp"
#include "cmx/ep/config.hpp"
#include "cmx/ep/layout.hpp"

namespace cmx::ep {

/// Where a buffer is in its dispatch/combine cycle.
enum class Phase {
  idle,        ///< ready for dispatch
  dispatched,  ///< dispatch done; combine is next
  failed,      ///< an error left peers in an unknown state: the buffer cannot be used again
};

template <Device Dev>
class Buffer;

namespace detail {

/// What one rank's buffer remembers between the calls of a dispatch/combine pair: the kernels'
/// state, reached through BufferAccess, not a user API.
struct CallState {
  Phase phase = Phase::idle;
  std::uint64_t sequence = 0;                 // of the current (or last) pair; 0 before the first
  int num_tokens = 0;                         // of the pending dispatch
  std::vector<Route> routes;                  // [max_tokens_per_rank][num_topk]: the plan of the
                                              // pending dispatch, staged for write_local
  std::vector<std::int32_t> sent_per_expert;  // [num_experts] rows sent to each expert
  std::vector<std::int32_t> next_row;         // [num_experts] planning: the next receive row
                                              // of each expert's segment from this rank
  std::vector<std::int32_t> received_counts;  // [num_local_experts][num_ranks] rows received
  std::vector<std::int32_t> received_first_rows;  // [num_local_experts][num_ranks] where each
                                                  // segment starts in the receive area

  /// Starts a dispatch on `rank`: checks the order and returns its sequence number.
  std::uint64_t begin_dispatch(int rank, int tokens) {
    require_phase(Phase::idle, "dispatch", rank);
    num_tokens = tokens;
    return ++sequence;
  }
  /// Starts a combine on `rank`: checks the order and returns the sequence of its dispatch.
  std::uint64_t begin_combine(int rank) const {
    require_phase(Phase::dispatched, "combine", rank);
    return sequence;
  }

 private:
  void require_phase(Phase expected, const char* call, int rank) const {
    cmx::detail::require(phase != Phase::failed, ErrorCode::state, "rank ", rank, ": ", call,
                         " on a buffer that an earlier error left unusable; make a new one");
    cmx::detail::require(phase == expected, ErrorCode::state, "rank ", rank, ": ", call,
                         expected == Phase::idle ? " called twice without a combine between"
                                                 : " called without a dispatch before it");
  }
};

/// A one-block kernel: copies `bytes` at `offset` of this rank's part of `symmetric` to the
/// same offset of every rank's part (this rank's included), staged through local memory.
/// `bytes` is a multiple of 32 and fits a block's local memory.
template <Device Dev>
struct CopyToEveryRank {
  Dev device;
  typename Dev::Symmetric symmetric;
  std::size_t offset;
  std::size_t bytes;

  void operator()(Block& block) {
    const std::span<const std::byte> staged =
        device.stage_in(block.local, device.local(symmetric) + offset, bytes);
    for (int rank = 0; rank < device.world_size(); ++rank)
      device.put(symmetric, rank, offset, staged);
  }
};

/// How the kernels (cmx::ep::dispatch, combine and their protocol helpers) reach a buffer's
/// call state.
struct BufferAccess {
  template <Device Dev>
  static CallState& state(Buffer<Dev>& buffer) noexcept {
    return buffer.state_;
  }
};

}  // namespace detail

/// An expert-parallel buffer: made once per rank (collectively), then used by dispatch and
/// combine call after call with nothing allocated or cleared per call.
///
/// Each call carries a sequence number that every flag it raises holds, so flags are never
/// reset. Calls alternate: dispatch, combine, dispatch, ... on every rank. That order is what
/// makes reuse safe (NOTES in dispatch.hpp); breaking it is cmx::Error(state).
template <Device Dev>
class Buffer {
 public:
  /// Collective: every rank of the device's world makes its buffer with the same config, in
  /// the same order relative to its other symmetric allocations. A config that is invalid or
  /// that differs between ranks is cmx::Error on every rank.
  Buffer(Dev device, const Config& config)
      : device_(device), config_(config), layout_(checked_layout()) {
    symmetric_ = device_.allocate_symmetric(layout_.total_bytes);
    state_.routes.assign(static_cast<std::size_t>(config.max_tokens_per_rank) *
                             static_cast<std::size_t>(config.num_topk),
                         Route{-1, -1});
    state_.sent_per_expert.assign(static_cast<std::size_t>(config.num_experts), 0);
    state_.next_row.assign(static_cast<std::size_t>(config.num_experts), 0);
    const std::size_t num_segments = static_cast<std::size_t>(layout_.num_local_experts) *
                                     static_cast<std::size_t>(layout_.num_ranks);
    state_.received_counts.assign(num_segments, 0);
    state_.received_first_rows.assign(num_segments, 0);
  }

  // One buffer per rank and call sequence: a copy would share the memory but not the sequence
  // numbers. Moving is fine.
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&&) noexcept = default;
  Buffer& operator=(Buffer&&) noexcept = default;

  /// The shapes this buffer was made for.
  const Config& config() const noexcept { return config_; }
  /// Where everything lives in the symmetric part (the same on every rank).
  const Layout& layout() const noexcept { return layout_; }
  /// Where the buffer is in its dispatch/combine cycle.
  Phase phase() const noexcept { return state_.phase; }
  /// Sequence number of the current (or last) dispatch/combine pair; 0 before the first.
  std::uint64_t sequence() const noexcept { return state_.sequence; }
  /// The device (rank) the buffer was made on; kernels must be called with it.
  Dev& device() noexcept { return device_; }
  const Dev& device() const noexcept { return device_; }
  /// The symmetric allocation laid out by layout(), for the kernels and for inspection.
  const typename Dev::Symmetric& symmetric() const noexcept { return symmetric_; }

  /// CombineSource::buffer only: where this rank writes its expert outputs for combine,
  /// [Layout::num_messages()][hidden] bf16 (this rank's part of the buffer), the output for
  /// received row (e, s, slot) at row Received::row_index(e, s, slot).
  /// Only received rows are read. Write it after dispatch returns and before combine: from
  /// combine until the next dispatch returns, peers read it. cmx::Error(state) for a
  /// caller_memory buffer.
  std::span<bf16> expert_out() {
    cmx::detail::require(config_.combine_source == CombineSource::buffer, ErrorCode::state,
                         "expert_out() of a buffer whose combine_source is caller_memory: "
                         "combine reads CombineArgs::expert_out instead");
    return {reinterpret_cast<bf16*>(device_.local(symmetric_) + layout_.expert_out_offset),
            layout_.num_messages() * static_cast<std::size_t>(config_.hidden)};
  }

 private:
  // What each rank puts into every peer's config table, in a slot of kRecordBytes.
  struct ConfigRecord {
    std::int32_t present;  // 1 once written
    std::int32_t num_ranks;
    Config config;
  };
  static constexpr std::size_t kRecordBytes = round_up(sizeof(ConfigRecord), kTileAlignment);

  // Compares configs first, so that a config invalid on one rank only is reported as a mismatch
  // on every rank, then validates it (the same outcome on every rank).
  Layout checked_layout() {
    check_same_config_on_every_rank();
    validate(config_, device_.world_size());
    return Layout(config_, device_.world_size());
  }

  void check_same_config_on_every_rank() {
    const int num_ranks = device_.world_size();
    const auto table =
        device_.allocate_symmetric(static_cast<std::size_t>(num_ranks) * kRecordBytes);
    const ConfigRecord mine{.present = 1, .num_ranks = num_ranks, .config = config_};
    alignas(kTileAlignment) std::array<std::byte, kRecordBytes> record{};  // padding zeroed
    std::memcpy(record.data(), &mine, sizeof(mine));
    const std::size_t my_slot = static_cast<std::size_t>(device_.rank()) * kRecordBytes;
    device_.write_local(table, my_slot, record);
    device_.launch(1, detail::CopyToEveryRank<Dev>{device_, table, my_slot, kRecordBytes});
    device_.barrier();  // publishes the puts: every table is complete after it
    std::vector<std::byte> records(static_cast<std::size_t>(num_ranks) * kRecordBytes);
    device_.read_local(table, 0, records);
    for (int peer = 0; peer < num_ranks; ++peer) {
      ConfigRecord theirs;
      std::memcpy(&theirs, records.data() + static_cast<std::size_t>(peer) * kRecordBytes,
                  sizeof(theirs));
      cmx::detail::require(
          theirs.present == 1 && theirs.num_ranks == num_ranks && theirs.config == config_,
          ErrorCode::config_mismatch, "rank ", device_.rank(),
          ": ep::Config differs between ranks: rank ", device_.rank(), " has ", config_, ", rank ",
          peer, " has ", theirs.config);
    }
  }

  Dev device_;
  Config config_;
  Layout layout_;
  typename Dev::Symmetric symmetric_{};
  detail::CallState state_;

  friend struct detail::BufferAccess;
};

}  // namespace cmx::ep
