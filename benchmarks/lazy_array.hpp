// SPDX-License-Identifier: Apache-2.0
// LazyArray: a large, page-aligned, uninitialized heap array whose pages the OS commits only when
// first written, so a capacity-sized array costs the rows a rank touches, on the touching thread.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <span>
#include <type_traits>

namespace cmx::bench {

/// `count` elements of T, uninitialized. Nothing is written on allocation: a large block comes
/// from fresh zero pages, and each page lands in memory (first touch) when a rank first writes it.
template <class T>
class LazyArray {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>,
                "LazyArray hands out raw memory: only for plain rows of bytes and numbers");

 public:
  LazyArray() = default;

  explicit LazyArray(std::size_t count) : count_(count) {
    constexpr std::size_t kPageBytes = 4096;
    const std::size_t bytes = (count * sizeof(T) + kPageBytes - 1) / kPageBytes * kPageBytes;
    memory_.reset(static_cast<T*>(std::aligned_alloc(kPageBytes, bytes == 0 ? kPageBytes : bytes)));
    if (!memory_) throw std::bad_alloc();
  }

  T* data() noexcept { return memory_.get(); }
  const T* data() const noexcept { return memory_.get(); }
  std::size_t size() const noexcept { return count_; }
  std::span<T> span() noexcept { return {data(), count_}; }
  std::span<const T> span() const noexcept { return {data(), count_}; }

 private:
  struct Free {
    void operator()(T* memory) const noexcept { std::free(memory); }
  };
  std::unique_ptr<T, Free> memory_;
  std::size_t count_ = 0;
};

}  // namespace cmx::bench
