// SPDX-License-Identifier: Apache-2.0
// The pieces of the arrival protocol that dispatch and combine share: failure propagation and
// checked waits.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>

#include "cmx/core/error.hpp"
#include "cmx/device/device.hpp"
#include "cmx/ep/buffer.hpp"

namespace cmx::ep::detail {

/// The payload a rank signals instead of a count when its call failed before it published:
/// its peers fail at once (cmx::Error(peer_failed)) instead of waiting for the timeout.
inline constexpr std::int64_t kFailedPayload = -1;

/// Runs one call's body on `device`, which must be the buffer's own (the same rank); any
/// exception leaves the buffer failed (peers may be mid-protocol) and is rethrown.
template <Device Dev, class Body>
auto run_call(Dev& device, Buffer<Dev>& buffer, Body&& body) {
  cmx::detail::require(device.rank() == buffer.device().rank() &&
                           device.world_size() == buffer.device().world_size(),
                       ErrorCode::invalid_argument, "a kernel called with rank ", device.rank(),
                       "'s device on rank ", buffer.device().rank(), "'s buffer");
  try {
    return body();
  } catch (...) {
    BufferAccess::state(buffer).phase = Phase::failed;  // peers may be mid-protocol
    throw;
  }
}

/// Runs the steps of a call that precede its publication. If one throws, first raises every
/// flag this rank owes its peers with the failure payload (`publish(payload_of)`), so that they
/// fail at once (cmx::Error(peer_failed)) instead of timing out, then rethrows.
template <class Publish, class Steps>
void before_publish(Publish&& publish, Steps&& steps) {
  try {
    steps();
  } catch (...) {
    try {
      publish([](auto&&...) { return kFailedPayload; });
    } catch (...) {
      // The original error is the one to report; a failed poison leaves peers to time out.
    }
    throw;
  }
}

/// Waits for a count flag and checks its payload: a peer's failure becomes
/// cmx::Error(peer_failed) naming it, a count above `max_count` a protocol error.
template <Device Dev>
std::int32_t wait_count(Dev& device, const typename Dev::Symmetric& symmetric,
                        std::size_t flag_offset, std::uint64_t sequence, const WaitSite& site,
                        std::int64_t max_count) {
  const std::int64_t payload = device.wait(symmetric, flag_offset, sequence, site);
  cmx::detail::require(payload != kFailedPayload, ErrorCode::peer_failed, "rank ", device.rank(),
                       ": rank ", site.peer_rank, " failed its ", site.what,
                       " (its own error says why)");
  cmx::detail::require(payload >= 0 && payload <= max_count, ErrorCode::state, "rank ",
                       device.rank(), ": ", site.what, " from rank ", site.peer_rank,
                       " carries count ", payload, ", outside [0, ", max_count, "]");
  return static_cast<std::int32_t>(payload);
}

/// The half-open range of `num_items` that block `block_index` of `num_blocks` takes.
struct ItemRange {
  std::int64_t begin;
  std::int64_t end;
};
inline ItemRange block_range(std::int64_t num_items, int block_index, int num_blocks) noexcept {
  return {num_items * block_index / num_blocks, num_items * (block_index + 1) / num_blocks};
}

/// Blocks for `num_items` independent items: no more than the device runs at once, no more
/// than the items, at least 1.
template <Device Dev>
int num_blocks_for(const Dev& device, std::int64_t num_items) noexcept {
  return static_cast<int>(
      std::max<std::int64_t>(1, std::min<std::int64_t>(device.max_blocks(), num_items)));
}

}  // namespace cmx::ep::detail
