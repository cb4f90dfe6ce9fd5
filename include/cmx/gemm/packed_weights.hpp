// SPDX-License-Identifier: Apache-2.0
// cmx::gemm::PackedWeights: INT8 weights [N, K] with per-output-channel scales, packed once (at
// load time) into the panels a device's tile product reads.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cmx/core/error.hpp"
#include "cmx/device/int8_matmul.hpp"

namespace cmx::gemm {

/// The weights to pack: B [n, k] int8 (one row per output channel) and its scales, symmetric
/// (no zero point): B_real[n][k] ~= codes[n][k] * scales[n].
struct WeightsArgs {
  std::span<const std::int8_t> codes;  ///< [n, k] int8, row-major
  std::span<const float> scales;       ///< [n] per-output-channel scales
  int n = 0;                           ///< output channels: a positive multiple of 16
  int k = 0;                           ///< depth: a positive multiple of 16, <= kInt8MaxDepth
};

namespace detail {

/// The block kernel of pack_weights: block i of B packs panels [num_panels * i / B,
/// num_panels * (i + 1) / B) of `codes` [num_panels * kInt8PanelColumns][k] into `panels`.
template <Int8MatmulDevice Dev>
struct PackPanels {
  Dev device;
  std::span<const std::int8_t> codes;
  int k;
  int num_panels;
  std::byte* panels;  // [num_panels][panel_bytes]
  std::size_t panel_bytes;

  void operator()(Block& block) {
    constexpr std::size_t kColumns = Dev::kInt8PanelColumns;
    const std::size_t depth = static_cast<std::size_t>(k);
    for (int p = num_panels * block.index / block.count;
         p < num_panels * (block.index + 1) / block.count; ++p) {
      const std::size_t panel = static_cast<std::size_t>(p);
      device.pack_int8_panel(codes.subspan(panel * kColumns * depth, kColumns * depth), k,
                             std::span<std::byte>(panels + panel * panel_bytes, panel_bytes));
    }
  }
};

}  // namespace detail

/// Weights packed for one device layout (Int8MatmulDevice::int8_panel_format). Made by
/// pack_weights; a default-constructed one is empty ("not packed") and every kernel refuses
/// it. Move-only: it owns N * K bytes or more.
class PackedWeights {
 public:
  PackedWeights() = default;

  bool empty() const noexcept { return panels_ == nullptr; }
  int n() const noexcept { return n_; }
  int k() const noexcept { return k_; }
  /// Panels of kInt8PanelColumns output channels: n / kInt8PanelColumns.
  int num_panels() const noexcept { return num_panels_; }
  /// Bytes of one packed panel (the device's int8_panel_bytes(k)).
  std::size_t panel_bytes() const noexcept { return panel_bytes_; }
  /// The first byte of panel `p` (0 <= p < num_panels()).
  const std::byte* panel(int p) const noexcept {
    return panels_.get() + static_cast<std::size_t>(p) * panel_bytes_;
  }
  /// [n] per-output-channel scales.
  std::span<const float> scales() const noexcept { return scales_; }
  /// The layout the panels are in.
  std::string_view format() const noexcept { return format_; }

 private:
  template <Int8MatmulDevice Dev>
  friend PackedWeights pack_weights(Dev& device, const WeightsArgs& args);

  struct Free {
    void operator()(std::byte* bytes) const noexcept { std::free(bytes); }
  };

  std::unique_ptr<std::byte[], Free> panels_;  // [num_panels][panel_bytes], 64-byte aligned
  std::vector<float> scales_;                  // [n]
  std::string format_;
  int n_ = 0;
  int k_ = 0;
  int num_panels_ = 0;
  std::size_t panel_bytes_ = 0;
};

/// Packs `args` into `device`'s panel layout, in parallel over panels (device.launch). A
/// one-time step: the kernels never pack per call.
///
/// Errors (cmx::Error(invalid_argument), before anything is packed): n or k not a positive
/// multiple of 16, k above kInt8MaxDepth, sizes that do not match n and k.
template <Int8MatmulDevice Dev>
PackedWeights pack_weights(Dev& device, const WeightsArgs& args) {
  using cmx::detail::require;
  constexpr int kColumns = Dev::kInt8PanelColumns;
  require(args.n > 0 && args.n % kColumns == 0, ErrorCode::invalid_argument,
          "pack_weights: n = ", args.n, " must be a positive multiple of ", kColumns);
  require(args.k > 0 && args.k % kInt8DepthMultiple == 0 && args.k <= kInt8MaxDepth,
          ErrorCode::invalid_argument, "pack_weights: k = ", args.k,
          " must be a positive multiple of ", kInt8DepthMultiple, ", at most ", kInt8MaxDepth,
          " (beyond it int32 sums could overflow)");
  const std::size_t n = static_cast<std::size_t>(args.n);
  const std::size_t k = static_cast<std::size_t>(args.k);
  require(args.codes.size() == n * k, ErrorCode::invalid_argument, "pack_weights: codes has ",
          args.codes.size(), " elements, expected n * k = ", n, " * ", k);
  require(args.scales.size() == n, ErrorCode::invalid_argument, "pack_weights: scales has ",
          args.scales.size(), " elements, expected n = ", n);

  PackedWeights packed;
  packed.n_ = args.n;
  packed.k_ = args.k;
  packed.num_panels_ = args.n / kColumns;
  packed.panel_bytes_ = device.int8_panel_bytes(args.k);
  packed.format_ = std::string(device.int8_panel_format());
  packed.scales_.assign(args.scales.begin(), args.scales.end());
  const std::size_t total = packed.panel_bytes_ * static_cast<std::size_t>(packed.num_panels_);
  packed.panels_.reset(static_cast<std::byte*>(std::aligned_alloc(64, total)));
  if (!packed.panels_) throw std::bad_alloc();

  detail::PackPanels<Dev> kernel{.device = device,
                                 .codes = args.codes,
                                 .k = args.k,
                                 .num_panels = packed.num_panels_,
                                 .panels = packed.panels_.get(),
                                 .panel_bytes = packed.panel_bytes_};
  device.launch(std::min(kernel.num_panels, std::max(1, device.max_blocks())), kernel);
  return packed;
}

namespace detail {

/// Throws cmx::Error(invalid_argument) unless `weights` were packed for `device`'s layout with
/// depth `k` (and, if n >= 0, n output channels). `what` names the operand in the message.
template <Int8MatmulDevice Dev>
void require_packed_for(const Dev& device, const PackedWeights& weights, int k, int n,
                        const char* what) {
  using cmx::detail::require;
  require(!weights.empty(), ErrorCode::invalid_argument, what,
          ": the weights are not packed; make them with cmx::gemm::pack_weights (once, at load "
          "time)");
  require(weights.format() == device.int8_panel_format(), ErrorCode::invalid_argument, what,
          ": the weights are packed as '", weights.format(), "' but this device reads '",
          device.int8_panel_format(), "'; pack them with this device");
  require(weights.k() == k, ErrorCode::invalid_argument, what,
          ": the weights have depth k = ", weights.k(), " but the activations have k = ", k);
  require(n < 0 || weights.n() == n, ErrorCode::invalid_argument, what,
          ": the weights have n = ", weights.n(), ", expected ", n);
}

}  // namespace detail
}  // namespace cmx::gemm
