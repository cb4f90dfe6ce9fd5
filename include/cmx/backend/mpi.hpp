// SPDX-License-Identifier: Apache-2.0
// The MPI backend: include this (and link cmx::mpi) to run cmx kernels across processes and
// machines. The kernels come from cmx/cmx.hpp or their own headers.
#pragma once

#include "cmx/backend/mpi/device.hpp"
#include "cmx/backend/mpi/environment.hpp"
#include "cmx/backend/mpi/world.hpp"
