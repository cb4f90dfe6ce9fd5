// SPDX-License-Identifier: Apache-2.0
// cmx::tbb_backend::World: W ranks in one process, each a real thread.
#pragma once

#include <exception>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "cmx/backend/tbb/device.hpp"
#include "cmx/backend/tbb/world_state.hpp"
#include "cmx/core/error.hpp"

namespace cmx::tbb_backend {

/// Runs a program on W emulated ranks, as an engine runs one process per NPU. Symmetric memory
/// allocated in a run lives until the World is destroyed, so buffers made in one run can be
/// used in the next.
///
///   World world({.num_ranks = 8});
///   world.run([&](Device dev) { /* dev.rank() in [0, 8) */ });
class World {
 public:
  /// Makes a world of config.num_ranks ranks; no thread runs until run().
  explicit World(const WorldConfig& config)
      : state_(std::make_unique<detail::WorldState>(config)) {}

  /// Ranks in this world.
  int num_ranks() const noexcept { return state_->num_ranks(); }

  /// Runs body(Device) on every rank, each on a thread of its own, and returns when all have
  /// returned. Each rank's exception is captured: the result holds one exception_ptr per rank,
  /// null for a rank that succeeded. After a run in which any rank failed, the world's
  /// collective state (barrier, flags) is unspecified and further runs throw
  /// cmx::Error(state): make a new World.
  template <class Body>
  std::vector<std::exception_ptr> run_collect(Body&& body) {
    require_usable();
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(num_ranks()));
    {
      std::vector<std::jthread> threads;
      threads.reserve(errors.size());
      for (int rank = 0; rank < num_ranks(); ++rank) {
        threads.emplace_back([&, rank] {
          try {
            body(Device(*state_, rank));
          } catch (...) {
            errors[static_cast<std::size_t>(rank)] = std::current_exception();
          }
        });
      }
    }  // joins
    for (const auto& error : errors) failed_ = failed_ || error != nullptr;
    return errors;
  }

  /// Like run_collect, but rethrows the error of the lowest failing rank.
  template <class Body>
  void run(Body&& body) {
    for (const auto& error : run_collect(std::forward<Body>(body)))
      if (error) std::rethrow_exception(error);
  }

 private:
  void require_usable() const {
    cmx::detail::require(!failed_, ErrorCode::state,
                         "a previous run of this World failed; its collective state is "
                         "unspecified, make a new World");
  }

  std::unique_ptr<detail::WorldState> state_;
  bool failed_ = false;
};

}  // namespace cmx::tbb_backend
