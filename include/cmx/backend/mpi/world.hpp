// SPDX-License-Identifier: Apache-2.0
// cmx::mpi_backend::World: the ranks of an MPI communicator, one per process, as cmx ranks.
#pragma once

#include <mpi.h>

#include <memory>

#include "cmx/backend/mpi/device.hpp"
#include "cmx/backend/mpi/world_state.hpp"

namespace cmx::mpi_backend {

/// Every process of an MPI communicator as one cmx rank (its rank in the communicator), as an
/// engine runs one process per accelerator. Symmetric memory allocated through its Device lives
/// until the World is destroyed.
///
///   cmx::mpi_backend::Environment mpi(argc, argv);  // unless the engine initialized MPI
///   cmx::mpi_backend::World world;                  // or World(engine_communicator, {...})
///   cmx::mpi_backend::Device device = world.device();
///
/// Making and destroying a World are collective over the communicator. After a timeout or an
/// MPI error, collective calls on the World (a symmetric allocation, a barrier) throw
/// cmx::Error(state): make a new World.
class World {
 public:
  /// Collective: every process of `communicator` makes its World with the same config. Throws
  /// cmx::Error: state (MPI not initialized), invalid_argument (MPI_COMM_NULL, a bad config),
  /// config_mismatch (configs that differ between ranks), timeout (a rank that never made its
  /// World), transport (an MPI error, or MPI's thread support too low for RMA).
  explicit World(MPI_Comm communicator = MPI_COMM_WORLD, const WorldConfig& config = {})
      : state_(std::make_unique<detail::WorldState>(communicator, config)) {}

  /// This process's rank, as the kernels see it.
  Device device() noexcept { return Device(*state_); }

  /// This process's rank in the World (its rank in the communicator).
  int rank() const noexcept { return state_->rank(); }
  /// Ranks in the World (processes of the communicator).
  int num_ranks() const noexcept { return state_->num_ranks(); }
  /// Ranks whose symmetric memory this process maps and writes with plain stores: those on its
  /// node, or itself alone with IntraNode::rma. The others are reached by MPI_Put and MPI_Get.
  int num_mapped_ranks() const noexcept { return state_->num_mapped_ranks(); }
  /// The World's own duplicate of its communicator.
  MPI_Comm communicator() const noexcept { return state_->communicator(); }

 private:
  std::unique_ptr<detail::WorldState> state_;
};

}  // namespace cmx::mpi_backend
