// SPDX-License-Identifier: Apache-2.0
// check_mpi: every MPI call of the MPI backend goes through it, so that an MPI error becomes a
// cmx::Error(transport) carrying MPI's own text.
#pragma once

#include <mpi.h>

#include <string>

#include "cmx/core/error.hpp"

namespace cmx::mpi_backend::detail {

/// MPI's text for an error code: "MPI_ERR_WIN: invalid window".
inline std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS)
    return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(length));
}

/// Throws cmx::Error(transport) "<what...> failed: <MPI's text>" unless `code` is MPI_SUCCESS.
/// MPI reports errors this way only on communicators and windows whose error handler is
/// MPI_ERRORS_RETURN, which the backend sets on every one it makes.
template <class... What>
void check_mpi(int code, const What&... what) {
  if (code != MPI_SUCCESS)
    cmx::detail::fail(ErrorCode::transport, what..., " failed: ", mpi_error_text(code));
}

}  // namespace cmx::mpi_backend::detail
