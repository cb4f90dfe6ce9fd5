// SPDX-License-Identifier: Apache-2.0
// cmx::Error: the one exception type every cmx kernel and backend throws.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace cmx {

/// What went wrong, so that an engine can react without parsing the message.
enum class ErrorCode {
  invalid_argument,  ///< a shape, id or size that breaks the kernel's contract; nothing was written
  capacity,          ///< more tokens (or bytes) than a buffer was sized for; nothing was written
  config_mismatch,   ///< ranks disagree on a collective configuration
  timeout,           ///< a wait ran past the device's timeout; the message names the missing rank
  peer_failed,       ///< a peer reported an error through the protocol; see that rank's own error
  state,             ///< a call out of order (e.g. two dispatches without a combine), or a buffer
                     ///< left unusable by an earlier error
  transport,         ///< the backend's communication layer failed (an MPI error); the message
                     ///< carries its own text
};

/// Returns the name of an error code, as used in messages ("timeout", ...).
inline const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::invalid_argument:
      return "invalid_argument";
    case ErrorCode::capacity:
      return "capacity";
    case ErrorCode::config_mismatch:
      return "config_mismatch";
    case ErrorCode::timeout:
      return "timeout";
    case ErrorCode::peer_failed:
      return "peer_failed";
    case ErrorCode::state:
      return "state";
    case ErrorCode::transport:
      return "transport";
  }
  return "unknown";
}

/// The exception thrown by cmx. `what()` reads "cmx <code>: <message>".
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message)
      : std::runtime_error("cmx " + std::string(to_string(code)) + ": " + message), code_(code) {}

  /// The category of the failure.
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

namespace detail {

/// Formats its arguments with operator<< and throws cmx::Error(code, text).
template <class... Parts>
[[noreturn]] void fail(ErrorCode code, Parts&&... parts) {
  std::ostringstream text;
  (text << ... << std::forward<Parts>(parts));
  throw Error(code, text.str());
}

/// Throws cmx::Error(code, parts...) when `condition` is false.
template <class... Parts>
void require(bool condition, ErrorCode code, Parts&&... parts) {
  if (!condition) fail(code, std::forward<Parts>(parts)...);
}

}  // namespace detail
}  // namespace cmx
