// SPDX-License-Identifier: Apache-2.0
// cmx::LocalArena: a block's bounded on-chip memory (an AIV core's Unified Buffer), handed out
// as 32-byte-aligned typed tiles.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "cmx/core/error.hpp"

namespace cmx {

/// Alignment and granularity of every tile, in bytes: the Ascend DMA unit.
inline constexpr std::size_t kTileAlignment = 32;

/// Rounds `bytes` up to a multiple of `alignment` (a power of two).
constexpr std::size_t round_up(std::size_t bytes, std::size_t alignment) noexcept {
  return (bytes + alignment - 1) & ~(alignment - 1);
}

/// A bump allocator over one block's local memory. Tiles live until reset(); taking more than
/// the memory holds is a cmx::Error(capacity), on every backend, so a kernel that would overflow
/// an NPU's Unified Buffer fails on the CPU too.
class LocalArena {
 public:
  /// `memory` must be kTileAlignment-aligned.
  explicit LocalArena(std::span<std::byte> memory) noexcept : memory_(memory) {}

  /// Returns `count` elements of T, 32-byte aligned, uninitialized.
  template <class T>
  std::span<T> take(std::size_t count) {
    const std::size_t bytes = round_up(count * sizeof(T), kTileAlignment);
    detail::require(bytes <= memory_.size() - used_, ErrorCode::capacity, "local memory of ",
                    memory_.size(), " B exhausted: a tile of ", bytes, " B asked with ", used_,
                    " B in use");
    T* tile = reinterpret_cast<T*>(memory_.data() + used_);
    used_ += bytes;
    return {tile, count};
  }

  /// Reserves room for `count` elements of T without handing out memory: for a backend whose
  /// staging is zero-copy, so its capacity checks still match a backend that copies.
  template <class T>
  void reserve(std::size_t count) {
    (void)take<std::byte>(count * sizeof(T));
  }

  /// A point to rewind to: tiles taken after it are freed by rewind(mark), earlier ones kept.
  std::size_t mark() const noexcept { return used_; }
  /// Frees the tiles taken since `mark` (a value returned by mark()).
  void rewind(std::size_t mark) noexcept { used_ = mark; }

  /// Frees every tile.
  void reset() noexcept { used_ = 0; }

  /// Capacity in bytes.
  std::size_t capacity() const noexcept { return memory_.size(); }

 private:
  std::span<std::byte> memory_;
  std::size_t used_ = 0;
};

}  // namespace cmx
