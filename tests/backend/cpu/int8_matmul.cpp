// SPDX-License-Identifier: Apache-2.0
// The packed panel layout and the int8 tile product of every tier this CPU runs, against the
// scalar reference on unpacked weights: exact int32 equality over gathered rows, panel counts
// and depth ranges at the edges of every register block and tile.
#include "cmx/backend/cpu/int8_matmul.hpp"

#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "cmx/reference/gemm.hpp"
#include "gemm/gemm_harness.hpp"

namespace cpu = cmx::cpu;
namespace int8_detail = cmx::cpu::int8_matmul::detail;
namespace int8_panel = cmx::int8_panel;
using cmx::test::Codes;

namespace {

/// A tile product problem: rows of A scattered in memory (a gather, as the masked layout
/// gives), packed panels, and the expected int32 sums of every depth range asked.
struct Problem {
  int num_rows, num_panels, k;
  std::vector<std::int8_t> a_storage;    // rows at irregular offsets
  std::vector<const std::int8_t*> rows;  // [num_rows]
  std::vector<std::int8_t> b;            // [num_panels * 16][k]
  std::vector<std::byte> panels;         // [num_panels][bytes(k)]

  Problem(int num_rows, int num_panels, int k, Codes codes, std::mt19937& random)
      : num_rows(num_rows), num_panels(num_panels), k(k) {
    // Row r starts 13 * r bytes past the previous row's end: no alignment, no uniform stride.
    std::size_t offset = 0;
    std::vector<std::size_t> starts;
    for (int r = 0; r < num_rows; ++r) {
      starts.push_back(offset);
      offset += static_cast<std::size_t>(k) + 13u * static_cast<std::size_t>(r % 5);
    }
    a_storage = cmx::test::random_codes(offset, codes, random);
    for (const std::size_t start : starts) rows.push_back(a_storage.data() + start);
    b = cmx::test::random_codes(static_cast<std::size_t>(num_panels) * int8_panel::kColumns * k,
                                codes, random);
    panels.resize(static_cast<std::size_t>(num_panels) * int8_panel::bytes(k));
    for (int p = 0; p < num_panels; ++p)
      int8_panel::pack(std::span(b).subspan(static_cast<std::size_t>(p) * int8_panel::kColumns * k,
                                            static_cast<std::size_t>(int8_panel::kColumns) * k),
                       k,
                       std::span(panels).subspan(p * int8_panel::bytes(k), int8_panel::bytes(k)));
  }

  /// Sums over [k_begin, k_end) from the unpacked operands: [num_rows][num_panels * 16].
  std::vector<std::int32_t> expected(int k_begin, int k_end) const {
    const int columns = num_panels * int8_panel::kColumns;
    std::vector<std::int32_t> sums(static_cast<std::size_t>(num_rows) * columns);
    for (int r = 0; r < num_rows; ++r) {
      const std::vector<std::int8_t> row(rows[static_cast<std::size_t>(r)] + k_begin,
                                         rows[static_cast<std::size_t>(r)] + k_end);
      std::vector<std::int8_t> b_range;
      for (int c = 0; c < columns; ++c)
        b_range.insert(b_range.end(), b.begin() + c * k + k_begin, b.begin() + c * k + k_end);
      const auto product = cmx::reference::matmul_int8(row, b_range, 1, columns, k_end - k_begin);
      std::copy(product.begin(), product.end(), sums.begin() + r * columns);
    }
    return sums;
  }
};

}  // namespace

TEST_CASE("a packed panel holds every code of its 16 channels, code 0 in the depth padding") {
  std::mt19937 random(3);
  for (const int k : {16, 48, 64, 80, 208}) {
    const std::vector<std::int8_t> rows = cmx::test::random_codes(
        int8_panel::kColumns * static_cast<std::size_t>(k), Codes::uniform, random);
    std::vector<std::byte> packed(int8_panel::bytes(k));
    REQUIRE(packed.size() % 64 == 0);
    REQUIRE(packed.size() >= int8_panel::kColumns * static_cast<std::size_t>(k));
    int8_panel::pack(rows, k, packed);
    const int padded = static_cast<int>(packed.size() / int8_panel::kColumns);
    for (int n = 0; n < int8_panel::kColumns; ++n)
      for (int d = 0; d < padded; ++d)
        REQUIRE_MESSAGE(int8_panel::code(packed.data(), n, d) ==
                            (d < k ? rows[static_cast<std::size_t>(n * k + d)] : 0),
                        "k ", k, " channel ", n, " depth ", d);
  }
}

TEST_CASE("every tier's tile product equals the reference sums exactly, in both modes") {
  struct Shape {
    int rows, panels, k;
  };
  // Rows and panels at the edges of the register blocks (AVX2 2 x 1, AVX-512 6 x 4), of AMX's
  // 32 x 2 step and of AVX-512's 128-row correction chunk; depths not multiple of 64.
  const Shape shapes[] = {{1, 1, 16},   {2, 1, 64},   {5, 3, 80},  {6, 4, 128},   {7, 5, 208},
                          {13, 9, 112}, {32, 2, 256}, {33, 3, 48}, {129, 6, 160}, {100, 1, 16}};
  cmx::test::for_each_tier([&](cpu::Isa isa) {
    const cpu::Int8Matmul matmul(isa);
    std::mt19937 random(11);
    for (const Shape& shape : shapes)
      for (const Codes codes : {Codes::uniform, Codes::extreme}) {
        CAPTURE(shape.rows);
        CAPTURE(shape.panels);
        CAPTURE(shape.k);
        const Problem problem(shape.rows, shape.panels, shape.k, codes, random);
        const int columns = shape.panels * int8_panel::kColumns;
        const auto product = [&](int k_begin, int k_end, cmx::Accumulate mode, int next_k_end,
                                 std::vector<std::int32_t>& acc) {
          matmul.tile_product({.a_rows = problem.rows,
                               .panels = problem.panels.data(),
                               .panel_bytes = int8_panel::bytes(shape.k),
                               .num_panels = shape.panels,
                               .k_begin = k_begin,
                               .k_end = k_end,
                               .acc = acc.data(),
                               .acc_stride = static_cast<std::size_t>(columns),
                               .mode = mode,
                               .next_k_end = next_k_end});
        };
        // The whole depth in one call.
        std::vector<std::int32_t> acc(static_cast<std::size_t>(shape.rows) * columns, 99);
        product(0, shape.k, cmx::Accumulate::overwrite, 0, acc);
        const std::string whole = cmx::test::first_difference(acc, problem.expected(0, shape.k),
                                                              static_cast<std::size_t>(columns));
        CHECK_MESSAGE(whole.empty(), "depth [0, ", shape.k, "): ", whole);
        // In 16-deep steps, each started where the last ended (not at a multiple of 64),
        // overwrite then add, with the prefetch hint of the next step.
        std::fill(acc.begin(), acc.end(), -7);
        for (int begin = 0; begin < shape.k; begin += 16)
          product(begin, begin + 16, begin == 0 ? cmx::Accumulate::overwrite : cmx::Accumulate::add,
                  begin + 16 < shape.k ? begin + 32 : 0, acc);
        const std::string steps = cmx::test::first_difference(acc, problem.expected(0, shape.k),
                                                              static_cast<std::size_t>(columns));
        CHECK_MESSAGE(steps.empty(), "16-deep steps: ", steps);
        // A range in the middle, added to what is there.
        if (shape.k >= 48) {
          std::vector<std::int32_t> sum = problem.expected(16, shape.k - 16);
          std::vector<std::int32_t> base(sum.size());
          for (std::size_t i = 0; i < base.size(); ++i) base[i] = static_cast<std::int32_t>(i) - 50;
          for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += base[i];
          product(16, shape.k - 16, cmx::Accumulate::add, 0, base);
          const std::string middle =
              cmx::test::first_difference(base, sum, static_cast<std::size_t>(columns));
          CHECK_MESSAGE(middle.empty(), "depth [16, ", shape.k - 16, ") added: ", middle);
        }
      }
  });
}

TEST_CASE("the largest depth keeps every tier's sums exact: all -128 against all -128") {
  // 2^14 * K is the largest magnitude; at K = kInt8MaxDepth it is just below 2^31.
  const int k = cmx::kInt8MaxDepth;
  const std::vector<std::int8_t> row(static_cast<std::size_t>(k), -128);
  const std::vector<const std::int8_t*> rows = {row.data()};
  const std::vector<std::int8_t> b(int8_panel::kColumns * static_cast<std::size_t>(k), -128);
  std::vector<std::byte> packed(int8_panel::bytes(k));
  int8_panel::pack(b, k, packed);
  const std::int32_t expected = 16384 * k;  // 2147221504
  cmx::test::for_each_tier([&](cpu::Isa isa) {
    std::vector<std::int32_t> acc(int8_panel::kColumns);
    cpu::Int8Matmul(isa).tile_product({.a_rows = rows,
                                       .panels = packed.data(),
                                       .panel_bytes = packed.size(),
                                       .num_panels = 1,
                                       .k_begin = 0,
                                       .k_end = k,
                                       .acc = acc.data(),
                                       .acc_stride = int8_panel::kColumns});
    for (const std::int32_t sum : acc) CHECK(sum == expected);
  });
}

TEST_CASE("a tier that disagrees with the scalar tile product fails its self-check") {
  const auto off_by_one = [](const cmx::Int8TileProduct& product) {
    cmx::portable::int8_tile_product(product);
    product.acc[3] += 1;
  };
  try {
    int8_detail::check_against_scalar(off_by_one, "broken");
    FAIL("the self-check accepted a wrong tile product");
  } catch (const cmx::Error& error) {
    CHECK(error.code() == cmx::ErrorCode::state);
    CHECK(std::string(error.what()).find("broken int8 tile product disagrees") !=
          std::string::npos);
  }
  // Every tier this CPU runs passes it (as it does on its first use in a process).
  cmx::test::for_each_tier([](cpu::Isa isa) {
    CHECK_NOTHROW(
        int8_detail::check_against_scalar(int8_detail::tile_product_of(isa), cpu::to_string(isa)));
  });
}

TEST_CASE("a tier this CPU lacks is refused with what it needs, never silently replaced") {
  for (const cpu::Isa isa : cpu::kAllIsas) {
    if (cpu::runs(isa, cpu::KernelFamily::int8_matmul)) continue;
    try {
      const cpu::Int8Matmul matmul(isa);
      const std::string accepted = cpu::to_string(isa);
      FAIL("Int8Matmul accepted ", accepted);
    } catch (const cmx::Error& error) {
      CHECK(error.code() == cmx::ErrorCode::invalid_argument);
      CHECK(std::string(error.what()).find("need") != std::string::npos);
    }
  }
}
