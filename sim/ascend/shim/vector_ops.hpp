// SPDX-License-Identifier: Apache-2.0
// The vector unit of the clean-room AscendC shim: the element types `half` and `bfloat16_t`,
// RoundMode, and the "first count elements" forms of Cast, Abs, Muls, Adds, Add, Mul,
// Duplicate, FusedMulAdd, ReduceMax and ReduceSum, declared by us from Huawei's public AscendC
// API documentation (each group cites its page) and run on the CPU with the hardware's
// operand rules checked. Included at the end of kernel_operator.hpp; include that.
//
// Every operation checks, before it writes anything:
//   - it is called from a kernel (cmx::Error(state) otherwise);
//   - calCount >= 0 and every operand holds calCount elements (cmx::Error(capacity));
//   - every operand starts 32-byte aligned and lies in the calling core's UB
//     (cmx::Error(invalid_argument)); for a reduction's destination this is stricter than
//     documented (4 or 8 bytes there), so that one rule covers every operand;
//   - a destination and a source are either the same elements of the same type (in place) or
//     disjoint (cmx::Error(invalid_argument) for any other overlap).
// Then it computes every element in IEEE binary32 arithmetic, round to nearest even, with
// subnormals kept (no flush to zero), and stores the results.
//
// NOTES: what is modelled and what is not.
//   - A vector instruction completes at once. The ordering of the V pipe against MTE2/MTE3
//     and the scalar unit (SetFlag/WaitFlag<MTE2_V>, <V_S>, <V_MTE3>) is not enforced: a
//     kernel that forgets a flag passes here. Write the flags anyway.
//   - The mask / repeat ("high-dimension") forms, SetVectorMask and the 256-byte repeat
//     structure are not modelled, except in ReduceSum's summation order and the size checked
//     for a reduction's work tensor.
//   - Assumptions about the hardware, not documented: binary32 Muls/Adds/Add/Mul round once
//     to nearest even and keep subnormals; Inf * 0 is NaN and NaN propagates through Muls,
//     Add and ReduceSum (the "INF/NAN mode" of the A2/A3 vector unit, not its saturation
//     mode); FusedMulAdd rounds once (see there); ReduceMax's result for a NaN input is not
//     documented (see there).
//   - Only float is implemented for the arithmetic; other element types fail to compile with
//     a static_assert naming the simulation.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cmx/core/bf16.hpp"
#include "cmx/core/error.hpp"
#include "sim/ascend/core.hpp"
#include "sim/ascend/shim/kernel_operator.hpp"

namespace cmx::ascend_sim {

/// IEEE-754 binary16 as stored: AscendC's `half`. Conversions are exact where the value is
/// representable; from_float rounds to nearest, ties to even (overflow to +-Inf, NaN kept
/// quiet with its sign).
struct Half {
  std::uint16_t bits = 0;

  /// Widens exactly (every binary16 is a binary32).
  constexpr float to_float() const noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
    const std::uint32_t exponent = (bits >> 10) & 0x1fu;
    const std::uint32_t mantissa = bits & 0x3ffu;
    if (exponent == 0x1fu)  // Inf or NaN
      return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
    if (exponent != 0)  // normal: rebias 15 -> 127
      return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
    // zero or subnormal: mantissa * 2^-24, exact in binary32
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign != 0 ? -magnitude : magnitude;
  }

  /// The binary16 nearest to `value`, ties to even.
  static Half from_float(float value) noexcept {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(value);
    const auto sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
    const std::uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)  // NaN: quiet, keep the top of the payload
      return Half{static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu))};
    if (a >= 0x477ff000u)  // >= 65520 (half-way from 65504 to 2^16): Inf, as RNE does
      return Half{static_cast<std::uint16_t>(sign | 0x7c00u)};
    if (a >= 0x38800000u) {  // >= 2^-14: a normal binary16
      std::uint32_t h = ((a >> 23) - 112u) << 10 | ((a >> 13) & 0x3ffu);
      const std::uint32_t rest = a & 0x1fffu;
      if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) != 0)) ++h;  // may carry into exponent
      return Half{static_cast<std::uint16_t>(sign | h)};
    }
    // Subnormal range: units of 2^-24; the scaling is exact, nearbyint rounds ties to even.
    const float units = std::nearbyint(std::bit_cast<float>(a) * 0x1p24f);
    return Half{static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(units))};
  }

  friend constexpr bool operator==(Half a, Half b) noexcept { return a.bits == b.bits; }
};

static_assert(sizeof(Half) == 2 && std::is_trivially_copyable_v<Half>);

}  // namespace cmx::ascend_sim

/// AscendC's binary16 element type (a compiler type on the device; a storage struct here).
using half = cmx::ascend_sim::Half;
/// AscendC's bfloat16 element type. NOTES: an alias of cmx::bf16, so that a backend can view
/// its cmx::bf16 rows as bfloat16_t without a copy; the two are the same 16 bits.
using bfloat16_t = cmx::bf16;

namespace AscendC {

// ---- RoundMode ---------------------------------------------------------------------------
// The rounding modes of Cast (the enumerators as documented; the comments are ours):
// https://www.hiascend.com/document/detail/en/CANNCommunityEdition/900/API/ascendcopapi/atlasascendc_api_07_0018.html

/// How a Cast rounds when the source value is not representable in the destination type.
enum class RoundMode {
  CAST_NONE = 0,  ///< exact conversions: no rounding; lossy ones: as CAST_RINT
  CAST_RINT,      ///< to nearest, ties to even
  CAST_FLOOR,     ///< toward -Inf
  CAST_CEIL,      ///< toward +Inf
  CAST_ROUND,     ///< to nearest, ties away from zero
  CAST_TRUNC,     ///< toward zero
  CAST_ODD,       ///< to odd (von Neumann): inexact results get an odd last bit
};

namespace detail {

/// A name of `mode` for messages.
constexpr const char* round_mode_name(RoundMode mode) noexcept {
  switch (mode) {
    case RoundMode::CAST_NONE:
      return "CAST_NONE";
    case RoundMode::CAST_RINT:
      return "CAST_RINT";
    case RoundMode::CAST_FLOOR:
      return "CAST_FLOOR";
    case RoundMode::CAST_CEIL:
      return "CAST_CEIL";
    case RoundMode::CAST_ROUND:
      return "CAST_ROUND";
    case RoundMode::CAST_TRUNC:
      return "CAST_TRUNC";
    case RoundMode::CAST_ODD:
      return "CAST_ODD";
  }
  return "RoundMode(?)";
}

/// The AscendC name of an element type, for messages.
template <class T>
constexpr const char* type_name() noexcept {
  if constexpr (std::is_same_v<T, float>)
    return "float";
  else if constexpr (std::is_same_v<T, half>)
    return "half";
  else if constexpr (std::is_same_v<T, bfloat16_t>)
    return "bfloat16_t";
  else if constexpr (std::is_same_v<T, int32_t>)
    return "int32_t";
  else if constexpr (std::is_same_v<T, uint32_t>)
    return "uint32_t";
  else if constexpr (std::is_same_v<T, int16_t>)
    return "int16_t";
  else if constexpr (std::is_same_v<T, uint16_t>)
    return "uint16_t";
  else if constexpr (std::is_same_v<T, int8_t>)
    return "int8_t";
  else if constexpr (std::is_same_v<T, uint8_t>)
    return "uint8_t";
  else
    return "(a type)";
}

template <class T>
inline T load(const T* base, std::size_t i) noexcept {
  T value;
  std::memcpy(&value, base + i, sizeof(T));
  return value;
}
template <class T>
inline void store(T* base, std::size_t i, T value) noexcept {
  std::memcpy(base + i, &value, sizeof(T));
}

/// One operand of a vector instruction, for the checks: its address, elements viewed, the
/// size of one element, and its role in messages.
struct Operand {
  const void* address;
  uint32_t elements;
  std::size_t element_bytes;
  const char* role;
  template <class T>
  Operand(const LocalTensor<T>& tensor, const char* what)
      : address(tensor.GetPhyAddr()),
        elements(tensor.GetSize()),
        element_bytes(sizeof(T)),
        role(what) {}
};

/// The checks every vector instruction makes before it writes (see the file comment).
/// `needed[i]` is the element count operand i must hold. Returns the calling core.
inline cmx::ascend_sim::detail::Core& check_vector(const char* what, int64_t count,
                                                   std::initializer_list<Operand> operands,
                                                   std::initializer_list<int64_t> needed) {
  using cmx::ascend_sim::kDmaAlignment;
  auto& core = cmx::ascend_sim::detail::current_core(what);
  cmx::detail::require(count >= 0, cmx::ErrorCode::invalid_argument, what, ": calCount ", count,
                       " is negative");
  const int64_t* need = needed.begin();
  for (const Operand& operand : operands) {
    const int64_t elements = *need++;
    cmx::detail::require(elements <= operand.elements, cmx::ErrorCode::capacity, what, ": the ",
                         operand.role, " tensor holds ", operand.elements, " elements of ",
                         operand.element_bytes, " B, ", elements, " needed (calCount ", count, ")");
    cmx::detail::require(reinterpret_cast<std::uintptr_t>(operand.address) % kDmaAlignment == 0,
                         cmx::ErrorCode::invalid_argument, what, ": the ", operand.role,
                         " tensor at UB ", operand.address, " does not start 32-byte aligned");
    cmx::detail::require(
        core.in_ub(operand.address, static_cast<std::size_t>(elements) * operand.element_bytes),
        cmx::ErrorCode::invalid_argument, what, ": the ", operand.role, " tensor at ",
        operand.address, " is not in the calling core's Unified Buffer");
  }
  return core;
}

/// Requires destination `dst` and source `src`, `count` elements each, to be the same
/// elements of the same type, or disjoint.
inline void check_overlap(const char* what, const Operand& dst, const Operand& src,
                          std::size_t count) {
  const std::size_t dst_bytes = count * dst.element_bytes;
  const std::size_t src_bytes = count * src.element_bytes;
  const auto* d = static_cast<const std::byte*>(dst.address);
  const auto* s = static_cast<const std::byte*>(src.address);
  const bool disjoint =
      d + dst_bytes <= s || s + src_bytes <= d || dst_bytes == 0 || src_bytes == 0;
  const bool in_place = d == s && dst.element_bytes == src.element_bytes;
  cmx::detail::require(disjoint || in_place, cmx::ErrorCode::invalid_argument, what, ": the ",
                       dst.role, " tensor (UB ", dst.address, ", ", dst_bytes, " B) and the ",
                       src.role, " tensor (UB ", src.address, ", ", src_bytes,
                       " B) overlap without being the same elements of one type");
}

/// Shared body of the elementwise instructions: checks dst and the sources, computes every
/// result into a scratch vector (so in-place calls read their inputs intact and a throwing
/// `op` writes nothing), then stores. `op(i)` returns the result for element i.
template <class D, class Op, class... Sources>
inline void elementwise(const char* what, const LocalTensor<D>& dst, int64_t count, Op&& op,
                        const Sources&... sources) {
  const Operand dst_operand(dst, "destination");
  check_vector(what, count, {dst_operand, Operand(sources, "source")...},
               {count, (static_cast<void>(sources), count)...});
  const auto n = static_cast<std::size_t>(std::max<int64_t>(count, 0));  // checked above
  (check_overlap(what, dst_operand, Operand(sources, "source"), n), ...);
  std::vector<D> results(n);
  for (std::size_t i = 0; i < n; ++i) results[i] = op(i);
  if (n > 0) std::memcpy(dst.GetPhyAddr(), results.data(), n * sizeof(D));
}

template <class T>
inline constexpr bool kIsFloat = std::is_same_v<T, float>;

}  // namespace detail

// ---- Duplicate ---------------------------------------------------------------------------
// https://www.hiascend.com/document/detail/zh/canncommercial/800/apiref/ascendcopapi/atlasascendc_api_07_0087.html

/// dst[i] = scalarValue for i < calCount. T: a 2- or 4-byte element type (the documented
/// uint16_t/int16_t/half/bfloat16_t/uint32_t/int32_t/float). Errors as the file comment.
template <class T>
__aicore__ inline void Duplicate(const LocalTensor<T>& dst, const T& scalarValue,
                                 const int32_t& calCount) {
  static_assert(sizeof(T) == 2 || sizeof(T) == 4,
                "Duplicate: AscendC documents 2- and 4-byte element types only");
  const T value = scalarValue;
  detail::elementwise("Duplicate", dst, calCount, [&](std::size_t) { return value; });
}

// ---- Abs, Muls, Adds, Add, Mul -----------------------------------------------------------
// Abs:
// https://www.hiascend.com/document/detail/zh/canncommercial/850/API/ascendcopapi/atlasascendc_api_07_0027.html
// Muls, Adds, Add, Mul ("tensor前n个数据计算" forms), from the API list:
// https://www.hiascend.com/document/detail/zh/canncommercial/82RC1/API/ascendcopapi

/// dst[i] = |src[i]| for i < calCount (the sign bit cleared; NaN stays NaN). T: float or
/// half. Errors as the file comment.
template <class T>
__aicore__ inline void Abs(const LocalTensor<T>& dst, const LocalTensor<T>& src,
                           const int32_t& calCount) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, half>,
                "Abs: the simulation implements float and half");
  const T* in = src.GetPhyAddr();
  detail::elementwise(
      "Abs", dst, calCount,
      [&](std::size_t i) {
        if constexpr (std::is_same_v<T, float>)
          return std::bit_cast<float>(std::bit_cast<uint32_t>(detail::load(in, i)) & 0x7fffffffu);
        else
          return half{static_cast<uint16_t>(detail::load(in, i).bits & 0x7fffu)};
      },
      src);
}

/// dst[i] = src[i] * scalarValue for i < calCount: one binary32 multiply, rounded to nearest
/// even (Inf * 0 = NaN). T: float. Errors as the file comment.
template <class T>
__aicore__ inline void Muls(const LocalTensor<T>& dst, const LocalTensor<T>& src,
                            const T& scalarValue, const int32_t& calCount) {
  static_assert(detail::kIsFloat<T>, "Muls: the simulation implements float only");
  const T* in = src.GetPhyAddr();
  const T scalar = scalarValue;
  detail::elementwise(
      "Muls", dst, calCount, [&](std::size_t i) { return detail::load(in, i) * scalar; }, src);
}

/// dst[i] = src[i] + scalarValue for i < calCount: one binary32 addition, rounded to nearest
/// even. T: float. Errors as the file comment.
template <class T>
__aicore__ inline void Adds(const LocalTensor<T>& dst, const LocalTensor<T>& src,
                            const T& scalarValue, const int32_t& calCount) {
  static_assert(detail::kIsFloat<T>, "Adds: the simulation implements float only");
  const T* in = src.GetPhyAddr();
  const T scalar = scalarValue;
  detail::elementwise(
      "Adds", dst, calCount, [&](std::size_t i) { return detail::load(in, i) + scalar; }, src);
}

/// dst[i] = src0[i] + src1[i] for i < calCount (binary32, round to nearest even). T: float.
/// Errors as the file comment.
template <class T>
__aicore__ inline void Add(const LocalTensor<T>& dst, const LocalTensor<T>& src0,
                           const LocalTensor<T>& src1, const int32_t& calCount) {
  static_assert(detail::kIsFloat<T>, "Add: the simulation implements float only");
  const T* a = src0.GetPhyAddr();
  const T* b = src1.GetPhyAddr();
  detail::elementwise(
      "Add", dst, calCount, [&](std::size_t i) { return detail::load(a, i) + detail::load(b, i); },
      src0, src1);
}

/// dst[i] = src0[i] * src1[i] for i < calCount (binary32, round to nearest even). T: float.
/// Errors as the file comment.
template <class T>
__aicore__ inline void Mul(const LocalTensor<T>& dst, const LocalTensor<T>& src0,
                           const LocalTensor<T>& src1, const int32_t& calCount) {
  static_assert(detail::kIsFloat<T>, "Mul: the simulation implements float only");
  const T* a = src0.GetPhyAddr();
  const T* b = src1.GetPhyAddr();
  detail::elementwise(
      "Mul", dst, calCount, [&](std::size_t i) { return detail::load(a, i) * detail::load(b, i); },
      src0, src1);
}

// ---- FusedMulAdd -------------------------------------------------------------------------
// https://www.hiascend.com/document/detail/en/CANNCommunityEdition/900/API/ascendcopapi/atlasascendc_api_07_0050.html
// Why this one and not Axpy or MulAddDst (dst = src * scalar + dst, dst = src0 * src1 + dst):
// none of the three pages says how many times the result is rounded. FusedMulAdd is the only
// one whose name says "fused". Against Axpy: the page of the advanced-API Axpy says it computes
// with Muls and Add "for better precision" than the basic Axpy, which would be odd if the basic
// Axpy rounded once.
// https://www.hiascend.com/document/detail/zh/CANNCommunityEdition/83RC1/API/ascendcopapi/atlasascendc_api_07_0585.html

/// dst[i] = src0[i] * dst[i] + src1[i] for i < calCount, as std::fma: one rounding, to nearest
/// even. T: float.
///
/// NOTES: the single rounding is an ASSUMPTION (see above): AscendC documents the formula, not
/// the rounding. If the hardware rounds the product first, results differ from cmx's CPU
/// definitions in the last bit; a check on the NPU must settle it. Errors as the file comment.
template <class T>
__aicore__ inline void FusedMulAdd(const LocalTensor<T>& dst, const LocalTensor<T>& src0,
                                   const LocalTensor<T>& src1, const int32_t& calCount) {
  static_assert(detail::kIsFloat<T>, "FusedMulAdd: the simulation implements float only");
  const T* a = src0.GetPhyAddr();
  const T* acc = src1.GetPhyAddr();
  const T* d = dst.GetPhyAddr();
  detail::elementwise(
      "FusedMulAdd", dst, calCount,
      [&](std::size_t i) {
        return std::fma(detail::load(a, i), detail::load(d, i), detail::load(acc, i));
      },
      src0, src1);
}

// ---- Cast --------------------------------------------------------------------------------
// Cast (tensor form; the conversion table and each mode's rule):
// https://www.hiascend.com/document/detail/zh/canncommercial/900/API/ascendcopapi/atlasascendc_api_07_0073.html
// https://www.hiascend.com/document/detail/en/canncommercial/800/apiref/ascendcopapi/atlasascendc_api_07_0072.html

namespace detail {

[[noreturn]] inline void unsupported_cast(const char* from, const char* to, RoundMode mode) {
  cmx::detail::fail(cmx::ErrorCode::invalid_argument, "Cast ", from, " -> ", to, " with ",
                    round_mode_name(mode), " is not modelled by the simulation");
}

template <class I>
inline I float_to_integer(float value, const char* from, const char* to) {
  cmx::detail::require(!std::isnan(value), cmx::ErrorCode::invalid_argument, "Cast ", from, " -> ",
                       to, ": NaN to an integer is not documented (not modelled)");
  cmx::detail::require(value >= static_cast<float>(std::numeric_limits<I>::min()) &&
                           value <= static_cast<float>(std::numeric_limits<I>::max()),
                       cmx::ErrorCode::invalid_argument, "Cast ", from, " -> ", to, ": ", value,
                       " is outside ", to, " (saturation is not modelled)");
  return static_cast<I>(value);
}

/// `value` rounded to an integral float by `mode` (RINT: ties to even; ROUND: ties away).
inline float round_integral(float value, RoundMode mode) {
  switch (mode) {
    case RoundMode::CAST_NONE:
    case RoundMode::CAST_RINT:
      return std::nearbyint(value);
    case RoundMode::CAST_FLOOR:
      return std::floor(value);
    case RoundMode::CAST_CEIL:
      return std::ceil(value);
    case RoundMode::CAST_ROUND:
      return std::round(value);
    case RoundMode::CAST_TRUNC:
      return std::trunc(value);
    case RoundMode::CAST_ODD:
      break;
  }
  return std::numeric_limits<float>::quiet_NaN();  // not reached: CAST_ODD is refused first
}

}  // namespace detail

/// dst[i] = src[i] converted to T by `round_mode`, for i < calCount. The (U -> T, mode) pairs
/// the simulation models, each as the Cast page describes it:
///
///   bfloat16_t -> float    CAST_NONE                 exact
///   half       -> float    CAST_NONE                 exact
///   int8_t     -> half     CAST_NONE                 exact
///   float      -> bfloat16_t CAST_RINT               to nearest, ties to even; NaN stays NaN
///   float      -> int32_t  CAST_RINT                 to nearest integer, ties to even
///   int32_t    -> half     CAST_NONE                 exact for |v| <= 2048, else ties to even
///   half       -> int8_t   CAST_NONE, CAST_RINT, CAST_FLOOR, CAST_CEIL, CAST_ROUND, CAST_TRUNC
///
/// Every other pair or mode throws cmx::Error(invalid_argument) naming it. A value the
/// destination cannot hold (NaN or out of range to an integer, |v| > 65504 to half) throws
/// cmx::Error(invalid_argument): the documentation says "saturate" for some pairs only, and
/// the simulation does not guess. Operands may be in place only when T and U have one size.
/// Other errors as the file comment; nothing is written on any error.
template <class T, class U>
__aicore__ inline void Cast(const LocalTensor<T>& dst, const LocalTensor<U>& src,
                            const RoundMode& round_mode, const uint32_t calCount) {
  const U* in = src.GetPhyAddr();
  const RoundMode mode = round_mode;
  const char* from = detail::type_name<U>();
  const char* to = detail::type_name<T>();
  auto refuse_unless = [&](bool supported) {
    if (!supported) detail::unsupported_cast(from, to, mode);
  };
  const auto count = static_cast<int64_t>(calCount);
  if constexpr (std::is_same_v<U, bfloat16_t> && std::is_same_v<T, float>) {
    refuse_unless(mode == RoundMode::CAST_NONE);
    detail::elementwise(
        "Cast", dst, count, [&](std::size_t i) { return detail::load(in, i).to_float(); }, src);
  } else if constexpr (std::is_same_v<U, half> && std::is_same_v<T, float>) {
    refuse_unless(mode == RoundMode::CAST_NONE);
    detail::elementwise(
        "Cast", dst, count, [&](std::size_t i) { return detail::load(in, i).to_float(); }, src);
  } else if constexpr (std::is_same_v<U, int8_t> && std::is_same_v<T, half>) {
    refuse_unless(mode == RoundMode::CAST_NONE);
    detail::elementwise(
        "Cast", dst, count,
        [&](std::size_t i) { return half::from_float(static_cast<float>(detail::load(in, i))); },
        src);
  } else if constexpr (std::is_same_v<U, float> && std::is_same_v<T, bfloat16_t>) {
    refuse_unless(mode == RoundMode::CAST_RINT);
    detail::elementwise(
        "Cast", dst, count,
        [&](std::size_t i) { return cmx::bf16::from_float(detail::load(in, i)); }, src);
  } else if constexpr (std::is_same_v<U, float> && std::is_same_v<T, int32_t>) {
    refuse_unless(mode == RoundMode::CAST_RINT);
    detail::elementwise(
        "Cast", dst, count,
        [&](std::size_t i) {
          return detail::float_to_integer<int32_t>(std::nearbyint(detail::load(in, i)), from, to);
        },
        src);
  } else if constexpr (std::is_same_v<U, int32_t> && std::is_same_v<T, half>) {
    refuse_unless(mode == RoundMode::CAST_NONE);
    detail::elementwise(
        "Cast", dst, count,
        [&](std::size_t i) {
          const int32_t value = detail::load(in, i);
          cmx::detail::require(value >= -65504 && value <= 65504, cmx::ErrorCode::invalid_argument,
                               "Cast int32_t -> half: ", value,
                               " is outside half (saturation is not modelled)");
          return half::from_float(static_cast<float>(value));  // exact to float, one rounding
        },
        src);
  } else if constexpr (std::is_same_v<U, half> && std::is_same_v<T, int8_t>) {
    refuse_unless(mode != RoundMode::CAST_ODD);
    detail::elementwise(
        "Cast", dst, count,
        [&](std::size_t i) {
          return detail::float_to_integer<int8_t>(
              detail::round_integral(detail::load(in, i).to_float(), mode), from, to);
        },
        src);
  } else {
    static_cast<void>(in);
    static_cast<void>(count);
    detail::unsupported_cast(from, to, mode);
  }
}

// ---- ReduceMax, ReduceSum ----------------------------------------------------------------
// ReduceMax (result, then the index if calIndex; the work tensor's minimum size):
// https://www.hiascend.com/document/detail/zh/CANNCommunityEdition/82RC1alpha002/API/ascendcopapi/atlasascendc_api_07_0076.html
// ReduceSum (the summation order of each product; the work tensor):
// https://www.hiascend.com/document/detail/en/canncommercial/800/apiref/ascendcopapi/atlasascendc_api_07_0078.html

namespace detail {

/// Elements of T one 256-byte repeat of the vector unit covers, and one 32-byte block holds.
template <class T>
inline constexpr int64_t kPerRepeat = 256 / sizeof(T);
template <class T>
inline constexpr int64_t kPerBlock = 32 / sizeof(T);

/// The work elements a reduction of `count` elements needs, by our reading of the documented
/// minimum: one (ReduceSum) or two (ReduceMax: value and index) results per repeat, rounded
/// up to whole 32-byte blocks.
template <class T>
constexpr int64_t reduce_work_elements(int64_t count, int64_t per_repeat_results) {
  const int64_t repeats = (count + kPerRepeat<T> - 1) / kPerRepeat<T>;
  const int64_t results = repeats * per_repeat_results;
  return (results + kPerBlock<T> - 1) / kPerBlock<T> * kPerBlock<T>;
}

/// The sum of x[0..n) as a binary tree: adjacent pairs, level by level; an odd element out
/// at a level is carried up unchanged (our guess for a partial repeat).
inline float tree_sum(std::vector<float> x) {
  while (x.size() > 1) {
    std::vector<float> next((x.size() + 1) / 2);
    for (std::size_t i = 0; i + 1 < x.size(); i += 2) next[i / 2] = x[i] + x[i + 1];
    if (x.size() % 2 != 0) next.back() = x.back();
    x = std::move(next);
  }
  return x.empty() ? 0.0f : x[0];
}

template <class T>
inline void check_reduce(const char* what, const LocalTensor<T>& dst, const LocalTensor<T>& src,
                         const LocalTensor<T>& work, int64_t count, int64_t dst_elements,
                         int64_t work_elements) {
  cmx::detail::require(count >= 1, cmx::ErrorCode::invalid_argument, what, ": count ", count,
                       " (at least one element is reduced)");
  const Operand d(dst, "destination"), s(src, "source"), w(work, "work");
  check_vector(what, count, {d, s, w}, {dst_elements, count, work_elements});
  const auto bytes = [](int64_t n) { return static_cast<std::size_t>(n) * sizeof(T); };
  for (const auto& [a, a_bytes, b, b_bytes] :
       {std::tuple{w, bytes(work_elements), s, bytes(count)},
        std::tuple{w, bytes(work_elements), d, bytes(dst_elements)},
        std::tuple{d, bytes(dst_elements), s, bytes(count)}}) {
    const auto* pa = static_cast<const std::byte*>(a.address);
    const auto* pb = static_cast<const std::byte*>(b.address);
    cmx::detail::require(pa + a_bytes <= pb || pb + b_bytes <= pa, cmx::ErrorCode::invalid_argument,
                         what, ": the ", a.role, " and the ", b.role, " tensors overlap");
  }
}

}  // namespace detail

/// The largest of src[0..count) into dst[0]; with calIndex, the index of its first occurrence
/// into dst[1] (the uint32_t's bits stored in the T element, as documented: read it back with
/// ReinterpretCast<uint32_t>). T: float. workLocal is scratch for the per-repeat results: it
/// must hold reduce_work_elements (two results per 64-element repeat, whole blocks) and is
/// overwritten. dst, src and workLocal must not overlap.
///
/// NOTES: what the hardware returns when src holds a NaN is not documented. The simulation
/// ignores NaN (the largest of the other elements; -Inf if all are NaN), one plausible choice,
/// so that a kernel that tests the maximum for NaN does not see the NaN here: detect Inf/NaN
/// some other way (Muls by 0, then ReduceSum: NaN iff an element is Inf or NaN). Inf is the
/// largest value as in IEEE. Throws cmx::Error(invalid_argument) for count < 1, overlapping
/// operands, misaligned ones or ones outside the core's UB; cmx::Error(capacity) if dst,
/// src or workLocal is too small. Nothing is written on error.
template <class T>
__aicore__ inline void ReduceMax(const LocalTensor<T>& dstLocal, const LocalTensor<T>& srcLocal,
                                 const LocalTensor<T>& workLocal, const int32_t count,
                                 bool calIndex = false) {
  static_assert(detail::kIsFloat<T>, "ReduceMax: the simulation implements float only");
  const int64_t n = std::max<int32_t>(count, 0);  // < 1 is refused by check_reduce
  detail::check_reduce("ReduceMax", dstLocal, srcLocal, workLocal, count, calIndex ? 2 : 1,
                       n >= 1 ? detail::reduce_work_elements<T>(n, 2) : 0);
  const T* in = srcLocal.GetPhyAddr();
  const auto repeats =
      static_cast<std::size_t>((n + detail::kPerRepeat<T> - 1) / detail::kPerRepeat<T>);
  float best = -std::numeric_limits<float>::infinity();
  uint32_t best_index = 0;
  bool found = false;
  for (std::size_t r = 0; r < repeats; ++r) {  // per repeat: its max and index, into work
    float repeat_best = -std::numeric_limits<float>::infinity();
    uint32_t repeat_index = 0;
    bool repeat_found = false;
    const std::size_t first = r * detail::kPerRepeat<T>;
    const std::size_t last =
        std::min<std::size_t>(first + detail::kPerRepeat<T>, static_cast<std::size_t>(n));
    for (std::size_t i = first; i < last; ++i) {
      const float value = detail::load(in, i);
      if (std::isnan(value)) continue;
      if (!repeat_found || value > repeat_best) {
        repeat_best = value;
        repeat_index = static_cast<uint32_t>(i);
        repeat_found = true;
      }
    }
    detail::store(workLocal.GetPhyAddr(), 2 * r, repeat_best);
    detail::store(workLocal.GetPhyAddr(), 2 * r + 1,
                  std::bit_cast<float>(static_cast<uint32_t>(repeat_index - first)));
    if (repeat_found && (!found || repeat_best > best)) {
      best = repeat_best;
      best_index = repeat_index;
      found = true;
    }
  }
  detail::store(dstLocal.GetPhyAddr(), 0, best);
  if (calIndex) detail::store(dstLocal.GetPhyAddr(), 1, std::bit_cast<float>(best_index));
}

/// The sum of src[0..count) into dst[0]. T: float. The order is the one documented for the
/// count form on Atlas A2/A3: a binary tree of adjacent pairs inside each 64-element repeat,
/// then the repeats' sums added in order (each addition binary32, round to nearest even); the
/// tree of a partial last repeat carries an odd element up unchanged (not documented).
/// workLocal is scratch (one result per repeat, whole blocks) and is overwritten. NaN and Inf
/// propagate as in IEEE (assumed: the INF/NAN mode, not saturation). Errors as ReduceMax.
template <class T>
__aicore__ inline void ReduceSum(const LocalTensor<T>& dstLocal, const LocalTensor<T>& srcLocal,
                                 const LocalTensor<T>& workLocal, const int32_t count) {
  static_assert(detail::kIsFloat<T>, "ReduceSum: the simulation implements float only");
  const int64_t n = std::max<int32_t>(count, 0);  // < 1 is refused by check_reduce
  detail::check_reduce("ReduceSum", dstLocal, srcLocal, workLocal, count, 1,
                       n >= 1 ? detail::reduce_work_elements<T>(n, 1) : 0);
  const T* in = srcLocal.GetPhyAddr();
  const auto repeats =
      static_cast<std::size_t>((n + detail::kPerRepeat<T> - 1) / detail::kPerRepeat<T>);
  float sum = 0.0f;
  for (std::size_t r = 0; r < repeats; ++r) {
    const std::size_t first = r * detail::kPerRepeat<T>;
    const std::size_t last =
        std::min<std::size_t>(first + detail::kPerRepeat<T>, static_cast<std::size_t>(n));
    std::vector<float> values(last - first);
    for (std::size_t i = first; i < last; ++i) values[i - first] = detail::load(in, i);
    const float repeat_sum = detail::tree_sum(std::move(values));
    detail::store(workLocal.GetPhyAddr(), r, repeat_sum);
    sum = r == 0 ? repeat_sum : sum + repeat_sum;
  }
  detail::store(dstLocal.GetPhyAddr(), 0, sum);
}

}  // namespace AscendC
