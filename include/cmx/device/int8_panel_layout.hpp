// SPDX-License-Identifier: Apache-2.0
// The packed weight layout every CPU micro-kernel reads (scalar, AVX2, AVX-512 VNNI, AMX): one
// format for all tiers, so they read the same bytes and give the same int32 sums.
//
// A panel holds 16 output channels (rows n of B [N, K]) over the whole depth, as K-quads:
//
//   byte (q * 16 + n) * 4 + i  =  B[n][4q + i] + 128   (an unsigned byte; q = k / 4, i = k % 4)
//
// so the 64 bytes of quad q are the 16 channels' four codes each: one zmm register for
// VPDPBUSD (u8 x s8, 16 int32 lanes), and one row of an AMX B tile for TDPBSUD (16 rows of
// 64 bytes = 64 of depth). The depth is padded to a multiple of 64 with code 0 (byte 128), so
// an AMX tile never reads past a panel.
//
// NOTES: B is stored offset by 128 because VPDPBUSD multiplies unsigned by signed bytes: the
// signed activations are then the broadcast operand, read in place (from dispatch's buffer
// too, no conversion pass), and a row's sum of codes corrects the product exactly:
//   sum_k a * (b + 128) - 128 * sum_k a = sum_k a * b     (int32, wrapping, exact).
// The correction depends only on the rows of A and on the depth range of a call, so a
// product over any depth range is exact on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "cmx/core/local_arena.hpp"

namespace cmx::int8_panel {

/// Output channels per panel.
inline constexpr int kColumns = 16;
/// Depth (k) per quad, and bytes per quad row of a panel.
inline constexpr int kQuadDepth = 4;
inline constexpr std::size_t kQuadRowBytes = kColumns * kQuadDepth;  // 64
/// The depth a panel is padded to: one AMX tile of B (16 quad rows).
inline constexpr int kDepthPadding = 64;
/// The offset of stored bytes: stored = code + 128, i.e. code XOR 0x80.
inline constexpr int kCodeOffset = 128;

/// The name of this layout (Int8MatmulDevice::int8_panel_format).
inline constexpr std::string_view kFormat = "cpu-int8-quad16: [ceil64(K)/4][16][4] B+128";

/// Bytes of one panel of depth `k`.
constexpr std::size_t bytes(int k) noexcept {
  return round_up(static_cast<std::size_t>(k), kDepthPadding) / kQuadDepth * kQuadRowBytes;
}

/// Byte offset of quad `q` (depth 4q ... 4q+3) in a panel.
constexpr std::size_t quad_offset(int q) noexcept {
  return static_cast<std::size_t>(q) * kQuadRowBytes;
}

/// Packs rows [kColumns][k] int8 (channel n's codes at rows[n * k ...]) into `out`
/// [bytes(k)]. Requires rows.size() == kColumns * k and out.size() == bytes(k).
inline void pack(std::span<const std::int8_t> rows, int k, std::span<std::byte> out) noexcept {
  const std::size_t depth = static_cast<std::size_t>(k);
  std::memset(out.data(), kCodeOffset, out.size());  // padding: code 0
  for (std::size_t n = 0; n < kColumns; ++n)
    for (std::size_t d = 0; d < depth; ++d) {
      const std::size_t at = (d / kQuadDepth * kColumns + n) * kQuadDepth + d % kQuadDepth;
      out[at] = static_cast<std::byte>(static_cast<std::uint8_t>(rows[n * depth + d]) ^ 0x80u);
    }
}

/// The code of channel `n` at depth `d` of a packed panel (what pack stored, read back).
inline std::int8_t code(const std::byte* panel, int n, int d) noexcept {
  const std::size_t at =
      (static_cast<std::size_t>(d / kQuadDepth) * kColumns + static_cast<std::size_t>(n)) *
          kQuadDepth +
      static_cast<std::size_t>(d % kQuadDepth);
  return static_cast<std::int8_t>(static_cast<std::uint8_t>(panel[at]) ^ 0x80u);
}

}  // namespace cmx::int8_panel
