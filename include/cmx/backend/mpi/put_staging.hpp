// SPDX-License-Identifier: Apache-2.0
// PutStaging: where the MPI backend keeps copies of the sources of its RMA puts until a flush has
// completed them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

namespace cmx::mpi_backend::detail {

/// Copies of the sources of a thread's RMA puts, kept until a flush has completed the puts: so
/// that put() returns without waiting for its put (the trait lets the caller reuse its source at
/// once), and the flushes are one per signal, not one per put.
class PutStaging {
 public:
  /// A copy of `source`, valid until reset().
  std::span<const std::byte> stage(std::span<const std::byte> source) {
    if (chunk_ == chunks_.size() || used_ + source.size() > chunks_[chunk_].size) {
      if (chunk_ < chunks_.size()) ++chunk_;
      if (chunk_ == chunks_.size() || chunks_[chunk_].size < source.size())
        chunks_.insert(chunks_.begin() + static_cast<std::ptrdiff_t>(chunk_),
                       Chunk(std::max(kChunkBytes, source.size())));
      used_ = 0;
    }
    std::byte* copy = chunks_[chunk_].bytes.get() + used_;
    std::memcpy(copy, source.data(), source.size());
    used_ += source.size();
    return {copy, source.size()};
  }

  /// Every staged put is complete: the chunks are reused from the first.
  void reset() noexcept {
    chunk_ = 0;
    used_ = 0;
  }

 private:
  static constexpr std::size_t kChunkBytes = std::size_t{4} << 20;
  struct Chunk {
    explicit Chunk(std::size_t bytes)
        : bytes(std::make_unique_for_overwrite<std::byte[]>(bytes)), size(bytes) {}
    std::unique_ptr<std::byte[]> bytes;
    std::size_t size;
  };
  std::vector<Chunk> chunks_;
  std::size_t chunk_ = 0;  // the chunk being filled
  std::size_t used_ = 0;   // bytes of it in use
};

}  // namespace cmx::mpi_backend::detail
