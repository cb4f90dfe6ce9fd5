// SPDX-License-Identifier: Apache-2.0
// A device with only the members the concept requires, and one that copies every staged tile:
// the kernels run on it unchanged, so they ask for nothing more than the trait and never rely
// on zero-copy staging or on block order. The same device with only the int8 matrix members
// added (the portable scalar tile product) runs the GEMM kernels unchanged.
#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "../attention/mla_harness.hpp"
#include "../ep/ep_harness.hpp"
#include "../gemm/gemm_harness.hpp"
#include "cmx/device/device.hpp"
#include "cmx/device/int8_matmul.hpp"
#include "cmx/device/int8_matmul_portable.hpp"
#include "cmx/device/int8_panel_layout.hpp"
#include "cmx/gemm/gemm.hpp"

namespace {

// One rank, plain memory, blocks run in reverse order, tiles staged by copy into 64 KiB.
class MinimalDevice {
 public:
  static constexpr std::size_t kLocalMemoryBytes = 64 * 1024;
  struct Symmetric {
    std::byte* base = nullptr;
    std::size_t bytes = 0;
  };

  int rank() const { return 0; }
  int world_size() const { return 1; }
  int max_blocks() const { return 3; }

  Symmetric allocate_symmetric(std::size_t bytes) {
    heap_->push_back(std::vector<std::byte>(bytes + cmx::kSymmetricAlignment));
    std::byte* raw = heap_->back().data();
    std::byte* aligned = raw + (cmx::kSymmetricAlignment -
                                reinterpret_cast<std::uintptr_t>(raw) % cmx::kSymmetricAlignment);
    return {aligned, bytes};
  }
  std::byte* local(const Symmetric& sym) const { return sym.base; }
  void write_local(const Symmetric& sym, std::size_t offset, std::span<const std::byte> bytes) {
    REQUIRE(offset + bytes.size() <= sym.bytes);
    if (!bytes.empty()) std::memcpy(sym.base + offset, bytes.data(), bytes.size());
  }
  void read_local(const Symmetric& sym, std::size_t offset, std::span<std::byte> out) const {
    REQUIRE(offset + out.size() <= sym.bytes);
    if (!out.empty()) std::memcpy(out.data(), sym.base + offset, out.size());
  }
  void put(const Symmetric& sym, int, std::size_t offset, std::span<const std::byte> bytes) {
    REQUIRE(offset + bytes.size() <= sym.bytes);
    std::memcpy(sym.base + offset, bytes.data(), bytes.size());
  }
  void signal(const Symmetric& sym, int, std::size_t offset, std::uint64_t seq,
              std::int64_t payload) {
    std::memcpy(sym.base + offset + 8, &payload, 8);
    std::memcpy(sym.base + offset, &seq, 8);
  }
  std::int64_t wait(const Symmetric& sym, std::size_t offset, std::uint64_t seq,
                    const cmx::WaitSite&) {
    std::uint64_t seen;
    std::memcpy(&seen, sym.base + offset, 8);
    if (seen < seq) cmx::detail::fail(cmx::ErrorCode::timeout, "single rank: flag never raised");
    std::int64_t payload;
    std::memcpy(&payload, sym.base + offset + 8, 8);
    return payload;
  }
  void barrier() {}
  template <class Body>
  void launch(int num_blocks, Body&& body) {
    for (int index = num_blocks - 1; index >= 0; --index) {
      cmx::LocalArena arena(std::span<std::byte>(local_memory_->data(), kLocalMemoryBytes));
      cmx::Block block{index, num_blocks, arena};
      body(block);
    }
  }
  template <class T>
  std::span<const T> stage_in(cmx::LocalArena& local, const T* global, std::size_t count) {
    std::span<T> tile = local.take<T>(count);
    std::memcpy(tile.data(), global, tile.size_bytes());
    return tile;
  }
  template <class T>
  std::span<const T> stage_in_peer(cmx::LocalArena& local, const Symmetric& sym, int,
                                   std::size_t offset, std::size_t count) {
    REQUIRE(offset + count * sizeof(T) <= sym.bytes);
    return stage_in(local, reinterpret_cast<const T*>(sym.base + offset), count);
  }
  template <class T>
  void prefetch(const T*, std::size_t) {}
  template <class T>
  void load(std::span<T> tile, const T* global) {
    std::memcpy(tile.data(), global, tile.size_bytes());
  }
  template <class T>
  void store(T* global, std::span<const T> tile) {
    std::memcpy(global, tile.data(), tile.size_bytes());
  }
  float quantize_row_int8(std::span<const cmx::bf16> row, std::span<std::int8_t> out) {
    return cmx::quantize_row_int8(row, out);
  }
  void accumulate_weighted_rows(std::span<float> acc,
                                std::span<const std::span<const cmx::bf16>> rows,
                                std::span<const float> weights) {
    cmx::accumulate_weighted_rows(acc, rows, weights);
  }
  void round_row_to_bf16(std::span<const float> in, std::span<cmx::bf16> out) {
    cmx::round_row_to_bf16(in, out);
  }

 private:
  struct alignas(cmx::kTileAlignment) LocalMemory {
    std::byte bytes[kLocalMemoryBytes];
    std::byte* data() { return bytes; }
  };
  std::shared_ptr<std::vector<std::vector<std::byte>>> heap_ =
      std::make_shared<std::vector<std::vector<std::byte>>>();
  std::shared_ptr<LocalMemory> local_memory_ = std::make_shared<LocalMemory>();
};

static_assert(cmx::Device<MinimalDevice>);

struct NotADevice {
  int rank() const { return 0; }
};
static_assert(!cmx::Device<NotADevice>);

// MinimalDevice plus only the members cmx::Int8MatmulDevice requires, on the portable scalar
// tile product and the CPU panel layout.
class MinimalMatmulDevice : public MinimalDevice {
 public:
  static constexpr int kInt8PanelColumns = cmx::int8_panel::kColumns;
  std::size_t int8_panel_bytes(int k) const { return cmx::int8_panel::bytes(k); }
  std::string_view int8_panel_format() const { return cmx::int8_panel::kFormat; }
  void pack_int8_panel(std::span<const std::int8_t> rows, int k, std::span<std::byte> panel) {
    cmx::int8_panel::pack(rows, k, panel);
  }
  void int8_tile_product(const cmx::Int8TileProduct& product) {
    cmx::portable::int8_tile_product(product);
  }
};

static_assert(cmx::Int8MatmulDevice<MinimalMatmulDevice>);
static_assert(!cmx::Int8MatmulDevice<MinimalDevice>);

}  // namespace

TEST_CASE("dispatch and combine run on a device with only the required members") {
  namespace ep = cmx::ep;
  for (const auto precision : {ep::DispatchPrecision::int8, ep::DispatchPrecision::bf16})
    for (const auto source : {ep::CombineSource::caller_memory, ep::CombineSource::buffer}) {
      const ep::Config config{.num_experts = 8,
                              .max_tokens_per_rank = 12,
                              .hidden = 2048,
                              .num_topk = 4,
                              .precision = precision,
                              .combine_source = source};
      const auto inputs = cmx::test::make_inputs(config, 1, {11}, cmx::test::Routing::uniform, 4);
      const auto expected = cmx::reference::dispatch(config, 1, inputs);
      MinimalDevice device;
      ep::Buffer<MinimalDevice> buffer(device, config);
      for (int round = 0; round < 3; ++round) {
        const std::string mismatch =
            cmx::test::checked_round(device, buffer, inputs, expected, cmx::test::no_pause);
        CHECK_MESSAGE(mismatch.empty(), mismatch);
      }
    }
}

TEST_CASE("MLA decode and the cache write run on a device with only the required members") {
  namespace attention = cmx::attention;
  // 64 KiB of local memory makes smaller tiles; the kernels use the portable tile operations.
  static_assert(!cmx::Bf16AttentionDevice<MinimalDevice>);
  cmx::test::MlaProblem problem = cmx::test::make_problem(
      {.batch = 3, .num_queries = 2, .num_heads = 16, .seqlens = {700, 0, 65}});
  const std::size_t max_blocks = static_cast<std::size_t>(problem.max_blocks_per_seq);
  MinimalDevice device;
  for (const std::size_t b : {0u, 2u}) {  // the last token of each non-empty request goes in
    std::vector<cmx::bf16> latent(attention::kLatentDim), rope(attention::kRopeDim);
    for (std::size_t i = 0; i < latent.size(); ++i)
      latent[i] = cmx::bf16::from_float(0.01f * (i % 97) - b);
    for (std::size_t i = 0; i < rope.size(); ++i)
      rope[i] = cmx::bf16::from_float(0.02f * (i % 89) + b);
    const std::int32_t cached = problem.seqlens[b] - 1;
    attention::append_kv(
        device, {.latent = latent,
                 .rope = rope,
                 .batch = 1,
                 .num_new = 1,
                 .kv_cache = problem.kv_cache,
                 .block_size = problem.c.block_size,
                 .block_table = std::span(problem.block_table).subspan(b * max_blocks, max_blocks),
                 .max_blocks_per_seq = problem.max_blocks_per_seq,
                 .cache_seqlens = std::span(&cached, 1)});
  }
  const cmx::reference::MlaDecodeResult expected = cmx::reference::mla_decode(problem.args());
  attention::mla_decode(device, problem.args());
  const std::string mismatch = cmx::test::check_against_reference(problem, expected);
  CHECK_MESSAGE(mismatch.empty(), mismatch);

  // A plan cut for the TBB device's larger local memory is refused, before anything runs.
  cmx::tbb_backend::World world({.num_ranks = 1});
  world.run([&](cmx::tbb_backend::Device tbb) {
    attention::MlaDecodePlan plan(tbb, problem.shape(), problem.seqlens);
    CHECK_THROWS_WITH_AS(attention::mla_decode(device, plan, problem.args()),
                         doctest::Contains("local memory"), cmx::Error);
  });
}

TEST_CASE(
    "the GEMM kernels run on a device with only the required matrix members, bitwise as on TBB") {
  namespace gemm = cmx::gemm;
  using cmx::bf16;
  std::mt19937 random(91);
  constexpr int kM = 45, kHidden = 160, kIntermediate = 112;
  const auto a = cmx::test::random_codes(kM * kHidden, cmx::test::Codes::uniform, random);
  const auto a_scales = cmx::test::random_scales(kM, 1e-3f, 1e-1f, random);
  const auto gate =
      cmx::test::random_weights(kIntermediate, kHidden, cmx::test::Codes::uniform, random);
  const auto up =
      cmx::test::random_weights(kIntermediate, kHidden, cmx::test::Codes::uniform, random);
  const auto down =
      cmx::test::random_weights(kHidden, kIntermediate, cmx::test::Codes::uniform, random);
  const std::vector<std::int32_t> counts = {20, 0, 25};  // 1 group, 3 segments of capacity 25 ...
  const std::vector<std::int8_t> slots_codes = [&] {     // ... over rows of `a` (and 30 more)
    std::vector<std::int8_t> codes(75 * kHidden);
    std::copy(a.begin(), a.end(), codes.begin());
    return codes;
  }();
  const std::vector<float> slots_scales = [&] {
    std::vector<float> scales(75, 1.0f);
    std::copy(a_scales.begin(), a_scales.end(), scales.begin());
    return scales;
  }();
  const gemm::MaskedRows rows{.num_groups = 1,
                              .num_segments = 3,
                              .capacity = 25,
                              .k = kHidden,
                              .counts = counts,
                              .codes = reinterpret_cast<const std::byte*>(slots_codes.data()),
                              .row_stride = kHidden,
                              .scales = reinterpret_cast<const std::byte*>(slots_scales.data()),
                              .scale_stride = sizeof(float)};

  // Every kernel on a device, its outputs in order: dense (bf16), masked (float), FFN (bf16).
  struct Outputs {
    std::vector<bf16> dense, ffn;
    std::vector<float> masked;
  };
  const auto run_all = [&](auto& device) {
    Outputs out{std::vector<bf16>(kM * kIntermediate), std::vector<bf16>(75 * kHidden),
                std::vector<float>(75 * kIntermediate)};
    const gemm::PackedWeights gate_packed = gemm::pack_weights(
        device, {.codes = gate.codes, .scales = gate.scales, .n = kIntermediate, .k = kHidden});
    gemm::gemm(device,
               gemm::GemmArgs<bf16>{
                   .a = a, .a_scales = a_scales, .b = gate_packed, .c = out.dense, .m = kM});
    gemm::grouped_gemm_masked(
        device, gemm::MaskedGemmArgs<float>{
                    .a = rows, .weights = std::span(&gate_packed, 1), .c = out.masked});
    std::vector<gemm::ExpertWeights> experts;
    experts.push_back(
        {gemm::pack_weights(
             device,
             {.codes = gate.codes, .scales = gate.scales, .n = kIntermediate, .k = kHidden}),
         gemm::pack_weights(
             device, {.codes = up.codes, .scales = up.scales, .n = kIntermediate, .k = kHidden}),
         gemm::pack_weights(
             device,
             {.codes = down.codes, .scales = down.scales, .n = kHidden, .k = kIntermediate})});
    gemm::ExpertFfnWorkspace workspace(rows.num_slots(), kIntermediate);
    gemm::expert_ffn(device,
                     {.x = rows, .experts = experts, .out = out.ffn, .workspace = workspace});
    return out;
  };
  MinimalMatmulDevice minimal;
  const Outputs got = run_all(minimal);
  Outputs expected;
  cmx::test::run_on_tier(cmx::cpu::best_isa(cmx::cpu::KernelFamily::int8_matmul), 2,
                         [&](cmx::test::Device& device) { expected = run_all(device); });
  CHECK_MESSAGE(cmx::test::first_difference(got.dense, expected.dense, kIntermediate).empty(),
                "dense");
  CHECK_MESSAGE(cmx::test::first_difference(got.masked, expected.masked, kIntermediate).empty(),
                "masked");
  CHECK_MESSAGE(cmx::test::first_difference(got.ffn, expected.ffn, kHidden).empty(), "ffn");
  // And the dense output is the reference's.
  const auto reference = cmx::reference::to_bf16(cmx::reference::dequantize(
      cmx::reference::matmul_int8(a, gate.codes, kM, kIntermediate, kHidden), a_scales,
      gate.scales));
  CHECK(cmx::test::first_difference(got.dense, reference, kIntermediate).empty());
}
