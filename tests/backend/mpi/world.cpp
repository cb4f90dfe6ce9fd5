// SPDX-License-Identifier: Apache-2.0
// The MPI backend's machine, one rank per process: symmetric memory, flags, barrier, launch,
// the World's setup and its errors.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mpi_harness.hpp"

using cmx::ErrorCode;
using cmx::mpi_backend::Device;
using cmx::mpi_backend::IntraNode;
using cmx::mpi_backend::World;
using cmx::test::contains;
using cmx::test::outcome_of;
using namespace std::chrono_literals;

TEST_CASE("a barrier holds every rank until all arrive, and publishes their puts") {
  World world(MPI_COMM_WORLD, cmx::test::world_config());
  Device device = world.device();
  const int num_ranks = device.world_size();
  // Part layout: [num_ranks] slots of 32 B, slot s holding the round rank s reached.
  const auto sym = device.allocate_symmetric(static_cast<std::size_t>(num_ranks) * 32);
  std::string error;
  for (std::int64_t round = 1; round <= 100 && error.empty(); ++round) {
    std::array<std::int64_t, 4> slot{round, round, round, round};
    for (int dst = 0; dst < num_ranks; ++dst)
      device.put(sym, dst, static_cast<std::size_t>(device.rank()) * 32,
                 std::as_bytes(std::span(slot)));
    device.barrier();
    for (int src = 0; src < num_ranks && error.empty(); ++src) {
      std::int64_t seen = 0;
      std::memcpy(&seen, device.local(sym) + static_cast<std::size_t>(src) * 32, sizeof(seen));
      if (seen != round)
        error = "round " + std::to_string(round) + ": rank " + std::to_string(src) + " is at " +
                std::to_string(seen);
    }
    device.barrier();  // nobody starts the next round before all have checked
  }
  CHECK_MESSAGE(error.empty(), error);
}

TEST_CASE("symmetric memory: puts land in the peer's part, published by a signal") {
  constexpr std::size_t kRow = 96;  // bytes per message
  World world(MPI_COMM_WORLD, cmx::test::world_config());
  Device device = world.device();
  const int num_ranks = device.world_size();
  // Part layout: [num_ranks] flags of 32 B, then [num_ranks] rows of kRow bytes, one per source.
  const auto sym =
      device.allocate_symmetric(static_cast<std::size_t>(num_ranks) * (cmx::kFlagBytes + kRow));
  const std::size_t rows_offset = static_cast<std::size_t>(num_ranks) * cmx::kFlagBytes;
  std::string error;
  for (std::uint64_t sequence = 1; sequence <= 50; ++sequence) {
    std::vector<std::byte> row(kRow);
    for (int dst = 0; dst < num_ranks; ++dst) {
      std::memset(row.data(), static_cast<int>(device.rank() * 16 + dst + sequence) & 0xff, kRow);
      device.put(sym, dst, rows_offset + static_cast<std::size_t>(device.rank()) * kRow, row);
      device.signal(sym, dst, static_cast<std::size_t>(device.rank()) * cmx::kFlagBytes, sequence,
                    dst * 1000 + device.rank());
    }
    for (int src = 0; src < num_ranks; ++src) {
      const std::int64_t payload = device.wait(sym, static_cast<std::size_t>(src) * cmx::kFlagBytes,
                                               sequence, {"test", src, -1});
      const auto expected = static_cast<std::byte>((src * 16 + device.rank() + sequence) & 0xff);
      const std::byte* got = device.local(sym) + rows_offset + static_cast<std::size_t>(src) * kRow;
      if (payload != device.rank() * 1000 + src || got[0] != expected || got[kRow - 1] != expected)
        error = "sequence " + std::to_string(sequence) + " from " + std::to_string(src);
    }
    device.barrier();  // nobody overwrites a row before every rank has read it
  }
  CHECK_MESSAGE(error.empty(), error);
}

TEST_CASE("a peer read sees what the peer wrote to its own part before its signal") {
  constexpr std::size_t kElements = 4096;  // bf16 per rank: 8 KiB
  World world(MPI_COMM_WORLD, cmx::test::world_config(60s, 2));
  Device device = world.device();
  const int num_ranks = device.world_size();
  // Part layout: [num_ranks] flags, then this rank's kElements values.
  const std::size_t values_offset = static_cast<std::size_t>(num_ranks) * cmx::kFlagBytes;
  const auto sym = device.allocate_symmetric(values_offset + kElements * sizeof(cmx::bf16));
  const auto value = [](int rank, std::size_t i, std::uint64_t round) {
    return cmx::bf16{static_cast<std::uint16_t>((rank * 7919 + i * 31 + round * 3) & 0x7f7f)};
  };
  std::atomic<int> wrong{0};
  for (std::uint64_t round = 1; round <= 10; ++round) {
    auto* mine = reinterpret_cast<cmx::bf16*>(device.local(sym) + values_offset);
    for (std::size_t i = 0; i < kElements; ++i) mine[i] = value(device.rank(), i, round);
    for (int dst = 0; dst < num_ranks; ++dst)
      device.signal(sym, dst, static_cast<std::size_t>(device.rank()) * cmx::kFlagBytes, round, 0);
    for (int src = 0; src < num_ranks; ++src)
      device.wait(sym, static_cast<std::size_t>(src) * cmx::kFlagBytes, round, {"test", src, -1});
    // Every block reads every peer's values, in tiles of 1024.
    device.launch(num_ranks * 4, [&](cmx::Block& block) {
      const int src = block.index % num_ranks;
      const std::size_t first = static_cast<std::size_t>(block.index / num_ranks) * 1024;
      const auto tile = device.stage_in_peer<cmx::bf16>(
          block.local, sym, src, values_offset + first * sizeof(cmx::bf16), 1024);
      for (std::size_t i = 0; i < tile.size(); ++i)
        if (tile[i] != value(src, first + i, round)) ++wrong;
    });
    device.barrier();  // nobody rewrites its values before every rank has read them
  }
  CHECK(wrong.load() == 0);
}

TEST_CASE("a ring of flags, each rank waiting for the one before it") {
  World world(MPI_COMM_WORLD, cmx::test::world_config());
  Device device = world.device();
  const int num_ranks = device.world_size();
  const auto sym = device.allocate_symmetric(cmx::kFlagBytes);
  const int next = (device.rank() + 1) % num_ranks;
  const int previous = (device.rank() + num_ranks - 1) % num_ranks;
  int wrong = 0;
  for (std::uint64_t lap = 1; lap <= 50; ++lap) {
    // Rank 0 starts each lap; every other rank passes the token on once it has it.
    if (device.rank() != 0 && device.wait(sym, 0, lap, {"ring", previous, -1}) != device.rank())
      ++wrong;
    device.signal(sym, next, 0, lap, next);
    if (device.rank() == 0 && device.wait(sym, 0, lap, {"ring", previous, -1}) != 0) ++wrong;
  }
  CHECK(wrong == 0);
}

TEST_CASE("launch runs each block once with bounded local memory") {
  for (const int blocks_per_rank : {1, 2, 4}) {
    World world(MPI_COMM_WORLD, cmx::test::world_config(60s, blocks_per_rank));
    Device device = world.device();
    CHECK(device.max_blocks() == blocks_per_rank);
    for (const int num_blocks : {0, 1, 5, 64}) {
      std::vector<std::atomic<int>> runs(static_cast<std::size_t>(num_blocks));
      std::atomic<int> wrong{0};
      device.launch(num_blocks, [&](cmx::Block& block) {
        if (block.count != num_blocks) ++wrong;
        runs[static_cast<std::size_t>(block.index)].fetch_add(1);
        const auto tile = block.local.take<float>(1024);
        if (reinterpret_cast<std::uintptr_t>(tile.data()) % cmx::kTileAlignment != 0) ++wrong;
        try {
          (void)block.local.take<std::byte>(Device::kLocalMemoryBytes);
          ++wrong;
        } catch (const cmx::Error&) {
        }
      });
      CHECK(wrong.load() == 0);
      for (const auto& count : runs) CHECK(count.load() == 1);
    }
  }
}

TEST_CASE("the ranks a process maps: its node, or itself alone when RMA is forced") {
  World world(MPI_COMM_WORLD, cmx::test::world_config());
  CHECK(world.rank() == cmx::test::world_rank());
  CHECK(world.num_ranks() == cmx::test::world_size());
  // ctest runs every process on one machine.
  CHECK(world.num_mapped_ranks() ==
        (cmx::test::intra_node_of_run() == IntraNode::rma ? 1 : world.num_ranks()));
  CHECK(world.communicator() != MPI_COMM_WORLD);  // its own duplicate
}

TEST_CASE("Worlds over communicators an engine made run side by side") {
  // Even and odd ranks: two Worlds, each a ring of its own.
  const int half_index = cmx::test::world_rank() % 2;
  MPI_Comm half = MPI_COMM_NULL;
  REQUIRE(MPI_Comm_split(MPI_COMM_WORLD, half_index, 0, &half) == MPI_SUCCESS);
  {
    // The halves make their Worlds and windows one after the other: Open MPI 4.1's RMA windows
    // (osc/rdma) name a shared file after the communicator's id, which the two halves share, so
    // creating both at once on one node can fail (README, "Known limits").
    std::unique_ptr<World> world;
    std::optional<Device::Symmetric> sym;
    for (int turn = 0; turn < 2; ++turn) {
      if (turn == half_index) {
        world = std::make_unique<World>(half, cmx::test::world_config());
        sym = world->device().allocate_symmetric(cmx::kFlagBytes);
      }
      MPI_Barrier(MPI_COMM_WORLD);
    }
    Device device = world->device();
    int half_size = 0;
    MPI_Comm_size(half, &half_size);
    CHECK(device.world_size() == half_size);
    CHECK(device.rank() == cmx::test::world_rank() / 2);
    device.signal(*sym, (device.rank() + 1) % device.world_size(), 0, 1, device.rank());
    const int previous = (device.rank() + device.world_size() - 1) % device.world_size();
    CHECK(device.wait(*sym, 0, 1, {"half ring", previous, -1}) == previous);
    // Destroyed one half after the other too.
    for (int turn = 0; turn < 2; ++turn) {
      if (turn == half_index) world.reset();
      MPI_Barrier(MPI_COMM_WORLD);
    }
  }
  MPI_Comm_free(&half);
}

TEST_CASE("a wait that is never signalled times out naming the missing rank") {
  World world(MPI_COMM_WORLD, cmx::test::world_config(cmx::test::kMissingRankTimeout));
  Device device = world.device();
  const int last = device.world_size() - 1;
  const auto sym = device.allocate_symmetric(cmx::kFlagBytes);
  if (device.rank() == last) return;  // never signals
  const auto outcome = outcome_of([&] { device.wait(sym, 0, 1, {"test-phase", last, 7}); });
  CHECK(outcome.code == ErrorCode::timeout);
  CHECK_MESSAGE(contains(outcome.message, "rank " + std::to_string(device.rank()) +
                                              ": test-phase waited for rank " +
                                              std::to_string(last) + " (flag 7)"),
                outcome.message);
  // A World whose wait timed out refuses collective calls.
  const auto refused = outcome_of([&] { device.barrier(); });
  CHECK(refused.code == ErrorCode::state);
  CHECK_MESSAGE(contains(refused.message, "left unusable"), refused.message);
}

TEST_CASE("a barrier that a rank never reaches times out naming it") {
  World world(MPI_COMM_WORLD, cmx::test::world_config(cmx::test::kMissingRankTimeout));
  Device device = world.device();
  if (device.rank() == 1 % device.world_size()) return;
  const auto outcome = outcome_of([&] { device.barrier(); });
  CHECK(outcome.code == ErrorCode::timeout);
  CHECK_MESSAGE(contains(outcome.message, "barrier #1 for rank(s) 1, which never arrived"),
                outcome.message);
}

TEST_CASE("symmetric allocations must agree in size on every rank") {
  World world(MPI_COMM_WORLD, cmx::test::world_config());
  Device device = world.device();
  const auto outcome = outcome_of(
      [&] { device.allocate_symmetric(device.rank() == 1 % device.world_size() ? 128 : 64); });
  if (device.world_size() > 1) {
    CHECK(outcome.code == ErrorCode::config_mismatch);
    CHECK_MESSAGE(contains(outcome.message, "asked for"), outcome.message);
  }
  // The World is still usable: every rank failed the same way, before any window was made.
  const auto sym = device.allocate_symmetric(64);
  CHECK(device.local(sym)[63] == std::byte{0});
}

TEST_CASE("World configs that differ between ranks are reported on every rank") {
  auto config = cmx::test::world_config();
  if (cmx::test::world_rank() == 0) config.timeout = 61s;
  const auto outcome = outcome_of([&] { World world(MPI_COMM_WORLD, config); });
  if (cmx::test::world_size() > 1) {
    CHECK(outcome.code == ErrorCode::config_mismatch);
    CHECK_MESSAGE(contains(outcome.message, "WorldConfig differs between ranks"), outcome.message);
  }
}

TEST_CASE("puts and flags outside the part or off the 32-byte grid are errors, not writes") {
  World world(MPI_COMM_WORLD, cmx::test::world_config());
  Device device = world.device();
  const int peer = (device.rank() + 1) % device.world_size();
  const auto sym = device.allocate_symmetric(256);
  std::vector<std::byte> row(64, std::byte{1});
  CHECK_THROWS_WITH_AS(device.put(sym, peer, 224, row),
                       doctest::Contains("outside the symmetric part"), cmx::Error);
  CHECK_THROWS_WITH_AS(device.put(sym, peer, 16, row), doctest::Contains("multiples of 32"),
                       cmx::Error);
  CHECK_THROWS_WITH_AS(device.put(sym, device.world_size(), 0, row),
                       doctest::Contains("out of range"), cmx::Error);
  CHECK_THROWS_AS(device.signal(sym, peer, 256, 1, 0), cmx::Error);
  cmx::LocalArena local(std::span<std::byte>{});
  CHECK_THROWS_AS(device.stage_in_peer<cmx::bf16>(local, sym, peer, 8, 16), cmx::Error);
  device.barrier();
  const std::byte* part = device.local(sym);
  for (std::size_t i = 0; i < 256; ++i) REQUIRE(part[i] == std::byte{0});
}

TEST_CASE("MPI errors are cmx::Error(transport) with MPI's own text") {
  CHECK_THROWS_WITH_AS(cmx::mpi_backend::detail::check_mpi(MPI_ERR_WIN, "MPI_Put to rank ", 3),
                       doctest::Contains("cmx transport: MPI_Put to rank 3 failed: MPI_ERR_WIN"),
                       cmx::Error);
  const auto outcome = outcome_of([] { World world(MPI_COMM_NULL); });
  CHECK(outcome.code == ErrorCode::invalid_argument);
  CHECK_MESSAGE(contains(outcome.message, "MPI_COMM_NULL"), outcome.message);
}

TEST_CASE("the Environment leaves an MPI that is already initialized to its owner") {
  cmx::mpi_backend::Environment again;
  CHECK_FALSE(again.initialized_here());
  CHECK(again.thread_level() >= MPI_THREAD_SERIALIZED);
}
