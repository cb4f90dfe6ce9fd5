// SPDX-License-Identifier: Apache-2.0
// The TBB backend's own row operations and copies give exactly what the portable ones give.
#include "cmx/backend/tbb/row_ops.hpp"

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
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
  const float weights[] = {0.3f,   -1.0f, 0.0f,
                           1e-30f, 3e38f, std::numeric_limits<float>::infinity()};
  for (const std::size_t size : {0u, 1u, 15u, 16u, 31u, 32u, 33u, 48u, 100u, 7168u}) {
    for (const float weight : weights) {
      std::vector<bf16> row(size);
      for (bf16& value : row) value = random_bf16(random);
      std::vector<float> expected(size), actual(size);
      for (std::size_t i = 0; i < size; ++i)
        expected[i] = actual[i] = std::bit_cast<float>(static_cast<std::uint32_t>(random()));
      cmx::accumulate_weighted_row(expected, row, weight);
      cmx::tbb_backend::detail::accumulate_weighted_row(actual, row, weight);
      for (std::size_t i = 0; i < size; ++i) {
        INFO("size ", size, " weight ", weight, " element ", i);
        REQUIRE(std::bit_cast<std::uint32_t>(actual[i]) ==
                std::bit_cast<std::uint32_t>(expected[i]));
      }
    }
  }
}

TEST_CASE("a streaming copy copies exactly its bytes") {
  std::mt19937 random(12);
  for (const std::size_t bytes : {32u, 64u, 4096u, 7232u, 14336u}) {
    std::vector<std::byte> source(bytes), destination(bytes + 64, std::byte{0x5a});
    for (std::byte& b : source) b = static_cast<std::byte>(random());
    // Destinations are 32-byte aligned (symmetric memory and the layouts guarantee it).
    std::byte* aligned =
        destination.data() + (32 - reinterpret_cast<std::uintptr_t>(destination.data()) % 32) % 32;
    cmx::tbb_backend::detail::copy_streaming(aligned, source.data(), bytes);
    CHECK(std::equal(source.begin(), source.end(), aligned));
    CHECK(aligned[bytes] == std::byte{0x5a});  // nothing past the end
  }
}
