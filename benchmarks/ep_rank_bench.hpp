// SPDX-License-Identifier: Apache-2.0
// EpRankBench: what one rank of an EP benchmark owns and runs, on any device: cmx's dispatch and
// combine, a baseline that does the same work unfused, and a memcpy of the same bytes.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "cmx/cmx.hpp"
#include "ep_workload.hpp"
#include "lazy_array.hpp"
#include "unfused_baseline.hpp"

namespace cmx::bench {

/// Element `h` of the stand-in output of local expert `expert` for `token`: cheap, finite and
/// varied.
inline bf16 expert_output_value(int expert, int token, std::size_t h) {
  const std::size_t mix =
      (static_cast<std::size_t>(token) * 131 + h * 7 + static_cast<std::size_t>(expert) * 17) % 251;
  return bf16::from_float(static_cast<float>(mix) / 125.0f - 1.0f);
}

/// Everything one rank owns: its inputs, cmx's buffer, the baseline with its own memory (an
/// UnfusedEp), the expert outputs and the memcpy buffers. Made on the rank's own thread (or
/// process), so each page is first touched by the rank that uses it.
template <Device Dev, class Baseline>
class EpRankBench {
 public:
  /// Collective.
  EpRankBench(Dev device, const EpShape& shape)
      : device_(device),
        inputs_(make_rank_inputs(shape, device.rank())),
        num_messages_(inputs_.num_messages()),
        buffer_(device, shape.config()),
        unfused_(device, shape.config()),
        expert_out_(buffer_.layout().num_messages() * hidden()),
        fused_y_(inputs_.x.size()),
        unfused_y_(inputs_.x.size()),
        copy_source_(std::max(payload_bytes(Kernel::dispatch), payload_bytes(Kernel::combine)),
                     std::byte{1}),
        copy_destination_(copy_source_.size()) {}

  /// Collective: one round of each implementation, checked against each other (the same
  /// received rows, the same y bit for bit), so the baseline is known to do the same work.
  /// Writes the expert outputs of the rows that arrive; routing is fixed, so every later round
  /// receives the same rows.
  void run_checked_first_round() {
    const ep::Received received = ep::dispatch(device_, buffer_, dispatch_args());
    unfused_.dispatch(inputs_.x, inputs_.topk_idx, num_tokens());
    check_same_received(received);
    write_expert_outputs(received);
    ep::combine(device_, buffer_, combine_args(fused_y_));
    unfused_.combine(expert_out_.span(), inputs_.topk_weights, unfused_y_);
    const auto [fused, unfused] =
        std::mismatch(fused_y_.begin(), fused_y_.end(), unfused_y_.begin());
    if (fused != fused_y_.end())
      fail("y[", std::distance(fused_y_.begin(), fused), "] is ", fused->to_float(),
           " from cmx and ", unfused->to_float(), " from the unfused baseline");
  }

  void run_fused(Kernel kernel) {
    if (kernel == Kernel::dispatch)
      ep::dispatch(device_, buffer_, dispatch_args());
    else
      ep::combine(device_, buffer_, combine_args(fused_y_));
  }

  void run_unfused(Kernel kernel) {
    if (kernel == Kernel::dispatch)
      unfused_.dispatch(inputs_.x, inputs_.topk_idx, num_tokens());
    else
      unfused_.combine(expert_out_.span(), inputs_.topk_weights, unfused_y_);
  }

  /// One memcpy of this rank's payload bytes of `kernel` between two private buffers.
  void copy_payload(Kernel kernel) {
    std::memcpy(copy_destination_.data(), copy_source_.data(), payload_bytes(kernel));
    benchmark::ClobberMemory();
  }

  /// Bytes this rank moves per call of `kernel`, counted as DeepEP does: its messages (T * K
  /// here) times message_bytes.
  std::size_t payload_bytes(Kernel kernel) const noexcept {
    return num_messages_ * message_bytes(kernel, buffer_.config().hidden);
  }

 private:
  int num_tokens() const noexcept { return buffer_.config().max_tokens_per_rank; }
  std::size_t hidden() const noexcept { return static_cast<std::size_t>(buffer_.config().hidden); }

  ep::DispatchArgs dispatch_args() const {
    return {.x = inputs_.x, .topk_idx = inputs_.topk_idx, .num_tokens = num_tokens()};
  }
  // A zero-copy buffer's combine reads the outputs from the buffer: expert_out stays empty.
  ep::CombineArgs combine_args(std::vector<bf16>& y) const {
    const bool zero_copy = buffer_.config().combine_source == ep::CombineSource::buffer;
    return {.expert_out = zero_copy ? std::span<const bf16>() : expert_out_.span(),
            .topk_weights = inputs_.topk_weights,
            .y = y};
  }

  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    std::ostringstream text;
    text << "rank " << device_.rank() << ": ";
    (text << ... << parts);
    throw std::runtime_error(text.str());
  }

  void check_same_received(const ep::Received& received) const {
    for (int expert = 0; expert < received.num_local_experts(); ++expert)
      for (int src = 0; src < received.num_ranks(); ++src) {
        if (received.count(expert, src) != unfused_.received_count(expert, src))
          fail("segment (", expert, ", ", src, ") has ", received.count(expert, src),
               " rows from cmx and ", unfused_.received_count(expert, src), " from the unfused");
        for (int slot = 0; slot < received.count(expert, src); ++slot) {
          const ep::MessageMeta meta = received.meta(expert, src, slot);
          const RecordTag tag = unfused_.received_tag(expert, src, slot);
          const auto codes = received.row_int8(expert, src, slot);
          const auto unfused_codes = unfused_.received_codes(expert, src, slot);
          if (meta.src_token != tag.src_token || meta.topk_slot != tag.topk_slot ||
              std::memcmp(&meta.scale, &tag.scale, sizeof(float)) != 0 ||
              !std::equal(codes.begin(), codes.end(), unfused_codes.begin()))
            fail("segment (", expert, ", ", src, ") slot ", slot,
                 " differs between cmx and the unfused baseline");
        }
      }
  }

  // Into the baseline's tensor and, for a zero-copy buffer, into the buffer's own.
  void write_expert_outputs(const ep::Received& received) {
    const bool zero_copy = buffer_.config().combine_source == ep::CombineSource::buffer;
    for (int expert = 0; expert < received.num_local_experts(); ++expert)
      for (int src = 0; src < received.num_ranks(); ++src)
        for (int slot = 0; slot < received.count(expert, src); ++slot) {
          const int token = received.meta(expert, src, slot).src_token;
          const std::size_t offset =
              static_cast<std::size_t>(received.row_index(expert, src, slot)) * hidden();
          bf16* row = expert_out_.data() + offset;
          for (std::size_t h = 0; h < hidden(); ++h) row[h] = expert_output_value(expert, token, h);
          if (zero_copy) std::copy(row, row + hidden(), buffer_.expert_out().data() + offset);
        }
  }

  Dev device_;
  RankInputs inputs_;
  std::size_t num_messages_;  // (token, expert) messages this rank sends per call
  ep::Buffer<Dev> buffer_;
  Baseline unfused_;
  // [num_messages][hidden], cmx's receive layout: this rank's own,
  // only received rows written (a shared one would turn other ranks' reads into cache hits).
  LazyArray<bf16> expert_out_;
  std::vector<bf16> fused_y_;                // [num_tokens][hidden]
  std::vector<bf16> unfused_y_;              // [num_tokens][hidden]
  std::vector<std::byte> copy_source_;       // [max payload bytes]
  std::vector<std::byte> copy_destination_;  // [max payload bytes]
};

/// The timed sections of one EP iteration.
enum class EpSection { fused, unfused, memcpy, count };

/// One iteration on one rank: cmx's dispatch and combine, the baseline's dispatch and combine
/// (both implementations need the pair, in turn) and a memcpy of the measured kernel's bytes.
/// Only the measured kernel's sections are timed, by `timer` (time(device, section, body) and
/// gather(device), collectives).
template <class Dev, class RankBench, class Timer>
void run_iteration(Dev& device, RankBench& rank, Kernel measured, Timer& timer) {
  const auto run = [&](EpSection section, Kernel kernel, auto&& body) {
    if (kernel == measured)
      timer.time(device, section, body);
    else
      body();
  };
  for (const Kernel kernel : {Kernel::dispatch, Kernel::combine})
    run(EpSection::fused, kernel, [&] { rank.run_fused(kernel); });
  for (const Kernel kernel : {Kernel::dispatch, Kernel::combine})
    run(EpSection::unfused, kernel, [&] { rank.run_unfused(kernel); });
  timer.time(device, EpSection::memcpy, [&] { rank.copy_payload(measured); });
  timer.gather(device);
}

}  // namespace cmx::bench
