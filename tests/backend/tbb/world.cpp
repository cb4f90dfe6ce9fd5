// SPDX-License-Identifier: Apache-2.0
// The TBB backend's machine: ranks as threads, symmetric memory, flags, barrier, launch, errors.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "cmx/backend/tbb.hpp"

using cmx::ErrorCode;
using cmx::tbb_backend::Device;
using cmx::tbb_backend::World;
using namespace std::chrono_literals;

namespace {

// The message of a rank's exception, or "" if it succeeded.
std::string message_of(const std::exception_ptr& error) {
  if (!error) return "";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  }
}

ErrorCode code_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const cmx::Error& e) {
    return e.code();
  }
}

}  // namespace

TEST_CASE("a barrier holds every rank until all arrive, for 1 to 320 ranks" *
          doctest::test_suite("concurrent")) {
  for (const int num_ranks : {1, 2, 3, 8, 64, 320}) {
    World world({.num_ranks = num_ranks, .timeout = 60s});
    std::atomic<int> arrived{0};
    std::atomic<int> early{0};  // ranks that left a barrier before the last arrived
    const int rounds = num_ranks >= 64 ? 5 : 100;
    world.run([&](Device device) {
      for (int round = 1; round <= rounds; ++round) {
        arrived.fetch_add(1);
        device.barrier();
        if (arrived.load() < round * num_ranks) early.fetch_add(1);
        device.barrier();  // nobody starts the next round before all have checked
      }
    });
    CHECK(early.load() == 0);
    CHECK(arrived.load() == rounds * num_ranks);
  }
}

TEST_CASE("symmetric memory: puts land in the peer's part, published by a signal" *
          doctest::test_suite("concurrent")) {
  constexpr int kRanks = 8;
  constexpr std::size_t kRow = 64;  // bytes per message
  World world({.num_ranks = kRanks});
  std::vector<std::string> errors(kRanks);
  world.run([&](Device device) {
    // Part layout: [kRanks] flags of 32 B, then [kRanks] rows of kRow bytes, one per source.
    const auto sym = device.allocate_symmetric(kRanks * (cmx::kFlagBytes + kRow));
    const std::size_t rows_offset = kRanks * cmx::kFlagBytes;
    for (std::uint64_t sequence = 1; sequence <= 50; ++sequence) {
      std::vector<std::byte> row(kRow);
      for (int dst = 0; dst < kRanks; ++dst) {
        std::memset(row.data(), static_cast<int>(device.rank() * 16 + dst + sequence) & 0xff, kRow);
        device.put(sym, dst, rows_offset + device.rank() * kRow, row);
        device.signal(sym, dst, device.rank() * cmx::kFlagBytes, sequence,
                      dst * 1000 + device.rank());
      }
      for (int src = 0; src < kRanks; ++src) {
        const std::int64_t payload =
            device.wait(sym, src * cmx::kFlagBytes, sequence, {"test", src, -1});
        const auto expected = static_cast<std::byte>((src * 16 + device.rank() + sequence) & 0xff);
        const std::byte* got = device.local(sym) + rows_offset + src * kRow;
        if (payload != device.rank() * 1000 + src || got[0] != expected ||
            got[kRow - 1] != expected)
          errors[device.rank()] =
              "sequence " + std::to_string(sequence) + " from " + std::to_string(src);
      }
      device.barrier();  // nobody overwrites a row before every rank has read it
    }
  });
  for (const std::string& e : errors) CHECK_MESSAGE(e.empty(), e);
}

TEST_CASE("streaming puts from every block of a launch are published by the next signal" *
          doctest::test_suite("concurrent")) {
  // Rows long enough for streaming stores (weakly ordered: the backend fences them at the end
  // of each block), from blocks that TBB may run on other threads than the rank's.
  constexpr int kRanks = 4;
  constexpr int kBlocks = 4;  // each block puts its own row to every rank
  constexpr std::size_t kRow = 7200;
  static_assert(kRow >= cmx::tbb_backend::Device::kStreamingPutBytes);
  World world({.num_ranks = kRanks, .blocks_per_rank = kBlocks});
  std::vector<std::string> errors(kRanks);
  world.run([&](Device device) {
    // Part layout: [kRanks] flags, then [kRanks][kBlocks] rows of kRow bytes, per source.
    const std::size_t rows_offset = kRanks * cmx::kFlagBytes;
    const auto sym = device.allocate_symmetric(rows_offset + kRanks * kBlocks * kRow);
    const auto row_offset = [&](int src, int block) {
      return rows_offset + static_cast<std::size_t>(src * kBlocks + block) * kRow;
    };
    const auto byte_of = [](int src, int dst, int block, std::uint64_t sequence, std::size_t i) {
      return static_cast<std::byte>((src * 31 + dst * 7 + block * 3 + sequence + i) & 0xff);
    };
    for (std::uint64_t sequence = 1; sequence <= 20; ++sequence) {
      device.launch(kBlocks, [&](cmx::Block& block) {
        const std::span<std::byte> tile = block.local.take<std::byte>(kRow);
        for (int dst = 0; dst < kRanks; ++dst) {
          for (std::size_t i = 0; i < kRow; ++i)
            tile[i] = byte_of(device.rank(), dst, block.index, sequence, i);
          device.put(sym, dst, row_offset(device.rank(), block.index), tile);
        }
      });
      for (int dst = 0; dst < kRanks; ++dst)
        device.signal(sym, dst, device.rank() * cmx::kFlagBytes, sequence, 0);
      for (int src = 0; src < kRanks; ++src) {
        device.wait(sym, src * cmx::kFlagBytes, sequence, {"test", src, -1});
        for (int block = 0; block < kBlocks; ++block) {
          const std::byte* got = device.local(sym) + row_offset(src, block);
          for (std::size_t i = 0; i < kRow; ++i)
            if (got[i] != byte_of(src, device.rank(), block, sequence, i))
              errors[device.rank()] = "sequence " + std::to_string(sequence) + " from " +
                                      std::to_string(src) + " block " + std::to_string(block) +
                                      " byte " + std::to_string(i);
        }
      }
      device.barrier();  // nobody overwrites a row before every rank has read it
    }
  });
  for (const std::string& e : errors) CHECK_MESSAGE(e.empty(), e);
}

TEST_CASE("a wait that is never signalled times out naming the missing rank" *
          doctest::test_suite("concurrent")) {
  World world({.num_ranks = 3, .timeout = 100ms});
  const auto errors = world.run_collect([&](Device device) {
    const auto sym = device.allocate_symmetric(cmx::kFlagBytes * 3);
    if (device.rank() == 2) return;  // rank 2 never signals
    device.wait(sym, 2 * cmx::kFlagBytes, 1, {"test-phase", 2, 7});
  });
  for (int rank : {0, 1}) {
    REQUIRE(errors[rank] != nullptr);
    CHECK(code_of(errors[rank]) == ErrorCode::timeout);
    const std::string message = message_of(errors[rank]);
    CHECK_MESSAGE(message.find("rank " + std::to_string(rank) +
                               ": test-phase waited for rank 2 (flag 7)") != std::string::npos,
                  message);
  }
  CHECK(errors[2] == nullptr);
  CHECK_THROWS_AS(world.run([](Device) {}), cmx::Error);  // a failed world is not reused
}

TEST_CASE("a barrier that a rank never reaches times out naming it" *
          doctest::test_suite("concurrent")) {
  World world({.num_ranks = 4, .timeout = 100ms});
  const auto errors = world.run_collect([&](Device device) {
    if (device.rank() != 1) device.barrier();
  });
  for (int rank : {0, 2, 3}) {
    const std::string message = message_of(errors[rank]);
    CHECK_MESSAGE(message.find("for rank(s) 1, which never arrived") != std::string::npos, message);
  }
}

TEST_CASE("symmetric allocations must agree in size on every rank" *
          doctest::test_suite("concurrent")) {
  World world({.num_ranks = 3});
  const auto errors = world.run_collect(
      [&](Device device) { device.allocate_symmetric(device.rank() == 1 ? 128 : 64); });
  for (const auto& error : errors) {
    REQUIRE(error != nullptr);
    CHECK(code_of(error) == ErrorCode::config_mismatch);
  }
}

TEST_CASE("puts and flags outside the part or off the 32-byte grid are errors, not writes" *
          doctest::test_suite("concurrent")) {
  World world({.num_ranks = 2});
  world.run([&](Device device) {
    const auto sym = device.allocate_symmetric(256);
    std::vector<std::byte> row(64, std::byte{1});
    CHECK_THROWS_WITH_AS(device.put(sym, 1, 224, row),
                         doctest::Contains("outside the symmetric part"), cmx::Error);
    CHECK_THROWS_WITH_AS(device.put(sym, 1, 16, row), doctest::Contains("multiples of 32"),
                         cmx::Error);
    CHECK_THROWS_WITH_AS(device.put(sym, 2, 0, row), doctest::Contains("rank 2 out of range"),
                         cmx::Error);
    CHECK_THROWS_AS(device.signal(sym, 0, 256, 1, 0), cmx::Error);
    device.barrier();
    const std::byte* part = device.local(sym);
    for (std::size_t i = 0; i < 256; ++i) REQUIRE(part[i] == std::byte{0});
  });
}

TEST_CASE("launch runs each block once with bounded local memory" *
          doctest::test_suite("concurrent")) {
  for (const int blocks_per_rank : {1, 2, 4}) {
    World world({.num_ranks = 2, .blocks_per_rank = blocks_per_rank});
    world.run([&](Device device) {
      CHECK(device.max_blocks() == blocks_per_rank);
      for (const int num_blocks : {0, 1, 5, 64}) {
        std::vector<std::atomic<int>> runs(static_cast<std::size_t>(num_blocks));
        device.launch(num_blocks, [&](cmx::Block& block) {
          CHECK(block.count == num_blocks);
          runs[static_cast<std::size_t>(block.index)].fetch_add(1);
          auto tile = block.local.take<float>(1024);
          CHECK(reinterpret_cast<std::uintptr_t>(tile.data()) % cmx::kTileAlignment == 0);
          CHECK_THROWS_AS(block.local.take<std::byte>(Device::kLocalMemoryBytes), cmx::Error);
        });
        for (const auto& count : runs) CHECK(count.load() == 1);
      }
    });
  }
}

TEST_CASE("many ranks on two cores: 64 ranks pass flags around a ring" *
          doctest::test_suite("concurrent")) {
  constexpr int kRanks = 64;
  World world({.num_ranks = kRanks, .timeout = 60s});
  std::atomic<int> wrong{0};
  world.run([&](Device device) {
    const auto sym = device.allocate_symmetric(cmx::kFlagBytes);
    const int next = (device.rank() + 1) % kRanks;
    for (std::uint64_t lap = 1; lap <= 20; ++lap) {
      // Rank 0 starts each lap; every other rank passes the token on once it has it.
      if (device.rank() != 0) {
        if (device.wait(sym, 0, lap, {"ring", (device.rank() + kRanks - 1) % kRanks, -1}) !=
            device.rank())
          wrong++;
      }
      device.signal(sym, next, 0, lap, next);
      if (device.rank() == 0 && device.wait(sym, 0, lap, {"ring", kRanks - 1, -1}) != 0) wrong++;
    }
  });
  CHECK(wrong.load() == 0);
}
