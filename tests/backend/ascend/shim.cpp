// SPDX-License-Identifier: Apache-2.0
// The clean-room Ascend shim's checking semantics: each rule the hardware imposes is enforced,
// and each test shows both sides (the violation caught, the correct sequence working).
//
// NOTES: doctest's assertions are not thread-safe, so kernels (which run on core threads)
// record what they saw in plain arrays or atomics, and the test checks them after the launch
// has joined.
#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "sim/ascend/machine.hpp"
#include "sim/ascend/shim/acl.hpp"
#include "sim/ascend/shim/aclshmem.hpp"
#include "sim/ascend/shim/kernel_operator.hpp"
#include "sim_harness.hpp"

using cmx::ErrorCode;
using cmx::ascend_sim::Machine;
using cmx::ascend_sim::MachineConfig;
using namespace std::chrono_literals;

using cmx::test::Caught;
using cmx::test::error_of;
using cmx::test::on_one_npu;

namespace {

// Spins (yielding) until `done()` or 10 s; returns done(). For test-side handshakes between
// core threads, so a bug shows as a failed check instead of a hang.
template <class Done>
bool spin_until(Done&& done) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

}  // namespace

TEST_CASE("N emulated AIV cores run concurrently, each a thread with its own block index") {
  constexpr int kCores = 8;
  std::atomic<int> arrived{0};
  std::array<int, kCores> seen_index{};
  std::array<int, kCores> seen_num{};
  std::array<bool, kCores> all_arrived{};
  on_one_npu(kCores, [&] {
    cmx::ascend_sim::launch(kCores, [&] {
      const auto index = static_cast<std::size_t>(AscendC::GetBlockIdx());
      seen_index[index] = static_cast<int>(index);
      seen_num[index] = static_cast<int>(AscendC::GetBlockNum());
      arrived.fetch_add(1);
      // Only possible if every core runs at once: a sequential launch would never get here.
      all_arrived[index] = spin_until([&] { return arrived.load() == kCores; });
    });
  });
  for (int core = 0; core < kCores; ++core) {
    CHECK(seen_index[static_cast<std::size_t>(core)] == core);
    CHECK(seen_num[static_cast<std::size_t>(core)] == kCores);
    CHECK(all_arrived[static_cast<std::size_t>(core)]);
  }
}

TEST_CASE("SyncAll holds every core until all arrive, and publishes their DataCopy to GM") {
  constexpr int kCores = 6;
  constexpr int kRounds = 20;
  constexpr std::size_t kInts = 8;  // 32 B per core and round
  std::atomic<int> arrivals{0};
  std::atomic<int> early{0};     // cores that left a SyncAll before every core arrived
  std::atomic<int> mismatch{0};  // values read back from a peer core that were wrong
  on_one_npu(kCores, [&] {
    auto* gm = static_cast<int32_t*>(aclshmem_malloc(kCores * kInts * sizeof(int32_t)));
    cmx::ascend_sim::launch(
        kCores,
        [&](GM_ADDR base) {
          AscendC::TPipe pipe;
          AscendC::TBuf<> buf;
          pipe.InitBuffer(buf, kInts * sizeof(int32_t));
          const AscendC::LocalTensor<int32_t> tile = buf.Get<int32_t>();
          AscendC::GlobalTensor<int32_t> all;
          all.SetGlobalBuffer(reinterpret_cast<__gm__ int32_t*>(base), kCores * kInts);
          const int64_t me = AscendC::GetBlockIdx();
          const int64_t next = (me + 1) % kCores;
          for (int round = 1; round <= kRounds; ++round) {
            for (uint32_t i = 0; i < kInts; ++i)
              tile.SetValue(i, static_cast<int32_t>(round * 100 + me));
            AscendC::DataCopy(all[static_cast<uint64_t>(me) * kInts], tile, kInts);
            arrivals.fetch_add(1);
            AscendC::SyncAll();
            if (arrivals.load() < round * kCores) early.fetch_add(1);
            AscendC::DataCopy(tile, all[static_cast<uint64_t>(next) * kInts], kInts);
            if (tile.GetValue(kInts - 1) != round * 100 + next) mismatch.fetch_add(1);
            AscendC::SyncAll();  // nobody overwrites its slot before every core has read
          }
        },
        reinterpret_cast<GM_ADDR>(gm));
  });
  CHECK(arrivals.load() == kCores * kRounds);
  CHECK(early.load() == 0);
  CHECK(mismatch.load() == 0);
}

TEST_CASE("SyncAll that a core never reaches times out, naming the core that waited") {
  const auto error = error_of([] {
    on_one_npu(
        2,
        [] {
          cmx::ascend_sim::launch(2, [] {
            if (AscendC::GetBlockIdx() == 0) AscendC::SyncAll();  // core 1 never arrives
          });
        },
        300ms);
  });
  REQUIRE(error);
  CHECK(error->code == ErrorCode::timeout);
  CHECK(error->message.find("core 0 of npu 0") != std::string::npos);
  CHECK(error->message.find("SyncAll") != std::string::npos);
}

TEST_CASE("DataCopy rejects a size or an address off the 32-byte rule, and DataCopyPad moves it") {
  on_one_npu(1, [] {
    auto* gm = static_cast<float*>(aclshmem_malloc(64 * sizeof(float)));
    cmx::ascend_sim::launch(1, [gm] {
      AscendC::TPipe pipe;
      AscendC::TBuf<> buf;
      pipe.InitBuffer(buf, 64 * sizeof(float));
      const AscendC::LocalTensor<float> tile = buf.Get<float>();
      AscendC::GlobalTensor<float> src;
      src.SetGlobalBuffer(gm, 64);
      for (uint32_t i = 0; i < 64; ++i) tile.SetValue(i, -1.0f);

      // 7 floats = 28 B: not a multiple of 32.
      const auto size_error = error_of([&] { AscendC::DataCopy(tile, src, 7); });
      // src[1] is 4 B past a 32-byte boundary.
      const auto address_error = error_of([&] { AscendC::DataCopy(tile, src[1], 8); });
      const auto ub_address_error = error_of([&] { AscendC::DataCopy(tile[1], src, 8); });
      const auto out_error = error_of([&] { AscendC::DataCopy(src[3], tile, 8); });
      if (!size_error || size_error->code != ErrorCode::invalid_argument ||
          size_error->message.find("not a multiple of 32") == std::string::npos)
        throw std::runtime_error("a 28-byte DataCopy was not rejected");
      if (!address_error || address_error->code != ErrorCode::invalid_argument ||
          !ub_address_error || ub_address_error->code != ErrorCode::invalid_argument ||
          !out_error || out_error->code != ErrorCode::invalid_argument)
        throw std::runtime_error("a misaligned DataCopy was not rejected");
      // Nothing was written by the rejected copies.
      if (tile.GetValue(0) != -1.0f) throw std::runtime_error("a rejected DataCopy wrote UB");

      // DataCopyPad moves the 28 bytes and pads the 32-byte tail.
      AscendC::DataCopyPad(tile, src, AscendC::DataCopyExtParams{1, 28, 0, 0, 0},
                           AscendC::DataCopyPadExtParams<float>{true, 0, 1, 5.0f});
      if (tile.GetValue(6) != 0.0f || tile.GetValue(7) != 5.0f || tile.GetValue(8) != -1.0f)
        throw std::runtime_error("DataCopyPad did not copy 7 floats and pad the 8th");
    });
  });
}

TEST_CASE("DataCopy rejects a copy larger than either tensor, and writes nothing") {
  int untouched = 0;  // bytes of GM still holding what the host wrote
  on_one_npu(1, [&] {
    auto* gm = static_cast<int8_t*>(aclshmem_malloc(256));
    std::memset(gm, 7, 256);  // host side, before the launch
    cmx::ascend_sim::launch(1, [gm] {
      AscendC::TPipe pipe;
      AscendC::TBuf<> buf;
      pipe.InitBuffer(buf, 128);
      const AscendC::LocalTensor<int8_t> tile = buf.Get<int8_t>();  // 128 elements
      AscendC::GlobalTensor<int8_t> global;
      global.SetGlobalBuffer(gm, 64);  // 64 elements
      const auto past_ub = error_of([&] { AscendC::DataCopy(tile[64], global, 96); });
      const auto past_gm = error_of([&] { AscendC::DataCopy(global, tile, 96); });
      if (!past_ub || past_ub->code != ErrorCode::capacity || !past_gm ||
          past_gm->code != ErrorCode::capacity)
        throw std::runtime_error("an oversized DataCopy was not rejected");
      AscendC::PipeBarrier<PIPE_ALL>();
    });
    // The rejected UB -> GM copy never reached GM.
    for (int i = 0; i < 256; ++i) untouched += gm[i] == 7 ? 1 : 0;
  });
  CHECK(untouched == 256);
}

TEST_CASE("the Unified Buffer holds 192 KB per core, and one byte more is a capacity error") {
  std::optional<Caught> overflow;
  std::optional<Caught> second_pipe;
  bool exact_fit = false;
  on_one_npu(2, [&] {
    cmx::ascend_sim::launch(2, [&] {
      AscendC::TPipe pipe;
      AscendC::TBuf<> a;
      AscendC::TBuf<> b;
      AscendC::TBuf<> c;
      pipe.InitBuffer(a, 100 * 1024);
      pipe.InitBuffer(b, 92 * 1024);  // 192 KB in all: fits
      if (AscendC::GetBlockIdx() == 0) {
        exact_fit =
            a.Get<int8_t>().GetSize() + b.Get<int8_t>().GetSize() == cmx::ascend_sim::kUbBytes;
        overflow = error_of([&] { pipe.InitBuffer(c, 1); });
        second_pipe = error_of([] { AscendC::TPipe another; });
      }
    });
  });
  CHECK(exact_fit);
  REQUIRE(overflow);
  CHECK(overflow->code == ErrorCode::capacity);
  CHECK(overflow->message.find("UB") != std::string::npos);
  REQUIRE(second_pipe);
  CHECK(second_pipe->code == ErrorCode::state);
}

TEST_CASE("a scalar flag read without DataCacheCleanAndInvalid returns the stale value") {
  // Core 1 publishes flag = 1 properly (SetValue, then clean). Core 0 had read the flag
  // before: a second plain GetValue still returns 0; after an invalidate it returns 1.
  int32_t before = -1, stale = -1, fresh = -1;
  on_one_npu(2, [&] {
    auto* flag = static_cast<int32_t*>(aclshmem_malloc(32));
    cmx::ascend_sim::launch(2, [&] {
      AscendC::GlobalTensor<int32_t> word;
      word.SetGlobalBuffer(flag, 8);
      if (AscendC::GetBlockIdx() == 0) before = word.GetValue(0);  // caches the line
      AscendC::SyncAll();
      if (AscendC::GetBlockIdx() == 1) {
        word.SetValue(0, 1);
        AscendC::DataCacheCleanAndInvalid<int32_t, AscendC::CacheLine::SINGLE_CACHE_LINE,
                                          AscendC::DcciDst::CACHELINE_OUT>(word);
      }
      AscendC::SyncAll();
      if (AscendC::GetBlockIdx() == 0) {
        stale = word.GetValue(0);
        AscendC::DataCacheCleanAndInvalid<int32_t, AscendC::CacheLine::SINGLE_CACHE_LINE,
                                          AscendC::DcciDst::CACHELINE_OUT>(word);
        fresh = word.GetValue(0);
      }
    });
  });
  CHECK(before == 0);
  CHECK(stale == 0);
  CHECK(fresh == 1);
}

TEST_CASE("a scalar write is not visible to other cores until it is cleaned") {
  int32_t unclean = -1, cleaned = -1;
  on_one_npu(2, [&] {
    auto* flag = static_cast<int32_t*>(aclshmem_malloc(32));
    cmx::ascend_sim::launch(2, [&] {
      AscendC::GlobalTensor<int32_t> word;
      word.SetGlobalBuffer(flag, 8);
      const auto invalidate_and_read = [&] {
        AscendC::DataCacheCleanAndInvalid<int32_t, AscendC::CacheLine::SINGLE_CACHE_LINE>(word);
        return word.GetValue(0);
      };
      if (AscendC::GetBlockIdx() == 1) word.SetValue(0, 42);  // stays in core 1's cache
      AscendC::SyncAll();
      if (AscendC::GetBlockIdx() == 0) unclean = invalidate_and_read();
      AscendC::SyncAll();
      if (AscendC::GetBlockIdx() == 1)
        AscendC::DataCacheCleanAndInvalid<int32_t, AscendC::CacheLine::ENTIRE_DATA_CACHE,
                                          AscendC::DcciDst::CACHELINE_ALL>(word);
      AscendC::SyncAll();
      if (AscendC::GetBlockIdx() == 0) cleaned = invalidate_and_read();
    });
  });
  CHECK(unclean == 0);
  CHECK(cleaned == 42);
}

TEST_CASE("polling a flag without the invalidate never sees the raise and times out") {
  const auto poll = [](bool invalidate) {
    return error_of([invalidate] {
      on_one_npu(
          2,
          [invalidate] {
            auto* flag = static_cast<int32_t*>(aclshmem_malloc(32));
            cmx::ascend_sim::launch(2, [flag, invalidate] {
              AscendC::GlobalTensor<int32_t> word;
              word.SetGlobalBuffer(flag, 8);
              // Core 0 caches the line before core 1 raises the flag.
              if (AscendC::GetBlockIdx() == 0) (void)word.GetValue(0);
              AscendC::SyncAll();
              if (AscendC::GetBlockIdx() == 1) {
                word.SetValue(0, 1);
                AscendC::DataCacheCleanAndInvalid<int32_t, AscendC::CacheLine::SINGLE_CACHE_LINE,
                                                  AscendC::DcciDst::CACHELINE_OUT>(word);
                return;
              }
              while (word.GetValue(0) != 1)
                if (invalidate)
                  AscendC::DataCacheCleanAndInvalid<int32_t, AscendC::CacheLine::SINGLE_CACHE_LINE,
                                                    AscendC::DcciDst::CACHELINE_OUT>(word);
            });
          },
          500ms);
    });
  };
  const auto without = poll(false);
  REQUIRE(without);
  CHECK(without->code == ErrorCode::timeout);
  CHECK(without->message.find("DataCacheCleanAndInvalid") != std::string::npos);
  CHECK_FALSE(poll(true));
}

TEST_CASE("a UB->GM DataCopy completes only at the MTE3 synchronization") {
  int32_t before_wait = -1, after_wait = -1;
  on_one_npu(1, [&] {
    auto* gm = static_cast<int32_t*>(aclshmem_malloc(32));
    cmx::ascend_sim::launch(1, [&] {
      AscendC::TPipe pipe;
      AscendC::TBuf<> buf;
      pipe.InitBuffer(buf, 32);
      const AscendC::LocalTensor<int32_t> tile = buf.Get<int32_t>();
      for (uint32_t i = 0; i < 8; ++i) tile.SetValue(i, 9);
      AscendC::GlobalTensor<int32_t> global;
      global.SetGlobalBuffer(gm, 8);
      const auto read_gm = [&] {
        AscendC::DataCacheCleanAndInvalid<int32_t, AscendC::CacheLine::SINGLE_CACHE_LINE>(global);
        return global.GetValue(0);
      };
      AscendC::DataCopy(global, tile, 8);
      before_wait = read_gm();
      AscendC::SetFlag<AscendC::HardEvent::MTE3_S>(EVENT_ID0);
      AscendC::WaitFlag<AscendC::HardEvent::MTE3_S>(EVENT_ID0);
      after_wait = read_gm();
    });
  });
  CHECK(before_wait == 0);
  CHECK(after_wait == 9);
}

TEST_CASE("a WaitFlag without its SetFlag is reported instead of hanging") {
  const auto error = error_of([] {
    on_one_npu(1, [] {
      cmx::ascend_sim::launch(1, [] { AscendC::WaitFlag<AscendC::HardEvent::MTE2_V>(EVENT_ID1); });
    });
  });
  REQUIRE(error);
  CHECK(error->code == ErrorCode::state);
}

TEST_CASE("a peer write is seen by the peer only after quiet, signal, and an invalidating wait") {
  // NPU 0 puts 32 bytes into NPU 1's symmetric buffer and raises NPU 1's flag; NPU 1 waits
  // for the flag and reads the data. Without aclshmem_quiet() before the signal, the put is
  // still in flight when the flag lands: NPU 1 reads the old bytes. (NPU 0 holds its kernel
  // open until NPU 1 has read, so the outcome does not depend on timing.)
  for (const bool quiet : {false, true}) {
    CAPTURE(quiet);
    std::array<int32_t, 8> received{};
    std::atomic<bool> reader_done{false};
    bool writer_waited = false;
    Machine machine({.num_npus = 2, .cores_per_npu = 1, .timeout = 20'000ms});
    machine.run([&](int npu) {
      auto* data = static_cast<int32_t*>(aclshmem_malloc(32));
      auto* flag = static_cast<int32_t*>(aclshmem_malloc(32));
      machine.host_barrier(npu);
      cmx::ascend_sim::launch(1, [&, data, flag] {
        AscendC::TPipe pipe;
        AscendC::TBuf<> buf;
        pipe.InitBuffer(buf, 32);
        const AscendC::LocalTensor<int32_t> tile = buf.Get<int32_t>();
        if (aclshmem_my_pe() == 0) {
          for (uint32_t i = 0; i < 8; ++i) tile.SetValue(i, static_cast<int32_t>(100 + i));
          AscendC::GlobalTensor<int32_t> peer_data;
          peer_data.SetGlobalBuffer(static_cast<int32_t*>(aclshmem_ptr(data, 1)), 8);
          AscendC::DataCopy(peer_data, tile, 8);
          if (quiet) aclshmem_quiet();
          aclshmemx_signal_op(flag, 1, ACLSHMEM_SIGNAL_SET, 1);
          writer_waited = spin_until([&] { return reader_done.load(); });
        } else {
          aclshmem_signal_wait_until(flag, ACLSHMEM_CMP_EQ, 1);
          AscendC::GlobalTensor<int32_t> local_data;
          local_data.SetGlobalBuffer(data, 8);
          AscendC::DataCopy(tile, local_data, 8);
          for (uint32_t i = 0; i < 8; ++i) received[i] = tile.GetValue(i);
          reader_done.store(true);
        }
      });
    });
    CHECK(writer_waited);
    for (std::size_t i = 0; i < 8; ++i)
      CHECK(received[i] == (quiet ? static_cast<int32_t>(100 + i) : 0));
  }
}

TEST_CASE("epoch flags: a flag is never cleared, each round waits for its own sequence") {
  // Ping-pong between two NPUs over rounds 1..kRounds reusing one data slot and one flag per
  // PE: round r writes data r and signals r; the other side waits for flag >= r. A wait for
  // round r is not satisfied by round r-1's flag, and nothing is reset between rounds.
  constexpr int kRounds = 6;
  std::array<std::array<int32_t, kRounds>, 2> seen{};
  Machine machine({.num_npus = 2, .cores_per_npu = 1, .timeout = 20'000ms});
  machine.run([&](int npu) {
    auto* data = static_cast<int32_t*>(aclshmem_malloc(32));
    auto* flag = static_cast<int32_t*>(aclshmem_malloc(32));
    machine.host_barrier(npu);
    cmx::ascend_sim::launch(1, [&, data, flag] {
      AscendC::TPipe pipe;
      AscendC::TBuf<> buf;
      pipe.InitBuffer(buf, 32);
      const AscendC::LocalTensor<int32_t> tile = buf.Get<int32_t>();
      const int me = aclshmem_my_pe();
      const int peer = 1 - me;
      AscendC::GlobalTensor<int32_t> peer_data;
      peer_data.SetGlobalBuffer(static_cast<int32_t*>(aclshmem_ptr(data, peer)), 8);
      AscendC::GlobalTensor<int32_t> my_data;
      my_data.SetGlobalBuffer(data, 8);
      for (int round = 1; round <= kRounds; ++round) {
        const bool my_turn = (round % 2 == 1) == (me == 0);
        if (my_turn) {
          for (uint32_t i = 0; i < 8; ++i) tile.SetValue(i, round * 10 + me);
          AscendC::DataCopy(peer_data, tile, 8);
          aclshmem_quiet();
          aclshmemx_signal_op(flag, round, ACLSHMEM_SIGNAL_SET, peer);
        } else {
          const int32_t value = aclshmem_signal_wait_until(flag, ACLSHMEM_CMP_GE, round);
          AscendC::DataCopy(tile, my_data, 8);
          seen[static_cast<std::size_t>(me)][static_cast<std::size_t>(round - 1)] =
              value == round ? tile.GetValue(7) : -value;
        }
      }
    });
  });
  for (int round = 1; round <= kRounds; ++round) {
    const int receiver = round % 2 == 1 ? 1 : 0;
    CHECK(seen[static_cast<std::size_t>(receiver)][static_cast<std::size_t>(round - 1)] ==
          round * 10 + (1 - receiver));
  }
}

TEST_CASE("signal ADD accumulates from every PE, and the waiter sees the total") {
  constexpr int kNpus = 4;
  int32_t total = -1;
  Machine machine({.num_npus = kNpus, .cores_per_npu = 2, .timeout = 20'000ms});
  machine.run([&](int npu) {
    auto* counter = static_cast<int32_t*>(aclshmem_malloc(32));
    machine.host_barrier(npu);
    cmx::ascend_sim::launch(2, [&, counter] {
      aclshmemx_signal_op(counter, 1, ACLSHMEM_SIGNAL_ADD, 0);  // every core of every PE
      if (aclshmem_my_pe() == 0 && AscendC::GetBlockIdx() == 0)
        total = aclshmem_signal_wait_until(counter, ACLSHMEM_CMP_GE, 2 * kNpus);
    });
  });
  CHECK(total == 2 * kNpus);
}

TEST_CASE("misuse is reported: host-side kernel calls, launches, GM and heap checks") {
  SUBCASE("a kernel call on a host thread") {
    const auto error = error_of([] { (void)AscendC::GetBlockIdx(); });
    REQUIRE(error);
    CHECK(error->code == ErrorCode::state);
  }
  SUBCASE("more cores than the NPU has: not all resident") {
    const auto error = error_of([] { on_one_npu(4, [] { cmx::ascend_sim::launch(5, [] {}); }); });
    REQUIRE(error);
    CHECK(error->code == ErrorCode::invalid_argument);
  }
  SUBCASE("a GlobalTensor over memory that is not GM") {
    std::array<int32_t, 8> host_memory{};
    const auto error = error_of([&] {
      on_one_npu(1, [&] {
        cmx::ascend_sim::launch(1, [&] {
          AscendC::GlobalTensor<int32_t> t;
          t.SetGlobalBuffer(host_memory.data(), 8);
        });
      });
    });
    REQUIRE(error);
    CHECK(error->code == ErrorCode::invalid_argument);
  }
  SUBCASE("a scalar read past the GlobalTensor's end") {
    const auto error = error_of([] {
      on_one_npu(1, [] {
        auto* gm = static_cast<int32_t*>(aclshmem_malloc(64));
        cmx::ascend_sim::launch(1, [gm] {
          AscendC::GlobalTensor<int32_t> t;
          t.SetGlobalBuffer(gm, 8);
          (void)t.GetValue(8);
        });
      });
    });
    REQUIRE(error);
    CHECK(error->code == ErrorCode::capacity);
  }
  SUBCASE("PEs that allocate different symmetric sizes") {
    const auto error = error_of([] {
      Machine machine({.num_npus = 2, .cores_per_npu = 1, .timeout = 2'000ms});
      machine.run([](int npu) { (void)aclshmem_malloc(npu == 0 ? 64 : 128); });
    });
    REQUIRE(error);
    CHECK(error->code == ErrorCode::config_mismatch);
  }
  SUBCASE("aclshmem_ptr of a pointer outside the symmetric heap, or to a PE that is not") {
    std::optional<Caught> not_symmetric, bad_pe;
    Machine machine({.num_npus = 2, .cores_per_npu = 1, .timeout = 2'000ms});
    machine.run([&](int npu) {
      void* symmetric = aclshmem_malloc(64);
      if (npu != 0) return;
      int local = 0;
      not_symmetric = error_of([&] { (void)aclshmem_ptr(&local, 1); });
      bad_pe = error_of([&] { (void)aclshmem_ptr(symmetric, 2); });
    });
    REQUIRE(not_symmetric);
    CHECK(not_symmetric->code == ErrorCode::invalid_argument);
    REQUIRE(bad_pe);
    CHECK(bad_pe->code == ErrorCode::invalid_argument);
  }
}

TEST_CASE("aclshmem_ptr maps a symmetric address to the same offset on every PE") {
  constexpr int kNpus = 3;
  std::array<std::array<std::ptrdiff_t, kNpus>, kNpus> offsets{};
  std::array<void*, kNpus> bases{};
  Machine machine({.num_npus = kNpus, .cores_per_npu = 1, .timeout = 2'000ms});
  machine.run([&](int npu) {
    (void)aclshmem_malloc(100);  // a first allocation, so the second is not at the heap's start
    auto* buffer = static_cast<std::byte*>(aclshmem_malloc(256));
    bases[static_cast<std::size_t>(npu)] = buffer;
    machine.host_barrier(npu);
    for (int pe = 0; pe < kNpus; ++pe)
      offsets[static_cast<std::size_t>(npu)][static_cast<std::size_t>(pe)] =
          static_cast<std::byte*>(aclshmem_ptr(buffer + 32, pe)) -
          static_cast<std::byte*>(bases[static_cast<std::size_t>(pe)]);
  });
  for (const auto& row : offsets)
    for (const std::ptrdiff_t offset : row) CHECK(offset == 32);
}

TEST_CASE(
    "ACL memory: aclrtMalloc'd GM round-trips through a kernel, and bad arguments are refused") {
  constexpr std::size_t kInts = 64;
  std::array<int32_t, kInts> in{};
  std::array<int32_t, kInts> out{};
  for (std::size_t i = 0; i < kInts; ++i) in[i] = static_cast<int32_t>(i * 3 + 1);
  std::array<aclError, 11> codes{};
  Machine machine({.num_npus = 1, .cores_per_npu = 2, .timeout = 20'000ms});
  machine.run([&](int) {
    void* src = nullptr;
    void* dst = nullptr;
    codes[0] = aclrtMalloc(&src, sizeof(in), ACL_MEM_MALLOC_HUGE_FIRST);
    codes[1] = aclrtMalloc(&dst, sizeof(in), ACL_MEM_MALLOC_HUGE_FIRST);
    codes[2] = aclrtMemcpy(src, sizeof(in), in.data(), sizeof(in), ACL_MEMCPY_HOST_TO_DEVICE);
    // Each of two cores moves its half GM -> UB -> GM.
    cmx::ascend_sim::launch(2, [src, dst] {
      AscendC::TPipe pipe;
      AscendC::TBuf<> buf;
      pipe.InitBuffer(buf, kInts / 2 * sizeof(int32_t));
      const AscendC::LocalTensor<int32_t> tile = buf.Get<int32_t>();
      const uint64_t first = static_cast<uint64_t>(AscendC::GetBlockIdx()) * (kInts / 2);
      AscendC::GlobalTensor<int32_t> from, to;
      from.SetGlobalBuffer(static_cast<int32_t*>(src) + first, kInts / 2);
      to.SetGlobalBuffer(static_cast<int32_t*>(dst) + first, kInts / 2);
      AscendC::DataCopy(tile, from, kInts / 2);
      AscendC::DataCopy(to, tile, kInts / 2);
    });
    codes[3] = aclrtMemcpy(out.data(), sizeof(out), dst, sizeof(out), ACL_MEMCPY_DEVICE_TO_HOST);
    // Refused: a zero size, count > destMax, a "device" pointer that is host memory, a copy
    // past the end of the GM allocation.
    void* unused = nullptr;
    codes[4] = aclrtMalloc(&unused, 0, ACL_MEM_MALLOC_HUGE_FIRST);
    codes[5] = aclrtMemcpy(out.data(), 8, dst, 16, ACL_MEMCPY_DEVICE_TO_HOST);
    codes[6] = aclrtMemcpy(out.data(), sizeof(out), in.data(), 16, ACL_MEMCPY_DEVICE_TO_HOST);
    codes[7] = aclrtMemcpy(static_cast<std::byte*>(dst) + 192, 128, in.data(), 128,
                           ACL_MEMCPY_HOST_TO_DEVICE);
    codes[8] = aclrtFree(src);
    codes[9] = aclrtFree(src);  // a double free
    codes[10] = aclrtFree(dst);
  });
  for (std::size_t i = 0; i < 4; ++i) CHECK(codes[i] == ACL_SUCCESS);
  CHECK(out == in);
  for (std::size_t i = 4; i < 8; ++i) CHECK(codes[i] == ACL_ERROR_INVALID_PARAM);
  CHECK(codes[8] == ACL_SUCCESS);
  CHECK(codes[9] == ACL_ERROR_INVALID_PARAM);
  CHECK(codes[10] == ACL_SUCCESS);
  void* ptr = nullptr;
  CHECK(aclrtMalloc(&ptr, 64, ACL_MEM_MALLOC_HUGE_FIRST) == ACL_ERROR_UNINITIALIZE);
}

TEST_CASE("a scalar access that straddles a cache line is rejected") {
  struct Pair {
    int32_t a, b;
  };
  const auto error = error_of([] {
    on_one_npu(1, [] {
      auto* gm = static_cast<std::byte*>(aclshmem_malloc(128));
      cmx::ascend_sim::launch(1, [gm] {
        AscendC::GlobalTensor<Pair> pairs;  // 8-byte elements, 4-byte aligned: one at byte 60
        pairs.SetGlobalBuffer(reinterpret_cast<Pair*>(gm + 4), 15);
        (void)pairs.GetValue(7);
      });
    });
  });
  REQUIRE(error);
  CHECK(error->code == ErrorCode::invalid_argument);
  CHECK(error->message.find("cache line") != std::string::npos);
}

TEST_CASE("DataCacheCleanAndInvalid of one line covers the address to the end of its line") {
  // The documented behaviour for an address that is not 64-byte aligned: bytes of the line
  // before it are not invalidated, so they may stay stale.
  int32_t low_after = -1, high_after = -1;
  on_one_npu(2, [&] {
    auto* gm = static_cast<int32_t*>(aclshmem_malloc(64));  // one line: words 0 .. 15
    cmx::ascend_sim::launch(2, [&, gm] {
      AscendC::GlobalTensor<int32_t> line;
      line.SetGlobalBuffer(gm, 16);
      if (AscendC::GetBlockIdx() == 0) (void)line.GetValue(0);  // caches the whole line
      AscendC::SyncAll();
      if (AscendC::GetBlockIdx() == 1) {
        line.SetValue(0, 5);  // byte 0
        line.SetValue(8, 6);  // byte 32
        AscendC::DataCacheCleanAndInvalid<int32_t, AscendC::CacheLine::SINGLE_CACHE_LINE>(line);
      }
      AscendC::SyncAll();
      if (AscendC::GetBlockIdx() == 0) {
        AscendC::DataCacheCleanAndInvalid<int32_t, AscendC::CacheLine::SINGLE_CACHE_LINE>(line[8]);
        low_after = line.GetValue(0);
        high_after = line.GetValue(8);
      }
    });
  });
  CHECK(low_after == 0);  // before the address: still the stale copy
  CHECK(high_after == 6);
}

TEST_CASE("the end of a kernel completes its DMA and writes back its dirty cache lines") {
  // The simulation's assumption about the kernel's end (see Core::finish): what a kernel wrote
  // is in GM when the launch returns, even without a final PipeBarrier or clean.
  std::array<int32_t, 16> seen{};
  Machine machine({.num_npus = 1, .cores_per_npu = 1, .timeout = 20'000ms});
  machine.run([&](int) {
    void* gm = nullptr;
    if (aclrtMalloc(&gm, 64, ACL_MEM_MALLOC_HUGE_FIRST) != ACL_SUCCESS) return;  // seen stays 0
    cmx::ascend_sim::launch(1, [gm] {
      AscendC::TPipe pipe;
      AscendC::TBuf<> buf;
      pipe.InitBuffer(buf, 32);
      const AscendC::LocalTensor<int32_t> tile = buf.Get<int32_t>();
      for (uint32_t i = 0; i < 8; ++i) tile.SetValue(i, 70 + static_cast<int32_t>(i));
      AscendC::GlobalTensor<int32_t> out;
      out.SetGlobalBuffer(static_cast<int32_t*>(gm), 16);
      AscendC::DataCopy(out, tile, 8);  // words 0 .. 7, by DMA
      out.SetValue(12, 99);             // word 12, by scalar, never cleaned
    });
    (void)aclrtMemcpy(seen.data(), sizeof(seen), gm, sizeof(seen), ACL_MEMCPY_DEVICE_TO_HOST);
  });
  for (std::size_t i = 0; i < 8; ++i) CHECK(seen[i] == 70 + static_cast<int32_t>(i));
  CHECK(seen[12] == 99);
}
