// SPDX-License-Identifier: Apache-2.0
// Shared by the MPI backend's tests: the World config of this test run, and outcomes of calls
// that may fail.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cmx/backend/mpi.hpp"
#include "cmx/core/error.hpp"

namespace cmx::test {

/// How ranks on this machine reach each other in this run: CMX_TEST_INTRA_NODE=rma forces the
/// MPI_Put/MPI_Get path between the processes (ctest runs the suites both ways).
inline mpi_backend::IntraNode intra_node_of_run() {
  const char* value = std::getenv("CMX_TEST_INTRA_NODE");
  return value != nullptr && std::string_view(value) == "rma"
             ? mpi_backend::IntraNode::rma
             : mpi_backend::IntraNode::shared_memory;
}

/// The timeout of a test that waits for a rank which never comes: short, yet long enough for
/// the collectives before that wait (making the World, a Buffer) under the same timeout, with
/// 8 processes on 2 cores beside another test (300 ms was once not enough); also how long the
/// survivors of a killed rank wait for it.
inline constexpr std::chrono::seconds kMissingRankTimeout{2};

/// The config of a World of this run. 8 processes on 2 busy cores are slow, never a minute slow.
inline mpi_backend::WorldConfig world_config(
    std::chrono::nanoseconds timeout = std::chrono::seconds(60), int blocks_per_rank = 0) {
  return {
      .timeout = timeout, .blocks_per_rank = blocks_per_rank, .intra_node = intra_node_of_run()};
}

/// This process's rank in MPI_COMM_WORLD, and the number of processes.
inline int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}
inline int world_size() {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

/// How a call ended on this rank.
struct Outcome {
  bool failed = false;
  ErrorCode code{};
  std::string message;
};

/// Runs `body` and returns how it ended (a cmx::Error's code and message, if it threw one).
template <class Body>
Outcome outcome_of(Body&& body) {
  try {
    body();
    return {};
  } catch (const Error& error) {
    return {true, error.code(), error.what()};
  } catch (const std::exception& error) {
    return {true, ErrorCode::state, std::string("not a cmx::Error: ") + error.what()};
  }
}

/// True if `text` contains `part`.
inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace cmx::test
