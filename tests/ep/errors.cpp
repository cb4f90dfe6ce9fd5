// SPDX-License-Identifier: Apache-2.0
// Bad inputs, bad order and missing ranks: clear errors on every rank, nothing written, no hang.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "ep_harness.hpp"

namespace {

using cmx::bf16;
using cmx::ErrorCode;
using cmx::tbb_backend::Device;
using cmx::tbb_backend::World;
using namespace std::chrono_literals;
namespace ep = cmx::ep;

constexpr int kRanks = 4;
const ep::Config kConfig{.num_experts = 16, .max_tokens_per_rank = 8, .hidden = 32, .num_topk = 4};

struct RankOutcome {
  bool failed = false;
  ErrorCode code{};
  std::string message;
};

std::vector<RankOutcome> outcomes(const std::vector<std::exception_ptr>& errors) {
  std::vector<RankOutcome> result(errors.size());
  for (std::size_t r = 0; r < errors.size(); ++r) {
    if (!errors[r]) continue;
    try {
      std::rethrow_exception(errors[r]);
    } catch (const cmx::Error& e) {
      result[r] = {true, e.code(), e.what()};
    } catch (const std::exception& e) {
      result[r] = {true, ErrorCode::state, std::string("not a cmx::Error: ") + e.what()};
    }
  }
  return result;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// True if no message from `src` reached any rank's receive area (every byte still zero).
bool nothing_received_from(std::vector<std::unique_ptr<ep::Buffer<Device>>>& buffers, int src) {
  return std::all_of(buffers.begin(), buffers.end(), [src](const auto& buffer) {
    return cmx::test::nothing_received_from(*buffer, src);
  });
}

// Runs dispatch on every rank of `world` with valid inputs, except that `bad_rank` first applies
// `corrupt` to its own. Returns each rank's outcome; `buffers` keeps the buffers for inspection
// (their memory lives as long as `world`).
std::vector<RankOutcome> dispatch_with_bad_rank(
    World& world, int bad_rank,
    const std::function<void(ep::DispatchArgs&, std::vector<std::int32_t>&)>& corrupt,
    std::vector<std::unique_ptr<ep::Buffer<Device>>>& buffers) {
  const auto inputs =
      cmx::test::make_inputs(kConfig, kRanks, {8, 5, 8, 2}, cmx::test::Routing::uniform, 5);
  buffers.resize(kRanks);
  return outcomes(world.run_collect([&](Device device) {
    const int rank = device.rank();
    buffers[rank] = std::make_unique<ep::Buffer<Device>>(device, kConfig);
    const auto& input = inputs[rank];
    std::vector<std::int32_t> topk_idx = input.topk_idx;
    ep::DispatchArgs args{.x = input.x, .topk_idx = topk_idx, .num_tokens = input.num_tokens};
    if (rank == bad_rank) corrupt(args, topk_idx);
    ep::dispatch(device, *buffers[rank], args);
  }));
}

}  // namespace

TEST_CASE("a bad dispatch input fails on its rank before writing, and fast on every peer" *
          doctest::test_suite("concurrent")) {
  struct BadInput {
    const char* name;
    std::function<void(ep::DispatchArgs&, std::vector<std::int32_t>&)> corrupt;
    ErrorCode code;
    const char* says;
  };
  static const std::vector<bf16> too_many(9 * 32);
  static const std::vector<std::int32_t> too_many_idx(9 * 4, 0);
  const BadInput cases[] = {
      {"expert id past the end", [](auto&, auto& idx) { idx[6] = 16; }, ErrorCode::invalid_argument,
       "topk_idx[1, 2] = 16 is outside [-1, 16)"},
      {"negative expert id below -1", [](auto&, auto& idx) { idx[0] = -2; },
       ErrorCode::invalid_argument, "is outside [-1, 16)"},
      {"an expert named twice by one token",
       [](auto&, auto& idx) {
         idx[4] = 3;
         idx[5] = -1;
         idx[7] = 3;
       },
       ErrorCode::invalid_argument, "token 1 names expert 3 twice (k = 0 and 3)"},
      {"more tokens than the capacity",
       [](auto& args, auto&) { args = {.x = too_many, .topk_idx = too_many_idx, .num_tokens = 9}; },
       ErrorCode::capacity, "dispatch of 9 tokens, capacity (max_tokens_per_rank) is 8"},
      {"a negative token count", [](auto& args, auto&) { args.num_tokens = -1; },
       ErrorCode::invalid_argument, "num_tokens is -1"},
      {"x of the wrong size", [](auto& args, auto&) { args.x = args.x.first(args.x.size() - 1); },
       ErrorCode::invalid_argument, "x has"},
      {"topk_idx of the wrong size",
       [](auto& args, auto&) { args.topk_idx = args.topk_idx.first(args.topk_idx.size() - 1); },
       ErrorCode::invalid_argument, "topk_idx has"},
  };
  for (const BadInput& bad : cases) {
    INFO(bad.name);
    World world({.num_ranks = kRanks, .timeout = 20s});  // failures must be fast, not timeouts
    std::vector<std::unique_ptr<ep::Buffer<Device>>> buffers;
    const auto result = dispatch_with_bad_rank(world, 1, bad.corrupt, buffers);
    CHECK(result[1].failed);
    CHECK(result[1].code == bad.code);
    CHECK_MESSAGE(contains(result[1].message, bad.says), result[1].message);
    for (int rank : {0, 2, 3}) {
      CHECK(result[rank].code == ErrorCode::peer_failed);
      CHECK_MESSAGE(contains(result[rank].message, "rank 1 failed its dispatch"),
                    result[rank].message);
    }
    CHECK(nothing_received_from(buffers, 1));
    for (auto& buffer : buffers) CHECK(buffer->phase() == ep::Phase::failed);
  }
}

TEST_CASE("a bad combine input fails on its rank before writing, and fast on every peer" *
          doctest::test_suite("concurrent")) {
  const auto inputs =
      cmx::test::make_inputs(kConfig, kRanks, {8, 5, 8, 2}, cmx::test::Routing::uniform, 6);
  const ep::Layout layout(kConfig, kRanks);
  for (const char* which : {"expert_out", "topk_weights", "y"}) {
    INFO(which);
    World world({.num_ranks = kRanks, .timeout = 20s});
    const auto result = outcomes(world.run_collect([&](Device device) {
      const auto& input = inputs[device.rank()];
      ep::Buffer<Device> buffer(device, kConfig);
      ep::dispatch(device, buffer,
                   {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
      std::vector<bf16> expert_out(layout.num_messages() * 32);
      std::vector<bf16> y(input.x.size());
      ep::CombineArgs args{.expert_out = expert_out, .topk_weights = input.topk_weights, .y = y};
      if (device.rank() == 2) {
        if (std::string(which) == "expert_out") args.expert_out = args.expert_out.first(32);
        if (std::string(which) == "topk_weights") args.topk_weights = args.topk_weights.first(1);
        if (std::string(which) == "y") args.y = args.y.first(0);
      }
      ep::combine(device, buffer, args);
    }));
    CHECK(result[2].code == ErrorCode::invalid_argument);
    CHECK_MESSAGE(contains(result[2].message, std::string(which) + " has"), result[2].message);
    for (int rank : {0, 1, 3}) {
      CHECK(result[rank].code == ErrorCode::peer_failed);
      CHECK_MESSAGE(contains(result[rank].message, "rank 2 failed its combine"),
                    result[rank].message);
    }
  }
}

TEST_CASE(
    "zero-copy combine reads only the buffer's expert_out, and a caller-memory buffer has none" *
    doctest::test_suite("concurrent")) {
  ep::Config zero_copy = kConfig;
  zero_copy.combine_source = ep::CombineSource::buffer;
  const auto inputs =
      cmx::test::make_inputs(zero_copy, kRanks, {8, 5, 8, 2}, cmx::test::Routing::uniform, 7);
  World world({.num_ranks = kRanks, .timeout = 20s});
  const auto result = outcomes(world.run_collect([&](Device device) {
    const auto& input = inputs[device.rank()];
    ep::Buffer<Device> buffer(device, zero_copy);
    ep::dispatch(device, buffer,
                 {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
    // Rank 2 passes a tensor of its own, of the right size: combine would not read it.
    std::vector<bf16> elsewhere(buffer.expert_out().size());
    std::vector<bf16> y(input.x.size());
    ep::combine(device, buffer,
                {.expert_out = device.rank() == 2 ? std::span<const bf16>(elsewhere)
                                                  : std::span<const bf16>(buffer.expert_out()),
                 .topk_weights = input.topk_weights,
                 .y = y});
  }));
  CHECK(result[2].code == ErrorCode::invalid_argument);
  CHECK_MESSAGE(contains(result[2].message, "must be empty or that span"), result[2].message);
  for (int rank : {0, 1, 3}) {
    CHECK(result[rank].code == ErrorCode::peer_failed);
    CHECK_MESSAGE(contains(result[rank].message, "rank 2 failed its combine"),
                  result[rank].message);
  }

  World single({.num_ranks = 1});
  single.run([&](Device device) {
    ep::Buffer<Device> buffer(device, kConfig);  // combine_source caller_memory
    CHECK_THROWS_WITH_AS(buffer.expert_out(), doctest::Contains("caller_memory"), cmx::Error);
  });
}

TEST_CASE("calls out of order are state errors" * doctest::test_suite("concurrent")) {
  World world({.num_ranks = 1});
  world.run([&](Device device) {
    const std::vector<bf16> x(32);
    const std::vector<std::int32_t> topk_idx = {0, 1, 2, 3};
    std::vector<bf16> y(32);
    const std::vector<float> weights(4, 0.25f);
    std::vector<bf16> expert_out(ep::Layout(kConfig, 1).num_messages() * 32);
    {
      ep::Buffer<Device> buffer(device, kConfig);
      CHECK_THROWS_WITH_AS(
          ep::combine(device, buffer, {.expert_out = expert_out, .topk_weights = weights, .y = y}),
          doctest::Contains("combine called without a dispatch before it"), cmx::Error);
      // The error left the buffer failed: it refuses further calls.
      CHECK_THROWS_WITH_AS(
          ep::dispatch(device, buffer, {.x = x, .topk_idx = topk_idx, .num_tokens = 1}),
          doctest::Contains("left unusable"), cmx::Error);
    }
    ep::Buffer<Device> buffer(device, kConfig);
    ep::dispatch(device, buffer, {.x = x, .topk_idx = topk_idx, .num_tokens = 1});
    CHECK_THROWS_WITH_AS(
        ep::dispatch(device, buffer, {.x = x, .topk_idx = topk_idx, .num_tokens = 1}),
        doctest::Contains("dispatch called twice without a combine between"), cmx::Error);
  });
}

TEST_CASE("configs that differ between ranks are reported on every rank" *
          doctest::test_suite("concurrent")) {
  World world({.num_ranks = kRanks, .timeout = 20s});
  const auto result = outcomes(world.run_collect([&](Device device) {
    ep::Config config = kConfig;
    if (device.rank() == 3) config.hidden = 48;
    ep::Buffer<Device> buffer(device, config);
  }));
  for (const RankOutcome& outcome : result) {
    CHECK(outcome.code == ErrorCode::config_mismatch);
    CHECK_MESSAGE(contains(outcome.message, "ep::Config differs between ranks"), outcome.message);
    CHECK_MESSAGE(contains(outcome.message, "hidden 48"), outcome.message);
  }
}

TEST_CASE("an invalid config is reported on every rank" * doctest::test_suite("concurrent")) {
  const std::pair<ep::Config, const char*> cases[] = {
      {{.num_experts = 18, .max_tokens_per_rank = 8, .hidden = 32, .num_topk = 4},
       "num_experts (18)"},
      {{.num_experts = 16, .max_tokens_per_rank = 0, .hidden = 32, .num_topk = 4},
       "max_tokens_per_rank"},
      {{.num_experts = 16, .max_tokens_per_rank = 8, .hidden = 24, .num_topk = 4},
       "hidden must be a multiple of 16"},
      {{.num_experts = 16, .max_tokens_per_rank = 8, .hidden = 16400, .num_topk = 4},
       "hidden must be"},
      {{.num_experts = 16, .max_tokens_per_rank = 8, .hidden = 32, .num_topk = 17}, "num_topk"},
      {{.num_experts = 16, .max_tokens_per_rank = 8, .hidden = 32, .num_topk = 0}, "num_topk"},
  };
  for (const auto& [bad_config, says] : cases) {
    const ep::Config config = bad_config;  // a plain variable: lambdas capture it (C++20 allows
                                           // capturing bindings, clang 14 does not yet)
    World world({.num_ranks = kRanks, .timeout = 20s});
    const auto result = outcomes(
        world.run_collect([&](Device device) { ep::Buffer<Device> buffer(device, config); }));
    for (const RankOutcome& outcome : result) {
      CHECK(outcome.code == ErrorCode::invalid_argument);
      CHECK_MESSAGE(contains(outcome.message, says), outcome.message);
    }
  }
}

TEST_CASE("a rank that never calls dispatch: the others time out naming it" *
          doctest::test_suite("concurrent")) {
  const auto inputs =
      cmx::test::make_inputs(kConfig, kRanks, {8, 8, 8, 8}, cmx::test::Routing::uniform, 8);
  World world({.num_ranks = kRanks, .timeout = 300ms});
  const auto result = outcomes(world.run_collect([&](Device device) {
    ep::Buffer<Device> buffer(device, kConfig);
    if (device.rank() == 3) return;  // never dispatches
    const auto& input = inputs[device.rank()];
    ep::dispatch(device, buffer,
                 {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
  }));
  CHECK_FALSE(result[3].failed);
  for (int rank : {0, 1, 2}) {
    CHECK(result[rank].code == ErrorCode::timeout);
    CHECK_MESSAGE(contains(result[rank].message, "dispatch waited for rank 3"),
                  result[rank].message);
  }
}

TEST_CASE("a peer whose counts overflow the rows it owns is a state error" *
          doctest::test_suite("concurrent")) {
  // 4 experts per rank, top-2: a source owns 8 * 2 = 16 rows on each rank. Rank 1 does not
  // dispatch; it raises its flags on rank 0 as if it had sent each expert `per_expert` rows
  // (each count within capacity), as a broken peer could: 4 each fill its 16 rows exactly, 8
  // each would need 32.
  const ep::Config config{.num_experts = 8, .max_tokens_per_rank = 8, .hidden = 32, .num_topk = 2};
  const auto inputs = cmx::test::make_inputs(config, 2, {8, 8}, cmx::test::Routing::uniform, 9);
  for (const int per_expert : {4, 8}) {
    CAPTURE(per_expert);
    World world({.num_ranks = 2, .timeout = 2s});
    const auto result = outcomes(world.run_collect([&](Device device) {
      ep::Buffer<Device> buffer(device, config);
      if (device.rank() == 1) {
        for (int e = 0; e < buffer.layout().num_local_experts; ++e)
          device.signal(buffer.symmetric(), 0, buffer.layout().dispatch_flag(e, 1), 1, per_expert);
        return;
      }
      const auto& input = inputs[0];
      const ep::Received received =
          ep::dispatch(device, buffer,
                       {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
      CHECK(received.num_tokens(3) == per_expert + received.count(3, 0));
    }));
    if (per_expert == 4) {
      CHECK_FALSE(result[0].failed);
    } else {
      CHECK(result[0].code == ErrorCode::state);
      CHECK_MESSAGE(contains(result[0].message, "rank 1 sent 32 rows, more than the 16 it owns"),
                    result[0].message);
    }
  }
}

TEST_CASE("a rank that never calls combine: the others time out naming it" *
          doctest::test_suite("concurrent")) {
  const auto inputs =
      cmx::test::make_inputs(kConfig, kRanks, {8, 8, 8, 8}, cmx::test::Routing::uniform, 9);
  const ep::Layout layout(kConfig, kRanks);
  World world({.num_ranks = kRanks, .timeout = 300ms});
  const auto result = outcomes(world.run_collect([&](Device device) {
    ep::Buffer<Device> buffer(device, kConfig);
    const auto& input = inputs[device.rank()];
    ep::dispatch(device, buffer,
                 {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
    if (device.rank() == 0) return;
    std::vector<bf16> expert_out(layout.num_messages() * 32), y(input.x.size());
    ep::combine(device, buffer,
                {.expert_out = expert_out, .topk_weights = input.topk_weights, .y = y});
  }));
  for (int rank : {1, 2, 3}) {
    CHECK(result[rank].code == ErrorCode::timeout);
    CHECK_MESSAGE(contains(result[rank].message, "combine waited for rank 0"),
                  result[rank].message);
  }
}

namespace {

// The TBB device, except that once `*armed` is set, every put of `failing_rank` throws: a
// failure inside a kernel after its input check (as a broken link or a full buffer would be).
class FaultyDevice : public Device {
 public:
  FaultyDevice(Device device, int failing_rank, const std::atomic<bool>* armed)
      : Device(device), failing_(device.rank() == failing_rank), armed_(armed) {}

  void put(const Symmetric& sym, int rank, std::size_t offset, std::span<const std::byte> bytes) {
    if (failing_ && armed_->load()) cmx::detail::fail(ErrorCode::capacity, "injected put failure");
    Device::put(sym, rank, offset, bytes);
  }

 private:
  bool failing_;
  const std::atomic<bool>* armed_;
};
static_assert(cmx::Device<FaultyDevice>);

}  // namespace

TEST_CASE("a failure inside a kernel, after its checks, still fails every peer fast" *
          doctest::test_suite("concurrent")) {
  const auto inputs =
      cmx::test::make_inputs(kConfig, kRanks, {8, 8, 8, 8}, cmx::test::Routing::uniform, 10);
  const ep::Layout layout(kConfig, kRanks);
  for (const char* phase : {"dispatch", "combine"}) {
    INFO(phase);
    std::atomic<bool> armed{false};
    World world({.num_ranks = kRanks, .timeout = 20s});
    const auto result = outcomes(world.run_collect([&](Device plain) {
      FaultyDevice device(plain, 2, &armed);
      ep::Buffer<FaultyDevice> buffer(device, kConfig);
      device.barrier();  // every buffer is made before the fault is armed
      if (device.rank() == 2 && std::string(phase) == "dispatch") armed = true;
      const auto& input = inputs[device.rank()];
      ep::dispatch(device, buffer,
                   {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
      std::vector<bf16> expert_out(layout.num_messages() * 32), y(input.x.size());
      if (device.rank() == 2) armed = true;
      ep::combine(device, buffer,
                  {.expert_out = expert_out, .topk_weights = input.topk_weights, .y = y});
    }));
    CHECK_MESSAGE(contains(result[2].message, "injected put failure"), result[2].message);
    for (int rank : {0, 1, 3}) {
      CHECK(result[rank].code == ErrorCode::peer_failed);
      CHECK_MESSAGE(contains(result[rank].message, std::string("rank 2 failed its ") + phase),
                    result[rank].message);
    }
  }
}
