// SPDX-License-Identifier: Apache-2.0
// The TBB backend's own row operations and copies give exactly what the portable ones give.
#include "cmx/backend/tbb/row_ops.hpp"

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "cmx/backend/tbb/streaming_copy.hpp"

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
      cmx::tbb_backend::detail::accumulate_weighted_rows(actual, tiles, weights);
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
      cmx::tbb_backend::detail::accumulate_weighted_rows(actual, tiles, weights);
      bool same = true;
      for (std::size_t i = 0; i < size; ++i)
        same = same &&
               std::bit_cast<std::uint32_t>(actual[i]) == std::bit_cast<std::uint32_t>(expected[i]);
      INFO("size ", size, " rows ", num_rows);
      CHECK(same);
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
      cmx::tbb_backend::detail::copy_streaming(aligned, source.data(), bytes);
      INFO("bytes ", bytes, " line offset ", line_offset);
      CHECK(std::equal(source.begin(), source.end(), aligned));
      CHECK(aligned[-1] == std::byte{0x5a});     // nothing before the start
      CHECK(aligned[bytes] == std::byte{0x5a});  // nothing past the end
    }
}
