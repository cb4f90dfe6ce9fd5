// SPDX-License-Identifier: Apache-2.0
// The conformance suite of FusedDispatch + FusedCombine: one body per property, run on every
// backend (as Kokkos runs one body per execution space). A backend's test file instantiates it
// with CMX_EP_CONFORMANCE(its Ranks type); the Ranks type says how that backend makes ranks:
//
//   Ranks::Device                         the backend's device type
//   Ranks::name()                         the backend's name (and mode), for messages
//   Ranks::rank_counts(wanted)            the rank counts a property runs at, of `wanted`: all of
//                                         them where ranks are threads; the process count
//                                         where they are processes (mpirun chose it)
//   Ranks::kBackToBackRounds              rounds of the back-to-back property
//   Ranks::round(device, buffer, input,   one dispatch, stand-in experts and combine on this
//                look, pause) -> y        rank, its tensors in the backend's global memory (as
//                                         cmx::test::host_memory_round, which CPU backends
//                                         inherit from HostMemoryRound): look(received) sees
//                                         what dispatch delivered, as the host reads it
//   Ranks::run(options, body) -> strings  runs body(Device&) -> std::string on every rank of a
//                                         fresh world; returns what each rank of this process
//                                         returned ("" = fine)
//
// The properties pick their shapes from the rank count, so that each backend checks the same
// thing at the rank counts it runs.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../ep/ep_harness.hpp"

namespace cmx::test {

/// How a property's world is made.
struct RanksOptions {
  int num_ranks = 1;
  std::chrono::nanoseconds timeout = std::chrono::seconds(10);  ///< WorldConfig::timeout
  int blocks_per_rank = 0;                                      ///< 0: the backend's default
};

namespace conformance {

inline constexpr ep::CombineSource kCombineSources[] = {ep::CombineSource::caller_memory,
                                                        ep::CombineSource::buffer};

struct Case {
  int num_ranks;
  int experts_per_rank;
  int hidden;
  int num_topk;
  int capacity;
  ep::DispatchPrecision precision = ep::DispatchPrecision::int8;
  Routing routing = Routing::uniform;
  int blocks_per_rank = 0;
  ep::CombineSource combine_source = ep::CombineSource::caller_memory;
};

inline std::string describe(const std::string& backend, const Case& c) {
  std::ostringstream text;
  text << backend << ": ranks " << c.num_ranks << " experts " << c.experts_per_rank * c.num_ranks
       << " hidden " << c.hidden << " topk " << c.num_topk << " capacity " << c.capacity << " "
       << (c.precision == ep::DispatchPrecision::int8 ? "int8" : "bf16") << " "
       << to_string(c.routing) << " blocks " << c.blocks_per_rank << " combine from "
       << (c.combine_source == ep::CombineSource::buffer ? "buffer" : "caller memory");
  return text.str();
}

inline ep::Config config_of(const Case& c) {
  return {.num_experts = c.experts_per_rank * c.num_ranks,
          .max_tokens_per_rank = c.capacity,
          .hidden = c.hidden,
          .num_topk = c.num_topk,
          .precision = c.precision,
          .combine_source = c.combine_source};
}

/// Tokens per rank for `num_ranks` ranks: `pattern` repeated (a property written for 4 ranks
/// keeps its mix of counts at 2 or 8).
inline std::vector<int> tokens_on(int num_ranks, std::initializer_list<int> pattern) {
  std::vector<int> tokens(static_cast<std::size_t>(num_ranks));
  for (std::size_t r = 0; r < tokens.size(); ++r) tokens[r] = pattern.begin()[r % pattern.size()];
  return tokens;
}

/// One round on a fresh world, each rank checked against the reference.
template <class Ranks>
void check_one_round(const Case& c, const std::vector<int>& tokens, std::uint64_t seed) {
  using Device = typename Ranks::Device;
  INFO(describe(Ranks::name(), c));
  const ep::Config config = config_of(c);
  const auto inputs = make_inputs(config, c.num_ranks, tokens, c.routing, seed);
  const auto expected = reference::dispatch(config, c.num_ranks, inputs);
  // Hundreds of threads on 2 cores under a sanitizer take a while to start: be patient.
  const RanksOptions options{.num_ranks = c.num_ranks,
                             .timeout = std::chrono::seconds(c.num_ranks >= 64 ? 120 : 10),
                             .blocks_per_rank = c.blocks_per_rank};
  for (const std::string& m : Ranks::run(options, [&](Device& device) {
         ep::Buffer<Device> buffer(device, config);
         return checked_round<Ranks>(device, buffer, inputs, expected, no_pause);
       }))
    CHECK_MESSAGE(m.empty(), m);
}

/// `num_rounds` rounds over one buffer per rank, of `num_inputs` distinct inputs in turn (input
/// i: token counts from seed count_seed + i, routing from routing_seed + i); `skewed`: every
/// rank sleeps a random 0-2 ms before some stages, so that arrival order changes every round.
template <class Ranks>
void check_rounds(const Case& c, int num_rounds, int num_inputs, bool skewed,
                  std::uint64_t count_seed, std::uint64_t routing_seed) {
  using Device = typename Ranks::Device;
  INFO(describe(Ranks::name(), c), ", ", num_rounds, " rounds");
  const ep::Config config = config_of(c);
  std::vector<std::vector<EpRankInput>> inputs;
  std::vector<reference::DispatchedRows> expected;
  for (int i = 0; i < num_inputs; ++i) {
    const Routing routing = !skewed && i % 5 == 4 ? Routing::same_rank : Routing::uniform;
    inputs.push_back(make_inputs(config, c.num_ranks,
                                 random_token_counts(c.num_ranks, c.capacity, count_seed + i),
                                 routing, routing_seed + i));
    expected.push_back(reference::dispatch(config, c.num_ranks, inputs.back()));
  }
  const RanksOptions options{.num_ranks = c.num_ranks,
                             .timeout = std::chrono::seconds(60),
                             .blocks_per_rank = c.blocks_per_rank};
  for (const std::string& m : Ranks::run(options, [&](Device& device) {
         ep::Buffer<Device> buffer(device, config);
         std::mt19937 random(static_cast<unsigned>(device.rank()) * 7919u + 1u);
         const auto pause = [&](int) {
           if (skewed && random() % 2 == 0)
             std::this_thread::sleep_for(std::chrono::microseconds(random() % 2000));
         };
         std::string mismatch;
         for (int round = 0; round < num_rounds; ++round) {
           const std::size_t i = static_cast<std::size_t>(round % num_inputs);
           const std::string m =
               checked_round<Ranks>(device, buffer, inputs[i], expected[i], pause);
           // Keep going on a mismatch: the other ranks need this one's flags to finish.
           if (!m.empty() && mismatch.empty())
             mismatch = "round " + std::to_string(round) + ": " + m;
         }
         if (mismatch.empty() && buffer.sequence() != static_cast<std::uint64_t>(num_rounds))
           mismatch = "the buffer's sequence is " + std::to_string(buffer.sequence());
         return mismatch;
       }))
    CHECK_MESSAGE(m.empty(), m);
}

}  // namespace conformance
}  // namespace cmx::test

TEST_CASE_TEMPLATE_DEFINE("dispatch and combine match the reference for every rank count and top-k",
                          Ranks, cmx_ep_reference) {
  using namespace cmx::test::conformance;
  const int hidden_sizes[] = {16, 80, 256, 2048, 7168};
  int index = 0;
  for (const int num_ranks : Ranks::rank_counts({1, 2, 3, 4, 8, 16, 64})) {
    for (const int num_topk : {1, 2, 6, 8, 9}) {
      int hidden = hidden_sizes[index++ % 5];
      if (num_ranks >= 16) hidden = std::min(hidden, 256);  // keeps 64 ranks' buffers small
      const Case c{.num_ranks = num_ranks,
                   .experts_per_rank = std::max(1, (16 + num_ranks - 1) / num_ranks),
                   .hidden = hidden,
                   .num_topk = num_topk,
                   .capacity = num_ranks >= 16 ? 8 : 24,
                   .combine_source = kCombineSources[index % 2]};
      check_one_round<Ranks>(c, cmx::test::random_token_counts(num_ranks, c.capacity, 17u * index),
                             1234u + index);
    }
  }
}

TEST_CASE_TEMPLATE_DEFINE("every routing pattern, in int8 and bf16, with either combine source",
                          Ranks, cmx_ep_routing) {
  using namespace cmx::test::conformance;
  using cmx::test::Routing;
  for (const int num_ranks : Ranks::rank_counts({1, 4, 64}))
    for (const auto precision :
         {cmx::ep::DispatchPrecision::int8, cmx::ep::DispatchPrecision::bf16})
      for (const Routing routing :
           {Routing::uniform, Routing::one_expert, Routing::all_masked, Routing::same_rank})
        for (const cmx::ep::CombineSource source : kCombineSources) {
          const Case c{.num_ranks = num_ranks,
                       .experts_per_rank = num_ranks == 64 ? 2 : std::max(1, 32 / num_ranks),
                       .hidden = num_ranks == 64 ? 48 : 128,
                       .num_topk = 8,
                       .capacity = 16,
                       .precision = precision,
                       .routing = routing,
                       .combine_source = source};
          check_one_round<Ranks>(
              c, cmx::test::random_token_counts(num_ranks, c.capacity, 31u + num_ranks), 99);
        }
}

// Combine's reduction cuts these rows into 2 unequal, 2 equal and 4 chunks of columns.
TEST_CASE_TEMPLATE_DEFINE(
    "the size limits: top-16 with every choice taken, at hidden 7152, "
    "7168 and 16384",
    Ranks, cmx_ep_size_limits) {
  using namespace cmx::test::conformance;
  for (const int num_ranks : Ranks::rank_counts({2}))
    for (const int hidden : {7152, 7168, cmx::ep::kMaxHidden})
      for (const cmx::ep::CombineSource source : kCombineSources)
        // same_rank with 16 experts per rank fills all 16 choices of every token.
        check_one_round<Ranks>({.num_ranks = num_ranks,
                                .experts_per_rank = 16,
                                .hidden = hidden,
                                .num_topk = cmx::ep::kMaxTopk,
                                .capacity = 3,
                                .routing = cmx::test::Routing::same_rank,
                                .combine_source = source},
                               tokens_on(num_ranks, {3, 2}), 5);
}

TEST_CASE_TEMPLATE_DEFINE("ranks with no tokens, and every rank at full capacity", Ranks,
                          cmx_ep_empty_and_full) {
  using namespace cmx::test::conformance;
  for (const int num_ranks : Ranks::rank_counts({4}))
    for (const cmx::ep::CombineSource source : kCombineSources) {
      const Case c{.num_ranks = num_ranks,
                   .experts_per_rank = 4,
                   .hidden = 64,
                   .num_topk = 4,
                   .capacity = 12,
                   .combine_source = source};
      check_one_round<Ranks>(c, tokens_on(num_ranks, {5, 0, 7, 3}), 7);
      check_one_round<Ranks>(c, tokens_on(num_ranks, {0}), 8);
      check_one_round<Ranks>(c, tokens_on(num_ranks, {12}), 9);
      Case one_expert = c;
      one_expert.routing = cmx::test::Routing::one_expert;  // every token to expert 0
      check_one_round<Ranks>(one_expert, tokens_on(num_ranks, {12}), 10);
    }
}

TEST_CASE_TEMPLATE_DEFINE("block counts do not change a bit", Ranks, cmx_ep_block_counts) {
  using namespace cmx::test::conformance;
  for (const int num_ranks : Ranks::rank_counts({3}))
    for (const int blocks : {1, 2, 3, 7})
      for (const cmx::ep::CombineSource source : kCombineSources)
        check_one_round<Ranks>({.num_ranks = num_ranks,
                                .experts_per_rank = 4,
                                .hidden = 96,
                                .num_topk = 6,
                                .capacity = 20,
                                .blocks_per_rank = blocks,
                                .combine_source = source},
                               tokens_on(num_ranks, {20, 13, 1}), 21);
}

TEST_CASE_TEMPLATE_DEFINE("skewed rank speeds over many rounds", Ranks, cmx_ep_skewed) {
  using namespace cmx::test::conformance;
  for (const cmx::ep::CombineSource source : kCombineSources) {
    for (const int num_ranks : Ranks::rank_counts({8}))
      check_rounds<Ranks>({.num_ranks = num_ranks,
                           .experts_per_rank = std::max(1, 32 / num_ranks),
                           .hidden = 64,
                           .num_topk = 8,
                           .capacity = 16,
                           .blocks_per_rank = 2,
                           .combine_source = source},
                          12, 12, true, 500, 600);
    for (const int num_ranks : Ranks::rank_counts({24}))
      check_rounds<Ranks>({.num_ranks = num_ranks,
                           .experts_per_rank = 2,
                           .hidden = 32,
                           .num_topk = 6,
                           .capacity = 8,
                           .combine_source = source},
                          4, 4, true, 500, 600);
  }
}

TEST_CASE_TEMPLATE_DEFINE("back-to-back rounds reuse the same buffers", Ranks,
                          cmx_ep_back_to_back) {
  using namespace cmx::test::conformance;
  for (const int num_ranks : Ranks::rank_counts({4}))
    for (const cmx::ep::CombineSource source : kCombineSources)
      check_rounds<Ranks>({.num_ranks = num_ranks,
                           .experts_per_rank = 4,
                           .hidden = 32,
                           .num_topk = 4,
                           .capacity = 8,
                           .combine_source = source},
                          Ranks::kBackToBackRounds, 50, false, 900, 1900);
}

TEST_CASE_TEMPLATE_DEFINE(
    "the same input delivers the same bytes, padding included, after "
    "other rounds",
    Ranks, cmx_ep_same_bytes) {
  using namespace cmx::test::conformance;
  using cmx::bf16;
  using cmx::test::no_pause;
  using Device = typename Ranks::Device;
  namespace ep = cmx::ep;
  // hidden 80: int8 rows carry 16 bytes of padding, which must be defined too.
  for (const int num_ranks : Ranks::rank_counts({4}))
    for (const auto precision : {ep::DispatchPrecision::int8, ep::DispatchPrecision::bf16}) {
      const Case c{.num_ranks = num_ranks,
                   .experts_per_rank = 4,
                   .hidden = 80,
                   .num_topk = 6,
                   .capacity = 16,
                   .precision = precision,
                   .blocks_per_rank = 3};
      INFO(describe(Ranks::name(), c));
      const ep::Config config = config_of(c);
      const auto first =
          cmx::test::make_inputs(config, num_ranks, tokens_on(num_ranks, {16, 11, 4, 16}),
                                 cmx::test::Routing::uniform, 77);
      const auto other = cmx::test::make_inputs(config, num_ranks, tokens_on(num_ranks, {16}),
                                                cmx::test::Routing::same_rank, 78);
      const std::size_t data_bytes =
          80 * (precision == ep::DispatchPrecision::int8 ? 1 : sizeof(bf16));
      const cmx::test::RanksOptions options{.num_ranks = num_ranks,
                                            .blocks_per_rank = c.blocks_per_rank};
      for (const std::string& m : Ranks::run(options, [&](Device& device) -> std::string {
             ep::Buffer<Device> buffer(device, config);
             const ep::Layout& layout = buffer.layout();
             std::vector<std::vector<std::byte>> snapshots;
             int nonzero_padding = 0;
             // Rounds: the input, another input, the input again; snapshot rounds 0 and 2.
             for (const auto* inputs : {&first, &other, &first}) {
               const auto& input = (*inputs)[static_cast<std::size_t>(device.rank())];
               // Only the received rows: later rows of a source's range may hold older rounds'.
               std::vector<std::byte> bytes;
               Ranks::round(
                   device, buffer, input,
                   [&](const ep::Received& received) {
                     for (int e = 0; e < layout.num_local_experts; ++e)
                       for (int src = 0; src < layout.num_ranks; ++src)
                         for (int slot = 0; slot < received.count(e, src); ++slot) {
                           const std::byte* message = received.message(e, src, slot);
                           nonzero_padding +=
                               std::any_of(message + data_bytes, message + layout.row_bytes,
                                           [](std::byte b) { return b != std::byte{0}; });
                           bytes.insert(bytes.end(), message, message + layout.message_bytes);
                         }
                   },
                   no_pause);
               if (inputs == &first) snapshots.push_back(std::move(bytes));
             }
             const std::string rank = "rank " + std::to_string(device.rank()) + ": ";
             if (snapshots[0] != snapshots[1])
               return rank + "the receive area differs between the two rounds of one input";
             if (nonzero_padding != 0)
               return rank + std::to_string(nonzero_padding) + " rows with nonzero padding";
             return "";
           }))
        CHECK_MESSAGE(m.empty(), m);
    }
}

/// Instantiates every property of this file for one backend's Ranks type.
#define CMX_EP_CONFORMANCE(Ranks)                          \
  TEST_CASE_TEMPLATE_INVOKE(cmx_ep_reference, Ranks);      \
  TEST_CASE_TEMPLATE_INVOKE(cmx_ep_routing, Ranks);        \
  TEST_CASE_TEMPLATE_INVOKE(cmx_ep_size_limits, Ranks);    \
  TEST_CASE_TEMPLATE_INVOKE(cmx_ep_empty_and_full, Ranks); \
  TEST_CASE_TEMPLATE_INVOKE(cmx_ep_block_counts, Ranks);   \
  TEST_CASE_TEMPLATE_INVOKE(cmx_ep_skewed, Ranks);         \
  TEST_CASE_TEMPLATE_INVOKE(cmx_ep_back_to_back, Ranks);   \
  TEST_CASE_TEMPLATE_INVOKE(cmx_ep_same_bytes, Ranks)
