// SPDX-License-Identifier: Apache-2.0
// FusedDispatch + FusedCombine on the TBB backend against the scalar reference, bit for bit.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <random>
#include <thread>

#include "ep_harness.hpp"

namespace {

using cmx::bf16;
using cmx::tbb_backend::Device;
using cmx::tbb_backend::World;
using cmx::test::random_token_counts;
using cmx::test::Routing;
namespace ep = cmx::ep;

struct Case {
  int num_ranks;
  int num_experts;
  int hidden;
  int num_topk;
  int capacity;
  ep::DispatchPrecision precision = ep::DispatchPrecision::int8;
  Routing routing = Routing::uniform;
  int blocks_per_rank = 0;
  ep::CombineSource combine_source = ep::CombineSource::caller_memory;
};

constexpr ep::CombineSource kCombineSources[] = {ep::CombineSource::caller_memory,
                                                 ep::CombineSource::buffer};

std::string describe(const Case& c) {
  std::ostringstream text;
  text << "ranks " << c.num_ranks << " experts " << c.num_experts << " hidden " << c.hidden
       << " topk " << c.num_topk << " capacity " << c.capacity << " "
       << (c.precision == ep::DispatchPrecision::int8 ? "int8" : "bf16") << " "
       << to_string(c.routing) << " blocks " << c.blocks_per_rank << " combine from "
       << (c.combine_source == ep::CombineSource::buffer ? "buffer" : "caller memory");
  return text.str();
}

ep::Config config_of(const Case& c) {
  return {.num_experts = c.num_experts,
          .max_tokens_per_rank = c.capacity,
          .hidden = c.hidden,
          .num_topk = c.num_topk,
          .precision = c.precision,
          .combine_source = c.combine_source};
}

// One round on a fresh world, each rank checked against the reference.
void check_one_round(const Case& c, const std::vector<int>& tokens, std::uint64_t seed) {
  INFO(describe(c));
  // Hundreds of threads on 2 cores under a sanitizer take a while to start: be patient.
  World world({.num_ranks = c.num_ranks,
               .timeout = std::chrono::seconds(c.num_ranks >= 64 ? 120 : 10),
               .blocks_per_rank = c.blocks_per_rank});
  const ep::Config config = config_of(c);
  const auto inputs = cmx::test::make_inputs(config, c.num_ranks, tokens, c.routing, seed);
  const auto expected = cmx::reference::dispatch(config, c.num_ranks, inputs);
  std::vector<std::string> mismatch(static_cast<std::size_t>(c.num_ranks));
  world.run([&](Device device) {
    ep::Buffer<Device> buffer(device, config);
    mismatch[static_cast<std::size_t>(device.rank())] =
        cmx::test::checked_round(device, buffer, inputs, expected, cmx::test::no_pause);
  });
  for (const std::string& m : mismatch) CHECK_MESSAGE(m.empty(), m);
}

}  // namespace

TEST_CASE("dispatch and combine match the reference for every rank count and top-k" *
          doctest::test_suite("concurrent")) {
  const int hidden_sizes[] = {16, 80, 256, 2048, 7168};
  int index = 0;
  for (const int num_ranks : {1, 2, 3, 4, 8, 16, 64}) {
    for (const int num_topk : {1, 2, 6, 8, 9}) {
      const int experts_per_rank = std::max(1, (16 + num_ranks - 1) / num_ranks);
      int hidden = hidden_sizes[index++ % 5];
      if (num_ranks >= 16) hidden = std::min(hidden, 256);  // keeps 64 ranks' buffers small
      const Case c{.num_ranks = num_ranks,
                   .num_experts = num_ranks * experts_per_rank,
                   .hidden = hidden,
                   .num_topk = num_topk,
                   .capacity = num_ranks >= 16 ? 8 : 24,
                   .combine_source = kCombineSources[index % 2]};
      check_one_round(c, random_token_counts(num_ranks, c.capacity, 17u * index), 1234u + index);
    }
  }
}

TEST_CASE("every routing pattern, in int8 and bf16, on 1, 4 and 64 ranks" *
          doctest::test_suite("concurrent")) {
  for (const int num_ranks : {1, 4, 64}) {
    for (const auto precision : {ep::DispatchPrecision::int8, ep::DispatchPrecision::bf16}) {
      for (const Routing routing :
           {Routing::uniform, Routing::one_expert, Routing::all_masked, Routing::same_rank}) {
        for (const ep::CombineSource source : kCombineSources) {
          const int experts_per_rank = num_ranks == 64 ? 2 : 32 / num_ranks;
          const Case c{.num_ranks = num_ranks,
                       .num_experts = num_ranks * experts_per_rank,
                       .hidden = num_ranks == 64 ? 48 : 128,
                       .num_topk = 8,
                       .capacity = 16,
                       .precision = precision,
                       .routing = routing,
                       .combine_source = source};
          check_one_round(c, random_token_counts(num_ranks, c.capacity, 31u + num_ranks), 99);
        }
      }
    }
  }
}

// Combine's reduction cuts these rows into 2 unequal, 2 equal and 4 chunks of columns.
TEST_CASE("the size limits: top-16 with every choice taken, at hidden 7152, 7168 and 16384" *
          doctest::test_suite("concurrent")) {
  for (const int hidden : {7152, 7168, ep::kMaxHidden}) {
    const Case c{.num_ranks = 2,
                 .num_experts = 32,
                 .hidden = hidden,
                 .num_topk = ep::kMaxTopk,
                 .capacity = 3};
    // same_rank with 16 experts per rank fills all 16 choices of every token.
    for (const ep::CombineSource source : kCombineSources) {
      Case full = c;
      full.routing = Routing::same_rank;
      full.combine_source = source;
      check_one_round(full, {3, 2}, 5);
    }
  }
}

TEST_CASE("a rank with no tokens, and every rank at full capacity" *
          doctest::test_suite("concurrent")) {
  for (const ep::CombineSource source : kCombineSources) {
    const Case c{.num_ranks = 4,
                 .num_experts = 16,
                 .hidden = 64,
                 .num_topk = 4,
                 .capacity = 12,
                 .combine_source = source};
    check_one_round(c, {5, 0, 7, 3}, 7);
    check_one_round(c, {0, 0, 0, 0}, 8);
    check_one_round(c, {12, 12, 12, 12}, 9);
    Case one_expert = c;
    one_expert.routing = Routing::one_expert;  // every token of every rank to expert 0
    check_one_round(one_expert, {12, 12, 12, 12}, 10);
  }
}

TEST_CASE("block counts do not change a bit" * doctest::test_suite("concurrent")) {
  for (const int blocks : {1, 2, 3, 7})
    for (const ep::CombineSource source : kCombineSources) {
      const Case c{.num_ranks = 3,
                   .num_experts = 12,
                   .hidden = 96,
                   .num_topk = 6,
                   .capacity = 20,
                   .blocks_per_rank = blocks,
                   .combine_source = source};
      check_one_round(c, {20, 13, 1}, 21);
    }
}

namespace {

// Rounds with every rank sleeping a random 0-2 ms before some stages, so that arrival order
// changes every round.
void check_skewed_rounds(const Case& c, int num_rounds) {
  INFO(describe(c));
  const ep::Config config = config_of(c);
  std::vector<std::vector<cmx::reference::EpRankInput>> inputs;
  std::vector<cmx::reference::DispatchedRows> expected;
  for (int round = 0; round < num_rounds; ++round) {
    inputs.push_back(cmx::test::make_inputs(
        config, c.num_ranks, random_token_counts(c.num_ranks, c.capacity, 500u + round),
        Routing::uniform, 600u + round));
    expected.push_back(cmx::reference::dispatch(config, c.num_ranks, inputs.back()));
  }
  World world({.num_ranks = c.num_ranks,
               .timeout = std::chrono::seconds(60),
               .blocks_per_rank = c.blocks_per_rank});
  std::vector<std::string> mismatch(static_cast<std::size_t>(c.num_ranks));
  world.run([&](Device device) {
    ep::Buffer<Device> buffer(device, config);
    std::mt19937 random(static_cast<unsigned>(device.rank()) * 7919u + 1u);
    const auto pause = [&](int) {
      if (random() % 2 == 0)
        std::this_thread::sleep_for(std::chrono::microseconds(random() % 2000));
    };
    for (int round = 0; round < num_rounds; ++round) {
      std::string m =
          cmx::test::checked_round(device, buffer, inputs[round], expected[round], pause);
      if (!m.empty() && mismatch[static_cast<std::size_t>(device.rank())].empty())
        mismatch[static_cast<std::size_t>(device.rank())] =
            "round " + std::to_string(round) + ": " + m;
    }
  });
  for (const std::string& m : mismatch) CHECK_MESSAGE(m.empty(), m);
}

}  // namespace

TEST_CASE("skewed rank speeds over many rounds" * doctest::test_suite("concurrent")) {
  for (const ep::CombineSource source : kCombineSources) {
    check_skewed_rounds({.num_ranks = 8,
                         .num_experts = 32,
                         .hidden = 64,
                         .num_topk = 8,
                         .capacity = 16,
                         .blocks_per_rank = 2,
                         .combine_source = source},
                        12);
    check_skewed_rounds({.num_ranks = 24,
                         .num_experts = 48,
                         .hidden = 32,
                         .num_topk = 6,
                         .capacity = 8,
                         .combine_source = source},
                        4);
  }
}

TEST_CASE("1000 back-to-back rounds reuse the same buffers" * doctest::test_suite("concurrent")) {
  for (const ep::CombineSource source : kCombineSources) {
    const Case c{.num_ranks = 4,
                 .num_experts = 16,
                 .hidden = 32,
                 .num_topk = 4,
                 .capacity = 8,
                 .combine_source = source};
    INFO(describe(c));
    const ep::Config config = config_of(c);
    constexpr int kRounds = 1000;
    constexpr int kDistinctInputs = 50;  // inputs change every round; 50 sets keep memory small
    std::vector<std::vector<cmx::reference::EpRankInput>> inputs;
    std::vector<cmx::reference::DispatchedRows> expected;
    for (int i = 0; i < kDistinctInputs; ++i) {
      inputs.push_back(cmx::test::make_inputs(
          config, c.num_ranks, random_token_counts(c.num_ranks, c.capacity, 900u + i),
          i % 5 == 4 ? Routing::same_rank : Routing::uniform, 1900u + i));
      expected.push_back(cmx::reference::dispatch(config, c.num_ranks, inputs.back()));
    }
    World world({.num_ranks = c.num_ranks});
    std::vector<std::string> mismatch(static_cast<std::size_t>(c.num_ranks));
    world.run([&](Device device) {
      ep::Buffer<Device> buffer(device, config);
      for (int round = 0; round < kRounds; ++round) {
        const int i = round % kDistinctInputs;
        std::string m =
            cmx::test::checked_round(device, buffer, inputs[i], expected[i], cmx::test::no_pause);
        if (!m.empty()) {
          mismatch[static_cast<std::size_t>(device.rank())] =
              "round " + std::to_string(round) + ": " + m;
          // keep going: the other ranks need this one's flags to finish their rounds
        }
      }
      CHECK(buffer.sequence() == kRounds);
    });
    for (const std::string& m : mismatch) CHECK_MESSAGE(m.empty(), m);
  }
}

TEST_CASE("the same input delivers the same bytes, padding included, after other rounds" *
          doctest::test_suite("concurrent")) {
  // hidden 80: int8 rows carry 16 bytes of padding, which must be defined too.
  for (const auto precision : {ep::DispatchPrecision::int8, ep::DispatchPrecision::bf16}) {
    const Case c{.num_ranks = 4,
                 .num_experts = 16,
                 .hidden = 80,
                 .num_topk = 6,
                 .capacity = 16,
                 .precision = precision,
                 .blocks_per_rank = 3};
    const ep::Config config = config_of(c);
    const auto first =
        cmx::test::make_inputs(config, c.num_ranks, {16, 11, 4, 16}, Routing::uniform, 77);
    const auto other =
        cmx::test::make_inputs(config, c.num_ranks, {16, 16, 16, 16}, Routing::same_rank, 78);
    World world({.num_ranks = c.num_ranks, .blocks_per_rank = c.blocks_per_rank});
    std::vector<int> differing(static_cast<std::size_t>(c.num_ranks), -1);
    std::atomic<int> nonzero_padding{0};
    const std::size_t data_bytes =
        80 * (precision == ep::DispatchPrecision::int8 ? 1 : sizeof(bf16));
    world.run([&](Device device) {
      ep::Buffer<Device> buffer(device, config);
      const ep::Layout& layout = buffer.layout();
      std::vector<std::vector<std::byte>> snapshots;
      // Rounds: the input, another input, the input again; snapshot the receive area of 0 and 2.
      for (const auto* inputs : {&first, &other, &first}) {
        const auto& input = (*inputs)[static_cast<std::size_t>(device.rank())];
        const ep::Received received = ep::dispatch(
            device, buffer,
            {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
        for (int e = 0; e < layout.num_local_experts; ++e)
          for (int src = 0; src < layout.num_ranks; ++src)
            for (int slot = 0; slot < received.count(e, src); ++slot) {
              const std::byte* message = received.message(e, src, slot);
              nonzero_padding += std::any_of(message + data_bytes, message + layout.row_bytes,
                                             [](std::byte b) { return b != std::byte{0}; });
            }
        if (inputs == &first) {
          // Only the received rows: rows of a source's range past its received ones may hold
          // older rounds' rows.
          std::vector<std::byte> bytes;
          for (int e = 0; e < layout.num_local_experts; ++e)
            for (int src = 0; src < layout.num_ranks; ++src)
              for (int slot = 0; slot < received.count(e, src); ++slot) {
                const std::byte* message = received.message(e, src, slot);
                bytes.insert(bytes.end(), message, message + layout.message_bytes);
              }
          snapshots.push_back(std::move(bytes));
        }
        std::vector<bf16> expert_out(layout.num_messages() * 80);
        cmx::test::run_stand_in_experts(received, layout, device.rank(), expert_out);
        std::vector<bf16> y(input.x.size());
        ep::combine(device, buffer,
                    {.expert_out = expert_out, .topk_weights = input.topk_weights, .y = y});
      }
      const auto mismatch =
          std::mismatch(snapshots[0].begin(), snapshots[0].end(), snapshots[1].begin());
      differing[static_cast<std::size_t>(device.rank())] =
          snapshots[0].size() != snapshots[1].size() ? -2
          : mismatch.first == snapshots[0].end()
              ? -1
              : static_cast<int>(mismatch.first - snapshots[0].begin());
    });
    for (int r = 0; r < c.num_ranks; ++r)
      CHECK_MESSAGE(differing[r] == -1, "rank ", r, " byte ", differing[r]);
    CHECK(nonzero_padding.load() == 0);
  }
}

TEST_CASE("320 ranks, the CloudMatrix EP320 decode setting, with a small hidden size" *
          doctest::test_suite("many_ranks")) {
  for (const ep::CombineSource source : kCombineSources) {
    const Case c{.num_ranks = 320,
                 .num_experts = 320,
                 .hidden = 16,
                 .num_topk = 8,
                 .capacity = 4,
                 .combine_source = source};
    check_one_round(c, random_token_counts(c.num_ranks, c.capacity, 320), 320);
  }
}
