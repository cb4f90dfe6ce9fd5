// SPDX-License-Identifier: Apache-2.0
// doctest under mpirun: every process runs every test case (each is collective over
// MPI_COMM_WORLD), rank 0 reports in full and the others only their failures; a process with a
// failure exits non-zero, and so does mpirun.
//
// CMX_TEST_MPI_THREAD_LEVEL=serialized initializes MPI with MPI_THREAD_SERIALIZED instead of
// MPI_THREAD_MULTIPLE (the backend then serializes its own MPI calls).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>
#include <string_view>

#include "cmx/backend/mpi.hpp"

int main(int argc, char** argv) {
  const char* level = std::getenv("CMX_TEST_MPI_THREAD_LEVEL");
  const bool serialized = level != nullptr && std::string_view(level) == "serialized";
  cmx::mpi_backend::Environment mpi(argc, argv,
                                    serialized ? MPI_THREAD_SERIALIZED : MPI_THREAD_MULTIPLE);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  doctest::Context context(argc, argv);
  if (rank != 0) {
    context.setOption("minimal", true);
    context.setOption("no-colors", true);
  }
  return context.run();
}
