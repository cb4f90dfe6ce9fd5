// SPDX-License-Identifier: Apache-2.0
// The same inputs give bitwise the same received rows and the same y on the MPI backend and on
// the TBB backend: rank 0 gathers what every process received and computed, runs the same round
// on a TBB World of as many ranks, and compares, byte for byte. The experts are stand-ins (every
// dispatch and combine configuration), or the INT8 expert FFN (a whole MoE layer).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "cmx/gemm/gemm.hpp"
#include "ep_harness.hpp"
#include "mpi_harness.hpp"

namespace {

using cmx::bf16;
namespace ep = cmx::ep;

/// What one rank received and computed in one round.
struct RankRecord {
  std::vector<std::int32_t> counts;  // [num_local_experts][num_ranks] rows per segment
  std::vector<std::byte> rows;       // every received message, in segment order, then by slot
  std::vector<bf16> y;               // [num_tokens][hidden]
};

/// The INT8 expert FFN weights of `rank`'s local experts, packed for `device`: random codes and
/// scales drawn from the global expert's index, so the same on every backend.
template <class Dev>
std::vector<cmx::gemm::ExpertWeights> make_ffn_experts(Dev& device, const ep::Layout& layout,
                                                       int rank, int intermediate) {
  const auto random_weights = [&](std::mt19937& random, int n, int k) {
    std::uniform_int_distribution<int> code(-128, 127);
    std::uniform_real_distribution<float> scale(1e-3f, 4e-3f);
    std::vector<std::int8_t> codes(static_cast<std::size_t>(n) * static_cast<std::size_t>(k));
    std::vector<float> scales(static_cast<std::size_t>(n));
    for (std::int8_t& value : codes) value = static_cast<std::int8_t>(code(random));
    for (float& value : scales) value = scale(random);
    return cmx::gemm::pack_weights(device, {.codes = codes, .scales = scales, .n = n, .k = k});
  };
  std::vector<cmx::gemm::ExpertWeights> experts;
  for (int e = 0; e < layout.num_local_experts; ++e) {
    std::mt19937 random(static_cast<unsigned>(1000 + layout.global_expert(rank, e)));
    cmx::gemm::PackedWeights gate = random_weights(random, intermediate, layout.hidden);
    cmx::gemm::PackedWeights up = random_weights(random, intermediate, layout.hidden);
    cmx::gemm::PackedWeights down = random_weights(random, layout.hidden, intermediate);
    experts.push_back({std::move(gate), std::move(up), std::move(down)});
  }
  return experts;
}

/// One dispatch, the experts and one combine on `device`, recorded. The experts are the
/// stand-ins, or, if `ffn_intermediate` > 0 (an int8 dispatch into a zero-copy combine), the
/// INT8 expert FFN of make_ffn_experts writing straight into the buffer.
template <class Dev>
RankRecord run_and_record(Dev& device, const ep::Config& config,
                          const std::vector<cmx::reference::EpRankInput>& inputs,
                          int ffn_intermediate = 0) {
  const auto& input = inputs[static_cast<std::size_t>(device.rank())];
  ep::Buffer<Dev> buffer(device, config);
  const ep::Layout& layout = buffer.layout();
  const ep::Received received = ep::dispatch(
      device, buffer, {.x = input.x, .topk_idx = input.topk_idx, .num_tokens = input.num_tokens});
  RankRecord record;
  for (int e = 0; e < layout.num_local_experts; ++e)
    for (int src = 0; src < layout.num_ranks; ++src) {
      record.counts.push_back(received.count(e, src));
      for (int slot = 0; slot < received.count(e, src); ++slot) {
        const std::byte* message = received.message(e, src, slot);
        record.rows.insert(record.rows.end(), message, message + layout.message_bytes);
      }
    }
  const bool in_buffer = config.combine_source == ep::CombineSource::buffer;
  std::vector<bf16> caller_expert_out(in_buffer ? 0 : layout.num_messages() * layout.hidden);
  if (ffn_intermediate > 0) {
    REQUIRE(in_buffer);
    const auto experts = make_ffn_experts(device, layout, device.rank(), ffn_intermediate);
    cmx::gemm::ExpertFfnWorkspace workspace(layout.num_messages(), ffn_intermediate);
    cmx::gemm::expert_ffn(
        device,
        {.x = received, .experts = experts, .out = buffer.expert_out(), .workspace = workspace});
  } else {
    cmx::test::run_stand_in_experts(
        received, layout, device.rank(),
        in_buffer ? buffer.expert_out() : std::span<bf16>(caller_expert_out));
  }
  record.y.resize(input.x.size());
  ep::combine(device, buffer,
              {.expert_out = caller_expert_out, .topk_weights = input.topk_weights, .y = record.y});
  return record;
}

/// Every rank's `mine` at rank 0 ([world_size] there, empty elsewhere).
template <class T>
std::vector<std::vector<T>> gather_to_rank_0(const std::vector<T>& mine) {
  const int num_ranks = cmx::test::world_size();
  const int bytes = static_cast<int>(mine.size() * sizeof(T));
  std::vector<int> sizes(static_cast<std::size_t>(num_ranks));
  MPI_Gather(&bytes, 1, MPI_INT, sizes.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::vector<int> offsets(sizes.size());
  int total = 0;
  for (std::size_t r = 0; r < sizes.size(); ++r) {
    offsets[r] = total;
    total += sizes[r];
  }
  std::vector<std::byte> all(static_cast<std::size_t>(total));
  MPI_Gatherv(mine.data(), bytes, MPI_BYTE, all.data(), sizes.data(), offsets.data(), MPI_BYTE, 0,
              MPI_COMM_WORLD);
  std::vector<std::vector<T>> result;
  if (cmx::test::world_rank() != 0) return result;
  for (std::size_t r = 0; r < sizes.size(); ++r) {
    result.emplace_back(static_cast<std::size_t>(sizes[r]) / sizeof(T));
    std::memcpy(result.back().data(), all.data() + offsets[r], static_cast<std::size_t>(sizes[r]));
  }
  return result;
}

/// "" if both ranks' records are the same bit for bit; else the first difference.
std::string compare(const RankRecord& mpi, const RankRecord& tbb, int rank,
                    const ep::Layout& layout) {
  std::ostringstream error;
  error << "rank " << rank << ": ";
  if (mpi.counts != tbb.counts) {
    std::size_t s = 0;
    while (s < mpi.counts.size() && mpi.counts[s] == tbb.counts[s]) ++s;
    error << "segment " << s << " has " << mpi.counts[s] << " rows on MPI, " << tbb.counts[s]
          << " on TBB";
    return error.str();
  }
  if (mpi.rows != tbb.rows) {
    std::size_t i = 0;
    while (mpi.rows[i] == tbb.rows[i]) ++i;
    error << "received row " << i / layout.message_bytes << " differs at byte "
          << i % layout.message_bytes;
    return error.str();
  }
  for (std::size_t i = 0; i < mpi.y.size(); ++i)
    if (mpi.y[i] != tbb.y[i]) {
      error << "y[" << i / static_cast<std::size_t>(layout.hidden) << ", "
            << i % static_cast<std::size_t>(layout.hidden) << "] is 0x" << std::hex << mpi.y[i].bits
            << " on MPI, 0x" << tbb.y[i].bits << " on TBB";
      return error.str();
    }
  return "";
}

}  // namespace

/// Runs one round on the MPI backend and the same round on a TBB World at rank 0 (with other
/// block counts than the MPI run's), and checks that every rank's record is the same.
void check_same_round_on_both_backends(const ep::Config& config, int ffn_intermediate = 0) {
  const int num_ranks = cmx::test::world_size();
  INFO("config ", config, " over ", cmx::test::intra_node_of_run());
  std::vector<int> tokens(static_cast<std::size_t>(num_ranks));
  for (int r = 0; r < num_ranks; ++r)
    tokens[static_cast<std::size_t>(r)] = std::max(0, config.max_tokens_per_rank - 3 * r);
  const auto inputs =
      cmx::test::make_inputs(config, num_ranks, tokens, cmx::test::Routing::uniform, 2026);

  RankRecord mine;
  {
    cmx::mpi_backend::World world(MPI_COMM_WORLD, cmx::test::world_config());
    cmx::mpi_backend::Device device = world.device();
    mine = run_and_record(device, config, inputs, ffn_intermediate);
  }
  const auto counts = gather_to_rank_0(mine.counts);
  const auto rows = gather_to_rank_0(mine.rows);
  const auto ys = gather_to_rank_0(mine.y);
  if (cmx::test::world_rank() != 0) return;

  std::vector<RankRecord> tbb(static_cast<std::size_t>(num_ranks));
  cmx::tbb_backend::World world({.num_ranks = num_ranks, .blocks_per_rank = 3});
  world.run([&](cmx::tbb_backend::Device device) {
    tbb[static_cast<std::size_t>(device.rank())] =
        run_and_record(device, config, inputs, ffn_intermediate);
  });
  const ep::Layout layout(config, num_ranks);
  for (int r = 0; r < num_ranks; ++r) {
    const auto index = static_cast<std::size_t>(r);
    const std::string mismatch =
        compare({counts[index], rows[index], ys[index]}, tbb[index], r, layout);
    CHECK_MESSAGE(mismatch.empty(), mismatch);
  }
  // Equal is not enough: both backends must have computed something. Every y is finite, and
  // a rank with tokens has some y that is not zero.
  for (int r = 0; r < num_ranks; ++r) {
    const std::vector<bf16>& y = ys[static_cast<std::size_t>(r)];
    CHECK(std::all_of(y.begin(), y.end(), [](bf16 v) { return std::isfinite(v.to_float()); }));
    if (tokens[static_cast<std::size_t>(r)] > 0)
      CHECK(std::any_of(y.begin(), y.end(), [](bf16 v) { return v.to_float() != 0.0f; }));
  }
}

TEST_CASE("the MPI and TBB backends give bitwise the same received rows and y") {
  for (const auto precision : {ep::DispatchPrecision::int8, ep::DispatchPrecision::bf16})
    for (const auto source : {ep::CombineSource::caller_memory, ep::CombineSource::buffer})
      check_same_round_on_both_backends({.num_experts = 8 * cmx::test::world_size(),
                                         .max_tokens_per_rank = 32,
                                         .hidden = 7168,
                                         .num_topk = 8,
                                         .precision = precision,
                                         .combine_source = source});
}

TEST_CASE("a whole MoE layer (dispatch, INT8 expert FFN, zero-copy combine) is the same on both") {
  check_same_round_on_both_backends({.num_experts = 4 * cmx::test::world_size(),
                                     .max_tokens_per_rank = 24,
                                     .hidden = 1024,
                                     .num_topk = 4,
                                     .precision = ep::DispatchPrecision::int8,
                                     .combine_source = ep::CombineSource::buffer},
                                    /*ffn_intermediate=*/256);
}
