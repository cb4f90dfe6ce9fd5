// SPDX-License-Identifier: Apache-2.0
// Must NOT compile: a kernel instantiated with a type that is not a cmx::Device fails with the
// concept's message (checked by the test "nonconforming_device_is_rejected").
#include "cmx/ep/buffer.hpp"

struct NotADevice {
  int rank() const { return 0; }
};

int main() {
  cmx::ep::Buffer<NotADevice>* buffer = nullptr;
  return buffer != nullptr;
}
