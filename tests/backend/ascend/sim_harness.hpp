// SPDX-License-Identifier: Apache-2.0
// Shared by the Ascend simulation tests: catching a cmx::Error, a one-NPU machine, and GM
// tensors filled from and read back to host vectors.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cmx/core/error.hpp"
#include "sim/ascend/machine.hpp"
#include "sim/ascend/shim/acl.hpp"

namespace cmx::test {

/// What a cmx::Error said.
struct Caught {
  ErrorCode code;
  std::string message;
};

/// The cmx::Error `body` throws, or nothing if it returns.
template <class Body>
std::optional<Caught> error_of(Body&& body) {
  try {
    body();
  } catch (const Error& e) {
    return Caught{e.code(), e.what()};
  }
  return std::nullopt;
}

/// Runs `body` on NPU 0 of a one-NPU machine with `cores` AIV cores.
template <class Body>
void on_one_npu(int cores, Body&& body,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(20'000)) {
  ascend_sim::Machine machine({.num_npus = 1, .cores_per_npu = cores, .timeout = timeout});
  machine.run([&](int) { body(); });
}

/// `size` elements of T in global memory of the calling NPU host thread (aclrtMalloc), filled
/// from and read back to host vectors. Freed with it.
template <class T>
class GmTensor {
 public:
  explicit GmTensor(std::size_t size) : size_(size) {
    void* memory = nullptr;
    REQUIRE(aclrtMalloc(&memory, std::max<std::size_t>(size * sizeof(T), 32),
                        ACL_MEM_MALLOC_HUGE_FIRST) == ACL_SUCCESS);
    data_ = static_cast<T*>(memory);
  }
  explicit GmTensor(const std::vector<T>& host) : GmTensor(host.size()) { upload(host, data_); }
  GmTensor(const GmTensor&) = delete;
  GmTensor& operator=(const GmTensor&) = delete;
  ~GmTensor() { (void)aclrtFree(data_); }

  T* data() const { return data_; }
  std::span<T> span() const { return {data_, size_}; }
  std::vector<T> download() const {
    std::vector<T> host(size_);
    if (size_ > 0)
      REQUIRE(aclrtMemcpy(host.data(), size_ * sizeof(T), data_, size_ * sizeof(T),
                          ACL_MEMCPY_DEVICE_TO_HOST) == ACL_SUCCESS);
    return host;
  }
  /// Copies `host` into GM at `gm` (a GM tensor's, or another allocation's, e.g. a buffer's).
  static void upload(const std::vector<T>& host, T* gm) {
    if (!host.empty())
      REQUIRE(aclrtMemcpy(gm, host.size() * sizeof(T), host.data(), host.size() * sizeof(T),
                          ACL_MEMCPY_HOST_TO_DEVICE) == ACL_SUCCESS);
  }

 private:
  T* data_ = nullptr;
  std::size_t size_;
};

}  // namespace cmx::test
