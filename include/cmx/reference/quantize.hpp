// SPDX-License-Identifier: Apache-2.0
// Scalar, obviously-correct versions of cmx's quantization and rounding, written independently
// of cmx/core/quantize.hpp (plain float math, no bit tricks) to test it against.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>

#include "cmx/core/bf16.hpp"

namespace cmx::reference {

/// The bf16 nearest to `value`, ties to even, computed by comparing the two neighbours in
/// double precision. NaN gives a quiet NaN with the same sign.
inline bf16 round_to_bf16(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if (std::isnan(value)) return bf16{static_cast<std::uint16_t>((bits >> 16) | 0x0040u)};
  if (std::isinf(value)) return bf16{static_cast<std::uint16_t>(bits >> 16)};
  const std::uint16_t lower_bits = static_cast<std::uint16_t>(bits >> 16);  // toward zero
  const double lower = static_cast<double>(bf16{lower_bits}.to_float());
  // The neighbour away from zero; past the largest finite bf16 it is 2^128 (the next binade),
  // which rounds to Inf exactly as IEEE overflow does.
  const std::uint16_t upper_bits = static_cast<std::uint16_t>(lower_bits + 1);
  const bool upper_is_inf = (upper_bits & 0x7fffu) == 0x7f80u;
  const double upper = upper_is_inf ? std::copysign(std::ldexp(1.0, 128), value)
                                    : static_cast<double>(bf16{upper_bits}.to_float());
  const double distance_lower = std::fabs(static_cast<double>(value) - lower);
  const double distance_upper = std::fabs(upper - static_cast<double>(value));
  if (distance_lower < distance_upper) return bf16{lower_bits};
  if (distance_upper < distance_lower) return bf16{upper_bits};
  return (lower_bits & 1u) == 0 ? bf16{lower_bits} : bf16{upper_bits};
}

namespace detail {
inline float value_of(bf16 value) {
  return value.to_float();
}
inline float value_of(float value) {
  return value;
}

/// The quantization both overloads below define, on values read as floats.
template <class T>
float quantize_row(std::span<const T> row, std::span<std::int8_t> out) {
  float amax = 0.0f;
  bool finite = true;
  for (const T value : row) {
    const float v = value_of(value);
    finite = finite && std::isfinite(v);
    amax = std::max(amax, std::fabs(v));
  }
  if (!finite || amax < std::ldexp(1.0f, -121)) {
    std::fill(out.begin(), out.end(), std::int8_t{0});
    return finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
  }
  const float inverse_scale = 127.0f / amax;
  for (std::size_t i = 0; i < row.size(); ++i) {
    const float code = std::nearbyint(value_of(row[i]) * inverse_scale);
    out[i] = static_cast<std::int8_t>(std::clamp(code, -127.0f, 127.0f));
  }
  return amax / 127.0f;
}
}  // namespace detail

/// Per-token INT8 quantization as documented at cmx::quantize_row_int8. Returns the scale.
inline float quantize_row_int8(std::span<const bf16> row, std::span<std::int8_t> out) {
  return detail::quantize_row(row, out);
}

/// Per-token INT8 quantization of a float row, as documented at the float overload of
/// cmx::quantize_row_int8. Returns the scale.
inline float quantize_row_int8(std::span<const float> row, std::span<std::int8_t> out) {
  return detail::quantize_row(row, out);
}

}  // namespace cmx::reference
