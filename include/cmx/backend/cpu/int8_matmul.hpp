// SPDX-License-Identifier: Apache-2.0
// cmx::cpu::Int8Matmul: the int8 matrix capability of a CPU device (cmx::Int8MatmulDevice),
// one reusable piece that every CPU backend exposes: the packed panel layout, and the tile
// product of the instruction-set tier this process runs, chosen at run time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string_view>
#include <tuple>
#include <vector>

#include "cmx/backend/cpu/int8_matmul/amx.hpp"
#include "cmx/backend/cpu/int8_matmul/avx2.hpp"
#include "cmx/backend/cpu/int8_matmul/avx512.hpp"
#include "cmx/backend/cpu/isa.hpp"
#include "cmx/core/error.hpp"
#include "cmx/device/int8_matmul.hpp"
#include "cmx/device/int8_matmul_portable.hpp"
#include "cmx/device/int8_panel_layout.hpp"

namespace cmx::cpu::int8_matmul::detail {

/// A tile product of one tier.
using TileProductFunction = void (*)(const Int8TileProduct&);

/// Runs `candidate` and the scalar tier on a fixed random problem that takes every remainder
/// path (37 rows, 3 panels, a depth of 240 that is no multiple of 64, ranges that start inside
/// a 64-deep tile, one whose AMX tile runs past the panel, both accumulate modes) and raises
/// cmx::Error(state) naming the first differing element. Full-range codes, -128 and 127
/// included.
inline void check_against_scalar(TileProductFunction candidate, const char* tier) {
  constexpr int kRows = 37, kPanels = 3, kDepth = 240;
  constexpr int kColumns = kPanels * int8_panel::kColumns;
  std::mt19937 random(20240613);
  std::uniform_int_distribution<int> code(-128, 127);
  std::vector<std::int8_t> a(kRows * kDepth);     // [kRows][kDepth]
  std::vector<std::int8_t> b(kColumns * kDepth);  // [kColumns][kDepth]
  for (std::int8_t& value : a) value = static_cast<std::int8_t>(code(random));
  for (std::int8_t& value : b) value = static_cast<std::int8_t>(code(random));
  a[0] = b[0] = -128;
  a[1] = b[1] = 127;
  std::vector<std::byte> panels(kPanels * int8_panel::bytes(kDepth));
  for (int p = 0; p < kPanels; ++p)
    int8_panel::pack(
        std::span(b).subspan(static_cast<std::size_t>(p) * int8_panel::kColumns * kDepth,
                             int8_panel::kColumns * kDepth),
        kDepth,
        std::span(panels).subspan(p * int8_panel::bytes(kDepth), int8_panel::bytes(kDepth)));
  std::vector<const std::int8_t*> rows(kRows);
  for (int r = 0; r < kRows; ++r) rows[static_cast<std::size_t>(r)] = a.data() + r * kDepth;
  std::vector<std::int32_t> expected(kRows * kColumns), got(kRows * kColumns);  // [kRows][kColumns]
  for (const auto& [begin, end, mode] :
       {std::tuple{0, 112, Accumulate::overwrite}, std::tuple{112, kDepth, Accumulate::add},
        std::tuple{16, 80, Accumulate::add}, std::tuple{224, kDepth, Accumulate::add}}) {
    Int8TileProduct product{.a_rows = rows,
                            .panels = panels.data(),
                            .panel_bytes = int8_panel::bytes(kDepth),
                            .num_panels = kPanels,
                            .k_begin = begin,
                            .k_end = end,
                            .acc = expected.data(),
                            .acc_stride = kColumns,
                            .mode = mode};
    portable::int8_tile_product(product);
    product.acc = got.data();
    candidate(product);
  }
  for (std::size_t i = 0; i < expected.size(); ++i)
    cmx::detail::require(got[i] == expected[i], ErrorCode::state, "the ", tier,
                         " int8 tile product disagrees with the scalar one at row ", i / kColumns,
                         ", column ", i % kColumns, " (", got[i], " instead of ", expected[i],
                         ") in its self-check; force another tier with ",
                         cpu::kIsaEnvironmentVariable, " and report this CPU");
}

/// The tile product of `isa` (a tier this build has).
inline TileProductFunction tile_product_of(cpu::Isa isa) {
  switch (isa) {
#if CMX_CPU_X86_64
    case cpu::Isa::avx2:
      return [](const Int8TileProduct& p) { int8_matmul::avx2::tile_product(p); };
    case cpu::Isa::avx512:
      return [](const Int8TileProduct& p) { int8_matmul::avx512::tile_product(p); };
    case cpu::Isa::amx:
      return [](const Int8TileProduct& p) { int8_matmul::amx::tile_product(p); };
#endif
    default:
      return [](const Int8TileProduct& p) { portable::int8_tile_product(p); };
  }
}

}  // namespace cmx::cpu::int8_matmul::detail

namespace cmx::cpu {

/// The int8 matrix capability of a CPU, for a device to forward its Int8MatmulDevice members
/// to. Cheap to copy; thread-safe.
///
/// The tier is the one requested at construction, else the process default: the one CMX_ISA
/// names, else the fastest this CPU runs (cmx::cpu::resolve_isa), resolved on first use, so a
/// program that runs no GEMM never needs one, and logged once per process
/// (cmx::cpu::log_isa_once). A tier the CPU lacks is a cmx::Error(invalid_argument). Every
/// vector tier checks itself against the scalar tier on its first use in a process
/// (int8_matmul::detail::check_against_scalar) and raises cmx::Error(state) on a difference: the
/// AMX tier in particular has never run on the machines cmx is developed on.
class Int8Matmul {
 public:
  static constexpr int kPanelColumns = int8_panel::kColumns;

  /// The process default tier (resolved on first use).
  Int8Matmul() noexcept = default;

  /// Tier `isa`. Throws cmx::Error(invalid_argument) if this CPU cannot run it, and
  /// cmx::Error(state) if its self-check against the scalar tier fails.
  explicit Int8Matmul(cpu::Isa isa) : isa_(isa), tile_product_(checked_tile_product(isa)) {}

  /// The tier this object runs.
  cpu::Isa isa() const { return isa_ ? *isa_ : process_default().isa; }

  /// Int8MatmulDevice::int8_panel_bytes: see cmx/device/int8_panel_layout.hpp.
  std::size_t panel_bytes(int k) const noexcept { return int8_panel::bytes(k); }
  /// Int8MatmulDevice::int8_panel_format.
  std::string_view panel_format() const noexcept { return int8_panel::kFormat; }
  /// Int8MatmulDevice::pack_int8_panel: the same bytes for every tier.
  void pack_panel(std::span<const std::int8_t> rows, int k,
                  std::span<std::byte> out) const noexcept {
    int8_panel::pack(rows, k, out);
  }
  /// Int8MatmulDevice::int8_tile_product, on this object's tier.
  void tile_product(const Int8TileProduct& product) const {
    (tile_product_ ? tile_product_ : process_default().tile_product)(product);
  }

 private:
  struct Resolved {
    cpu::Isa isa;
    int8_matmul::detail::TileProductFunction tile_product;
  };

  // The process default, resolved, self-checked and logged once. If resolving throws, the next
  // call tries again and throws again (the self-check's failure is kept, see check_once).
  static const Resolved& process_default() {
    static const Resolved resolved = [] {
      const cpu::Isa isa = cpu::resolve_isa(cpu::KernelFamily::int8_matmul);
      const Resolved result{isa, checked_tile_product(isa)};
      cpu::log_process_isa_once(cpu::KernelFamily::int8_matmul, isa);
      return result;
    }();
    return resolved;
  }

  // The tile product of `isa`, after checking that this CPU runs it and, on the tier's first
  // use in this process, that it agrees with the scalar tier.
  static int8_matmul::detail::TileProductFunction checked_tile_product(cpu::Isa isa) {
    using cpu::KernelFamily;
    (void)cpu::resolve_isa(KernelFamily::int8_matmul, isa);
    if (isa == cpu::Isa::amx) {  // the AMX tier computes its corrections with AVX-512
      const cpu::Requirement avx512 =
          cpu::requirement(cpu::Isa::avx512, KernelFamily::int8_matmul, cpu::features());
      cmx::detail::require(avx512.met, ErrorCode::invalid_argument,
                           "the amx int8 micro-kernels also need ", avx512.needs);
    }
    const int8_matmul::detail::TileProductFunction function =
        int8_matmul::detail::tile_product_of(isa);
    if (isa != cpu::Isa::scalar) check_once(isa, function);
    return function;
  }

  // Runs the self-check of tier `isa` on its first use in this process; a failure is kept and
  // raised again at every later use (a tier that failed once is never trusted).
  static void check_once(cpu::Isa isa, int8_matmul::detail::TileProductFunction function) {
    static std::mutex mutex;
    static std::array<bool, cpu::kAllIsas.size()> checked{};
    static std::array<std::optional<Error>, cpu::kAllIsas.size()> failure;
    const std::size_t tier = static_cast<std::size_t>(isa);
    const std::lock_guard lock(mutex);
    if (!checked[tier]) {
      checked[tier] = true;
      try {
        int8_matmul::detail::check_against_scalar(function, cpu::to_string(isa));
      } catch (const Error& error) {
        failure[tier] = error;
      }
    }
    if (failure[tier]) throw *failure[tier];
  }

  std::optional<cpu::Isa> isa_;                                      // none: the process default
  int8_matmul::detail::TileProductFunction tile_product_ = nullptr;  // none: the process default
};

}  // namespace cmx::cpu
