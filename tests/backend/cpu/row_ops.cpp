// SPDX-License-Identifier: Apache-2.0
// The TBB backend's own row operations and copies give exactly what the portable ones give.
#include "cmx/backend/cpu/row_ops.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "cmx/backend/cpu/isa.hpp"
#include "cmx/backend/cpu/streaming_copy.hpp"

namespace {

using cmx::bf16;

// A bf16 from random bits: every class of value (normal, subnormal, zero, Inf, NaN) occurs.
bf16 random_bf16(std::mt19937& random) {
  return bf16{static_cast<std::uint16_t>(random() & 0xffffu)};
}

}  // namespace

TEST_CASE("the backend's weighted accumulation is the portable one, bit for bit") {
  std::mt19937 random(11);
  const float special_weights[] = {0.3f,   -1.0f, 0.0f,
                                   1e-30f, 3e38f, std::numeric_limits<float>::infinity()};
  std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
  // Sizes at and around the 64-element step and its tail; 0 to 16 rows (K's range).
  for (const std::size_t size : {0u, 1u, 15u, 16u, 63u, 64u, 65u, 100u, 7168u}) {
    for (const std::size_t num_rows : {0u, 1u, 2u, 3u, 8u, 16u}) {
      std::vector<std::vector<bf16>> rows(num_rows, std::vector<bf16>(size));
      for (auto& row : rows)
        for (bf16& value : row) value = random_bf16(random);
      std::vector<float> weights(num_rows);
      for (std::size_t k = 0; k < num_rows; ++k)
        weights[k] = k % 2 == 0 ? special_weights[(k / 2 + size) % std::size(special_weights)]
                                : uniform(random);
      const std::vector<std::span<const bf16>> tiles(rows.begin(), rows.end());
      std::vector<float> expected(size), actual(size);
      for (std::size_t i = 0; i < size; ++i)
        expected[i] = actual[i] = std::bit_cast<float>(static_cast<std::uint32_t>(random()));
      for (std::size_t k = 0; k < num_rows; ++k)  // the definition: one row after another
        cmx::accumulate_weighted_row(expected, rows[k], weights[k]);
      cmx::cpu::detail::accumulate_weighted_rows(actual, tiles, weights);
      for (std::size_t i = 0; i < size; ++i) {
        INFO("size ", size, " rows ", num_rows, " element ", i);
        REQUIRE(std::bit_cast<std::uint32_t>(actual[i]) ==
                std::bit_cast<std::uint32_t>(expected[i]));
      }
    }
  }
}

TEST_CASE("the backend's weighted accumulation rounds as the portable one over long finite sums") {
  // As combine uses it: sums from +0, finite rows and weights, up to 16 rows; every rounding of
  // the chain counts.
  std::mt19937 random(13);
  std::uniform_real_distribution<float> uniform(-2.0f, 2.0f);
  for (const std::size_t size : {16u, 3568u, 7168u})
    for (const std::size_t num_rows : {1u, 7u, 16u}) {
      std::vector<std::vector<bf16>> rows(num_rows, std::vector<bf16>(size));
      for (auto& row : rows)
        for (bf16& value : row) value = bf16::from_float(uniform(random));
      std::vector<float> weights(num_rows);
      for (float& weight : weights) weight = uniform(random);
      const std::vector<std::span<const bf16>> tiles(rows.begin(), rows.end());
      std::vector<float> expected(size, 0.0f), actual(size, 0.0f);
      cmx::accumulate_weighted_rows(expected, tiles, weights);
      cmx::cpu::detail::accumulate_weighted_rows(actual, tiles, weights);
      bool same = true;
      for (std::size_t i = 0; i < size; ++i)
        same = same &&
               std::bit_cast<std::uint32_t>(actual[i]) == std::bit_cast<std::uint32_t>(expected[i]);
      INFO("size ", size, " rows ", num_rows);
      CHECK(same);
    }
}

TEST_CASE("the backend's quantization is the portable one, bit for bit, on every tier") {
  using Quantize = float (*)(std::span<const bf16>, std::span<std::int8_t>);
  struct Tier {
    const char* name;
    bool available;
    Quantize quantize;
  };
  const Tier tiers[] = {
#if CMX_CPU_X86_64
    {"avx512", cmx::cpu::features().avx512, cmx::cpu::detail::quantize_row_int8_avx512},
    {"avx2", cmx::cpu::features().avx2, cmx::cpu::detail::quantize_row_int8_avx2},
#endif
    {"dispatcher", true, cmx::cpu::detail::quantize_row_int8},
  };
  std::mt19937 random(14);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // Rows of each kind:
  //   0: normal values over many scales (every rounding of the products counts);
  //   1: finite random bits (subnormals and tiny rows included);
  //   2: any random bits (Inf and NaN: poisoned rows);
  //   3: a row with one -Inf;
  //   4: all zeros;
  //   5: amax 127, so the inverse scale is 1 and halves are ties: +-0.5, +-1.5, +-2.5 ...;
  //   6, 7: amax just below and at the flush threshold 2^-121 (bf16 0x0300).
  const auto make_row = [&](std::size_t size, int kind) {
    std::vector<bf16> row(size);
    const int exponent = static_cast<int>(random() % 220) - 110;  // 2^-110 ... 2^109
    for (std::size_t i = 0; i < size; ++i) {
      bf16& value = row[i];
      if (kind == 0) value = bf16::from_float(std::ldexp(normal(random), exponent));
      if (kind == 1) {
        value = random_bf16(random);
        if ((value.bits & 0x7f80u) == 0x7f80u) value.bits ^= 0x0080u;  // exponent 255 -> 254
      }
      if (kind == 2) value = random_bf16(random);
      if (kind == 5) value = bf16::from_float((i % 2 == 0 ? 1.0f : -1.0f) * (0.5f + (i % 9)));
      if (kind == 6 || kind == 7) value = bf16{static_cast<std::uint16_t>(random() % 0x02ffu)};
    }
    if (size == 0) return row;
    if (kind == 3) row[size / 2] = bf16{0xff80};
    if (kind == 5) row[size - 1] = bf16::from_float(127.0f);
    if (kind == 6) row[size / 2] = bf16{0x82ff};  // -(largest below 2^-121): flushed
    if (kind == 7) row[size / 2] = bf16{0x0300};  // 2^-121: quantized
    return row;
  };
  for (const Tier& tier : tiers) {
    if (!tier.available) continue;
    // Sizes around both loops' steps (16 and 32) and their masked or scalar tails.
    for (const std::size_t size : {0u, 1u, 15u, 16u, 17u, 31u, 32u, 33u, 48u, 100u, 7168u, 16384u})
      for (int kind = 0; kind < 8; ++kind)
        for (int trial = 0; trial < 3; ++trial) {
          const std::vector<bf16> row = make_row(size, kind);
          // One byte past the codes, to see that nothing is written there.
          std::vector<std::int8_t> expected(size), actual(size + 1, std::int8_t{0x55});
          const float expected_scale = cmx::quantize_row_int8(row, expected);
          const float actual_scale =
              tier.quantize(row, std::span<std::int8_t>(actual.data(), size));
          INFO(tier.name, ": size ", size, " kind ", kind);
          REQUIRE(std::bit_cast<std::uint32_t>(actual_scale) ==
                  std::bit_cast<std::uint32_t>(expected_scale));
          REQUIRE(std::equal(expected.begin(), expected.end(), actual.begin()));
          REQUIRE(actual[size] == std::int8_t{0x55});
        }
  }
}

TEST_CASE("a streaming copy copies exactly its bytes, at a line start or mid-line") {
  std::mt19937 random(12);
  for (const std::size_t bytes : {32u, 64u, 96u, 4096u, 7200u, 7232u, 14336u})
    for (const std::size_t line_offset : {0u, 32u}) {  // destinations are 32-byte aligned
      std::vector<std::byte> source(bytes), destination(bytes + 192, std::byte{0x5a});
      for (std::byte& b : source) b = static_cast<std::byte>(random());
      // 64 bytes in (so one byte before it is checked), at a line start, plus line_offset.
      std::byte* aligned = destination.data() + 64 +
                           (64 - reinterpret_cast<std::uintptr_t>(destination.data()) % 64) % 64 +
                           line_offset;
      cmx::cpu::detail::copy_streaming(aligned, source.data(), bytes);
      cmx::cpu::detail::fence_streaming_stores();
      INFO("bytes ", bytes, " line offset ", line_offset);
      CHECK(std::equal(source.begin(), source.end(), aligned));
      CHECK(aligned[-1] == std::byte{0x5a});     // nothing before the start
      CHECK(aligned[bytes] == std::byte{0x5a});  // nothing past the end
    }
}
