// SPDX-License-Identifier: Apache-2.0
// AlltoallvExchange: the all-to-all of records that users of MPI write today, MPI_Alltoall of the
// counts then MPI_Alltoallv of the records, for UnfusedEp: cmx_bench_mpi's baseline.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cmx/backend/mpi.hpp"
#include "lazy_array.hpp"
#include "unfused_baseline.hpp"

namespace cmx::bench {

/// RecordExchange's members over MPI_Alltoallv on the device's communicator. Records for rank d
/// are appended to region d of a private send area (the permutation by destination); exchange()
/// sends every region's records to its rank, which receives them into region s of its receive
/// area ([num_ranks][capacity] records each).
class AlltoallvExchange : public RecordFormat {
 public:
  /// Collective over the device's communicator. Each rank sends each rank up to `capacity`
  /// records (RecordFormat) per exchange.
  AlltoallvExchange(mpi_backend::Device device, std::size_t row_bytes, std::size_t capacity)
      : RecordFormat(row_bytes),
        communicator_(device.communicator()),
        num_ranks_(static_cast<std::size_t>(device.world_size())),
        capacity_(capacity),
        send_area_(num_ranks_ * region_bytes()),
        receive_area_(num_ranks_ * region_bytes()),
        send_counts_(num_ranks_, 0),
        receive_counts_(num_ranks_, 0),
        displacements_(num_ranks_) {
    cmx::detail::require(region_bytes() * num_ranks_ <= static_cast<std::size_t>(INT32_MAX),
                         ErrorCode::capacity, "AlltoallvExchange: ", num_ranks_, " regions of ",
                         region_bytes(), " B exceed MPI_Alltoallv's int displacements");
    for (std::size_t rank = 0; rank < num_ranks_; ++rank)
      displacements_[rank] = static_cast<int>(rank * region_bytes());
  }

  /// The next free record for `dst_rank` in the send area. Throws cmx::Error(capacity) past
  /// `capacity` records.
  std::byte* append(int dst_rank) {
    int& bytes = send_counts_[static_cast<std::size_t>(dst_rank)];
    cmx::detail::require(static_cast<std::size_t>(bytes) < capacity_ * record_bytes(),
                         ErrorCode::capacity, "AlltoallvExchange: more than ", capacity_,
                         " records for rank ", dst_rank);
    std::byte* record =
        send_area_.data() +
        static_cast<std::size_t>(displacements_[static_cast<std::size_t>(dst_rank)]) +
        static_cast<std::size_t>(bytes);
    bytes += static_cast<int>(record_bytes());
    return record;
  }

  /// Collective: MPI_Alltoall of the byte counts, then MPI_Alltoallv of the records.
  /// Afterwards received() reads what each rank sent here, and the send area is empty again.
  void exchange() {
    mpi_backend::detail::check_mpi(MPI_Alltoall(send_counts_.data(), 1, MPI_INT,
                                                receive_counts_.data(), 1, MPI_INT, communicator_),
                                   "MPI_Alltoall");
    mpi_backend::detail::check_mpi(
        MPI_Alltoallv(send_area_.data(), send_counts_.data(), displacements_.data(), MPI_BYTE,
                      receive_area_.data(), receive_counts_.data(), displacements_.data(), MPI_BYTE,
                      communicator_),
        "MPI_Alltoallv");
    std::fill(send_counts_.begin(), send_counts_.end(), 0);
  }

  /// Records `src_rank` sent here in the last exchange.
  std::size_t num_received(int src_rank) const noexcept {
    return static_cast<std::size_t>(receive_counts_[static_cast<std::size_t>(src_rank)]) /
           record_bytes();
  }
  /// Record `index` of those `src_rank` sent here.
  const std::byte* received(int src_rank, std::size_t index) const noexcept {
    return receive_area_.data() +
           static_cast<std::size_t>(displacements_[static_cast<std::size_t>(src_rank)]) +
           index * record_bytes();
  }

 private:
  // Bytes of the records one rank sends one rank per exchange.
  std::size_t region_bytes() const noexcept { return capacity_ * record_bytes(); }

  MPI_Comm communicator_;
  std::size_t num_ranks_;
  std::size_t capacity_;               // records per (source, destination) pair and exchange
  LazyArray<std::byte> send_area_;     // [num_ranks][capacity] records, region d for rank d
  LazyArray<std::byte> receive_area_;  // [num_ranks][capacity] records, region s from rank s
  std::vector<int> send_counts_;       // [num_ranks] bytes appended for each rank
  std::vector<int> receive_counts_;    // [num_ranks] bytes received from each rank
  std::vector<int> displacements_;     // [num_ranks] byte offset of region r, both areas
};

}  // namespace cmx::bench
