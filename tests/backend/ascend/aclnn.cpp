// SPDX-License-Identifier: Apache-2.0
// cmx's Ascend host wrappers (backend/ascend/gemm.hpp, mla.hpp) over the clean-room aclnn shim,
// inside the emulated machine (one NPU, data in aclrtMalloc'd GM): each wrapper on random data
// against cmx's own CPU definition (cmx::reference), and the error paths.
//
// What this checks: the wrappers' layout conversions (the gather of dispatch's strided
// messages, the split of the 576-wide cache and queries), their argument plumbing (dtypes,
// shapes, formats, modes, workspace, stream, status checks), against the operators' documented
// semantics as sim/aclnn_ops.hpp implements them. It does not check the real CANN operators.
//
// Tolerances. The documented formula of QuantMatmulV4 / GroupedMatmulV4 multiplies the int32
// sum by the channel scale, then by the token scale; cmx's epilogue multiplies by the token
// scale first. Both products are binary32 roundings of the same exact product, so before the
// final bf16 rounding they differ by at most a few 2^-24 relative, and after it the two
// outputs are equal or one bf16 step apart: the tolerance is "at most one step". GroupedMatmul
// also takes its channel scales as bf16 (for bf16 output), which moves each scale by up to
// 2^-9 of itself; with bf16-representable scales the one-step bound holds, with any float
// scales the bound is 2^-7 relative (the scale's 2^-9, the two outputs' 2^-9 roundings, and
// slack). MLA: the simulation computes in binary64 and rounds the output once to bf16, cmx's
// reference in fp32: |o - ref| <= 2^-8 * sum_j p_j |v_j| (the bf16 rounding, 2^-9 of the
// output, with slack for the reference's fp32 sums), |lse - ref| <= 2^-16 max(1, |ref|).
//
// NOTES: doctest's assertions run on the test's own thread only: bodies inside Machine::run
// record what they see, and the checks come after run returns.
#include "sim/ascend/shim/aclnn.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cmx/attention/mla_decode.hpp"
#include "cmx/backend/ascend/gemm.hpp"
#include "cmx/backend/ascend/mla.hpp"
#include "cmx/core/bf16.hpp"
#include "cmx/ep/layout.hpp"
#include "cmx/reference/gemm.hpp"
#include "cmx/reference/mla.hpp"
#include "sim/ascend/machine.hpp"
#include "sim/ascend/shim/acl.hpp"
#include "sim_harness.hpp"

using cmx::bf16;
using cmx::ErrorCode;
using cmx::ascend::detail::DeviceBuffer;
using cmx::test::Caught;
using cmx::test::error_of;

namespace {

// Runs `body(stream)` on the host thread of a one-NPU machine, with a stream; rethrows what
// it throws.
void on_npu(const std::function<void(aclrtStream)>& body) {
  cmx::ascend_sim::Machine machine({.num_npus = 1, .cores_per_npu = 1});
  machine.run([&](int) {
    aclrtStream stream = nullptr;
    cmx::ascend::check_acl(aclrtCreateStream(&stream), "aclrtCreateStream", "test");
    try {
      body(stream);
    } catch (...) {
      (void)aclrtDestroyStream(stream);
      throw;
    }
    (void)aclrtDestroyStream(stream);
  });
}

// `values` in a new GM buffer.
template <class T>
DeviceBuffer upload(const std::vector<T>& values) {
  DeviceBuffer buffer(values.size() * sizeof(T), "test upload");
  cmx::ascend::detail::copy_to_device(buffer.get(), values.data(), values.size() * sizeof(T),
                                      "test upload");
  return buffer;
}

// `count` elements of GM at `gm`.
template <class T>
std::vector<T> download(const void* gm, std::size_t count) {
  std::vector<T> out(count);
  cmx::ascend::check_acl(
      aclrtMemcpy(out.data(), count * sizeof(T), gm, count * sizeof(T), ACL_MEMCPY_DEVICE_TO_HOST),
      "aclrtMemcpy", "test download");
  return out;
}

std::vector<std::int8_t> random_codes(std::mt19937& rng, std::size_t count) {
  std::uniform_int_distribution<int> code(-127, 127);
  std::vector<std::int8_t> out(count);
  for (auto& c : out) c = static_cast<std::int8_t>(code(rng));
  return out;
}

std::vector<float> random_scales(std::mt19937& rng, std::size_t count, float low, float high) {
  std::uniform_real_distribution<float> scale(low, high);
  std::vector<float> out(count);
  for (float& s : out) s = scale(rng);
  return out;
}

// Bf16 steps between a and b (both finite): 0 if equal, 1 if adjacent.
int bf16_steps(bf16 a, bf16 b) {
  const auto ordered = [](bf16 x) {  // a monotonic integer image of the bf16 order
    const int magnitude = x.bits & 0x7fff;
    return (x.bits & 0x8000) != 0 ? -magnitude : magnitude;
  };
  return std::abs(ordered(a) - ordered(b));
}

// The documented QuantMatmul / GroupedMatmul formula for one element, as the simulation
// computes it: (float(acc) * channel_scale) * token_scale in binary32, then bf16.
bf16 documented(std::int32_t acc, float channel_scale, float token_scale) {
  return bf16::from_float(static_cast<float>(acc) * channel_scale * token_scale);
}

}  // namespace

TEST_CASE(
    "ascend::gemm (aclnnQuantMatmulV4): cmx's epilogue within one bf16 step, the "
    "documented formula bitwise") {
  constexpr int m = 13, n = 48, k = 96;
  std::mt19937 rng(7);
  const std::vector<std::int8_t> a = random_codes(rng, m * k);              // [m, k]
  const std::vector<std::int8_t> w = random_codes(rng, n * k);              // [n, k]
  const std::vector<float> a_scales = random_scales(rng, m, 1e-3f, 2e-2f);  // [m]
  const std::vector<float> w_scales = random_scales(rng, n, 1e-3f, 1e-2f);  // [n]
  std::vector<bf16> c;                                                      // [m, n]
  on_npu([&](aclrtStream stream) {
    const DeviceBuffer a_gm = upload(a), w_gm = upload(w), as_gm = upload(a_scales),
                       ws_gm = upload(w_scales);
    const DeviceBuffer c_gm(std::size_t{m} * n * sizeof(bf16), "test");
    cmx::ascend::gemm({.a = a_gm.get(),
                       .a_scales = as_gm.get(),
                       .b = {.codes = w_gm.get(), .scales = ws_gm.get(), .n = n, .k = k},
                       .c = c_gm.get(),
                       .m = m},
                      stream);
    c = download<bf16>(c_gm.get(), std::size_t{m} * n);
  });
  const std::vector<std::int32_t> acc = cmx::reference::matmul_int8(a, w, m, n, k);
  const std::vector<bf16> cmx_c =
      cmx::reference::to_bf16(cmx::reference::dequantize(acc, a_scales, w_scales));
  int off_formula = 0, beyond_one_step = 0, one_step = 0;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      const std::size_t at = static_cast<std::size_t>(i) * n + j;
      off_formula += c[at] != documented(acc[at], w_scales[j], a_scales[i]);
      const int steps = bf16_steps(c[at], cmx_c[at]);
      beyond_one_step += steps > 1;
      one_step += steps == 1;
    }
  CHECK(off_formula == 0);
  CHECK(beyond_one_step == 0);
  MESSAGE(one_step, " of ", m * n, " outputs are one bf16 step from cmx's (the scale order)");
}

namespace {

// A receive area of FusedDispatch's messages in the static masked layout: [groups][segments]
// [capacity] messages of row_bytes int8 codes then a MessageMeta (with the token's scale),
// message_bytes apart. (Dispatch packs its segments; the operator's wrapper reaches rows only
// through MaskedRows::slot_index either way, and the CPU tests cover the packed layout.)
struct ReceiveArea {
  int groups, segments, capacity, k;
  std::size_t row_bytes, message_bytes;
  std::vector<std::int32_t> counts;  // [groups][segments]
  std::vector<std::byte> bytes;      // the area
  std::vector<std::int8_t> codes;    // [slots][k], what each valid slot holds
  std::vector<float> scales;         // [slots]

  ReceiveArea(std::mt19937& rng, int groups_, int segments_, int capacity_, int k_,
              std::vector<std::int32_t> counts_)
      : groups(groups_),
        segments(segments_),
        capacity(capacity_),
        k(k_),
        row_bytes((static_cast<std::size_t>(k_) + 31) / 32 * 32),
        message_bytes(row_bytes + sizeof(cmx::ep::MessageMeta)),
        counts(std::move(counts_)) {
    const std::size_t slots = static_cast<std::size_t>(groups * segments * capacity);
    bytes.assign(slots * message_bytes, std::byte{0x5a});  // junk where nothing was received
    codes = random_codes(rng, slots * static_cast<std::size_t>(k));
    scales = random_scales(rng, slots, 1e-3f, 2e-2f);
    for (std::size_t i = 0; i < slots; ++i) {
      std::memcpy(bytes.data() + i * message_bytes, codes.data() + i * k,
                  static_cast<std::size_t>(k));
      cmx::ep::MessageMeta meta{};
      meta.scale = scales[i];
      std::memcpy(bytes.data() + i * message_bytes + row_bytes, &meta, sizeof(meta));
    }
  }
  // The masked view of the area at `gm` (its copy in device memory).
  cmx::gemm::MaskedRows rows(const void* gm) const {
    const auto* base = static_cast<const std::byte*>(gm);
    return {.num_groups = groups,
            .num_segments = segments,
            .capacity = capacity,
            .k = k,
            .counts = counts,
            .codes = base,
            .row_stride = message_bytes,
            .scales = base + row_bytes + offsetof(cmx::ep::MessageMeta, scale),
            .scale_stride = message_bytes};
  }
};

// Runs ascend::grouped_gemm_masked on `area` with weights [groups][n][k] and float scales
// [groups][n] (converted to bf16 by grouped_scales_bf16); returns c [slots][n], whose slots
// without a row hold the sentinel 0xffff (a NaN) they started with.
std::vector<bf16> run_masked(const ReceiveArea& area, const std::vector<std::int8_t>& weights,
                             const std::vector<float>& scales, int n) {
  std::vector<bf16> c;
  const std::size_t out_elements =
      static_cast<std::size_t>(area.groups * area.segments * area.capacity) * n;
  on_npu([&](aclrtStream stream) {
    const DeviceBuffer area_gm = upload(area.bytes), w_gm = upload(weights),
                       s_gm = upload(cmx::ascend::grouped_scales_bf16(scales)),
                       c_gm = upload(std::vector<bf16>(out_elements, bf16{0xffff}));
    const cmx::gemm::MaskedRows rows = area.rows(area_gm.get());
    cmx::ascend::grouped_gemm_masked({.a = rows,
                                      .weights = {.codes = w_gm.get(),
                                                  .scales = s_gm.get(),
                                                  .num_groups = area.groups,
                                                  .n = n,
                                                  .k = area.k},
                                      .c = c_gm.get()},
                                     stream);
    c = download<bf16>(c_gm.get(), out_elements);
  });
  return c;
}

}  // namespace

TEST_CASE(
    "ascend::grouped_gemm_masked (aclnnGroupedMatmulV4) over dispatch's strided messages: "
    "gathered, computed, scattered back to their slots") {
  constexpr int groups = 3, segments = 2, capacity = 5, k = 80, n = 32;
  std::mt19937 rng(11);
  // Group 0: one segment empty; group 1: a full segment; group 2: nothing at all.
  const ReceiveArea area(rng, groups, segments, capacity, k, {2, 0, 5, 3, 0, 0});
  const std::vector<std::int8_t> weights = random_codes(rng, std::size_t{groups} * n * k);
  std::vector<float> scales = random_scales(rng, std::size_t{groups} * n, 1e-3f, 1e-2f);

  SUBCASE("bf16-representable channel scales: cmx within one step, the formula bitwise") {
    for (float& s : scales) s = bf16::from_float(s).to_float();
    const std::vector<bf16> c = run_masked(area, weights, scales, n);
    int off_formula = 0, beyond_one_step = 0, untouched_ok = 0, valid = 0;
    // The host copy's view: only its counts and slot indices are used here.
    const cmx::gemm::MaskedRows rows = area.rows(area.bytes.data());
    for (int g = 0; g < groups; ++g)
      for (int s = 0; s < segments; ++s)
        for (int slot = 0; slot < capacity; ++slot) {
          const std::size_t index = rows.slot_index(g, s, slot);
          if (slot >= rows.count(g, s)) {
            for (int j = 0; j < n; ++j) untouched_ok += c[index * n + j].bits == 0xffff;
            continue;
          }
          ++valid;
          const std::span<const std::int8_t> row(area.codes.data() + index * k, k);
          const std::span<const std::int8_t> w(weights.data() + std::size_t(g) * n * k,
                                               std::size_t(n) * k);
          const std::span<const float> w_scales(scales.data() + std::size_t(g) * n, n);
          const std::vector<std::int32_t> acc = cmx::reference::matmul_int8(row, w, 1, n, k);
          const std::vector<float> a_scale{area.scales[index]};
          const std::vector<bf16> expected =
              cmx::reference::to_bf16(cmx::reference::dequantize(acc, a_scale, w_scales));
          for (int j = 0; j < n; ++j) {
            const bf16 got = c[index * n + j];
            off_formula += got != documented(acc[j], w_scales[j], area.scales[index]);
            beyond_one_step += bf16_steps(got, expected[j]) > 1;
          }
        }
    CHECK(valid == 10);
    CHECK(off_formula == 0);
    CHECK(beyond_one_step == 0);
    CHECK(untouched_ok == (groups * segments * capacity - valid) * n);
  }
  SUBCASE("any float channel scales: cmx within 2^-7 relative (the bf16 scale conversion)") {
    const std::vector<bf16> c = run_masked(area, weights, scales, n);
    // The host copy's view: only its counts and slot indices are used here.
    const cmx::gemm::MaskedRows rows = area.rows(area.bytes.data());
    int outside = 0, checked = 0;
    for (int g = 0; g < groups; ++g)
      for (int s = 0; s < segments; ++s)
        for (int slot = 0; slot < rows.count(g, s); ++slot) {
          const std::size_t index = rows.slot_index(g, s, slot);
          const std::span<const std::int8_t> row(area.codes.data() + index * k, k);
          const std::span<const std::int8_t> w(weights.data() + std::size_t(g) * n * k,
                                               std::size_t(n) * k);
          const std::span<const float> w_scales(scales.data() + std::size_t(g) * n, n);
          const std::vector<float> expected =
              cmx::reference::dequantize(cmx::reference::matmul_int8(row, w, 1, n, k),
                                         std::vector<float>{area.scales[index]}, w_scales);
          for (int j = 0; j < n; ++j, ++checked) {
            const float reference = cmx::reference::round_to_bf16(expected[j]).to_float();
            outside += std::abs(c[index * n + j].to_float() - reference) >
                       std::ldexp(std::abs(reference), -7);
          }
        }
    CHECK(checked == 10 * n);
    CHECK(outside == 0);
  }
}

namespace {

struct MlaCaseSpec {
  int batch, num_queries, num_heads;
  std::vector<std::int32_t> seqlens;
  cmx::attention::Masking masking;
};

}  // namespace

TEST_CASE(
    "ascend::mla_decode (aclnnFusedInferAttentionScoreV4, MLA, paged) against cmx's "
    "reference: decode, MTP causal, unmasked") {
  using cmx::attention::Masking;
  constexpr int block_size = 16, num_blocks = 12, max_blocks = 6;
  const std::vector<MlaCaseSpec> cases = {
      {.batch = 2,
       .num_queries = 1,
       .num_heads = 16,
       .seqlens = {37, 1},
       .masking = Masking::causal},
      {.batch = 2,
       .num_queries = 3,
       .num_heads = 8,
       .seqlens = {50, 3},
       .masking = Masking::causal},
      {.batch = 1, .num_queries = 2, .num_heads = 4, .seqlens = {90}, .masking = Masking::none},
  };
  for (const MlaCaseSpec& spec : cases) {
    CAPTURE(spec.num_queries);
    CAPTURE(spec.num_heads);
    std::mt19937 rng(static_cast<unsigned>(spec.num_queries * 131 + spec.num_heads));
    std::uniform_real_distribution<float> value(-1.0f, 1.0f);
    const auto random_bf16 = [&](std::size_t count) {
      std::vector<bf16> out(count);
      for (bf16& x : out) x = bf16::from_float(value(rng));
      return out;
    };
    const cmx::attention::MlaDecodeShape shape{spec.batch, spec.num_queries, spec.num_heads};
    const std::size_t rows = static_cast<std::size_t>(spec.batch) * shape.rows();
    const std::vector<bf16> q = random_bf16(rows * cmx::attention::kKvDim);
    const std::vector<bf16> cache =
        random_bf16(std::size_t{num_blocks} * block_size * cmx::attention::kKvDim);
    std::vector<std::int32_t> table(std::size_t(spec.batch) * max_blocks);
    for (std::size_t i = 0; i < table.size(); ++i)  // scattered blocks, in the table's order
      table[i] = static_cast<std::int32_t>((i * 5 + 3) % num_blocks);
    const float softmax_scale = 1.0f / std::sqrt(576.0f);
    std::vector<bf16> o;
    std::vector<float> lse;
    on_npu([&](aclrtStream stream) {
      const DeviceBuffer q_gm = upload(q), cache_gm = upload(cache), table_gm = upload(table);
      const std::size_t cached_rows = std::size_t{num_blocks} * block_size;
      const DeviceBuffer latent(cached_rows * cmx::attention::kLatentDim * sizeof(bf16), "test");
      const DeviceBuffer rope(cached_rows * cmx::attention::kRopeDim * sizeof(bf16), "test");
      const DeviceBuffer o_gm(rows * cmx::attention::kLatentDim * sizeof(bf16), "test");
      const DeviceBuffer lse_gm(rows * sizeof(float), "test");
      const cmx::ascend::MlaDeviceCache split{.latent = latent.get(),
                                              .rope = rope.get(),
                                              .num_blocks = num_blocks,
                                              .block_size = block_size};
      cmx::ascend::split_kv_cache(cache_gm.get(), split);
      cmx::ascend::mla_decode({.shape = shape,
                               .q = q_gm.get(),
                               .cache = split,
                               .block_table = table_gm.get(),
                               .max_blocks_per_seq = max_blocks,
                               .cache_seqlens = spec.seqlens,
                               .softmax_scale = softmax_scale,
                               .masking = spec.masking,
                               .o = o_gm.get(),
                               .lse = lse_gm.get()},
                              stream);
      o = download<bf16>(o_gm.get(), rows * cmx::attention::kLatentDim);
      lse = download<float>(lse_gm.get(), rows);
    });
    const cmx::reference::MlaDecodeResult expected =
        cmx::reference::mla_decode({.shape = shape,
                                    .q = q,
                                    .kv_cache = cache,
                                    .block_size = block_size,
                                    .block_table = table,
                                    .max_blocks_per_seq = max_blocks,
                                    .cache_seqlens = spec.seqlens,
                                    .softmax_scale = softmax_scale,
                                    .masking = spec.masking});
    int o_outside = 0, lse_outside = 0;
    for (std::size_t i = 0; i < o.size(); ++i)
      o_outside += std::abs(o[i].to_float() - expected.o[i]) >
                   std::ldexp(expected.weighted_abs_v[i], -8) + 1e-7f;
    for (std::size_t i = 0; i < lse.size(); ++i)
      lse_outside += std::abs(lse[i] - expected.lse[i]) >
                     std::ldexp(std::max(1.0f, std::abs(expected.lse[i])), -16);
    CHECK(o_outside == 0);
    CHECK(lse_outside == 0);
  }
}

TEST_CASE(
    "aclnn wrappers raise cmx::Error naming the operator and its status for what the "
    "operator refuses, and check their own arguments first") {
  std::mt19937 rng(3);
  const std::vector<std::int8_t> a = random_codes(rng, 4 * 32), w = random_codes(rng, 16 * 32);
  const std::vector<float> a_scales(4, 0.01f), w_scales(16, 0.01f);
  std::optional<Caught> host_operand, misaligned_out, bad_k, bad_heads, no_key, bad_block;
  on_npu([&](aclrtStream stream) {
    const DeviceBuffer a_gm = upload(a), w_gm = upload(w), as_gm = upload(a_scales),
                       ws_gm = upload(w_scales);
    const DeviceBuffer c_gm(4 * 16 * sizeof(bf16) + 64, "test");
    cmx::ascend::GemmArgs args{.a = a_gm.get(),
                               .a_scales = as_gm.get(),
                               .b = {.codes = w_gm.get(), .scales = ws_gm.get(), .n = 16, .k = 32},
                               .c = c_gm.get(),
                               .m = 4};
    // A host pointer where device memory is due: the operator's first phase refuses it.
    host_operand = error_of([&] {
      cmx::ascend::GemmArgs host = args;
      host.a = a.data();
      cmx::ascend::gemm(host, stream);
    });
    // An output off the 32-byte alignment aclCreateTensor asks for.
    misaligned_out = error_of([&] {
      cmx::ascend::GemmArgs shifted = args;
      shifted.c = static_cast<std::byte*>(c_gm.get()) + 2;
      cmx::ascend::gemm(shifted, stream);
    });
    bad_k = error_of([&] {
      cmx::ascend::GemmArgs wide = args;
      wide.b.k = 70000;
      cmx::ascend::gemm(wide, stream);
    });
    const cmx::ascend::MlaDecodeArgs mla{
        .shape = {1, 2, 6},
        .q = a_gm.get(),
        .cache = {.latent = w_gm.get(), .rope = w_gm.get(), .num_blocks = 1, .block_size = 16},
        .block_table = a_gm.get(),
        .max_blocks_per_seq = 1,
        .cache_seqlens = {},
        .softmax_scale = 0.1f,
        .masking = cmx::attention::Masking::causal,
        .o = c_gm.get(),
        .lse = c_gm.get()};
    bad_heads = error_of([&] { cmx::ascend::mla_decode(mla, stream); });
    const std::vector<std::int32_t> one{1};
    no_key = error_of([&] {
      cmx::ascend::MlaDecodeArgs short_request = mla;
      short_request.shape.num_heads = 4;
      short_request.cache_seqlens = one;  // 1 cached token for 2 causal query positions
      cmx::ascend::mla_decode(short_request, stream);
    });
    bad_block = error_of([&] {
      cmx::ascend::MlaDecodeArgs odd = mla;
      odd.shape.num_heads = 4;
      odd.cache.block_size = 24;
      cmx::ascend::mla_decode(odd, stream);
    });
  });
  for (const auto* caught : {&host_operand, &misaligned_out}) {
    REQUIRE(caught->has_value());
    CHECK((*caught)->code == ErrorCode::invalid_argument);
    CHECK((*caught)->message.find("aclnnQuantMatmulV4GetWorkspaceSize") != std::string::npos);
    CHECK((*caught)->message.find("161002") != std::string::npos);
  }
  for (const auto* caught : {&bad_k, &bad_heads, &no_key, &bad_block}) {
    REQUIRE(caught->has_value());
    CHECK((*caught)->code == ErrorCode::invalid_argument);
  }
  CHECK(bad_heads->message.find("h_q 6") != std::string::npos);
  CHECK(no_key->message.find("sees a key") != std::string::npos);
  CHECK(bad_block->message.find("block_size 24") != std::string::npos);
}

TEST_CASE(
    "aclnn: the simulated operators refuse every argument outside their subset, and the "
    "second phase checks workspace and stream") {
  using cmx::ascend::detail::make_list;
  using cmx::ascend::detail::make_tensor;
  std::vector<int> quant, grouped, attention;  // statuses, in the order of the calls below
  on_npu([&](aclrtStream stream) {
    const DeviceBuffer x1(64 * 64, "test"), x2(64 * 64, "test"), scale(64 * 4, "test"),
        token(64 * 4, "test"), out(64 * 64 * 2, "test");
    const auto t_x1 = make_tensor(x1.get(), ACL_INT8, {4, 32}, "test");
    const auto t_x2 = make_tensor(x2.get(), ACL_INT8, {16, 32}, "test");
    const auto t_scale = make_tensor(scale.get(), ACL_FLOAT, {16}, "test");
    const auto t_token = make_tensor(token.get(), ACL_FLOAT, {4}, "test");
    const auto t_out = make_tensor(out.get(), ACL_BF16, {4, 16}, "test");
    const auto t_out_f16 = make_tensor(out.get(), ACL_FLOAT16, {4, 16}, "test");
    const std::int64_t nz_dims[] = {16, 32}, nz_strides[] = {32, 1};
    const cmx::ascend::detail::Tensor t_x2_nz(aclCreateTensor(
        nz_dims, 2, ACL_INT8, nz_strides, 0, ACL_FORMAT_FRACTAL_NZ, nz_dims, 2, x2.get()));
    std::uint64_t size = 0;
    aclOpExecutor* executor = nullptr;
    const auto qmm = [&](const aclTensor* x2_arg, const aclTensor* offset, const aclTensor* bias,
                         const aclTensor* token_arg, bool transpose_x1, const aclTensor* out_arg) {
      executor = nullptr;
      const int status =
          aclnnQuantMatmulV4GetWorkspaceSize(t_x1.get(), x2_arg, t_scale.get(), offset, token_arg,
                                             bias, transpose_x1, true, out_arg, &size, &executor);
      delete executor;  // the simulation's executor; a refused call makes none
      return status;
    };
    quant.push_back(qmm(t_x2.get(), nullptr, nullptr, t_token.get(), false, t_out.get()));
    quant.push_back(qmm(t_x2.get(), t_scale.get(), nullptr, t_token.get(), false, t_out.get()));
    quant.push_back(qmm(t_x2.get(), nullptr, t_scale.get(), t_token.get(), false, t_out.get()));
    quant.push_back(qmm(t_x2.get(), nullptr, nullptr, nullptr, false, t_out.get()));
    quant.push_back(qmm(t_x2.get(), nullptr, nullptr, t_token.get(), true, t_out.get()));
    quant.push_back(qmm(t_x2_nz.get(), nullptr, nullptr, t_token.get(), false, t_out.get()));
    quant.push_back(qmm(t_x2.get(), nullptr, nullptr, t_token.get(), false, t_out_f16.get()));
    quant.push_back(qmm(nullptr, nullptr, nullptr, t_token.get(), false, t_out.get()));
    // The second phase: a wrong workspace size, no stream.
    const DeviceBuffer workspace(4 * 16 * 4, "test");
    executor = nullptr;
    (void)aclnnQuantMatmulV4GetWorkspaceSize(t_x1.get(), t_x2.get(), t_scale.get(), nullptr,
                                             t_token.get(), nullptr, false, true, t_out.get(),
                                             &size, &executor);
    quant.push_back(aclnnQuantMatmulV4(workspace.get(), size - 1, executor, stream));
    (void)aclnnQuantMatmulV4GetWorkspaceSize(t_x1.get(), t_x2.get(), t_scale.get(), nullptr,
                                             t_token.get(), nullptr, false, true, t_out.get(),
                                             &size, &executor);
    quant.push_back(aclnnQuantMatmulV4(workspace.get(), size, executor, nullptr));

    // GroupedMatmulV4: 2 groups of 2 rows, k 32, n 16.
    const DeviceBuffer group_list = upload(std::vector<std::int64_t>{2, 1});  // sums to 3, not 4
    const DeviceBuffer good_list = upload(std::vector<std::int64_t>{2, 2});
    const DeviceBuffer bf16_scales(2 * 16 * 2, "test");
    const auto gmm = [&](std::int64_t split, std::int64_t type, std::int64_t list_type,
                         std::int64_t act, aclDataType scale_dtype, const void* list) {
      const auto x = make_list({make_tensor(x1.get(), ACL_INT8, {4, 32}, "t").release()}, "t");
      const auto w = make_list({make_tensor(x2.get(), ACL_INT8, {2, 32, 16}, "t").release()}, "t");
      const auto s =
          make_list({make_tensor(bf16_scales.get(), scale_dtype, {2, 16}, "t").release()}, "t");
      const auto p = make_list({make_tensor(token.get(), ACL_FLOAT, {4}, "t").release()}, "t");
      const auto y = make_list({make_tensor(out.get(), ACL_BF16, {4, 16}, "t").release()}, "t");
      const auto g = make_tensor(list, ACL_INT64, {2}, "t");
      executor = nullptr;
      int status = aclnnGroupedMatmulV4GetWorkspaceSize(
          x.get(), w.get(), nullptr, s.get(), nullptr, nullptr, nullptr, p.get(), g.get(), nullptr,
          nullptr, nullptr, split, type, list_type, act, y.get(), nullptr, nullptr, &size,
          &executor);
      if (status == ACLNN_SUCCESS) {
        const DeviceBuffer ws(size, "t");
        status = aclnnGroupedMatmulV4(ws.get(), size, executor, stream);
      }
      return status;
    };
    grouped.push_back(gmm(3, 0, 1, 0, ACL_BF16, good_list.get()));
    grouped.push_back(gmm(3, 2, 1, 0, ACL_BF16, good_list.get()));   // k-axis grouping
    grouped.push_back(gmm(3, 0, 2, 0, ACL_BF16, good_list.get()));   // groupListType 2
    grouped.push_back(gmm(3, 0, 1, 1, ACL_BF16, good_list.get()));   // an activation
    grouped.push_back(gmm(0, 0, 1, 0, ACL_BF16, good_list.get()));   // multi-tensor out
    grouped.push_back(gmm(3, 0, 1, 0, ACL_FLOAT, good_list.get()));  // float32 scale: f16 out
    grouped.push_back(gmm(3, 0, 1, 0, ACL_BF16, group_list.get()));  // counts sum to 3 of 4 rows
    grouped.push_back(gmm(3, 0, 0, 0, ACL_BF16, group_list.get()));  // cumulative, ends at 1

    // FusedInferAttentionScoreV4: B 1, S 2, N 1, one block of 16.
    const DeviceBuffer q(2 * 512 * 2, "t"), qr(2 * 64 * 2, "t"), kv(16 * 512 * 2, "t"),
        kr(16 * 64 * 2, "t"), table = upload(std::vector<std::int32_t>{0}), o(2 * 512 * 2, "t"),
                              lse(2 * 4, "t"), zero_mask(2048 * 2048, "t");
    const std::int64_t two[] = {2};
    const cmx::ascend::detail::IntArray lengths(aclCreateIntArray(two, 1));
    struct Fia {
      const char* layout = "BSND";
      std::int64_t kv_heads = 1, sparse = 0, precise = 0, block = 16;
      bool lse_flag = true;
      bool with_pse = false;
    };
    const auto fia = [&](const Fia& f) {
      const auto t_q = make_tensor(q.get(), ACL_BF16, {1, 2, 1, 512}, "t");
      const auto t_qr = make_tensor(qr.get(), ACL_BF16, {1, 2, 1, 64}, "t");
      const auto key =
          make_list({make_tensor(kv.get(), ACL_BF16, {1, 16, 512}, "t").release()}, "t");
      const auto value =
          make_list({make_tensor(kv.get(), ACL_BF16, {1, 16, 512}, "t").release()}, "t");
      const auto t_kr = make_tensor(kr.get(), ACL_BF16, {1, 16, 64}, "t");
      const auto t_table = make_tensor(table.get(), ACL_INT32, {1, 1}, "t");
      const auto t_o = make_tensor(o.get(), ACL_BF16, {1, 2, 1, 512}, "t");
      const auto t_lse = make_tensor(lse.get(), ACL_FLOAT, {1, 1, 2, 1}, "t");
      const auto t_mask = make_tensor(zero_mask.get(), ACL_INT8, {2048, 2048}, "t");
      std::string layout = f.layout;
      executor = nullptr;
      int status = aclnnFusedInferAttentionScoreV4GetWorkspaceSize(
          t_q.get(), key.get(), value.get(), f.with_pse ? t_o.get() : nullptr,
          f.sparse == 3 ? t_mask.get() : nullptr, nullptr, lengths.get(), nullptr, nullptr, nullptr,
          nullptr, nullptr, nullptr, nullptr, t_table.get(), nullptr, nullptr, nullptr, nullptr,
          nullptr, nullptr, nullptr, nullptr, nullptr, t_qr.get(), t_kr.get(), nullptr, nullptr,
          nullptr, 1, 0.05, 2147483647, 2147483647, layout.data(), f.kv_heads, f.sparse, f.precise,
          f.block, 0, f.lse_flag, 0, 0, 0, t_o.get(), f.lse_flag ? t_lse.get() : nullptr, &size,
          &executor);
      if (status == ACLNN_SUCCESS) {
        const DeviceBuffer ws(size, "t");
        status = aclnnFusedInferAttentionScoreV4(ws.get(), size, executor, stream);
      }
      return status;
    };
    attention.push_back(fia({}));
    attention.push_back(fia({.layout = "BNSD"}));
    attention.push_back(fia({.kv_heads = 2}));
    attention.push_back(fia({.precise = 1}));
    attention.push_back(fia({.block = 32}));  // not the cache's block size
    attention.push_back(fia({.with_pse = true}));
    attention.push_back(fia({.sparse = 2}));
    attention.push_back(fia({.sparse = 3}));  // a mask of zeros is not the causal template
  });
  const int ok = ACLNN_SUCCESS, invalid = ACLNN_ERR_PARAM_INVALID, null = ACLNN_ERR_PARAM_NULLPTR;
  CHECK(quant == std::vector<int>{ok, invalid, invalid, invalid, invalid, invalid, invalid, null,
                                  invalid, null});
  CHECK(grouped ==
        std::vector<int>{ok, invalid, invalid, invalid, invalid, invalid, invalid, invalid});
  CHECK(attention ==
        std::vector<int>{ok, invalid, invalid, invalid, invalid, invalid, invalid, invalid});
}
