// SPDX-License-Identifier: Apache-2.0
// cmx::mpi_backend::Environment: initializes MPI for a program whose engine does not, and
// finalizes it at the end.
#pragma once

#include <mpi.h>

#include "cmx/backend/mpi/error.hpp"
#include "cmx/core/error.hpp"

namespace cmx::mpi_backend {

/// Initializes MPI, unless it already is, with the thread support the backend wants
/// (MPI_THREAD_MULTIPLE: a rank's blocks call MPI_Put from oneTBB threads when peers are on
/// other nodes), and finalizes it when destroyed if it initialized it. One per process, made
/// before any World and destroyed after the last:
///
///   int main(int argc, char** argv) {
///     cmx::mpi_backend::Environment mpi(argc, argv);
///     cmx::mpi_backend::World world;  // MPI_COMM_WORLD
///     ...
///   }
///
/// An engine that initializes MPI itself skips this and passes its communicator to World.
class Environment {
 public:
  /// MPI_Init_thread(&argc, &argv, required, ...) unless MPI is initialized. `required` is an
  /// MPI_THREAD_* level; MPI may provide less (see thread_level()).
  Environment(int& argc, char**& argv, int required = MPI_THREAD_MULTIPLE) {
    initialize(&argc, &argv, required);
  }
  /// The same without the command line.
  explicit Environment(int required = MPI_THREAD_MULTIPLE) {
    initialize(nullptr, nullptr, required);
  }

  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

  /// MPI_Finalize, if this object initialized MPI. (A destructor reports nothing: an MPI error
  /// here is ignored.)
  ~Environment() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (initialized_here_ && !finalized) MPI_Finalize();
  }

  /// The thread support MPI provides (MPI_THREAD_SINGLE ... MPI_THREAD_MULTIPLE).
  int thread_level() const {
    int provided = MPI_THREAD_SINGLE;
    detail::check_mpi(MPI_Query_thread(&provided), "MPI_Query_thread");
    return provided;
  }

  /// True if this object initialized MPI (and will finalize it).
  bool initialized_here() const noexcept { return initialized_here_; }

 private:
  void initialize(int* argc, char*** argv, int required) {
    int initialized = 0;
    detail::check_mpi(MPI_Initialized(&initialized), "MPI_Initialized");
    if (initialized) return;
    int provided = MPI_THREAD_SINGLE;
    detail::check_mpi(MPI_Init_thread(argc, argv, required, &provided), "MPI_Init_thread");
    initialized_here_ = true;
  }

  bool initialized_here_ = false;
};

}  // namespace cmx::mpi_backend
