// SPDX-License-Identifier: Apache-2.0
// Shared by the ep tests: input generators, the expert stand-in, and one checked EP round.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "cmx/cmx.hpp"
#include "cmx/reference/ep.hpp"

namespace cmx::test {

using reference::EpRankInput;

/// How tokens pick experts.
enum class Routing {
  uniform,     // K distinct experts uniformly at random, with some -1 sprinkled in
  one_expert,  // every token's first choice is expert 0, the rest masked
  all_masked,  // every choice is -1
  same_rank,   // a token's K experts all live on one rank (as many as fit)
};

inline const char* to_string(Routing routing) {
  switch (routing) {
    case Routing::uniform:
      return "uniform";
    case Routing::one_expert:
      return "one_expert";
    case Routing::all_masked:
      return "all_masked";
    case Routing::same_rank:
      return "same_rank";
  }
  return "?";
}

/// A bf16 in [-4, 4) from a hash of its coordinates, so any rank can rebuild any value.
inline bf16 hashed_bf16(std::uint64_t a, std::uint64_t b, std::uint64_t c, std::uint64_t d) {
  std::uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x7F4A7C159E3779B9ull) * 0xBF58476D1CE4E5B9ull;
  h ^= (c + 0x94D049BB133111EBull) * 0x94D049BB133111EBull;
  h ^= (d + 0x2545F4914F6CDD1Dull) * 0x9E3779B97F4A7C15ull;
  h ^= h >> 31;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  const float unit = static_cast<float>(h & 0xFFFFFF) / static_cast<float>(1 << 24);
  return bf16::from_float(8.0f * unit - 4.0f);
}

/// The stand-in expert: output row of global expert `expert` for token `token` of rank `src`.
inline bf16 expert_value(int expert, int src, int token, std::size_t h) {
  return hashed_bf16(static_cast<std::uint64_t>(expert) + 1000, static_cast<std::uint64_t>(src),
                     static_cast<std::uint64_t>(token), h);
}

/// Inputs for every rank. num_tokens[r] tokens on rank r; weights in (0, 1].
inline std::vector<EpRankInput> make_inputs(const ep::Config& config, int num_ranks,
                                            const std::vector<int>& num_tokens, Routing routing,
                                            std::uint64_t seed) {
  std::mt19937_64 random(seed);
  const int experts_per_rank = config.num_experts / num_ranks;
  std::vector<EpRankInput> inputs(static_cast<std::size_t>(num_ranks));
  for (int r = 0; r < num_ranks; ++r) {
    EpRankInput& input = inputs[static_cast<std::size_t>(r)];
    input.num_tokens = num_tokens[static_cast<std::size_t>(r)];
    const std::size_t T = static_cast<std::size_t>(input.num_tokens);
    const std::size_t K = static_cast<std::size_t>(config.num_topk);
    input.x.resize(T * static_cast<std::size_t>(config.hidden));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (bf16& v : input.x) v = bf16::from_float(normal(random));
    input.topk_idx.assign(T * K, -1);
    input.topk_weights.resize(T * K);
    std::uniform_real_distribution<float> weight(0.01f, 1.0f);
    for (float& w : input.topk_weights) w = weight(random);
    std::vector<int> experts(static_cast<std::size_t>(config.num_experts));
    std::iota(experts.begin(), experts.end(), 0);
    for (std::size_t t = 0; t < T; ++t) {
      std::int32_t* choice = input.topk_idx.data() + t * K;
      switch (routing) {
        case Routing::uniform: {
          std::shuffle(experts.begin(), experts.end(), random);
          for (std::size_t k = 0; k < K && k < experts.size(); ++k)
            choice[k] = random() % 8 == 0 ? -1 : experts[k];
          break;
        }
        case Routing::one_expert:
          choice[0] = 0;
          break;
        case Routing::all_masked:
          break;
        case Routing::same_rank: {
          const int home = static_cast<int>(random() % static_cast<std::uint64_t>(num_ranks));
          for (std::size_t k = 0; k < K && k < static_cast<std::size_t>(experts_per_rank); ++k)
            choice[k] = home * experts_per_rank + static_cast<int>(k);
          std::shuffle(choice, choice + K, random);
          break;
        }
      }
    }
  }
  return inputs;
}

/// Tokens of each of `num_ranks` ranks, each in [0, capacity], drawn from `seed`: the same on
/// every rank (and process) that asks.
inline std::vector<int> random_token_counts(int num_ranks, int capacity, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  std::vector<int> counts(static_cast<std::size_t>(num_ranks));
  for (int& count : counts)
    count = static_cast<int>(random() % static_cast<std::uint64_t>(capacity + 1));
  return counts;
}

/// "" if the received view matches the reference segment for segment, byte for byte; else the
/// first difference.
inline std::string compare_received(const ep::Received& received, int rank,
                                    const reference::DispatchedRows& expected) {
  std::ostringstream error;
  for (int e = 0; e < received.num_local_experts(); ++e) {
    for (int src = 0; src < received.num_ranks(); ++src) {
      const auto& rows = expected[static_cast<std::size_t>(rank)][static_cast<std::size_t>(e)]
                                 [static_cast<std::size_t>(src)];
      if (received.count(e, src) != static_cast<int>(rows.size())) {
        error << "rank " << rank << " segment (" << e << ", " << src << "): count "
              << received.count(e, src) << ", expected " << rows.size();
        return error.str();
      }
      for (int slot = 0; slot < received.count(e, src); ++slot) {
        const reference::DispatchedRow& want = rows[static_cast<std::size_t>(slot)];
        const ep::MessageMeta meta = received.meta(e, src, slot);
        bool same =
            meta.src_token == want.src_token && meta.topk_slot == want.topk_slot &&
            std::bit_cast<std::uint32_t>(meta.scale) == std::bit_cast<std::uint32_t>(want.scale);
        if (received.precision() == ep::DispatchPrecision::int8) {
          const auto codes = received.row_int8(e, src, slot);
          same = same && std::equal(codes.begin(), codes.end(), want.codes.begin());
        } else {
          const auto values = received.row_bf16(e, src, slot);
          same = same && std::equal(values.begin(), values.end(), want.values.begin());
        }
        if (!same) {
          error << "rank " << rank << " segment (" << e << ", " << src << ") slot " << slot
                << ": got token " << meta.src_token << " k " << meta.topk_slot << " scale "
                << meta.scale << ", expected token " << want.src_token << " k " << want.topk_slot
                << " scale " << want.scale << " (or the row bytes differ)";
          return error.str();
        }
      }
    }
  }
  return "";
}

/// True if no message from `src` reached `buffer`'s receive area: every byte of the rows `src`
/// owns there is still zero.
template <class Dev>
bool nothing_received_from(const ep::Buffer<Dev>& buffer, int src) {
  const ep::Layout& layout = buffer.layout();
  const std::byte* part = buffer.device().local(buffer.symmetric());
  const std::byte* first = part + layout.message(layout.source_first_row(src));
  const std::byte* last = part + layout.message(layout.source_first_row(src + 1));
  return std::none_of(first, last, [](std::byte b) { return b != std::byte{0}; });
}

/// Writes the stand-in expert's rows for what arrived into expert_out
/// [num_messages][H]: a caller's tensor, or Buffer::expert_out().
inline void run_stand_in_experts(const ep::Received& received, const ep::Layout& layout, int rank,
                                 std::span<bf16> expert_out) {
  const std::size_t hidden = static_cast<std::size_t>(layout.hidden);
  REQUIRE(expert_out.size() == layout.num_messages() * hidden);
  for (int e = 0; e < received.num_local_experts(); ++e)
    for (int src = 0; src < received.num_ranks(); ++src)
      for (int slot = 0; slot < received.count(e, src); ++slot) {
        const int token = received.meta(e, src, slot).src_token;
        bf16* row =
            expert_out.data() + static_cast<std::size_t>(received.row_index(e, src, slot)) * hidden;
        for (std::size_t h = 0; h < hidden; ++h)
          row[h] = expert_value(rank * layout.num_local_experts + e, src, token, h);
      }
}

/// The y that combine must produce on `rank`.
inline std::vector<bf16> expected_y(const ep::Config& config, int rank, const EpRankInput& input) {
  std::vector<bf16> row(static_cast<std::size_t>(config.hidden));
  return reference::combine(config, input, [&](int t, int k) {
    const int expert = input.topk_idx[static_cast<std::size_t>(t * config.num_topk + k)];
    for (std::size_t h = 0; h < row.size(); ++h) row[h] = expert_value(expert, rank, t, h);
    return std::span<const bf16>(row);
  });
}

/// "" if y equals the expectation bit for bit; else the first differing coordinate.
inline std::string compare_y(const std::vector<bf16>& y, const std::vector<bf16>& want, int rank,
                             int hidden) {
  for (std::size_t i = 0; i < want.size(); ++i)
    if (y[i] != want[i]) {
      std::ostringstream error;
      error << "rank " << rank << " y[" << i / static_cast<std::size_t>(hidden) << ", "
            << i % static_cast<std::size_t>(hidden) << "] = " << y[i].to_float() << " (0x"
            << std::hex << y[i].bits << "), expected " << want[i].to_float() << " (0x"
            << want[i].bits << ")";
      return error.str();
    }
  return "";
}

/// One dispatch, stand-in experts and combine on this rank, every tensor in host memory (which
/// is global memory on a CPU backend). `look(received)` runs on what dispatch delivered, before
/// the experts; `pause(stage)` runs before each stage (0: dispatch, 1: experts, 2: combine), to
/// skew rank speeds. Returns combine's y.
template <class Dev, class Look, class Pause>
std::vector<bf16> host_memory_round(Dev& device, ep::Buffer<Dev>& buffer, const EpRankInput& input,
                                    Look&& look, Pause&& pause) {
  const ep::Config& config = buffer.config();
  pause(0);
  const ep::Received received = ep::dispatch(
      device, buffer, {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
  look(received);
  pause(1);
  // The experts write into the caller's tensor, or in place into the buffer (zero-copy).
  const bool in_buffer = config.combine_source == ep::CombineSource::buffer;
  std::vector<bf16> caller_expert_out(
      in_buffer ? 0 : buffer.layout().num_messages() * static_cast<std::size_t>(config.hidden));
  run_stand_in_experts(received, buffer.layout(), device.rank(),
                       in_buffer ? buffer.expert_out() : std::span<bf16>(caller_expert_out));
  std::vector<bf16> y(input.x.size());
  pause(2);
  ep::combine(device, buffer,
              {.expert_out = caller_expert_out, .topk_weights = input.topk_weights, .y = y});
  return y;
}

/// The round of a backend whose global memory is host memory (the CPU backends), as the
/// conformance suite's Ranks::round: host_memory_round.
struct HostMemoryRound {
  template <class Dev, class Look, class Pause>
  static std::vector<bf16> round(Dev& device, ep::Buffer<Dev>& buffer, const EpRankInput& input,
                                 Look&& look, Pause&& pause) {
    return host_memory_round(device, buffer, input, look, pause);
  }
};

/// Round::round on this rank (by default in host memory), checked against the reference.
/// Returns "" or the first mismatch.
template <class Round = HostMemoryRound, class Dev, class Pause>
std::string checked_round(Dev& device, ep::Buffer<Dev>& buffer,
                          const std::vector<EpRankInput>& inputs,
                          const reference::DispatchedRows& expected, Pause&& pause) {
  const int rank = device.rank();
  const EpRankInput& input = inputs[static_cast<std::size_t>(rank)];
  std::string mismatch;
  const std::vector<bf16> y = Round::round(
      device, buffer, input,
      [&](const ep::Received& received) { mismatch = compare_received(received, rank, expected); },
      pause);
  if (mismatch.empty())
    mismatch = compare_y(y, expected_y(buffer.config(), rank, input), rank, buffer.config().hidden);
  return mismatch;
}

/// A pause that does nothing.
inline void no_pause(int) {}

}  // namespace cmx::test
