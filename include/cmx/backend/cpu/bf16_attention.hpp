// SPDX-License-Identifier: Apache-2.0
// cmx::cpu::Bf16Attention: the bf16 tile operations of attention on this CPU, each
// call dispatched at run time to the tier the process (or the caller) chose. One piece that
// every CPU backend (oneTBB, MPI) exposes as its cmx::Bf16AttentionDevice members.
//
// Tiers (cmx::cpu::KernelFamily::bf16_matmul): scalar (portable loops), avx2 (AVX2 + FMA:
// bf16 widened to fp32 by a shift, fp32 FMA), avx512 (AVX512_BF16: VDPBF16PS on pairs of bf16),
// amx (AMX-BF16 tiles for the two products, never run by us: see amx.hpp). The default is
// CMX_ISA if set, else the best tier this CPU runs; it is resolved and logged once per process.
#pragma once

#include <optional>

#include "cmx/backend/cpu/bf16_attention/amx.hpp"
#include "cmx/backend/cpu/bf16_attention/avx2.hpp"
#include "cmx/backend/cpu/bf16_attention/avx512.hpp"
#include "cmx/backend/cpu/bf16_attention/compare.hpp"
#include "cmx/backend/cpu/isa.hpp"
#include "cmx/device/bf16_attention.hpp"
#include "cmx/device/bf16_attention_portable.hpp"

namespace cmx::cpu {

namespace bf16_attention {

/// The tile operations of tier `isa` (the amx tier's exponential is the avx512 one: AMX has
/// none). A tier this build cannot have (not x86-64) gives the scalar ones.
inline const TileOperations& tile_operations(cpu::Isa isa) noexcept {
  static constexpr TileOperations kScalar{portable::bf16_scores, portable::bf16_exp_scores,
                                          portable::bf16_accumulate_values};
#if CMX_CPU_X86_64
  static constexpr TileOperations kAvx2{avx2::scores, avx2::exp_scores, avx2::accumulate_values};
  static constexpr TileOperations kAvx512{avx512::scores, avx512::exp_scores,
                                          avx512::accumulate_values};
  static constexpr TileOperations kAmx{amx::scores, avx512::exp_scores, amx::accumulate_values};
  switch (isa) {
    case cpu::Isa::avx2:
      return kAvx2;
    case cpu::Isa::avx512:
      return kAvx512;
    case cpu::Isa::amx:
      return kAmx;
    case cpu::Isa::scalar:
      break;
  }
#else
  (void)isa;
#endif
  return kScalar;
}

}  // namespace bf16_attention

/// The bf16 attention tile operations on this CPU (cmx/device/bf16_attention.hpp), at one tier.
/// Cheap to copy.
class Bf16Attention {
 public:
  /// The process's tier: CMX_ISA if set, else the best this CPU runs. Resolved on first use
  /// (an unknown CMX_ISA, or one this CPU cannot run, then throws cmx::Error(invalid_argument)).
  Bf16Attention() noexcept = default;

  /// Tier `isa`. Throws cmx::Error(invalid_argument) if this CPU cannot run it, and, for amx,
  /// cmx::Error(state) if its self-check against the scalar tier fails.
  explicit Bf16Attention(cpu::Isa isa) : isa_(isa) {
    (void)cpu::resolve_isa(cpu::KernelFamily::bf16_matmul, isa);
    check_amx(isa);
  }

  /// The tier the operations run.
  cpu::Isa isa() const { return isa_ ? *isa_ : process_isa(); }

  void scores(const Bf16ScoresTile& tile) const {
    bf16_attention::tile_operations(isa()).scores(tile);
  }
  void exp_scores(const Bf16ExpTile& tile) const {
    bf16_attention::tile_operations(isa()).exp_scores(tile);
  }
  void accumulate_values(const Bf16ValuesTile& tile) const {
    bf16_attention::tile_operations(isa()).accumulate_values(tile);
  }

 private:
  // The process default, resolved, logged (and for amx self-checked) once. If resolving throws,
  // the next call tries again and throws again.
  static cpu::Isa process_isa() {
    static const cpu::Isa resolved = [] {
      const cpu::Isa isa = cpu::resolve_isa(cpu::KernelFamily::bf16_matmul);
      check_amx(isa);
      cpu::log_process_isa_once(cpu::KernelFamily::bf16_matmul, isa);
      return isa;
    }();
    return resolved;
  }

  // The amx tier's first use in a process checks it against the scalar tier (amx.hpp).
  static void check_amx([[maybe_unused]] cpu::Isa isa) {
#if CMX_CPU_X86_64
    if (isa == cpu::Isa::amx) bf16_attention::amx::check_once();
#endif
  }

  std::optional<cpu::Isa> isa_;  // none: the process default
};

}  // namespace cmx::cpu
