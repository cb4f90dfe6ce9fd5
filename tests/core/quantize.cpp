// SPDX-License-Identifier: Apache-2.0
// The INT8 quantization and the row operations against their scalar references.
#include "cmx/core/quantize.hpp"

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "cmx/reference/quantize.hpp"

using cmx::bf16;

namespace {

std::vector<bf16> random_row(std::size_t size, float spread, std::mt19937& random) {
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<bf16> row(size);
  for (bf16& value : row) value = bf16::from_float(normal(random));
  return row;
}

// Quantizes with both paths; REQUIREs identical codes and scale bits. Returns the scale.
float check_quantize(const std::vector<bf16>& row) {
  std::vector<std::int8_t> fast(row.size()), slow(row.size());
  const float fast_scale = cmx::quantize_row_int8(row, fast);
  const float slow_scale = cmx::reference::quantize_row_int8(row, slow);
  REQUIRE(std::bit_cast<std::uint32_t>(fast_scale) == std::bit_cast<std::uint32_t>(slow_scale));
  for (std::size_t i = 0; i < row.size(); ++i)
    REQUIRE_MESSAGE(fast[i] == slow[i], "element ", i, " of ", row.size(), ": value ",
                    row[i].to_float(), " fast ", int{fast[i]}, " reference ", int{slow[i]});
  for (const std::int8_t code : fast) REQUIRE(code != -128);
  return fast_scale;
}

}  // namespace

TEST_CASE("quantize_row_int8 matches the reference on random rows of every size") {
  std::mt19937 random(7);
  for (const std::size_t size : {1u, 15u, 16u, 17u, 64u, 100u, 7168u, 16384u})
    for (const float spread : {1e-30f, 1e-3f, 1.0f, 1e3f, 1e30f})
      for (int trial = 0; trial < 4; ++trial) check_quantize(random_row(size, spread, random));
}

TEST_CASE("quantize_row_int8 edge cases, as documented") {
  SUBCASE("an all-zero row has scale 0 and zero codes") {
    CHECK(check_quantize(std::vector<bf16>(32, bf16::from_float(0.0f))) == 0.0f);
    CHECK(check_quantize(std::vector<bf16>(32, bf16::from_float(-0.0f))) == 0.0f);
  }
  SUBCASE("a row whose largest magnitude is below 2^-121 (subnormals included) is flushed") {
    std::vector<bf16> row(32, bf16{0x0001});  // the smallest subnormal
    row[3] = bf16{0x807f};                    // the largest negative subnormal
    CHECK(check_quantize(row) == 0.0f);
    row[5] = bf16::from_float(std::ldexp(1.0f, -122));  // normal, but 127 / amax overflows
    CHECK(check_quantize(row) == 0.0f);
  }
  SUBCASE("the smallest amax that is not flushed, 2^-121, gives exact codes") {
    const float amax = std::ldexp(1.0f, -121);
    std::vector<bf16> row = {bf16::from_float(amax), bf16::from_float(-amax / 2),
                             bf16::from_float(0.0f), bf16::from_float(amax / 4)};
    std::vector<std::int8_t> codes(row.size());
    CHECK(cmx::quantize_row_int8(row, codes) == amax / 127.0f);
    CHECK(codes == std::vector<std::int8_t>{127, -64, 0, 32});  // 63.5 and 31.75 round to even
    check_quantize(row);
  }
  SUBCASE("NaN or Inf anywhere poisons the row: scale NaN, codes 0") {
    for (const std::uint16_t bad : {std::uint16_t{0x7f80}, std::uint16_t{0xff80},
                                    std::uint16_t{0x7fc0}, std::uint16_t{0xffc1}}) {
      std::vector<bf16> row(48, bf16::from_float(1.5f));
      row[17] = bf16{bad};
      std::vector<std::int8_t> codes(row.size(), 5);
      CHECK(std::isnan(cmx::quantize_row_int8(row, codes)));
      for (const std::int8_t code : codes) CHECK(code == 0);
      check_quantize(row);
    }
  }
  SUBCASE("the largest magnitude maps to +-127 and halfway codes round to even") {
    // amax = 127 makes the inverse scale exactly 1, so each value is its own code.
    std::vector<bf16> row = {bf16::from_float(127.0f), bf16::from_float(-127.0f),
                             bf16::from_float(0.5f),   bf16::from_float(1.5f),
                             bf16::from_float(2.5f),   bf16::from_float(-2.5f),
                             bf16::from_float(-0.5f),  bf16::from_float(126.5f)};
    std::vector<std::int8_t> codes(row.size());
    CHECK(cmx::quantize_row_int8(row, codes) == 1.0f);
    CHECK(codes == std::vector<std::int8_t>{127, -127, 0, 2, 2, -2, 0, 126});
    check_quantize(row);
  }
  SUBCASE("the largest finite bf16 does not overflow") {
    std::vector<bf16> row(16, bf16{0x7f7f});
    row[1] = bf16{0xff7f};
    check_quantize(row);
  }
}

namespace {

// The float overload: quantizes with both paths; REQUIREs identical codes and scale bits.
float check_quantize_float(const std::vector<float>& row) {
  std::vector<std::int8_t> fast(row.size()), slow(row.size());
  const float fast_scale = cmx::quantize_row_int8(std::span<const float>(row), fast);
  const float slow_scale = cmx::reference::quantize_row_int8(std::span<const float>(row), slow);
  REQUIRE(std::bit_cast<std::uint32_t>(fast_scale) == std::bit_cast<std::uint32_t>(slow_scale));
  for (std::size_t i = 0; i < row.size(); ++i)
    REQUIRE_MESSAGE(fast[i] == slow[i], "element ", i, " of ", row.size(), ": value ", row[i],
                    " fast ", int{fast[i]}, " reference ", int{slow[i]});
  for (const std::int8_t code : fast) REQUIRE(code != -128);
  return fast_scale;
}

}  // namespace

TEST_CASE("quantize_row_int8 of float rows matches its reference, edge cases included") {
  std::mt19937 random(17);
  for (const std::size_t size : {1u, 15u, 16u, 100u, 2048u})
    for (const float spread : {1e-37f, 1e-3f, 1.0f, 1e3f, 1e37f})
      for (int trial = 0; trial < 4; ++trial) {
        std::normal_distribution<float> normal(0.0f, spread);
        std::vector<float> row(size);
        for (float& value : row) value = normal(random);
        check_quantize_float(row);
      }
  // Zero, subnormal and below-2^-121 rows are flushed; 2^-121 itself is not.
  CHECK(check_quantize_float(std::vector<float>(8, 0.0f)) == 0.0f);
  CHECK(check_quantize_float(std::vector<float>(8, 1e-45f)) == 0.0f);
  CHECK(check_quantize_float({std::ldexp(1.0f, -121) * 0.999f, 0.0f}) == 0.0f);
  CHECK(check_quantize_float({std::ldexp(1.0f, -121), -std::ldexp(1.0f, -122)}) ==
        std::ldexp(1.0f, -121) / 127.0f);
  // Inf or NaN anywhere poisons the row: scale NaN, codes 0.
  for (const float bad :
       {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
        std::numeric_limits<float>::quiet_NaN()}) {
    std::vector<float> row(48, 2.0f);
    row[7] = bad;
    std::vector<std::int8_t> codes(row.size(), 9);
    CHECK(std::isnan(cmx::quantize_row_int8(std::span<const float>(row), codes)));
    for (const std::int8_t code : codes) CHECK(code == 0);
    check_quantize_float(row);
  }
  // The largest finite float does not overflow; halfway codes round to even.
  check_quantize_float({std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()});
  std::vector<std::int8_t> codes(4);
  CHECK(cmx::quantize_row_int8(
            std::span<const float>(std::vector<float>{127.0f, 2.5f, -0.5f, 126.5f}), codes) ==
        1.0f);
  CHECK(codes == std::vector<std::int8_t>{127, 2, 0, 126});
}

TEST_CASE("accumulate_weighted_row is one fma per element, round_row_to_bf16 rounds once") {
  std::mt19937 random(3);
  const std::vector<bf16> row = random_row(1000, 2.0f, random);
  std::vector<float> acc(row.size()), expected(row.size());
  std::normal_distribution<float> normal;
  for (std::size_t i = 0; i < acc.size(); ++i) expected[i] = acc[i] = normal(random);
  cmx::accumulate_weighted_row(acc, row, 0.37f);
  for (std::size_t i = 0; i < acc.size(); ++i) {
    expected[i] = static_cast<float>(
        static_cast<double>(0.37f) * static_cast<double>(row[i].to_float()) +
        static_cast<double>(expected[i]));  // exact product, one rounding: the fma definition
    REQUIRE(std::bit_cast<std::uint32_t>(acc[i]) == std::bit_cast<std::uint32_t>(expected[i]));
  }
  std::vector<bf16> rounded(acc.size());
  cmx::round_row_to_bf16(acc, rounded);
  for (std::size_t i = 0; i < acc.size(); ++i)
    REQUIRE(rounded[i].bits == cmx::reference::round_to_bf16(acc[i]).bits);
}
