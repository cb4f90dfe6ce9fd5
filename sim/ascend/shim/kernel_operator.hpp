// SPDX-License-Identifier: Apache-2.0
// The clean-room AscendC shim: the few AscendC kernel names the cmx Ascend backend uses,
// declared by us from Huawei's public AscendC API documentation, and implemented on the CPU
// with the hardware's rules checked (cmx::ascend_sim). Not CANN's kernel_operator.h: no text
// of it was copied; only the documented names and signatures are reproduced, so that code
// written against this shim compiles against the real toolkit.
//
// Errors: where the hardware would misbehave (a misaligned DMA, a UB overflow, a wait with no
// matching event), these functions throw cmx::Error; the error reaches the host through
// ascend_sim::launch.
//
// NOTES: a raw `__gm__ T*` dereference bypasses the simulation (no cache, no check): kernels
// checked by it reach GM only through GlobalTensor, DataCopy[Pad] and the SHMEM calls.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cmx/core/error.hpp"
#include "sim/ascend/core.hpp"
#include "sim/ascend/machine.hpp"

// Function and address-space qualifiers of the AscendC language: nothing on the CPU.
#ifndef __aicore__
#define __aicore__
#endif
#ifndef __global__
#define __global__
#endif
#ifndef __gm__
#define __gm__
#endif
#ifndef __ubuf__
#define __ubuf__
#endif
/// The type of a kernel's GM arguments.
#ifndef GM_ADDR
#define GM_ADDR __gm__ uint8_t*
#endif

// Pipes of an AI core (PipeBarrier's argument), global names as in AscendC; the values are ours.
// https://www.hiascend.com/document/detail/zh/canncommercial/850/API/ascendcopapi/atlasascendc_api_07_0271.html
enum pipe_t : int {
  PIPE_S = 0,  ///< scalar
  PIPE_V,      ///< vector
  PIPE_M,      ///< cube
  PIPE_MTE1,   ///< L1 -> L0
  PIPE_MTE2,   ///< GM -> UB/L1 (DMA in)
  PIPE_MTE3,   ///< UB -> GM (DMA out)
  PIPE_FIX,    ///< L0C -> GM
  PIPE_ALL,    ///< every pipe
};

/// Event ids for SetFlag / WaitFlag.
enum event_t : int {
  EVENT_ID0 = 0,
  EVENT_ID1,
  EVENT_ID2,
  EVENT_ID3,
  EVENT_ID4,
  EVENT_ID5,
  EVENT_ID6,
  EVENT_ID7
};

namespace AscendC {

// ---- Block index -------------------------------------------------------------------------
// GetBlockIdx (GetBlockNum in its example):
// https://www.hiascend.com/document/detail/zh/canncommercial/850/API/ascendcopapi/atlasascendc_api_07_0185.html
// https://www.hiascend.com/llms-content/document/canncommercial/canncommercial_API_ascendcopapi_atlasascendc_api_07_0185_html.md

/// The index of the calling AIV core within its launch, in [0, GetBlockNum()). Throws
/// cmx::Error(state) outside a kernel.
__aicore__ inline int64_t GetBlockIdx() {
  return cmx::ascend_sim::detail::current_core("GetBlockIdx").index();
}

/// The number of cores of the calling kernel's launch (its block_dim). Throws
/// cmx::Error(state) outside a kernel.
__aicore__ inline int64_t GetBlockNum() {
  return cmx::ascend_sim::detail::current_core("GetBlockNum").block_num();
}

// ---- Tensors ------------------------------------------------------------------------------
// GlobalTensor::SetGlobalBuffer (bufferSize in elements; without it GetSize() is 0):
// https://www.hiascend.com/document/detail/zh/canncommercial/850/API/ascendcopapi/atlasascendc_api_07_00024.html
// (GetValue, SetValue, GetPhyAddr, GetSize, operator[] of GlobalTensor and LocalTensor: the
// same API reference, "GlobalTensor" and "LocalTensor" chapters.)

/// Logical positions of a buffer (TBuf's template argument, LCM by default); the vector subset.
enum class TPosition : uint8_t { GM, VECIN, VECOUT, VECCALC, LCM };

/// A view of `size` elements of T in global memory. Element offsets and sizes are in elements
/// of T; every access is bounds-checked (cmx::Error(capacity) past the end).
template <class T>
class GlobalTensor {
  static_assert(std::is_trivially_copyable_v<T>, "GlobalTensor holds trivially copyable elements");

 public:
  /// Views `bufferSize` elements at `buffer`. Throws cmx::Error(invalid_argument) if `buffer`
  /// is not GM of the emulated machine (aclrtMalloc / aclshmem_malloc) or not aligned for T,
  /// cmx::Error(capacity) if the elements run past the end of its GM allocation.
  __aicore__ inline void SetGlobalBuffer(__gm__ T* buffer, uint64_t bufferSize) {
    const std::size_t available = check_gm(buffer);
    cmx::detail::require(bufferSize <= available / sizeof(T), cmx::ErrorCode::capacity,
                         "GlobalTensor::SetGlobalBuffer: ", bufferSize, " elements of ", sizeof(T),
                         " B at ", static_cast<void*>(buffer),
                         " run past the end of its GM allocation (", available, " B left)");
    address_ = buffer;
    size_ = bufferSize;
    bound_ = bufferSize;
  }

  /// Views the GM at `buffer` without a size: GetSize() is 0, as documented; accesses are
  /// checked against the end of the GM allocation instead. Errors as the other form.
  __aicore__ inline void SetGlobalBuffer(__gm__ T* buffer) {
    bound_ = check_gm(buffer) / sizeof(T);
    address_ = buffer;
    size_ = 0;
  }

  /// The element at `offset`, read by the scalar unit through the core's data cache: it may be
  /// stale (see DataCacheCleanAndInvalid). Kernel only.
  __aicore__ inline T GetValue(uint64_t offset) const {
    check_index(offset, "GetValue");
    T value;
    cmx::ascend_sim::detail::current_core("GlobalTensor::GetValue")
        .scalar_read(&value, address_ + offset, sizeof(T));
    return value;
  }

  /// Writes the element at `offset` by the scalar unit, into the core's data cache: GM (and
  /// every other core) sees it only after DataCacheCleanAndInvalid. Kernel only.
  __aicore__ inline void SetValue(uint64_t offset, T value) const {
    check_index(offset, "SetValue");
    cmx::ascend_sim::detail::current_core("GlobalTensor::SetValue")
        .scalar_write(address_ + offset, &value, sizeof(T));
  }

  /// The tensor from element `offset` to the end. Throws cmx::Error(capacity) past the end.
  __aicore__ inline GlobalTensor operator[](uint64_t offset) const {
    cmx::detail::require(offset <= bound_, cmx::ErrorCode::capacity, "GlobalTensor[", offset,
                         "]: the tensor has ", bound_, " elements");
    GlobalTensor view;
    view.address_ = address_ + offset;
    view.size_ = size_ >= offset ? size_ - offset : 0;
    view.bound_ = bound_ - offset;
    return view;
  }

  /// The GM address of element 0.
  __aicore__ inline __gm__ T* GetPhyAddr() const { return address_; }
  /// The number of elements viewed (0 if SetGlobalBuffer was given no size).
  __aicore__ inline uint64_t GetSize() const { return size_; }
  /// Elements accessible from element 0: the size, or the rest of the GM allocation when no
  /// size was given. (The simulation's, not AscendC's: what every access is checked against.)
  uint64_t accessible_elements() const noexcept { return bound_; }

 private:
  static std::size_t check_gm(const T* buffer) {
    const cmx::ascend_sim::detail::ThreadContext& context =
        cmx::ascend_sim::detail::require_machine("GlobalTensor::SetGlobalBuffer");
    const std::size_t available = context.machine->gm_bytes_after(buffer);
    cmx::detail::require(available > 0, cmx::ErrorCode::invalid_argument,
                         "GlobalTensor::SetGlobalBuffer: ", static_cast<const void*>(buffer),
                         " is not global memory of the emulated machine");
    cmx::detail::require(reinterpret_cast<std::uintptr_t>(buffer) % alignof(T) == 0,
                         cmx::ErrorCode::invalid_argument,
                         "GlobalTensor::SetGlobalBuffer: ", static_cast<const void*>(buffer),
                         " is not aligned to ", alignof(T), " B");
    return available;
  }
  void check_index(uint64_t offset, const char* what) const {
    cmx::detail::require(offset < bound_, cmx::ErrorCode::capacity, "GlobalTensor::", what, "(",
                         offset, "): the tensor has ", bound_, " elements");
  }

  T* address_ = nullptr;
  uint64_t size_ = 0;   // as GetSize() reports it
  uint64_t bound_ = 0;  // elements accesses are checked against
};

/// A view of `size` elements of T in the calling core's Unified Buffer, handed out by
/// TBuf::Get. Offsets and sizes in elements of T; every access is bounds-checked.
template <class T>
class LocalTensor {
  static_assert(std::is_trivially_copyable_v<T>, "LocalTensor holds trivially copyable elements");

 public:
  LocalTensor() = default;

  /// The element at `offset` (a scalar read of UB).
  __aicore__ inline T GetValue(uint32_t offset) const {
    check_index(offset, "GetValue");
    T value;
    std::memcpy(&value, address_ + offset, sizeof(T));
    return value;
  }
  /// Writes the element at `offset` (a scalar write of UB).
  __aicore__ inline void SetValue(uint32_t offset, T value) const {
    check_index(offset, "SetValue");
    std::memcpy(address_ + offset, &value, sizeof(T));
  }
  /// The tensor from element `offset` to the end. Throws cmx::Error(capacity) past the end.
  __aicore__ inline LocalTensor operator[](uint32_t offset) const {
    cmx::detail::require(offset <= size_, cmx::ErrorCode::capacity, "LocalTensor[", offset,
                         "]: the tensor has ", size_, " elements");
    return LocalTensor(address_ + offset, size_ - offset);
  }
  /// The number of elements viewed.
  __aicore__ inline uint32_t GetSize() const { return size_; }
  /// The UB address of element 0 (a host address in the simulation).
  __aicore__ inline __ubuf__ T* GetPhyAddr() const { return address_; }

  /// The same bytes of UB viewed as elements of U: GetSize() * sizeof(T) / sizeof(U) of them
  /// (a partial trailing element is dropped). Throws cmx::Error(invalid_argument) if element 0
  /// is not aligned for U (a view made by operator[] at an odd offset).
  template <class U>
  __aicore__ inline LocalTensor<U> ReinterpretCast() const {
    static_assert(std::is_trivially_copyable_v<U>,
                  "LocalTensor::ReinterpretCast: U must be trivially copyable");
    cmx::detail::require(reinterpret_cast<std::uintptr_t>(address_) % alignof(U) == 0,
                         cmx::ErrorCode::invalid_argument, "LocalTensor::ReinterpretCast: UB ",
                         static_cast<const void*>(address_), " is not aligned to ", alignof(U),
                         " B");
    return LocalTensor<U>(reinterpret_cast<U*>(address_),
                          static_cast<uint32_t>(std::size_t{size_} * sizeof(T) / sizeof(U)));
  }

 private:
  template <TPosition>
  friend class TBuf;
  template <class>
  friend class LocalTensor;

  LocalTensor(T* address, uint32_t size) : address_(address), size_(size) {}

  void check_index(uint32_t offset, const char* what) const {
    cmx::detail::require(offset < size_, cmx::ErrorCode::capacity, "LocalTensor::", what, "(",
                         offset, "): the tensor has ", size_, " elements");
  }

  T* address_ = nullptr;
  uint32_t size_ = 0;
};

// ---- UB allocation: TPipe and TBuf ---------------------------------------------------------
// TPipe::InitBuffer (len in bytes, rounded up to 32), TBuf and TBuf::Get:
// https://www.hiascend.com/doc_center/source/zh/CANNCommunityEdition/82RC1alpha001/API/ascendcopapi/atlasascendc_api_07_0110.html
// https://www.hiascend.com/document/detail/en/canncommercial/850/API/ascendcopapi/atlasascendc_api_07_0160.html

/// A buffer of UB that InitBuffer gives `len` bytes; Get views it as tensors.
template <TPosition pos = TPosition::LCM>
class TBuf {
 public:
  /// The whole buffer as elements of T (its bytes / sizeof(T)).
  template <class T>
  __aicore__ inline LocalTensor<T> Get() const {
    return Get<T>(static_cast<uint32_t>(bytes_ / sizeof(T)));
  }
  /// The first `len` elements of T of the buffer. Throws cmx::Error(state) before InitBuffer,
  /// cmx::Error(capacity) if `len` elements do not fit the buffer.
  template <class T>
  __aicore__ inline LocalTensor<T> Get(uint32_t len) const {
    cmx::detail::require(memory_ != nullptr, cmx::ErrorCode::state,
                         "TBuf::Get: the buffer was never given memory by TPipe::InitBuffer");
    cmx::detail::require(std::size_t{len} * sizeof(T) <= bytes_, cmx::ErrorCode::capacity,
                         "TBuf::Get: ", len, " elements of ", sizeof(T), " B exceed the buffer's ",
                         bytes_, " B");
    return LocalTensor<T>(reinterpret_cast<T*>(memory_), len);
  }

 private:
  friend class TPipe;
  std::byte* memory_ = nullptr;
  std::size_t bytes_ = 0;
};

/// The owner of a kernel's UB. One per kernel (per core); its buffers live until it is
/// destroyed. The UB holds cmx::ascend_sim::kUbBytes (192 KB) per core.
class TPipe {
 public:
  /// Takes the calling core's UB. Throws cmx::Error(state) outside a kernel, or if another
  /// TPipe is alive on this core.
  __aicore__ inline TPipe() : core_(&cmx::ascend_sim::detail::current_core("TPipe")) {
    cmx::detail::require(!core_->pipe_alive(), cmx::ErrorCode::state,
                         "TPipe: a second TPipe on core ", core_->index(),
                         " (AscendC allows one per kernel)");
    core_->pipe_alive() = true;
  }
  TPipe(const TPipe&) = delete;
  TPipe& operator=(const TPipe&) = delete;
  /// Frees every buffer it gave out.
  __aicore__ inline ~TPipe() {
    core_->ub_release_all();
    core_->pipe_alive() = false;
  }

  /// Gives `buf` `len` bytes of UB (rounded up to 32 B, 32-byte aligned). Returns true.
  /// Throws cmx::Error(capacity) if the UB cannot hold them besides the buffers given so far.
  template <TPosition pos>
  __aicore__ inline bool InitBuffer(TBuf<pos>& buf, uint32_t len) {
    buf.memory_ = core_->ub_allocate(len, "TPipe::InitBuffer");
    buf.bytes_ = len;
    return true;
  }

 private:
  cmx::ascend_sim::detail::Core* core_;
};

// ---- DMA: DataCopy and DataCopyPad ----------------------------------------------------------
// DataCopy (GM <-> UB, contiguous): counts in elements; the bytes moved and both addresses
// must be multiples of 32.
// https://www.hiascend.com/document/detail/zh/CANNCommunityEdition/82RC1alpha002/API/ascendcopapi/atlasascendc_api_07_0101.html
// DataCopyPad (DataCopyExtParams, DataCopyPadExtParams): blockLen in bytes, any length.
// https://www.hiascend.com/document/detail/en/canncommercial/850/API/ascendcopapi/atlasascendc_api_07_0265.html

namespace detail {

inline void check_dma(bool ok, cmx::ErrorCode code, const char* what, std::size_t bytes,
                      const void* gm, const void* ub, const char* rule) {
  if (!ok) cmx::detail::fail(code, what, " of ", bytes, " B (GM ", gm, ", UB ", ub, "): ", rule);
}

/// The checks every DataCopy makes: 32-byte rule, both ends in bounds, the UB end in this
/// core's UB. `count` elements of `element_bytes`.
inline void check_data_copy(cmx::ascend_sim::detail::Core& core, const char* what, uint32_t count,
                            std::size_t element_bytes, const void* gm, uint64_t gm_elements,
                            const void* ub, uint32_t ub_elements) {
  using cmx::ascend_sim::kDmaAlignment;
  const std::size_t bytes = std::size_t{count} * element_bytes;
  check_dma(bytes % kDmaAlignment == 0, cmx::ErrorCode::invalid_argument, what, bytes, gm, ub,
            "the size is not a multiple of 32 B (DataCopyPad moves other sizes)");
  check_dma(reinterpret_cast<std::uintptr_t>(gm) % kDmaAlignment == 0 &&
                reinterpret_cast<std::uintptr_t>(ub) % kDmaAlignment == 0,
            cmx::ErrorCode::invalid_argument, what, bytes, gm, ub,
            "an address is not 32-byte aligned");
  check_dma(count <= gm_elements, cmx::ErrorCode::capacity, what, bytes, gm, ub,
            "more elements than the GlobalTensor holds");
  check_dma(count <= ub_elements, cmx::ErrorCode::capacity, what, bytes, gm, ub,
            "more elements than the LocalTensor holds");
  check_dma(core.in_ub(ub, bytes), cmx::ErrorCode::invalid_argument, what, bytes, gm, ub,
            "the LocalTensor is not in this core's UB");
}

}  // namespace detail

/// GM -> UB: copies `calCount` elements from `src` into `dst`. Complete when it returns (in the
/// simulation; on the hardware, the MTE2 -> V/S event). Throws cmx::Error(invalid_argument) if
/// calCount * sizeof(T) or an address is not a multiple of 32, cmx::Error(capacity) if either
/// tensor holds fewer than calCount elements. Nothing is written on error.
template <class T>
__aicore__ inline void DataCopy(const LocalTensor<T>& dst, const GlobalTensor<T>& src,
                                const uint32_t calCount) {
  auto& core = cmx::ascend_sim::detail::current_core("DataCopy");
  detail::check_data_copy(core, "DataCopy GM->UB", calCount, sizeof(T), src.GetPhyAddr(),
                          src.accessible_elements(), dst.GetPhyAddr(), dst.GetSize());
  core.dma_gm_to_ub(dst.GetPhyAddr(), src.GetPhyAddr(), std::size_t{calCount} * sizeof(T));
}

/// UB -> GM: copies `calCount` elements of `src` to `dst`. The bytes are taken from UB at
/// once but reach GM only when the MTE3 pipe is synchronized (PipeBarrier<PIPE_MTE3>,
/// PipeBarrier<PIPE_ALL>, WaitFlag<HardEvent::MTE3_*>, SyncAll, aclshmem_quiet, the kernel's
/// end). Errors as the GM -> UB form.
template <class T>
__aicore__ inline void DataCopy(const GlobalTensor<T>& dst, const LocalTensor<T>& src,
                                const uint32_t calCount) {
  auto& core = cmx::ascend_sim::detail::current_core("DataCopy");
  detail::check_data_copy(core, "DataCopy UB->GM", calCount, sizeof(T), dst.GetPhyAddr(),
                          dst.accessible_elements(), src.GetPhyAddr(), src.GetSize());
  core.dma_ub_to_gm(dst.GetPhyAddr(), src.GetPhyAddr(), std::size_t{calCount} * sizeof(T));
}

/// The shape of a DataCopyPad: `blockCount` blocks of `blockLen` bytes. The simulation
/// supports blockCount == 1 (one contiguous row); strides must then be 0.
struct DataCopyExtParams {
  uint16_t blockCount = 1;  ///< blocks (rows)
  uint32_t blockLen = 0;    ///< bytes per block
  uint32_t srcStride = 0;   ///< gap between source blocks
  uint32_t dstStride = 0;   ///< gap between destination blocks
  uint32_t rsv = 0;         ///< reserved
};

/// Padding of a GM -> UB DataCopyPad: the UB bytes after the copied ones, up to the next
/// multiple of 32, are filled with paddingValue when isPad (else left undefined).
template <class T>
struct DataCopyPadExtParams {
  bool isPad = false;
  uint8_t leftPadding = 0;   ///< elements before the data (must be 0 in the simulation)
  uint8_t rightPadding = 0;  ///< elements after the data (the fill covers the 32-byte tail)
  T paddingValue{};
};

namespace detail {

inline void check_pad_params(const DataCopyExtParams& params, const char* what) {
  cmx::detail::require(params.blockCount == 1 && params.srcStride == 0 && params.dstStride == 0,
                       cmx::ErrorCode::invalid_argument, what, ": blockCount ", params.blockCount,
                       ", srcStride ", params.srcStride, ", dstStride ", params.dstStride,
                       ": the simulation models one contiguous block (blockCount 1, strides 0)");
}

}  // namespace detail

/// GM -> UB of `dataCopyParams.blockLen` bytes (any length, a whole number of elements): the
/// UB side must be 32-byte aligned and hold the length rounded up to 32 B; the GM side only
/// aligned for T. The tail up to 32 B is filled with padParams.paddingValue if isPad. Throws
/// cmx::Error(invalid_argument) for a misaligned UB address, a blockLen that is not whole
/// elements, or a shape the simulation does not model; cmx::Error(capacity) past either
/// tensor's end.
template <class T>
__aicore__ inline void DataCopyPad(const LocalTensor<T>& dst, const GlobalTensor<T>& src,
                                   const DataCopyExtParams& dataCopyParams,
                                   const DataCopyPadExtParams<T>& padParams) {
  using cmx::ascend_sim::kDmaAlignment;
  auto& core = cmx::ascend_sim::detail::current_core("DataCopyPad");
  detail::check_pad_params(dataCopyParams, "DataCopyPad GM->UB");
  cmx::detail::require(padParams.leftPadding == 0, cmx::ErrorCode::invalid_argument,
                       "DataCopyPad GM->UB: leftPadding is not modelled by the simulation");
  const std::size_t bytes = dataCopyParams.blockLen;
  const std::size_t padded = (bytes + kDmaAlignment - 1) / kDmaAlignment * kDmaAlignment;
  const void* gm = src.GetPhyAddr();
  const void* ub = dst.GetPhyAddr();
  detail::check_dma(bytes % sizeof(T) == 0, cmx::ErrorCode::invalid_argument, "DataCopyPad GM->UB",
                    bytes, gm, ub, "blockLen is not whole elements");
  detail::check_dma(reinterpret_cast<std::uintptr_t>(ub) % kDmaAlignment == 0,
                    cmx::ErrorCode::invalid_argument, "DataCopyPad GM->UB", bytes, gm, ub,
                    "the UB address is not 32-byte aligned");
  detail::check_dma(bytes / sizeof(T) <= src.accessible_elements(), cmx::ErrorCode::capacity,
                    "DataCopyPad GM->UB", bytes, gm, ub,
                    "more elements than the GlobalTensor holds");
  detail::check_dma(padded <= std::size_t{dst.GetSize()} * sizeof(T) && core.in_ub(ub, padded),
                    cmx::ErrorCode::capacity, "DataCopyPad GM->UB", bytes, gm, ub,
                    "the LocalTensor does not hold the length rounded up to 32 B");
  core.dma_gm_to_ub(dst.GetPhyAddr(), gm, bytes);
  if (padParams.isPad)
    for (std::size_t at = bytes; at + sizeof(T) <= padded; at += sizeof(T))
      std::memcpy(reinterpret_cast<std::byte*>(dst.GetPhyAddr()) + at, &padParams.paddingValue,
                  sizeof(T));
}

/// UB -> GM of `dataCopyParams.blockLen` bytes (any length, whole elements): writes exactly
/// that many bytes of GM, queued like DataCopy's UB -> GM form. Errors as the GM -> UB form.
template <class T>
__aicore__ inline void DataCopyPad(const GlobalTensor<T>& dst, const LocalTensor<T>& src,
                                   const DataCopyExtParams& dataCopyParams) {
  using cmx::ascend_sim::kDmaAlignment;
  auto& core = cmx::ascend_sim::detail::current_core("DataCopyPad");
  detail::check_pad_params(dataCopyParams, "DataCopyPad UB->GM");
  const std::size_t bytes = dataCopyParams.blockLen;
  const void* gm = dst.GetPhyAddr();
  const void* ub = src.GetPhyAddr();
  detail::check_dma(bytes % sizeof(T) == 0, cmx::ErrorCode::invalid_argument, "DataCopyPad UB->GM",
                    bytes, gm, ub, "blockLen is not whole elements");
  detail::check_dma(reinterpret_cast<std::uintptr_t>(ub) % kDmaAlignment == 0,
                    cmx::ErrorCode::invalid_argument, "DataCopyPad UB->GM", bytes, gm, ub,
                    "the UB address is not 32-byte aligned");
  detail::check_dma(bytes / sizeof(T) <= dst.accessible_elements(), cmx::ErrorCode::capacity,
                    "DataCopyPad UB->GM", bytes, gm, ub,
                    "more elements than the GlobalTensor holds");
  detail::check_dma(bytes / sizeof(T) <= src.GetSize() && core.in_ub(ub, bytes),
                    cmx::ErrorCode::capacity, "DataCopyPad UB->GM", bytes, gm, ub,
                    "more elements than the LocalTensor holds");
  core.dma_ub_to_gm(dst.GetPhyAddr(), ub, bytes);
}

// ---- Cache maintenance ---------------------------------------------------------------------
// DataCacheCleanAndInvalid, CacheLine, DcciDst:
// https://www.hiascend.com/document/detail/en/canncommercial/850/API/ascendcopapi/atlasascendc_api_07_0177.html

/// What DataCacheCleanAndInvalid covers.
enum class CacheLine : uint8_t {
  SINGLE_CACHE_LINE,  ///< the 64-byte line holding the address, from the address to its end
  ENTIRE_DATA_CACHE,  ///< the whole data cache of the core
};
/// Which memory the data cache is made consistent with.
enum class DcciDst : uint8_t {
  CACHELINE_ALL,     ///< as CACHELINE_OUT
  CACHELINE_UB,      ///< reserved by the documentation (rejected at compile time)
  CACHELINE_OUT,     ///< global memory
  CACHELINE_ATOMIC,  ///< reserved on the products cmx targets (rejected at compile time)
};

/// Writes the calling core's dirty cached bytes of `dst`'s line (or of the whole cache) back to
/// GM and invalidates them, so the next GetValue reads GM and other cores see SetValue's
/// writes. SINGLE_CACHE_LINE covers [address, end of its 64-byte line) only.
template <class T, CacheLine entireType, DcciDst dcciDst>
__aicore__ inline void DataCacheCleanAndInvalid(const GlobalTensor<T>& dst) {
  static_assert(dcciDst == DcciDst::CACHELINE_OUT || dcciDst == DcciDst::CACHELINE_ALL,
                "DataCacheCleanAndInvalid: CACHELINE_UB and CACHELINE_ATOMIC are reserved");
  auto& core = cmx::ascend_sim::detail::current_core("DataCacheCleanAndInvalid");
  if constexpr (entireType == CacheLine::SINGLE_CACHE_LINE)
    core.clean_invalidate_line(dst.GetPhyAddr());
  else
    core.clean_invalidate_all();
}

/// The form without DcciDst: consistency with global memory.
template <class T, CacheLine entireType>
__aicore__ inline void DataCacheCleanAndInvalid(const GlobalTensor<T>& dst) {
  DataCacheCleanAndInvalid<T, entireType, DcciDst::CACHELINE_OUT>(dst);
}

// ---- System cycle ----------------------------------------------------------------------------
// GetSystemCycle (50 MHz on Atlas A2 and A3: time in us = cycles / 50):
// https://www.hiascend.com/document/detail/en/canncommercial/850/API/ascendcopapi/atlasascendc_api_07_0282.html

/// The system cycle counter: 50 per microsecond, as on Atlas A2 and A3 (the simulation counts
/// the host's steady clock at that rate). Kernel only (cmx::Error(state) elsewhere).
__aicore__ inline int64_t GetSystemCycle() {
  (void)cmx::ascend_sim::detail::current_core("GetSystemCycle");
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
             .count() /
         20;
}

// ---- Pipe synchronization ------------------------------------------------------------------
// PipeBarrier:
// https://www.hiascend.com/document/detail/zh/canncommercial/850/API/ascendcopapi/atlasascendc_api_07_0271.html
// SetFlag / WaitFlag, HardEvent:
// https://www.hiascend.com/document/detail/en/canncommercial/800/apiref/ascendcopapi/atlasascendc_api_07_0270.html
// SyncAll (hardware form):
// https://www.hiascend.com/document/detail/zh/canncommercial/850/API/ascendcopapi/atlasascendc_api_07_0204.html

/// Waits until every instruction issued on `pipe` has completed. PIPE_MTE3 and PIPE_ALL
/// complete the core's queued UB -> GM copies; the other pipes have nothing queued here.
/// PIPE_S is rejected at compile time (the documentation: a hardware error).
template <pipe_t pipe>
__aicore__ inline void PipeBarrier() {
  static_assert(pipe != PIPE_S, "PipeBarrier<PIPE_S> is a hardware error on Ascend");
  auto& core = cmx::ascend_sim::detail::current_core("PipeBarrier");
  if constexpr (pipe == PIPE_MTE3 || pipe == PIPE_ALL) core.complete_dma_writes();
}

/// A dependency between two pipes: the producer sets, the consumer waits
/// (<producer>_<consumer>; S = scalar, V = vector, MTE2 = DMA in, MTE3 = DMA out).
/// (The subset a vector kernel uses; the values are ours.)
enum class HardEvent : uint8_t {
  MTE2_V,
  V_MTE2,
  MTE3_V,
  V_MTE3,
  MTE3_MTE2,
  MTE2_MTE3,
  S_V,
  V_S,
  S_MTE2,
  MTE2_S,
  S_MTE3,
  MTE3_S,
};

namespace detail {
constexpr bool produced_by_mte3(HardEvent event) {
  return event == HardEvent::MTE3_V || event == HardEvent::MTE3_MTE2 || event == HardEvent::MTE3_S;
}
}  // namespace detail

/// Signals `event` with id `eventID` from its producer pipe.
template <HardEvent event>
__aicore__ inline void SetFlag(int32_t eventID) {
  cmx::ascend_sim::detail::current_core("SetFlag").set_event(static_cast<int>(event), eventID);
}

/// Waits for the matching SetFlag<event>(eventID). An event produced by MTE3 completes the
/// queued UB -> GM copies. Throws cmx::Error(state) if no SetFlag of it is outstanding (the
/// core would hang).
template <HardEvent event>
__aicore__ inline void WaitFlag(int32_t eventID) {
  auto& core = cmx::ascend_sim::detail::current_core("WaitFlag");
  core.wait_event(static_cast<int>(event), eventID, "HardEvent");
  if constexpr (detail::produced_by_mte3(event)) core.complete_dma_writes();
}

/// Cross-core barrier of the launch's AIV cores (the hardware form, AIV only): returns once
/// every core has called it. Completes this core's queued UB -> GM copies first. Throws
/// cmx::Error(timeout) past the machine's timeout (a core that never arrives), or
/// cmx::Error(peer_failed) if another core failed.
template <bool isAIVOnly = true>
__aicore__ inline void SyncAll() {
  static_assert(isAIVOnly, "the simulation models AIV-only kernels");
  auto& core = cmx::ascend_sim::detail::current_core("SyncAll");
  core.complete_dma_writes();
  core.launch().sync_all(core.index());
}

}  // namespace AscendC

// The vector unit (Cast, Abs, Muls, ReduceMax, ...), in its own file; included here so that
// the shim stays one include, as kernel_operator.h is.
#include "sim/ascend/shim/vector_ops.hpp"
