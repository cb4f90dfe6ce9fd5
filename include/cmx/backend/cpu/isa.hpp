// SPDX-License-Identifier: Apache-2.0
// cmx::cpu: what this CPU and its OS can run, and which instruction-set tier of the CPU
// micro-kernels (int8 and bf16 tile products) a process uses: detected once, logged once, and
// forced with CMX_ISA for testing.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "cmx/core/error.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#define CMX_CPU_X86_64 1
#else
#define CMX_CPU_X86_64 0
#endif

namespace cmx::cpu {

/// The features cmx's micro-kernels use, each true only if the CPU has it and the OS saves its
/// register state (for AMX: and granted this process the tile data, see features()).
struct Features {
  bool avx2 = false;         ///< AVX2 (256-bit integer)
  bool fma = false;          ///< FMA3
  bool f16c = false;         ///< half-precision conversions
  bool avx_vnni = false;     ///< AVX-VNNI: 256-bit VPDPBUSD without AVX-512
  bool avx512 = false;       ///< AVX-512 F, BW, DQ, VL and CD
  bool avx512_vnni = false;  ///< AVX512_VNNI: VPDPBUSD on zmm
  bool avx512_bf16 = false;  ///< AVX512_BF16: VDPBF16PS, VCVTNE2PS2BF16
  bool amx_int8 = false;     ///< AMX-TILE + AMX-INT8 (TDPBUSD, ...)
  bool amx_bf16 = false;     ///< AMX-TILE + AMX-BF16 (TDPBF16PS)
};

/// The tiers the CPU micro-kernels come in, slowest first. Each kernel family says what a tier
/// needs (requirements()).
enum class Isa { scalar, avx2, avx512, amx };
inline constexpr std::array<Isa, 4> kAllIsas = {Isa::scalar, Isa::avx2, Isa::avx512, Isa::amx};

/// The families of CPU micro-kernels; a tier may run one family and not the other on one CPU.
enum class KernelFamily {
  int8_matmul,  ///< int8 x int8 -> int32 tile products (W8A8 GEMM)
  bf16_matmul,  ///< bf16 x bf16 -> fp32 tile products (MLA attention)
};

inline const char* to_string(Isa isa) noexcept {
  switch (isa) {
    case Isa::scalar:
      return "scalar";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    case Isa::amx:
      return "amx";
  }
  return "?";
}

inline const char* to_string(KernelFamily family) noexcept {
  return family == KernelFamily::int8_matmul ? "int8 matmul" : "bf16 matmul";
}

/// The tier named `name` ("scalar", "avx2", "avx512", "amx"), or none.
inline std::optional<Isa> parse_isa(std::string_view name) noexcept {
  for (const Isa isa : kAllIsas)
    if (name == to_string(isa)) return isa;
  return std::nullopt;
}

namespace detail {

#if CMX_CPU_X86_64
struct CpuidRegisters {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};
inline CpuidRegisters cpuid(unsigned leaf, unsigned subleaf) noexcept {
  CpuidRegisters r;
  if (!__get_cpuid_count(leaf, subleaf, &r.eax, &r.ebx, &r.ecx, &r.edx)) return {};
  return r;
}
inline std::uint64_t xgetbv0() noexcept {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<std::uint64_t>(hi) << 32) | lo;
}
inline bool bit(unsigned word, int index) noexcept {
  return ((word >> index) & 1u) != 0;
}

/// Asks Linux for the AMX tile data state (arch_prctl ARCH_REQ_XCOMP_PERM): without it the
/// first tile instruction kills the process with SIGILL. Idempotent; true once granted.
inline bool request_amx_tile_permission() noexcept {
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023;  // ARCH_REQ_XCOMP_PERM (asm/prctl.h)
  constexpr long kXfeatureXtiledata = 18;     // XFEATURE_XTILEDATA
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}
#endif

inline Features detect() noexcept {
  Features f;
#if CMX_CPU_X86_64
  const CpuidRegisters leaf1 = cpuid(1, 0);
  if (!bit(leaf1.ecx, 27)) return f;  // no OSXSAVE: the OS saves no AVX state
  const std::uint64_t xcr0 = xgetbv0();
  const bool os_avx = (xcr0 & 0x6) == 0x6;                 // XMM and YMM state
  const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;         // XTILECFG and XTILEDATA
  const CpuidRegisters leaf7 = cpuid(7, 0);
  const CpuidRegisters leaf7_1 = cpuid(7, 1);
  f.fma = os_avx && bit(leaf1.ecx, 12);
  f.f16c = os_avx && bit(leaf1.ecx, 29);
  f.avx2 = os_avx && bit(leaf7.ebx, 5);
  f.avx_vnni = f.avx2 && bit(leaf7_1.eax, 4);
  f.avx512 = os_avx512 && bit(leaf7.ebx, 16) && bit(leaf7.ebx, 17) && bit(leaf7.ebx, 28) &&
             bit(leaf7.ebx, 30) && bit(leaf7.ebx, 31);
  f.avx512_vnni = f.avx512 && bit(leaf7.ecx, 11);
  f.avx512_bf16 = f.avx512 && bit(leaf7_1.eax, 5);
  const bool amx_tile = os_amx && bit(leaf7.edx, 24);
  const bool amx_int8 = amx_tile && bit(leaf7.edx, 25);
  const bool amx_bf16 = amx_tile && bit(leaf7.edx, 22);
  if ((amx_int8 || amx_bf16) && request_amx_tile_permission()) {
    f.amx_int8 = amx_int8;
    f.amx_bf16 = amx_bf16;
  }
#endif
  return f;
}

}  // namespace detail

/// This CPU's features, detected on first use (thread-safe). On Linux, a CPU with AMX also
/// gets the process the permission to use the tile registers here.
inline const Features& features() {
  static const Features detected = detail::detect();
  return detected;
}

/// "avx2 fma avx512 avx512_vnni ..." for a report.
inline std::string describe(const Features& f) {
  std::string text;
  const auto add = [&text](bool present, const char* name) {
    if (!present) return;
    if (!text.empty()) text += ' ';
    text += name;
  };
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx_vnni, "avx_vnni");
  add(f.avx512, "avx512(f,bw,dq,vl,cd)");
  add(f.avx512_vnni, "avx512_vnni");
  add(f.avx512_bf16, "avx512_bf16");
  add(f.amx_int8, "amx_int8");
  add(f.amx_bf16, "amx_bf16");
  return text.empty() ? "none beyond the baseline" : text;
}

/// What tier `isa` of `family` needs, in words, and whether `f` has it.
struct Requirement {
  bool met;
  const char* needs;
};
inline Requirement requirement(Isa isa, KernelFamily family, const Features& f) noexcept {
  const bool int8 = family == KernelFamily::int8_matmul;
  switch (isa) {
    case Isa::scalar:
      return {true, "nothing"};
    case Isa::avx2:
      return int8 ? Requirement{f.avx2, "AVX2"} : Requirement{f.avx2 && f.fma, "AVX2 and FMA"};
    case Isa::avx512:
      return int8 ? Requirement{f.avx512_vnni, "AVX-512 (F, BW, DQ, VL, CD) and AVX512_VNNI"}
                  : Requirement{f.avx512_bf16, "AVX-512 (F, BW, DQ, VL, CD) and AVX512_BF16"};
    case Isa::amx:
      return int8 ? Requirement{f.amx_int8, "AMX-TILE and AMX-INT8, granted by the OS"}
                  : Requirement{f.amx_bf16, "AMX-TILE and AMX-BF16, granted by the OS"};
  }
  return {false, "?"};
}

/// True if this CPU runs tier `isa` of `family`.
inline bool runs(Isa isa, KernelFamily family) {
  return requirement(isa, family, features()).met;
}

/// The fastest tier of `family` this CPU runs.
inline Isa best_isa(KernelFamily family) {
  Isa best = Isa::scalar;
  for (const Isa isa : kAllIsas)
    if (runs(isa, family)) best = isa;
  return best;
}

/// Name of the environment variable that forces a tier for every family: CMX_ISA=scalar, avx2,
/// avx512 or amx.
inline constexpr const char* kIsaEnvironmentVariable = "CMX_ISA";

/// `requested` if given, else the tier CMX_ISA names, else best_isa(family). A tier this CPU
/// cannot run, or an unknown CMX_ISA, is cmx::Error(invalid_argument) naming what is missing;
/// never a silent fallback.
inline Isa resolve_isa(KernelFamily family, std::optional<Isa> requested = std::nullopt) {
  std::optional<Isa> isa = requested;
  if (!isa) {
    if (const char* forced = std::getenv(kIsaEnvironmentVariable); forced && *forced) {
      isa = parse_isa(forced);
      cmx::detail::require(isa.has_value(), ErrorCode::invalid_argument, kIsaEnvironmentVariable,
                           "='", forced, "' is not one of scalar, avx2, avx512, amx");
    }
  }
  if (!isa) return best_isa(family);
  const Requirement needed = requirement(*isa, family, features());
  cmx::detail::require(needed.met, ErrorCode::invalid_argument, "the ", to_string(*isa), " ",
                       to_string(family), " micro-kernels need ", needed.needs,
                       "; this CPU has: ", describe(features()));
  return *isa;
}

/// Writes "cmx: <family> micro-kernels: <isa> (<why>)" to stderr, once per family per process:
/// the one line a user reads to know which path ran.
inline void log_isa_once(KernelFamily family, Isa isa, const char* why) {
  static std::once_flag logged[2];
  std::call_once(logged[family == KernelFamily::int8_matmul ? 0 : 1], [&] {
    std::fprintf(stderr, "cmx: %s micro-kernels: %s (%s; %s=scalar|avx2|avx512|amx forces one)\n",
                 to_string(family), to_string(isa), why, kIsaEnvironmentVariable);
  });
}

/// log_isa_once for the process's default tier of `family` (resolve_isa without a request):
/// the reason is CMX_ISA if it is set, else that the tier is the best this CPU runs.
inline void log_process_isa_once(KernelFamily family, Isa isa) {
  const char* forced = std::getenv(kIsaEnvironmentVariable);
  log_isa_once(family, isa, forced && *forced ? "forced by CMX_ISA" : "the best this CPU runs");
}

}  // namespace cmx::cpu
