// SPDX-License-Identifier: Apache-2.0
// The EP conformance suite (tests/conformance/ep.hpp) on the TBB backend, where ranks are
// threads of one process and a property may run at any rank count; and what only threads
// afford: 320 ranks.
#include <doctest/doctest.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "../../conformance/ep.hpp"

namespace cmx::test {

/// The TBB backend as the conformance suite makes its ranks.
struct TbbRanks : HostMemoryRound {
  using Device = tbb_backend::Device;
  static constexpr int kBackToBackRounds = 1000;

  static std::string name() { return "tbb"; }
  static std::vector<int> rank_counts(std::initializer_list<int> wanted) { return wanted; }

  template <class Body>
  static std::vector<std::string> run(const RanksOptions& options, Body&& body) {
    tbb_backend::World world({.num_ranks = options.num_ranks,
                              .timeout = options.timeout,
                              .blocks_per_rank = options.blocks_per_rank});
    std::vector<std::string> messages(static_cast<std::size_t>(options.num_ranks));
    world.run(
        [&](Device device) { messages[static_cast<std::size_t>(device.rank())] = body(device); });
    return messages;
  }
};

}  // namespace cmx::test

TYPE_TO_STRING(cmx::test::TbbRanks);
CMX_EP_CONFORMANCE(cmx::test::TbbRanks);

TEST_CASE("320 ranks, the CloudMatrix EP320 decode setting, with a small hidden size" *
          doctest::test_suite("many_ranks")) {
  using namespace cmx::test::conformance;
  for (const cmx::ep::CombineSource source : kCombineSources) {
    const Case c{.num_ranks = 320,
                 .experts_per_rank = 1,
                 .hidden = 16,
                 .num_topk = 8,
                 .capacity = 4,
                 .combine_source = source};
    check_one_round<cmx::test::TbbRanks>(
        c, cmx::test::random_token_counts(c.num_ranks, c.capacity, 320), 320);
  }
}
